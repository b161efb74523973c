"""report.build_report on small, hand-written inputs in the workflow's exact file shapes.

Two models: "digits" (onnx and torchscript served on cpu, onnx also on gpu, tensorrt failing correctness) and a
model named <script>alert(1)</script> (one offline point, online all unstable) to prove escaping end to end.
"""

from __future__ import annotations

import base64
import csv
import gzip
import json
import re
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(
    0, str(Path(__file__).resolve().parent)
)  # tests/browser.py, whatever pytest's import mode

from browser import chart_summary, chromium_available, render_in_chromium

from deploysnake.report import (
    OPEN_MODELS,
    PACK_ABOVE_BYTES,
    anchor,
    build_report,
    script_json,
)
from deploysnake.report.load import ACCURACY_NUMBERS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_dag import load_time, synthetic_results

EVIL = "<script>alert(1)</script>"
# A format name reaches the chart specs (legend, tooltip data) inside <script>: it must not end that script.
EVIL_FORMAT = (
    'onnx</script><script>document.documentElement.setAttribute("data-pwned","2")</script><!--'
)
# If the config dump could close a <script>, this would run and mark the page; the browser test checks it did not.
PWN = '</script><script>document.documentElement.setAttribute("data-pwned","1")</script><!--'
REASON = "logits: max abs err 0.3 (atol 1e-09) <b>too far</b>"
PERF_ANALYZER = [
    "Concurrency",
    "Inferences/Second",
    "Client Send",
    "Network+Server Send/Recv",
    "Server Queue",
    "Server Compute Input",
    "Server Compute Infer",
    "Server Compute Output",
    "Client Recv",
    "p50 latency",
    "p90 latency",
    "p95 latency",
    "p99 latency",
    "Avg latency",  # a further perf_analyzer column: must be kept and shown
]
PERF_HEADER = [
    "model",
    "format",
    "device",
    "mode",
    "batch",
    "concurrency",
    "status",
    *PERF_ANALYZER,
]
ACC_HEADER = ["model", "format", "device", "metric", *ACCURACY_NUMBERS]
NATIVE_HEADER = [
    "model",
    "format",
    "device",
    "batch",
    "throughput_infer_per_s",
    "p50_latency_us",
    "p99_latency_us",
    "iterations",
]
# digits' served offline throughput per image is FACTOR x native's, so served/native is FACTOR at every batch;
# onnx on cpu is measured at offline concurrency 2 too, where it reaches PIPELINED x native.
FACTOR = {"onnx": 0.9, "torchscript": 0.8}
PIPELINED = 0.95


def perf_row(
    model: str, fmt: str, device: str, mode: str, batch: int, conc: int, status: str, tput: float
) -> list[Any]:
    """One perf CSV row; a non-"ok" row has empty numbers unless tput is given (the report must not trust them)."""
    if status != "ok" and not tput:
        return [model, fmt, device, mode, batch, conc, status] + [""] * len(PERF_ANALYZER)
    lat = 1e6 * batch * conc / tput  # µs, consistent with the throughput
    parts = [0.05, 0.15, 0.1, 0.05, 0.5, 0.05, 0.1]
    return [
        model,
        fmt,
        device,
        mode,
        batch,
        conc,
        status,
        conc,
        tput,
        *(round(lat * p) for p in parts),
        round(lat),
        round(lat * 1.2),
        round(lat * 1.3),
        round(lat * 1.5),
        round(lat * 1.05),
    ]


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def correctness_doc(model: str, fmt: str, passed: bool) -> dict[str, Any]:
    out = {
        "atol": 1e-4,
        "rtol": 1e-3,
        "passed": True,
        "max_abs_err": 6.6e-06,
        "max_rel_err": 2.5e-4,
    }
    if not passed:
        out = {"atol": 1e-9, "rtol": 1e-9, "passed": False, "max_abs_err": 0.3, "max_rel_err": 0.02}
    return {
        "format": fmt,
        "model": model,
        "passed": passed,
        "samples": 256,
        "reason": "" if passed else REASON,
        "outputs": {"logits": out},
        "build_seconds": 12.5,  # the export's wall time (io.json), shown as `build s`
    }


