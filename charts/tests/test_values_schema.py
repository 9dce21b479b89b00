"""The chart-convention values (service accounts, security contexts, extra
volumes and environment, image registry and pull secrets, common labels,
revision history, network policy, ServiceMonitor relabelings, the node cgroup,
the cluster name): for each, a good value renders and lands where it should,
and a value of the wrong type (or outside what the schema allows) is refused
by values.schema.json with a message naming the key."""

from __future__ import annotations

from typing import Any, Callable

import helm_python as helm
import pytest

import chartlib
from chartlib import container, flag, pod_spec


def agent(rendered: chartlib.Rendered) -> dict[str, Any]:
    return container(pod_spec(rendered.one("DaemonSet")), "agent")


def collector(rendered: chartlib.Rendered) -> dict[str, Any]:
    return container(pod_spec(rendered.one("Deployment")), "collector")


def images(rendered: chartlib.Rendered) -> list[str]:
    return [c["image"] for _, spec in chartlib.pods(rendered) for c in chartlib.all_containers(spec)]


def pull_secrets(rendered: chartlib.Rendered) -> list[list[dict[str, str]]]:
    return [spec.get("imagePullSecrets") for _, spec in chartlib.pods(rendered)]


def nested(key: str, value: Any) -> dict[str, Any]:
    """{"a": {"b": value}} for "a.b"."""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


