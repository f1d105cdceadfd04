"""The Python API: ``lookupd.open``, ``Database.lookup*`` and ``LookupResult``.

Small hand-made tables pin edges and gaps exactly; the embedded data checks that every
input kind agrees with every other on real, dense tables.
"""

from __future__ import annotations

import copy
import gzip
import ipaddress
import json
import pickle
import re
import threading
import zipfile
from bisect import bisect_right
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from reference import ReferenceRanges

import lookupd
from lookupd import Database, LookupResult, RangeTable, Status
from lookupd.core import reserved
from lookupd.core.table import build_table
from lookupd.datafiles.npz import save_compiled

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Row = tuple[str, str, str]

# 2**32 - 1: last IPv4 address; (1 << 128) - 1: last IPv6 address.
_IPV4_MAX = 0xFFFF_FFFF
_IPV6_MAX = (1 << 128) - 1
_U64_MASK = (1 << 64) - 1
_SEED = 20240611

# ---------------------------------------------------------------------------------------
# A hand-made database: every kind of edge, with its expected answers written out.

_LABELS = ("", "AA", "BB", "CC", "ZZ")
_V4_ROWS: list[Row] = [
    ("0.0.0.0", "0.0.0.255", "AA"),  # the first address
    ("1.0.0.0", "1.0.0.255", "BB"),
    ("1.0.1.0", "1.0.1.255", "CC"),  # adjacent to the previous range
    ("10.0.0.0", "10.255.255.255", "AA"),
    ("10.1.0.0", "10.1.0.255", "BB"),  # nested: the narrower range wins
    ("255.255.255.0", "255.255.255.255", "CC"),  # the last address
]
_V6_ROWS: list[Row] = [
    ("::", "::ff", "AA"),  # the first address
    ("::1:0:0", "::1:ffff:ffff", "CC"),  # 2**32 .. 2**33 - 1: ints just past IPv4
    # Never answered: IPv4-mapped addresses are looked up in the IPv4 table.
    ("::ffff:0:0", "::ffff:ffff:ffff", "ZZ"),
    ("2001:db8::", "2001:db8::ffff", "BB"),
    ("2001:db8::1:0", "2001:db8::1:ffff", "CC"),  # adjacent to the previous range
    ("2001:db9::ffff:ffff:ffff:ff00", "2001:db9:0:1::ff", "AA"),  # crosses the 64-bit halves
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "AA"),
]

# (address, expected country): edges of every range, the gaps next to them, and the
# IPv4-mapped block, which must follow the IPv4 table and never the v6 "ZZ" range.
_EDGE_CASES: list[tuple[str, str | None]] = [
    ("0.0.0.0", "AA"),
    ("0.0.0.255", "AA"),
    ("0.0.1.0", None),
    ("0.255.255.255", None),
    ("1.0.0.0", "BB"),
    ("1.0.0.255", "BB"),
    ("1.0.1.0", "CC"),
    ("1.0.1.255", "CC"),
    ("1.0.2.0", None),
    ("9.255.255.255", None),
    ("10.0.0.0", "AA"),
    ("10.0.255.255", "AA"),
    ("10.1.0.0", "BB"),
    ("10.1.0.255", "BB"),
    ("10.1.1.0", "AA"),
    ("10.255.255.255", "AA"),
    ("11.0.0.0", None),
    ("255.255.254.255", None),
    ("255.255.255.0", "CC"),
    ("255.255.255.255", "CC"),
    ("::", "AA"),
    ("::ff", "AA"),
    ("::100", None),
    ("::1.0.0.1", None),  # IPv4-compatible, not IPv4-mapped: an IPv6 address
    ("::ffff:ffff", None),
    ("::1:0:0", "CC"),
    ("::1:ffff:ffff", "CC"),
    ("::2:0:0", None),
    ("::fffe:ffff:ffff", None),  # just below the mapped block
    ("::ffff:0.0.0.0", "AA"),
    ("::ffff:0.0.1.0", None),  # a gap in IPv4, even though the v6 table says ZZ here
    ("::ffff:1.0.0.1", "BB"),
    ("::ffff:100:1", "BB"),  # the same address, hex form
    ("::FFFF:1.0.1.7", "CC"),
    ("::ffff:255.255.255.255", "CC"),
    ("::1:0:0:0", None),  # just above the mapped block
    ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ("2001:db8::", "BB"),
    ("2001:db8::ffff", "BB"),
    ("2001:db8::1:0", "CC"),
    ("2001:DB8::1:FFFF", "CC"),
    ("2001:db8::2:0", None),
    ("2001:db9::ffff:ffff:ffff:feff", None),
    ("2001:db9::ffff:ffff:ffff:ff00", "AA"),
    ("2001:db9::ffff:ffff:ffff:ffff", "AA"),
    ("2001:db9:0:1::", "AA"),
    ("2001:db9:0:1::ff", "AA"),
    ("2001:db9:0:1::100", None),
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:feff", None),
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00", "AA"),
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "AA"),
]

_INVALID = [
    "",
    " ",
    "1.2.3",
    "1.2.3.256",
    "1.2.3.4.5",
    "::g",
    "1:2:3:4:5:6:7:8:9",
    "x",
    "1.1.1.1 x",
]


def _int_rows(rows: list[Row]) -> list[tuple[int, int, str]]:
    return [
        (int(ipaddress.ip_address(a)), int(ipaddress.ip_address(b)), label) for a, b, label in rows
    ]


def _build_database(v4_rows: list[Row], v6_rows: list[Row]) -> Database:
    v4 = _int_rows(v4_rows)
    v6 = _int_rows(v6_rows)
    # The edges above sit in reserved space (0.0.0.0, 10/8, ::, 2001:db8::/32): these tests
    # check the tables' own answers there; tests/test_reserved.py checks RESERVED.
    return Database(
        build_table(4, [r[0] for r in v4], [r[1] for r in v4], [_LABELS.index(r[2]) for r in v4]),
        build_table(6, [r[0] for r in v6], [r[1] for r in v6], [_LABELS.index(r[2]) for r in v6]),
        _LABELS,
        mark_reserved=False,
    )


@pytest.fixture(scope="module")
def small_db() -> Database:
    """The hand-made database above."""
    return _build_database(_V4_ROWS, _V6_ROWS)


@pytest.fixture(scope="module")
def embedded_db() -> Database:
    """The data shipped with the package."""
    return lookupd.open()


