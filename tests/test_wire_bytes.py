"""Malformed wire bytes, invalid UTF-8, oversized and hostile requests, over real sockets.

Every RPC refuses bytes that are not its message with INVALID_ARGUMENT (never INTERNAL),
counts the refusal, and logs it as one rate-limited structured line; a batch over the limit
is refused before it is decoded; a client's text is echoed back cut short.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st
from served import start_serve

import lookupd
from lookupd.core import _parse
from lookupd.policies import example_policies_path, load_policies
from lookupd.server.answers import Answerer
from lookupd.server.app import LookupServer, ServerConfig
from lookupd.server.metrics import Metrics
from lookupd.v1 import lookup_pb2 as pb

_TIMEOUT_S = 20.0
_LIMIT = 1_000
_GARBAGE = b"\xff\xff"
_LOOKUP = "/lookupd.v1.LookupService/"
_HEALTH = "/grpc.health.v1.Health/"
_REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
_RELOAD = "/lookupd.v1.AdminService/Reload"
# Every RPC the server answers: (full method, its rpc label, client streams, server streams).
_METHODS = [
    (_LOOKUP + "Lookup", "Lookup", False, False),
    (_LOOKUP + "LookupPacked", "LookupPacked", False, False),
    (_LOOKUP + "StreamLookup", "StreamLookup", True, True),
    (_LOOKUP + "CheckRegion", "CheckRegion", False, False),
    (_LOOKUP + "GetInfo", "GetInfo", False, False),
    (_RELOAD, "Reload", False, False),
    (_HEALTH + "Check", "Check", False, False),
    (_HEALTH + "Watch", "Watch", False, True),
    (_REFLECTION, "ServerReflectionInfo", True, True),
]
_BAD_UTF8 = b"\xff\xfe1.1.1.1"


@dataclass(frozen=True, slots=True)
class _Running:
    server: LookupServer
    channel: grpc.Channel
    metrics: Metrics


@pytest.fixture(scope="module")
def running() -> Iterator[_Running]:
    """A server allowing 1,000 addresses per request, with metrics."""
    answerer = Answerer.load(
        lookupd.open(), load_policies(example_policies_path()), max_batch=_LIMIT
    )
    metrics = Metrics()
    config = ServerConfig(host="127.0.0.1", port=0, max_batch=_LIMIT)
    server = LookupServer(config, metrics=metrics).start()
    server.load(answerer)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield _Running(server, channel, metrics)
    channel.close()
    server.stop(0)


def _raw_call(
    channel: grpc.Channel, method: str, data: bytes, streams: tuple[bool, bool] = (False, False)
) -> tuple[grpc.StatusCode, str]:
    """Send ``data`` as they are (no serializer) and return the call's status."""
    kinds: dict[tuple[bool, bool], Any] = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, True): channel.stream_stream,
    }
    call = kinds[streams](method)
    try:
        if streams[0]:
            list(call(iter([data]), timeout=_TIMEOUT_S))
        elif streams[1]:
            list(call(data, timeout=_TIMEOUT_S))
        else:
            call(data, timeout=_TIMEOUT_S)
    except grpc.RpcError as exc:
        error: Any = exc
        return error.code(), str(error.details() or "")
    return grpc.StatusCode.OK, ""


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (number below 16, payload below 128 bytes)."""
    return bytes([number << 3 | 2, len(payload)]) + payload


def _lookup_request(items: list[bytes], *, subdivisions: bool = False) -> bytes:
    return b"".join(_field(1, item) for item in items) + (b"\x10\x01" if subdivisions else b"")


# ---------------------------------------------------------------------------------------
# Malformed bytes


@pytest.mark.parametrize(("method", "rpc", "client_streams", "server_streams"), _METHODS)
def test_malformed_bytes_are_invalid_argument_and_counted(
    running: _Running, method: str, rpc: str, client_streams: bool, server_streams: bool
) -> None:
    def refused() -> float:
        value = running.metrics.registry.get_sample_value(
            "lookupd_requests_total", {"rpc": rpc, "code": "INVALID_ARGUMENT"}
        )
        return value or 0.0

    before = refused()
    code, details = _raw_call(running.channel, method, _GARBAGE, (client_streams, server_streams))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("malformed ")
    assert details.endswith(": not protobuf wire format")
    assert refused() == before + 1


def test_a_malformed_message_after_good_ones_ends_the_stream(running: _Running) -> None:
    good = pb.PackedLookupRequest(ipv4=bytes([1, 1, 1, 1]), tag=7).SerializeToString()
    call: Any = running.channel.stream_stream(_LOOKUP + "StreamLookup")
    answers = []
    with pytest.raises(grpc.RpcError) as caught:
        answers.extend(call(iter([good, good, _GARBAGE]), timeout=_TIMEOUT_S))
    assert [pb.PackedLookupResponse.FromString(a).tag for a in answers] == [7, 7]
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_other_services_still_answer_good_requests(running: _Running) -> None:
    check: Any = running.channel.unary_unary(_HEALTH + "Check")
    assert check(b"", timeout=_TIMEOUT_S) is not None  # HealthCheckRequest(), SERVING
    code, details = _raw_call(running.channel, _RELOAD, b"")
    assert code == grpc.StatusCode.PERMISSION_DENIED  # decoded, then refused: admin is off
    assert "admin RPCs are off" in details


# ---------------------------------------------------------------------------------------
# Invalid UTF-8: the whole request is refused, on every path


@pytest.mark.parametrize(
    "message",
    [
        _lookup_request([_BAD_UTF8]),  # decoded, answered one by one
        _lookup_request([b"1.1.1.1"] * 7 + [_BAD_UTF8]),  # 8: still one by one
        _lookup_request([b"1.1.1.1"] * 8 + [_BAD_UTF8]),  # 9: read in place
        _lookup_request([_BAD_UTF8] + [b"8.8.8.8"] * 99),  # read in place
        _lookup_request([b"1.1.1.1"] * 20 + [_BAD_UTF8], subdivisions=True),  # decoded
    ],
    ids=["1", "8", "9", "100", "subdivisions"],
)
def test_invalid_utf8_in_an_address_refuses_a_lookup(running: _Running, message: bytes) -> None:
    code, details = _raw_call(running.channel, _LOOKUP + "Lookup", message)
    assert (code, details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "malformed LookupRequest: a string field is not valid UTF-8",
    )


@pytest.mark.parametrize(
    "message",
    [
        _field(1, b"eu-only") + _field(2, _BAD_UTF8),
        _field(1, b"eu-only") + _field(2, b"1.1.1.1") * 20 + _field(2, _BAD_UTF8),
        _field(1, b"eu-\xff") + _field(2, b"1.1.1.1"),
    ],
    ids=["address", "address-of-21", "policy"],
)
def test_invalid_utf8_refuses_a_check(running: _Running, message: bytes) -> None:
    code, details = _raw_call(running.channel, _LOOKUP + "CheckRegion", message)
    assert (code, details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "malformed CheckRegionRequest: a string field is not valid UTF-8",
    )


@pytest.mark.parametrize("count", [1, 9, 100])
def test_invalid_but_well_encoded_addresses_are_answered_one_by_one(
    running: _Running, count: int
) -> None:
    # Not addresses, but valid UTF-8 (non-ASCII, and one long enough for a 2-byte length):
    # each gets INVALID_ADDRESS and the batch is answered.
    items = ["é", "x" * 200, *["1.1.1.1"] * (count - 2)][:count]
    call: Any = running.channel.unary_unary(
        _LOOKUP + "Lookup",
        request_serializer=pb.LookupRequest.SerializeToString,
        response_deserializer=pb.LookupResponse.FromString,
    )
    response = call(pb.LookupRequest(addresses=items), timeout=_TIMEOUT_S)
    want = [pb.STATUS_INVALID_ADDRESS, pb.STATUS_INVALID_ADDRESS, pb.STATUS_OK][: min(count, 3)]
    assert list(response.status)[:3] == want
    assert len(response.status) == count


# ---------------------------------------------------------------------------------------
# Oversized requests: counted before they are decoded


@pytest.mark.parametrize(
    ("method", "message"),
    [
        # Addresses protobuf could not even decode (invalid UTF-8): decoding first would say
        # so; counting first says the batch is over the limit.
        ("Lookup", _lookup_request([_BAD_UTF8] * (_LIMIT + 1), subdivisions=True)),
        ("Lookup", _lookup_request([b""] * (_LIMIT + 1))),
        ("CheckRegion", _field(1, b"nope") + _field(2, _BAD_UTF8) * (_LIMIT + 1)),
    ],
    ids=["lookup-subdivisions", "lookup", "check"],
)
def test_a_batch_over_the_limit_is_refused_before_it_is_decoded(
    running: _Running, method: str, message: bytes
) -> None:
    code, details = _raw_call(running.channel, _LOOKUP + method, message)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("batch of 1,001 addresses is over the limit of 1,000")


# ---------------------------------------------------------------------------------------
# A client's text is quoted back cut short


def test_an_unknown_policy_name_is_quoted_cut_short(running: _Running) -> None:
    name = "p" * 20_000  # longer than the client's limit on a status message
    call: Any = running.channel.unary_unary(
        _LOOKUP + "CheckRegion",
        request_serializer=pb.CheckRegionRequest.SerializeToString,
        response_deserializer=pb.CheckRegionResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as caught:
        call(pb.CheckRegionRequest(policy=name, addresses=["1.1.1.1"]), timeout=_TIMEOUT_S)
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.NOT_FOUND
    details = str(error.details())
    assert details.startswith(f"no policy named {'p' * 100!r}... (20,000 characters); known")
    assert "eu-only" in details
    assert len(details) < 300


# ---------------------------------------------------------------------------------------
# The wire-format scanner counts what protobuf decodes


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Fields other than the counted one: (number, wire type, payload), encoded on the wire.
_other_fields = st.lists(
    st.one_of(
        st.tuples(st.integers(2, 40), st.just(0), st.integers(0, 2**64 - 1).map(_varint)),
        st.tuples(st.integers(2, 40), st.just(1), st.binary(min_size=8, max_size=8)),
        st.tuples(st.integers(2, 40), st.just(5), st.binary(min_size=4, max_size=4)),
        st.tuples(st.integers(3, 40), st.just(2), st.binary(max_size=300)),
    ),
    max_size=6,
)
_addresses = st.lists(st.text(max_size=150), max_size=30)


@given(_addresses, st.booleans(), _other_fields, st.randoms(use_true_random=False))
def test_the_scanner_counts_the_addresses_protobuf_decodes(
    addresses: list[str], subdivisions: bool, others: list[tuple[int, int, bytes]], rng: Any
) -> None:
    fields = [
        _varint(1 << 3 | 2) + _varint(len(item.encode())) + item.encode() for item in addresses
    ]
    if subdivisions:
        fields.append(b"\x10\x01")
    for number, wire, payload in others:
        length = _varint(len(payload)) if wire == 2 else b""
        fields.append(_varint(number << 3 | wire) + length + payload)
    rng.shuffle(fields)
    message = b"".join(fields)
    decoded = pb.LookupRequest.FromString(message)
    count, extra = _parse.scan_fields(message, 1)
    assert count == len(decoded.addresses) == len(addresses)
    assert extra == len(fields) - len(addresses)


@given(st.binary(max_size=400))
def test_on_any_bytes_the_scanner_agrees_with_protobuf(message: bytes) -> None:
    count, _ = _parse.scan_fields(message, 1)
    try:
        decoded = pb.LookupRequest.FromString(message)
    except DecodeError:
        return
    # Where protobuf decodes, the scanner counts the same; it refuses only what no lookupd
    # client sends (groups, the addresses field with another wire type).
    assert count in (-1, len(decoded.addresses))


# ---------------------------------------------------------------------------------------
# A real server's log under a burst of malformed calls


_BURST_CALLS = 1_000
_BURST_S = 2.0
# (method, request bytes): malformed bytes to five RPCs, and a well-formed admin call a
# server without admin refuses (each logged as admin_denied).
_BURST = [
    (_LOOKUP + "LookupPacked", _GARBAGE),
    (_LOOKUP + "CheckRegion", _GARBAGE),
    (_LOOKUP + "GetInfo", _GARBAGE),
    (_RELOAD, _GARBAGE),
    (_HEALTH + "Check", _GARBAGE),
    (_RELOAD, b""),
]


def test_a_burst_of_refused_calls_writes_a_few_structured_lines(tmp_path: Path) -> None:
    served = start_serve(tmp_path, "--workers", "1", "--log-format", "json")
    try:
        channel = grpc.insecure_channel(served.target)
        grpc.channel_ready_future(channel).result(timeout=_TIMEOUT_S)
        codes = set()
        deadline = time.monotonic() + _BURST_S
        sent = 0
        with futures.ThreadPoolExecutor(4) as pool:
            while sent < _BURST_CALLS and time.monotonic() < deadline:
                batch = [
                    pool.submit(_raw_call, channel, *_BURST[i % len(_BURST)])
                    for i in range(sent, sent + 60)
                ]
                codes |= {f.result()[0] for f in batch}
                sent += len(batch)
        channel.close()
        assert codes == {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED}
    finally:
        assert served.stop() == 0
    lines = served.log_text().splitlines()
    # Every line is one JSON object: no traceback, no plain text from gRPC.
    records = [json.loads(line) for line in lines]
    refused = [r for r in records if r.get("event") == "bad_request"]
    # The first of each kind (one per RPC), the rest held for the minute's summary.
    assert sorted(r["rpc"] for r in refused) == sorted(
        method.rsplit("/", 1)[1] for method, data in _BURST if data
    )
    assert all(r["error"].endswith("not protobuf wire format") for r in refused)
    assert len([r for r in records if r.get("event") == "admin_denied"]) == 1
    assert len(lines) < 30
