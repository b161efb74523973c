"""The report's structure stays what it was: every section, every table with its columns, every chart.

The page is built by the report package from real result files (tests/data/report_results/, the
workflow's own layout and file shapes, copied from the suite's runs at commit 96e700a: the tiny
digits run of test_workflow.py after its tight-tolerance rerun (onnx_fp16/int8/optimized failing
correctness, the torchscript formats' accuracy failing as a served stage), onnx's correctness,
capacity search, brute-force tuning and a degraded gate with its capacity plan from test_capacity,
test_tuning and test_gate). So one page holds every section the report can show.

The expected structure, tests/data/report_structure.json, was recorded from the page the
single-module report.py of commit 96e700a wrote from these files, before the report became a
package, by running this module with DEPLOYSNAKE_RECORD_REPORT_STRUCTURE=1. The test fails when a
section, a table, a table's column, a chart (or its kind of marks), a list or a contents entry of
that page is gone or out of order; something added is allowed (record again to keep it).
"""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from deploysnake.report import build_report

DATA = Path(__file__).resolve().parent / "data"
RESULTS = DATA / "report_results"
EXPECTED = DATA / "report_structure.json"
RECORD = "DEPLOYSNAKE_RECORD_REPORT_STRUCTURE"


class Structure(HTMLParser):
    """Sections (id, heading), tables (section, name, columns), charts (section, title, drawn or a
    note, marks), lists (section, class, items) and the contents' links of one report page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: dict[str, list[list[Any]]] = {
            k: [] for k in ("sections", "tables", "charts", "lists", "index")
        }
        self.open: list[str] = []  # ids of the <section>s we are in ("" for one with no id)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] | None = None
        self.heading_of: list[Any] | None = None  # a section's entry waiting for its heading
        self.columns: list[str] | None = None
        self.chart_title: str | None = None
        self.spec_of: dict[str, list[Any]] = {}
        self.spec: str | None = None

    def where(self) -> str:
        return next((s for s in reversed(self.open) if s), "")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        self.tags.append((tag, a))
        if tag == "section":
            self.open.append(a.get("id", ""))
            self.heading_of = [a.get("id", ""), ""]
            self.found["sections"].append(self.heading_of)
        elif tag in ("h2", "h3", "h4", "th", "a", "li") or (
            tag == "div" and "chart-missing" in classes
        ):
            self.text = []
        if tag == "table":
            name = a.get("data-table") or "class:" + a.get("class", "")
            self.columns = []
            self.found["tables"].append([self.where(), name, self.columns])
        elif tag == "ul" and a.get("class"):
            self.found["lists"].append([self.where(), a["class"], 0])
        elif tag == "div" and "chart" in classes:
            entry = [self.where(), a.get("data-title", ""), "chart", []]
            self.found["charts"].append(entry)
            self.spec_of[a.get("id", "")] = entry
        elif tag == "div" and "chart-missing" in classes:
            self.chart_title = ""
        elif tag == "script" and "chart-spec" in classes:
            self.spec = a.get("data-chart", "")
            self.text = []

    def handle_data(self, data: str) -> None:
        if self.text is not None:
            self.text.append(data)

    def handle_endtag(self, tag: str) -> None:
        while self.tags and self.tags[-1][0] != tag:
            self.tags.pop()  # an element HTML closes implicitly
        attrs = self.tags.pop()[1] if self.tags else {}
        text = " ".join("".join(self.text or []).split())
        if tag == "section":
            self.open.pop()
        elif tag in ("h2", "h3") and self.heading_of is not None and not self.heading_of[1]:
            self.heading_of[1] = text
        elif tag == "h4" and self.chart_title == "":
            self.chart_title = text
            self.found["charts"].append([self.where(), text, "note", []])
        elif tag == "th" and self.columns is not None:
            self.columns.append(text)
        elif tag == "table":
            self.columns = None
        elif tag == "li" and self.found["lists"]:
            self.found["lists"][-1][2] += 1
        elif tag == "a" and any(t == "nav" for t, _ in self.tags):
            self.found["index"].append([attrs.get("href", ""), text])
        elif tag == "script" and self.spec is not None:
            self.spec_of[self.spec][3] = sorted(marks(json.loads("".join(self.text or []))))
            self.spec = None
        elif tag == "div" and self.chart_title is not None and self.chart_title:
            self.chart_title = None
        if tag in ("h2", "h3", "h4", "th", "a", "li", "script"):
            self.text = None


def marks(spec: Any) -> set[str]:
    """Every mark type in a Vega-Lite spec, layers and facets included."""
    found: set[str] = set()
    if isinstance(spec, dict):
        mark = spec.get("mark")
        if mark is not None:
            found.add(mark if isinstance(mark, str) else str(mark.get("type")))
        for value in spec.values():
            found |= marks(value)
    elif isinstance(spec, list):
        for value in spec:
            found |= marks(value)
    return found


def structure(page: str) -> dict[str, list[list[Any]]]:
    parser = Structure()
    parser.feed(page)
    parser.close()
    return parser.found


def inputs(root: Path) -> dict[str, Any]:
    """build_report's arguments for a results folder, as workflow/scripts/report.py passes them."""

    def files(stage: str, pattern: str) -> list[Path]:
        return sorted((root / stage).glob(pattern))

    return {
        "config": {
            "models": {"digits": {"recipe": "recipes/digits"}},
            "formats": "auto",
            "devices": ["cpu"],
            "cost": {"per_hour": {"cpu": 0.5}},
        },
        "correctness": files("correctness", "*/*.json"),
        "accuracy": files("accuracy", "*/*/*.csv"),
        "offline": files("perf_offline", "*/*/*.csv"),
        "online": [
            p for p in files("perf_online", "*/*/*.csv") if not p.name.endswith(".floor.csv")
        ],
        "native": files("native", "*/*/*.csv"),
        "tuning": files("tuning", "*/*/*/*"),
        "capacity": files("capacity", "*/*/*"),
        "environment": files("environment", "*.json"),
        "skipped": [
            {"model": "digits", "format": "tensorrt_fp16", "reason": "skipped: no GPU device"}
        ],
        "p99_budget_ms": 10.0,
        "deploy": [Path("results/deploy/cpu.tar.gz")],
        "summary_json": root / "summary.json",
        "gate_json": root / "gate.json",
    }


