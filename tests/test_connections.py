"""Connections and streams that sit idle, die or never speak: the server's timeouts,
keepalive and limits, and the client's keepalive, with real sockets and processes."""

from __future__ import annotations

import ipaddress
import itertools
import math
import os
import resource
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, suppress
from pathlib import Path
from typing import Any

import grpc
import pytest
from certs import write_certs
from served import start_serve

import lookupd
from lookupd.client import Client, ServerError
from lookupd.client.channel import DEFAULT_KEEPALIVE_S, channel_options
from lookupd.policies import example_policies_path, load_policies
from lookupd.server.answers import Answerer
from lookupd.server.app import LookupServer, ServerConfig
from lookupd.server.connections import MIN_CLIENT_PING_INTERVAL_S, connection_options
from lookupd.server.tls import ServerTLS
from lookupd.v1 import lookup_pb2 as pb
from lookupd.v1 import lookup_pb2_grpc

_TIMEOUT_S = 15.0
_OK_V4 = "1.1.1.1"  # AU
# What a client sends first on an HTTP/2 connection: the preface, then an empty SETTINGS.
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_SETTINGS_ACK = bytes([0, 0, 0, 4, 1, 0, 0, 0, 0])
_FRAME_SETTINGS = 4
_FRAME_GOAWAY = 7


@pytest.fixture(scope="module")
def answerer() -> Answerer:
    return Answerer.load(lookupd.open(), load_policies(example_policies_path()))


def _server(answerer: Answerer, **limits: Any) -> LookupServer:
    server = LookupServer(ServerConfig(host="127.0.0.1", port=0, **limits)).start()
    server.load(answerer)
    return server


def _stub(channel: grpc.Channel) -> Any:
    return lookup_pb2_grpc.LookupServiceStub(channel)  # type: ignore[no-untyped-call]


def _request(tag: int = 0) -> pb.PackedLookupRequest:
    return pb.PackedLookupRequest(ipv4=ipaddress.IPv4Address(_OK_V4).packed, tag=tag)


def _wait_until(condition: Any, what: str, timeout_s: float = _TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s} s: {what}")
        time.sleep(0.02)


class _States:
    """The connectivity states a channel goes through, as gRPC reports them.

    A context manager: leaving it unsubscribes and waits (bounded) until gRPC's polling
    thread has seen that and stopped. grpcio's poller raises in its own thread ("Cannot
    monitor channel state: Channel closed!") when the channel closes while it watches,
    which pytest then reports as this test's failure (seen once in CI).
    """

    def __init__(self, channel: grpc.Channel) -> None:
        self.seen: list[grpc.ChannelConnectivity] = []
        self._lock = threading.Lock()
        self._channel = channel
        channel.subscribe(self._record, try_to_connect=False)

    def __enter__(self) -> _States:
        return self

    def __exit__(self, *_: object) -> None:
        self._channel.unsubscribe(self._record)
        # grpcio's own state object: polling turns False when the poller thread ends.
        poller = getattr(self._channel, "_connectivity_state", None)
        _wait_until(lambda: not getattr(poller, "polling", False), "gRPC's poller stopped")

    def _record(self, state: grpc.ChannelConnectivity) -> None:
        with self._lock:
            self.seen.append(state)

    def times_left_ready(self) -> int:
        """How often the channel went from READY to another state (a connection ended)."""
        with self._lock:
            seen = list(self.seen)
        ready = grpc.ChannelConnectivity.READY
        return sum(1 for a, b in itertools.pairwise(seen) if a == ready and b != ready)


# ---------------------------------------------------------------------------------------
# Streams that go quiet (item 6)