def make_inputs(root: Path) -> dict[str, Any]:
    """build_report's keyword arguments; files sit under neutral names since a model name may hold any character."""
    correctness, accuracy, offline, online, native = [], [], [], [], []
    for i, (model, fmt, passed) in enumerate(
        [
            ("digits", "onnx", True),
            ("digits", "torchscript", True),
            ("digits", "tensorrt", False),
            (EVIL, EVIL_FORMAT, True),
        ]
    ):
        p = root / "correctness" / f"{i}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(correctness_doc(model, fmt, passed)))
        correctness.append(p)

    served = [
        ("digits", "onnx", "cpu"),
        ("digits", "torchscript", "cpu"),
        ("digits", "onnx", "gpu"),
    ]
    for i, (model, fmt, dev) in enumerate(served):
        f = FACTOR[fmt] * (5 if dev == "gpu" else 1)
        batches = [1, 2, 4, 8]
        off = [perf_row(model, fmt, dev, "offline", b, 1, "ok", 1000 * b * f) for b in batches]
        if fmt == "torchscript":
            off[-1] = perf_row(
                model, fmt, dev, "offline", 8, 1, "unstable", 99_999
            )  # numbers, yet unstable
        if (fmt, dev) == ("onnx", "cpu"):
            off += [
                perf_row(model, fmt, dev, "offline", b, 2, "ok", 1000 * b * PIPELINED)
                for b in batches
            ]
        offline.append(write_csv(root / "offline" / f"{i}.csv", PERF_HEADER, off))
        on = [perf_row(model, fmt, dev, "online", 1, c, "ok", 900 * c * f) for c in (1, 2, 4)]
        if fmt == "torchscript":
            on[1] = perf_row(model, fmt, dev, "online", 1, 2, "unstable", 0)
        online.append(write_csv(root / "online" / f"{i}.csv", PERF_HEADER, on))
        nat = [
            [model, fmt, dev, b, 1000 * b * (5 if dev == "gpu" else 1), 800, 1200, 500]
            for b in batches
        ]
        if fmt == "torchscript":
            nat[-1][6] = "nan"  # a NaN must read as missing
        native.append(write_csv(root / "native" / f"{i}.csv", NATIVE_HEADER, nat))
        accuracy.append(
            write_csv(
                root / "accuracy" / f"{i}.csv",
                ACC_HEADER,
                [
                    [model, fmt, dev, "accuracy", 0.9833, 0.9833, 0.9833, 0.0, 360, 1.2e-6],
                    [model, fmt, dev, "cross_entropy", 0.0612, 0.0612, 0.0613, 1e-4, 360, 1.2e-6],
                ],
            )
        )

    # The evil model: a single offline point, every online point unstable, served metric missing.
    offline.append(
        write_csv(
            root / "offline" / "evil.csv",
            PERF_HEADER,
            [perf_row(EVIL, EVIL_FORMAT, "cpu", "offline", 1, 1, "ok", 500)],
        )
    )
    online.append(
        write_csv(
            root / "online" / "evil.csv",
            PERF_HEADER,
            [perf_row(EVIL, EVIL_FORMAT, "cpu", "online", 1, c, "unstable", 0) for c in (1, 2)],
        )
    )
    native.append(
        write_csv(
            root / "native" / "evil.csv",
            NATIVE_HEADER,
            [[EVIL, EVIL_FORMAT, "cpu", 1, 1000, 900, 1100, 100]],
        )
    )
    accuracy.append(
        write_csv(
            root / "accuracy" / "evil.csv",
            ACC_HEADER,
            [[EVIL, EVIL_FORMAT, "cpu", "accuracy", 0.5, 0.5, "", "", 10, ""]],
        )
    )

    config = {
        "models": {"digits": {"recipe": "recipes/digits"}, EVIL: {"recipe": "x"}},
        "note": PWN,
        "formats": ["onnx", "torchscript", "tensorrt"],
    }
    environment = [root / "environment" / "cpu.json", root / "environment" / "a100.json"]
    environment[0].parent.mkdir(parents=True, exist_ok=True)
    software = {
        "packages": {"torch": "2.13.0", "onnxruntime": "1.31.1"},
        "platform": "Linux-test",
        "python": "3.11.7",
        "deploysnake": "0.1.0",
        "git_commit": "abc1234",
        "config": config,
    }
    environment[0].write_text(
        json.dumps(
            {
                "device": "cpu",
                "hardware": {"cpu": "Test CPU <x86>", "cores": 2, "memory_gb": 23.4, "gpus": []},
                **software,
            }
        )
    )
    gpu = {"name": "NVIDIA A100-SXM4-80GB", "memory": "81920 MiB", "driver": "550.54"}
    environment[1].write_text(
        json.dumps(
            {
                "device": "a100",
                "hardware": {"cpu": "Node CPU", "cores": 64, "memory_gb": 512, "gpus": [gpu]},
                **software,
            }
        )
    )
    return {
        "config": config,
        "correctness": correctness,
        "accuracy": accuracy,
        "offline": offline,
        "online": online,
        "native": native,
        "environment": environment,
    }


