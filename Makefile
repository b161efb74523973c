# make run   set up .venv if needed, then run the workflow on config/config.yaml -> results/report.html
# make test  set up .venv with the test extras, then run the whole test suite
# make lint  ruff (format check, lint), mypy (strict), snakemake --lint, snakefmt --check
# make bench the tuning and serving benchmark (prints figures; not a test)
# make bench-capacity  the capacity search against MLPerf's load generator (prints figures; not a test)
# make bench-dag  planning and report figures of about 1,000 model x format variants (not a test)
SHELL := /bin/bash
VENV := .venv
# The venv's bin first: Snakemake's scripts and Triton's python-backend stub then use its packages.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
CORES ?= 8
PYTEST_ARGS ?=

.PHONY: run test lint bench bench-capacity bench-dag setup setup-test clean

setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh test

run: setup
	snakemake --cores $(CORES) results/report.html

test: setup-test
	python -m pytest -v --durations=25 $(PYTEST_ARGS) tests

lint: setup-test
	ruff format --check .
	ruff check .
	mypy
	snakemake --lint
	snakefmt --check .

bench: setup
	python benchmarks/tuning_bench.py $(BENCH_ARGS)

bench-capacity: setup
	pip install -q -e '.[bench]'
	python benchmarks/capacity_loadgen.py $(BENCH_ARGS)

bench-dag: setup
	python benchmarks/bench_dag.py $(BENCH_ARGS)

clean:
	rm -rf results logs .snakemake
