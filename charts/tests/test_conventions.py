"""The conventions other charts follow, as this chart renders them: images from
a registry mirror, pull secrets, common labels, revision history, the
components' ServiceAccounts, security contexts merged over hardened defaults,
the node cgroup, and the cluster name the dashboard lists."""

from __future__ import annotations

import json

import pytest
from helm_python import HelmRenderError

import chartlib
from chartlib import container, flag, pod_metadata, pod_spec


def agent(rendered: chartlib.Rendered) -> dict:
    return container(pod_spec(rendered.one("DaemonSet")), "agent")


def collector(rendered: chartlib.Rendered) -> dict:
    return container(pod_spec(rendered.one("Deployment")), "collector")


def images(rendered: chartlib.Rendered) -> dict[str, str]:
    return {c["name"]: c["image"] for _, spec in chartlib.pods(rendered) for c in chartlib.all_containers(spec)}


@pytest.mark.parametrize("values,expected", [
    ({}, ("ghcr.io/bakery-telemetry/bakery:0.1.0", "docker.io/library/busybox:1.37")),
    ({"global": {"imageRegistry": "mirror.lab:5000"}},
     ("mirror.lab:5000/bakery-telemetry/bakery:0.1.0", "mirror.lab:5000/library/busybox:1.37")),
    # a component's own registry wins over the global one
    ({"global": {"imageRegistry": "mirror.lab:5000"}, "image": {"registry": "ghcr.io"}},
     ("ghcr.io/bakery-telemetry/bakery:0.1.0", "mirror.lab:5000/library/busybox:1.37")),
    # a repository that names its registry host is used as it is (values written before image.registry)
    ({"global": {"imageRegistry": "mirror.lab:5000"},
      "image": {"repository": "registry.local:5000/bakery", "tag": "dev"},
      "tests": {"image": {"repository": "localhost/busybox"}}},
     ("registry.local:5000/bakery:dev", "localhost/busybox:1.37")),
])
def test_images_come_from_their_registry_else_the_global_one(values, expected):
    found = images(chartlib.render(values))
    assert (found["agent"], found["check"]) == expected
    assert found["collector"] == found["agent"]


def test_pull_secrets_join_global_and_chart_ones_once_each_in_every_pod():
    rendered = chartlib.render({"global": {"imagePullSecrets": ["mirror", {"name": "shared"}]},
                                "imagePullSecrets": [{"name": "shared"}, {"name": "ghcr"}]})
    for pod, spec in chartlib.pods(rendered):
        assert spec["imagePullSecrets"] == [{"name": "mirror"}, {"name": "shared"}, {"name": "ghcr"}], pod
    for pod, spec in chartlib.pods(chartlib.render({})):
        assert "imagePullSecrets" not in spec, pod


def test_common_labels_are_on_every_object_and_pod(full):
    for obj in full.objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        assert obj["metadata"]["labels"]["example.com/environment"] == "lab", name
    for kind in ("DaemonSet", "Deployment"):
        labels = pod_metadata(full.one(kind))["labels"]
        assert labels["example.com/environment"] == "lab", kind
    # podLabels win over commonLabels on the pods; selectors never change
    rendered = chartlib.render({"commonLabels": {"tier": "common"}, "agent": {"podLabels": {"tier": "agent"}}})
    assert pod_metadata(rendered.one("DaemonSet"))["labels"]["tier"] == "agent"
    assert pod_metadata(rendered.one("Deployment"))["labels"]["tier"] == "common"
    assert "tier" not in rendered.one("DaemonSet")["spec"]["selector"]["matchLabels"]


def test_revision_history_is_kept_for_rollbacks(default, full):
    assert default.one("DaemonSet")["spec"]["revisionHistoryLimit"] == 10
    assert default.one("Deployment")["spec"]["revisionHistoryLimit"] == 10
    assert full.one("DaemonSet")["spec"]["revisionHistoryLimit"] == 5
    assert full.one("Deployment")["spec"]["revisionHistoryLimit"] == 3


