"""The gRPC server in-process on 127.0.0.1 (real sockets), and the pure functions it calls."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import grpc
import numpy as np
import numpy.typing as npt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import lookupd
from lookupd import Database, Status
from lookupd.codes import Reason
from lookupd.core.table import RangeTable, Tables
from lookupd.datafiles.data_version import data_version_of
from lookupd.datafiles.snapshot import payload_sha256, write_snapshot
from lookupd.policies import (
    PolicySet,
    example_policies_path,
    load_policies,
    parse_policies,
)
from lookupd.server.answers import Answerer, _country_tables
from lookupd.server.app import LookupServer, ServerConfig
from lookupd.server.batches import CHUNK_ADDRESSES, check_batch, packed_count
from lookupd.server.checks import check
from lookupd.server.errors import (
    BadRequestError,
    CallAbandonedError,
    RequestError,
    UnknownPolicyError,
)
from lookupd.server.lookups import lookup_packed, lookup_request_answer, lookup_text_answer
from lookupd.server.metrics import Metrics
from lookupd.server.servicer import LookupServicer, status_of
from lookupd.v1 import lookup_pb2 as pb
from lookupd.v1 import lookup_pb2_grpc
from lookupd.wire import LOOKUP_SERVICE

_TIMEOUT_S = 20.0
_SEED = 4404
_AGREEMENT_ADDRESSES = 100_000
_LIMIT_BATCH = 1_000
_LIMIT_MESSAGE_BYTES = 64 << 10

_OK_V4 = "1.1.1.1"  # AU
_OK_V6 = "2001:4860:4860::8888"  # US
# Valid public addresses the embedded data has no country for.
_NOT_FOUND = ("5.249.168.0", "2001:401::")
_RESERVED = ("10.0.0.1", "192.168.1.1", "127.0.0.1", "fe80::1", "ff02::1", "2001:db8::1")
_INVALID = ("not-an-ip", "1.2.3.256", "", " 1.1.1.1", "fe80::1%eth0", "01.2.3.4")


# ---------------------------------------------------------------------------------------
# Fixtures: one server with the embedded data and the example policies; one with low limits


def _policy_set() -> PolicySet:
    return load_policies(example_policies_path())


@pytest.fixture(scope="module")
def db() -> Database:
    return lookupd.open()


@pytest.fixture(scope="module")
def answerer(db: Database) -> Answerer:
    return Answerer.load(db, _policy_set())


@dataclass(frozen=True, slots=True)
class _Running:
    """A started server and a stub on a channel to it."""

    server: LookupServer
    channel: grpc.Channel
    stub: Any


def _start(answerer: Answerer | None, config: ServerConfig) -> _Running:
    server = LookupServer(config).start()
    if answerer is not None:
        server.load(answerer)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    grpc.channel_ready_future(channel).result(timeout=_TIMEOUT_S)
    return _Running(server, channel, lookup_pb2_grpc.LookupServiceStub(channel))  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def running(answerer: Answerer) -> Iterator[_Running]:
    started = _start(answerer, ServerConfig(host="127.0.0.1", port=0))
    yield started
    started.channel.close()
    started.server.stop(0)


@pytest.fixture(scope="module")
def stub(running: _Running) -> Any:
    return running.stub


@pytest.fixture(scope="module")
def limited(db: Database) -> Iterator[Any]:
    """A stub of a server allowing 1,000 addresses and 64 KiB per request."""
    answerer = Answerer.load(db, _policy_set(), max_batch=_LIMIT_BATCH)
    started = _start(
        answerer,
        ServerConfig(
            host="127.0.0.1", port=0, max_batch=_LIMIT_BATCH, max_message_bytes=_LIMIT_MESSAGE_BYTES
        ),
    )
    yield started.stub
    started.channel.close()
    started.server.stop(0)


def _expected_status(db: Database, addresses: list[str]) -> list[int]:
    status: list[int] = db.lookup(addresses).status.tolist()
    return status


def _code_of(caught: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    error: Any = caught.value  # a grpc.Call too: it has code() and details()
    code: grpc.StatusCode = error.code()
    return code


def _details_of(caught: pytest.ExceptionInfo[grpc.RpcError]) -> str:
    error: Any = caught.value
    return str(error.details() or "")


def _code(country: str | None) -> bytes:
    return (country or "--").encode()


# ---------------------------------------------------------------------------------------
# Lookup (text)


def test_lookup_answers_each_address_with_a_status(stub: Any) -> None:
    addresses = [_OK_V4, _OK_V6, *_NOT_FOUND, *_RESERVED, *_INVALID, "::ffff:1.1.1.1"]
    response = stub.Lookup(pb.LookupRequest(addresses=addresses), timeout=_TIMEOUT_S)
    assert len(response.countries) == len(response.status) == len(addresses)
    answers = dict(
        zip(addresses, zip(response.countries, response.status, strict=True), strict=True)
    )
    assert answers[_OK_V4] == ("AU", pb.STATUS_OK)
    assert answers[_OK_V6] == ("US", pb.STATUS_OK)
    assert answers["::ffff:1.1.1.1"] == ("AU", pb.STATUS_OK)
    for address in _NOT_FOUND:
        assert answers[address] == ("", pb.STATUS_NOT_FOUND), address
    for address in _RESERVED:
        assert answers[address] == ("", pb.STATUS_RESERVED), address
    for address in _INVALID:
        assert answers[address] == ("", pb.STATUS_INVALID_ADDRESS), address
    assert response.data_version.id
    assert len(response.data_version.id) == 64
    assert list(response.subdivisions) == []


def test_lookup_statuses_match_the_database(stub: Any, db: Database) -> None:
    addresses = [_OK_V4, *_NOT_FOUND, *_RESERVED, *_INVALID]
    response = stub.Lookup(pb.LookupRequest(addresses=addresses), timeout=_TIMEOUT_S)
    assert list(response.status) == _expected_status(db, addresses)
    assert set(response.status) == {
        pb.STATUS_OK,
        pb.STATUS_NOT_FOUND,
        pb.STATUS_RESERVED,
        pb.STATUS_INVALID_ADDRESS,
    }


def test_lookup_with_subdivisions(stub: Any) -> None:
    request = pb.LookupRequest(addresses=[_OK_V4, "x"], include_subdivisions=True)
    response = stub.Lookup(request, timeout=_TIMEOUT_S)
    assert list(response.subdivisions) == ["", ""]  # the embedded data has none


def test_empty_batches_still_carry_the_data_version(stub: Any, answerer: Answerer) -> None:
    for response in (
        stub.Lookup(pb.LookupRequest(), timeout=_TIMEOUT_S),
        stub.LookupPacked(pb.PackedLookupRequest(), timeout=_TIMEOUT_S),
    ):
        assert response.data_version.id == answerer.version.id
        assert response.data_version.built_at == "2026-06-17"


# ---------------------------------------------------------------------------------------
# LookupPacked and StreamLookup


def _packed_v4(addresses: list[str]) -> bytes:
    return b"".join(ipaddress.IPv4Address(a).packed for a in addresses)


def _packed_v6(addresses: list[str]) -> bytes:
    return b"".join(ipaddress.IPv6Address(a).packed for a in addresses)


def test_lookup_packed(stub: Any) -> None:
    request = pb.PackedLookupRequest(
        ipv4=_packed_v4([_OK_V4, _NOT_FOUND[0], "10.0.0.1"]),
        ipv6=_packed_v6([_OK_V6, "::ffff:1.1.1.1", "fe80::1", _NOT_FOUND[1]]),
        tag=12345,
    )
    response = stub.LookupPacked(request, timeout=_TIMEOUT_S)
    assert response.ipv4_countries == b"AU----"
    assert response.ipv4_status == bytes([pb.STATUS_OK, pb.STATUS_NOT_FOUND, pb.STATUS_RESERVED])
    assert response.ipv6_countries == b"USAU----"
    assert response.ipv6_status == bytes(
        [pb.STATUS_OK, pb.STATUS_OK, pb.STATUS_RESERVED, pb.STATUS_NOT_FOUND]
    )
    assert response.tag == 12345
    assert len(response.data_version.id) == 64


@pytest.mark.parametrize(("field", "size"), [("ipv4", 5), ("ipv6", 17), ("ipv6", 4)])
def test_packed_lengths_must_be_whole_addresses(stub: Any, field: str, size: int) -> None:
    request = (
        pb.PackedLookupRequest(ipv4=bytes(size))
        if field == "ipv4"
        else pb.PackedLookupRequest(ipv6=bytes(size))
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.LookupPacked(request, timeout=_TIMEOUT_S)
    assert _code_of(caught) == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{field} holds {size} bytes, not a multiple of" in _details_of(caught)


def test_stream_answers_each_request_in_order(stub: Any) -> None:
    batches = [[_OK_V4], [_NOT_FOUND[0], _OK_V4], [], ["10.0.0.1"] * 3]
    requests = [
        pb.PackedLookupRequest(ipv4=_packed_v4(batch), tag=i) for i, batch in enumerate(batches)
    ]
    responses = list(stub.StreamLookup(iter(requests), timeout=_TIMEOUT_S))
    assert [r.tag for r in responses] == [0, 1, 2, 3]
    assert [r.ipv4_countries for r in responses] == [b"AU", b"--AU", b"", b"------"]
    assert all(len(r.data_version.id) == 64 for r in responses)


def test_a_malformed_stream_message_ends_the_stream(stub: Any) -> None:
    requests = [
        pb.PackedLookupRequest(ipv4=_packed_v4([_OK_V4])),
        pb.PackedLookupRequest(ipv4=b"x"),
    ]
    answers = []
    with pytest.raises(grpc.RpcError) as caught:
        answers.extend(stub.StreamLookup(iter(requests), timeout=_TIMEOUT_S))
    assert [a.ipv4_countries for a in answers] == [b"AU"]
    assert _code_of(caught) == grpc.StatusCode.INVALID_ARGUMENT


# ---------------------------------------------------------------------------------------
# GetInfo


def test_get_info(stub: Any, answerer: Answerer, db: Database) -> None:
    info = stub.GetInfo(pb.GetInfoRequest(), timeout=_TIMEOUT_S)
    assert (
        info.data_version.id
        == answerer.version.id
        == payload_sha256(Tables(db.v4, db.v6, db.label_names))
    )
    assert info.data_source == "embedded:geo-whois-asn-country.npz"
    assert [source.name for source in info.sources] == [
        "geo-whois-asn-country-ipv4.csv",
        "geo-whois-asn-country-ipv6.csv",
    ]
    assert all(len(source.sha256) == 64 for source in info.sources)
    assert info.counts.ipv4_segments == len(db.v4)
    assert info.counts.ipv6_segments == len(db.v6)
    assert info.counts.labels == len(db.label_names) - 1
    assert (info.counts.ipv4_rows, info.counts.ipv6_rows) == (334_373, 216_295)
    assert not info.has_subdivisions
    assert info.server_version == lookupd.__version__
    assert info.search_core in ("c", "python")
    assert info.max_batch == 100_000
    assert info.max_message_bytes == 8 << 20
    assert answerer.policy_set is not None
    if answerer.policy_set is not None:  # for the type checker
        assert [p.name for p in info.policies] == sorted(answerer.policy_set.policies)
        assert all(p.description for p in info.policies)
        assert info.policy_version == answerer.policy_set.version


# ---------------------------------------------------------------------------------------
# CheckRegion


def test_check_region_unknown_policy_is_not_found(stub: Any, answerer: Answerer) -> None:
    request = pb.CheckRegionRequest(policy="no-such-policy", addresses=[_OK_V4])
    with pytest.raises(grpc.RpcError) as caught:
        stub.CheckRegion(request, timeout=_TIMEOUT_S)
    assert _code_of(caught) == grpc.StatusCode.NOT_FOUND
    assert "'no-such-policy'" in _details_of(caught)
    assert answerer.policies is not None
    for name in answerer.policies.names:
        assert name in _details_of(caught)


def test_check_region_orders_text_then_ipv4_then_ipv6(stub: Any, answerer: Answerer) -> None:
    assert answerer.policies is not None
    name = sorted(answerer.policies.names)[0]
    request = pb.CheckRegionRequest(
        policy=name,
        addresses=["x", _OK_V4],
        ipv4=_packed_v4(["10.0.0.1"]),
        ipv6=_packed_v6([_OK_V6]),
    )
    response = stub.CheckRegion(request, timeout=_TIMEOUT_S)
    assert list(response.countries) == ["", "AU", "", "US"]
    assert response.reasons[0] == pb.REASON_INVALID
    assert response.reasons[2] == pb.REASON_RESERVED
    assert answerer.policy_set is not None
    assert response.policy_version == answerer.policy_set.version
    assert len(response.data_version.id) == 64


_EVERY_REASON_POLICY = """
policies:
  every-reason:
    description: A policy with every kind of rule.
    allow_countries: [UA, US]
    deny_subdivisions: [UA-43]
    allow_subdivisions: [RU-MOW]
    networks:
      allow: [1.0.2.128/25]
      deny: [1.0.0.128/25, "2001:db8:1::/48"]
    unknown: deny
    reserved: allow
