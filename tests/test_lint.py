"""House rules, what `make lint` runs: ruff (format and lint) and mypy (strict, pyproject.toml) are
clean, the workflow follows Snakemake's conventions (its own linter and snakefmt are clean), the
documentation site builds strictly with the config reference generated from the schema; and the
package has no import cycle."""

from __future__ import annotations

import ast
import graphlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, snakemake


def run_tool(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """A Python tool of the venv (`python -m ruff ...`) in the checkout, its config from pyproject.toml."""
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_ruff_format_check_is_clean() -> None:
    done = run_tool("ruff", "format", "--check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_check_is_clean() -> None:
    done = run_tool("ruff", "check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_is_clean() -> None:
    """mypy at the strictness [tool.mypy] states, over the files it names (src/deploysnake)."""
    done = run_tool("mypy")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout, done.stdout


def test_snakemake_lint_is_clean(tmp_path: Path) -> None:
    done = snakemake("--lint", cwd=ROOT, check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Congratulations, your workflow is in a good condition!" in done.stdout + done.stderr


def test_snakefmt_check_is_clean() -> None:
    exe = shutil.which("snakefmt") or str(Path(sys.executable).parent / "snakefmt")
    done = subprocess.run(
        [exe, "--check", "."], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def package_imports(package: Path) -> dict[str, set[str]]:
    """{module: the package's modules it imports}, read with ast from the package's own files.

    Every import counts, wherever it stands (module level, inside a function, under TYPE_CHECKING):
    a lazy import is a dependency too, and was where the old cycles hid.
    """
    name = package.name
    graph: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        pkg = ".".join(parts[:-1])  # the package a relative import starts from
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                # `from . import x` and `from .m import f`: x may be a module, f a name in .m
                targets.add(base)
                targets.update(f"{base}.{a.name}" for a in node.names)
        graph[module] = {t for t in targets if t.split(".")[0] == name}
    known = set(graph)
    return {m: {t for t in deps if t in known and t != m} for m, deps in graph.items()}


def import_cycle(package: Path) -> list[str] | None:
    """One import cycle among the package's modules (first module repeated at the end), or None."""
    try:
        tuple(graphlib.TopologicalSorter(package_imports(package)).static_order())
    except graphlib.CycleError as error:
        return list(reversed(error.args[1]))
    return None


def test_import_cycle_check_finds_a_lazy_cycle(tmp_path: Path) -> None:
    """The check itself: a cycle through a function-level import, as checkpoint/frameworks had."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import g\n\ndef f():\n    return g()\n")
    (pkg / "b.py").write_text("def g():\n    from .a import f\n\n    return f\n")
    (pkg / "c.py").write_text("from pkg import a\n")
    assert package_imports(pkg)["pkg.c"] == {"pkg", "pkg.a"}
    cycle = import_cycle(pkg)
    assert cycle is not None and set(cycle) == {"pkg.a", "pkg.b"}, cycle
    (pkg / "b.py").write_text("def g():\n    return 1\n")
    assert import_cycle(pkg) is None


def test_the_package_has_no_import_cycle() -> None:
    package = ROOT / "src" / "deploysnake"
    graph = package_imports(package)
    assert (
        "deploysnake.checkpoint" in graph
        and "deploysnake.frameworks" in graph["deploysnake.checkpoint"]
    )
    cycle = import_cycle(package)
    if cycle is not None:
        pytest.fail("import cycle: " + " -> ".join(cycle))


def test_docs_site_builds_strict(tmp_path: Path) -> None:
    """The documentation site (mkdocs.yml, docs/) builds with every link and include resolved."""
    done = run_tool("mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "configuration" / "index.html").is_file()


def test_config_readme_is_generated_from_the_schema() -> None:
    """config/README.md is what scripts/config_doc.py writes from config/config.schema.yaml, and
    names every key of the embedded default config."""
    done = subprocess.run(
        [sys.executable, "scripts/config_doc.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = (ROOT / "config" / "README.md").read_text()
    default = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    missing = [key for key in default if f"| `{key}` |" not in text]
    assert not missing, f"config/README.md lacks the top-level keys {missing}"


def test_readme_is_short() -> None:
    """The README says what the workflow does and where to read next; the rest is in docs/."""
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= 150, f"README.md has {lines} lines; move reference material to docs/"


def test_the_report_package_has_no_file_over_500_lines() -> None:
    """The report package's modules and templates stay short (issue 31: load, frames, charts,
    sections, page; each section its own template)."""
    report = ROOT / "src" / "deploysnake" / "report"
    files = [*report.glob("*.py"), *report.glob("templates/*")]
    assert len(files) > 10
    long = {f.name: n for f in files if (n := len(f.read_text().splitlines())) > 500}
    assert not long, long
