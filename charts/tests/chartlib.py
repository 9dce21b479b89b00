"""Shared by the chart checks: render the bakery chart with the real Helm engine
(helm-python-sdk), pick objects out of the result, validate them against the
Kubernetes schemas, and judge pods against the Pod Security Standards.

Nothing here talks to a cluster, except FakeKubeAPI, which *is* the cluster for
the lookup tests: a local HTTP server answering the two requests Helm's
`lookup` makes.
"""

from __future__ import annotations

import json
import pathlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

TESTS_DIR = pathlib.Path(__file__).resolve().parent
CHART_DIR = TESTS_DIR.parent / "bakery"
CI_VALUES_DIR = CHART_DIR / "ci"
BAD_VALUES_DIR = TESTS_DIR / "bad-values"
SUBSET_SCHEMAS_DIR = TESTS_DIR / "schemas"

RELEASE = "bakery"
NAMESPACE = "bakery"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion); manifests
# are also validated against the newest release kubernetes-validate knows.
MIN_KUBE_VERSION = "1.30.0"


def newest_kube_version() -> str:
    return kubernetes_validate.latest_version()


def load_values(path: pathlib.Path) -> dict[str, Any]:
    """Parses a values file the way `helm -f` does (Helm's own YAML reader)."""
    return helm.values_from_yaml(path.read_text())


def variants() -> list[tuple[str, dict[str, Any]]]:
    """The default values and every ci/*.yaml, as (name, values)."""
    found = [("default", {})]
    for path in sorted(CI_VALUES_DIR.glob("*.yaml")):
        found.append((path.stem, load_values(path)))
    return found


@dataclass
class Rendered:
    """What one render produced: the Kubernetes objects and NOTES.txt."""

    objects: list[dict[str, Any]]
    notes: str
    # template path of each object, same order as `objects`
    sources: list[str] = field(default_factory=list)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o.get("kind") == kind]

    def maybe(self, kind: str, name: str | None = None) -> dict[str, Any] | None:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) <= 1, f"more than one {kind} named {name}: {found}"
        return found[0] if found else None

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = self.maybe(kind, name)
        kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in self.objects)
        assert found is not None, f"no {kind} {name or ''} rendered; rendered: {kinds}"
        return found


def parse_manifests(manifests: dict[str, str]) -> Rendered:
    objects: list[dict[str, Any]] = []
    sources: list[str] = []
    notes = ""
    for path in sorted(manifests):
        text = manifests[path]
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for document in yaml.safe_load_all(text):
            if document:
                objects.append(document)
                sources.append(path)
    return Rendered(objects=objects, notes=notes, sources=sources)


def render(
    values: dict[str, Any] | None = None,
    *,
    chart_dir: pathlib.Path = CHART_DIR,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    config: helm.Config | None = None,
    upgrade: bool = False,
) -> Rendered:
    """Renders the chart as `helm install` (or `helm upgrade`) would.

    With `config`, Helm's `lookup` asks that cluster; without, lookup finds
    nothing, as with `helm template`. Values are checked against
    values.schema.json first (HelmValuesError when they do not fit).
    """
    with helm.Chart.load(str(chart_dir)) as chart:
        options = dict(name=release, namespace=namespace, is_install=not upgrade, is_upgrade=upgrade)
        if config is not None:
            manifests = config.render(chart, values, **options)
        else:
            manifests = chart.render(values, **options)
    return parse_manifests(manifests)


def lint(values: dict[str, Any] | None = None, *, chart_dir: pathlib.Path = CHART_DIR) -> dict[str, Any]:
    """`helm lint --strict --kube-version v1.30.0`: the report as data."""
    return helm.lint(
        str(chart_dir), values, strict=True, namespace=NAMESPACE, kube_version=f"v{MIN_KUBE_VERSION}"
    )


# --- pods ------------------------------------------------------------------

WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job")


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "Pod":
        return obj["spec"]
    assert obj["kind"] in WORKLOAD_KINDS, obj["kind"]
    return obj["spec"]["template"]["spec"]


def pod_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["metadata"] if obj["kind"] == "Pod" else obj["spec"]["template"]["metadata"]