"""
# Address -> (verdict, reason, country) under _EVERY_REASON_POLICY and _subdivision_db().
_EVERY_REASON = {
    "1.0.0.1": (pb.VERDICT_ALLOW, pb.REASON_COUNTRY_ALLOWED, "UA"),
    "1.0.2.1": (pb.VERDICT_DENY, pb.REASON_COUNTRY_DENIED, "RU"),
    "1.0.1.1": (pb.VERDICT_DENY, pb.REASON_SUBDIVISION_DENIED, "UA"),
    "1.0.3.1": (pb.VERDICT_ALLOW, pb.REASON_SUBDIVISION_ALLOWED, "RU"),
    "1.0.2.200": (pb.VERDICT_ALLOW, pb.REASON_NETWORK_ALLOWED, "RU"),
    "1.0.0.200": (pb.VERDICT_DENY, pb.REASON_NETWORK_DENIED, "UA"),
    "2001:db8:1::1": (pb.VERDICT_DENY, pb.REASON_NETWORK_DENIED, ""),
    "10.0.0.1": (pb.VERDICT_ALLOW, pb.REASON_RESERVED, ""),
    "1.0.4.1": (pb.VERDICT_DENY, pb.REASON_UNKNOWN, ""),
    "not-an-ip": (pb.VERDICT_DENY, pb.REASON_INVALID, ""),
}


def _subdivision_db() -> Database:
    """A tiny database whose labels carry subdivisions: 1.0.0.0/24 UA, 1.0.1.0/24 UA-43, ..."""
    names = ["", "UA", "UA-43", "RU", "RU-MOW"]
    starts = [0, 0x0100_0000, 0x0100_0100, 0x0100_0200, 0x0100_0300, 0x0100_0400]
    v4 = RangeTable.from_arrays(
        4, np.array(starts, dtype=np.uint32), np.array([0, 1, 2, 3, 4, 0], dtype=np.uint16)
    )
    v6 = RangeTable.from_arrays(6, np.zeros((1, 2), dtype=np.uint64), np.zeros(1, np.uint16))
    return Database(v4, v6, names)


def test_check_region_gives_every_reason() -> None:
    policy_set = parse_policies(_EVERY_REASON_POLICY, "every-reason.yaml")
    assert {f"REASON_{reason.name}" for reason in Reason} == {
        pb.Reason.Name(reason) for _, reason, _ in _EVERY_REASON.values()
    }
    started = _start(
        Answerer.load(_subdivision_db(), policy_set), ServerConfig(host="127.0.0.1", port=0)
    )
    try:
        addresses = list(_EVERY_REASON)
        response = started.stub.CheckRegion(
            pb.CheckRegionRequest(policy="every-reason", addresses=addresses), timeout=_TIMEOUT_S
        )
        answers = zip(response.verdicts, response.reasons, response.countries, strict=True)
        assert dict(zip(addresses, answers, strict=True)) == _EVERY_REASON
        assert response.policy_version == policy_set.version
        lookup = started.stub.Lookup(
            pb.LookupRequest(addresses=["1.0.1.1", "1.0.0.1"], include_subdivisions=True),
            timeout=_TIMEOUT_S,
        )
        assert list(lookup.countries) == ["UA", "UA"]
        assert list(lookup.subdivisions) == ["UA-43", ""]
        info = started.stub.GetInfo(pb.GetInfoRequest(), timeout=_TIMEOUT_S)
        assert info.has_subdivisions
        assert [(p.name, p.description) for p in info.policies] == [
            ("every-reason", "A policy with every kind of rule.")
        ]
    finally:
        started.channel.close()
        started.server.stop(0)


# ---------------------------------------------------------------------------------------
# Limits, deadlines, and a server that has not loaded yet


def test_oversized_batches_are_refused_with_the_limit(limited: Any) -> None:
    too_many = [_OK_V4] * (_LIMIT_BATCH + 1)
    calls: list[Callable[[], object]] = [
        lambda: limited.Lookup(pb.LookupRequest(addresses=too_many), timeout=_TIMEOUT_S),
        lambda: limited.LookupPacked(
            pb.PackedLookupRequest(ipv4=bytes(4 * (_LIMIT_BATCH - 1)), ipv6=bytes(32)),
            timeout=_TIMEOUT_S,
        ),
        lambda: list(
            limited.StreamLookup(
                iter([pb.PackedLookupRequest(ipv4=bytes(4 * (_LIMIT_BATCH + 1)))]),
                timeout=_TIMEOUT_S,
            )
        ),
        lambda: limited.CheckRegion(
            pb.CheckRegionRequest(policy="any", addresses=too_many), timeout=_TIMEOUT_S
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert _code_of(caught) == grpc.StatusCode.INVALID_ARGUMENT
        assert "1,001 addresses is over the limit of 1,000" in _details_of(caught)


def test_a_full_batch_is_answered(limited: Any) -> None:
    response = limited.LookupPacked(
        pb.PackedLookupRequest(ipv4=_packed_v4([_OK_V4]) * _LIMIT_BATCH), timeout=_TIMEOUT_S
    )
    assert response.ipv4_countries == b"AU" * _LIMIT_BATCH


def test_oversized_messages_are_refused_with_the_limit(limited: Any) -> None:
    request = pb.PackedLookupRequest(ipv6=bytes(16 * 5000))  # 80,000 bytes > 64 KiB
    with pytest.raises(grpc.RpcError) as caught:
        limited.LookupPacked(request, timeout=_TIMEOUT_S)
    assert _code_of(caught) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(_LIMIT_MESSAGE_BYTES) in _details_of(caught)


def test_a_tiny_deadline_is_exceeded(stub: Any) -> None:
    request = pb.LookupRequest(addresses=[_OK_V4] * 100_000)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Lookup(request, timeout=0.001)
    assert _code_of(caught) == grpc.StatusCode.DEADLINE_EXCEEDED


def test_calls_before_the_data_is_loaded_are_unavailable() -> None:
    started = _start(None, ServerConfig(host="127.0.0.1", port=0))
    try:
        with pytest.raises(grpc.RpcError) as caught:
            started.stub.Lookup(pb.LookupRequest(addresses=[_OK_V4]), timeout=_TIMEOUT_S)
        assert _code_of(caught) == grpc.StatusCode.UNAVAILABLE
        assert "not loaded" in _details_of(caught)
    finally:
        started.channel.close()
        started.server.stop(0)


# ---------------------------------------------------------------------------------------
# Health and reflection


def test_health_check_and_watch_follow_loading_and_stopping(answerer: Answerer) -> None:
    started = _start(None, ServerConfig(host="127.0.0.1", port=0))
    health: Any = health_pb2_grpc.HealthStub(started.channel)
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    serving = health_pb2.HealthCheckResponse.SERVING
    stopper = threading.Thread(target=started.server.stop, args=(2.0,))
    try:
        for service in ("", LOOKUP_SERVICE):
            request = health_pb2.HealthCheckRequest(service=service)
            assert health.Check(request, timeout=_TIMEOUT_S).status == not_serving
        watch = health.Watch(
            health_pb2.HealthCheckRequest(service=LOOKUP_SERVICE), timeout=_TIMEOUT_S
        )
        assert next(watch).status == not_serving
        started.server.load(answerer)
        assert next(watch).status == serving
        for service in ("", LOOKUP_SERVICE):
            request = health_pb2.HealthCheckRequest(service=service)
            assert health.Check(request, timeout=_TIMEOUT_S).status == serving
        stopper.start()
        assert next(watch).status == not_serving
        watch.cancel()
    finally:
        started.channel.close()
        if stopper.is_alive():
            stopper.join(_TIMEOUT_S)
        started.server.stop(0)


def test_health_of_an_unknown_service_is_not_found(running: _Running) -> None:
    health: Any = health_pb2_grpc.HealthStub(running.channel)
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=_TIMEOUT_S)
    assert _code_of(caught) == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(running: _Running) -> None:
    reflect: Any = reflection_pb2_grpc.ServerReflectionStub(running.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (response,) = list(reflect.ServerReflectionInfo(iter([request]), timeout=_TIMEOUT_S))
    names = {service.name for service in response.list_services_response.service}
    assert names == {
        "lookupd.v1.LookupService",
        "lookupd.v1.AdminService",
        "envoy.service.auth.v3.Authorization",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    by_symbol = reflection_pb2.ServerReflectionRequest(file_containing_symbol=LOOKUP_SERVICE)
    (response,) = list(reflect.ServerReflectionInfo(iter([by_symbol]), timeout=_TIMEOUT_S))
    assert response.file_descriptor_response.file_descriptor_proto


# ---------------------------------------------------------------------------------------
# Agreement with the in-process Database on 100k real addresses


def _real_addresses(db: Database, count: int) -> list[str]:
    """Addresses across the embedded data: random, segment edges, mapped, reserved, invalid."""
    rng = np.random.default_rng(_SEED)
    v4_starts = db.v4.starts.astype(np.uint64)
    picks = rng.integers(0, len(v4_starts), count * 3 // 20)
    edges = np.concatenate([v4_starts[picks], np.maximum(v4_starts[picks], 1) - 1])
    v4 = np.concatenate([rng.integers(0, 1 << 32, count // 4, dtype=np.uint64), edges])
    texts = [str(ipaddress.IPv4Address(int(key))) for key in v4]
    v6_picks = db.v6.starts[rng.integers(1, len(db.v6), count * 3 // 10)]
    for high, low in v6_picks.tolist():
        texts.append(str(ipaddress.IPv6Address((high << 64) | low)))
    texts += [f"::ffff:{ipaddress.IPv4Address(int(key))}" for key in v4[: count // 20]]
    texts += [f"fe80::{i:x}" for i in range(count // 100)]
    texts += [f"bad{i}" for i in range(count // 100)]
    texts += [f"192.168.{i % 256}.{i // 256 % 256}" for i in range(count - len(texts))]
    order = rng.permutation(len(texts))
    return [texts[i] for i in order]


@pytest.fixture(scope="module")
def real(db: Database) -> tuple[list[str], Any]:
    addresses = _real_addresses(db, _AGREEMENT_ADDRESSES)
    return addresses, db.lookup(addresses)


def test_text_rpc_agrees_with_the_database(stub: Any, real: tuple[list[str], Any]) -> None:
    addresses, expected = real
    assert len(addresses) == _AGREEMENT_ADDRESSES
    response = stub.Lookup(pb.LookupRequest(addresses=addresses), timeout=_TIMEOUT_S)
    assert list(response.countries) == [c or "" for c in expected.countries()]
    assert np.array_equal(np.array(response.status), expected.status)
    assert len(set(expected.status.tolist())) == 4


def _split_families(
    addresses: list[str], db: Database
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint64]]:
    keys = db.lookup(addresses).keys
    status = db.lookup(addresses).status
    valid = status != Status.INVALID_ADDRESS
    mapped = valid & (keys[:, 0] == 0) & ((keys[:, 1] >> np.uint64(32)) == 0xFFFF)
    return keys[mapped, 1].astype(np.uint32), keys[valid & ~mapped]


def test_packed_and_stream_agree_with_the_database(
    stub: Any, db: Database, real: tuple[list[str], Any]
) -> None:
    v4, v6 = _split_families(real[0], db)
    expected_v4, expected_v6 = db.lookup(v4), db.lookup(v6)
    codes = [_code(country) for country in expected_v4.countries()]
    codes6 = [_code(country) for country in expected_v6.countries()]
    response = stub.LookupPacked(
        pb.PackedLookupRequest(ipv4=v4.astype(">u4").tobytes(), ipv6=v6.astype(">u8").tobytes()),
        timeout=_TIMEOUT_S,
    )
    assert response.ipv4_countries == b"".join(codes)
    assert response.ipv6_countries == b"".join(codes6)
    assert response.ipv4_status == expected_v4.status.tobytes()
    assert response.ipv6_status == expected_v6.status.tobytes()
    step = 7_919
    requests = [
        pb.PackedLookupRequest(ipv4=v4[start : start + step].astype(">u4").tobytes())
        for start in range(0, len(v4), step)
    ]
    streamed = list(stub.StreamLookup(iter(requests), timeout=_TIMEOUT_S))
    assert len(streamed) == len(requests)
    assert b"".join(r.ipv4_countries for r in streamed) == b"".join(codes)


def test_check_region_agrees_with_the_policies(
    stub: Any, answerer: Answerer, real: tuple[list[str], Any]
) -> None:
    assert answerer.policies is not None
    addresses, expected = real
    for name in answerer.policies.names:
        decisions = answerer.policies.evaluate(name, expected)
        response = stub.CheckRegion(
            pb.CheckRegionRequest(policy=name, addresses=addresses), timeout=_TIMEOUT_S
        )
        assert list(response.verdicts) == decisions.verdicts.tolist()
        assert list(response.reasons) == decisions.reasons.tolist()
        assert list(response.countries) == [c or "" for c in expected.countries()]


# ---------------------------------------------------------------------------------------
# The pure functions, without gRPC


def test_status_numbers_are_the_protos() -> None:
    # No table between them: the answers' status bytes are the lookup's statuses as they are.
    for member in Status:
        assert member == pb.Status.Value(f"STATUS_{member.name}")
    assert int(pb.STATUS_UNSPECIFIED) not in {int(member) for member in Status}


def test_packed_count() -> None:
    assert packed_count(b"", b"") == 0
    assert packed_count(bytes(8), bytes(32)) == 4
    with pytest.raises(BadRequestError, match="ipv4 holds 3 bytes"):
        packed_count(bytes(3), b"")
    with pytest.raises(BadRequestError, match="ipv6 holds 20 bytes"):
        packed_count(b"", bytes(20))


def test_answerer_refuses_over_the_limit(db: Database) -> None:
    small = Answerer.load(db, max_batch=2)
    check_batch(2, small.max_batch)
    with pytest.raises(BadRequestError, match="batch of 3 addresses is over the limit of 2"):
        lookup_text_answer(small, ["1.1.1.1"] * 3)
    with pytest.raises(UnknownPolicyError, match="none loaded"):
        check(small, "x", ["1.1.1.1"])


def test_answerer_stops_between_chunks_when_the_caller_is_gone(answerer: Answerer) -> None:
    big = [_OK_V4] * (CHUNK_ADDRESSES + 1)
    with pytest.raises(CallAbandonedError):
        lookup_text_answer(answerer, big, keep_going=lambda: False)
    with pytest.raises(CallAbandonedError):
        lookup_packed(answerer, _packed_v4(big), b"", keep_going=lambda: False)
    encoded, status = lookup_text_answer(answerer, big, keep_going=lambda: True)
    response = pb.LookupResponse.FromString(encoded)
    assert list(response.countries) == ["AU"] * len(big)
    assert set(response.status) == {pb.STATUS_OK}
    assert list(response.status) == status.tolist()


def test_chunked_packed_answers_equal_one_piece(answerer: Answerer) -> None:
    v4 = np.arange(0, 1 << 32, (1 << 32) // (3 * CHUNK_ADDRESSES + 5), dtype=np.uint64)
    data = v4.astype(">u4").tobytes()
    codes, _, status, _ = lookup_packed(answerer, data, b"")
    expected = answerer.db.lookup(data, version=4)
    assert codes == answerer.codes[expected.labels].tobytes()
    assert status == expected.status.tobytes()


def test_data_version_equals_a_snapshot_of_the_same_tables(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "same.lkd"
    header = write_snapshot(path, Tables(db.v4, db.v6, db.label_names))
    embedded = data_version_of(db)
    assert embedded.id == header["payload_sha256"]
    assert embedded.built_at == "2026-06-17"
    mapped = data_version_of(lookupd.open(path))
    assert mapped.id == embedded.id
    assert mapped.built_at == header["created"]


def test_odd_labels_get_a_documented_packed_code() -> None:
    codes, texts = _country_tables(["", "US", "UA-43", "EUR", "É1"])
    assert codes.tolist() == [b"--", b"US", b"UA", b"??", b"??"]
    assert texts == ["", "US", "UA", "EUR", "É1"]


def _message_answer(answerer: Answerer, addresses: list[str], subs: bool) -> pb.LookupResponse:
    """The text answer built as a protobuf message from ``Database.lookup``'s answers."""
    result = answerer.db.lookup(addresses) if addresses else None
    return pb.LookupResponse(
        countries=[country or "" for country in result.countries()] if result else [],
        status=result.status.tolist() if result else [],
        data_version=answerer.version_message(),
        subdivisions=[sub or "" for sub in result.subdivisions()] if result and subs else [],
    )


