"""NOTES.txt tells the user how to reach the collector, what protects what
(which Secret holds which credential), and how to label the namespace for Pod
Security."""

from __future__ import annotations

import chartlib


def test_notes_show_port_forward_and_service_address(default):
    notes = default.notes
    assert "kubectl -n bakery port-forward svc/bakery-collector 7431:7431" in notes
    assert "bakery-top --context <your-context> -n bakery --release bakery" in notes
    # TLS and tokens by default: bakery-top gets the CA and the read token
    assert "bakery-top --collector https://127.0.0.1:7431 --tls-ca ca.crt --token-file read-token" in notes
    assert "get secret bakery-read-token -o jsonpath='{.data.token}'" in notes
    assert "get secret bakery-tls -o jsonpath='{.data.ca\\.crt}'" in notes
    assert "https://bakery-collector.bakery.svc:7431" in notes
    # the name in the command is the Service that exists
    assert default.one("Service")["metadata"]["name"] == "bakery-collector"


def test_notes_show_the_pod_security_labels(default):
    notes = default.notes
    assert "kubectl label namespace bakery" in notes
    for mode in ("enforce", "warn", "audit"):
        assert f"pod-security.kubernetes.io/{mode}=privileged" in notes


def test_notes_follow_the_release_and_tls():
    rendered = chartlib.render({"tls": {"enabled": True, "secretName": "t"}}, release="lab", namespace="telemetry")
    assert "kubectl -n telemetry port-forward svc/lab-bakery-collector 7431:7431" in rendered.notes
    assert "bakery-top --collector https://127.0.0.1:7431" in rendered.notes
    assert "https://lab-bakery-collector.telemetry.svc:7431" in rendered.notes
    assert "kubectl label namespace telemetry" in rendered.notes


def test_notes_warn_without_auth(minimal):
    assert "WARNING: auth.insecureNoAuth is true" in minimal.notes
    assert "bakery-top --collector http://127.0.0.1:7431" in minimal.notes
    assert "TLS is off" in minimal.notes
    assert "Prometheus metrics are off" in minimal.notes


def test_notes_say_what_protects_what(default, existing):
    notes = " ".join(default.notes.split())
    assert "a projected token of the ServiceAccount bakery-agent" in notes
    assert "It proves the agent's node" in notes
    assert "the read token in the Secret bakery-read-token" in notes
    assert "the control token in the Secret bakery-control-token" in notes
    assert "served only with the read token" in notes
    # the shared token is named for what it is: not identity-binding
    notes = " ".join(existing.notes.split())
    assert "the shared token in the Secret lab-bakery-token" in notes
    assert "It does NOT bind identity" in notes
