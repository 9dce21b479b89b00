"""The Grafana dashboard ConfigMap renders every dashboards/*.json of the
chart, labelled for the Grafana sidecar, and nothing while there is none."""

from __future__ import annotations

import json
import shutil

import chartlib


def test_the_configmap_holds_exactly_the_shipped_dashboards(default):
    shipped = sorted(p.name for p in (chartlib.CHART_DIR / "dashboards").glob("*.json"))
    configmaps = default.all("ConfigMap")
    if shipped:
        assert [sorted(c["data"]) for c in configmaps] == [shipped]
    else:
        assert configmaps == [], "no dashboard file, so no ConfigMap"


def test_each_dashboard_file_lands_in_the_labelled_configmap(tmp_path):
    chart = tmp_path / "bakery"
    shutil.copytree(chartlib.CHART_DIR, chart)
    dashboard = {"title": "bakery test", "uid": "bakery-test", "panels": [], "schemaVersion": 39}
    text = json.dumps(dashboard, indent=2) + "\n"
    (chart / "dashboards" / "bakery-test.json").write_text(text)
    (chart / "dashboards" / "notes.txt").write_text("not a dashboard")

    rendered = chartlib.render({"dashboards": {"annotations": {"grafana_folder": "Bakery"}}}, chart_dir=chart)
    configmap = rendered.one("ConfigMap", "bakery-dashboards")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Bakery"}
    assert list(configmap["data"]) == [n.name for n in sorted((chart / "dashboards").glob("*.json"))]
    assert configmap["data"]["bakery-test.json"] == text
    chartlib.validate(configmap, chartlib.MIN_KUBE_VERSION)

    off = chartlib.render({"dashboards": {"enabled": False}}, chart_dir=chart)
    assert off.all("ConfigMap") == []
