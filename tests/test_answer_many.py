"""answer_many, answer_many_v4, answer_packed_v6 and gather_names on the real data: each
equals the composition it replaced (lookup_many, then the reserved pass over the 128-bit
reserved table, then the label names), per core, at the edges that matter."""

from __future__ import annotations

import ipaddress
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from conftest import SEARCH_CORES
from hypothesis import example, given
from hypothesis import strategies as st

import lookupd
from lookupd.codes import Status
from lookupd.core import _search_py, reserved
from lookupd.core.constants import IPV4_MAPPED_PREFIX, IPV4_MAX, IPV6_MAX
from lookupd.core.database import Database
from lookupd.server.answers import Answerer
from lookupd.server.lookups import lookup_packed

_DB = lookupd.open()
_UNMARKED = lookupd.open(mark_reserved=False)
_ANSWERER = Answerer.load(_DB)
_U64_MAX = (1 << 64) - 1


def _rows(values: list[int]) -> npt.NDArray[np.uint64]:
    return np.array([[v >> 64, v & _U64_MAX] for v in values], dtype=np.uint64).reshape(-1, 2)


def _block_edges() -> list[int]:
    """The first and last address of every reserved block, and the ones either side."""
    edges = []
    for blocks, offset in ((reserved.IPV4_BLOCKS, IPV4_MAPPED_PREFIX), (reserved.IPV6_BLOCKS, 0)):
        for block in blocks:
            network = ipaddress.ip_network(block.network)
            first = offset | int(network.network_address)
            last = offset | int(network.broadcast_address)
            edges += [first - 1, first, last, last + 1]
    return [edge for edge in edges if 0 <= edge <= IPV6_MAX]


def _segment_edges(db: Database) -> list[int]:
    """Every 97th segment's start and the address before it, in both tables (IPv4 mapped)."""
    v4 = [int(start) for start in db.v4.starts[::97]]
    v6 = [(int(high) << 64) | int(low) for high, low in db.v6.starts[::97]]
    edges = [IPV4_MAPPED_PREFIX | key for start in v4 for key in (start - 1, start) if key >= 0]
    return edges + [key for start in v6 for key in (start - 1, start) if key >= 0]


# The ends of the space and of the mapped block (and just outside it), then the edges.
_EDGES = [
    0,
    1,
    IPV6_MAX,
    IPV6_MAX - 1,
    IPV4_MAPPED_PREFIX - 1,
    IPV4_MAPPED_PREFIX,
    IPV4_MAPPED_PREFIX | IPV4_MAX,
    (IPV4_MAPPED_PREFIX | IPV4_MAX) + 1,
    *_block_edges(),
    *_segment_edges(_DB),
]


def _reference(
    db: Database, keys: npt.NDArray[np.uint64], status_in: npt.NDArray[np.uint8]
) -> tuple[list[int], list[int]]:
    """What Database answered before answer_many: lookup_many, then one search of the
    128-bit reserved table for every key, invalid items keeping their status."""
    status = status_in.copy()
    labels = np.empty(keys.shape[0], dtype=np.uint16)
    _search_py.lookup_many(
        db.v4.starts,  # type: ignore[arg-type]
        db.v4.jump,
        db.v4.labels,
        db.v6.starts,  # type: ignore[arg-type]
        db.v6.jump,
        db.v6.labels,
        keys,
        status,
        labels,
    )
    if db.mark_reserved:
        flags = reserved.reserved_flags(keys).astype(bool) & (status != Status.INVALID_ADDRESS)
        status[flags] = Status.RESERVED
        labels[flags] = 0
    return labels.tolist(), status.tolist()


def _answer_many(
    core: ModuleType, db: Database, keys: npt.NDArray[np.uint64], status_in: npt.NDArray[np.uint8]
) -> tuple[list[int], list[int]]:
    status = status_in.copy()
    labels = np.full(keys.shape[0], 0xFFFF, dtype=np.uint16)
    core.answer_many(*db.answer_tables, keys, status, labels)
    return labels.tolist(), status.tolist()


def _statuses(count: int, invalid_every: int = 0) -> npt.NDArray[np.uint8]:
    status = np.full(count, Status.OK, dtype=np.uint8)
    if invalid_every:
        status[::invalid_every] = Status.INVALID_ADDRESS
    return status


@pytest.mark.parametrize("db", [_DB, _UNMARKED], ids=["marked", "unmarked"])
def test_answer_many_equals_the_old_composition_at_the_edges(
    search_core: ModuleType, db: Database
) -> None:
    keys = _rows(_EDGES)
    for status in (_statuses(len(_EDGES)), _statuses(len(_EDGES), invalid_every=3)):
        assert _answer_many(search_core, db, keys, status) == _reference(db, keys, status)


