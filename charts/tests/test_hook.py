"""The `helm test` hook: a pod that checks the collector answers.

Its shell script is run here, unchanged, by busybox (the applets the
docker.io/library/busybox image has) against local servers: a real HTTP/2
server (the h2 library, which answers the preface as a gRPC server does), a
plain HTTP/1.1 server, and a closed port. Needs the `busybox` binary (Debian:
apt-get install busybox); without it the script tests are skipped, saying so.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

import h2.config
import h2.connection
import pytest

import chartlib
from chartlib import container, env, pod_spec, restricted_violations

BUSYBOX = shutil.which("busybox")
APPLETS = ("sh", "nc", "timeout", "head", "od", "tr", "printf")


def hook(rendered: chartlib.Rendered) -> dict:
    pods = rendered.all("Pod")
    assert len(pods) == 1
    return pods[0]


def test_hook_is_a_helm_test_that_targets_the_service(default):
    pod = hook(default)
    annotations = pod["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    assert pod["spec"]["restartPolicy"] == "Never"
    variables = env(container(pod_spec(pod), "check"))
    service = default.one("Service")
    assert variables["COLLECTOR_HOST"]["value"] == f"{service['metadata']['name']}.bakery.svc"
    assert variables["COLLECTOR_PORT"]["value"] == str(service["spec"]["ports"][0]["port"])
    # TLS is on by default
    assert variables["COLLECTOR_TLS"]["value"] == "true"
    assert restricted_violations(pod["spec"], pod["metadata"]) == []


class Server:
    """A TCP server on 127.0.0.1:0 that handles each connection with `serve`
    on a thread; every socket has a deadline so nothing outlives the test."""

    def __init__(self, serve) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.serve = serve
        self.stop = threading.Event()
        self.connections = 0
        self.thread = threading.Thread(target=self.accept_loop, daemon=True)

    def accept_loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            self.connections += 1
            conn.settimeout(10)
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.serve(conn, self.stop)
            except OSError:
                pass

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.listener.close()


def http2_server(conn: socket.socket, stop: threading.Event) -> None:
    """Answers as an HTTP/2 server and, like a gRPC server, keeps the
    connection open afterwards (until the client goes or the test ends)."""
    h2conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
    h2conn.initiate_connection()
    conn.sendall(h2conn.data_to_send())
    conn.settimeout(0.2)
    deadline = time.monotonic() + 10
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            data = conn.recv(65536)
        except socket.timeout:
            continue
        if not data:
            return
        h2conn.receive_data(data)
        conn.sendall(h2conn.data_to_send())


def http1_server(conn: socket.socket, stop: threading.Event) -> None:
    conn.recv(1024)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def run_hook_script(rendered: chartlib.Rendered, port: int, tmp_path) -> subprocess.CompletedProcess:
    if BUSYBOX is None:
        pytest.skip("busybox is not installed (apt-get install busybox): the hook script was not run")
    applets = tmp_path / "bin"
    applets.mkdir(parents=True)
    for applet in APPLETS:
        (applets / applet).symlink_to(BUSYBOX)
    check = container(pod_spec(hook(rendered)), "check")
    assert check["command"] == ["sh", "-c"]
    variables = {name: e["value"] for name, e in env(check).items()}
    variables.update(COLLECTOR_HOST="127.0.0.1", COLLECTOR_PORT=str(port), PATH=str(applets))
    return subprocess.run(
        [str(applets / "sh"), "-c", check["args"][0]],
        env=variables, capture_output=True, text=True, errors="replace", timeout=30,
    )


def test_hook_passes_against_an_http2_server(minimal, tmp_path):
    with Server(http2_server) as server:
        result = run_hook_script(minimal, server.port, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "answered the HTTP/2 preface with SETTINGS" in result.stdout
    assert server.connections == 1


def test_hook_fails_against_an_http1_server(minimal, tmp_path):
    with Server(http1_server) as server:
        result = run_hook_script(minimal, server.port, tmp_path)
    assert result.returncode == 1
    assert "did not answer as an HTTP/2 server" in result.stdout
    assert server.connections == 1


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def test_hook_fails_when_nothing_listens(minimal, tmp_path):
    result = run_hook_script(minimal, closed_port(), tmp_path)
    assert result.returncode == 1
    assert "did not answer" in result.stdout


def test_hook_with_tls_requires_a_listening_port(full, tmp_path):
    with Server(http2_server) as server:
        result = run_hook_script(full, server.port, tmp_path / "up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "accepts TCP connections" in result.stdout
    result = run_hook_script(full, closed_port(), tmp_path / "down")
    assert result.returncode == 1
    assert "cannot connect" in result.stdout
