"""Write config/README.md from config/config.schema.yaml: every key, its type, default and description.

The schema is the one source of the keys' meaning (the workflow validates every config against it);
this page is generated from it, as the Snakemake catalog's workflows keep config/README.md.

    python scripts/config_doc.py           write config/README.md
    python scripts/config_doc.py --check   exit 1 when config/README.md is not what the schema gives
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "config.schema.yaml"
TARGET = ROOT / "config" / "README.md"

HEADER = """# Configuration

`config/config.yaml` is the embedded default (every key commented there); every config is checked
against `config/config.schema.yaml` before any job runs: an unknown key, a wrong type or a value out
of range stops the run at once, naming the key and the allowed values. Use your own file with
`snakemake results/report.html --cores 8 --configfile my.yaml` (the target first): it holds only
what differs from the default, except `models:`, which it gives whole.

This page is generated from the schema's descriptions (`python scripts/config_doc.py`; a test
checks it is current). `<name>` stands for a key you choose (a model's name, an input's name).

| key | type | default | description |
| --- | --- | --- | --- |
"""


def _type(node: dict[str, Any]) -> str:
    if "enum" in node:
        return ", ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    if "oneOf" in node or "anyOf" in node:
        return " or ".join(_type(n) for n in node.get("oneOf", node.get("anyOf", [])))
    kind = node.get("type", "")
    if kind == "array" and isinstance(node.get("items"), dict):
        return f"list of {_type(node['items'])}"
    if isinstance(kind, list):
        return " or ".join(kind)
    bounds = []
    if "minimum" in node:
        bounds.append(f"≥ {node['minimum']}")
    if "exclusiveMinimum" in node:
        bounds.append(f"> {node['exclusiveMinimum']}")
    if "maximum" in node:
        bounds.append(f"≤ {node['maximum']}")
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _cell(text: str) -> str:
    """Text for a table cell: no pipe or newline, and no < > that Markdown would take for HTML."""
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def rows(node: dict[str, Any], prefix: str) -> list[str]:
    """One table row per key under node (depth first), each `| key | type | default | text |`."""
    out: list[str] = []
    for key, child in (node.get("properties") or {}).items():
        path = f"{prefix}.{key}" if prefix else key
        out.append(_row(path, child))
        out.extend(rows(child, path))
        for branch in child.get("oneOf", []) + child.get("anyOf", []):
            out.extend(rows(branch, path))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and (extra.get("properties") or extra.get("description")):
        path = f"{prefix}.<name>"
        out.append(_row(path, extra))
        out.extend(rows(extra, path))
    return out


def _row(path: str, node: dict[str, Any]) -> str:
    default = json.dumps(node["default"]) if "default" in node else ""
    return (
        f"| `{path}` | {_cell(_type(node))} | {f'`{default}`' if default else ''} | "
        f"{_cell(str(node.get('description', '')))} |"
    )


def render() -> str:
    schema = yaml.safe_load(SCHEMA.read_text())
    return HEADER + "\n".join(rows(schema, "")) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if TARGET.read_text() != text:
            print(f"{TARGET} is not current: run python scripts/config_doc.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