_MIXED = [_OK_V4, _OK_V6, "::ffff:1.1.1.1", *_NOT_FOUND, *_RESERVED, *_INVALID]


@pytest.mark.parametrize("subs", [False, True])
def test_encoded_text_answer_equals_the_message(
    answerer: Answerer, real: tuple[list[str], Any], subs: bool
) -> None:
    addresses = real[0]
    # Small batches (the lookup_one path, and its fallback) and chunked ones.
    batches = [[], [_OK_V4], [_OK_V4, _OK_V6], _MIXED, addresses[:10_000]]
    batches += [[item] for item in _MIXED] + [[_OK_V4, item] for item in _MIXED]
    batches.append((addresses * 2)[: CHUNK_ADDRESSES + 7])
    for batch in batches:
        encoded, status = lookup_text_answer(answerer, batch, subdivisions=subs)
        assert list(pb.LookupResponse.FromString(encoded).status) == status.tolist()
        assert pb.LookupResponse.FromString(encoded) == _message_answer(answerer, batch, subs)


def test_encoded_text_answer_with_odd_and_subdivision_labels() -> None:
    for db in (_subdivision_db(), Database(*_subdivision_db_tables(["", "UA", "EUR", "É1"]))):
        answerer = Answerer.load(db)
        batch = ["1.0.0.1", "1.0.1.1", "1.0.2.1", "1.0.3.1", "1.0.4.1", "x", "9.9.9.9"]
        for subs in (False, True):
            for part in (batch, batch[:1], batch[1:3], batch[2:3], batch[3:4]):
                encoded, _ = lookup_text_answer(answerer, part, subdivisions=subs)
                assert pb.LookupResponse.FromString(encoded) == _message_answer(
                    answerer, part, subs
                )