def test_idle_streams_are_ended_and_new_streams_and_unary_calls_succeed(
    answerer: Answerer,
) -> None:
    # Two stream threads, four streams that send one message and then nothing.
    server = _server(answerer, threads=2, max_streams=2, stream_idle_timeout_s=0.5)
    release = threading.Event()
    outcomes: dict[int, tuple[list[int], grpc.RpcError | None]] = {}

    def quiet_requests(index: int) -> Iterator[pb.PackedLookupRequest]:
        yield _request(index)
        release.wait(_TIMEOUT_S)  # the client stays quiet (and its stream open)

    def stream(stub: Any, index: int) -> None:
        tags: list[int] = []
        try:
            for response in stub.StreamLookup(quiet_requests(index), timeout=_TIMEOUT_S):
                tags.append(response.tag)
            outcomes[index] = (tags, None)
        except grpc.RpcError as exc:
            outcomes[index] = (tags, exc)

    with closing(grpc.insecure_channel(server.address)) as channel:
        stub = _stub(channel)
        threads = [threading.Thread(target=stream, args=(stub, i)) for i in range(4)]
        try:
            for thread in threads:
                thread.start()
            # Unary calls are answered meanwhile.
            response = stub.Lookup(pb.LookupRequest(addresses=[_OK_V4]), timeout=_TIMEOUT_S)
            assert list(response.countries) == ["AU"]
            for thread in threads:
                thread.join(_TIMEOUT_S)
            # Each stream got its answer, then was ended by the idle timeout: the two that
            # waited for a thread too, once the first two gave theirs back.
            assert sorted(outcomes) == [0, 1, 2, 3]
            for index, (tags, error) in outcomes.items():
                assert tags == [index]
                assert error is not None
                assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert "stream idle timeout" in (error.details() or "")
            # A new stream that keeps sending is answered in full.
            streamed = stub.StreamLookup(iter([_request(7), _request(8)]), timeout=_TIMEOUT_S)
            assert [r.tag for r in streamed] == [7, 8]
        finally:
            release.set()
            for thread in threads:
                thread.join(_TIMEOUT_S)
            server.stop(0)
    # The threads that read the idle streams' messages ended with their calls.
    _wait_until(
        lambda: not any(t.name == "lookupd-stream-reader" for t in threading.enumerate()),
        "the stream reader threads end",
    )


def test_a_connection_holds_at_most_max_concurrent_streams(answerer: Answerer) -> None:
    server = _server(answerer, max_streams=4, max_concurrent_streams=2, stream_idle_timeout_s=0)
    release = threading.Event()
    answered: list[int] = []

    def quiet_requests(index: int) -> Iterator[pb.PackedLookupRequest]:
        yield _request(index)
        release.wait(_TIMEOUT_S)

    def stream(stub: Any, index: int) -> None:
        for response in stub.StreamLookup(quiet_requests(index), timeout=_TIMEOUT_S):
            answered.append(response.tag)

    with ExitStack() as stack:
        # Two connections: channels to one target otherwise share one.
        own = [("grpc.use_local_subchannel_pool", 1)]
        crowded = stack.enter_context(closing(grpc.insecure_channel(server.address, own)))
        other = stack.enter_context(closing(grpc.insecure_channel(server.address, own)))
        threads = [threading.Thread(target=stream, args=(_stub(crowded), i)) for i in range(3)]
        try:
            for thread in threads:
                thread.start()
            _wait_until(lambda: len(answered) >= 2, "two streams answered")
            # Another connection is answered at once (stream threads are free), while the
            # third stream of the first one waits in the client for a free slot.
            streamed = _stub(other).StreamLookup(iter([_request(9)]), timeout=_TIMEOUT_S)
            assert [r.tag for r in streamed] == [9]
            assert len(answered) == 2
            release.set()  # the first two end: the third gets its slot
            for thread in threads:
                thread.join(_TIMEOUT_S)
            assert sorted(answered) == [0, 1, 2]
        finally:
            release.set()
            server.stop(0)


# ---------------------------------------------------------------------------------------
# Connections that never speak, go quiet, or get old (items 5 and 7)


