"""NOTES.txt tells the user how to reach the collector and how to label the
namespace for Pod Security."""

from __future__ import annotations

import chartlib


def test_notes_show_port_forward_and_service_address(default):
    notes = default.notes
    assert "kubectl -n bakery port-forward svc/bakery-collector 7431:7431" in notes
    assert "bakery-top --collector http://127.0.0.1:7431" in notes
    assert "http://bakery-collector.bakery.svc:7431" in notes
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
