"""The kustomize manifests in deploy/kubernetes, rendered, and the checks made on them.

Each ``check_*`` function takes the objects one overlay renders to and returns the problems
it finds, one sentence each (empty: none), so that tests/test_kubernetes.py can show a check
passing on every overlay and failing on a deliberately broken copy.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from lookupd.cli.settings import SERVE_SETTINGS, read_settings, setting_for
from lookupd.errors import LookupdError
from lookupd.wire import HEALTH_SERVICE_NAMES

Obj = dict[str, Any]

REPO = Path(__file__).resolve().parent.parent
KUBERNETES = REPO / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAYS: dict[str, Path] = {
    "base": BASE,
    "production": KUBERNETES / "overlays" / "production",
    "test": KUBERNETES / "overlays" / "test",
    "snapshot": KUBERNETES / "overlays" / "snapshot",
    "istio": KUBERNETES / "overlays" / "istio",
    "envoy-gateway": KUBERNETES / "overlays" / "envoy-gateway",
    "envoy-native": KUBERNETES / "overlays" / "envoy-native",
}
ISTIO_MESH_CONFIG = KUBERNETES / "overlays" / "istio" / "meshconfig.yaml"
GATEWAY_KINDS = frozenset({"AuthorizationPolicy", "SecurityPolicy", "ReferenceGrant"})
"""Objects of a gateway's CRDs, in the gateway overlays: checked by hand
(:func:`check_gateway`), as kubernetes-validate has no schema for them."""
LOCAL_OVERLAYS = frozenset({"test"})
"""Overlays for podman on one machine, not for a cluster: host network allowed."""

SERVER = "lookupd"
"""The Deployment, and its container that runs ``lookupd serve``."""
GATEWAY = "lookupd-gateway"
"""The Envoy Deployment of overlays/envoy-native, and its objects' name label."""
NAME_LABEL = "app.kubernetes.io/name"
POLICIES_CONFIGMAP = "lookupd-policies"
SELECTOR_LABELS = frozenset({"app.kubernetes.io/name", "app.kubernetes.io/instance"})
RECOMMENDED_LABELS = SELECTOR_LABELS | {"app.kubernetes.io/component", "app.kubernetes.io/part-of"}
VERSION_LABEL = "app.kubernetes.io/version"
RUN_AS = 10001
"""The image's user and group (Dockerfile: USER 10001:10001)."""

# The volume types the Pod Security Standards' restricted profile allows.
_RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)


def package_version() -> str:
    """The version in pyproject.toml (the installed metadata may be older in a checkout)."""
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(r'^version = "([^"]+)"$', text, re.MULTILINE)
    assert match is not None
    return match.group(1)


def kubectl() -> str | None:
    """The kubectl on PATH, or None."""
    return shutil.which("kubectl")


needs_kubectl = pytest.mark.skipif(
    kubectl() is None,
    reason="kubectl is not installed: the manifests are rendered with `kubectl kustomize`",
)


