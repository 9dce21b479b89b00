"""The alerting rules: one plain rule file (rules/bakery-alerts.yaml, what a
Prometheus without the operator loads), embedded unchanged in a PrometheusRule
that renders when the cluster serves that kind; every alert says what to look
at and links a panel the dashboard has; every alert has promtool cases that
fire and that do not. promtool itself runs them in `cargo xtask chart`."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import pytest
import yaml
from helm_python import _native

import chartlib

RULES_DIR = chartlib.CHART_DIR / "rules"
RULES_FILE = RULES_DIR / "bakery-alerts.yaml"
RULES_TESTS = RULES_DIR / "bakery-alerts.test.yaml"
DASHBOARD = chartlib.CHART_DIR / "dashboards" / "bakery.json"
PROMETHEUS_RULE_KIND = "monitoring.coreos.com/v1/PrometheusRule"


def render_serving(values: dict[str, Any] | None, api_versions: list[str]) -> chartlib.Rendered:
    """Renders as chartlib.render does, for a cluster that serves `api_versions`
    (what `helm template --api-versions` and an install against a cluster with
    those kinds see in .Capabilities.APIVersions). helm-python-sdk's Chart.render
    does not take them, so this passes them to the same native render call."""
    options = dict(name=chartlib.RELEASE, namespace=chartlib.NAMESPACE, is_install=True, is_upgrade=False,
                   api_versions=api_versions)
    with helm.Chart.load(str(chartlib.CHART_DIR)) as chart:
        rendered = _native.call_string("helm_render", chart._raw(), json.dumps(values or {}), json.dumps(options))
    return chartlib.parse_manifests(json.loads(rendered))


def plain_rules() -> dict[str, Any]:
    return yaml.safe_load(RULES_FILE.read_text())


def alerts() -> list[dict[str, Any]]:
    return [rule for group in plain_rules()["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def metric_names(expr: str) -> set[str]:
    """The series a PromQL expression reads: label matchers, grouping clauses and
    range selectors removed, then every bakery-exported name left."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    return set(re.findall(r"\b(?:bakery|hw|system|k8s)_[a-z0-9_]+\b", bare))


def test_the_prometheusrule_renders_where_the_kind_is_served_and_holds_the_plain_file_unchanged():
    rendered = render_serving({"prometheusRule": {"labels": {"release": "kube-prometheus-stack"}}},
                              [PROMETHEUS_RULE_KIND])
    rule = rendered.one("PrometheusRule")
    assert rule["spec"] == plain_rules(), "the PrometheusRule's groups are the plain file's"
    assert rule["metadata"]["namespace"] == chartlib.NAMESPACE
    labels = rule["metadata"]["labels"]
    assert labels["release"] == "kube-prometheus-stack"
    assert labels["app.kubernetes.io/instance"] == chartlib.RELEASE
    checked = chartlib.validate(rule, chartlib.MIN_KUBE_VERSION)
    assert checked.startswith("PrometheusRule monitoring.coreos.com/v1"), checked


def test_no_prometheusrule_where_the_kind_is_not_served_unless_forced():
    assert chartlib.render().all("PrometheusRule") == [], "helm template sees no PrometheusRule kind"
    assert render_serving({}, ["monitoring.coreos.com/v1"]).all("PrometheusRule") == [], \
        "the group without the kind (a ServiceMonitor-only install) is not enough"
    forced = chartlib.render({"prometheusRule": {"enabled": True}}).one("PrometheusRule")
    assert forced["spec"] == plain_rules()
    assert render_serving({"prometheusRule": {"enabled": False}}, [PROMETHEUS_RULE_KIND]).all("PrometheusRule") == []


def test_enabled_takes_auto_or_a_boolean_only():
    with pytest.raises(helm.HelmValuesError, match="prometheusRule"):
        chartlib.render({"prometheusRule": {"enabled": "yes"}})


def test_the_rules_cover_each_condition_with_the_series_that_shows_it():
    reads = {rule["alert"]: metric_names(rule["expr"]) for rule in alerts()}
    assert reads == {
        "BakeryHogVerdict": {"bakery_hog_active"},
        "BakeryNodeUnderVoltage": {"bakery_throttle_flag"},
        "BakeryNodeThermalThrottling": {"bakery_throttle_flag"},
        "BakeryNodeHot": {"hw_temperature_celsius"},
        "BakeryConntrackNearlyFull": {"bakery_conntrack_entries", "bakery_conntrack_limit"},
        "BakeryAgentNotReporting": {"bakery_agent_reporting"},
        "BakeryCollectorNotCommitting": {"bakery_collector_commit_last_success_timestamp_seconds"},
        "BakeryExportDropping": {"bakery_export_dropped_total"},
    }


def test_each_alert_has_a_severity_says_what_to_look_at_and_links_a_panel_that_shows_its_series():
    board = dashboard()
    panels = {panel["id"]: panel for panel in board["panels"]}
    annotated = set().union(*(metric_names(a.get("expr", "")) for a in board["annotations"]["list"]))
    link = re.compile(rf"^/d/{re.escape(board['uid'])}/\?viewPanel=(\d+)(&var-node=\{{\{{ \$labels\.k8s_node_name \}}\}})?$")
    for rule in alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "dashboard_url"}, name
        assert "bakery-top" in annotations["description"] or "kubectl" in annotations["description"] \
            or "log" in annotations["description"], f"{name}: its description says where to look"
        found = link.match(annotations["dashboard_url"])
        assert found, f"{name}: {annotations['dashboard_url']} is not a link to a panel of {board['uid']}"
        panel_id = int(found.group(1))
        assert panel_id in panels, f"{name} links panel {panel_id}, which bakery.json does not have"
        panel = panels[panel_id]
        assert panel["type"] != "row", f"{name} links a row"
        shown = set().union(*(metric_names(t["expr"]) for t in panel.get("targets", [])))
        if panel["type"] == "timeseries":
            # Grafana draws the dashboard's annotations (hog verdicts, windows) on time series
            shown |= annotated
        assert metric_names(rule["expr"]) & shown, \
            f"{name} links panel {panel_id} ({panel['title']!r}), which shows none of {metric_names(rule['expr'])}"
        if found.group(2):
            # the link narrows the dashboard to the alert's node, so the alert is about one
            assert "{{ $labels.k8s_node_name }}" in annotations["summary"], name


def test_every_alert_has_a_promtool_case_that_fires_and_one_that_does_not():
    tests = yaml.safe_load(RULES_TESTS.read_text())
    assert tests["rule_files"] == [RULES_FILE.name]
    cases = [case for test in tests["tests"] for case in test["alert_rule_test"]]
    for rule in alerts():
        own = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in own), f"{rule['alert']}: no promtool case where it fires"
        assert any(not case["exp_alerts"] for case in own), f"{rule['alert']}: no promtool case where it does not"
    unknown = {case["alertname"] for case in cases} - {rule["alert"] for rule in alerts()}
    assert not unknown, f"promtool cases for alerts the rules do not have: {unknown}"