def _model_answer(address: IPAddress) -> str | None:
    """The answer of the row-scanning model in tests/reference.py."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    rows = _V4_ROWS if address.version == 4 else _V6_ROWS
    return ReferenceRanges(_int_rows(rows)).label_at(int(address))


def _edge_addresses() -> list[IPAddress]:
    """Every row's edges and outside neighbours, in both families, plus mapped twins."""
    found: list[IPAddress] = []
    for rows, last, make in (
        (_V4_ROWS, _IPV4_MAX, ipaddress.IPv4Address),
        (_V6_ROWS, _IPV6_MAX, ipaddress.IPv6Address),
    ):
        edges = ReferenceRanges(_int_rows(rows)).edges() | {0, last}
        found.extend(make(p) for p in sorted(edges) if 0 <= p <= last)
    mapped = [ipaddress.IPv6Address(f"::ffff:{a}") for a in found if a.version == 4]
    return found + mapped


def _split(address: int) -> tuple[int, int]:
    return address >> 64, address & _U64_MASK


def _as_key(address: IPAddress) -> int:
    """The 128-bit key lookupd uses: IPv4 a.b.c.d is ::ffff:a.b.c.d."""
    if address.version == 4:
        return int(ipaddress.IPv6Address(f"::ffff:{address}"))
    return int(address)


def _assert_statuses(
    result: LookupResult,
    expected: list[str | None],
    invalid: set[int],
    reserved: frozenset[int] = frozenset(),
) -> None:
    want = [
        Status.INVALID_ADDRESS
        if i in invalid
        else Status.RESERVED
        if i in reserved
        else Status.NOT_FOUND
        if code is None
        else Status.OK
        for i, code in enumerate(expected)
    ]
    assert result.status.tolist() == [int(s) for s in want]


# ---------------------------------------------------------------------------------------
# Hand-made tables: every input kind gives the expected answers.


@pytest.mark.parametrize(("address", "expected"), _EDGE_CASES, ids=[a for a, _ in _EDGE_CASES])
def test_lookup_one_edges(small_db: Database, address: str, expected: str | None) -> None:
    assert small_db.lookup_one(address) == expected
    assert small_db.lookup_one(address.encode()) == expected
    assert small_db.lookup_one(ipaddress.ip_address(address)) == expected


def test_edge_table_agrees_with_model() -> None:
    """Guard the hand-written expectations themselves against the reference model."""
    for address, expected in _EDGE_CASES:
        assert _model_answer(ipaddress.ip_address(address)) == expected, address


def test_lookup_list_of_edges_matches_model(small_db: Database) -> None:
    addresses = _edge_addresses()
    result = small_db.lookup([str(a) for a in addresses])
    expected = [_model_answer(a) for a in addresses]
    assert result.countries() == expected
    _assert_statuses(result, expected, set())


_BatchMaker = Callable[[list[str]], object]

_TEXT_BATCHES: dict[str, _BatchMaker] = {
    "list-str": lambda texts: list(texts),
    "tuple-str": lambda texts: tuple(texts),
    "list-bytes": lambda texts: [t.encode() for t in texts],
    "mixed-str-bytes": lambda texts: [t.encode() if i % 2 else t for i, t in enumerate(texts)],
    "generator": lambda texts: (t for t in texts),
    "iterator": lambda texts: iter(list(texts)),
}


@pytest.mark.parametrize("kind", list(_TEXT_BATCHES))
def test_lookup_text_batches(small_db: Database, kind: str) -> None:
    texts = [a for a, _ in _EDGE_CASES]
    result = small_db.lookup(_TEXT_BATCHES[kind](texts))  # type: ignore[arg-type]
    expected = [e for _, e in _EDGE_CASES]
    assert len(result) == len(texts)
    assert result.countries() == expected
    _assert_statuses(result, expected, set())


def test_invalid_items_do_not_affect_neighbours(small_db: Database) -> None:
    # Every valid address is followed by an invalid one, so each invalid item sits between
    # two valid neighbours whose answers must not change.
    texts: list[str] = []
    expected: list[str | None] = []
    invalid_at: set[int] = set()
    for i, (address, answer) in enumerate(_EDGE_CASES):
        texts.append(address)
        expected.append(answer)
        bad = _INVALID[i % len(_INVALID)]
        invalid_at.add(len(texts))
        texts.append(bad)
        expected.append(None)
    for batch in (texts, [t.encode() for t in texts]):
        result = small_db.lookup(batch)
        assert result.countries() == expected
        _assert_statuses(result, expected, invalid_at)
        assert np.flatnonzero(result.invalid).tolist() == sorted(invalid_at)
        assert result.labels[result.invalid].tolist() == [0] * len(invalid_at)


@pytest.mark.parametrize("bad", [*_INVALID, "\x00", "1.1.1.1\x00", "\u00e9", "::ffff:1.2.3.256"])
def test_invalid_item_alone_and_between(small_db: Database, bad: str) -> None:
    result = small_db.lookup(["1.0.0.1", bad, "2001:db8::1"])
    assert result.status.tolist() == [Status.OK, Status.INVALID_ADDRESS, Status.OK]
    assert result.countries() == ["BB", None, "BB"]
    assert result.invalid.tolist() == [False, True, False]


def test_lookup_bytes_that_are_not_utf8_is_invalid(small_db: Database) -> None:
    result = small_db.lookup([b"1.0.0.1", b"\xff\xfe1.0.0.1", b"\x80"])
    assert result.status.tolist() == [Status.OK, Status.INVALID_ADDRESS, Status.INVALID_ADDRESS]


def _v4_edges() -> list[ipaddress.IPv4Address]:
    return [a for a in _edge_addresses() if isinstance(a, ipaddress.IPv4Address)]


def _v6_edges() -> list[ipaddress.IPv6Address]:
    return [a for a in _edge_addresses() if isinstance(a, ipaddress.IPv6Address)]


def test_lookup_uint32_array(small_db: Database) -> None:
    addresses = _v4_edges()
    keys = np.array([int(a) for a in addresses], dtype=np.uint32)
    expected = [_model_answer(a) for a in addresses]
    result = small_db.lookup(keys)
    assert result.countries() == expected
    _assert_statuses(result, expected, set())
    assert result.labels.dtype == np.uint16
    assert result.status.dtype == np.uint8