def in_order(expected: list[Any], actual: list[Any]) -> list[Any]:
    """The expected entries not found in `actual` in the same order (a table's columns: every
    expected column present, in order, others allowed between)."""
    missing, at = [], 0
    for want in expected:
        for i in range(at, len(actual)):
            got = actual[i]
            same = (
                got[:2] == want[:2] and in_order(want[2], got[2]) == []
                if isinstance(want[-1], list) and len(want) == 3
                else got == want
            )
            if same:
                at = i + 1
                break
        else:
            missing.append(want)
    return missing


# What a default run's page shows (digits on cpu, no tuning, capacity search or baseline): the
# recorded sections, these tables (their columns depend on the run's data: the main test checks
# them) and the recorded charts' titles (on a busy machine a chart may be a "no stable points"
# note instead).
DEFAULT_RUN_TABLES = {
    "best", "summary", "correctness", "accuracy", "offline", "online", "serving-floor",
    "served-vs-native", "hardware", "software", "packages", "provenance",
}  # fmt: skip
DEFAULT_RUN_SECTIONS = ("correctness", "accuracy", "offline", "online", "native")


def default_run_problems(page: str) -> dict[str, list[Any]]:
    """What a default run's report (tests/test_workflow.py's tiny run) lacks of the recorded
    structure: the sections, tables and chart titles a default run shows."""
    expected, found = json.loads(EXPECTED.read_text()), structure(page)
    model = {s[0] for s in expected["sections"] if s[1].startswith("Model:")}
    kept = {
        s[0]
        for s in expected["sections"]
        if not s[0].startswith("s-")
        or s[0] in model
        or any(f"-{k}-" in s[0] for k in DEFAULT_RUN_SECTIONS)
    } - {"gate", "plan"}
    titles = [c[:2] for c in found["charts"]]
    return {
        "sections": in_order([s for s in expected["sections"] if s[0] in kept], found["sections"]),
        "tables": in_order(
            [t[:2] for t in expected["tables"] if t[1] in DEFAULT_RUN_TABLES],
            [t[:2] for t in found["tables"]],
        ),
        "charts": in_order([c[:2] for c in expected["charts"] if c[0] in kept], titles),
    }


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("structure") / "report.html"
    build_report(**inputs(RESULTS), output=out)
    return out.read_text(encoding="utf-8")


def test_the_report_keeps_every_section_table_column_and_chart(page: str) -> None:
    found = structure(page)
    if os.environ.get(RECORD):
        EXPECTED.write_text(json.dumps(found, indent=1, ensure_ascii=False) + "\n")
        pytest.skip(f"recorded {EXPECTED}")
    expected = json.loads(EXPECTED.read_text())
    # The recording itself covers what the package must keep showing.
    assert {t[1] for t in expected["tables"]} >= {
        "best", "best_capacity", "summary", "correctness", "accuracy", "offline", "online",
        "serving-floor", "served-vs-native", "tuning", "tuning_side_by_side", "capacity",
        "hardware", "software", "packages", "provenance", "class:gate",
    }  # fmt: skip
    assert len([c for c in expected["charts"] if c[2] == "chart"]) >= 8
    problems = {key: in_order(expected[key], found[key]) for key in expected}
    assert not any(problems.values()), {k: v for k, v in problems.items() if v}


def test_the_structure_check_sees_a_missing_column_and_chart(page: str) -> None:
    """The check itself: a page with one column and one chart fewer fails it."""
    expected = json.loads(EXPECTED.read_text())
    broken = page.replace("<th>served/native</th>", "", 1)
    first = broken.index('<div class="chart-box">')
    broken = broken[:first] + broken[broken.index("</script></div>", first) + 15 :]
    found = structure(broken)
    assert in_order(expected["tables"], found["tables"])
    assert in_order(expected["charts"], found["charts"])
