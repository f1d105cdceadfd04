"""scan_fields / parse_fields: addresses read straight from a serialized LookupRequest."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
from conftest import PARSE_CORES
from hypothesis import example, given
from hypothesis import strategies as st

from lookupd.codes import Status
from lookupd.core._parse_py import parse_many
from lookupd.v1 import lookup_pb2 as pb

_FIELD = 1  # LookupRequest.addresses

_addresses = st.lists(
    st.one_of(
        st.ip_addresses().map(str),
        st.text(max_size=50),
        st.sampled_from(["", " 1.1.1.1", "1.1.1.1 ", "::ffff:1.2.3.4", "01.1.1.1", "::"]),
    ),
    max_size=40,
)


def _parsed(core: ModuleType, message: bytes, count: int) -> tuple[list[int], list[int], int]:
    keys = np.zeros((count, 2), dtype=np.uint64)
    status = np.zeros(count, dtype=np.uint8)
    invalid = core.parse_fields(message, _FIELD, keys, status)
    return keys.ravel().tolist(), status.tolist(), invalid


@pytest.mark.parametrize("core", PARSE_CORES, ids=lambda m: m.__name__.rsplit(".")[-1])
@given(_addresses)
@example(["1.1.1.1", "bad", "2001:db8::1"])
@example([])
def test_fields_parse_as_parse_many_parses_the_list(core: ModuleType, items: list[str]) -> None:
    message = pb.LookupRequest(addresses=items).SerializeToString()
    assert core.scan_fields(message, _FIELD) == (len(items), 0)
    keys, status, invalid = _parsed(core, message, len(items))
    want_keys = np.zeros((len(items), 2), dtype=np.uint64)
    want_status = np.zeros(len(items), dtype=np.uint8)
    # protobuf sends the UTF-8 bytes of each str: parse_many on bytes is the reference.
    want_invalid = parse_many([item.encode() for item in items], want_keys, want_status)
    assert (keys, status, invalid) == (
        want_keys.ravel().tolist(),
        want_status.tolist(),
        want_invalid,
    )


@pytest.mark.parametrize("core", PARSE_CORES, ids=lambda m: m.__name__.rsplit(".")[-1])
def test_other_fields_are_counted_not_parsed(core: ModuleType) -> None:
    message = pb.LookupRequest(
        addresses=["1.1.1.1", "::1"], include_subdivisions=True
    ).SerializeToString()
    assert core.scan_fields(message, _FIELD) == (2, 1)
    # Fields in any order, unknown ones of every wire type skipped.
    unknown = bytes([0x28, 0x96, 0x01, 0x31]) + bytes(8) + bytes([0x3D]) + bytes(4)
    unknown += bytes([0x42, 0x02]) + b"xy"
    mixed = unknown + message + unknown
    assert core.scan_fields(mixed, _FIELD) == (2, 9)
    keys, status, invalid = _parsed(core, mixed, 2)
    assert keys == [0, 0xFFFF_0101_0101, 0, 1]
    assert status == [Status.OK, Status.OK]
    assert invalid == 0


@pytest.mark.parametrize("core", PARSE_CORES, ids=lambda m: m.__name__.rsplit(".")[-1])
@pytest.mark.parametrize(
    "message",
    [
        b"\x0a",  # a tag, no length
        b"\x0a\x05abc",  # a length past the end
        b"\x0a\xff",  # a truncated varint
        b"\x0a" + b"\xff" * 11,  # a varint over 10 bytes
        b"\x00\x01",  # field number 0
        b"\x08\x01",  # the addresses field as a varint
        b"\x0b",  # a group
        b"\x0e",  # wire type 6
        b"\x11\x00",  # a 64-bit field cut short
        b"\x15\x00\x00",  # a 32-bit field cut short
    ],
)
def test_malformed_messages_are_refused(core: ModuleType, message: bytes) -> None:
    assert core.scan_fields(message, _FIELD) == (-1, -1)
    with pytest.raises(ValueError, match="not well-formed"):
        core.parse_fields(message, _FIELD, np.zeros((0, 2), np.uint64), np.zeros(0, np.uint8))


@pytest.mark.parametrize("core", PARSE_CORES, ids=lambda m: m.__name__.rsplit(".")[-1])
@given(st.binary(max_size=200))
def test_any_bytes_are_safe_and_both_cores_agree(core: ModuleType, message: bytes) -> None:
    from lookupd.core import _parse_py

    counted = core.scan_fields(message, _FIELD)
    assert counted == _parse_py.scan_fields(message, _FIELD)
    if counted[0] >= 0:
        assert _parsed(core, message, counted[0]) == _parsed(_parse_py, message, counted[0])


@pytest.mark.parametrize("core", PARSE_CORES, ids=lambda m: m.__name__.rsplit(".")[-1])
def test_outputs_must_fit(core: ModuleType) -> None:
    message = pb.LookupRequest(addresses=["1.1.1.1", "::1"]).SerializeToString()
    with pytest.raises(ValueError, match="keys has 3 rows but there are 2 fields"):
        core.parse_fields(message, _FIELD, np.zeros((3, 2), np.uint64), np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="status has 1 entries but there are 2 fields"):
        core.parse_fields(message, _FIELD, np.zeros((2, 2), np.uint64), np.zeros(1, np.uint8))
