"""The chart README's generated parts, written from the chart itself:

- the values table, one row per value of values.schema.json: its key, type,
  default (from values.yaml) and the schema's `description`;
- the OCI install commands, with Chart.yaml's version.

Each part sits between `<!-- BEGIN generated: NAME -->` and
`<!-- END generated: NAME -->` in charts/bakery/README.md. `cargo xtask chart`
checks that they are fresh (`check_chart.py values-table`);
`cargo xtask chart --write-readme` rewrites them (`check_chart.py values-table
--write`).

A row is an object's key whose schema has no `properties` (a string, a list, a
map), or an object that has its own `description` (documented as one value,
e.g. a securityContext); other objects are walked into. Every row needs a
description: the schema is the one source of the table's text.
"""

from __future__ import annotations

import difflib
import json
import pathlib
import re
from dataclasses import dataclass
from typing import Any

import yaml

CHART_DIR = pathlib.Path(__file__).resolve().parent.parent / "bakery"
README = CHART_DIR / "README.md"
REGENERATE = "cargo xtask chart --write-readme"
OCI_REGISTRY = "ghcr.io/bakery-telemetry/charts"


@dataclass
class Row:
    key: str
    type: str
    default: str
    description: str


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`node` with its local `$ref` (#/$defs/NAME) merged under its own keys."""
    ref = node.get("$ref")
    if not ref:
        return node
    prefix = "#/$defs/"
    assert ref.startswith(prefix), f"only local $defs references are supported: {ref}"
    target = resolve(schema, schema["$defs"][ref[len(prefix):]])
    merged = dict(target)
    merged.update({k: v for k, v in node.items() if k != "$ref"})
    return merged


def type_of(schema: dict[str, Any], node: dict[str, Any]) -> str:
    node = resolve(schema, node)
    if "const" in node:
        return json.dumps(node["const"])
    if "enum" in node:
        return " | ".join(json.dumps(v) for v in node["enum"])
    if "anyOf" in node:
        return " or ".join(type_of(schema, option) for option in node["anyOf"])
    kind = node.get("type")
    if kind == "array":
        items = resolve(schema, node.get("items") or {})
        return f"list of {type_of(schema, items)}" if items else "list"
    if kind == "object":
        return "map" if "properties" not in node else "object"
    return kind or "any"


def default_text(value: Any) -> str:
    if value is None:
        return ""
    return "`" + json.dumps(value, separators=(", ", ": ")) + "`"


def cell(text: str) -> str:
    """One table cell: one line, `|` escaped, and `<`, `>` outside code spans
    as entities (Markdown would take <fullname> for an HTML tag)."""
    parts = " ".join(text.split()).split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts).replace("|", "\\|")


def rows(schema: dict[str, Any], defaults: dict[str, Any]) -> tuple[list[Row], list[str]]:
    """Every value as a row, and the keys that have no description."""
    found: list[Row] = []
    undescribed: list[str] = []

    def walk(node: dict[str, Any], key: str, default: Any) -> None:
        node = resolve(schema, node)
        description = node.get("description", "")
        properties = node.get("properties")
        if properties and not description:
            for name, child in properties.items():
                child_default = default.get(name) if isinstance(default, dict) else None
                walk(child, f"{key}.{name}" if key else name, child_default)
            return
        if not description:
            undescribed.append(key)
        found.append(Row(key, type_of(schema, node), default_text(default), description))

    walk({k: v for k, v in schema.items() if k != "description"}, "", defaults)
    return found, undescribed


def values_table(schema: dict[str, Any], defaults: dict[str, Any]) -> tuple[str, list[str]]:
    table, undescribed = rows(schema, defaults)
    lines = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for row in table:
        lines.append(f"| `{row.key}` | {cell(row.type)} | {cell(row.default)} | {cell(row.description)} |")
    return "\n".join(lines), undescribed


def oci_install(version: str) -> str:
    return "\n".join([
        "```sh",
        f"helm install bakery oci://{OCI_REGISTRY}/bakery --version {version} -n bakery",
        f"helm upgrade bakery oci://{OCI_REGISTRY}/bakery --version {version} -n bakery",
        f"helm show values oci://{OCI_REGISTRY}/bakery --version {version}",
        "```",
    ])


def chart_version(chart_dir: pathlib.Path) -> str:
    return str(yaml.safe_load((chart_dir / "Chart.yaml").read_text())["version"])


def generated_parts(chart_dir: pathlib.Path = CHART_DIR) -> tuple[dict[str, str], list[str]]:
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    defaults = yaml.safe_load((chart_dir / "values.yaml").read_text()) or {}
    table, undescribed = values_table(schema, defaults)
    return {"values-table": table, "oci-install": oci_install(chart_version(chart_dir))}, undescribed


def block(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- BEGIN generated: {re.escape(name)} [^\n]*-->\n)(.*?)(<!-- END generated: {re.escape(name)} -->)",
        re.S,
    )


def refreshed(readme: str, parts: dict[str, str]) -> str:
    """`readme` with each generated part replaced; a missing marker pair is an error."""
    for name, text in parts.items():
        pattern = block(name)
        if not pattern.search(readme):
            raise ValueError(f"README has no `<!-- BEGIN generated: {name} -->` ... `<!-- END generated: {name} -->`")
        readme = pattern.sub(lambda m, text=text: m.group(1) + text + "\n" + m.group(3), readme, count=1)
    return readme


def check(readme_path: pathlib.Path = README, chart_dir: pathlib.Path = CHART_DIR, write: bool = False) -> int:
    """Prints what is wrong and returns 1, or 0 when the README is fresh (or was written)."""
    parts, undescribed = generated_parts(chart_dir)
    if undescribed:
        for key in undescribed:
            print(f"  values.schema.json: `{key}` has no description (the README's values table shows it)")
        print("  add a `description` to each, then run: " + REGENERATE)
        return 1
    current = readme_path.read_text()
    try:
        wanted = refreshed(current, parts)
    except ValueError as error:
        print(f"  {readme_path.name}: {error}")
        return 1
    if current == wanted:
        print(f"  {readme_path.name}: values table and OCI install commands are fresh")
        return 0
    if write:
        readme_path.write_text(wanted)
        print(f"  {readme_path.name}: generated parts rewritten")
        return 0
    diff = difflib.unified_diff(current.splitlines(), wanted.splitlines(), "README.md", "generated", lineterm="", n=0)
    for line in list(diff)[:40]:
        print(f"    {line}")
    print(f"  {readme_path.name} is stale (values.yaml, values.schema.json or Chart.yaml changed); run: {REGENERATE}")
    return 1
