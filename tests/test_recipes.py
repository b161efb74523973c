"""The shipped recipes beyond digits, together in one workflow run: the Wide & Deep click model (int64
ids and float features as two named inputs, two outputs) and the BiLSTM tagger (a dynamic sequence
axis through export, Triton config and perf). Real training, tritonserver and perf_analyzer."""

from __future__ import annotations

import csv
import json
import re
import statistics
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from deploysnake.plugins import load_recipe

from .conftest import ROOT, snakemake

pytestmark = pytest.mark.e2e

FORMATS = ["torchscript_trace", "onnx"]
CONFIG = {
    "models": {
        "wide_deep": {"recipe": "recipes/wide_deep", "params": {"epochs": 3, "seed": 0}},
        "tagger": {"recipe": "recipes/tagger", "params": {"epochs": 4, "seed": 0}},
    },
    "formats": FORMATS,
    "devices": ["cpu"],
    "correctness": {"batch_size": 64, "batches": 2},
    "triton": {
        "max_batch_size": 64,
        "dynamic_batching": {"preferred_batch_sizes": [8, 32], "max_queue_delay_us": 100},
    },
    "accuracy": {"batch_size": 64},
    "perf": {
        "max_foreign_cpu": 64,  # the best table needs a stable point; not a test of the quiet
        "measurement_interval_ms": 500,
        "stability_percentage": 50,
        "max_trials": 5,
        "input_samples": 32,
        # one point per sweep: the tests read what was sent (inputs, shapes), not how fast
        "offline": {"batch_sizes": [16], "concurrency": [1]},
        "online": {"concurrency": [2]},
    },
    "native": {"window_s": 0.3},
}


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("recipes")
    (workdir / "recipes.yaml").write_text(yaml.safe_dump(CONFIG))
    snakemake(
        "results/report.html",
        "--cores",
        "2",
        "--configfile",
        "recipes.yaml",
        cwd=workdir,
        timeout=1800,
    )
    return workdir


def test_every_format_of_both_models_passed_and_was_served(workdir: Path) -> None:
    for model in CONFIG["models"]:
        for fmt in FORMATS:
            verdict = json.loads(
                (workdir / "results" / "correctness" / model / f"{fmt}.json").read_text()
            )
            assert verdict["passed"], verdict
            for row in rows(workdir / "results" / "accuracy" / model / fmt / "cpu.csv"):
                assert float(row["max_abs_diff_served_vs_exported"]) < 1e-4
            for mode in ("offline", "online"):
                measured = rows(workdir / "results" / f"perf_{mode}" / model / fmt / "cpu.csv")
                assert measured and {r["input_data"] for r in measured} == {"dataloader"}


def test_wide_deep_has_two_typed_inputs_and_two_outputs(workdir: Path) -> None:
    for fmt in FORMATS:
        io = json.loads(
            (workdir / "results" / "export" / "wide_deep" / fmt / "io.json").read_text()
        )
        assert [(t["name"], t["dtype"], t["dims"]) for t in io["inputs"]] == [
            ("categorical", "int64", [-1, 3]),
            ("numeric", "float32", [-1, 4]),
        ]
        assert [t["name"] for t in io["outputs"]] == ["logit", "probability"]
        config = (
            workdir
            / "results"
            / "repository"
            / "wide_deep"
            / fmt
            / "cpu"
            / f"wide_deep_{fmt}"
            / "config.pbtxt"
        ).read_text()
        assert "TYPE_INT64" in config and "TYPE_FP32" in config and '"probability"' in config
        metrics = {
            r["metric"]: r
            for r in rows(workdir / "results" / "accuracy" / "wide_deep" / fmt / "cpu.csv")
        }
        assert set(metrics) == {"auc", "log_loss", "accuracy"}
        assert float(metrics["auc"]["served"]) > 0.6 and float(
            metrics["auc"]["served"]
        ) == pytest.approx(float(metrics["auc"]["source"]), abs=1e-6)
        shapes = {
            r["input_shapes"]
            for r in rows(workdir / "results" / "perf_offline" / "wide_deep" / fmt / "cpu.csv")
        }
        assert shapes == {"categorical:3 numeric:4"}


def test_the_tagger_sequence_axis_stays_dynamic(workdir: Path) -> None:
    recipe = load_recipe(ROOT / "recipes" / "tagger")
    widths = [
        b["inputs"]["tokens"].shape[1]
        for b in recipe.dataloader.batches("validation", 32, CONFIG["models"]["tagger"]["params"])
    ]
    typical = int(statistics.median(widths))
    for fmt in FORMATS:
        io = json.loads((workdir / "results" / "export" / "tagger" / fmt / "io.json").read_text())
        assert io["inputs"][0]["dims"] == [-1, -1] and io["outputs"][0]["dims"] == [-1, -1, 5]
        config = (
            workdir
            / "results"
            / "repository"
            / "tagger"
            / fmt
            / "cpu"
            / f"tagger_{fmt}"
            / "config.pbtxt"
        ).read_text()
        assert re.search(r'name: "tokens".*?dims: -1', config, re.S), config
        # the validation set (batches of different lengths) went through the server
        metrics = {
            r["metric"]: float(r["served"])
            for r in rows(workdir / "results" / "accuracy" / "tagger" / fmt / "cpu.csv")
        }
        assert metrics["token_accuracy"] > 0.8
        # perf: real token sequences cut or padded to the typical length, sent with --shape
        for mode in ("offline", "online"):
            assert {
                r["input_shapes"]
                for r in rows(workdir / "results" / f"perf_{mode}" / "tagger" / fmt / "cpu.csv")
            } == {f"tokens:{typical}"}
            log = (workdir / "logs" / f"perf_{mode}" / "tagger" / fmt / "cpu.log").read_text()
            assert f"--shape tokens:{typical}" in log
        # the in-process baseline ran the same tokens: the perf samples, at the length sent
        native_rows = rows(workdir / "results" / "native" / "tagger" / fmt / "cpu.csv")
        assert [(r["batch"], r["input_shapes"], r["input_data"]) for r in native_rows] == [
            (str(b), f"tokens:{typical}", "dataloader")
            for b in CONFIG["perf"]["offline"]["batch_sizes"]
        ], native_rows
    data = json.loads((workdir / "results" / "perf_data" / "tagger" / "input.json").read_text())[
        "data"
    ]
    assert len(data) == 32 and {tuple(d["tokens"]["shape"]) for d in data} == {(typical,)}
    assert all(1 <= t < 64 for t in data[0]["tokens"]["content"][:4])  # real token ids, not random


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.best_links: list[str] = []
        self._in_best = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "table":
            self._in_best = a.get("data-table") == "best"
        if tag == "a" and self._in_best and a.get("href"):
            self.best_links.append(str(a["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_best = False


def test_the_report_opens_with_both_models_linked_to_their_sections(workdir: Path) -> None:
    html = (workdir / "results" / "report.html").read_text()
    parser = Links()
    parser.feed(html)
    assert len(parser.best_links) == 2 and all(link[1:] in parser.ids for link in parser.best_links)
    assert (
        html.index('id="best"')
        < html.index("<h2>Model: tagger")
        < html.index("<h2>Model: wide_deep")
    )
    assert (
        "tokens:" in html[html.index('id="best"') : html.index('id="summary"')]
    )  # the sequence length perf used