class Tables(HTMLParser):
    """Rows of every <table data-table=NAME>, as dicts keyed by header text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[tuple[str, list[dict[str, str]]]] = []
        self.header: list[str] = []
        self.row: list[str] | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append((dict(attrs).get("data-table") or "", []))
            self.header = []
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.cell = []

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append("".join(self.cell).strip())
            self.cell = None
        elif tag == "tr" and self.row is not None:
            if not self.header:
                self.header = self.row
            else:
                self.tables[-1][1].append(dict(zip(self.header, self.row, strict=True)))
            self.row = None


def rows(html: str, name: str) -> list[dict[str, str]]:
    parser = Tables()
    parser.feed(html)
    return [r for table, rs in parser.tables if table == name for r in rs]


def number(text: str) -> float:
    return float(text.replace(",", ""))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    out = root / "out" / "report.html"
    build_report(**make_inputs(root / "in"), output=out)
    return out


@pytest.fixture(scope="module")
def html(report: Path) -> str:
    return report.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def dom(report: Path) -> str:
    if not chromium_available():
        pytest.skip(
            "chromium is not installed (scripts/setup.sh test installs it); cannot check rendered charts"
        )
    return render_in_chromium(report)


def test_self_contained(html: str) -> None:
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I), (
        "page loads something remote"
    )
    assert not re.search(r"<link\b|@import", html, re.I)
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)
    assert html.count("window.vegaEmbed=") == 1, "vega-embed bundle must be inlined exactly once"


def test_untrusted_strings_are_escaped(html: str) -> None:
    assert "<script>alert(1)" not in html
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    )  # shown as text (headings, tables, index)
    assert 'setAttribute("data-pwned"' not in html
    assert PWN not in html and "</script><script>document" not in html and EVIL_FORMAT not in html
    # every <script> block closes where the page means it to: the bundle, the embed options, one per chart
    opened = len(re.findall(r"<script\b", html, re.I))
    assert opened == len(re.findall(r"</script>", html, re.I)) == 2 + html.count('class="chart"')
    assert "<b>too far</b>" not in html and "&lt;b&gt;too far&lt;/b&gt;" in html


def test_script_json_cannot_close_script() -> None:
    text = script_json({"a": PWN, "b": "<!-- -->", "c": "x & y"})
    assert "</" not in text and "<!--" not in text and "-->" not in text and "<" not in text
    assert json.loads(text) == {"a": PWN, "b": "<!-- -->", "c": "x & y"}


def test_failed_format_not_served(html: str) -> None:
    failed = re.findall(r'<li class="bad" data-format="([^"]*)">(.*?)</li>', html)
    assert [f for f, _ in failed] == ["tensorrt"]
    assert (
        "not served: logits: max abs err 0.3 (atol 1e-09) &lt;b&gt;too far&lt;/b&gt;"
        in failed[0][1]
    )
    corr = {(r["model"], r["format"]): r for r in rows(html, "correctness")}
    assert corr[("digits", "tensorrt")]["status"] == f"FAILED: {REASON}"
    assert corr[("digits", "onnx")]["status"] == "passed"
    assert corr[("digits", "onnx")]["max abs err"] == "6.6e-06"
    summary = [r for r in rows(html, "summary") if r["format"] == "tensorrt"]
    assert len(summary) == 1 and summary[0]["correctness"] == f"FAILED — not served: {REASON}"
    assert summary[0]["device"] == "—" and summary[0]["best offline infer/s"] == "—"
    assert not [
        r for r in rows(html, "offline") + rows(html, "online") if r["format"] == "tensorrt"
    ]


def test_unstable_rows_show_unstable(html: str) -> None:
    online = rows(html, "online")
    bad = [r for r in online if r["status"] == "unstable"]
    assert len(bad) == 3  # torchscript concurrency 2 and the evil model's two points
    for r in bad:
        for col in PERF_ANALYZER:
            assert r[col] == "unstable", (col, r)
    ts2 = next(r for r in bad if r["model"] == "digits")
    assert ts2["format"] == "torchscript" and ts2["concurrency"] == "2"
    ok = next(
        r
        for r in online
        if r["model"] == "digits"
        and r["format"] == "onnx"
        and r["device"] == "cpu"
        and r["concurrency"] == "4"
    )
    assert number(ok["Inferences/Second"]) == pytest.approx(900 * 4 * 0.9, rel=1e-3)
    assert re.fullmatch(r"[\d,.]+", ok["Avg latency"])  # the extra perf_analyzer column is kept
    off8 = next(
        r for r in rows(html, "offline") if r["format"] == "torchscript" and r["batch"] == "8"
    )
    assert off8["Inferences/Second"] == "unstable" and off8["p99 latency"] == "unstable"
    sv8 = next(
        r
        for r in rows(html, "served-vs-native")
        if r["format"] == "torchscript" and r["batch"] == "8"
    )
    assert sv8["served infer/s"] == "unstable" and sv8["served/native"] == "unstable"
    assert (
        number(sv8["native infer/s"]) == 8000 and sv8["native p99 µs"] == "—"
    )  # NaN reads as missing
    # one served-vs-native row per offline concurrency, each against the same native run
    onnx8 = [
        r
        for r in rows(html, "served-vs-native")
        if (r["format"], r["device"], r["batch"]) == ("onnx", "cpu", "8")
    ]
    assert [(r["concurrency"], r["served/native"], number(r["native infer/s"])) for r in onnx8] == [
        ("1", "0.9", 8000),
        ("2", "0.95", 8000),
    ]


def test_missing_values_dash(html: str) -> None:
    evil = [r for r in rows(html, "accuracy") if r["model"] == EVIL]
    assert len(evil) == 1
    assert (
        evil[0]["served"] == "—"
        and evil[0]["served_minus_source"] == "—"
        and evil[0]["source"] == "0.5"
    )


def test_summary_numbers(html: str) -> None:
    summary = {(r["model"], r["format"], r["device"]): r for r in rows(html, "summary")}
    assert len(summary) == 5
    assert list(rows(html, "summary")[0])[:4] == ["model", "format", "device", "correctness"]
    onnx = summary[("digits", "onnx", "cpu")]
    assert onnx["correctness"] == "passed"
    assert list(rows(html, "summary")[0])[4] == "build s" and number(onnx["build s"]) == 12.5
    assert number(onnx["best offline infer/s"]) == 7600 and onnx["offline batch"] == "8"
    assert (
        number(onnx["best online infer/s"]) == pytest.approx(3240)
        and onnx["online concurrency"] == "4"
    )
    # at the largest batch, the better of its two offline concurrencies
    assert (onnx["served/native"], onnx["at batch"], onnx["at concurrency"]) == ("0.95", "8", "2")
    assert onnx["served vs source"].startswith("accuracy: 0.9833 (source 0.9833")
    ts = summary[("digits", "torchscript", "cpu")]
    assert (
        number(ts["best offline infer/s"]) == 3200 and ts["offline batch"] == "4"
    )  # batch 8 was unstable
    assert (ts["served/native"], ts["at batch"], ts["at concurrency"]) == ("0.8", "4", "1")
    evil = summary[(EVIL, EVIL_FORMAT, "cpu")]
    assert evil["best online infer/s"] == "—" and number(evil["best offline infer/s"]) == 500


def test_sections_and_index(html: str) -> None:
    ids = re.findall(r'<section id="([^"]+)"', html)
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[A-Za-z0-9_-]+", i) for i in ids)
    links = re.findall(r'<a href="#([^"]+)"', html)
    assert set(links) == set(ids)
    # models in sorted order ("<" sorts before "d"), between the summary and the environment
    order = [
        html.index(s)
        for s in (
            'id="summary"',
            "<h2>Model: &lt;script&gt;",
            "<h2>Model: digits",
            'id="environment"',
        )
    ]
    assert order == sorted(order)


def test_charts_and_notes(html: str) -> None:
    # digits: cpu and gpu, 6 charts each; evil: 2 offline + 2 served-vs-native, its online ones are notes.
    assert html.count('class="chart"') == 16
    assert html.count("no stable points") == 2


def test_environment(html: str) -> None:
    hardware = {r["device"]: r for r in rows(html, "hardware")}
    assert (
        hardware["cpu"]["name"] == "Test CPU <x86>"
        and hardware["cpu"]["cores / SMs"] == "2"
        and hardware["cpu"]["memory"] == "23.4 GB"
    )
    # the GPU row: what its node reported (name, memory), and the kind's datasheet peaks
    a100 = hardware["a100"]
    assert (a100["name"], a100["memory"], a100["cores / SMs"]) == (
        "NVIDIA A100-SXM4-80GB",
        "81920 MiB",
        "108",
    )
    assert (
        a100["peak TFLOPS (FP32/FP16)"] == "19.5 (312.0)"
        and a100["memory bandwidth (GB/s)"] == "2039"
    )
    software = {r["item"]: r["value"] for r in rows(html, "software")}
    assert software["git commit"] == "abc1234"
    assert {r["package"]: r["version"] for r in rows(html, "packages")} == {
        "torch": "2.13.0",
        "onnxruntime": "1.31.1",
    }
    pre = re.search(r'<pre class="config">(.*?)</pre>', html, re.S)
    assert (
        pre
        and "&lt;/script&gt;&lt;script&gt;document" in pre.group(1)
        and "formats:" in pre.group(1)
    )


def test_only_environment(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "r.html"
    build_report(inputs["config"], [], [], [], [], [], inputs["environment"], out)
    text = out.read_text()
    assert 'id="environment"' in text and 'class="chart"' not in text and "2.13.0" in text


def test_all_unstable_and_single_row(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path / "in")
    evil = [p for p in inputs["offline"] + inputs["online"] if p.name == "evil.csv"]
    out = tmp_path / "r.html"
    build_report({}, [], [], [evil[0]], [evil[1]], [], inputs["environment"], out)
    text = out.read_text()
    # offline: both charts from one point; online: two notes; served vs native: served only, no ratio
    assert text.count('class="chart"') == 3 and text.count("no stable points") == 2
    assert "no batch size with a stable served and a native run" in text
    assert [r["status"] for r in rows(text, "online")] == ["unstable", "unstable"]


@pytest.mark.browser
def test_browser_charts_have_data(dom: str) -> None:
    charts = chart_summary(dom)
    assert len(charts) == 16
    for c in charts:
        assert c["error"] is None, c
        assert c["has_svg"] and c["marks"] > 0, c
    tput = next(c for c in charts if c["title"] == "digits · cpu: offline throughput vs batch")
    # 4 onnx points at each of 2 concurrencies + 3 torchscript (batch 8 unstable, not charted);
    # a line per format and concurrency
    assert tput["by_mark"] == {"line": 3, "symbol": 11}, tput
    ratio = next(c for c in charts if c["title"] == "digits · cpu: served / native throughput")
    assert ratio["by_mark"] == {"line": 3, "symbol": 11, "rule": 1}, ratio
    breakdown = next(
        c for c in charts if c["title"] == "digits · cpu: online latency breakdown per concurrency"
    )
    assert breakdown["by_mark"].get("rect") == 7 * (3 + 2), (
        breakdown
    )  # 7 components x (3 onnx + 2 stable torchscript)


@pytest.mark.browser
def test_browser_shows_evil_name_as_text(dom: str) -> None:
    class Scripts(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.inside = False
            self.bodies: list[str] = []
            self.text: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "script":
                self.inside = True
                self.bodies.append("")

        def handle_endtag(self, tag: str) -> None:
            if tag == "script":
                self.inside = False

        def handle_data(self, data: str) -> None:
            if self.inside:
                self.bodies[-1] += data
            else:
                self.text.append(data)

    parsed = Scripts()
    parsed.feed(dom)
    root = re.search(r"<html\b[^>]*>", dom)
    assert root and "data-pwned" not in root.group(0)  # the config payload never ran
    injected = (
        "alert(1)",
        'document.documentElement.setAttribute("data-pwned","1")',
        'document.documentElement.setAttribute("data-pwned","2")',
    )
    assert not [b for b in parsed.bodies if b.strip() in injected]
    assert f"Model: {EVIL}" in "".join(parsed.text)  # the name reads as text
    assert sum(b.count("<script") for b in parsed.bodies) == 0  # not even inside a script


@pytest.mark.browser
def test_render_timeout_is_bounded(tmp_path: Path) -> None:
    if not chromium_available():
        pytest.skip("chromium is not installed; nothing to time out")
    page = tmp_path / "slow.html"
    page.write_text("<html><body><script>while (true) {}</script></body></html>")
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        render_in_chromium(page, timeout_s=3)
    assert time.monotonic() - start < 20


def test_non_finite_numbers_and_failed_only_model(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path / "in")
    odd = perf_row("odd", "onnx", "cpu", "offline", 2, 1, "ok", 100)
    odd[PERF_HEADER.index("Inferences/Second")] = "inf"
    off = write_csv(
        tmp_path / "odd.csv",
        PERF_HEADER,
        [perf_row("odd", "onnx", "cpu", "offline", 1, 1, "ok", 100), odd],
    )
    failed = [p for p in inputs["correctness"] if not json.loads(p.read_text())["passed"]]
    out = tmp_path / "r.html"
    build_report(
        {}, failed, [], [off], [], [], inputs["environment"], out
    )  # inf must not break the chart JSON
    text = out.read_text()
    assert [r["Inferences/Second"] for r in rows(text, "offline")] == ["100", "inf"]
    assert (
        "<h2>Model: digits</h2>" in text and "not served: logits" in text
    )  # a model with nothing served still shows


def test_a_model_with_no_stable_point_has_a_best_row_saying_so(tmp_path: Path) -> None:
    """A model whose every perf point is disturbed or unstable is not chosen, and it does not drop
    out of the best-format table without a word: its row says there is no stable point."""
    inputs = make_inputs(tmp_path / "in")
    busy = write_csv(
        tmp_path / "busy.csv",
        PERF_HEADER,
        [
            perf_row("busy", "onnx", "cpu", "offline", 1, 1, "disturbed", 100),
            perf_row("busy", "onnx", "cpu", "offline", 8, 1, "unstable", 0),
            perf_row("calm", "onnx", "cpu", "offline", 1, 1, "ok", 1000),
        ],
    )
    out = tmp_path / "r.html"
    build_report({}, [], [], [busy], [], [], inputs["environment"], out)
    best = {r["model"]: r["best format"] for r in rows(out.read_text(), "best")}
    assert best["calm"] == "onnx"
    assert best["busy"].startswith("no stable point"), best


def test_tuning_gain_is_the_side_by_side_medians_and_says_so() -> None:
    from deploysnake.report import side_by_side_gain

    def median(t: float, lo: float, hi: float) -> dict[str, float]:
        return {"throughput": t, "p99_us": 900.0, "min": lo, "max": hi, "stable_rounds": 3}

    base = {
        "trial": "A",
        "naive": "U",
        "naive_throughput": 1000.0,
        "search_best": "A",
        "search_best_throughput": 3000.0,
        "measured_by": "side_by_side",
    }
    side = {"A": median(1300.0, 1250.0, 1400.0), "U": median(1000.0, 900.0, 1100.0)}
    text = side_by_side_gain({**base, "side_by_side": side})
    assert (
        "(medians of 3 round(s) side by side, 2 configuration(s) alternated); untuned (U) 1,000.0 "
        "infer/s: <b>×1.30</b> (the trials" in text
    )
    assert "one short measurement each: ×3.00)" in text and "spread" not in text
    overlapping = {
        **side,
        "U": median(1000.0, 800.0, 1260.0),
    }  # the untuned's best round beats the chosen's worst
    assert "within the rounds' spread (chosen 1,250–1,400, untuned 800–1,260)" in side_by_side_gain(
        {**base, "side_by_side": overlapping}
    )
    # the search's best trial lost the side by side to another candidate: said, with both numbers
    lost = {
        **base,
        "search_best": "B",
        "side_by_side": {**side, "B": median(1100.0, 1000.0, 1200.0)},
    }
    assert (
        "the search's best trial, B (3,000.0 infer/s in its trial), measured 1,100.0 infer/s side by side"
        in side_by_side_gain(lost)
    )
    assert "the untuned configuration is the best measured" in side_by_side_gain(
        {**base, "trial": "U", "side_by_side": side}
    )
    assert (
        "×3.00 over the untuned configuration (U, 1,000.0 infer/s), one trial measurement each"
        in side_by_side_gain(
            {**base, "measured_by": "trial", "throughput": 3000.0, "side_by_side": {}}
        )
    )


USAGE_HEADER = ["foreign_cpu", "server_cpu", "client_cpu", "server_peak_rss_mb"]


@pytest.mark.browser
def test_browser_shows_disturbed_and_baseline_suspect_points(tmp_path: Path) -> None:
    """A disturbed point keeps its load beside it and shows no figure; a served throughput above the
    in-process one reads "baseline suspect" (or within the spread), never as a served/native above 1,
    in the model section and in the summary; disturbed points are not charted."""
    if not chromium_available():
        pytest.skip("chromium is not installed (scripts/setup.sh test installs it)")
    model = "busy"
    correctness = tmp_path / "c.json"
    correctness.write_text(json.dumps(correctness_doc(model, "onnx", True)))
    offline_rows = [
        (8, 1, "ok", 5_000.0, 0.05),
        (8, 2, "disturbed", 2_500.0, 1.1),  # numbers kept in the CSV, never shown as a result
        (32, 1, "ok", 1_050.0, 0.02),  # above native by less than the spread
        (64, 1, "ok", 9_000.0, 0.03),  # above native by far: the native job marked it suspect
    ]
    offline = write_csv(
        tmp_path / "offline.csv",
        PERF_HEADER + USAGE_HEADER,
        [
            perf_row(model, "onnx", "cpu", "offline", b, c, st, t) + [f, 0.9, 0.3, 123.4]
            for b, c, st, t, f in offline_rows
        ],
    )
    native = write_csv(
        tmp_path / "native.csv",
        [*NATIVE_HEADER, "status", "native_cpu_ms_per_1k"],
        [
            [model, "onnx", "cpu", 8, 10_000.0, 700, 900, 100, "ok", 90.0],
            [model, "onnx", "cpu", 32, 1_000.0, 700, 900, 100, "ok", 900.0],
            [model, "onnx", "cpu", 64, 5_000.0, 700, 900, 100, "baseline suspect", 180.0],
        ],
    )
    online = write_csv(
        tmp_path / "online.csv",
        PERF_HEADER,
        [
            perf_row(model, "onnx", "cpu", "online", 1, c, "ok", t)
            for c, t in ((1, 900.0), (4, 2e3))
        ],
    )
    write_csv(  # the serving floor beside the online sweep, as the online job writes it
        tmp_path / "online.floor.csv",
        PERF_HEADER,
        [
            perf_row(model, "onnx", "cpu", "online", 1, c, "ok", t)
            for c, t in ((1, 1e3), (4, 2500.0))
        ],
    )
    out = tmp_path / "r.html"
    build_report({}, [correctness], [], [offline], [online], [native], [], out)
    dom = render_in_chromium(out)

    off = {(r["batch"], r["concurrency"]): r for r in rows(dom, "offline")}
    assert off[("8", "2")]["Inferences/Second"] == "disturbed"
    assert off[("8", "2")]["p99 latency"] == "disturbed"
    assert off[("8", "2")]["foreign_cpu"] == "1.1"  # its load stays
    assert number(off[("8", "1")]["Inferences/Second"]) == 5_000
    assert 'class="disturbed">disturbed</td>' in dom

    sv = {(r["batch"], r["concurrency"]): r for r in rows(dom, "served-vs-native")}
    assert sv[("8", "1")]["served/native"] == "0.5"
    assert sv[("8", "2")]["served/native"] == "disturbed"
    assert sv[("32", "1")]["served/native"] == "≈ 1, within the spread"
    assert sv[("64", "1")]["served/native"] == "baseline suspect"
    assert sv[("64", "1")]["native infer/s"] == "baseline suspect"
    assert 'class="suspect">baseline suspect</td>' in dom
    # server CPU per 1,000 inferences: 0.9 core / 5,000 infer/s = 180 ms; in-process 90 ms: x2
    assert number(sv[("8", "1")]["server CPU ms/1k"]) == 180
    assert number(sv[("8", "1")]["serving overhead"]) == 2
    ratios = [r["served/native"] for r in rows(dom, "served-vs-native")]
    assert all(float(x) <= 1 for x in ratios if re.fullmatch(r"[\d.]+", x)), ratios

    [summary] = rows(dom, "summary")
    assert (summary["served/native"], summary["at batch"]) == ("baseline suspect", "64")
    assert (
        summary["online served/floor"] == "0.8"
    )  # best online c4: 2,000 against the floor's 2,500
    floor = {r["concurrency"]: r for r in rows(dom, "serving-floor")}
    assert (floor["1"]["served/floor"], number(floor["4"]["floor infer/s"])) == ("0.9", 2500)
    best = rows(dom, "best")[0]
    # b64 is over the 10 ms p99 budget: the best is b8 c1, 5,000 infer/s on 0.9 server core
    assert (best["batch"], number(best["infer/s per server core"])) == ("8", 5_556)
    assert number(best["serving overhead"]) == 2
    assert number(best["server peak MiB"]) == 123.4
    # the offline throughput chart holds the three stable points only (not the disturbed one)
    tput = next(
        c for c in chart_summary(dom) if c["title"] == "busy · cpu: offline throughput vs batch"
    )
    assert tput["by_mark"].get("symbol") == 3, tput
    # the online chart draws the serving floor beside the sweep: two served points, two floor points
    on = next(
        c for c in chart_summary(dom) if c["title"].startswith("busy · cpu: online throughput vs")
    )
    assert (on["by_mark"].get("symbol"), on["by_mark"].get("line")) == (4, 2), on


def assert_every_model_summarised(html: str, models: list[str]) -> None:
    """The summary across models holds every variant (two formats each), the best table every model."""
    assert len(rows(html, "summary")) == 2 * len(models)
    assert {r["model"] for r in rows(html, "best")} == set(models)


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A report of more models than OPEN_MODELS: two formats each, on cpu."""
    root = tmp_path_factory.mktemp("many")
    models = [f"model_{i}" for i in range(OPEN_MODELS + 2)]
    out = root / "report.html"
    build_report(
        **synthetic_results(root / "in", models, ["onnx", "torchscript_trace"]), output=out
    )
    return out, models