@pytest.mark.parametrize("search_core", SEARCH_CORES, ids=lambda m: m.__name__.rsplit(".")[-1])
@given(
    st.lists(
        st.one_of(
            st.integers(0, IPV6_MAX),
            st.integers(0, IPV4_MAX).map(lambda key: IPV4_MAPPED_PREFIX | key),
            st.sampled_from(_EDGES),
        ),
        max_size=600,
    )
)
@example([])
def test_answer_many_equals_the_old_composition(search_core: ModuleType, values: list[int]) -> None:
    keys = _rows(values)
    status = _statuses(len(values), invalid_every=5)
    assert _answer_many(search_core, _DB, keys, status) == _reference(_DB, keys, status)


@pytest.mark.parametrize("db", [_DB, _UNMARKED], ids=["marked", "unmarked"])
def test_uint32_input_equals_text(db: Database) -> None:
    """``lookup(uint32)`` (answer_many_v4) answers as the same addresses given as text."""
    rng = np.random.default_rng(13)
    values = [key & IPV4_MAX for key in _EDGES if key >> 32 == IPV4_MAPPED_PREFIX >> 32]
    keys = np.array([*values, *rng.integers(0, 1 << 32, 3000)], dtype=np.uint32)
    texts = [str(ipaddress.IPv4Address(int(key))) for key in keys]
    ours = db.lookup(keys)
    text = db.lookup(texts)
    assert ours.labels.tolist() == text.labels.tolist()
    assert ours.status.tolist() == text.status.tolist()
    assert ours.countries() == text.countries()


def test_answer_many_v4_equals_answer_many(search_core: ModuleType) -> None:
    values = [key & IPV4_MAX for key in _EDGES if key >> 32 == IPV4_MAPPED_PREFIX >> 32]
    keys = np.array([*values, *range(0xC000_0000, 0xC000_0300)], dtype=np.uint32)
    tables = _DB.answer_tables
    labels = np.empty(keys.shape[0], dtype=np.uint16)
    status = np.empty(keys.shape[0], dtype=np.uint8)
    search_core.answer_many_v4(*tables[:3], *tables[6:10], keys, labels, status)
    mapped = _rows([IPV4_MAPPED_PREFIX | int(key) for key in keys])
    assert (labels.tolist(), status.tolist()) == _reference(_DB, mapped, _statuses(keys.shape[0]))


def _packed_v6(core: ModuleType, db: Database, values: list[int]) -> tuple[list[int], list[int]]:
    codes = np.full(len(values), 0xFFFF, dtype=np.uint16)
    status = np.empty(len(values), dtype=np.uint8)
    packed = b"".join(value.to_bytes(16, "big") for value in values)
    core.answer_packed_v6(*db.answer_tables, _ANSWERER.codes_by_label, packed, codes, status)
    return codes.tolist(), status.tolist()


def _packed_reference(db: Database, values: list[int]) -> tuple[list[int], list[int]]:
    labels, status = _reference(db, _rows(values), _statuses(len(values)))
    return _ANSWERER.codes_by_label[labels].tolist(), status


@pytest.mark.parametrize("db", [_DB, _UNMARKED], ids=["marked", "unmarked"])
def test_answer_packed_v6_at_the_edges(search_core: ModuleType, db: Database) -> None:
    assert _packed_v6(search_core, db, _EDGES) == _packed_reference(db, _EDGES)
    assert _packed_v6(search_core, db, []) == ([], [])


@pytest.mark.parametrize("search_core", SEARCH_CORES, ids=lambda m: m.__name__.rsplit(".")[-1])
@given(st.lists(st.one_of(st.integers(0, IPV6_MAX), st.sampled_from(_EDGES)), max_size=600))
def test_answer_packed_v6_equals_the_old_composition(
    search_core: ModuleType, values: list[int]
) -> None:
    assert _packed_v6(search_core, _DB, values) == _packed_reference(_DB, values)


def test_the_service_answers_packed_ipv6_with_it() -> None:
    values = [*_EDGES[:200], int(ipaddress.IPv6Address("2a00:1450::1"))]
    packed = b"".join(value.to_bytes(16, "big") for value in values)
    _, v6_codes, _, v6_status = lookup_packed(_ANSWERER, b"", packed)
    codes, status = _packed_reference(_DB, values)
    assert v6_codes == np.array(codes, dtype=np.uint16).tobytes()
    assert v6_status == bytes(status)


def _packed_call(core: ModuleType, **changes: Any) -> None:
    arguments: dict[str, Any] = {
        "codes": _ANSWERER.codes_by_label,
        "packed": bytes(16) * 3,
        "out_codes": np.empty(3, dtype=np.uint16),
        "out_status": np.empty(3, dtype=np.uint8),
    }
    arguments.update(changes)
    tables = list(_DB.answer_tables)
    for index, name in enumerate(_TABLE_NAMES):
        if name in arguments:
            tables[index] = arguments.pop(name)
    core.answer_packed_v6(*tables, *arguments.values())


