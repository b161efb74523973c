"""Headless Chromium for tests: render a report offline and say what its charts drew.

Not a test module: test files import it. Debian's chromium is used (scripts/setup.sh test installs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"

# HTML elements that never have an end tag; the tree walk must not wait for one.
VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


def chromium_path() -> str | None:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


def chromium_available() -> bool:
    return chromium_path() is not None


def render_in_chromium(html_path: Path, timeout_s: float = 60, fragment: str = "") -> str:
    """The DOM of `html_path` (opened at #fragment, if given) after its scripts ran, from headless
    Chromium with the network shut off.

    Host resolution is mapped to nothing as well as the usual switches, so a page that needed a CDN would render
    without its charts instead of quietly fetching them.
    """
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("chromium not found; install it (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="deploysnake-chromium-") as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=127.0.0.1:9",  # a dead proxy: any request that still slips through fails
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            Path(html_path).resolve().as_uri() + (f"#{fragment}" if fragment else ""),
        ]
        # Own session so that on timeout the whole tree (zygote, renderer, gpu helpers) goes with it.
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise TimeoutError(
                f"chromium did not finish rendering {html_path} within {timeout_s}s"
            ) from None
    dom = out.decode("utf-8", errors="replace")
    if proc.returncode != 0 or "<html" not in dom:
        tail = err.decode("utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"chromium failed (rc {proc.returncode}) on {html_path}: {tail}")
    return dom


class _ChartWalker(HTMLParser):
    """Walks the DOM, tracking open elements, and tallies what each chart div (class "chart") holds."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[dict[str, Any]] = []
        self.charts: list[dict[str, Any]] = []

    def _open_chart(self) -> dict[str, Any] | None:
        for node in reversed(self.stack):
            if node["chart"] is not None:
                return node["chart"]
        return None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = set(a.get("class", "").split())
        chart = self._open_chart()
        parent = self.stack[-1] if self.stack else None
        if chart is not None:
            if tag == "svg":
                chart["has_svg"] = True
            # A data mark is a direct child of a vega group with role-mark; axes, legends and titles use
            # role-axis*, role-legend*, role-title* and are therefore not counted.
            if parent is not None and parent["mark"] is not None:
                chart["marks"] += 1
                chart["by_mark"][parent["mark"]] = chart["by_mark"].get(parent["mark"], 0) + 1
        mark = None
        if tag == "g" and "role-mark" in classes:
            mark = next((c.removeprefix("mark-") for c in classes if c.startswith("mark-")), "?")
        new_chart = None
        if tag == "div" and "chart" in classes:
            new_chart = {
                "id": a.get("id", ""),
                "title": a.get("data-title", ""),
                "has_svg": False,
                "marks": 0,
                "by_mark": {},
                "error": a.get("data-error"),
            }
            self.charts.append(new_chart)
        node = {"tag": tag, "chart": new_chart, "mark": mark}
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i]["tag"] == tag:
                del self.stack[i:]
                return


def chart_summary(dom: str) -> list[dict[str, Any]]:
    """Per chart div (class "chart"), in page order: id, title (data-title), has_svg, marks (data mark items),
    by_mark (marks per vega mark type, e.g. {"symbol": 7, "line": 2}) and error (the embed error, if any)."""
    walker = _ChartWalker()
    walker.feed(dom)
    walker.close()
    return walker.charts
