"""The agent DaemonSet: lands on every node, reads the host read-only, and asks
for no more privilege than it needs."""

from __future__ import annotations

import pytest

import chartlib
from chartlib import container, env, flag, mount, pod_spec, volume

# Taints a K3s Raspberry Pi cluster can carry. K3s servers run workloads and
# are untainted by default, but an HA install with `--node-taint
# CriticalAddonsOnly=true:NoExecute` or kubeadm-style control-plane taints is
# common; the node lifecycle controller adds the not-ready/unreachable and
# pressure taints; `custom` stands for any taint a user invents.
TAINTS = [
    {"key": "CriticalAddonsOnly", "value": "true", "effect": "NoExecute"},
    {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
    {"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
    {"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"},
    {"key": "custom.example.com/dedicated", "value": "gpu", "effect": "NoSchedule"},
    {"key": "custom.example.com/evict", "value": "now", "effect": "NoExecute"},
]


def agent_spec(rendered: chartlib.Rendered) -> dict:
    return pod_spec(rendered.one("DaemonSet"))


def agent(rendered: chartlib.Rendered) -> dict:
    return container(agent_spec(rendered), "agent")


@pytest.mark.parametrize("taint", TAINTS, ids=lambda t: f"{t['key']}:{t['effect']}")
def test_agent_tolerates_every_noschedule_and_noexecute_taint(default, taint):
    tolerations = agent_spec(default)["tolerations"]
    assert chartlib.tolerated(tolerations, taint)


def test_agent_tolerations_are_the_catch_alls_and_criticaladdonsonly(default):
    tolerations = agent_spec(default)["tolerations"]
    assert {"operator": "Exists", "effect": "NoSchedule"} in tolerations
    assert {"operator": "Exists", "effect": "NoExecute"} in tolerations
    assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in tolerations
    # No tolerationSeconds: an unreachable node keeps its agent, which then
    # reports (from the spool) what happened while it was cut off.
    assert all("tolerationSeconds" not in t for t in tolerations)


def test_toleration_matching_follows_kubernetes():
    """The matcher the tests above rely on: a narrow toleration does not
    tolerate other taints (so those tests can fail)."""
    only_control_plane = [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]
    assert chartlib.tolerated(only_control_plane, TAINTS[1])
    assert not chartlib.tolerated(only_control_plane, TAINTS[0])
    assert not chartlib.tolerated([{"operator": "Exists", "effect": "NoSchedule"}], TAINTS[0])
    assert chartlib.tolerated([{"key": "CriticalAddonsOnly", "operator": "Exists"}], TAINTS[0])
    assert not chartlib.tolerated([{"key": "CriticalAddonsOnly", "value": "false"}], TAINTS[0])


def test_agent_runs_on_linux_nodes_only(variants):
    for name, rendered in variants.items():
        assert agent_spec(rendered)["nodeSelector"]["kubernetes.io/os"] == "linux", name


def test_agent_shares_the_hosts_pid_and_network_namespaces_and_resolves_services(default):
    spec = agent_spec(default)
    assert spec["hostPID"] is True
    assert spec["hostNetwork"] is True
    # Without it a hostNetwork pod uses the node's resolv.conf and cannot
    # resolve bakery-collector.<ns>.svc.
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert ".svc:" in flag(agent(default), "collector")


def test_host_proc_and_sys_are_mounted_read_only_and_passed_as_roots(variants):
    for name, rendered in variants.items():
        spec, c = agent_spec(rendered), agent(rendered)
        for host_path, mount_path, root_flag in (("/proc", "/host/proc", "proc-root"), ("/sys", "/host/sys", "sys-root")):
            m = mount(c, mount_path)
            assert m.get("readOnly") is True, f"{name}: {mount_path} is writable"
            assert volume(spec, m["name"])["hostPath"]["path"] == host_path, name
            assert flag(c, root_flag) == mount_path, name


def test_the_spool_is_the_only_writable_mount(variants):
    for name, rendered in variants.items():
        c = agent(rendered)
        writable = [m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")]
        assert writable == ["/var/lib/bakery/spool"], name
        assert flag(c, "spool-dir") == "/var/lib/bakery/spool", name


def test_spool_is_a_hostpath_by_default_and_an_emptydir_on_request(default, minimal):
    spool = volume(agent_spec(default), "spool")
    assert spool["hostPath"] == {"path": "/var/lib/bakery/spool", "type": "DirectoryOrCreate"}
    assert flag(agent(default), "spool-max-bytes") == str(64 * 1024 * 1024)
    assert volume(agent_spec(minimal), "spool") == {"name": "spool", "emptyDir": {"sizeLimit": "96Mi"}}


def test_rolling_update_never_runs_two_agents_on_one_node(variants):
    for name, rendered in variants.items():
        strategy = rendered.one("DaemonSet", None)["spec"]["updateStrategy"]
        assert strategy["type"] == "RollingUpdate", name
        # Two agents on one node would write the same hostPath spool.
        assert strategy["rollingUpdate"]["maxSurge"] == 0, name
    assert rendered_max_unavailable(variants["full-values"]) == "20%"


def rendered_max_unavailable(rendered: chartlib.Rendered):
    return rendered.one("DaemonSet", None)["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"]


def test_node_name_comes_from_the_downward_api(variants):
    for name, rendered in variants.items():
        node_name = env(agent(rendered))["NODE_NAME"]
        assert node_name == {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}, name


def test_priority_class_is_a_value(default, full):
    assert "priorityClassName" not in agent_spec(default)
    assert agent_spec(full)["priorityClassName"] == "system-node-critical"


def test_agent_security_context(default):
    spec, c = agent_spec(default), agent(default)
    sc = c["securityContext"]
    assert sc["privileged"] is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # uid 0 is deliberate: added capabilities are not ambient, so only uid 0
    # keeps SYS_PTRACE across exec (values.yaml, agent.capabilities).
    assert sc["runAsUser"] == 0


def test_agent_drops_every_capability_and_adds_only_sys_ptrace(default, minimal):
    caps = agent(default)["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"]
    assert caps["add"] == ["SYS_PTRACE"]
    # With capabilities: [] nothing is added at all.
    assert agent(minimal)["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_apparmor_override_can_be_left_out(default, minimal):
    assert agent(default)["securityContext"]["appArmorProfile"] == {"type": "Unconfined"}
    assert "appArmorProfile" not in agent(minimal)["securityContext"]


def test_agent_needs_no_kubernetes_api(variants):
    for name, rendered in variants.items():
        spec = agent_spec(rendered)
        assert spec["automountServiceAccountToken"] is False, name
        account = rendered.one("ServiceAccount", spec["serviceAccountName"])
        assert account["automountServiceAccountToken"] is False, name
        for binding in rendered.all("RoleBinding") + rendered.all("ClusterRoleBinding"):
            subjects = {s["name"] for s in binding["subjects"]}
            assert spec["serviceAccountName"] not in subjects, f"{name}: {binding['metadata']['name']}"


def test_agent_resources_have_requests_and_limits(variants):
    for name, rendered in variants.items():
        resources = agent(rendered)["resources"]
        assert set(resources["requests"]) == {"cpu", "memory"}, name
        assert set(resources["limits"]) == {"cpu", "memory"}, name


def test_agent_authenticates_with_a_projected_service_account_token(default, existing, minimal):
    c, spec = agent(default), agent_spec(default)
    token_mount = mount(c, "/var/run/secrets/bakery")
    assert flag(c, "token-file") == "/var/run/secrets/bakery/token"
    assert token_mount["readOnly"] is True
    # a token for the audience "bakery" only: the API server itself refuses it
    assert volume(spec, token_mount["name"])["projected"]["sources"] == [
        {"serviceAccountToken": {"audience": "bakery", "expirationSeconds": 3600, "path": "token"}}
    ]
    assert "--insecure-no-auth" not in c["args"]
    # The shared token, for clusters without TokenReview, comes from a Secret.
    c, spec = agent(existing), agent_spec(existing)
    assert flag(c, "token-file") == "/etc/bakery/token/token"
    assert volume(spec, mount(c, "/etc/bakery/token")["name"])["secret"]["secretName"] == "lab-bakery-token"
    # Without auth there is neither a token file nor a token Secret.
    c = agent(minimal)
    assert "--insecure-no-auth" in c["args"] and flag(c, "token-file") is None
    assert minimal.maybe("Secret") is None


def test_agent_uses_https_and_the_ca_with_tls(full):
    c = agent(full)
    assert flag(c, "collector") == "https://bakery-collector.bakery.svc:7431"
    assert flag(c, "tls-ca") == "/etc/bakery/tls/ca.crt"
    tls = volume(agent_spec(full), mount(c, "/etc/bakery/tls")["name"])
    assert tls["secret"]["secretName"] == "bakery-collector-tls"
    # Only the CA goes to the agents, never the collector's key.
    assert [i["key"] for i in tls["secret"]["items"]] == ["ca.crt"]
