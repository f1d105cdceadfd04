"""Client-side balancing over a name with several addresses, as a headless Service gives.

A DNS server on 127.0.0.1 (dnslib) answers a name with the addresses 127.0.0.1-3, where
three `lookupd serve` processes listen on the same port; the client's target is
``dns://127.0.0.1:DNS_PORT/NAME:PORT``, the shape of ``dns:///lookupd-headless...``
in a cluster, with the DNS server named because the test cannot be the system's.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import DNSLogger, DNSServer
from served import Served, child_env, start_serve

from lookupd.client import Client
from lookupd.client.channel import channel_options
from lookupd.v1 import lookup_pb2 as pb
from lookupd.v1 import lookup_pb2_grpc

NAME = "lookupd-headless.test."
HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
TIMEOUT_S = 30.0


class _Records:
    """A DNS resolver answering ``NAME`` with the A records it is given (none for AAAA:
    the servers listen on IPv4 only) and NXDOMAIN for any other name."""

    def __init__(self, addresses: tuple[str, ...]) -> None:
        self.addresses = addresses
        self.queries = 0
        self._lock = threading.Lock()

    def set(self, addresses: tuple[str, ...]) -> None:
        with self._lock:
            self.addresses = addresses

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        question = request.q
        with self._lock:
            self.queries += 1
            addresses = self.addresses
        if str(question.qname).lower() != NAME:
            reply.header.rcode = RCODE.NXDOMAIN
        elif question.qtype == QTYPE.A:
            for address in addresses:
                reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=1))
        elif question.qtype == QTYPE.AAAA:
            pass  # the name exists; it has no IPv6 address
        return reply


@pytest.fixture
def dns() -> Iterator[tuple[_Records, int]]:
    records = _Records(HOSTS)
    quiet = DNSLogger(logf=lambda _text: None)
    udp = DNSServer(records, address="127.0.0.1", port=0, logger=quiet)
    port = udp.server.server_address[1]
    # Over TCP too, on the same port, should an answer ever be truncated.
    tcp = DNSServer(records, address="127.0.0.1", port=port, tcp=True, logger=quiet)
    udp.start_thread()
    tcp.start_thread()
    try:
        yield records, port
    finally:
        for server in (udp, tcp):
            server.stop()  # stops serving; the socket is closed apart
            server.server.server_close()


def _port_free_on_every_host() -> int:
    """A port nothing listens on at any of ``HOSTS`` (each is a distinct local address)."""
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind((HOSTS[0], 0))
            port = int(probe.getsockname()[1])
        free = True
        for host in HOSTS[1:]:
            with socket.socket() as probe:
                try:
                    probe.bind((host, port))
                except OSError:
                    free = False
        if free:
            return port
    pytest.fail("no port free on all of 127.0.0.1-3")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict[str, int]]]:
    """Three servers on 127.0.0.1-3 and one port; the pid of each by host. Connections are
    closed after 1 s (--max-connection-age), as a deployment that scales out would set."""
    port = _port_free_on_every_host()
    started: dict[str, Served] = {}
    try:
        for host in HOSTS:
            directory = tmp_path_factory.mktemp(f"serve-{host}")
            started[host] = start_serve(
                directory,
                "--host", host,
                "--port", str(port),
                "--port-file", str(directory / "port"),
                "--workers", "1",
                "--max-connection-age", "1",
                "--max-connection-age-grace", "5",
                env=child_env(),
            )  # fmt: skip
        yield port, {host: served.process.pid for host, served in started.items()}
    finally:
        for host, served in started.items():
            try:
                served.stop()
            except subprocess.TimeoutExpired:
                # Once, in CI's pure-Python run on a loaded machine, a server here did not
                # stop within 30 s of SIGTERM: keep that a failure, with its log to say why.
                pytest.fail(f"lookupd serve on {host} did not stop:\n{served.log_text()[-4000:]}")


def _answering_pids(call: Any, count: int) -> set[int]:
    return {call() for _ in range(count)}


def test_calls_are_spread_over_every_address_of_the_name(
    dns: tuple[_Records, int], servers: tuple[int, dict[str, int]]
) -> None:
    records, dns_port = dns
    port, pids = servers
    target = f"dns://127.0.0.1:{dns_port}/{NAME.rstrip('.')}:{port}"
    # One channel: the balancing is gRPC's within it, not the client's channels'.
    with Client(target, channels=1, timeout_s=TIMEOUT_S) as client:
        client.wait_until_serving(TIMEOUT_S)
        seen = _answering_pids(lambda: client.info().process_id, 30)
    assert records.queries > 0  # the name was resolved by our DNS server
    assert seen == set(pids.values())


def test_without_round_robin_one_connection_reaches_one_server(
    dns: tuple[_Records, int], servers: tuple[int, dict[str, int]]
) -> None:
    """The control: gRPC's default policy (pick_first) sends every call to one address,
    which is why the client names round_robin."""
    _records, dns_port = dns
    port, pids = servers
    target = f"dns://127.0.0.1:{dns_port}/{NAME.rstrip('.')}:{port}"
    with grpc.insecure_channel(target) as channel:
        stub: Any = lookup_pb2_grpc.LookupServiceStub(channel)  # type: ignore[no-untyped-call]
        request = pb.GetInfoRequest()

        def pid() -> int:
            return int(stub.GetInfo(request, timeout=TIMEOUT_S, wait_for_ready=True).process_id)

        seen = _answering_pids(pid, 30)
    assert len(seen) == 1
    assert seen <= set(pids.values())


def test_a_server_that_stops_is_left_out(
    dns: tuple[_Records, int], servers: tuple[int, dict[str, int]]
) -> None:
    """A pod that goes away while still in DNS: calls go on over the others, none fails."""
    records, dns_port = dns
    port, pids = servers
    # The address answers nothing: a listener closed, as a stopped pod's would be.
    records.set((*HOSTS[:2], "127.0.0.4"))
    target = f"dns://127.0.0.1:{dns_port}/{NAME.rstrip('.')}:{port}"
    with Client(target, channels=1, timeout_s=TIMEOUT_S) as client:
        client.wait_until_serving(TIMEOUT_S)
        seen = _answering_pids(lambda: client.info().process_id, 40)
    assert seen == {pids[HOSTS[0]], pids[HOSTS[1]]}


def test_a_new_address_is_used_once_connections_age_out(
    dns: tuple[_Records, int], servers: tuple[int, dict[str, int]]
) -> None:
    """Scale-out: a pod added to the name gets calls after the servers close their
    connections (--max-connection-age), which makes the client resolve the name again.

    gRPC resolves a name at most every 30 s by default
    (``grpc.dns_min_time_between_resolutions_ms``); the test shortens that wait only.
    """
    records, dns_port = dns
    port, pids = servers
    records.set(HOSTS[:2])
    target = f"dns://127.0.0.1:{dns_port}/{NAME.rstrip('.')}:{port}"
    options = [
        *channel_options(1, balanced=True),
        ("grpc.dns_min_time_between_resolutions_ms", 200),
    ]
    with grpc.insecure_channel(target, options=options) as channel:
        stub: Any = lookup_pb2_grpc.LookupServiceStub(channel)  # type: ignore[no-untyped-call]

        def pid() -> int:
            return int(stub.GetInfo(pb.GetInfoRequest(), timeout=TIMEOUT_S).process_id)

        grpc.channel_ready_future(channel).result(timeout=TIMEOUT_S)
        assert _answering_pids(pid, 20) == {pids[HOSTS[0]], pids[HOSTS[1]]}
        records.set(HOSTS)
        seen: set[int] = set()
        deadline = time.monotonic() + TIMEOUT_S
        while len(seen) < len(HOSTS) and time.monotonic() < deadline:
            seen.add(pid())  # no call fails while connections close and reopen
            time.sleep(0.02)
    assert seen == set(pids.values())


def test_workers_behind_one_address_are_reached_over_several_connections(
    tmp_path: Path,
) -> None:
    """Within one pod: the kernel spreads connections, not calls, over --workers; the
    client with several channels reaches them all (16: all on one worker has odds 2^-15),
    one channel only one."""
    served = start_serve(tmp_path, "--workers", "2")
    try:
        with Client(served.target, channels=16, timeout_s=TIMEOUT_S) as client:
            client.wait_until_serving(TIMEOUT_S)
            several = _answering_pids(lambda: client.info().process_id, 40)
        with Client(served.target, channels=1, timeout_s=TIMEOUT_S) as client:
            one = _answering_pids(lambda: client.info().process_id, 40)
    finally:
        served.stop()
    assert len(one) == 1
    assert len(several) == 2


def test_only_dns_targets_are_balanced() -> None:
    """round_robin for dns: targets; host:port keeps gRPC's pick_first, which reconnects
    on the next call after a worker process dies (round_robin would wait out a reconnect
    backoff, failing calls meanwhile: tests/test_workers.py kills workers under load)."""
    plain = json.loads(dict(channel_options(1))["grpc.service_config"])
    balanced = json.loads(dict(channel_options(1, balanced=True))["grpc.service_config"])
    assert "loadBalancingConfig" not in plain
    assert balanced["loadBalancingConfig"] == [{"round_robin": {}}]
    assert balanced["methodConfig"] == plain["methodConfig"]
