# make run   set up .venv if needed, then run the workflow on config/config.yaml -> results/report.html
# make test  set up .venv with the test extras, then run the whole test suite
# make lint  ruff (format check, lint), mypy (strict), snakemake --lint, snakefmt --check,
#            the docs site (mkdocs build --strict) and config/README.md current with the schema
# make docs  write config/README.md from the schema, then serve the docs site on 127.0.0.1:8000
# make bench the tuning and serving benchmark (prints figures; not a test)
# make bench-capacity  the capacity search against MLPerf's load generator (prints figures; not a test)
# make bench-dag  planning and report figures of about 1,000 model x format variants (not a test)
SHELL := /bin/bash
VENV := .venv
# The venv's bin first: Snakemake's scripts and Triton's python-backend stub then use its packages.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
CORES ?= 8
PYTEST_ARGS ?=

.PHONY: run test lint docs bench bench-capacity bench-dag setup setup-test clean

setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh test

run: setup
	snakemake --cores $(CORES) results/report.html

test: setup-test
	python -m pytest -v --durations=60 $(PYTEST_ARGS) tests

lint: setup-test
	ruff format --check .
	ruff check .
	mypy
	snakemake --lint
	snakefmt --check .
	python scripts/config_doc.py --check
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet

docs: setup-test
	python scripts/config_doc.py
	NO_MKDOCS_2_WARNING=1 mkdocs serve --dev-addr 127.0.0.1:8000

bench: setup
	python benchmarks/tuning_bench.py $(BENCH_ARGS)

bench-capacity: setup
	pip install -q -e '.[bench]'
	python benchmarks/capacity_loadgen.py $(BENCH_ARGS)

bench-dag: setup
	python benchmarks/bench_dag.py $(BENCH_ARGS)

clean:
	rm -rf results logs .snakemake site