def _subdivision_db_tables(names: list[str]) -> tuple[RangeTable, RangeTable, list[str]]:
    starts = [0, 0x0100_0000, 0x0100_0100, 0x0100_0200, 0x0100_0300]
    v4 = RangeTable.from_arrays(
        4, np.array(starts, dtype=np.uint32), np.array([0, 1, 2, 3, 0], dtype=np.uint16)
    )
    v6 = RangeTable.from_arrays(6, np.zeros((1, 2), dtype=np.uint64), np.zeros(1, np.uint16))
    return v4, v6, names


def test_encoded_text_answer_stops_between_chunks(answerer: Answerer) -> None:
    big = [_OK_V4] * (CHUNK_ADDRESSES + 1)
    with pytest.raises(CallAbandonedError):
        lookup_text_answer(answerer, big, keep_going=lambda: False)
    with pytest.raises(BadRequestError):
        lookup_text_answer(Answerer.load(answerer.db, max_batch=2), [_OK_V4] * 3)


# ---------------------------------------------------------------------------------------
# Stopping (health watches, drain) and streams in their own pool

_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_SERVING = health_pb2.HealthCheckResponse.SERVING


def test_stop_ends_an_open_health_watch_without_waiting_for_the_grace(
    answerer: Answerer,
) -> None:
    started = _start(answerer, ServerConfig(host="127.0.0.1", port=0))
    health: Any = health_pb2_grpc.HealthStub(started.channel)
    try:
        watch = health.Watch(health_pb2.HealthCheckRequest(service=LOOKUP_SERVICE), timeout=10.0)
        assert next(watch).status == _SERVING
        started.server.stop(grace_s=5.0)
        # The watcher is told NOT_SERVING, then its stream ends with an OK status: ended by
        # the server before its stop, not cancelled (CANCELLED) when the grace ran out.
        assert next(watch).status == _NOT_SERVING
        with pytest.raises(StopIteration):
            next(watch)
        assert watch.code() == grpc.StatusCode.OK
    finally:
        started.channel.close()
        started.server.stop(0)