def test_lookup_uint32_array_non_contiguous_and_read_only(small_db: Database) -> None:
    addresses = _v4_edges()
    keys = np.array([int(a) for a in addresses], dtype=np.uint32)
    keys.flags.writeable = False
    expected = [_model_answer(a) for a in addresses]
    for view, want in ((keys[::2], expected[::2]), (keys[1::3], expected[1::3])):
        assert not view.flags.c_contiguous
        assert small_db.lookup(view).countries() == want
    reversed_view = keys[::-1]
    assert small_db.lookup(reversed_view).countries() == expected[::-1]
    assert small_db.lookup(keys).countries() == expected


def test_lookup_uint64_pairs(small_db: Database) -> None:
    addresses = _v6_edges()
    pairs = np.array([_split(int(a)) for a in addresses], dtype=np.uint64)
    expected = [_model_answer(a) for a in addresses]
    result = small_db.lookup(pairs)
    assert result.countries() == expected
    _assert_statuses(result, expected, set())


def test_lookup_uint64_pairs_non_contiguous_and_read_only(small_db: Database) -> None:
    addresses = _v6_edges()
    pairs = np.array([_split(int(a)) for a in addresses], dtype=np.uint64)
    pairs.flags.writeable = False
    expected = [_model_answer(a) for a in addresses]
    assert small_db.lookup(pairs[::2]).countries() == expected[::2]
    fortran = np.asfortranarray(pairs)
    assert not fortran.flags.c_contiguous
    assert small_db.lookup(fortran).countries() == expected


def test_lookup_uint64_pairs_of_ipv4_mapped_use_the_ipv4_table(small_db: Database) -> None:
    addresses = _v4_edges()
    pairs = np.array([_split(_as_key(a)) for a in addresses], dtype=np.uint64)
    result = small_db.lookup(pairs)
    assert result.countries() == [_model_answer(a) for a in addresses]
    assert "ZZ" not in result.countries()


_PACKERS: dict[str, Callable[[bytes], bytes | bytearray | memoryview]] = {
    "bytes": lambda b: b,
    "bytearray": bytearray,
    "memoryview": memoryview,
}


@pytest.mark.parametrize("packer", list(_PACKERS))
def test_lookup_packed_ipv4(small_db: Database, packer: str) -> None:
    addresses = _v4_edges()
    buffer = _PACKERS[packer](b"".join(a.packed for a in addresses))
    expected = [_model_answer(a) for a in addresses]
    result = small_db.lookup(buffer, version=4)
    assert result.countries() == expected
    _assert_statuses(result, expected, set())


@pytest.mark.parametrize("packer", list(_PACKERS))
def test_lookup_packed_ipv6_including_mapped(small_db: Database, packer: str) -> None:
    addresses = _v6_edges()
    assert any(a.ipv4_mapped is not None for a in addresses)
    buffer = _PACKERS[packer](b"".join(a.packed for a in addresses))
    expected = [_model_answer(a) for a in addresses]
    result = small_db.lookup(buffer, version=6)
    assert result.countries() == expected
    _assert_statuses(result, expected, set())


def test_lookup_packed_memoryview_slice(small_db: Database) -> None:
    addresses = [ipaddress.IPv4Address(a) for a in ("1.0.0.1", "1.0.1.1", "0.0.1.0")]
    raw = b"\x00\x00" + b"".join(a.packed for a in addresses) + b"\x00"
    view = memoryview(raw)[2:-1]
    assert small_db.lookup(view, version=4).countries() == ["BB", "CC", None]


_EMPTY_BATCHES: dict[str, Callable[[], tuple[object, dict[str, int]]]] = {
    "list": lambda: ([], {}),
    "tuple": lambda: ((), {}),
    "generator": lambda: ((str(x) for x in range(0)), {}),
    "uint32": lambda: (np.empty(0, dtype=np.uint32), {}),
    "uint64-pairs": lambda: (np.empty((0, 2), dtype=np.uint64), {}),
    "bytes-v4": lambda: (b"", {"version": 4}),
    "bytes-v6": lambda: (b"", {"version": 6}),
    "bytearray-v4": lambda: (bytearray(), {"version": 4}),
    "memoryview-v6": lambda: (memoryview(b""), {"version": 6}),
}


@pytest.mark.parametrize("kind", list(_EMPTY_BATCHES))
def test_empty_batches(small_db: Database, kind: str) -> None:
    batch, kwargs = _EMPTY_BATCHES[kind]()
    result = small_db.lookup(batch, **kwargs)  # type: ignore[arg-type]
    assert len(result) == 0
    assert result.countries() == []
    assert result.codes().shape == (0,)
    assert result.invalid.shape == (0,)
    assert result.status.shape == (0,)


def test_lookup_lines_empty(small_db: Database) -> None:
    assert len(small_db.lookup_lines(b"")) == 0


# ---------------------------------------------------------------------------------------
# LookupResult


def test_lookup_result_accessors(small_db: Database) -> None:
    result = small_db.lookup(["1.0.0.1", "bogus", "0.0.1.0", "2001:db8::1:5", "::ff"])
    assert len(result) == 5
    assert result.countries() == ["BB", None, None, "CC", "AA"]
    codes = result.codes()
    assert codes.dtype.kind == "U"
    assert codes.tolist() == ["BB", "", "", "CC", "AA"]
    assert result.invalid.dtype == np.bool_
    assert result.invalid.tolist() == [False, True, False, False, False]
    assert result.status.tolist() == [
        Status.OK,
        Status.INVALID_ADDRESS,
        Status.NOT_FOUND,
        Status.OK,
        Status.OK,
    ]
    assert result.label_names == _LABELS
    assert [result.label_names[i] for i in result.labels.tolist()] == codes.tolist()


def test_status_values_are_stable() -> None:
    # The lookupd.v1.Status numbers (tests/test_codes.py pins every member to the proto).
    assert (Status.OK, Status.NOT_FOUND, Status.INVALID_ADDRESS) == (1, 3, 2)


# ---------------------------------------------------------------------------------------
# Errors from lookup()


def test_lookup_single_str_is_a_type_error(small_db: Database) -> None:
    with pytest.raises(TypeError, match="lookup_one"):
        small_db.lookup("1.0.0.1")


