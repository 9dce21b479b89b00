"""The chart README's generated parts (values_table.py): fresh in the
repository, found stale when the schema changes, rewritten by --write, and
every value described."""

from __future__ import annotations

import json
import shutil

import chartlib
import values_table


def copy_chart(tmp_path):
    chart = tmp_path / "bakery"
    shutil.copytree(chartlib.CHART_DIR, chart)
    return chart


def test_the_readme_is_fresh(capsys):
    assert values_table.check() == 0, capsys.readouterr().out


def test_the_table_has_a_described_row_for_each_value():
    schema = json.loads((chartlib.CHART_DIR / "values.schema.json").read_text())
    rows, undescribed = values_table.rows(schema, chartlib.load_values(chartlib.CHART_DIR / "values.yaml"))
    assert undescribed == []
    keys = [row.key for row in rows]
    assert len(keys) == len(set(keys))
    for key in ("global.imageRegistry", "commonLabels", "clusterName", "agent.serviceAccount.create",
                "collector.containerSecurityContext", "networkPolicy.agents.nodeCIDRs",
                "collector.metrics.serviceMonitor.metricRelabelings", "agent.nodeCgroup"):
        assert key in keys, key
    # an object with its own description is one row, with its whole default
    row = next(r for r in rows if r.key == "collector.podSecurityContext")
    assert '"runAsUser": 65532' in row.default
    assert not any(k.startswith("collector.podSecurityContext.") for k in keys)


def test_a_schema_change_makes_the_readme_stale_until_it_is_rewritten(tmp_path, capsys):
    chart = copy_chart(tmp_path)
    schema_path = chart / "values.schema.json"
    schema = json.loads(schema_path.read_text())
    schema["properties"]["clusterName"]["description"] = "A changed description."
    schema_path.write_text(json.dumps(schema, indent=2))
    readme = chart / "README.md"

    assert values_table.check(readme, chart) == 1
    out = capsys.readouterr().out
    assert "+| `clusterName` | string | `\"default\"` | A changed description. |" in out
    assert "run: cargo xtask chart --write-readme" in out

    assert values_table.check(readme, chart, write=True) == 0
    assert "A changed description." in readme.read_text()
    assert values_table.check(readme, chart) == 0


def test_a_new_chart_version_makes_the_install_commands_stale(tmp_path, capsys):
    chart = copy_chart(tmp_path)
    chart_yaml = chart / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("\nversion: 0.1.0\n", "\nversion: 0.2.0\n"))
    assert values_table.check(chart / "README.md", chart) == 1
    assert values_table.check(chart / "README.md", chart, write=True) == 0
    assert "--version 0.2.0" in (chart / "README.md").read_text()


def test_a_value_without_description_is_refused(tmp_path, capsys):
    chart = copy_chart(tmp_path)
    schema_path = chart / "values.schema.json"
    schema = json.loads(schema_path.read_text())
    del schema["properties"]["clusterName"]["description"]
    schema_path.write_text(json.dumps(schema, indent=2))
    assert values_table.check(chart / "README.md", chart, write=True) == 1
    assert "`clusterName` has no description" in capsys.readouterr().out


def test_markdown_cells_keep_to_one_line_and_escape_pipes_and_tags():
    assert values_table.cell("a | b\n  c <name> `<kept>`") == "a \\| b c &lt;name&gt; `<kept>`"