def test_drain_keeps_answering_while_health_says_not_serving(answerer: Answerer) -> None:
    started = _start(answerer, ServerConfig(host="127.0.0.1", port=0))
    health: Any = health_pb2_grpc.HealthStub(started.channel)
    check = health_pb2.HealthCheckRequest(service=LOOKUP_SERVICE)
    request = pb.LookupRequest(addresses=[_OK_V4])
    stopper = threading.Thread(target=started.server.stop, args=(5.0,), kwargs={"drain_s": 0.5})
    try:
        assert health.Check(check, timeout=10.0).status == _SERVING
        stopper.start()
        status: object = _SERVING
        for _ in range(100):  # NOT_SERVING comes at once; at most ~0.5 s of polling
            status = health.Check(check, timeout=10.0).status
            if status == _NOT_SERVING:
                break
            time.sleep(0.005)
        assert status == _NOT_SERVING
        # Still draining: calls are answered.
        assert list(started.stub.Lookup(request, timeout=10.0).countries) == ["AU"]
        stopper.join(10.0)
        assert not stopper.is_alive()
        # Stopped: calls fail.
        with pytest.raises(grpc.RpcError) as caught:
            started.stub.Lookup(request, timeout=10.0)
        assert _code_of(caught) == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(check, timeout=10.0)
        assert _code_of(caught) == grpc.StatusCode.UNAVAILABLE
    finally:
        started.channel.close()
        if stopper.is_alive():
            stopper.join(10.0)
        started.server.stop(0)