@pytest.mark.parametrize("value", [None, 5, 1.5])
def test_lookup_non_iterable_is_a_type_error(small_db: Database, value: object) -> None:
    with pytest.raises(TypeError):
        small_db.lookup(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("packer", list(_PACKERS))
def test_packed_without_version_is_a_value_error(small_db: Database, packer: str) -> None:
    with pytest.raises(ValueError, match="version=4"):
        small_db.lookup(_PACKERS[packer](bytes(8)))


def test_packed_with_unknown_version_is_a_value_error(small_db: Database) -> None:
    with pytest.raises(ValueError, match="version=6"):
        small_db.lookup(bytes(16), version=5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("version", "size", "width"), [(4, 3, 4), (4, 17, 4), (6, 4, 16), (6, 33, 16)]
)
def test_packed_of_wrong_length_is_a_value_error(
    small_db: Database, version: int, size: int, width: int
) -> None:
    with pytest.raises(ValueError, match=rf"IPv{version}\b.*\b{size} bytes.*multiple of {width}"):
        small_db.lookup(bytes(size), version=version)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "array",
    [
        np.zeros(3, dtype=np.int64),
        np.zeros(3, dtype=np.int32),
        np.zeros(3, dtype=np.uint64),
        np.zeros(3, dtype=np.float64),
        np.zeros((3, 2), dtype=np.uint32),
        np.zeros((3, 3), dtype=np.uint64),
        np.zeros((3, 2), dtype=np.int64),
        np.array(["1.0.0.1"]),
    ],
    ids=lambda a: f"{a.dtype.str}-{a.shape}",
)
def test_array_of_wrong_dtype_or_shape_is_a_type_error(
    small_db: Database, array: npt.NDArray[np.generic]
) -> None:
    with pytest.raises(TypeError, match=r"uint32 array.*\(n, 2\)"):
        small_db.lookup(array)


@pytest.mark.parametrize(
    "batch",
    [["1.0.0.1"], ("1.0.0.1",), np.array([1], dtype=np.uint32)],
    ids=["list", "tuple", "uint32"],
)
def test_version_with_non_packed_input_is_a_value_error(small_db: Database, batch: object) -> None:
    with pytest.raises(ValueError, match="version="):
        small_db.lookup(batch, version=4)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# lookup_one


def test_lookup_one_int(small_db: Database) -> None:
    assert small_db.lookup_one(0) == "AA"
    assert small_db.lookup_one(int(ipaddress.IPv4Address("1.0.0.1"))) == "BB"
    assert small_db.lookup_one(int(ipaddress.IPv4Address("0.0.1.0"))) is None
    assert small_db.lookup_one(_IPV4_MAX) == "CC"
    # Past 2**32 - 1, an int is an IPv6 address: ::1:0:0 is in the v6 "CC" range.
    assert small_db.lookup_one(_IPV4_MAX + 1) == "CC"
    assert small_db.lookup_one(int(ipaddress.IPv6Address("::2:0:0"))) is None
    assert small_db.lookup_one(int(ipaddress.IPv6Address("::ffff:1.0.0.1"))) == "BB"
    assert small_db.lookup_one(int(ipaddress.IPv6Address("2001:db8::1"))) == "BB"
    assert small_db.lookup_one(_IPV6_MAX) == "AA"


@pytest.mark.parametrize("value", [-1, 1 << 128, (1 << 128) + 5, -(1 << 200)])
def test_lookup_one_int_out_of_range(small_db: Database, value: int) -> None:
    with pytest.raises(lookupd.InvalidAddressError, match=str(value)):
        small_db.lookup_one(value)


def test_lookup_one_ipaddress_objects(small_db: Database) -> None:
    assert small_db.lookup_one(ipaddress.IPv4Address("10.1.0.7")) == "BB"
    assert small_db.lookup_one(ipaddress.IPv6Address("::ffff:10.1.0.7")) == "BB"
    assert small_db.lookup_one(ipaddress.IPv6Address("::ffff:0.0.1.0")) is None
    assert small_db.lookup_one(ipaddress.IPv6Address("2001:db8::1:1")) == "CC"


@pytest.mark.parametrize(
    "value", [*_INVALID, b"1.2.3", b"\xff", "1.0.0.1/32", None, 1.5, True, [1]]
)
def test_lookup_one_invalid(small_db: Database, value: object) -> None:
    with pytest.raises(lookupd.InvalidAddressError) as info:
        small_db.lookup_one(value)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, lookupd.LookupdError)


# ::ffff:0:0/96 as ints: the block goes to the IPv4 table, its neighbours to the IPv6 one.
_MAPPED = 0xFFFF_0000_0000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(_MAPPED - 1, None, id="below-the-block"),  # ::fffe:ffff:ffff: IPv6 gap
        pytest.param(_MAPPED, "AA", id="first-mapped"),  # ::ffff:0.0.0.0
        pytest.param(_MAPPED | 0x0100_0001, "BB", id="mapped-1.0.0.1"),
        pytest.param(_MAPPED | 0x0001_0000, None, id="mapped-gap"),  # never the v6 "ZZ" row
        pytest.param(_MAPPED | _IPV4_MAX, "CC", id="last-mapped"),  # ::ffff:255.255.255.255
        pytest.param(_MAPPED + (1 << 32), None, id="above-the-block"),  # ::1:0:0:0
    ],
)
def test_lookup_one_int_at_the_mapped_block(
    small_db: Database, value: int, expected: str | None
) -> None:
    assert small_db.lookup_one(value) == expected
    assert small_db.lookup_one(str(ipaddress.IPv6Address(value))) == expected


class _Text(str):
    """A str subclass."""

    __slots__ = ()


class _Bytes(bytes):
    """A bytes subclass."""


@pytest.mark.parametrize(
    "make",
    [
        str,
        _Text,
        lambda text: text.encode(),
        lambda text: _Bytes(text.encode()),
        lambda text: bytearray(text.encode()),
    ],
    ids=["str", "str-subclass", "bytes", "bytes-subclass", "bytearray"],
)
def test_lookup_one_text_kinds(small_db: Database, make: Callable[[str], object]) -> None:
    addresses = [address for address, _ in _EDGE_CASES]
    got = [small_db.lookup_one(make(address)) for address in addresses]  # type: ignore[arg-type]
    assert got == [expected for _, expected in _EDGE_CASES]