def pods(rendered: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod the release can create: (kind/name, pod spec)."""
    for obj in rendered.objects:
        if obj["kind"] == "Pod" or obj["kind"] in WORKLOAD_KINDS:
            yield f"{obj['kind']}/{obj['metadata']['name']}", pod_spec(obj)


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return (
        list(spec.get("initContainers") or [])
        + list(spec.get("containers") or [])
        + list(spec.get("ephemeralContainers") or [])
    )


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in all_containers(spec) if c["name"] == name]
    assert len(found) == 1, f"container {name}: found {len(found)}"
    return found[0]


def env(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env") or []}


def flag(c: dict[str, Any], name: str) -> str | None:
    """The value of `--name=value` in the container's args (None if absent)."""
    prefix = f"--{name}="
    values = [a[len(prefix):] for a in c.get("args") or [] if a.startswith(prefix)]
    assert len(values) <= 1, f"--{name} given {len(values)} times"
    return values[0] if values else None


def mount(c: dict[str, Any], path: str) -> dict[str, Any]:
    found = [m for m in c.get("volumeMounts") or [] if m["mountPath"] == path]
    assert len(found) == 1, f"{c['name']}: {len(found)} mounts at {path}"
    return found[0]


def volume(spec: dict[str, Any], name: str) -> dict[str, Any]:
    found = [v for v in spec.get("volumes") or [] if v["name"] == name]
    assert len(found) == 1, f"{len(found)} volumes named {name}"
    return found[0]


# --- taints ----------------------------------------------------------------


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """Kubernetes' Toleration.ToleratesTaint (k8s.io/api/core/v1/toleration.go):
    an empty effect matches every effect, an empty key with Exists matches every
    key, Equal (the default operator) compares values."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint["effect"]:
        return False
    key = toleration.get("key") or ""
    if key and key != taint["key"]:
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def tolerated(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


# --- Pod Security Standards -------------------------------------------------
#
# The `restricted` profile as written in
# https://kubernetes.io/docs/concepts/security/pod-security-standards/ (the
# v1.30 rules; restricted includes every baseline rule). Windows-only and
# annotation-based (pre-1.30 AppArmor) checks are included where a chart could
# set them. This is a transcription, not the admission plugin itself: no
# cluster is available to run that.

BASELINE_ADDABLE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
ALLOWED_SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def restricted_violations(spec: dict[str, Any], metadata: dict[str, Any] | None = None) -> list[str]:
    """Every rule of the `restricted` level the pod breaks (empty: it passes)."""
    problems: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    containers = all_containers(spec)

    # baseline
    for host_field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host_field):
            problems.append(f"{host_field} is true")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        problems.append("pod windowsOptions.hostProcess")
    for volume_ in spec.get("volumes") or []:
        if "hostPath" in volume_:
            problems.append(f"volume {volume_['name']} is a hostPath")
    if pod_sc.get("appArmorProfile", {}).get("type", "RuntimeDefault") not in ("RuntimeDefault", "Localhost"):
        problems.append("pod appArmorProfile is not RuntimeDefault/Localhost")
    for key, value in ((metadata or {}).get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            problems.append(f"annotation {key}={value}")
    if (pod_sc.get("seLinuxOptions") or {}).get("type", "") not in ALLOWED_SELINUX_TYPES:
        problems.append("pod seLinuxOptions.type not allowed")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            problems.append(f"sysctl {sysctl['name']} is not in the safe set")

    # restricted
    for volume_ in spec.get("volumes") or []:
        kinds = set(volume_) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume_['name']} has type {sorted(kinds)}")
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod runAsUser is 0")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp == "Unconfined":
        problems.append("pod seccompProfile is Unconfined")

    for c in containers:
        name = c["name"]
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            problems.append(f"{name}: windowsOptions.hostProcess")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort {port['hostPort']}")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{name}: procMount {sc['procMount']}")
        if (sc.get("seLinuxOptions") or {}).get("type", "") not in ALLOWED_SELINUX_TYPES:
            problems.append(f"{name}: seLinuxOptions.type not allowed")
        if (sc.get("appArmorProfile") or {}).get("type", "RuntimeDefault") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: appArmorProfile {sc['appArmorProfile']['type']}")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if run_as_non_root is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            problems.append(f"{name}: runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is {seccomp}, not RuntimeDefault/Localhost")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        added = set(capabilities.get("add") or [])
        if not added <= {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {sorted(added - {'NET_BIND_SERVICE'})}")
        if not added <= BASELINE_ADDABLE_CAPABILITIES:
            problems.append(f"{name}: adds non-baseline capabilities {sorted(added - BASELINE_ADDABLE_CAPABILITIES)}")
    return problems


# --- schema validation ------------------------------------------------------


def subset_schema(obj: dict[str, Any]) -> dict[str, Any] | None:
    """Our own strict schema for a custom resource kubernetes-validate has no
    schema for (schemas/<kind>-<version>.json), or None."""
    group_version = obj["apiVersion"].split("/")[-1]
    path = SUBSET_SCHEMAS_DIR / f"{obj['kind'].lower()}-{group_version}.json"
    if path.exists():
        return json.loads(path.read_text())
    return None


def validate(obj: dict[str, Any], kube_version: str) -> str:
    """Validates one object strictly (unknown fields are errors). Returns what it
    was checked against; raises ValueError with a readable message."""
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    try:
        checked = kubernetes_validate.validate(obj, kube_version, strict=True)
        return f"Kubernetes {checked} (strict)"
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.absolute_path)
        raise ValueError(f"{name} does not validate against Kubernetes {error.version}: {path}: {error.message}")
    except kubernetes_validate.SchemaNotFoundError:
        schema = subset_schema(obj)
        if schema is None:
            raise ValueError(
                f"{name}: kubernetes-validate has no schema for {obj['apiVersion']} and there is no "
                f"subset schema in {SUBSET_SCHEMAS_DIR}"
            )
        try:
            jsonschema.validate(obj, schema, cls=jsonschema.Draft202012Validator)
        except jsonschema.ValidationError as error:
            path = ".".join(str(p) for p in error.absolute_path)
            raise ValueError(f"{name} does not validate against {schema['title']}: {path}: {error.message}")
        return schema["title"]


# --- a fake Kubernetes API for `lookup` --------------------------------------


class FakeKubeAPI:
    """Serves the two requests Helm's `lookup "v1" "Secret" ns name` makes:
    discovery of the core group (GET /api/v1) and GET of the Secret, which is
    a 404 Status unless it was added with `add_secret`. Binds 127.0.0.1:0."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                api.requests.append(self.path)
                code, body = api.answer(self.path.split("?")[0])
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self.secrets[(namespace, name)] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque",
            "data": data,
        }

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        if path == "/api/v1":
            return 200, {
                "kind": "APIResourceList",
                "groupVersion": "v1",
                "resources": [
                    {"name": "secrets", "singularName": "secret", "namespaced": True, "kind": "Secret",
                     "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
                ],
            }
        parts = path.strip("/").split("/")
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "secrets":
            secret = self.secrets.get((parts[3], parts[5]))
            if secret is not None:
                return 200, secret
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                     "message": f"{path} not found"}

    def __enter__(self) -> FakeKubeAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