def test_open_streams_do_not_starve_unary_calls(answerer: Answerer) -> None:
    started = _start(answerer, ServerConfig(host="127.0.0.1", port=0, threads=2, max_streams=2))
    release = threading.Event()
    first_answers = [threading.Event() for _ in range(4)]
    results: dict[int, list[tuple[int, bytes]] | grpc.RpcError] = {}

    def requests(index: int) -> Iterator[pb.PackedLookupRequest]:
        yield pb.PackedLookupRequest(ipv4=_packed_v4([_OK_V4]), tag=index)
        release.wait(10.0)  # the stream stays open until released
        yield pb.PackedLookupRequest(ipv4=_packed_v4([_OK_V4, "10.0.0.1"]), tag=100 + index)

    def stream(index: int) -> None:
        answers: list[tuple[int, bytes]] = []
        try:
            for response in started.stub.StreamLookup(requests(index), timeout=10.0):
                answers.append((response.tag, response.ipv4_countries))
                first_answers[index].set()
            results[index] = answers
        except grpc.RpcError as exc:
            results[index] = exc

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        for _ in range(1000):  # the streams with a thread answer their first message
            if sum(event.is_set() for event in first_answers) >= 2:
                break
            time.sleep(0.01)
        # Unary calls are answered while every stream thread is held by an open stream.
        for _ in range(5):
            response = started.stub.Lookup(pb.LookupRequest(addresses=[_OK_V4]), timeout=5.0)
            assert list(response.countries) == ["AU"]
            packed = started.stub.LookupPacked(
                pb.PackedLookupRequest(ipv4=_packed_v4([_OK_V4])), timeout=5.0
            )
            assert packed.ipv4_countries == b"AU"
        # Two streams got the two stream threads; the other two wait for one.
        assert sum(event.is_set() for event in first_answers) == 2
        assert results == {}
        release.set()
        for thread in threads:
            thread.join(10.0)
        assert not any(thread.is_alive() for thread in threads)
        # All four complete, the two that waited included: none failed.
        assert results == {i: [(i, b"AU"), (100 + i, b"AU--")] for i in range(4)}
    finally:
        release.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(10.0)
        started.channel.close()
        started.server.stop(0)