def _read_until_closed(sock: socket.socket, *, ack_settings: bool = False) -> list[int]:
    """Read HTTP/2 frames until the server closes the connection; return their types.

    Fails if the connection is still open after the timeout.
    """
    sock.settimeout(_TIMEOUT_S)
    types: list[int] = []
    buffer = b""
    while True:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"the server did not close the connection within {_TIMEOUT_S} s")
        except (ConnectionResetError, ssl.SSLError):
            return types
        if not data:
            return types
        buffer += data
        while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
            length, kind, flags = int.from_bytes(buffer[:3], "big"), buffer[3], buffer[4]
            types.append(kind)
            if ack_settings and kind == _FRAME_SETTINGS and not flags & 1:
                sock.sendall(_SETTINGS_ACK)
            buffer = buffer[9 + length :]


def test_silent_connections_are_closed_after_the_handshake_timeout(answerer: Answerer) -> None:
    server = _server(answerer, handshake_timeout_s=0.5)
    host, port = "127.0.0.1", server.port
    try:
        sockets = [socket.create_connection((host, port)) for _ in range(3)]
        # A connection that sends half the preface is as silent as one that sends nothing.
        sockets[1].sendall(_PREFACE[:5])
        for sock in sockets:
            with sock:
                assert _FRAME_GOAWAY in _read_until_closed(sock)
    finally:
        server.stop(0)


def test_silent_tls_connections_are_closed_after_the_handshake_timeout(
    answerer: Answerer, tmp_path: Path
) -> None:
    certs = write_certs(tmp_path)
    server = _server(
        answerer, handshake_timeout_s=0.5, tls=ServerTLS(certs.server_cert, certs.server_key)
    )
    try:
        # No TLS handshake at all.
        with socket.create_connection(("127.0.0.1", server.port)) as silent:
            _read_until_closed(silent)
        # A TLS handshake, then no HTTP/2.
        context = ssl.create_default_context(cafile=str(certs.ca))
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", server.port))
        with context.wrap_socket(raw, server_hostname="localhost") as quiet:
            assert _FRAME_GOAWAY in _read_until_closed(quiet)
    finally:
        server.stop(0)


def test_a_peer_that_does_not_answer_pings_is_closed(answerer: Answerer) -> None:
    server = _server(answerer, keepalive_s=0.5, keepalive_timeout_s=0.5)
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(_PREFACE)  # a working HTTP/2 connection, but pings go unanswered
            frames = _read_until_closed(sock, ack_settings=True)
        assert frames[-1] == _FRAME_GOAWAY
    finally:
        server.stop(0)


def test_an_idle_connection_is_closed_and_the_client_reconnects(answerer: Answerer) -> None:
    server = _server(answerer, max_connection_idle_s=0.5)
    try:
        with (
            closing(grpc.insecure_channel(server.address, options=channel_options(1))) as channel,
            _States(channel) as states,
        ):
            stub = _stub(channel)
            assert stub.LookupPacked(_request(), timeout=_TIMEOUT_S).ipv4_countries == b"AU"
            _wait_until(lambda: states.times_left_ready() >= 1, "the idle connection closed")
            # The next call opens a new connection, transparently.
            assert stub.LookupPacked(_request(), timeout=_TIMEOUT_S).ipv4_countries == b"AU"
    finally:
        server.stop(0)


def test_max_connection_age_ends_busy_connections_without_failing_calls(
    answerer: Answerer,
) -> None:
    server = _server(answerer, max_connection_age_s=0.5, max_connection_age_grace_s=0.5)
    try:
        with (
            Client(server.address, channels=1, timeout_s=_TIMEOUT_S) as client,
            _States(client._channels[0]) as states,
        ):
            deadline = time.monotonic() + _TIMEOUT_S
            calls = 0
            # Calls back to back, until the connection was replaced twice (bounded).
            while states.times_left_ready() < 2 and time.monotonic() < deadline:
                answers = client.lookup([_OK_V4, "10.0.0.1"])
                assert answers.countries.tolist() == ["AU", ""]
                calls += 1
            assert states.times_left_ready() >= 2, f"{calls} calls, {states.seen}"
    finally:
        server.stop(0)