def test_many_models_summary_first_then_closed_sections(many: tuple[Path, list[str]]) -> None:
    report, models = many
    html = report.read_text(encoding="utf-8")
    assert html.count("window.vegaEmbed=") == 1, "vega-embed bundle must be inlined exactly once"
    first_model = html.index('<details class="model"')
    assert html.index('id="best"') < html.index('id="summary"') < first_model
    # one section per model, each closed until asked for, with a one-line outline
    sections = re.findall(r'<details class="model"( open)?><summary>(.*?)</summary>', html)
    assert [s.split("</span>")[0].split(">")[-1] for _, s in sections] == models
    assert not [o for o, _ in sections if o]
    assert "2 format(s) checked, 2 passed; best offline: torchscript_trace on cpu" in sections[0][1]
    assert_every_model_summarised(html, models)


@pytest.mark.browser
def test_many_models_charts_are_drawn_when_their_section_opens(
    many: tuple[Path, list[str]],
) -> None:
    if not chromium_available():
        pytest.skip("chromium is not installed (scripts/setup.sh test installs it)")
    report, models = many
    closed = chart_summary(render_in_chromium(report))
    assert len(closed) == 6 * len(models) and not [c for c in closed if c["has_svg"]], closed[:2]
    # a link to a model's offline section (as the contents give) opens that model, and only it
    target = models[1]
    opened = chart_summary(render_in_chromium(report, fragment=anchor(target, "offline")))
    drawn = [c for c in opened if c["has_svg"]]
    assert len(drawn) == 6 and all(c["title"].startswith(f"{target} · ") for c in drawn), drawn
    assert all(c["marks"] > 0 and c["error"] is None for c in drawn), drawn