def test_lookup_one_numpy_integers(small_db: Database) -> None:
    assert small_db.lookup_one(np.uint32(0x0100_0001)) == "BB"  # 1.0.0.1
    assert small_db.lookup_one(np.uint64(_IPV4_MAX)) == "CC"
    assert small_db.lookup_one(np.uint64(_IPV4_MAX + 1)) == "CC"  # ::1:0:0
    assert small_db.lookup_one(np.int64(_MAPPED | 0x0A01_0007)) == "BB"  # ::ffff:10.1.0.7


def test_lookup_one_on_read_only_tables(small_db: Database) -> None:
    """A database over read-only arrays (as memory-mapped ones are) answers the same."""
    tables = []
    for table in (small_db.v4, small_db.v6):
        starts = table.starts.copy()
        labels = table.labels.copy()
        starts.setflags(write=False)
        labels.setflags(write=False)
        tables.append(RangeTable.from_arrays(table.version, starts, labels))
    db = Database(tables[0], tables[1], _LABELS, mark_reserved=False)
    for address, expected in _EDGE_CASES:
        assert db.lookup_one(address) == expected, address


def test_database_pickles_and_copies(small_db: Database) -> None:
    """lookup_one's private state is rebuilt, not pickled: the copy answers the same."""
    for db in (pickle.loads(pickle.dumps(small_db)), copy.deepcopy(small_db)):
        assert db.info == small_db.info
        assert db.label_names == small_db.label_names
        for address, expected in _EDGE_CASES:
            assert db.lookup_one(address) == expected, address
        assert db.lookup([a for a, _ in _EDGE_CASES]).countries() == [e for _, e in _EDGE_CASES]


def test_lookup_one_agrees_with_lookup_on_embedded_data(embedded_db: Database) -> None:
    db = embedded_db
    rng = np.random.default_rng(_SEED + 2)
    texts = [str(ipaddress.IPv4Address(int(x))) for x in rng.integers(0, 1 << 32, 2000)]
    for high, low in zip(
        rng.integers(0x2000 << 48, 0x3000 << 48, 2000, dtype=np.uint64).tolist(),
        rng.integers(0, 1 << 64, 2000, dtype=np.uint64).tolist(),
        strict=True,
    ):
        texts.append(str(ipaddress.IPv6Address((high << 64) | low)))
    texts += [f"::ffff:{text}" for text in texts[:500]]
    assert [db.lookup_one(text) for text in texts] == db.lookup(texts).countries()


def test_invalid_address_error_is_a_value_error() -> None:
    assert issubclass(lookupd.InvalidAddressError, ValueError)
    assert issubclass(lookupd.InvalidAddressError, lookupd.LookupdError)
    assert issubclass(lookupd.DataFormatError, lookupd.LookupdError)


# ---------------------------------------------------------------------------------------
# lookup_lines


def test_lookup_lines_line_numbering(small_db: Database) -> None:
    text = b"1.0.0.1\r\n\r\n  2001:db8::1\t\n\nbogus\n0.0.1.0\n \n::ffff:1.0.1.1"
    result = small_db.lookup_lines(text)
    # Result index i is line i + 1: blank lines are invalid items, not dropped.
    assert len(result) == 8
    assert result.countries() == ["BB", None, "BB", None, None, None, None, "CC"]
    assert result.status.tolist() == [
        Status.OK,
        Status.INVALID_ADDRESS,
        Status.OK,
        Status.INVALID_ADDRESS,
        Status.INVALID_ADDRESS,
        Status.NOT_FOUND,
        Status.INVALID_ADDRESS,
        Status.OK,
    ]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
@pytest.mark.parametrize("final_newline", [True, False])
def test_lookup_lines_endings(small_db: Database, ending: bytes, final_newline: bool) -> None:
    texts = [a for a, _ in _EDGE_CASES]
    blob = ending.join(t.encode() for t in texts) + (ending if final_newline else b"")
    for buffer in (blob, bytearray(blob), memoryview(blob)):
        result = small_db.lookup_lines(buffer)
        assert result.countries() == [e for _, e in _EDGE_CASES]


def test_lookup_lines_single_blank_line_is_one_invalid_item(small_db: Database) -> None:
    result = small_db.lookup_lines(b"\n")
    assert result.status.tolist() == [Status.INVALID_ADDRESS]


# ---------------------------------------------------------------------------------------
# The embedded data: every input kind agrees, on the same random addresses.


@pytest.fixture(scope="module")
def embedded_starts(embedded_db: Database) -> dict[int, list[int]]:
    """Segment starts of the embedded tables as ints, for the bisect oracle."""
    return {4: embedded_db.v4.start_ints(), 6: embedded_db.v6.start_ints()}


@pytest.fixture(scope="module")
def random_addresses() -> tuple[list[ipaddress.IPv4Address], list[ipaddress.IPv6Address]]:
    """10k addresses: IPv4, IPv6 in the allocated 2000::/4, and IPv4-mapped IPv6."""
    rng = np.random.default_rng(_SEED)
    v4 = [ipaddress.IPv4Address(int(x)) for x in rng.integers(0, 1 << 32, 5000, dtype=np.uint64)]
    highs = rng.integers(0x2000 << 48, 0x3000 << 48, 4000, dtype=np.uint64).tolist()
    lows = rng.integers(0, 1 << 64, 4000, dtype=np.uint64).tolist()
    # Many IPv6 ranges are /32 to /48: keep some keys near starts of the real data too.
    v6 = [ipaddress.IPv6Address((h << 64) | lo) for h, lo in zip(highs, lows, strict=True)]
    mapped = rng.integers(0, 1 << 32, 1000, dtype=np.uint64).tolist()
    v6 += [ipaddress.IPv6Address(f"::ffff:{ipaddress.IPv4Address(int(x))}") for x in mapped]
    return v4, v6


def _is_reserved(address: IPAddress) -> bool:
    """Whether the most specific special-purpose block holding ``address`` is reserved.

    Scans the registry list with ``ipaddress``, without the reserved tables or the cores.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    blocks = reserved.IPV4_BLOCKS if address.version == 4 else reserved.IPV6_BLOCKS
    covering = [b for b in blocks if address in ipaddress.ip_network(b.network)]
    return bool(covering) and max(covering, key=_prefix_length).reserved


def _prefix_length(block: reserved.SpecialBlock) -> int:
    return ipaddress.ip_network(block.network).prefixlen


def _bisect_answer(db: Database, address: IPAddress, starts: dict[int, list[int]]) -> str | None:
    """An oracle that does not use the search cores: bisect over the segment starts.

    Reserved addresses have no country, whatever the data says.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if _is_reserved(address):
        return None
    table = db.v4 if address.version == 4 else db.v6
    index = bisect_right(starts[address.version], int(address)) - 1
    label = int(table.labels[index])
    return db.label_names[label] if label else None