# key, a good value, what it must render, and a bad value with the pointer Helm names.
GOOD: list[tuple[str, Any, Callable[[chartlib.Rendered], bool]]] = [
    ("global.imageRegistry", "mirror.lab:5000",
     lambda r: images(r) == ["mirror.lab:5000/bakery-telemetry/bakery:0.1.0"] * 2
     + ["mirror.lab:5000/library/busybox:1.37"]),
    ("global.imagePullSecrets", ["mirror", {"name": "ghcr"}],
     lambda r: pull_secrets(r) == [[{"name": "mirror"}, {"name": "ghcr"}]] * 3),
    ("image.registry", "quay.io",
     lambda r: images(r)[:2] == ["quay.io/bakery-telemetry/bakery:0.1.0"] * 2),
    ("tests.image.registry", "mirror.gcr.io",
     lambda r: images(r)[2] == "mirror.gcr.io/library/busybox:1.37"),
    ("commonLabels", {"example.com/team": "platform"},
     lambda r: all(o["metadata"]["labels"]["example.com/team"] == "platform" for o in r.objects)),
    ("clusterName", "pi-lab", lambda r: flag(collector(r), "cluster-name") == "pi-lab"),
    ("agent.nodeCgroup", "/docker/3f1c", lambda r: flag(agent(r), "node-cgroup") == "/docker/3f1c"),
    ("agent.serviceAccount", {"create": False, "name": "node-agents"},
     lambda r: pod_spec(r.one("DaemonSet"))["serviceAccountName"] == "node-agents"
     and flag(collector(r), "agent-service-account") == "bakery/node-agents"
     and [a["metadata"]["name"] for a in r.all("ServiceAccount")] == ["bakery-collector"]),
    ("agent.serviceAccount.annotations", {"example.com/owner": "platform"},
     lambda r: r.one("ServiceAccount", "bakery-agent")["metadata"]["annotations"] == {"example.com/owner": "platform"}),
    ("collector.serviceAccount", {"create": False, "name": "telemetry"},
     lambda r: pod_spec(r.one("Deployment"))["serviceAccountName"] == "telemetry"
     and r.one("ClusterRoleBinding")["subjects"][0]["name"] == "telemetry"
     and r.maybe("ServiceAccount", "bakery-collector") is None),
    ("collector.serviceAccount.name", "bakery-telemetry",
     lambda r: r.one("ServiceAccount", "bakery-telemetry") is not None
     and pod_spec(r.one("Deployment"))["serviceAccountName"] == "bakery-telemetry"),
    ("agent.revisionHistoryLimit", 3, lambda r: r.one("DaemonSet")["spec"]["revisionHistoryLimit"] == 3),
    ("collector.revisionHistoryLimit", 0, lambda r: r.one("Deployment")["spec"]["revisionHistoryLimit"] == 0),
    ("agent.podSecurityContext", {"supplementalGroups": [2000]},
     lambda r: pod_spec(r.one("DaemonSet"))["securityContext"]
     == {"seccompProfile": {"type": "RuntimeDefault"}, "supplementalGroups": [2000]}),
    ("collector.podSecurityContext", {"runAsUser": 1000, "fsGroup": 1000},
     lambda r: pod_spec(r.one("Deployment"))["securityContext"]["runAsUser"] == 1000
     and pod_spec(r.one("Deployment"))["securityContext"]["runAsGroup"] == 65532),
    ("agent.containerSecurityContext", {"seLinuxOptions": {"level": "s0"}},
     lambda r: agent(r)["securityContext"]["seLinuxOptions"] == {"level": "s0"}
     and agent(r)["securityContext"]["runAsUser"] == 0
     and agent(r)["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE"]}),
    ("collector.containerSecurityContext", {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
     lambda r: collector(r)["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
     and collector(r)["securityContext"]["readOnlyRootFilesystem"] is True),
    ("agent.extraEnvFrom", [{"configMapRef": {"name": "agent-env"}}],
     lambda r: agent(r)["envFrom"] == [{"configMapRef": {"name": "agent-env"}}]),
    ("collector.extraEnvFrom", [{"secretRef": {"name": "collector-env"}, "prefix": "X_"}],
     lambda r: collector(r)["envFrom"] == [{"secretRef": {"name": "collector-env"}, "prefix": "X_"}]),
    ("agent.extraVolumes", [{"name": "site", "configMap": {"name": "site"}}],
     lambda r: {"name": "site", "configMap": {"name": "site"}} in pod_spec(r.one("DaemonSet"))["volumes"]),
    ("agent.extraVolumeMounts", [{"name": "proc", "mountPath": "/host/proc/extra", "readOnly": True}],
     lambda r: agent(r)["volumeMounts"][-1] == {"name": "proc", "mountPath": "/host/proc/extra", "readOnly": True}),
    ("collector.extraVolumes", [{"name": "scratch", "emptyDir": {}}],
     lambda r: {"name": "scratch", "emptyDir": {}} in pod_spec(r.one("Deployment"))["volumes"]),
    ("collector.extraVolumeMounts", [{"name": "data", "mountPath": "/srv", "subPath": "x"}],
     lambda r: collector(r)["volumeMounts"][-1] == {"name": "data", "mountPath": "/srv", "subPath": "x"}),
    ("networkPolicy", {"enabled": True, "agents": {"nodeCIDRs": ["192.168.1.0/24"]}},
     lambda r: r.one("NetworkPolicy") is not None),
    ("collector.metrics.serviceMonitor",
     {"enabled": True, "relabelings": [{"action": "labeldrop", "regex": "pod"}],
      "metricRelabelings": [{"action": "drop", "sourceLabels": ["__name__"], "regex": "bakery_collector_.*"}]},
     lambda r: r.one("ServiceMonitor")["spec"]["endpoints"][0]["relabelings"] == [{"action": "labeldrop", "regex": "pod"}]
     and r.one("ServiceMonitor")["spec"]["endpoints"][0]["metricRelabelings"][0]["action"] == "drop"),
]

BAD: list[tuple[str, Any, str]] = [
    ("global.imageRegistry", 5000, "- at '/global/imageRegistry': got number, want string"),
    ("global.imagePullSecrets", [5], "- at '/global/imagePullSecrets/0': 'anyOf' failed"),
    ("image.registry", ["quay.io"], "- at '/image/registry': got array, want string"),
    ("tests.image.registry", True, "- at '/tests/image/registry': got boolean, want string"),
    ("commonLabels", {"example.com/team": 7}, "- at '/commonLabels/example.com~1team': got number, want string"),
    ("commonLabels", {"app.kubernetes.io/name": "other"}, "invalid propertyName 'app.kubernetes.io/name'"),
    ("clusterName", 5, "- at '/clusterName': got number, want string"),
    ("agent.nodeCgroup", 5, "- at '/agent/nodeCgroup': got number, want string"),
    ("agent.nodeCgroup", "/kubepods/../system.slice", "- at '/agent/nodeCgroup': 'not' failed"),
    ("agent.serviceAccount.create", "yes", "- at '/agent/serviceAccount/create': got string, want boolean"),
    ("collector.serviceAccount.name", "Not_A_Name", "- at '/collector/serviceAccount/name': 'Not_A_Name' does not match"),
    ("collector.serviceAccount.annotations", ["a"], "- at '/collector/serviceAccount/annotations': got array, want object"),
    ("agent.revisionHistoryLimit", "3", "- at '/agent/revisionHistoryLimit': got string, want integer"),
    ("collector.revisionHistoryLimit", -1, "- at '/collector/revisionHistoryLimit': minimum: got -1, want 0"),
    ("agent.podSecurityContext", {"runAsUser": "root"}, "- at '/agent/podSecurityContext/runAsUser': got string, want integer"),
    ("collector.podSecurityContext", {"privileged": True},
     "- at '/collector/podSecurityContext': additional properties 'privileged' not allowed"),
    ("agent.containerSecurityContext", {"privileged": True},
     "- at '/agent/containerSecurityContext/privileged': value must be false"),
    ("agent.containerSecurityContext", {"capabilities": {"add": ["SYS_ADMIN"]}},
     "- at '/agent/containerSecurityContext': additional properties 'capabilities' not allowed"),
    ("collector.containerSecurityContext", {"allowPrivilegeEscalation": True},
     "- at '/collector/containerSecurityContext/allowPrivilegeEscalation': value must be false"),
    ("collector.containerSecurityContext", {"capabilities": {"drop": []}},
     "- at '/collector/containerSecurityContext/capabilities/drop': no items match contains schema"),
    ("collector.containerSecurityContext", {"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}},
     "- at '/collector/containerSecurityContext/capabilities/add/0': value must be 'NET_BIND_SERVICE'"),
    ("agent.extraEnvFrom", {"secretRef": {"name": "x"}}, "- at '/agent/extraEnvFrom': got object, want array"),
    ("collector.extraEnvFrom", [{"secretRef": "x"}], "- at '/collector/extraEnvFrom/0/secretRef': got string, want object"),
    ("agent.extraVolumes", ["site"], "- at '/agent/extraVolumes/0': got string, want object"),
    ("collector.extraVolumes", [{"emptyDir": {}}], "- at '/collector/extraVolumes/0': missing property 'name'"),
    ("agent.extraVolumeMounts", [{"name": "site"}], "- at '/agent/extraVolumeMounts/0': missing property 'mountPath'"),
    ("collector.extraVolumeMounts", [{"name": "x", "mountPath": "/x", "readOnly": "yes"}],
     "- at '/collector/extraVolumeMounts/0/readOnly': got string, want boolean"),
    ("networkPolicy.enabled", "yes", "- at '/networkPolicy/enabled': got string, want boolean"),
    ("networkPolicy.agents.nodeCIDRs", ["192.168.1.0"], "- at '/networkPolicy/agents/nodeCIDRs/0': '192.168.1.0' does not match"),
    ("networkPolicy.readers", [{"podSelector": {"matchLabels": {"app": 1}}}],
     "- at '/networkPolicy/readers/0/podSelector/matchLabels/app': got number, want string"),
    ("networkPolicy.scrapers", [{"podSelektor": {}}],
     "- at '/networkPolicy/scrapers/0': additional properties 'podSelektor' not allowed"),
    ("collector.metrics.serviceMonitor.relabelings", [{"action": "explode"}],
     "- at '/collector/metrics/serviceMonitor/relabelings/0/action': value must be one of"),
    ("collector.metrics.serviceMonitor.metricRelabelings", [{"sourceLabels": "__name__"}],
     "- at '/collector/metrics/serviceMonitor/metricRelabelings/0/sourceLabels': got string, want array"),
]


@pytest.mark.parametrize("key,value,renders_as", GOOD, ids=[g[0] for g in GOOD])
def test_a_good_value_renders_where_it_belongs(key, value, renders_as):
    rendered = chartlib.render(nested(key, value))
    assert renders_as(rendered), f"{key}: {value!r}"
    for obj in rendered.objects:
        chartlib.validate(obj, chartlib.MIN_KUBE_VERSION)


@pytest.mark.parametrize("key,value,expected", BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_a_wrong_value_is_refused_by_the_schema(key, value, expected):
    with pytest.raises(helm.HelmValuesError) as refused:
        chartlib.render(nested(key, value))
    message = str(refused.value)
    assert any(expected in line for line in message.splitlines()), message


def test_every_new_value_has_a_good_and_a_bad_case():
    """Each value added with the chart conventions is exercised both ways."""
    new_values = {
        "global.imageRegistry", "global.imagePullSecrets", "image.registry", "tests.image.registry",
        "commonLabels", "clusterName", "agent.nodeCgroup", "networkPolicy",
        *(f"{component}.{key}" for component in ("agent", "collector") for key in (
            "serviceAccount", "revisionHistoryLimit", "podSecurityContext", "containerSecurityContext",
            "extraEnvFrom", "extraVolumes", "extraVolumeMounts")),
        "collector.metrics.serviceMonitor.relabelings", "collector.metrics.serviceMonitor.metricRelabelings",
    }

    def covered(cases: list[tuple]) -> set[str]:
        keys = set()
        for key, value, *_ in cases:
            keys.add(key)
            if isinstance(value, dict):  # a parent key set with its children
                keys.update(f"{key}.{child}" for child in value)
        return {k for k in new_values if any(c == k or c.startswith(k + ".") for c in keys)}

    assert covered(GOOD) == new_values, sorted(new_values - covered(GOOD))
    assert covered(BAD) == new_values, sorted(new_values - covered(BAD))