@pytest.fixture(scope="module")
def packed(many: tuple[Path, list[str]]) -> tuple[Path, list[str]]:
    """The `many` report's results built again with every closed section packed (as a report of
    sections above PACK_ABOVE_BYTES is: about 30 models and more)."""
    plain, models = many
    out = plain.with_name("packed.html")
    build_report(
        **synthetic_results(plain.parent / "in", models, ["onnx", "torchscript_trace"]),
        output=out,
        pack_above=0,
    )
    return out, models


def test_a_large_reports_closed_sections_are_packed_and_hold_the_same_html(
    many: tuple[Path, list[str]], packed: tuple[Path, list[str]]
) -> None:
    plain_html = many[0].read_text(encoding="utf-8")
    html, models = packed[0].read_text(encoding="utf-8"), packed[1]
    assert many[0].stat().st_size < PACK_ABOVE_BYTES, "the small report stays plain"
    assert 'class="packed-section"' not in plain_html
    payloads = re.findall(
        r'<details class="model" data-ids="([^"]+)"><summary>(.*?)</summary>\n'
        r'<script type="application/octet-stream" class="packed-section">([A-Za-z0-9+/=]+)</script>',
        html,
    )
    assert [s.split("</span>")[0].split(">")[-1] for _, s, _ in payloads] == models
    plain_sections = re.findall(r"</summary>\n(.*?)\n</details>", plain_html, re.S)
    for (ids, _, payload), section in zip(payloads, plain_sections, strict=True):
        unpacked = gzip.decompress(base64.b64decode(payload)).decode("utf-8")
        assert unpacked == section
        # every id a link may target (the contents' model and sub-sections) is listed on the details
        assert set(ids.split()) <= set(re.findall(r'<section id="([^"]+)"', unpacked))
        assert ids.split()[0] == re.search(r'<section id="([^"]+)"', unpacked).group(1)
    assert "MB unpacked) and unpacked as each opens" in html
    assert len(html) < len(plain_html)
    # what is read before any section opens stays plain: the best table and the summary
    assert_every_model_summarised(html, models)