def test_every_input_kind_agrees_on_embedded_data(
    embedded_db: Database,
    embedded_starts: dict[int, list[int]],
    random_addresses: tuple[list[ipaddress.IPv4Address], list[ipaddress.IPv6Address]],
) -> None:
    db = embedded_db
    v4, v6 = random_addresses
    addresses: list[IPAddress] = [*v4, *v6]
    expected = [_bisect_answer(db, a, embedded_starts) for a in addresses]
    # The sample must exercise both answers and many countries to mean something.
    assert expected.count(None) > 10
    assert len(set(expected)) > 50

    reserved_at = frozenset(i for i, a in enumerate(addresses) if _is_reserved(a))
    assert len(reserved_at) > 10

    texts = [str(a) for a in addresses]
    by_list = db.lookup(texts)
    assert by_list.countries() == expected
    _assert_statuses(by_list, expected, set(), reserved_at)

    by_lines = db.lookup_lines("\n".join(texts).encode())
    assert by_lines.countries() == expected
    assert np.array_equal(by_lines.labels, by_list.labels)
    assert np.array_equal(by_lines.status, by_list.status)

    n4 = len(v4)
    by_uint32 = db.lookup(np.array([int(a) for a in v4], dtype=np.uint32))
    assert by_uint32.countries() == expected[:n4]
    assert np.array_equal(by_uint32.status, by_list.status[:n4])
    by_packed4 = db.lookup(b"".join(a.packed for a in v4), version=4)
    assert by_packed4.countries() == expected[:n4]

    by_pairs = db.lookup(np.array([_split(int(a)) for a in v6], dtype=np.uint64))
    assert by_pairs.countries() == expected[n4:]
    assert np.array_equal(by_pairs.status, by_list.status[n4:])
    by_packed6 = db.lookup(b"".join(a.packed for a in v6), version=6)
    assert by_packed6.countries() == expected[n4:]

    assert [db.lookup_one(t) for t in texts] == expected
    assert [db.lookup_one(a) for a in addresses] == expected


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0",
        "255.255.255.255",
        "::",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "::ffff:0.0.0.0",
        "::ffff:255.255.255.255",
    ],
)
def test_embedded_extremes_agree(
    embedded_db: Database, embedded_starts: dict[int, list[int]], address: str
) -> None:
    db = embedded_db
    ip = ipaddress.ip_address(address)
    expected = _bisect_answer(db, ip, embedded_starts)
    assert db.lookup_one(address) == expected
    assert db.lookup([address]).countries() == [expected]
    assert db.lookup_lines(address.encode()).countries() == [expected]
    assert db.lookup(ip.packed, version=ip.version).countries() == [expected]


def test_embedded_known_answers(embedded_db: Database) -> None:
    # True of the vendored geo-whois-asn-country data.
    assert embedded_db.lookup_one("1.1.1.1") == "AU"
    assert embedded_db.lookup_one("2001:4860:4860::8888") == "US"
    assert embedded_db.lookup_one("::ffff:1.1.1.1") == "AU"


def test_readme_python_example(embedded_db: Database) -> None:
    db = embedded_db
    assert db.lookup_one("1.1.1.1") == "AU"
    assert db.lookup_one("::ffff:8.8.8.8") == "US"
    result = db.lookup(["1.1.1.1", "2a00:1450::1", "not an ip", "10.0.0.1"])
    assert result.countries() == ["AU", "IE", None, None]
    assert result.status.tolist() == [1, 1, 2, 4]  # 10.0.0.1: Status.RESERVED
    assert repr(result.status) == "StatusArray([OK, OK, INVALID_ADDRESS, RESERVED])"
    assert db.lookup(np.array([16843009], dtype=np.uint32)).countries() == ["AU"]
    assert db.lookup_lines(b"1.1.1.1\n8.8.8.8\n").countries() == ["AU", "US"]


def test_embedded_info(embedded_db: Database) -> None:
    info = embedded_db.info
    assert info.source.startswith("embedded:")
    assert info.metadata["name"] == "geo-whois-asn-country"
    assert embedded_db.label_names[0] == ""
    assert len(embedded_db.v4) > 1000
    assert len(embedded_db.v6) > 1000
    assert "embedded:" in repr(embedded_db)


# ---------------------------------------------------------------------------------------
# Thread safety


