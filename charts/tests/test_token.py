"""The token Secrets (read, control, and the agents' shared token with
auth.agentCredential sharedToken): generated at install, kept on upgrade.

The chart reads the Secret already in the cluster with Helm's `lookup`. Here
the cluster is chartlib.FakeKubeAPI, a local HTTP server; the real Helm engine
(helm-python-sdk's Config.render, which is cluster-aware) makes the real
discovery and GET requests against it. What is not covered: RBAC of the user
running helm (a user who cannot read Secrets gets a new token on upgrade, as
with any chart that uses lookup).
"""

from __future__ import annotations

import base64
import re

import helm_python as helm
import pytest

import chartlib

SHARED = {"auth": {"agentCredential": "sharedToken"}}
# (Secret, values that make the chart create it)
KEPT = [("bakery-read-token", {}), ("bakery-control-token", {}), ("bakery-token", SHARED)]


def token_of(rendered: chartlib.Rendered, secret: str) -> str:
    return base64.b64decode(rendered.one("Secret", secret)["data"]["token"]).decode()


def render_against(api: chartlib.FakeKubeAPI, values: dict, *, upgrade: bool) -> chartlib.Rendered:
    # A kubeconfig of its own, without credentials: the developer's
    # ~/.kube/config and $KUBECONFIG are never read or sent anywhere.
    kubeconfig = f"""
apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "{api.url}"}}}}]
users: [{{name: nobody, user: {{}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: nobody, namespace: {chartlib.NAMESPACE}}}}}]
current-context: fake
"""
    with helm.Config(kubeconfig_content=kubeconfig, namespace=chartlib.NAMESPACE) as config:
        return chartlib.render(values, config=config, upgrade=upgrade)


@pytest.mark.parametrize("secret,values", KEPT)
def test_install_generates_a_strong_token_each_time(secret, values):
    with chartlib.FakeKubeAPI() as api:
        first = token_of(render_against(api, values, upgrade=False), secret)
        second = token_of(render_against(api, values, upgrade=False), secret)
        assert f"/api/v1/namespaces/{chartlib.NAMESPACE}/secrets/{secret}" in api.requests
    assert re.fullmatch(r"[A-Za-z0-9]{48}", first), first
    assert first != second


@pytest.mark.parametrize("secret,values", KEPT)
def test_upgrade_keeps_the_token_already_in_the_cluster(secret, values):
    with chartlib.FakeKubeAPI() as api:
        installed = render_against(api, values, upgrade=False)
        api.add_secret(chartlib.NAMESPACE, secret, installed.one("Secret", secret)["data"])
        upgraded = render_against(api, values, upgrade=True)
        assert f"/api/v1/namespaces/{chartlib.NAMESPACE}/secrets/{secret}" in api.requests
    assert token_of(upgraded, secret) == token_of(installed, secret)


def test_the_read_and_control_tokens_differ():
    rendered = chartlib.render()
    assert token_of(rendered, "bakery-read-token") != token_of(rendered, "bakery-control-token")


def test_a_secret_in_another_namespace_is_not_reused():
    with chartlib.FakeKubeAPI() as api:
        api.add_secret("elsewhere", "bakery-read-token", {"token": base64.b64encode(b"not-this-one").decode()})
        rendered = render_against(api, {}, upgrade=True)
    assert token_of(rendered, "bakery-read-token") != "not-this-one"


def test_an_existing_secret_without_a_token_key_gets_a_new_token():
    with chartlib.FakeKubeAPI() as api:
        api.add_secret(chartlib.NAMESPACE, "bakery-control-token", {"other": base64.b64encode(b"x").decode()})
        rendered = render_against(api, {}, upgrade=True)
    assert re.fullmatch(r"[A-Za-z0-9]{48}", token_of(rendered, "bakery-control-token"))


def secret_volumes(rendered: chartlib.Rendered, kind: str) -> dict[str, str]:
    """Volume name -> Secret name of the pods of `kind`."""
    obj = rendered.all(kind)[0]
    return {v["name"]: v["secret"]["secretName"] for v in chartlib.pod_spec(obj).get("volumes") or [] if "secret" in v}


def test_each_side_mounts_exactly_the_token_secrets_it_needs(variants):
    for name, rendered in variants.items():
        agent, collector = secret_volumes(rendered, "DaemonSet"), secret_volumes(rendered, "Deployment")
        made = {s["metadata"]["name"] for s in rendered.all("Secret")}
        if name == "minimal-values":
            assert "token" not in agent and "read-token" not in collector, "no token without auth"
            assert made == set(), name
        elif name == "existing-secrets-values":
            # the shared agent token is mounted by both sides, people's tokens by the collector only
            assert agent["token"] == collector["token"] == "lab-bakery-token"
            assert (collector["read-token"], collector["control-token"]) == ("lab-bakery-read", "lab-bakery-control")
            assert made == set(), "the user's Secrets are used, none is made"
        else:
            # projected ServiceAccount tokens: no Secret for the agents at all
            assert "token" not in agent and "token" not in collector, name
            assert (collector["read-token"], collector["control-token"]) == ("bakery-read-token", "bakery-control-token")
            assert {"bakery-read-token", "bakery-control-token"} <= made, name
            assert "bakery-token" not in made, name
        # the agents never see people's tokens
        assert not {"read-token", "control-token"} & set(agent), name
