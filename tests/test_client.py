"""lookupd.client against a real in-process server on 127.0.0.1, and `lookupd lookup --server`.

The two clients' signatures are compared in tests/test_client_parity.py; the pure parts
(packing, chunking, results) need no server there either.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import io
import ipaddress
import itertools
import json
import os
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from versions import write_data, write_policies

import lookupd
from lookupd import Database, Status
from lookupd.cli import main
from lookupd.client import (
    Answers,
    AsyncClient,
    Client,
    DataVersion,
    Info,
    ReloadResult,
    ServerError,
)
from lookupd.client.channel import channel_options
from lookupd.codes import Reason, ReasonArray, StatusArray, Verdict, VerdictArray
from lookupd.core import _search
from lookupd.policies import PolicySet, example_policies_path, load_policies
from lookupd.server.admin import AdminConfig
from lookupd.server.answers import Answerer
from lookupd.server.app import DEFAULT_MAX_MESSAGE_BYTES, LookupServer, ServerConfig
from lookupd.server.reload import Loader
from lookupd.v1 import lookup_pb2 as pb
from lookupd.v1 import lookup_pb2_grpc
from lookupd.version import __version__

_TIMEOUT_S = 20.0
_SEED = 8821
_SMALL_BATCH = 10

# Valid, public, no country in the embedded data; reserved; invalid.
_ADDRESSES = [
    "1.1.1.1",
    "2001:4860:4860::8888",
    "5.249.168.0",
    "2001:401::",
    "10.0.0.1",
    "fe80::1",
    "::ffff:8.8.8.8",
    "not-an-ip",
    "",
    "1.2.3.256",
]


def _policy_set() -> PolicySet:
    return load_policies(example_policies_path())


@pytest.fixture(scope="module")
def db() -> Database:
    return lookupd.open()


@pytest.fixture(scope="module")
def answerer(db: Database) -> Answerer:
    return Answerer.load(db, _policy_set())


@pytest.fixture(scope="module")
def target(answerer: Answerer) -> Iterator[str]:
    server = LookupServer(ServerConfig(host="127.0.0.1", port=0)).start()
    server.load(answerer)
    yield f"127.0.0.1:{server.port}"
    server.stop(0)


@pytest.fixture(scope="module")
def small_target(db: Database) -> Iterator[str]:
    """A server taking at most 10 addresses per request."""
    config = ServerConfig(host="127.0.0.1", port=0, max_batch=_SMALL_BATCH)
    server = LookupServer(config).start()
    server.load(Answerer.load(db, _policy_set(), max_batch=_SMALL_BATCH))
    yield f"127.0.0.1:{server.port}"
    server.stop(0)


@pytest.fixture
def client(target: str) -> Iterator[Client]:
    with Client(target, timeout_s=_TIMEOUT_S) as opened:
        yield opened


def _assert_agrees(answers: Answers, db: Database, batch: Any, version: int | None = None) -> None:
    expected = db.lookup(batch, version=version)  # type: ignore[arg-type]
    assert answers.countries.tolist() == expected.codes().tolist()
    assert answers.status.tolist() == expected.status.tolist()
    assert answers.countries_list() == expected.countries()
    assert len(answers) == len(expected)
    assert len(answers.data_version) == 64


def _mixed(db: Database, count: int) -> list[str]:
    rng = np.random.default_rng(_SEED)
    v4 = [str(ipaddress.IPv4Address(int(x))) for x in rng.integers(0, 1 << 32, count // 2)]
    v6 = [
        str(ipaddress.IPv6Address((high << 64) | low))
        for high, low in db.v6.starts[rng.integers(1, len(db.v6), count // 4)].tolist()
    ]
    rest = count - len(v4) - len(v6)
    extra = [_ADDRESSES[i % len(_ADDRESSES)] for i in range(rest)]
    mixed = v4 + v6 + extra
    return [mixed[i] for i in rng.permutation(len(mixed))]


# ---------------------------------------------------------------------------------------
# Every input type


def test_text_list(client: Client, db: Database) -> None:
    answers = client.lookup(_ADDRESSES)
    _assert_agrees(answers, db, _ADDRESSES)
    assert answers.countries.tolist()[:2] == ["AU", "US"]
    assert answers.status.tolist()[2:] == [
        Status.NOT_FOUND,
        Status.NOT_FOUND,
        Status.RESERVED,
        Status.RESERVED,
        Status.OK,
        Status.INVALID_ADDRESS,
        Status.INVALID_ADDRESS,
        Status.INVALID_ADDRESS,
    ]
    assert isinstance(answers.status, StatusArray)
    assert answers.status[0] is Status.OK
    assert repr(answers.status[-2:]) == "StatusArray([INVALID_ADDRESS, INVALID_ADDRESS])"
    text = client.lookup(_ADDRESSES, text=True)
    assert isinstance(text.status, StatusArray)
    assert text.status.tolist() == answers.status.tolist()


def test_text_list_over_the_text_rpc(client: Client, db: Database) -> None:
    _assert_agrees(client.lookup(_ADDRESSES, text=True), db, _ADDRESSES)
    _assert_agrees(client.lookup(tuple(_ADDRESSES), text=True), db, _ADDRESSES)


def test_subdivisions(client: Client) -> None:
    answers = client.lookup(_ADDRESSES, subdivisions=True)
    assert answers.subdivisions is not None
    assert answers.subdivisions.tolist() == [""] * len(_ADDRESSES)
    assert answers.countries.tolist()[:2] == ["AU", "US"]


def test_arrays(client: Client, db: Database) -> None:
    v4 = np.array([16843009, 0, 167772161, 0xFFFFFFFF, 134744072], dtype=np.uint32)
    _assert_agrees(client.lookup(v4), db, v4)
    _assert_agrees(client.lookup(v4.astype(">u4")), db, v4)  # any byte order
    v6 = np.array([[0x2001_4860_4860_0000, 0x8888], [0, 1], [0xFE80 << 48, 1]], dtype=np.uint64)
    _assert_agrees(client.lookup(v6), db, v6)
    empty = client.lookup(np.array([], dtype=np.uint32))
    assert len(empty) == 0
    assert len(empty.data_version) == 64


def test_packed_bytes(client: Client, db: Database) -> None:
    v4 = b"".join(ipaddress.IPv4Address(a).packed for a in ("1.1.1.1", "10.0.0.1", "5.249.168.0"))
    for data in (v4, bytearray(v4), memoryview(v4)):
        _assert_agrees(client.lookup(data, version=4), db, v4, version=4)
    v6 = b"".join(ipaddress.IPv6Address(a).packed for a in ("2001:4860:4860::8888", "::1"))
    _assert_agrees(client.lookup(v6, version=6), db, v6, version=6)
    assert len(client.lookup(b"", version=4)) == 0


def test_bad_input_is_refused_before_any_call(client: Client) -> None:
    with pytest.raises(TypeError, match="not one str"):
        client.lookup("1.1.1.1")
    with pytest.raises(TypeError, match="float64"):
        client.lookup(np.zeros(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="version=4"):
        client.lookup(b"\x01\x01\x01\x01")
    with pytest.raises(ValueError, match="not a multiple of 16"):
        client.lookup(bytes(20), version=6)
    with pytest.raises(ValueError, match="only to packed bytes"):
        client.lookup(["1.1.1.1"], version=4)
    with pytest.raises(TypeError, match="list of str"):
        client.lookup(np.zeros(3, dtype=np.uint32), text=True)


# ---------------------------------------------------------------------------------------
# Chunking and channels


def test_batches_larger_than_the_server_limit_are_chunked(small_target: str, db: Database) -> None:
    addresses = _mixed(db, 997)
    with Client(small_target, chunk_size=_SMALL_BATCH, channels=3, in_flight=3) as client:
        _assert_agrees(client.lookup(addresses), db, addresses)
        _assert_agrees(client.lookup(addresses, text=True), db, addresses)
        v4 = np.arange(0, 1 << 32, (1 << 32) // 95, dtype=np.uint64).astype(np.uint32)
        _assert_agrees(client.lookup(v4), db, v4)
        assert client.info().max_batch == _SMALL_BATCH


def test_a_chunk_over_the_server_limit_fails_with_its_message(small_target: str) -> None:
    with (
        Client(small_target, chunk_size=_SMALL_BATCH + 1) as client,
        pytest.raises(ServerError) as caught,
    ):
        client.lookup(["1.1.1.1"] * (_SMALL_BATCH + 1))
    assert caught.value.code.name == "INVALID_ARGUMENT"
    assert "limit of 10" in caught.value.details


def test_large_mixed_batch_agrees(client: Client, db: Database) -> None:
    addresses = _mixed(db, 120_000)  # over the default chunk of 50,000
    _assert_agrees(client.lookup(addresses), db, addresses)


# ---------------------------------------------------------------------------------------
# check, info, stream, errors


def test_check(client: Client, answerer: Answerer, db: Database) -> None:
    assert answerer.policies is not None
    for name in answerer.policies.names:
        checks = client.check(name, _ADDRESSES)
        decisions = answerer.policies.evaluate(name, db.lookup(_ADDRESSES))
        assert checks.verdicts.tolist() == decisions.verdicts.tolist()
        assert checks.reasons.tolist() == decisions.reasons.tolist()
        assert checks.countries.tolist() == db.lookup(_ADDRESSES).codes().tolist()
        assert checks.allowed.tolist() == (decisions.verdicts == 1).tolist()
        assert answerer.policy_set is not None
        assert checks.policy_version == answerer.policy_set.version
        assert isinstance(checks.verdicts, VerdictArray)
        assert isinstance(checks.reasons, ReasonArray)
        assert checks.verdicts[0] in set(Verdict)
        assert checks.reasons[-1] is Reason.INVALID
        v4 = np.array([16843009, 167772161], dtype=np.uint32)
        packed = client.check(name, v4)
        assert (
            packed.reasons.tolist()
            == answerer.policies.evaluate(name, db.lookup(v4)).reasons.tolist()
        )


def test_unknown_policy_is_a_server_error(client: Client) -> None:
    with pytest.raises(ServerError) as caught:
        client.check("no-such-policy", ["1.1.1.1"])
    assert caught.value.code.name == "NOT_FOUND"
    assert "no-such-policy" in str(caught.value)


def test_info(client: Client, answerer: Answerer) -> None:
    info = client.info()
    assert info.data_version.id == answerer.version.id
    assert info.max_batch == 100_000


def _assert_carries(value: Any, message: Any) -> None:
    """Assert that a typed result has every field of its protobuf message, equal."""
    names = [field.name for field in message.DESCRIPTOR.fields]
    assert [field.name for field in dataclasses.fields(value)] == names
    for name in names:
        got, sent = getattr(value, name), getattr(message, name)
        if hasattr(sent, "DESCRIPTOR"):
            _assert_carries(got, sent)
        elif isinstance(sent, (str, bytes, bool, int)):
            assert got == sent, name
        else:  # a repeated field of messages
            assert isinstance(got, tuple)
            assert len(got) == len(sent), name
            for item, sent_item in zip(got, sent, strict=True):
                _assert_carries(item, sent_item)


def test_info_is_typed_and_carries_every_field(
    client: Client, target: str, answerer: Answerer, db: Database
) -> None:
    info = client.info()
    assert isinstance(info, Info)
    assert info.data_version == DataVersion(answerer.version.id, answerer.version.built_at)
    assert info.data_source == db.info.source
    sources = db.info.metadata.get("sources", [])
    assert [source.name for source in info.sources] == [s["name"] for s in sources]
    assert info.counts.ipv4_segments == len(db.v4)
    assert info.counts.ipv6_segments == len(db.v6)
    assert info.counts.labels == len(db.label_names) - 1
    assert info.has_subdivisions == db.has_subdivisions
    assert answerer.policy_set is not None
    assert info.policy_names == tuple(sorted(answerer.policy_set.policies))
    assert [p.name for p in info.policies] == list(info.policy_names)
    assert info.policy_version == answerer.policy_set.version
    assert info.server_version == __version__
    assert info.search_core == _search.CORE
    assert info.max_batch == 100_000
    assert info.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES
    assert info.process_id == os.getpid()  # the server runs in this process
    assert info.loaded_at == answerer.loaded_at
    with grpc.insecure_channel(target) as channel:
        stub: Any = lookup_pb2_grpc.LookupServiceStub(channel)  # type: ignore[no-untyped-call]
        raw = stub.GetInfo(pb.GetInfoRequest(), timeout=_TIMEOUT_S)
    _assert_carries(info, raw)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.max_batch = 1  # type: ignore[misc]


def test_stream(client: Client, db: Database) -> None:
    v4 = np.array([16843009, 167772161], dtype=np.uint32)
    v6 = np.array([[0x2001_4860_4860_0000, 0x8888]], dtype=np.uint64)
    batches: list[Any] = [v4, _ADDRESSES, v6, np.array([], dtype=np.uint32)]

    def produce() -> Iterator[Any]:
        yield from batches

    results = list(client.stream(produce()))
    assert len(results) == len(batches)
    for answers, batch in zip(results, batches, strict=True):
        _assert_agrees(answers, db, batch)
    packed = list(client.stream([b"\x01\x01\x01\x01"], version=4))
    assert packed[0].countries.tolist() == ["AU"]


def test_unreachable_server_is_a_server_error() -> None:
    with (
        Client("127.0.0.1:1", timeout_s=_TIMEOUT_S) as client,
        pytest.raises(ServerError) as caught,
    ):
        client.lookup(["1.1.1.1"])
    assert caught.value.code.name == "UNAVAILABLE"


def test_wait_until_serving(db: Database) -> None:
    server = LookupServer(ServerConfig(host="127.0.0.1", port=0)).start()
    loader = threading.Timer(0.2, server.load, args=(Answerer.load(db),))
    try:
        with Client(f"127.0.0.1:{server.port}") as client:
            with pytest.raises(ServerError) as caught:
                client.wait_until_serving(timeout_s=0.1)
            assert caught.value.code.name == "DEADLINE_EXCEEDED"
            loader.start()
            client.wait_until_serving(timeout_s=_TIMEOUT_S)
            assert client.lookup(["1.1.1.1"]).countries.tolist() == ["AU"]
    finally:
        loader.cancel()
        server.stop(0)


# ---------------------------------------------------------------------------------------
# reload: the admin RPC, against a server answering from files, with an admin token

_TOKEN = "admin-token-for-client-tests-0123"


@dataclasses.dataclass(frozen=True, slots=True)
class _AdminServed:
    target: str
    data: Path
    policies: Path


@pytest.fixture
def admin_served(tmp_path: Path) -> Iterator[_AdminServed]:
    """A server with admin by token, answering from data and policy files (version 0)."""
    data, policies, token = (tmp_path / n for n in ("data.lookupd", "policies.yaml", "token"))
    write_data(data, 0)
    write_policies(policies, 0)
    token.write_text(f"{_TOKEN}\n")
    token.chmod(0o600)
    admin = AdminConfig(token_file=token).loaded()
    config = ServerConfig(host="127.0.0.1", port=0, admin=admin, watch_interval_s=0)
    loader: Loader | None = None

    def reload(trigger: str) -> Any:
        assert loader is not None
        return loader.reload(trigger)

    server = LookupServer(config, reload=reload)
    loader = Loader(data, policies, publish=server.load)
    server.start()
    try:
        loader.load()
        yield _AdminServed(f"127.0.0.1:{server.port}", data, policies)
    finally:
        server.stop(0, drain_s=0)


def test_reload_is_typed(admin_served: _AdminServed) -> None:
    with Client(admin_served.target, timeout_s=_TIMEOUT_S) as client:
        same = client.reload(token=_TOKEN)
        assert isinstance(same, ReloadResult)
        info = client.info()
        assert same == ReloadResult(info.data_version, info.policy_version, False, False)
        data_id = write_data(admin_served.data, 1)
        policy_version = write_policies(admin_served.policies, 1)
        changed = client.reload(token=_TOKEN)
        assert changed.data_version.id == data_id
        assert changed.data_version == client.info().data_version
        assert changed.policy_version == policy_version
        assert (changed.data_changed, changed.policies_changed) == (True, True)
        with grpc.insecure_channel(admin_served.target) as channel:
            admin: Any = lookup_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
            raw = admin.Reload(
                pb.ReloadRequest(),
                timeout=_TIMEOUT_S,
                metadata=(("authorization", f"Bearer {_TOKEN}"),),
            )
        _assert_carries(client.reload(token=_TOKEN), raw)
        with pytest.raises(ServerError) as caught:
            client.reload(token="wrong-token-of-sixteen-chars")
        assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_async_reload_and_info(admin_served: _AdminServed) -> None:
    async def run() -> None:
        async with AsyncClient(admin_served.target, timeout_s=_TIMEOUT_S) as client:
            await client.wait_until_serving(_TIMEOUT_S)
            info = await client.info()
            assert isinstance(info, Info)
            same = await client.reload(token=_TOKEN)
            assert same == ReloadResult(info.data_version, info.policy_version, False, False)
            policy_version = write_policies(admin_served.policies, 2)
            changed = await client.reload(token=_TOKEN)
            assert changed.policy_version == policy_version
            assert (changed.data_changed, changed.policies_changed) == (False, True)
            assert (await client.info()).policy_version == policy_version
            with pytest.raises(ServerError) as caught:
                await client.reload()
            assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED

    asyncio.run(asyncio.wait_for(run(), _TIMEOUT_S))


def test_async_wait_until_serving(db: Database) -> None:
    server = LookupServer(ServerConfig(host="127.0.0.1", port=0)).start()

    async def run() -> None:
        async with AsyncClient(f"127.0.0.1:{server.port}", timeout_s=_TIMEOUT_S) as client:
            with pytest.raises(ServerError) as caught:
                await client.wait_until_serving(timeout_s=0.1)
            assert caught.value.code.name == "DEADLINE_EXCEEDED"
            loader.start()
            await client.wait_until_serving(timeout_s=_TIMEOUT_S)
            assert (await client.lookup(["1.1.1.1"])).countries.tolist() == ["AU"]

    loader = threading.Timer(0.2, server.load, args=(Answerer.load(db),))
    try:
        asyncio.run(asyncio.wait_for(run(), 2 * _TIMEOUT_S))
    finally:
        loader.cancel()
        server.stop(0)


# ---------------------------------------------------------------------------------------
# stream: sending as it goes, and the same limits and errors in both clients

_V4_BATCH = np.array([16843009, 167772161], dtype=np.uint32)


class _Recorder:
    """A bounded input that records how far it was read, and before reading its second
    batch waits (bounded) until the first answer has arrived."""

    def __init__(self, batches: int) -> None:
        self.batches = batches
        self.read = 0
        self.first_answer = threading.Event()
        self.waited: list[bool] = []

    def __iter__(self) -> Iterator[Any]:
        for index in range(self.batches):
            if index == 1:
                self.waited.append(self.first_answer.wait(_TIMEOUT_S))
            self.read = index + 1
            yield _V4_BATCH

    def answered(self, index: int) -> int:
        """Note answer ``index`` arrived; return how many batches had been read by then."""
        read = self.read
        if index == 0:
            self.first_answer.set()
        return read


def test_stream_sends_as_it_goes(client: Client, db: Database) -> None:
    recorder = _Recorder(8)
    read_at = [recorder.answered(i) for i, _ in enumerate(client.stream(recorder))]
    assert read_at[0] == 1  # the first answer came before the second batch was read
    assert recorder.waited == [True]
    assert len(read_at) == recorder.batches
    # An endless input: the answers come while it is read; stopping ends the stream.
    with contextlib.closing(client.stream(itertools.repeat(_V4_BATCH))) as endless:
        for answers in itertools.islice(endless, 5):
            _assert_agrees(answers, db, _V4_BATCH)


def test_async_stream_sends_as_it_goes(target: str, db: Database) -> None:
    async def run() -> None:
        async with AsyncClient(target, timeout_s=_TIMEOUT_S) as client:
            recorder = _Recorder(8)
            read_at: list[int] = []
            async for answers in client.stream(recorder):
                read_at.append(recorder.answered(len(read_at)))
                _assert_agrees(answers, db, _V4_BATCH)
            assert read_at[0] == 1
            assert recorder.waited == [True]
            assert len(read_at) == recorder.batches
            endless = client.stream(itertools.repeat(_V4_BATCH))
            async with contextlib.aclosing(endless):
                for _ in range(5):
                    _assert_agrees(await anext(endless), db, _V4_BATCH)

    asyncio.run(asyncio.wait_for(run(), 2 * _TIMEOUT_S))


_BAD_STREAM_BATCHES: list[tuple[Any, type[Exception], str]] = [
    (np.arange(4, dtype=np.uint32), ValueError, "over chunk_size"),
    (["1.1.1.1", "::1", "bad", "10.0.0.1"], ValueError, "over chunk_size"),
    (np.zeros(2), TypeError, "float64"),
    ("1.1.1.1", TypeError, "not one str"),
    (b"\x01\x01\x01\x01", ValueError, "version=4"),
]


def _sync_stream_error(target: str, batches: list[Any]) -> tuple[int, Exception]:
    """Stream ``batches`` with a chunk_size of 3; return the answers before the error, and it."""
    answered = 0
    with Client(target, timeout_s=_TIMEOUT_S, chunk_size=3) as client:
        try:
            for _ in client.stream(batches):
                answered += 1
        except (ValueError, TypeError) as exc:
            return answered, exc
    raise AssertionError("no error")


def _async_stream_error(target: str, batches: list[Any]) -> tuple[int, Exception]:
    async def run() -> tuple[int, Exception]:
        answered = 0
        async with AsyncClient(target, timeout_s=_TIMEOUT_S, chunk_size=3) as client:
            try:
                async for _ in client.stream(batches):
                    answered += 1
            except (ValueError, TypeError) as exc:
                return answered, exc
        raise AssertionError("no error")

    return asyncio.run(asyncio.wait_for(run(), _TIMEOUT_S))


@pytest.mark.parametrize(("bad", "error", "match"), _BAD_STREAM_BATCHES)
def test_stream_limits_are_the_same_in_both_clients(
    target: str, bad: Any, error: type[Exception], match: str
) -> None:
    # A bad first batch is refused before anything is sent: even to no server at all.
    for stream_error in (_sync_stream_error, _async_stream_error):
        answered, exc = stream_error("127.0.0.1:1", [bad, _V4_BATCH])
        assert (answered, type(exc)) == (0, error)
        assert match in str(exc)
    assert str(_sync_stream_error("127.0.0.1:1", [bad])[1]) == str(
        _async_stream_error("127.0.0.1:1", [bad])[1]
    )
    # A later one ends the stream: the batches before it are answered, then it raises.
    batches = [_V4_BATCH, ["1.1.1.1"], bad, _V4_BATCH]
    sync, aio = _sync_stream_error(target, batches), _async_stream_error(target, batches)
    assert (sync[0], type(sync[1]), str(sync[1])) == (2, error, str(aio[1]))
    assert (aio[0], type(aio[1])) == (2, error)


def test_stream_of_nothing_opens_no_stream() -> None:
    with Client("127.0.0.1:1", timeout_s=_TIMEOUT_S) as client:
        assert list(client.stream([])) == []

    async def run() -> list[Answers]:
        async with AsyncClient("127.0.0.1:1", timeout_s=_TIMEOUT_S) as client:
            return [answers async for answers in client.stream(iter([]))]

    assert asyncio.run(asyncio.wait_for(run(), _TIMEOUT_S)) == []


# ---------------------------------------------------------------------------------------
# Retries: the idempotent calls are retried on UNAVAILABLE (a server process going away)

_LOOKUP_SERVICE = pb.DESCRIPTOR.services_by_name["LookupService"]
_IDEMPOTENT = {"Lookup", "LookupPacked", "CheckRegion", "GetInfo"}


def test_retry_service_config_names_the_idempotent_calls() -> None:
    options = dict(channel_options(1))
    assert options["grpc.enable_retries"] == 1
    config = json.loads(options["grpc.service_config"])
    (method_config,) = config["methodConfig"]
    names = method_config["name"]
    assert {name["service"] for name in names} == {_LOOKUP_SERVICE.full_name}
    assert {name["method"] for name in names} == _IDEMPOTENT
    assert _IDEMPOTENT.issubset(_LOOKUP_SERVICE.methods_by_name)
    assert "StreamLookup" in _LOOKUP_SERVICE.methods_by_name  # and not retried
    policy = method_config["retryPolicy"]
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert 2 <= policy["maxAttempts"] <= 5  # gRPC caps it at 5
    for key in ("initialBackoff", "maxBackoff"):
        assert policy[key].endswith("s")
        assert float(policy[key][:-1]) > 0
    assert policy["backoffMultiplier"] > 0
    # Requests up to the server's default message limit stay retryable (default 256 KiB).
    assert options["grpc.per_rpc_retry_buffer_size"] >= 8 << 20


class _Flaky:
    """A fake LookupService failing the first ``failures`` calls of each method with
    UNAVAILABLE, as a server process that went away would, then answering RESERVED."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def _fail_first(self, method: str, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.calls[method] += 1
            fail = self.calls[method] <= self.failures
        if fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{method} attempt failed")

    def lookup(self, request: pb.LookupRequest, context: grpc.ServicerContext) -> Any:
        self._fail_first("Lookup", context)
        count = len(request.addresses)
        return pb.LookupResponse(countries=[""] * count, status=[pb.STATUS_RESERVED] * count)

    def lookup_packed(self, request: pb.PackedLookupRequest, context: grpc.ServicerContext) -> Any:
        self._fail_first("LookupPacked", context)
        return self._packed(request)

    def stream_lookup(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        self._fail_first("StreamLookup", context)
        for request in requests:
            yield self._packed(request)

    @staticmethod
    def _packed(request: pb.PackedLookupRequest) -> pb.PackedLookupResponse:
        v4, v6 = len(request.ipv4) // 4, len(request.ipv6) // 16
        reserved = bytes([pb.STATUS_RESERVED])
        return pb.PackedLookupResponse(
            ipv4_countries=b"--" * v4,
            ipv4_status=reserved * v4,
            ipv6_countries=b"--" * v6,
            ipv6_status=reserved * v6,
        )


@pytest.fixture
def flaky_server() -> Iterator[tuple[_Flaky, str]]:
    """A fake server whose every method fails once with UNAVAILABLE, then answers."""
    flaky = _Flaky(failures=1)
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Lookup": grpc.unary_unary_rpc_method_handler(
            flaky.lookup,
            request_deserializer=pb.LookupRequest.FromString,
            response_serializer=pb.LookupResponse.SerializeToString,
        ),
        "LookupPacked": grpc.unary_unary_rpc_method_handler(
            flaky.lookup_packed,
            request_deserializer=pb.PackedLookupRequest.FromString,
            response_serializer=pb.PackedLookupResponse.SerializeToString,
        ),
        "StreamLookup": grpc.stream_stream_rpc_method_handler(
            flaky.stream_lookup,
            request_deserializer=pb.PackedLookupRequest.FromString,
            response_serializer=pb.PackedLookupResponse.SerializeToString,
        ),
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2),
        handlers=[grpc.method_handlers_generic_handler(_LOOKUP_SERVICE.full_name, handlers)],
        options=[("grpc.max_receive_message_length", 16 << 20)],
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield flaky, f"127.0.0.1:{port}"
    server.stop(0)