def test_concurrent_lookups_match_single_thread(embedded_db: Database) -> None:
    db = embedded_db
    rng = np.random.default_rng(_SEED + 1)
    batches_v4 = [
        rng.integers(0, 1 << 32, 512, dtype=np.uint64).astype(np.uint32) for _ in range(8)
    ]
    pairs = np.empty((512, 2), dtype=np.uint64)
    pairs[:, 0] = rng.integers(0x2000 << 48, 0x3000 << 48, 512, dtype=np.uint64)
    pairs[:, 1] = rng.integers(0, 1 << 64, 512, dtype=np.uint64)
    texts = [str(ipaddress.IPv4Address(int(x))) for x in batches_v4[0][:128]] + [
        str(ipaddress.IPv6Address((int(h) << 64) | int(lo))) for h, lo in pairs[:128]
    ]
    want_v4 = [db.lookup(b).labels.copy() for b in batches_v4]
    want_pairs = db.lookup(pairs).labels.copy()
    want_texts = db.lookup(texts).labels.copy()

    n_threads = 8
    rounds = 150
    barrier = threading.Barrier(n_threads)
    failures: list[str] = []

    def work(worker: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(rounds):
                j = (worker + i) % len(batches_v4)
                if not np.array_equal(db.lookup(batches_v4[j]).labels, want_v4[j]):
                    failures.append(f"thread {worker} round {i}: uint32 batch {j}")
                if not np.array_equal(db.lookup(pairs).labels, want_pairs):
                    failures.append(f"thread {worker} round {i}: uint64 pairs")
                if i % 10 == 0 and not np.array_equal(db.lookup(texts).labels, want_texts):
                    failures.append(f"thread {worker} round {i}: text batch")
        except Exception as exc:  # any exception in a worker is the failure
            failures.append(f"thread {worker}: {exc!r}")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a lookup thread hung"
    assert failures == []


# ---------------------------------------------------------------------------------------
# open(): CSV, compressed CSV, compiled .npz, and failures naming the file


_CSV_ROWS = [
    ("1.0.0.0", "1.0.0.255", "AU"),
    ("1.0.1.0", "1.0.3.255", "CN"),
    ("8.8.8.0", "8.8.8.255", "US"),
    ("2001:4860::", "2001:4860:ffff:ffff:ffff:ffff:ffff:ffff", "US"),
    ("2a00:1450::", "2a00:1450:ffff:ffff:ffff:ffff:ffff:ffff", "IE"),
]
_CSV_EXPECTED = [
    ("1.0.0.0", "AU"),
    ("1.0.0.255", "AU"),
    ("1.0.1.0", "CN"),
    ("1.0.3.255", "CN"),
    ("1.0.4.0", None),
    ("8.8.8.8", "US"),
    ("::ffff:8.8.8.8", "US"),
    ("9.9.9.9", None),
    ("2001:4860:4860::8888", "US"),
    ("2a00:1450:4001::1", "IE"),
    ("2a00:1451::", None),
    ("::1", None),
]


def _csv_text(rows: list[Row]) -> str:
    return "".join(f"{a},{b},{c}\n" for a, b, c in rows)


def _check_csv_answers(db: Database, cases: list[tuple[str, str | None]]) -> None:
    assert db.lookup([a for a, _ in cases]).countries() == [e for _, e in cases]
    assert [db.lookup_one(a) for a, _ in cases] == [e for _, e in cases]


def test_open_dotted_csv(tmp_path: Path) -> None:
    path = tmp_path / "ranges.csv"
    path.write_text(_csv_text(_CSV_ROWS))
    db = lookupd.open(path)
    _check_csv_answers(db, _CSV_EXPECTED)
    assert db.info.source == str(path)
    assert set(db.label_names) == {"", "AU", "CN", "US", "IE"}
    assert lookupd.open(str(path)).label_names == db.label_names


def test_open_csv_with_crlf_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "ranges.csv"
    path.write_bytes(b"# a comment\r\n" + _csv_text(_CSV_ROWS).replace("\n", "\r\n").encode())
    _check_csv_answers(lookupd.open(path), _CSV_EXPECTED)


def test_open_numeric_csv(tmp_path: Path) -> None:
    v4_rows = [r for r in _CSV_ROWS if ":" not in r[0]]
    v6_rows = [r for r in _CSV_ROWS if ":" in r[0]]
    v4_path = tmp_path / "data-ipv4-num.csv"
    v4_path.write_text(
        "".join(
            f"{int(ipaddress.ip_address(a))},{int(ipaddress.ip_address(b))},{c}\n"
            for a, b, c in v4_rows
        )
    )
    v6_path = tmp_path / "data-ipv6-num.csv"
    v6_path.write_text(
        "".join(
            f"{int(ipaddress.ip_address(a))},{int(ipaddress.ip_address(b))},{c}\n"
            for a, b, c in v6_rows
        )
    )
    v4_cases = [(a, e) for a, e in _CSV_EXPECTED if "." in a]
    _check_csv_answers(lookupd.open(v4_path), v4_cases)
    v6_db = lookupd.open(v6_path)
    v6_cases = [(a, e) for a, e in _CSV_EXPECTED if "." not in a]
    _check_csv_answers(v6_db, v6_cases)
    # The IPv6 file says nothing about IPv4.
    assert v6_db.lookup_one("1.0.0.1") is None


def test_open_gzipped_csv(tmp_path: Path) -> None:
    path = tmp_path / "ranges.csv.gz"
    path.write_bytes(gzip.compress(_csv_text(_CSV_ROWS).encode()))
    _check_csv_answers(lookupd.open(path), _CSV_EXPECTED)


def _assert_same_tables(a: Database, b: Database) -> None:
    for ta, tb in ((a.v4, b.v4), (a.v6, b.v6)):
        assert ta.version == tb.version
        assert ta.starts.dtype == tb.starts.dtype
        assert np.array_equal(ta.starts, tb.starts)
        assert np.array_equal(ta.labels, tb.labels)
        assert np.array_equal(ta.jump, tb.jump)
    assert a.label_names == b.label_names


def test_open_compiled_round_trip(tmp_path: Path, small_db: Database) -> None:
    path = tmp_path / "small.npz"
    save_compiled(path, small_db.v4, small_db.v6, small_db.label_names, {"name": "small"})
    loaded = lookupd.open(path, mark_reserved=False)
    _assert_same_tables(small_db, loaded)
    assert loaded.info.source == str(path)
    assert loaded.info.metadata["name"] == "small"
    for address, expected in _EDGE_CASES:
        assert loaded.lookup_one(address) == expected


def test_open_compiled_round_trip_of_embedded_data(tmp_path: Path, embedded_db: Database) -> None:
    path = tmp_path / "embedded-copy.npz"
    save_compiled(path, embedded_db.v4, embedded_db.v6, embedded_db.label_names, {})
    _assert_same_tables(embedded_db, lookupd.open(path))


def test_open_csv_then_compiled_round_trip(tmp_path: Path) -> None:
    csv_path = tmp_path / "ranges.csv"
    csv_path.write_text(_csv_text(_CSV_ROWS))
    from_csv = lookupd.open(csv_path)
    npz_path = tmp_path / "ranges.npz"
    save_compiled(npz_path, from_csv.v4, from_csv.v6, from_csv.label_names, {"name": "t"})
    from_npz = lookupd.open(npz_path)
    _assert_same_tables(from_csv, from_npz)
    _check_csv_answers(from_npz, _CSV_EXPECTED)


def _write_valid_npz(path: Path) -> None:
    db = _build_database(_V4_ROWS, _V6_ROWS)
    save_compiled(path, db.v4, db.v6, db.label_names, {"name": "small"})


def _rewrite_npz(path: Path, **replace: npt.NDArray[np.generic]) -> None:
    _write_valid_npz(path)
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays.update(replace)
    with path.open("wb") as handle:
        np.savez(handle, **arrays)


def _corrupt_files() -> Iterator[tuple[str, str, Callable[[Path], None]]]:
    """(id, file name, writer) of files open() must refuse with a DataFormatError."""

    def write(data: bytes) -> Callable[[Path], None]:
        def writer(path: Path) -> None:
            path.write_bytes(data)

        return writer

    def zip_without_arrays(path: Path) -> None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "not a lookupd archive")

    def foreign_npz(path: Path) -> None:
        with path.open("wb") as handle:
            np.savez(handle, values=np.arange(3))

    def wrong_format_version(path: Path) -> None:
        record = {"format": "lookupd-compiled-npz", "format_version": 999}
        _rewrite_npz(path, metadata=np.frombuffer(json.dumps(record).encode(), dtype=np.uint8))

    def labels_past_table(path: Path) -> None:
        _rewrite_npz(path, label_names=np.array(["", "AA"]))

    def truncated_gz(path: Path) -> None:
        data = gzip.compress(_csv_text(_CSV_ROWS * 50).encode(), mtime=0)
        path.write_bytes(data[: len(data) // 2])

    yield "npz-empty", "data.npz", write(b"")
    yield "npz-garbage", "data.npz", write(bytes(range(256)) * 4)
    yield "npz-text", "data.npz", write(b"start,end,country\n")
    yield "npz-zip-without-arrays", "data.npz", zip_without_arrays
    yield "npz-foreign", "data.npz", foreign_npz
    yield "npz-format-version", "data.npz", wrong_format_version
    yield "npz-labels-past-table", "data.npz", labels_past_table
    yield "csv-empty", "data.csv", write(b"")
    yield "csv-binary", "data.csv", write(b"\xff\xfe\x00garbage\x80\n")
    yield "csv-not-ranges", "data.csv", write(b"hello world\n")
    yield "csv-bad-address", "data.csv", write(b"1.0.0.0,1.0.0.999,AU\n")
    yield "csv-start-after-end", "data.csv", write(b"1.0.0.9,1.0.0.0,AU\n")
    yield "csv-gz-not-gzip", "data.csv.gz", write(b"1.0.0.0,1.0.0.255,AU\n")
    yield "csv-gz-truncated", "data.csv.gz", truncated_gz
    yield "csv-xz-not-xz", "data.csv.xz", write(b"1.0.0.0,1.0.0.255,AU\n")


_CORRUPT = list(_corrupt_files())


@pytest.mark.parametrize(
    ("name", "writer"), [c[1:] for c in _CORRUPT], ids=[c[0] for c in _CORRUPT]
)
def test_open_corrupt_file_names_it(
    tmp_path: Path, name: str, writer: Callable[[Path], None]
) -> None:
    path = tmp_path / name
    writer(path)
    with pytest.raises(lookupd.DataFormatError, match=re.escape(str(path))):
        lookupd.open(path)


def _truncated_npz(path: Path) -> None:
    _write_valid_npz(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _npy_in_disguise(path: Path) -> None:
    with path.open("wb") as handle:
        np.save(handle, np.arange(3))


def _metadata_not_json(path: Path) -> None:
    _rewrite_npz(path, metadata=np.frombuffer(b"{not json", dtype=np.uint8))


def _metadata_not_object(path: Path) -> None:
    _rewrite_npz(path, metadata=np.frombuffer(b"[1, 2]", dtype=np.uint8))


def _first_label_not_unknown(path: Path) -> None:
    _rewrite_npz(path, label_names=np.array(["XX", *_LABELS[1:]]))


def _gz_bad_deflate(path: Path) -> None:
    data = bytearray(gzip.compress(_csv_text(_CSV_ROWS).encode(), mtime=0))
    # Keep the 10-byte header, break the first deflate block header.
    data[10] = 0xFF
    data[11] = 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("name", "writer"),
    [
        pytest.param(
            "data.npz",
            _truncated_npz,
            id="npz-truncated",
        ),
        pytest.param(
            "data.npz",
            _npy_in_disguise,
            id="npz-is-npy",
        ),
        pytest.param(
            "data.npz",
            _metadata_not_json,
            id="npz-metadata-not-json",
        ),
        pytest.param(
            "data.npz",
            _metadata_not_object,
            id="npz-metadata-not-object",
        ),
        pytest.param(
            "data.npz",
            _first_label_not_unknown,
            id="npz-first-label-not-unknown",
        ),
        pytest.param(
            "data.csv.gz",
            _gz_bad_deflate,
            id="csv-gz-bad-deflate",
        ),
    ],
)
def test_open_corrupt_compiled_or_compressed_file(
    tmp_path: Path, name: str, writer: Callable[[Path], None]
) -> None:
    path = tmp_path / name
    writer(path)
    with pytest.raises(lookupd.DataFormatError, match=re.escape(str(path))):
        lookupd.open(path)


@pytest.mark.parametrize("name", ["missing.npz", "missing.csv", "missing.csv.gz", "missing"])
def test_open_missing_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with pytest.raises(lookupd.DataFormatError, match=r"no such file") as info:
        lookupd.open(path)
    assert str(path) in str(info.value)


def test_open_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ranges.csv"
    path.mkdir()
    with pytest.raises(lookupd.DataFormatError, match=re.escape(str(path))):
        lookupd.open(path)


# ---------------------------------------------------------------------------------------
# Database construction


def test_database_rejects_tables_in_the_wrong_order(small_db: Database) -> None:
    with pytest.raises(ValueError, match="wrong order"):
        Database(small_db.v6, small_db.v4, _LABELS)


def test_database_requires_the_unknown_label_first(small_db: Database) -> None:
    with pytest.raises(ValueError, match="label_names"):
        Database(small_db.v4, small_db.v6, ["AA", "BB"])


def test_database_repr_counts(small_db: Database) -> None:
    text = repr(small_db)
    assert f"{len(small_db.v4)} IPv4" in text
    assert f"{len(small_db.v6)} IPv6" in text
    assert f"{len(_LABELS) - 1} labels" in text


def test_subdivision_labels_split_into_country_and_subdivision() -> None:
    v4 = build_table(4, [0x01000000, 0x02000000], [0x01FFFFFF, 0x02FFFFFF], [1, 2])
    v6 = RangeTable.empty(6)
    db = lookupd.Database(v4, v6, ["", "UA", "UA-43"])
    result = db.lookup(["1.0.0.1", "2.0.0.1", "3.0.0.1", "junk"])
    assert result.countries() == ["UA", "UA", None, None]
    assert result.subdivisions() == [None, "UA-43", None, None]
    assert result.codes().tolist() == ["UA", "UA", "", ""]
    assert db.lookup_one("2.0.0.1") == "UA"
    assert db.has_subdivisions
    assert not lookupd.open().has_subdivisions