def test_each_component_runs_as_its_service_account_and_rbac_binds_it(default, existing, full):
    for rendered in (default, full):
        assert pod_spec(rendered.one("DaemonSet"))["serviceAccountName"] == "bakery-agent"
        assert pod_spec(rendered.one("Deployment"))["serviceAccountName"] == "bakery-collector"
    assert full.one("ServiceAccount", "bakery-collector")["metadata"]["annotations"] == {"example.com/owner": "platform"}
    # the user's own collector account: not made here, used by the pod, bound by the RBAC
    assert existing.maybe("ServiceAccount", "lab-bakery-collector") is None
    assert pod_spec(existing.one("Deployment"))["serviceAccountName"] == "lab-bakery-collector"
    assert existing.one("ClusterRoleBinding")["subjects"] == [
        {"kind": "ServiceAccount", "name": "lab-bakery-collector", "namespace": "bakery"}]


def test_the_agent_never_falls_back_to_the_default_account_for_its_tokens():
    """The collector accepts projected tokens of the agents' account only; the
    namespace's `default` account is every other pod's, so it is refused."""
    with pytest.raises(HelmRenderError, match="set agent.serviceAccount.name"):
        chartlib.render({"agent": {"serviceAccount": {"create": False}}})
    # With the shared token the account proves nothing, so `default` will do.
    shared = chartlib.render({"agent": {"serviceAccount": {"create": False}},
                              "auth": {"agentCredential": "sharedToken"}})
    assert pod_spec(shared.one("DaemonSet"))["serviceAccountName"] == "default"
    mine = chartlib.render({"agent": {"serviceAccount": {"create": True, "name": "node-agents"}}})
    assert mine.one("ServiceAccount", "node-agents")["automountServiceAccountToken"] is False
    assert flag(collector(mine), "agent-service-account") == "bakery/node-agents"
    assert 'node-agents (audience "bakery"' in mine.notes


def test_security_contexts_merge_over_the_hardened_defaults():
    rendered = chartlib.render({
        "agent": {"containerSecurityContext": {"seLinuxOptions": {"type": "spc_t"}}},
        "collector": {"podSecurityContext": {"runAsUser": 1000, "fsGroupChangePolicy": None},
                      "containerSecurityContext": {"readOnlyRootFilesystem": None}},
    })
    sc = agent(rendered)["securityContext"]
    assert sc["seLinuxOptions"] == {"type": "spc_t"}
    assert (sc["privileged"], sc["allowPrivilegeEscalation"], sc["readOnlyRootFilesystem"]) == (False, False, True)
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE"]}
    assert sc["appArmorProfile"] == {"type": "Unconfined"}
    pod = pod_spec(rendered.one("Deployment"))["securityContext"]
    assert pod["runAsUser"] == 1000 and pod["fsGroup"] == 65532
    assert "fsGroupChangePolicy" not in pod, "null removes a key"
    assert "readOnlyRootFilesystem" not in collector(rendered)["securityContext"]
    assert collector(rendered)["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_extra_volumes_mounts_and_environment_reach_the_pods(full):
    spec, c = pod_spec(full.one("DaemonSet")), agent(full)
    assert {"name": "site-config", "configMap": {"name": "bakery-site"}} in spec["volumes"]
    assert {"name": "site-config", "mountPath": "/etc/bakery/site", "readOnly": True} in c["volumeMounts"]
    assert c["envFrom"] == [{"configMapRef": {"name": "bakery-agent-env", "optional": True}}]
    spec, c = pod_spec(full.one("Deployment")), collector(full)
    assert {"name": "scratch", "emptyDir": {"sizeLimit": "64Mi"}} in spec["volumes"]
    assert {"name": "scratch", "mountPath": "/tmp"} in c["volumeMounts"]
    assert c["envFrom"] == [{"secretRef": {"name": "bakery-collector-env"}}]


def test_the_node_cgroup_is_passed_only_when_set(default, full):
    assert flag(agent(default), "node-cgroup") is None
    assert flag(agent(full), "node-cgroup") == "/docker/3f1c2f0b9a0e"


def test_the_cluster_name_reaches_the_label_the_dashboard_lists(default, full):
    """The collector exports --cluster-name as k8s.cluster.name, which /metrics
    and Prometheus's OTLP receiver write as k8s_cluster_name: the label the
    dashboard's Cluster variable lists."""
    dashboard = json.loads((chartlib.CHART_DIR / "dashboards" / "bakery.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert "k8s_cluster_name" in variables["cluster"]["definition"]
    assert flag(collector(default), "cluster-name") == "default"
    assert flag(collector(full), "cluster-name") == "pi-lab"
    assert flag(collector(chartlib.render({"clusterName": ""})), "cluster-name") is None
    spaced = chartlib.render({"clusterName": "home lab"})
    assert flag(collector(spaced), "cluster-name") == "home lab"
