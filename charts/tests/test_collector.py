"""The collector: one writer with a persistent store, reachable through its
Service, exporting OTLP with headers from a Secret, and read-only RBAC."""

from __future__ import annotations

import base64

import pytest

import chartlib
from chartlib import container, env, flag, mount, pod_spec, volume


def collector_deployment(rendered: chartlib.Rendered) -> dict:
    deployments = rendered.all("Deployment")
    assert len(deployments) == 1
    return deployments[0]


def collector(rendered: chartlib.Rendered) -> dict:
    return container(pod_spec(collector_deployment(rendered)), "collector")


def test_one_replica_recreated_never_rolled(variants):
    for name, rendered in variants.items():
        spec = collector_deployment(rendered)["spec"]
        assert spec["replicas"] == 1, name
        # The store has a single writer: the old pod must be gone before the
        # new one opens it.
        assert spec["strategy"] == {"type": "Recreate"}, name


def test_data_dir_is_on_the_chart_made_pvc(default):
    deployment = collector_deployment(default)
    c = collector(default)
    data = mount(c, flag(c, "data-dir"))
    claim = volume(pod_spec(deployment), data["name"])["persistentVolumeClaim"]["claimName"]
    pvc = default.one("PersistentVolumeClaim", claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert "storageClassName" not in pvc["spec"], "empty storageClassName must mean the cluster default"


def test_existing_claim_and_no_persistence(existing, minimal, full):
    c = collector(existing)
    data = volume(pod_spec(collector_deployment(existing)), mount(c, flag(c, "data-dir"))["name"])
    assert data["persistentVolumeClaim"]["claimName"] == "lab-bakery-store"
    assert existing.all("PersistentVolumeClaim") == []
    c = collector(minimal)
    assert volume(pod_spec(collector_deployment(minimal)), mount(c, flag(c, "data-dir"))["name"])["emptyDir"] == {}
    assert minimal.all("PersistentVolumeClaim") == []
    assert full.one("PersistentVolumeClaim")["spec"]["storageClassName"] == "local-path"


def test_service_reaches_the_grpc_port(variants):
    for name, rendered in variants.items():
        service = rendered.one("Service")
        deployment = collector_deployment(rendered)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items(), name
        # The agents' selector must not pick the collector's pods and back.
        agent_labels = rendered.one("DaemonSet")["spec"]["template"]["metadata"]["labels"]
        assert not service["spec"]["selector"].items() <= agent_labels.items(), name
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert ports["grpc"]["port"] == 7431 and ports["grpc"]["targetPort"] == "grpc", name
        container_ports = {p["name"]: p["containerPort"] for p in collector(rendered)["ports"]}
        assert container_ports["grpc"] == 7431, name
        assert flag(collector(rendered), "listen") == "0.0.0.0:7431", name


def test_service_names_the_secrets_bakery_top_reads_through_the_cluster(default, existing, minimal):
    # bakery-top --context finds the read token and the CA by these annotations.
    annotations = default.one("Service")["metadata"]["annotations"]
    token = default.one("Secret", annotations["bakery.dev/read-token-secret"])
    assert base64.b64decode(token["data"]["token"]), "the read token Secret holds a token"
    tls = default.one("Secret", annotations["bakery.dev/tls-secret"])
    assert b"BEGIN CERTIFICATE" in base64.b64decode(tls["data"]["ca.crt"])
    # The user's own Secrets are named as they are; the chart does not render them.
    annotations = existing.one("Service")["metadata"]["annotations"]
    assert annotations["bakery.dev/read-token-secret"] == "lab-bakery-read"
    assert annotations["bakery.dev/tls-secret"] == "lab-bakery-tls"
    # Without auth and TLS there is nothing to read: bakery-top connects plain and without a token.
    annotations = minimal.one("Service")["metadata"].get("annotations") or {}
    assert not {k for k in annotations if k.startswith("bakery.dev/")}, annotations


def test_metrics_port_and_servicemonitor(default, full):
    # /metrics is on by default; the ServiceMonitor needs the operator's CRDs, so it is opt-in.
    assert [p["name"] for p in default.one("Service")["spec"]["ports"]] == ["grpc", "metrics"]
    assert flag(collector(default), "metrics-listen") == "0.0.0.0:9464"
    assert default.all("ServiceMonitor") == []
    without = chartlib.render({"collector": {"metrics": {"enabled": False}}})
    assert [p["name"] for p in without.one("Service")["spec"]["ports"]] == ["grpc"]
    # off, not merely unset: the collector would otherwise serve its default 0.0.0.0:9464
    assert flag(collector(without), "metrics-listen") == "off"

    service = full.one("Service")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["metrics"]["port"] == 9464 and ports["metrics"]["targetPort"] == "metrics"
    assert {p["name"]: p["containerPort"] for p in collector(full)["ports"]}["metrics"] == 9464
    assert flag(collector(full), "metrics-listen") == "0.0.0.0:9464"
    monitor = full.one("ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_servicemonitor_without_metrics_is_refused():
    from helm_python import HelmRenderError

    with pytest.raises(HelmRenderError, match="serviceMonitor.enabled needs collector.metrics.enabled"):
        chartlib.render({"collector": {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}}})


def test_otlp_headers_come_from_a_secret_never_the_pod_spec(full):
    c = collector(full)
    variables = env(c)
    assert variables["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://alloy.monitoring.svc:4318"
    assert variables["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == "http/protobuf"
    ref = variables["OTEL_EXPORTER_OTLP_HEADERS"]["valueFrom"]["secretKeyRef"]
    secret = full.one("Secret", ref["name"])
    assert base64.b64decode(secret["data"][ref["key"]]).decode() == "Authorization=Basic%20YmFrZXJ5OnNlY3JldA=="
    deployment_text = repr(collector_deployment(full))
    assert "YmFrZXJ5OnNlY3JldA" not in deployment_text


def test_otlp_headers_from_an_existing_secret(existing):
    ref = env(collector(existing))["OTEL_EXPORTER_OTLP_HEADERS"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "lab-otlp", "key": "otel-headers"}
    assert existing.all("Secret") == []


def test_otlp_tls_files_come_from_the_named_secret(existing, full):
    c = collector(existing)
    variables = env(c)
    directory = "/etc/bakery/otlp-tls"
    assert variables["OTEL_EXPORTER_OTLP_CERTIFICATE"]["value"] == f"{directory}/ca.crt"
    assert variables["OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"]["value"] == f"{directory}/tls.crt"
    assert variables["OTEL_EXPORTER_OTLP_CLIENT_KEY"]["value"] == f"{directory}/tls.key"
    mount = next(m for m in c["volumeMounts"] if m["name"] == "otlp-tls")
    assert mount["mountPath"] == directory and mount["readOnly"] is True
    volume = next(v for v in pod_spec(collector_deployment(existing))["volumes"] if v["name"] == "otlp-tls")
    assert volume["secret"]["secretName"] == "lab-otlp-tls"
    assert {item["key"] for item in volume["secret"]["items"]} == {"ca.crt", "tls.crt", "tls.key"}
    # Without a Secret named, nothing TLS-related is set or mounted.
    assert not [name for name in env(collector(full)) if "CERTIFICATE" in name or "CLIENT_KEY" in name]
    assert not [m for m in collector(full)["volumeMounts"] if m["name"] == "otlp-tls"]


def test_no_otlp_settings_without_an_endpoint(default):
    assert not [name for name in env(collector(default)) if name.startswith("OTEL_")]


def test_collector_pod_security_context(variants):
    for name, rendered in variants.items():
        spec = pod_spec(collector_deployment(rendered))
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == 65532, name
        # fsGroup makes the PVC writable for the non-root user.
        assert spec["securityContext"]["fsGroup"] == 65532, name


def test_collector_credentials_and_tls(default, existing, full, minimal):
    c = collector(default)
    # the agents' projected tokens, reviewed; no shared token
    assert flag(c, "agent-service-account") == "bakery/bakery-agent"
    assert flag(c, "token-file") is None
    assert flag(c, "read-token-file") == "/etc/bakery/read-token/token"
    assert flag(c, "control-token-file") == "/etc/bakery/control-token/token"
    assert mount(c, "/etc/bakery/read-token")["readOnly"] is True
    assert mount(c, "/etc/bakery/control-token")["readOnly"] is True
    assert flag(c, "tls-cert") == "/etc/bakery/tls/tls.crt"
    assert flag(c, "tls-key") == "/etc/bakery/tls/tls.key"
    c = collector(existing)
    assert flag(c, "token-file") == "/etc/bakery/token/token" and flag(c, "agent-service-account") is None
    c = collector(full)
    assert flag(c, "tls-cert") == "/etc/bakery/tls/tls.crt"
    c = collector(minimal)
    assert "--insecure-no-auth" in c["args"] and flag(c, "token-file") is None
    assert flag(c, "read-token-file") is None and flag(c, "tls-cert") is None


# --- RBAC ---------------------------------------------------------------------

EXPECTED_RULES = [
    {"apiGroups": [""], "resources": ["pods", "nodes", "services"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["replicasets", "deployments", "statefulsets", "daemonsets"],
     "verbs": ["get", "list", "watch"]},
    # MetalLB's status and advertisements: which nodes announce a LoadBalancer address.
    {"apiGroups": ["metallb.io"],
     "resources": ["servicel2statuses", "servicebgpstatuses", "l2advertisements", "bgpadvertisements"],
     "verbs": ["get", "list", "watch"]},
]
# Checking the agents' projected tokens (auth.agentCredential serviceAccountToken).
TOKEN_REVIEWS = {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}


def test_collector_rbac_is_read_only_and_exactly_what_it_needs(default, existing):
    role = default.one("ClusterRole")
    assert role["rules"] == EXPECTED_RULES + [TOKEN_REVIEWS]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        # the one create asks the API server about a token; it makes no object
        assert set(rule["verbs"]) <= {"get", "list", "watch"} or rule == TOKEN_REVIEWS
    # with the shared token, nothing is reviewed and the role stays read-only
    assert existing.one("ClusterRole")["rules"] == EXPECTED_RULES
    binding = default.one("ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    service_account = pod_spec(collector_deployment(default))["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": service_account, "namespace": "bakery"}]
    assert default.all("Role") == [] and default.all("RoleBinding") == []


def test_rbac_can_be_left_to_the_user(minimal):
    assert minimal.all("ClusterRole") == [] and minimal.all("ClusterRoleBinding") == []


def test_probes_ask_the_collector_itself(variants):
    # The kubelet probes /livez and /readyz on their own port: not TCP on the
    # gRPC port, which stays open on a collector that no longer commits.
    for name, rendered in variants.items():
        c = collector(rendered)
        assert flag(c, "health-listen") == "0.0.0.0:9465", name
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["health"] == 9465, name
        assert c["startupProbe"]["httpGet"] == {"path": "/livez", "port": "health"}, name
        assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "health"}, name
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}, name
        # a store opening after a crash gets two minutes before liveness counts
        startup = c["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, name
        # probes need no data and no token, so the Service does not expose them
        assert "health" not in [p["name"] for p in rendered.one("Service")["spec"]["ports"]], name


def test_the_health_port_can_move():
    rendered = chartlib.render({"collector": {"health": {"port": 19465}}})
    c = collector(rendered)
    assert flag(c, "health-listen") == "0.0.0.0:19465"
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["health"] == 19465
    assert c["readinessProbe"]["httpGet"]["port"] == "health"


def test_retention_size_keeps_the_store_inside_its_volume(default, full, minimal, existing):
    # 80 % of the chart-made volume: 2Gi -> 1638MiB, 5Gi -> 4096MiB.
    assert flag(collector(default), "retention-size") == "1638MiB"
    assert flag(collector(full), "retention-size") == "4096MiB"
    # no volume size the chart knows: no limit unless one is set
    assert flag(collector(minimal), "retention-size") is None
    assert flag(collector(existing), "retention-size") is None
    set_explicitly = chartlib.render({"collector": {"retentionSize": "900MiB"}})
    assert flag(collector(set_explicitly), "retention-size") == "900MiB"
    switched_off = chartlib.render({"collector": {"retentionSize": "off"}})
    assert flag(collector(switched_off), "retention-size") is None
    in_mebibytes = chartlib.render({"collector": {"persistence": {"size": "500Mi"}}})
    assert flag(collector(in_mebibytes), "retention-size") == "400MiB"
    # a size the template does not parse (decimal units) is left to the user
    decimal = chartlib.render({"collector": {"persistence": {"size": "2G"}}})
    assert flag(collector(decimal), "retention-size") is None
