"""Pod Security: nothing is privileged, the collector and the test pod meet
`restricted`, the agent is the only pod that needs the `privileged` namespace
level, and why."""

from __future__ import annotations

import copy

import pytest

import chartlib
from chartlib import pod_metadata, pod_spec, restricted_violations


def test_nothing_is_privileged_or_escalates_in_any_variant(variants):
    for name, rendered in variants.items():
        for pod, spec in chartlib.pods(rendered):
            for c in chartlib.all_containers(spec):
                sc = c.get("securityContext") or {}
                where = f"{name}: {pod} container {c['name']}"
                assert sc.get("privileged") is False, where
                assert sc.get("allowPrivilegeEscalation") is False, where
                assert sc.get("readOnlyRootFilesystem") is True, where
                assert sc["capabilities"]["drop"] == ["ALL"], where


@pytest.mark.parametrize("kind,name", [("Deployment", "bakery-collector"), ("Pod", "bakery-test-collector")])
def test_collector_and_test_pod_meet_restricted_in_every_variant(variants, kind, name):
    for variant, rendered in variants.items():
        obj = [o for o in rendered.all(kind) if o["metadata"]["name"].endswith(name.removeprefix("bakery"))]
        assert len(obj) == 1, variant
        assert restricted_violations(pod_spec(obj[0]), pod_metadata(obj[0])) == [], variant


def test_agent_breaks_restricted_exactly_where_expected(default):
    """The agent needs the `privileged` namespace level, for these reasons and
    no others (NOTES.txt tells the user to label the namespace)."""
    daemonset = default.one("DaemonSet", "bakery-agent")
    problems = restricted_violations(pod_spec(daemonset), pod_metadata(daemonset))
    assert sorted(problems) == sorted([
        "hostNetwork is true",
        "hostPID is true",
        "volume proc is a hostPath",
        "volume sys is a hostPath",
        "volume spool is a hostPath",
        "volume proc has type ['hostPath']",
        "volume sys has type ['hostPath']",
        "volume spool has type ['hostPath']",
        "agent: appArmorProfile Unconfined",
        "agent: runAsNonRoot is not true",
        "agent: runAsUser is 0",
        "agent: adds capabilities ['SYS_PTRACE']",
        "agent: adds non-baseline capabilities ['SYS_PTRACE']",
    ])


RESTRICTED_POD = {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{
        "name": "c",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }],
    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "x"}}],
}


def with_change(path: list, value) -> dict:
    spec = copy.deepcopy(RESTRICTED_POD)
    target = spec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return spec


@pytest.mark.parametrize("path,value,expected", [
    (["hostNetwork"], True, "hostNetwork is true"),
    (["hostIPC"], True, "hostIPC is true"),
    (["volumes"], [{"name": "h", "hostPath": {"path": "/"}}], "volume h is a hostPath"),
    (["securityContext", "runAsNonRoot"], False, "c: runAsNonRoot is not true"),
    (["securityContext", "runAsUser"], 0, "pod runAsUser is 0"),
    (["securityContext", "seccompProfile"], {"type": "Unconfined"}, "c: seccompProfile is Unconfined, not RuntimeDefault/Localhost"),
    (["containers", 0, "securityContext", "allowPrivilegeEscalation"], True, "c: allowPrivilegeEscalation is not false"),
    (["containers", 0, "securityContext", "capabilities"], {"drop": ["NET_RAW"]}, "c: capabilities do not drop ALL"),
    (["containers", 0, "securityContext", "capabilities"], {"drop": ["ALL"], "add": ["CHOWN"]}, "c: adds capabilities ['CHOWN']"),
    (["containers", 0, "securityContext", "privileged"], True, "c: privileged"),
    (["containers", 0, "ports"], [{"containerPort": 80, "hostPort": 80}], "c: hostPort 80"),
])
def test_the_restricted_checker_catches_each_rule(path, value, expected):
    assert restricted_violations(RESTRICTED_POD) == []
    assert expected in restricted_violations(with_change(path, value))


def test_strict_validation_refuses_unknown_fields(default):
    """kubernetes-validate in strict mode, as the validate step uses it: a
    misspelt field is an error, not silently dropped as the API server would."""
    daemonset = copy.deepcopy(default.one("DaemonSet", "bakery-agent"))
    chartlib.validate(daemonset, chartlib.MIN_KUBE_VERSION)
    daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(ValueError, match="readOnlyRootFileSystem"):
        chartlib.validate(daemonset, chartlib.MIN_KUBE_VERSION)