# ---------------------------------------------------------------------------------------
# Lookup read straight from the request's bytes


def test_a_large_text_request_is_answered_from_its_bytes(
    stub: Any, answerer: Answerer, db: Database
) -> None:
    rng = np.random.default_rng(11)
    keys = rng.integers(0, 1 << 32, 3000, dtype=np.uint64)
    batch = [str(ipaddress.IPv4Address(int(k))) for k in keys] + [
        "bad",
        "",
        "2001:4860:4860::8888",
        "::ffff:1.1.1.1",
        " 1.1.1.1",
    ]
    request = pb.LookupRequest(addresses=batch)
    # The servicer read these bytes in place: the same answer as decoding them first.
    assert lookup_request_answer(answerer, request.SerializeToString()) is not None
    response = stub.Lookup(request, timeout=_TIMEOUT_S)
    want = db.lookup(batch)
    assert list(response.countries) == [country or "" for country in want.countries()]
    assert list(response.status) == want.status.tolist()
    assert response.data_version.id == answerer.version.id


def test_a_large_request_with_subdivisions_is_decoded_as_usual(
    stub: Any, answerer: Answerer
) -> None:
    request = pb.LookupRequest(addresses=[_OK_V4] * 50, include_subdivisions=True)
    assert lookup_request_answer(answerer, request.SerializeToString()) is None
    response = stub.Lookup(request, timeout=_TIMEOUT_S)
    assert list(response.countries) == ["AU"] * 50
    assert list(response.subdivisions) == [""] * 50