def test_a_call_failing_with_unavailable_is_retried(flaky_server: tuple[_Flaky, str]) -> None:
    flaky, target = flaky_server
    # 20,000 IPv6 addresses are a 320 kB request: over gRPC's default retry buffer.
    ipv6 = np.zeros((20_000, 2), dtype=np.uint64)
    with Client(target, timeout_s=_TIMEOUT_S, chunk_size=len(ipv6)) as client:
        answers = client.lookup(ipv6)
        assert answers.status.tolist() == [Status.RESERVED] * len(ipv6)
        assert flaky.calls["LookupPacked"] == 2
        text = client.lookup(["1.1.1.1", "::1"], text=True)
        assert text.status.tolist() == [Status.RESERVED] * 2
        assert flaky.calls["Lookup"] == 2


def test_a_stream_is_not_retried(flaky_server: tuple[_Flaky, str]) -> None:
    flaky, target = flaky_server
    with (
        Client(target, timeout_s=_TIMEOUT_S) as client,
        pytest.raises(ServerError) as caught,
    ):
        list(client.stream([np.array([1], dtype=np.uint32)]))
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert flaky.calls["StreamLookup"] == 1


def test_retries_give_up_after_max_attempts(flaky_server: tuple[_Flaky, str]) -> None:
    flaky, target = flaky_server
    flaky.failures = 100
    with (
        Client(target, timeout_s=_TIMEOUT_S) as client,
        pytest.raises(ServerError) as caught,
    ):
        client.lookup(np.array([1], dtype=np.uint32))
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert flaky.calls["LookupPacked"] == 4