def render_all() -> dict[str, list[Obj]]:
    """Render every overlay with ``kubectl kustomize`` (in parallel); raise on a failure."""
    command = kubectl()
    assert command is not None
    running = {
        name: subprocess.Popen(
            [command, "kustomize", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, path in OVERLAYS.items()
    }
    rendered: dict[str, list[Obj]] = {}
    for name, process in running.items():
        out, err = process.communicate(timeout=60)
        if process.returncode != 0:
            msg = f"kubectl kustomize {OVERLAYS[name]} failed: {err.strip()}"
            raise AssertionError(msg)
        rendered[name] = [doc for doc in yaml.safe_load_all(out) if doc]
    return rendered


def find(docs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    """The objects of ``kind`` (named ``name`` if given)."""
    return [
        doc
        for doc in docs
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]


def deployment(docs: list[Obj], workload: str = SERVER) -> Obj:
    """The Deployment named ``workload`` (the server's unless told; there is exactly one)."""
    found = find(docs, "Deployment", workload)
    assert len(found) == 1, f"{len(found)} Deployments named {workload}"
    return found[0]


def pod_spec(docs: list[Obj], workload: str = SERVER) -> Obj:
    """The pod template's spec of a Deployment (the server's unless told)."""
    spec: Obj = deployment(docs, workload)["spec"]["template"]["spec"]
    return spec


def pod_labels(docs: list[Obj], workload: str = SERVER) -> dict[str, str]:
    """The labels of a Deployment's pods (the server's unless told)."""
    template = deployment(docs, workload)["spec"]["template"]
    labels: dict[str, str] = template["metadata"].get("labels", {})
    return labels


def split_gateway(docs: list[Obj]) -> tuple[list[Obj], list[Obj]]:
    """An overlay's objects as the server's and the native gateway's (by their name label;
    the second list is empty except in overlays/envoy-native)."""
    gateway = [d for d in docs if d["metadata"].get("labels", {}).get(NAME_LABEL) == GATEWAY]
    return [d for d in docs if d not in gateway], gateway


def containers(spec: Obj) -> Iterator[Obj]:
    """Every container of a pod spec, init containers (and native sidecars) included."""
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def server_container(docs: list[Obj]) -> Obj:
    """The container that runs ``lookupd serve``."""
    found: list[Obj] = [c for c in pod_spec(docs)["containers"] if c["name"] == SERVER]
    assert len(found) == 1, f"{len(found)} containers named {SERVER}"
    return found[0]


def environment(docs: list[Obj], container: Obj) -> dict[str, str]:
    """A container's environment as the kubelet sets it: envFrom ConfigMaps, then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref is not None, f"{container['name']}: only envFrom configMapRef is read here"
        configmaps = find(docs, "ConfigMap", ref["name"])
        assert configmaps, f"{container['name']}: envFrom names a missing ConfigMap {ref['name']}"
        env.update(configmaps[0].get("data", {}))
    for entry in container.get("env", []):
        if "value" not in entry:
            assert not entry["name"].startswith("LOOKUPD_"), (
                f"{entry['name']} must be a literal value so that it can be checked"
            )
            continue
        env[entry["name"]] = entry["value"]
    return env


def setting(env: Mapping[str, str], flag: str) -> Any:
    """A ``lookupd serve`` setting's value in ``env``, read by lookupd, else its default."""
    args = argparse.Namespace(**{s.dest: None for s in SERVE_SETTINGS})
    value = read_settings(args, env).value(flag)
    return setting_for(flag).default_value() if value is None else value


def _seconds(duration: str) -> float:
    """A Prometheus duration (``30s``, ``1m30s``) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+)(ms|s|m|h)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        msg = f"not a duration: {duration!r}"
        raise ValueError(msg)
    return sum(int(n) * units[u] for n, u in parts)


def _subset(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# --- the checks ----------------------------------------------------------------------------


def check_probes(docs: list[Obj]) -> list[str]:
    """Every gRPC probe asks the port the server listens on, for a service it reports."""
    problems = []
    server = server_container(docs)
    env = environment(docs, server)
    port = setting(env, "--port")
    metrics_port = setting(env, "--metrics-port")
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = server.get(name)
        if probe is None or "grpc" not in probe:
            problems.append(f"{name}: no native gRPC probe")
            continue
        if probe["grpc"]["port"] != port:
            problems.append(f"{name}: port {probe['grpc']['port']}, the server listens on {port}")
        service = probe["grpc"].get("service", "")
        if service not in HEALTH_SERVICE_NAMES:
            problems.append(f"{name}: health service {service!r} is not one lookupd reports")
    ports = {p["name"]: p["containerPort"] for p in server.get("ports", [])}
    if ports and ports != {"grpc": port, "metrics": metrics_port}:
        problems.append(f"container ports {ports}, settings: grpc {port}, metrics {metrics_port}")
    annotations = deployment(docs)["spec"]["template"]["metadata"].get("annotations", {})
    scrape_port = annotations.get("prometheus.io/port")
    if scrape_port is not None and int(scrape_port) != metrics_port:
        problems.append(f"prometheus.io/port {scrape_port}, metrics on {metrics_port}")
    return problems


def check_settings(docs: list[Obj]) -> list[str]:
    """Every LOOKUPD_* variable is a ``lookupd serve`` setting with a value lookupd accepts."""
    problems = []
    variables = {s.variable for s in SERVE_SETTINGS}
    for container in containers(pod_spec(docs)):
        env = environment(docs, container)
        for name in sorted(n for n in env if n.startswith("LOOKUPD_")):
            if name not in variables:
                problems.append(f"{container['name']}: {name} is no lookupd serve setting")
        if container["name"] == SERVER:
            try:
                setting(env, "--port")
            except LookupdError as error:
                problems.append(f"{container['name']}: {error}")
    return problems


def check_shutdown(docs: list[Obj]) -> list[str]:
    """The grace period covers preStop, drain and grace; liveness does not kill a drain."""
    problems = []
    spec = pod_spec(docs)
    server = server_container(docs)
    env = environment(docs, server)
    drain, grace = setting(env, "--drain"), setting(env, "--grace")
    sleep = server.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    if not sleep:
        problems.append("no preStop sleep: SIGTERM may come before the endpoints are removed")
        sleep = 0
    if drain <= 0:
        problems.append("LOOKUPD_DRAIN_S is 0: health-checking clients get no time to move")
    period = spec.get("terminationGracePeriodSeconds", 30)
    if period < sleep + drain + grace:
        problems.append(
            f"terminationGracePeriodSeconds {period} < preStop {sleep} + drain {drain}"
            f" + grace {grace}"
        )
    liveness = server.get("livenessProbe", {})
    killed_after = liveness.get("periodSeconds", 10) * liveness.get("failureThreshold", 3)
    if killed_after <= drain + grace:
        problems.append(
            f"liveness restarts after {killed_after} s of NOT_SERVING, within drain + grace"
        )
    return problems


def check_policies(docs: list[Obj], scratch: Path) -> list[str]:
    """The policies ConfigMap validates with lookupd's loader and reaches the server whole."""
    from lookupd.errors import LookupdError as Invalid
    from lookupd.policies import load_policies

    problems = []
    configmaps = find(docs, "ConfigMap", POLICIES_CONFIGMAP)
    if len(configmaps) != 1:
        # A hashed name (lookupd-policies-abc123) would roll the pods on every change.
        return [f"no ConfigMap named exactly {POLICIES_CONFIGMAP}"]
    data = configmaps[0].get("data", {})
    server = server_container(docs)
    path = environment(docs, server).get("LOOKUPD_POLICIES", "")
    mounts = [
        m
        for m in server.get("volumeMounts", [])
        if path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    volumes = {v["name"]: v for v in pod_spec(docs).get("volumes", [])}
    if len(mounts) != 1:
        return [f"LOOKUPD_POLICIES={path!r} is on no volume mount"]
    mount = mounts[0]
    if "subPath" in mount:
        problems.append("the policies are mounted with subPath, which is never updated")
    if volumes.get(mount["name"], {}).get("configMap", {}).get("name") != POLICIES_CONFIGMAP:
        problems.append(f"{mount['mountPath']} is not the {POLICIES_CONFIGMAP} ConfigMap")
    key = path[len(mount["mountPath"].rstrip("/")) + 1 :]
    if key not in data:
        return [*problems, f"the ConfigMap has no key {key!r}"]
    policy_file = scratch / key
    policy_file.write_text(data[key])
    try:
        load_policies(policy_file)
    except Invalid as error:
        problems.append(f"{key} does not load: {error}")
    return problems


def check_security(docs: list[Obj], *, local: bool = False, workload: str = SERVER) -> list[str]:
    """The restricted profile on every container and the pod of ``workload`` (the server
    unless told); host network only if local."""
    problems = []
    spec = pod_spec(docs, workload)
    pod = spec.get("securityContext", {})
    for field in ("hostPID", "hostIPC") + (() if local else ("hostNetwork",)):
        if spec.get(field):
            problems.append(f"pod: {field}")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("pod: a service account token is mounted")
    if spec.get("enableServiceLinks") is not False:
        problems.append("pod: service links inject LOOKUPD_PORT=tcp://... variables")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUMES:
            problems.append(f"pod: volume {volume['name']} of type {sorted(kinds)}")
    for container in containers(spec):
        own = container.get("securityContext", {})

        def effective(field: str, own: Obj = own) -> Any:
            return own.get(field, pod.get(field))

        name = container["name"]
        if effective("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if effective("runAsUser") != RUN_AS or effective("runAsGroup") != RUN_AS:
            problems.append(f"{name}: not running as {RUN_AS}:{RUN_AS}")
        if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: seccomp profile is not RuntimeDefault")
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: privilege escalation is allowed")
        if own.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: the root file system is writable")
        if own.get("privileged"):
            problems.append(f"{name}: privileged")
        capabilities = own.get("capabilities", {})
        if capabilities.get("drop") != ["ALL"] or capabilities.get("add"):
            problems.append(f"{name}: capabilities are not exactly drop ALL")
        if container.get("ports") and any("hostPort" in p for p in container["ports"]):
            problems.append(f"{name}: a hostPort")
    return problems


def check_labels(docs: list[Obj], version: str, workload: str = SERVER) -> list[str]:
    """Recommended labels everywhere; selectors only on the stable ones; the right version
    (on the Deployment ``workload``, the server's unless told, and its pods)."""
    problems = []
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        labels = doc["metadata"].get("labels", {})
        missing = RECOMMENDED_LABELS - set(labels)
        if missing:
            problems.append(f"{where}: no {', '.join(sorted(missing))}")
        if VERSION_LABEL in labels and labels[VERSION_LABEL] != version:
            problems.append(f"{where}: version label {labels[VERSION_LABEL]}, not {version}")
    template = pod_labels(docs, workload)
    for where, labels in (
        ("Deployment", deployment(docs, workload)["metadata"].get("labels", {})),
        ("pod", template),
    ):
        if labels.get(VERSION_LABEL) != version:
            problems.append(f"{where}: version label {labels.get(VERSION_LABEL)!r}, not {version}")
    if RECOMMENDED_LABELS - set(template):
        problems.append(f"pod: no {', '.join(sorted(RECOMMENDED_LABELS - set(template)))}")
    for where, selector in selectors(docs):
        if set(selector) != SELECTOR_LABELS:
            problems.append(f"{where}: selects on {sorted(selector)}, not name and instance")
    return problems


def selectors(docs: list[Obj]) -> Iterator[tuple[str, dict[str, str]]]:
    """Every label selector meant to pick the server's pods (or its Services)."""
    for doc in docs:
        kind, name, spec = doc["kind"], doc["metadata"]["name"], doc.get("spec", {})
        where = f"{kind}/{name}"
        if kind == "Deployment":
            yield where, spec["selector"].get("matchLabels", {})
            for n, tsc in enumerate(spec["template"]["spec"].get("topologySpreadConstraints", [])):
                yield f"{where} topologySpreadConstraints[{n}]", tsc["labelSelector"]["matchLabels"]
        elif kind == "Service":
            yield where, spec.get("selector", {})
        elif kind == "PodDisruptionBudget":
            yield where, spec.get("selector", {}).get("matchLabels", {})
        elif kind == "NetworkPolicy":
            yield where, spec.get("podSelector", {}).get("matchLabels", {})
        elif kind == "ServiceMonitor":
            yield where, spec.get("selector", {}).get("matchLabels", {})


def check_selectors(docs: list[Obj], workload: str = SERVER) -> list[str]:
    """Every selector picks the pods of ``workload`` (the server's unless told); every
    Service port names a port of one of their containers."""
    problems = []
    pods = pod_labels(docs, workload)
    port_names = {
        p["name"] for c in pod_spec(docs, workload)["containers"] for p in c.get("ports", [])
    }
    for where, selector in selectors(docs):
        if where.startswith("ServiceMonitor/"):
            continue
        if not _subset(selector, pods):
            problems.append(f"{where}: selector {selector} does not match the pods")
    for service in find(docs, "Service"):
        for port in service["spec"]["ports"]:
            if port["targetPort"] not in port_names:
                problems.append(
                    f"Service/{service['metadata']['name']}: targetPort {port['targetPort']}"
                    " is no container port"
                )
    return problems


def check_autoscaling(docs: list[Obj]) -> list[str]:
    """The HPA scales the Deployment on its server container's CPU, from at least 2 pods."""
    problems = []
    for hpa in find(docs, "HorizontalPodAutoscaler"):
        spec = hpa["spec"]
        target = spec["scaleTargetRef"]
        found = find(docs, target["kind"], target["name"])
        if not found or target.get("apiVersion") != found[0]["apiVersion"]:
            problems.append(f"HPA target {target} is not in the manifests")
            continue
        if "replicas" in found[0]["spec"]:
            problems.append("the Deployment sets replicas, which every apply resets under the HPA")
        if spec.get("minReplicas", 1) < 2:
            problems.append(f"minReplicas {spec.get('minReplicas', 1)}: one pod is no service")
        if spec["maxReplicas"] < spec.get("minReplicas", 1):
            problems.append("maxReplicas below minReplicas")
        names = {c["name"]: c for c in found[0]["spec"]["template"]["spec"]["containers"]}
        for metric in spec.get("metrics", []):
            if metric["type"] != "ContainerResource":
                problems.append(f"metric {metric['type']}: scale on the server container only")
                continue
            resource = metric["containerResource"]
            container = names.get(resource["container"])
            if container is None:
                problems.append(f"metric on container {resource['container']}: no such container")
            elif resource["name"] not in container.get("resources", {}).get("requests", {}):
                problems.append(f"utilization of {resource['name']} without a request for it")
    return problems


def check_network_policy(docs: list[Obj]) -> list[str]:
    """Ingress only to the gRPC and metrics ports, each from a named namespace."""
    problems = []
    server = server_container(docs)
    env = environment(docs, server)
    allowed = {
        "grpc",
        "metrics",
        setting(env, "--port"),
        setting(env, "--metrics-port"),
    }
    for policy in find(docs, "NetworkPolicy"):
        spec = policy["spec"]
        if "Ingress" not in spec.get("policyTypes", []):
            problems.append("the NetworkPolicy does not restrict ingress")
        ports_seen = set()
        for n, rule in enumerate(spec.get("ingress", [])):
            if not rule.get("from"):
                problems.append(f"ingress[{n}] admits every source")
            if not rule.get("ports"):
                problems.append(f"ingress[{n}] admits every port")
            for peer in rule.get("from", []):
                if "ipBlock" in peer or not peer.get("namespaceSelector", {}).get("matchLabels"):
                    problems.append(f"ingress[{n}]: a source other than a labelled namespace")
            for port in rule.get("ports", []):
                ports_seen.add(port.get("port"))
                if port.get("port") not in allowed or "endPort" in port:
                    problems.append(f"ingress[{n}] admits port {port.get('port')}")
        if not ports_seen:
            problems.append("no ingress port admitted: the gateway cannot call")
    return problems


def check_service_monitor(docs: list[Obj]) -> list[str]:
    """The ServiceMonitor (a CRD kubernetes-validate cannot check) by hand: each pod once."""
    problems = []
    known = {"port", "path", "scheme", "interval", "scrapeTimeout"}
    for monitor in find(docs, "ServiceMonitor"):
        if monitor["apiVersion"] != "monitoring.coreos.com/v1":
            problems.append(f"ServiceMonitor apiVersion {monitor['apiVersion']}")
        spec = monitor["spec"]
        unknown = set(spec) - {"selector", "endpoints", "namespaceSelector", "jobLabel"}
        if unknown:
            problems.append(f"ServiceMonitor: unknown fields {sorted(unknown)}")
        selector = spec["selector"]["matchLabels"]
        services = [
            s for s in find(docs, "Service") if _subset(selector, s["metadata"].get("labels", {}))
        ]
        annotations = deployment(docs)["spec"]["template"]["metadata"].get("annotations", {})
        if any(k.startswith("prometheus.io/") for k in annotations):
            problems.append("prometheus.io annotations too: a second scrape path")
        for endpoint in spec["endpoints"]:
            if set(endpoint) - known:
                problems.append(f"endpoint: unknown fields {sorted(set(endpoint) - known)}")
            with_port = [
                s
                for s in services
                if any(p["name"] == endpoint.get("port") for p in s["spec"]["ports"])
            ]
            if len(with_port) != 1:
                problems.append(
                    f"port {endpoint.get('port')!r} is on {len(with_port)} selected Services,"
                    " not 1: pods scraped 0 or several times"
                )
            if endpoint.get("scheme", "http") not in ("http", "https"):
                problems.append(f"scheme {endpoint['scheme']}")
            if endpoint.get("path", "/metrics") != "/metrics":
                problems.append(f"path {endpoint['path']}: lookupd serves /metrics")
            try:
                interval = _seconds(endpoint.get("interval", "30s"))
                timeout = _seconds(endpoint.get("scrapeTimeout", "10s"))
            except ValueError as error:
                problems.append(str(error))
            else:
                if timeout > interval:
                    problems.append("scrapeTimeout longer than interval")
    return problems


def update_command(container: Obj) -> list[str]:
    """The words of a container's command and args, a ``sh -c`` line split as sh would."""
    words = [*container.get("command", []), *container.get("args", [])]
    if words[:2] == ["sh", "-c"] and len(words) >= 3:
        return shlex.split(words[2])
    return words


def mounted_file(docs: list[Obj], spec: Obj, container: Obj, path: Path) -> str | None:
    """The text a container finds at ``path`` from a ConfigMap volume mounted on its
    directory (None if none is)."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    mount = next(
        (m for m in container.get("volumeMounts", []) if m["mountPath"] == str(path.parent)),
        None,
    )
    configmap = volumes.get(mount["name"], {}).get("configMap", {}) if mount else {}
    data: dict[str, str] = next(
        (c.get("data", {}) for c in find(docs, "ConfigMap", configmap.get("name", ""))), {}
    )
    return data.get(path.name)


def check_snapshot(docs: list[Obj], config: Path) -> list[str]:
    """The snapshot the server reads is the one the containers beside it build and refresh
    with ``lookupd update``, from the overlay's configuration file ``config``."""
    server = server_container(docs)
    db = environment(docs, server).get("LOOKUPD_DB")
    return check_updaters(
        docs, SERVER, ("snapshot-init", "snapshot-refresh"), config, "output", server, db
    )


def check_updaters(
    docs: list[Obj],
    workload: str,
    names: tuple[str, str],
    config: Path,
    key: str,
    reader: Obj,
    path: str | None,
) -> list[str]:
    """The file ``reader`` (a container of ``workload``'s pods) reads at ``path`` is the one
    an init container and a native sidecar beside it (``names``) write with ``lookupd update``
    from the overlay's configuration file ``config`` (its setting ``key``), on a volume they
    share, running the server's image."""
    problems = []
    spec = pod_spec(docs, workload)
    image = server_container(docs)["image"]
    init, refresh = names
    helpers = {c["name"]: c for c in spec.get("initContainers", [])}
    if set(helpers) != set(names):
        return [f"init containers {sorted(helpers)}"]
    if "restartPolicy" in helpers[init]:
        problems.append(f"{init} is not a plain init container")
    if helpers[refresh].get("restartPolicy") != "Always":
        problems.append(f"{refresh} is not a native sidecar")
    volumes = {v["name"]: v for v in spec["volumes"]}
    reader_mounts = {m["name"]: m for m in reader.get("volumeMounts", [])}
    for name, helper in helpers.items():
        if helper["image"] != image:
            problems.append(f"{name} runs {helper['image']}, the server {image}")
        words = update_command(helper)
        if words[:2] != ["lookupd", "update"] or "--config" not in words[:-1]:
            problems.append(f"{name}: runs {words}, not lookupd update --config FILE")
            continue
        if ("--every" in words) != (name == refresh):
            problems.append(f"{name}: --every belongs to the sidecar alone")
        config_path = Path(words[words.index("--config") + 1])
        text = mounted_file(docs, spec, helper, config_path)
        if text != config.read_text():
            problems.append(f"{name}: {config_path} is not the overlay's {config.name}")
            continue
        written = yaml.safe_load(text).get(key)
        if written != path:
            problems.append(f"{name} writes {written} ({key}), {reader['name']} reads {path}")
        for volume_mount in helper.get("volumeMounts", []):
            if path and path.startswith(volume_mount["mountPath"] + "/"):
                shared = reader_mounts.get(volume_mount["name"])
                if (
                    volume_mount.get("readOnly")
                    or shared is None
                    or "emptyDir" not in volumes.get(volume_mount["name"], {})
                ):
                    problems.append(
                        f"{name}: {volume_mount['mountPath']} is not shared with {reader['name']}"
                    )
                elif shared["mountPath"] != volume_mount["mountPath"]:
                    problems.append(f"{name}: the data volume is elsewhere in {reader['name']}")
                elif not shared.get("readOnly"):
                    problems.append(f"{reader['name']} may write the data volume")
                break
        else:
            problems.append(f"{name}: {path}'s directory is not on a volume")
    return problems


def envoy_listener(config: Obj) -> tuple[int, Obj]:
    """The port of the only listener of an Envoy bootstrap, and its connection manager."""
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (manager,) = chain["filters"]
    port: int = listener["address"]["socket_address"]["port_value"]
    typed: Obj = manager["typed_config"]
    return port, typed


def envoy_mmdb(manager: Obj) -> str:
    """The MaxMind DB file the geoip filter of a connection manager reads."""
    (geoip,) = [f for f in manager["http_filters"] if f["name"] == "envoy.filters.http.geoip"]
    provider = geoip["typed_config"]["provider"]["typed_config"]
    path: str = provider.get("city_db_path") or provider["country_db_path"]
    return path


def check_native_gateway(docs: list[Obj], update_config: Path, envoy_config: Path) -> list[str]:
    """overlays/envoy-native's gateway: Envoy runs the overlay's rendered config
    ``envoy_config``, whose geoip filter reads the MaxMind DB file the lookupd containers
    beside it write (``lookupd update``, the overlay's ``update_config``); it listens where
    its Service sends traffic; and when it trusts no proxy hop, the Service keeps the
    clients' own addresses."""
    spec = pod_spec(docs, GATEWAY)
    if [c["name"] for c in spec["containers"]] != ["envoy"]:
        return [f"containers {[c['name'] for c in spec['containers']]}, not envoy alone"]
    (envoy,) = spec["containers"]
    words = [*envoy.get("command", []), *envoy.get("args", [])]
    if words[:1] != ["envoy"] or "--config-path" not in words[:-1]:
        return [f"envoy runs {words}, not envoy --config-path FILE"]
    text = mounted_file(docs, spec, envoy, Path(words[words.index("--config-path") + 1]))
    if text != envoy_config.read_text():
        return [f"envoy's config is not the overlay's {envoy_config.name}"]
    port, manager = envoy_listener(yaml.safe_load(text))
    problems = check_updaters(
        docs,
        GATEWAY,
        ("geo-init", "geo-refresh"),
        update_config,
        "mmdb_output",
        envoy,
        envoy_mmdb(manager),
    )
    ports = {p["name"]: p["containerPort"] for p in envoy.get("ports", [])}
    (service,) = find(docs, "Service", GATEWAY)
    for service_port in service["spec"]["ports"]:
        if ports.get(service_port["targetPort"]) != port:
            problems.append(f"Service/{GATEWAY} sends to {service_port['targetPort']}, not {port}")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        target = envoy.get(probe, {}).get("tcpSocket", {}).get("port")
        if ports.get(target) != port:
            problems.append(f"envoy's {probe} does not ask the listener")
    if manager.get("use_remote_address") is not True:
        problems.append("the connection manager does not decide the client address")
    kept = service["spec"].get("externalTrafficPolicy") == "Local"
    if manager.get("xff_num_trusted_hops", 0) == 0 and not kept:
        problems.append("Envoy trusts no hop, but the Service replaces the clients' addresses")
    return problems


def _policy_names(docs: list[Obj]) -> set[str]:
    """The names of the policies in the policies ConfigMap (empty if it does not load)."""
    from lookupd.policies import parse_policies

    (configmap,) = find(docs, "ConfigMap", POLICIES_CONFIGMAP)
    try:
        return set(parse_policies(configmap["data"]["policies.yaml"]).policies)
    except LookupdError:
        return set()


def check_gateway(docs: list[Obj], mesh_config: Obj | None = None) -> list[str]:
    """The gateway's objects (CRDs kubernetes-validate cannot check) by hand: each asks the
    lookupd Service on its gRPC port, fails closed with 503, names a policy the ConfigMap
    has, and may reach lookupd (ReferenceGrant, NetworkPolicy); lookupd reads the address
    the gateway appends."""
    problems: list[str] = []
    if not (find(docs, "AuthorizationPolicy") or find(docs, "SecurityPolicy")):
        return problems
    (service,) = find(docs, "Service", SERVER)
    namespace = service["metadata"].get("namespace", "default")
    grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    policies = _policy_names(docs)
    env = environment(docs, server_container(docs))
    gateway_namespaces = {
        peer["namespaceSelector"]["matchLabels"].get("kubernetes.io/metadata.name")
        for policy in find(docs, "NetworkPolicy")
        for rule in policy["spec"].get("ingress", [])
        if any(port.get("port") == "grpc" for port in rule.get("ports", []))
        for peer in rule.get("from", [])
    }
    for authz in find(docs, "AuthorizationPolicy"):
        spec = authz["spec"]
        if authz["apiVersion"] != "security.istio.io/v1":
            problems.append(f"AuthorizationPolicy apiVersion {authz['apiVersion']}")
        if set(spec) - {"selector", "targetRefs", "action", "provider", "rules"}:
            problems.append(f"AuthorizationPolicy: unknown fields {sorted(spec)}")
        if spec.get("action") != "CUSTOM":
            problems.append("AuthorizationPolicy action is not CUSTOM")
        if authz["metadata"].get("namespace") not in gateway_namespaces:
            problems.append("the NetworkPolicy does not admit the gateway's namespace")
        providers = {
            p["name"]: p.get("envoyExtAuthzGrpc", {})
            for p in (mesh_config or {}).get("spec", {}).get("meshConfig", {})
            .get("extensionProviders", [])
        }  # fmt: skip
        provider = providers.get(spec.get("provider", {}).get("name"))
        if provider is None:
            problems.append("the AuthorizationPolicy names no provider of the mesh config")
            continue
        if provider.get("service") != f"{SERVER}.{namespace}.svc.cluster.local":
            problems.append(f"the provider asks {provider.get('service')}, not lookupd")
        if provider.get("port") != grpc_port:
            problems.append(f"the provider's port {provider.get('port')} is not {grpc_port}")
        if provider.get("failOpen") is not False or provider.get("statusOnError") != "503":
            problems.append("the provider does not fail closed with 503")
        if env.get("LOOKUPD_AUTHZ_POLICY") not in policies:
            problems.append("LOOKUPD_AUTHZ_POLICY names no policy (Istio passes none)")
    grants = find(docs, "ReferenceGrant")
    for security in find(docs, "SecurityPolicy"):
        spec = security["spec"]
        if security["apiVersion"] != "gateway.envoyproxy.io/v1alpha1":
            problems.append(f"SecurityPolicy apiVersion {security['apiVersion']}")
        auth = spec.get("extAuth", {})
        known = {"grpc", "timeout", "failOpen", "statusOnError", "contextExtensions",
                 "headersToExtAuth", "recomputeRoute", "includeRouteMetadata"}  # fmt: skip
        if set(auth) - known:
            problems.append(f"extAuth: unknown fields {sorted(set(auth) - known)}")
        refs = auth.get("grpc", {}).get("backendRefs", [])
        if [(r.get("name"), r.get("namespace"), r.get("port")) for r in refs] != [
            (SERVER, namespace, grpc_port)
        ]:
            problems.append(f"extAuth asks {refs}, not the lookupd Service's gRPC port")
        if auth.get("failOpen") is not False or auth.get("statusOnError") != 503:
            problems.append("extAuth does not fail closed with 503")
        named = [
            e.get("value") for e in auth.get("contextExtensions", [])
            if e.get("name") == "lookupd_policy" and e.get("type") == "Value"
        ]  # fmt: skip
        if not named or named[0] not in policies:
            problems.append(f"the lookupd_policy context extension names no policy: {named}")
        origin = security["metadata"].get("namespace")
        if origin != namespace and not any(
            {"group": "gateway.envoyproxy.io", "kind": "SecurityPolicy", "namespace": origin}
            in grant["spec"]["from"]
            and {"group": "", "kind": "Service", "name": SERVER} in grant["spec"]["to"]
            and grant["metadata"].get("namespace") == namespace
            for grant in grants
        ):
            problems.append(f"no ReferenceGrant lets {origin}'s SecurityPolicy name lookupd")
        if not gateway_namespaces - {None}:
            problems.append("the NetworkPolicy admits no gateway namespace")
    source = env.get("LOOKUPD_AUTHZ_IP_SOURCE", "peer")
    if not source.startswith("xff:"):
        # The gateway's ext_authz source address is its TCP peer (a node or a load
        # balancer), not the client.
        problems.append(f"LOOKUPD_AUTHZ_IP_SOURCE={source}: behind a gateway, use xff:N")
    return problems