def test_connection_options_follow_the_config() -> None:
    options = dict(
        connection_options(
            ServerConfig(max_connection_idle_s=0, max_connection_age_s=90, keepalive_timeout_s=3)
        )
    )
    assert options["grpc.max_connection_idle_ms"] == 2**31 - 1  # never
    assert options["grpc.max_connection_age_ms"] == 90_000
    assert options["grpc.http2.ping_timeout_ms"] == options["grpc.keepalive_timeout_ms"] == 3000
    assert options["grpc.max_concurrent_streams"] == ServerConfig().max_concurrent_streams
    # The server accepts the client's pings with room to spare (a client pinging more often
    # than allowed is told GOAWAY too_many_pings).
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert DEFAULT_KEEPALIVE_S >= 2 * MIN_CLIENT_PING_INTERVAL_S


# ---------------------------------------------------------------------------------------
# In processes: a stopped server, and a process near its descriptor limit


def _wait_until_every_thread_stopped(pid: int) -> None:
    """SIGSTOP stops a process's threads one by one, as each is next scheduled: a thread
    still running could answer one more call. Wait (bounded) until all of them are."""
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with suppress(FileNotFoundError):  # a thread that ended
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                states.append(stat.rsplit(")", 1)[1].split()[0])
        if states and all(state in ("T", "t") for state in states):
            return
        assert time.monotonic() < deadline, f"threads not stopped: {states}"
        time.sleep(0.01)


def test_a_client_notices_a_stopped_server_within_seconds(tmp_path: Path) -> None:
    served = start_serve(tmp_path, "--workers", "1")
    stopped = False
    try:
        # The deadline is long: the call must fail on the pings' timeout, well before it.
        with Client(served.target, channels=1, timeout_s=60.0, keepalive_s=1.0) as client:
            assert client.lookup([_OK_V4]).countries.tolist() == ["AU"]
            os.kill(served.process.pid, signal.SIGSTOP)
            stopped = True
            _wait_until_every_thread_stopped(served.process.pid)
            with pytest.raises(ServerError) as caught:
                client.lookup([_OK_V4])
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE
            os.kill(served.process.pid, signal.SIGCONT)
            stopped = False
            # Running again, it answers (on a new connection). Only then is it stopped: a
            # SIGTERM sent as its threads resume may go to a thread other than the main one.
            client.wait_until_serving(_TIMEOUT_S)
    finally:
        if stopped:
            os.kill(served.process.pid, signal.SIGCONT)
        served.stop()


def _open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/PID/fd")
def test_a_warning_when_the_descriptors_near_the_limit(tmp_path: Path) -> None:
    served = start_serve(
        tmp_path, "--workers", "1", "--log-format", "json", "--handshake-timeout", "60"
    )
    pid = served.process.pid
    sockets: list[socket.socket] = []
    try:
        limit = 2 * _open_descriptors(pid) + 40  # about half used: no warning yet
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        # Silent connections, one descriptor each in the server, to past 80% of the limit.
        needed = math.ceil(0.8 * limit) - _open_descriptors(pid) + 2
        sockets = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(needed)]
        (warning,) = served.wait_for_event("fd_limit_near")
        assert warning["level"] == "warning"
        assert warning["max_fds"] == limit
        assert warning["open_fds"] >= 0.8 * limit
        # Still above the threshold a few checks later: still the one warning.
        time.sleep(2.0)
        assert len(served.events("fd_limit_near")) == 1
        # The server still answers (its limit is not reached).
        with Client(served.target, channels=1, timeout_s=_TIMEOUT_S) as client:
            assert client.lookup([_OK_V4]).countries.tolist() == ["AU"]
    finally:
        for sock in sockets:
            sock.close()
        served.stop()
