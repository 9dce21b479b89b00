"""networkPolicy: off by default; on, it selects the collector's pod only and
admits, on the gRPC port, the agents (their pod selector and the node ranges
their hostNetwork traffic comes from), the `helm test` pod and the readers, and
on the metrics port the scrapers; nothing on the health port, and no policy for
the agents."""

from __future__ import annotations

import pytest
from helm_python import HelmRenderError

import chartlib
from chartlib import pod_metadata

READERS = [
    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
     "podSelector": {"matchLabels": {"app.kubernetes.io/name": "grafana"}}},
    {"ipBlock": {"cidr": "192.168.1.0/24", "except": ["192.168.1.1/32"]}},
]
SCRAPERS = [
    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
     "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
]
NODES = ["192.168.1.0/24", "10.42.0.0/32", "10.42.1.0/32"]


def policy_values(**overrides) -> dict:
    policy = {"enabled": True, "agents": {"nodeCIDRs": NODES}, "readers": READERS, "scrapers": SCRAPERS}
    policy.update(overrides)
    return {"networkPolicy": policy}


def selects(selector: dict, labels: dict) -> bool:
    """A matchLabels-only LabelSelector (the chart writes no expressions) against pod labels."""
    assert set(selector) == {"matchLabels"}, selector
    return selector["matchLabels"].items() <= labels.items()


def pod_labels(rendered: chartlib.Rendered, kind: str) -> dict:
    return pod_metadata(rendered.one(kind))["labels"]


def test_no_policy_by_default(variants):
    for name in ("default", "minimal-values", "existing-secrets-values", "cert-manager-values"):
        assert variants[name].all("NetworkPolicy") == [], name


def test_the_policy_admits_agents_readers_and_scrapers_on_their_ports_only():
    rendered = chartlib.render(policy_values())
    policy = rendered.one("NetworkPolicy", "bakery-collector")
    chartlib.validate(policy, chartlib.MIN_KUBE_VERSION)
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"], "egress stays open: the API server and the OTLP backend"

    # It selects the collector's pod, and neither the agents nor the test pod.
    assert selects(spec["podSelector"], pod_labels(rendered, "Deployment"))
    assert not selects(spec["podSelector"], pod_labels(rendered, "DaemonSet"))
    assert not selects(spec["podSelector"], rendered.one("Pod")["metadata"]["labels"])

    grpc, readers, scrape = spec["ingress"]
    assert grpc["ports"] == [{"port": 7431, "protocol": "TCP"}]
    agents, *node_blocks, hook = grpc["from"]
    assert selects(agents["podSelector"], pod_labels(rendered, "DaemonSet"))
    assert not selects(agents["podSelector"], pod_labels(rendered, "Deployment"))
    assert "namespaceSelector" not in agents, "the agents of this release, in its namespace"
    assert node_blocks == [{"ipBlock": {"cidr": cidr}} for cidr in NODES]
    assert selects(hook["podSelector"], rendered.one("Pod")["metadata"]["labels"]), "helm test reaches the port"

    assert readers == {"ports": [{"port": 7431, "protocol": "TCP"}], "from": READERS}
    assert scrape == {"ports": [{"port": 9464, "protocol": "TCP"}], "from": SCRAPERS}

    # the health port is probed from the pod's own node, which a policy never blocks
    ports = [p["port"] for rule in spec["ingress"] for p in rule["ports"]]
    assert 9465 not in ports


def test_the_ports_follow_the_values():
    rendered = chartlib.render({**policy_values(), "collector": {"port": 17431, "metrics": {"port": 19464}}})
    ingress = rendered.one("NetworkPolicy")["spec"]["ingress"]
    assert [rule["ports"] for rule in ingress] == [[{"port": p, "protocol": "TCP"}] for p in (17431, 17431, 19464)]


def test_without_readers_or_metrics_only_the_agents_rule_remains():
    rendered = chartlib.render({**policy_values(readers=[]), "collector": {"metrics": {"enabled": False}}})
    (only,) = rendered.one("NetworkPolicy")["spec"]["ingress"]
    assert only["ports"] == [{"port": 7431, "protocol": "TCP"}]
    # No scrapers and no ServiceMonitor: the metrics port is closed to everyone.
    rendered = chartlib.render(policy_values(readers=[], scrapers=[]))
    assert len(rendered.one("NetworkPolicy")["spec"]["ingress"]) == 1


def test_the_full_variant_ships_a_valid_policy_and_notes_say_what_it_admits(full, default):
    policy = full.one("NetworkPolicy")
    assert [len(rule["from"]) for rule in policy["spec"]["ingress"]] == [5, 1, 1]
    assert policy["metadata"]["labels"]["example.com/environment"] == "lab"
    assert "admits the agents (from\n192.168.1.0/24, 10.42.0.0/32, 10.42.1.0/32)" in full.notes
    assert "NetworkPolicy" not in default.notes


def test_the_agents_node_ranges_are_required():
    with pytest.raises(HelmRenderError, match="networkPolicy.enabled needs networkPolicy.agents.nodeCIDRs"):
        chartlib.render(policy_values(agents={"nodeCIDRs": []}))


def test_a_servicemonitor_without_scrapers_is_refused():
    values = {**policy_values(scrapers=[]), "collector": {"metrics": {"serviceMonitor": {"enabled": True}}}}
    with pytest.raises(HelmRenderError, match="needs networkPolicy.scrapers"):
        chartlib.render(values)
