"""The token Secret: generated at install, kept on upgrade.

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

import chartlib

SECRET = "bakery-token"


def token_of(rendered: chartlib.Rendered) -> str:
    return base64.b64decode(rendered.one("Secret", SECRET)["data"]["token"]).decode()


def render_against(api: chartlib.FakeKubeAPI, *, upgrade: bool) -> chartlib.Rendered:
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
        return chartlib.render(config=config, upgrade=upgrade)


def test_install_generates_a_strong_token_each_time():
    with chartlib.FakeKubeAPI() as api:
        first = token_of(render_against(api, upgrade=False))
        second = token_of(render_against(api, upgrade=False))
        assert f"/api/v1/namespaces/{chartlib.NAMESPACE}/secrets/{SECRET}" in api.requests
    assert re.fullmatch(r"[A-Za-z0-9]{48}", first), first
    assert first != second


def test_upgrade_keeps_the_token_already_in_the_cluster():
    with chartlib.FakeKubeAPI() as api:
        installed = render_against(api, upgrade=False)
        api.add_secret(chartlib.NAMESPACE, SECRET, installed.one("Secret", SECRET)["data"])
        upgraded = render_against(api, upgrade=True)
        assert f"/api/v1/namespaces/{chartlib.NAMESPACE}/secrets/{SECRET}" in api.requests
    assert token_of(upgraded) == token_of(installed)


def test_a_secret_in_another_namespace_is_not_reused():
    with chartlib.FakeKubeAPI() as api:
        api.add_secret("elsewhere", SECRET, {"token": base64.b64encode(b"not-this-one").decode()})
        rendered = render_against(api, upgrade=True)
    assert token_of(rendered) != "not-this-one"


def test_an_existing_secret_without_a_token_key_gets_a_new_token():
    with chartlib.FakeKubeAPI() as api:
        api.add_secret(chartlib.NAMESPACE, SECRET, {"other": base64.b64encode(b"x").decode()})
        rendered = render_against(api, upgrade=True)
    assert re.fullmatch(r"[A-Za-z0-9]{48}", token_of(rendered))


def test_both_sides_mount_the_same_secret(variants):
    for name, rendered in variants.items():
        names = set()
        for _, spec in chartlib.pods(rendered):
            for v in spec.get("volumes") or []:
                if v["name"] == "token":
                    names.add(v["secret"]["secretName"])
        if name == "minimal-values":
            assert names == set(), "no token without auth"
        elif name == "existing-secrets-values":
            assert names == {"lab-bakery-token"}
            assert rendered.all("Secret") == [], "the user's Secret is used, none is made"
        else:
            assert names == {SECRET}, name