_TABLE_NAMES = (
    "v4_starts",
    "v4_jump",
    "v4_labels",
    "v6_starts",
    "v6_jump",
    "v6_labels",
    "reserved_v4_starts",
    "reserved_v4_jump",
    "reserved_v4_flags",
    "reserved_v4_prefixes",
    "reserved_v6_starts",
    "reserved_v6_jump",
    "reserved_v6_flags",
    "reserved_v6_prefixes",
)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"packed": bytes(15)}, "not a multiple of 16"),
        ({"out_codes": np.empty(2, dtype=np.uint16)}, "out_codes"),
        ({"out_status": np.empty(4, dtype=np.uint8)}, "out_status"),
        ({"codes": _ANSWERER.codes_by_label[:300].copy()}, "codes needs 65,536 entries"),
        ({"v4_labels": _DB.v4.labels[:-1].copy()}, "v4_labels"),
        ({"v6_labels": _DB.v6.labels[:-1].copy()}, "v6_labels"),
        ({"reserved_v4_flags": reserved.SEGMENT_FLAGS_V4[:-1].copy()}, "reserved_v4_flags"),
        ({"reserved_v6_flags": reserved.SEGMENT_FLAGS_V6[:-1].copy()}, "reserved_v6_flags"),
        (
            {"reserved_v4_prefixes": reserved.PREFIXES_V4[:256].copy()},
            "reserved_v4_prefixes needs 65,536",
        ),
        (
            {"reserved_v6_prefixes": reserved.PREFIXES_V6[:256].copy()},
            "reserved_v6_prefixes needs 65,536",
        ),
        ({"v6_jump": _DB.v6.jump[:-1].copy()}, "jump table has"),
        ({"reserved_v6_flags": reserved.SEGMENT_FLAGS_V6.astype(np.uint16)}, "dtype|mismatch"),
    ],
)
def test_bad_arguments_are_refused_alike(
    search_core: ModuleType, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _packed_call(search_core, **changes)


def test_a_read_only_output_is_refused(search_core: ModuleType) -> None:
    frozen = np.empty(3, dtype=np.uint8)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _packed_call(search_core, out_status=frozen)
    keys = _rows([1, 2, 3])
    with pytest.raises(ValueError, match="read-only"):
        search_core.answer_many(*_DB.answer_tables, keys, frozen, np.empty(3, dtype=np.uint16))


def test_answer_many_refuses_lengths_that_disagree(search_core: ModuleType) -> None:
    keys = _rows([1, 2, 3])
    with pytest.raises(ValueError, match="differ in length"):
        search_core.answer_many(
            *_DB.answer_tables, keys, _statuses(3), np.empty(2, dtype=np.uint16)
        )
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        search_core.answer_many(
            *_DB.answer_tables,
            np.zeros((3, 3), dtype=np.uint64),
            _statuses(3),
            np.empty(3, dtype=np.uint16),
        )


# --- strings out: gather_names and LookupResult.countries ---

_TEXTS = [
    "1.1.1.1",
    "8.8.8.8",
    "10.0.0.1",  # reserved
    "192.0.2.1",  # reserved, in a /16 only partly reserved
    "192.0.0.9",  # not reserved, in the same /16
    "192.88.99.2",  # reserved inside a block that is not
    "0.0.0.0",
    "255.255.255.255",
    "::ffff:1.1.1.1",  # IPv4-mapped: the IPv4 answer
    "::ffff:10.0.0.1",
    "::",
    "::1",
    "2a00:1450::1",
    "2001:db8::1",  # reserved
    "2001::1",  # Teredo: not reserved, in a /16 only partly reserved
    "2001:1::1",
    "fe80::1",
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "",  # invalid from here on
    "1.1.1",
    "01.1.1.1",
    " 1.1.1.1",
    "1.1.1.1%eth0",
    "::ffff:1.1.1.1.1",
    "x" * 100,
    "é",
    b"9.9.9.9",
    b"\xff",
]


def _text_items() -> list[Any]:
    """The texts, and objects that are not text (invalid items too)."""
    return [*_TEXTS, None, 1, 1.5, bytearray(b"1.1.1.1"), ["1.1.1.1"]]


@pytest.mark.parametrize("db", [_DB, _UNMARKED], ids=["marked", "unmarked"])
def test_countries_are_as_before(db: Database) -> None:
    """countries() gives what the object-array gather gave, subdivisions() likewise."""
    items = _text_items()
    result = db.lookup(items)
    names = np.array(db._codes, dtype=object)
    before = names[result.labels].tolist()
    assert result.countries() == before
    assert db.lookup(tuple(items)).countries() == before
    assert result.subdivisions() == [None] * len(items)
    assert None in before
    assert "AU" in before
    invalid = [c for c, status in zip(before, result.status, strict=True) if status != Status.OK]
    assert set(invalid) == {None}


def test_names_are_the_same_objects(search_core: ModuleType) -> None:
    """No per-item copies: every item is one of the names tuple's own objects."""
    countries = _DB.lookup(["1.1.1.1", "1.0.0.1", "x"]).countries()
    assert countries[0] is countries[1] is _DB._codes[_DB._codes.index("AU")]
    labels = np.array([1, 1, 0], dtype=np.uint16)
    names = search_core.gather_names(_DB._codes, labels)
    assert names[0] is names[1] is _DB._codes[1]
    assert names[2] is None


def test_gather_names_with_every_label(search_core: ModuleType) -> None:
    names = tuple(f"L{i}" for i in range(1 << 16))
    labels = np.arange(1 << 16, dtype=np.uint16)[::-1].copy()
    assert search_core.gather_names(names, labels) == [f"L{i}" for i in labels.tolist()]
    assert search_core.gather_names(names, labels[:0]) == []
    assert search_core.gather_names((), labels[:0]) == []


@pytest.mark.parametrize("size", [0, 1, 300])
def test_gather_names_refuses_a_label_without_a_name(search_core: ModuleType, size: int) -> None:
    names = tuple(range(size))
    labels = np.array([0] * 600 + [size, size + 5, 0xFFFF], dtype=np.uint16)
    with pytest.raises(ValueError, match=f"label {size} has no name: there are {size} names"):
        search_core.gather_names(names, labels)
    with pytest.raises(ValueError, match="label 65535 has no name"):
        search_core.gather_names(tuple(range((1 << 16) - 1)), np.array([0xFFFF], dtype=np.uint16))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda core: core.gather_names([None], np.zeros(1, np.uint16)), TypeError, "tuple"),
        (lambda core: core.gather_names((None,), np.zeros(1, np.uint32)), ValueError, "dtype"),
    ],
)
def test_bad_name_arguments_are_refused_alike(
    search_core: ModuleType, call: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call(search_core)


def test_the_largest_labels(search_core: ModuleType) -> None:
    """Labels up to 65,535 pass through answer_many and answer_packed_v6 unchanged (no
    overflow in the branch-free arithmetic), and reserved ones still become 0."""
    v4 = np.array([0, 0x0A00_0000, 0x0B00_0000], dtype=np.uint32)
    v6 = _rows([0, 1 << 125, 0xFE80 << 112])
    labels_v4 = np.array([0xFFFF, 0xFFFE, 0x8000], dtype=np.uint16)
    labels_v6 = np.array([0xFFFF, 0x7FFF, 0xFFFF], dtype=np.uint16)
    tables = list(_DB.answer_tables)
    tables[:6] = [
        v4,
        search_core.jump_table_v4(v4),
        labels_v4,
        v6,
        search_core.jump_table_v6(v6),
        labels_v6,
    ]
    values = [
        IPV4_MAPPED_PREFIX | 0x0100_0000,  # label 0xFFFF
        IPV4_MAPPED_PREFIX | 0x0A00_0001,  # 10.0.0.1: reserved, so 0
        IPV4_MAPPED_PREFIX | 0x0B00_0001,  # 0x8000
        (1 << 125) + 5,  # 0x7FFF
        (0xFE80 << 112) + 1,  # fe80::1: reserved, so 0
        (0xFF00 << 112) + 1,  # ff00::1: reserved multicast in a row labelled 0xFFFF
        0x2A00 << 112,  # 0x7FFF
    ]
    keys = _rows(values)
    status = _statuses(len(values))
    out = np.zeros(len(values), dtype=np.uint16)
    search_core.answer_many(*tables, keys, status, out)
    assert out.tolist() == [0xFFFF, 0, 0x8000, 0x7FFF, 0, 0, 0x7FFF]
    assert status.tolist() == [1, 4, 1, 1, 4, 4, 1]
    codes = np.arange(1 << 16, dtype=np.uint16)[::-1].copy()
    out_codes = np.zeros(len(values), dtype=np.uint16)
    out_status = np.zeros(len(values), dtype=np.uint8)
    packed = b"".join(value.to_bytes(16, "big") for value in values)
    search_core.answer_packed_v6(*tables, codes, packed, out_codes, out_status)
    assert out_codes.tolist() == [0xFFFF - label for label in out.tolist()]
    assert out_status.tolist() == status.tolist()