# ---------------------------------------------------------------------------------------
# AsyncClient


def test_async_client(target: str, small_target: str, db: Database, answerer: Answerer) -> None:
    async def run() -> None:
        async with AsyncClient(target, timeout_s=_TIMEOUT_S) as client:
            _assert_agrees(await client.lookup(_ADDRESSES), db, _ADDRESSES)
            _assert_agrees(await client.lookup(_ADDRESSES, text=True), db, _ADDRESSES)
            v4 = np.array([16843009, 167772161], dtype=np.uint32)
            _assert_agrees(await client.lookup(v4), db, v4)
            assert (await client.info()).data_version.id == answerer.version.id
            streamed = [answers async for answers in client.stream([v4, _ADDRESSES])]
            _assert_agrees(streamed[0], db, v4)
            _assert_agrees(streamed[1], db, _ADDRESSES)
            with pytest.raises(ServerError):
                await client.check("no-such-policy", _ADDRESSES)
            assert answerer.policies is not None
            if answerer.policies is not None:
                name = sorted(answerer.policies.names)[0]
                checks = await client.check(name, _ADDRESSES)
                expected = answerer.policies.evaluate(name, db.lookup(_ADDRESSES))
                assert checks.reasons.tolist() == expected.reasons.tolist()
        addresses = _mixed(db, 333)
        async with AsyncClient(small_target, chunk_size=_SMALL_BATCH, channels=2) as client:
            _assert_agrees(await client.lookup(addresses), db, addresses)

    asyncio.run(asyncio.wait_for(run(), _TIMEOUT_S))


