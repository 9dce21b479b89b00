"""Identity and exposure: TLS on by default with the chart's own CA (kept
across upgrades) or cert-manager's Certificates, the agents and the collector
using the same Secret (the agents only its CA), and /metrics that can be turned
off entirely or served only to the read token."""

from __future__ import annotations

import base64
import shutil
import subprocess

import helm_python as helm
import pytest

import chartlib
from chartlib import container, flag, mount, pod_spec, volume

CERT_MANAGER = {"tls": {"certificateSource": "certManager"}}


def collector(rendered: chartlib.Rendered) -> dict:
    return container(pod_spec(rendered.one("Deployment")), "collector")


def agent(rendered: chartlib.Rendered) -> dict:
    return container(pod_spec(rendered.one("DaemonSet")), "agent")


def tls_secret_of(rendered: chartlib.Rendered) -> tuple[str, str]:
    """The Secret the collector serves from and the one the agents take ca.crt from."""
    c, a = collector(rendered), agent(rendered)
    served = volume(pod_spec(rendered.one("Deployment")), mount(c, "/etc/bakery/tls")["name"])["secret"]
    trusted = volume(pod_spec(rendered.one("DaemonSet")), mount(a, "/etc/bakery/tls")["name"])["secret"]
    assert [i["key"] for i in trusted["items"]] == ["ca.crt"], "the agents get the CA, never the key"
    return served["secretName"], trusted["secretName"]


def openssl(pem: str, *args: str) -> str:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: the generated certificate was not inspected")
    result = subprocess.run(["openssl", *args], input=pem, capture_output=True, text=True, check=True)
    return result.stdout