@pytest.mark.browser
def test_a_packed_section_is_unpacked_and_drawn_when_a_link_opens_it(
    packed: tuple[Path, list[str]],
) -> None:
    if not chromium_available():
        pytest.skip("chromium is not installed (scripts/setup.sh test installs it)")
    report, models = packed
    assert chart_summary(render_in_chromium(report)) == []  # nothing unpacked at load
    target = models[1]
    dom = render_in_chromium(report, fragment=anchor(target, "offline"))
    drawn = chart_summary(dom)
    assert len(drawn) == 6 and all(c["title"].startswith(f"{target} · ") for c in drawn), drawn
    assert all(c["has_svg"] and c["marks"] > 0 and c["error"] is None for c in drawn), drawn
    assert dom.count('class="packed-section"') == len(models) - 1
    # the unpacked section's tables are in the page, with the target the link named
    assert f'id="{anchor(target, "offline")}"' in dom
    assert {r["model"] for r in rows(dom, "offline")} == {target}


@pytest.mark.browser
def test_bench_dag_reads_the_load_time_from_the_page_itself(many: tuple[Path, list[str]]) -> None:
    """make bench-dag's load figure is the page's own Navigation Timing, taken once its scripts ran
    (the Vega bundle holds a "</body>" of its own: a probe put there would break the bundle, and
    load_time raises when vegaEmbed is missing)."""
    if not chromium_available():
        pytest.skip("chromium is not installed (scripts/setup.sh test installs it)")
    report, _ = many
    started = time.monotonic()
    load_s = load_time(report, render_in_chromium)
    wall_s = time.monotonic() - started  # the whole headless run holds the load and more
    assert 0 < load_s < wall_s, (load_s, wall_s)
    assert not report.with_name(report.stem + ".probe.html").exists()