# ---------------------------------------------------------------------------------------
# lookupd lookup --server


def _run_cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    stdin: bytes = b"",
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_lookup_server_matches_local(
    target: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for extra in ([], ["--subdivisions"]):
        remote = _run_cli(capsys, monkeypatch, ["lookup", "--server", target, *extra, *_ADDRESSES])
        local = _run_cli(capsys, monkeypatch, ["lookup", *extra, *_ADDRESSES])
        assert remote == local
        assert remote[0] == 1
        assert "1.1.1.1\tAU" in remote[1]
        assert "argument 8: not an IP address: 'not-an-ip'" in remote[2]


def test_cli_lookup_server_stdin_matches_local(
    target: str,
    db: Database,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = [*_ADDRESSES, "  1.1.1.1\r", "", *_mixed(db, 2000)]
    text = ("\n".join(lines) + "\n").encode()
    remote = _run_cli(capsys, monkeypatch, ["lookup", "--server", target, "-"], text)
    local = _run_cli(capsys, monkeypatch, ["lookup", "-"], text)
    assert remote == local
    assert "line 8: not an IP address: 'not-an-ip'" in remote[2]


def test_cli_lookup_server_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, _, err = _run_cli(capsys, monkeypatch, ["lookup", "--server", "127.0.0.1:1", "1.1.1.1"])
    assert status == 2
    assert "UNAVAILABLE" in err
    status, _, err = _run_cli(
        capsys, monkeypatch, ["lookup", "--server", "127.0.0.1:1", "--db", "x", "1.1.1.1"]
    )
    assert status == 2
    assert "exclude each other" in err