def test_tls_is_on_by_default_with_a_ca_the_chart_generates(default):
    assert flag(agent(default), "collector") == "https://bakery-collector.bakery.svc:7431"
    assert flag(agent(default), "tls-ca") == "/etc/bakery/tls/ca.crt"
    assert tls_secret_of(default) == ("bakery-tls", "bakery-tls")
    secret = default.one("Secret", "bakery-tls")
    assert secret["type"] == "kubernetes.io/tls"
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert set(data) == {"tls.crt", "tls.key", "ca.crt"}
    # The certificate names the Service in every form, and localhost for port-forward.
    names = openssl(data["tls.crt"], "x509", "-noout", "-ext", "subjectAltName")
    for name in ("DNS:bakery-collector.bakery.svc", "DNS:bakery-collector.bakery.svc.cluster.local",
                 "DNS:bakery-collector", "DNS:localhost", "IP Address:127.0.0.1"):
        assert name in names, names
    # ... and is signed by the CA the agents and bakery-top trust.
    with open_files(data) as (ca, cert):
        verified = subprocess.run(["openssl", "verify", "-CAfile", ca, cert], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert default.all("Certificate") == [] and default.all("Issuer") == []


class open_files:
    """ca.crt and tls.crt in a temporary directory, for `openssl verify`."""

    def __init__(self, data: dict[str, str]) -> None:
        import tempfile

        self.dir = tempfile.TemporaryDirectory()
        self.data = data

    def __enter__(self) -> tuple[str, str]:
        paths = []
        for key in ("ca.crt", "tls.crt"):
            path = f"{self.dir.name}/{key}"
            with open(path, "w") as file:
                file.write(self.data[key])
            paths.append(path)
        return paths[0], paths[1]

    def __exit__(self, *exc) -> None:
        self.dir.cleanup()


def render_against(api: chartlib.FakeKubeAPI, values: dict, *, upgrade: bool) -> chartlib.Rendered:
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


def test_an_upgrade_keeps_the_generated_ca_so_agents_keep_trusting_it():
    with chartlib.FakeKubeAPI() as api:
        installed = render_against(api, {}, upgrade=False)
        data = installed.one("Secret", "bakery-tls")["data"]
        api.add_secret(chartlib.NAMESPACE, "bakery-tls", data)
        upgraded = render_against(api, {}, upgrade=True)
        assert f"/api/v1/namespaces/{chartlib.NAMESPACE}/secrets/bakery-tls" in api.requests
    assert upgraded.one("Secret", "bakery-tls")["data"] == data
    # without a Secret in the cluster (helm template) each render makes a new CA
    assert chartlib.render().one("Secret", "bakery-tls")["data"]["ca.crt"] != data["ca.crt"]


def test_cert_manager_makes_the_certificate_with_its_own_ca_chain():
    rendered = chartlib.render(CERT_MANAGER)
    assert rendered.maybe("Secret", "bakery-tls") is None, "cert-manager writes the Secret, not Helm"
    assert tls_secret_of(rendered) == ("bakery-tls", "bakery-tls")
    issuers = {i["metadata"]["name"]: i["spec"] for i in rendered.all("Issuer")}
    assert issuers == {"bakery-selfsigned": {"selfSigned": {}}, "bakery-ca": {"ca": {"secretName": "bakery-ca"}}}
    certificates = {c["metadata"]["name"]: c["spec"] for c in rendered.all("Certificate")}
    ca, leaf = certificates["bakery-ca"], certificates["bakery-tls"]
    assert ca["isCA"] is True and ca["secretName"] == "bakery-ca"
    assert ca["issuerRef"] == {"name": "bakery-selfsigned", "kind": "Issuer", "group": "cert-manager.io"}
    assert leaf["secretName"] == "bakery-tls"
    assert leaf["issuerRef"] == {"name": "bakery-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert "bakery-collector.bakery.svc" in leaf["dnsNames"] and "localhost" in leaf["dnsNames"]
    assert leaf["ipAddresses"] == ["127.0.0.1"]
    for obj in rendered.all("Issuer") + rendered.all("Certificate"):
        chartlib.validate(obj, chartlib.MIN_KUBE_VERSION)


def test_cert_manager_with_the_users_issuer(variants):
    rendered = variants["cert-manager-values"]
    assert rendered.all("Issuer") == []
    (leaf,) = rendered.all("Certificate")
    assert leaf["spec"]["issuerRef"] == {"name": "homelab-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert tls_secret_of(rendered) == (leaf["spec"]["secretName"],) * 2


def test_auto_generates_where_cert_manager_cannot_be_seen_and_a_named_secret_makes_nothing(full):
    # helm template (and this render) sees no cert-manager.io/v1: generated
    assert chartlib.render({"tls": {"certificateSource": "auto"}}).maybe("Secret", "bakery-tls") is not None
    assert tls_secret_of(full) == ("bakery-collector-tls", "bakery-collector-tls")
    assert full.all("Certificate") == [] and full.maybe("Secret", "bakery-tls") is None


def test_tls_off_uses_plain_http(minimal):
    assert flag(agent(minimal), "collector") == "http://bakery-collector.bakery.svc:7431"
    assert flag(agent(minimal), "tls-ca") is None and flag(collector(minimal), "tls-cert") is None
    assert minimal.all("Secret") == [] and minimal.all("Certificate") == []


def test_metrics_disabled_means_no_port_no_service_port_no_servicemonitor_and_no_listener(minimal):
    c = collector(minimal)
    assert flag(c, "metrics-listen") == "off"
    assert "metrics" not in [p["name"] for p in c["ports"]]
    assert "metrics" not in [p["name"] for p in minimal.one("Service")["spec"]["ports"]]
    assert minimal.all("ServiceMonitor") == []
    assert "--metrics-require-token" not in c["args"]


def test_metrics_want_the_read_token_and_the_servicemonitor_sends_it(default, variants):
    assert "--metrics-require-token" in collector(default)["args"]
    monitor = variants["cert-manager-values"].one("ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["authorization"] == {
        "type": "Bearer", "credentials": {"name": "bakery-read-token", "key": "token"}
    }
    open_metrics = chartlib.render({"collector": {"metrics": {"requireToken": False,
                                                              "serviceMonitor": {"enabled": True}}}})
    assert "--metrics-require-token" not in collector(open_metrics)["args"]
    assert "authorization" not in open_metrics.one("ServiceMonitor")["spec"]["endpoints"][0]
    assert "open to anyone who reaches the port" in " ".join(open_metrics.notes.split())


def test_the_agents_token_is_for_bakery_only_and_the_collector_may_review_it(default):
    projected = volume(pod_spec(default.one("DaemonSet")), "agent-token")["projected"]["sources"][0]
    assert projected["serviceAccountToken"]["audience"] == "bakery"
    # the ServiceAccount named to the collector is the agents' own
    account = pod_spec(default.one("DaemonSet"))["serviceAccountName"]
    assert flag(collector(default), "agent-service-account") == f"bakery/{account}"
    rules = default.one("ClusterRole")["rules"]
    assert {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]} in rules
    longer = chartlib.render({"auth": {"serviceAccountToken": {"expirationSeconds": 7200}}})
    source = volume(pod_spec(longer.one("DaemonSet")), "agent-token")["projected"]["sources"][0]
    assert source["serviceAccountToken"]["expirationSeconds"] == 7200