def test_a_malformed_request_is_invalid_argument(running: _Running) -> None:
    call: Any = running.channel.unary_unary("/lookupd.v1.LookupService/Lookup")
    with pytest.raises(grpc.RpcError) as caught:
        call(b"\x0a\x05abc", timeout=_TIMEOUT_S)  # a length past the end
    assert _code_of(caught) == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed LookupRequest" in _details_of(caught)


# ---------------------------------------------------------------------------------------
# The servicer's frame: statuses for errors, metrics for every call


class _Aborted(Exception):
    """What :class:`_Context` raises on abort, as grpc's own context does."""


class _Context:
    """A ``grpc.ServicerContext`` stand-in, to call the servicer without a transport."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def is_active(self) -> bool:
        return True

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        self.aborted = (code, details)
        raise _Aborted


def _context() -> Any:
    """A fresh :class:`_Context`, as the servicer's methods take it."""
    return _Context()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BadRequestError("too many"), grpc.StatusCode.INVALID_ARGUMENT),
        (UnknownPolicyError("no policy named 'x'"), grpc.StatusCode.NOT_FOUND),
        (CallAbandonedError("the caller stopped waiting"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (RequestError("some other refusal"), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_each_refusal_has_its_status(error: RequestError, code: grpc.StatusCode) -> None:
    assert status_of(error) == (code, str(error))


def test_an_unexpected_error_is_internal_with_a_short_detail() -> None:
    # Never UNKNOWN, and the message (a path, a value) stays in the server's log.
    assert status_of(ValueError("/secret/path")) == (
        grpc.StatusCode.INTERNAL,
        "internal error: ValueError",
    )


class _Records(logging.Handler):
    """Keep the records a logger passes on."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_failing_rpc_ends_internal_over_grpc(stub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(answerer: Answerer, *, max_message_bytes: int) -> pb.GetInfoResponse:
        raise RuntimeError("a bug")

    monkeypatch.setattr("lookupd.server.servicer.info", broken)
    # A handler of its own: other tests may leave lookupd's loggers not propagating.
    handler = _Records()
    records = handler.records
    logger = logging.getLogger("lookupd.server.servicer")
    logger.addHandler(handler)
    try:
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as caught:
                stub.GetInfo(pb.GetInfoRequest(), timeout=_TIMEOUT_S)
            assert _code_of(caught) == grpc.StatusCode.INTERNAL
            assert _details_of(caught) == "internal error: RuntimeError"
    finally:
        logger.removeHandler(handler)
    # The traceback once, not once per call: a client repeating it cannot fill the log.
    assert [r.getMessage() for r in records] == ["internal error answering GetInfo (logged once)"]
    assert records[0].exc_info is not None


def test_the_frame_counts_answers_and_failures(answerer: Answerer) -> None:
    metrics = Metrics()
    servicer = LookupServicer(max_message_bytes=1 << 20, metrics=metrics)
    context: Any = _Context()
    with pytest.raises(_Aborted):
        servicer.LookupPacked(pb.PackedLookupRequest(), context)
    assert context.aborted == (grpc.StatusCode.UNAVAILABLE, "data not loaded yet")
    servicer.load(answerer)
    packed = pb.PackedLookupRequest(ipv4=_packed_v4([_OK_V4, "10.0.0.1"]))
    assert servicer.LookupPacked(packed, _context()).ipv4_countries == b"AU--"
    assert list(servicer.Lookup(pb.LookupRequest(addresses=[_OK_V4]), _context()).countries) == [
        "AU"
    ]
    streamed = servicer.StreamLookup(iter([packed, packed]), _context())
    assert [r.ipv4_countries for r in streamed] == [b"AU--", b"AU--"]
    assert answerer.policies is not None
    name = sorted(answerer.policies.names)[0]
    checked = servicer.CheckRegion(pb.CheckRegionRequest(policy=name, addresses=["x"]), _context())
    assert list(checked.reasons) == [pb.REASON_INVALID]
    context = _Context()
    with pytest.raises(_Aborted):
        servicer.CheckRegion(pb.CheckRegionRequest(policy="nope"), context)
    assert context.aborted is not None
    assert context.aborted[0] == grpc.StatusCode.NOT_FOUND
    assert servicer.GetInfo(pb.GetInfoRequest(), _context()).max_message_bytes == 1 << 20

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    requests = "lookupd_requests_total"
    assert sample(requests, rpc="LookupPacked", code="UNAVAILABLE") == 1
    assert sample(requests, rpc="LookupPacked", code="OK") == 1
    assert sample(requests, rpc="Lookup", code="OK") == 1
    assert sample(requests, rpc="StreamLookup", code="OK") == 2
    assert sample(requests, rpc="CheckRegion", code="OK") == 1
    assert sample(requests, rpc="CheckRegion", code="NOT_FOUND") == 1
    assert sample(requests, rpc="GetInfo", code="OK") == 1
    addresses = "lookupd_addresses_total"
    assert sample(addresses, rpc="LookupPacked", status="ok") == 1
    assert sample(addresses, rpc="LookupPacked", status="reserved") == 1
    assert sample(addresses, rpc="StreamLookup", status="reserved") == 2
    assert sample(addresses, rpc="Lookup", status="ok") == 1
    assert sample("lookupd_batch_size_count", rpc="CheckRegion") == 1
    assert sample("lookupd_request_duration_seconds_count", rpc="LookupPacked") == 2
