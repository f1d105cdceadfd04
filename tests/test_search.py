"""Edge-case tables for both search cores: boundaries, gaps, IPv4-mapped keys, bad input."""

import ast
import bisect
import ctypes
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from lookupd.codes import Status
from lookupd.core import _search_py
from lookupd.core.constants import IPV4_MAPPED_PREFIX, IPV4_MAX, IPV6_MAX

_U64_MAX = (1 << 64) - 1
# Keys whose top 16 bits differ by one: the edges of the jump-table windows.
_P4 = 1 << 16
_P6 = 1 << 112
# Batch sizes around the C core's 8-key lockstep groups and 256-key lookup chunks.
_BATCH_SIZES = [0, 1, 7, 8, 9, 255, 256, 257, 1000]


def _v4(starts: Sequence[int]) -> npt.NDArray[np.uint32]:
    return np.array(starts, dtype=np.uint32)


def _v6(values: Sequence[int]) -> npt.NDArray[np.uint64]:
    """Split 128-bit ints into (high, low) uint64 rows."""
    rows = [[value >> 64, value & _U64_MAX] for value in values]
    return np.array(rows, dtype=np.uint64).reshape(-1, 2)


def _dense(base: int, count: int, step: int) -> list[int]:
    return [base + step * i for i in range(count)]


# (starts, [(key, index of the segment holding it), ...]), each expectation worked out by hand.
_V4_CASES = {
    "single-segment": ([0], [(0, 0), (1, 0), (1 << 31, 0), (IPV4_MAX, 0)]),
    "two-halves": ([0, 1 << 31], [(0, 0), ((1 << 31) - 1, 0), (1 << 31, 1), (IPV4_MAX, 1)]),
    "last-address-alone": ([0, IPV4_MAX], [(IPV4_MAX - 1, 0), (IPV4_MAX, 1)]),
    "adjacent-one-address": (
        [0, 10, 11, 12],
        [(9, 0), (10, 1), (11, 2), (12, 3), (13, 3), (IPV4_MAX, 3)],
    ),
    # 1.0.0.0/24, a gap segment 1.0.1.0/24, 1.0.2.0/24, then a gap to the end.
    "gaps": (
        [0, 0x0100_0000, 0x0100_0100, 0x0100_0200, 0x0100_0300],
        [
            (0x00FF_FFFF, 0),
            (0x0100_0000, 1),
            (0x0100_00FF, 1),
            (0x0100_0100, 2),
            (0x0100_01FF, 2),
            (0x0100_0200, 3),
            (0x0100_02FF, 3),
            (0x0100_0300, 4),
            (IPV4_MAX, 4),
        ],
    ),
    "jump-window-edges": (
        [0, _P4 - 1, _P4, _P4 + 1, 3 * _P4 - 1],
        [
            (_P4 - 2, 0),
            (_P4 - 1, 1),
            (_P4, 2),
            (_P4 + 1, 3),
            (2 * _P4 - 1, 3),
            (2 * _P4, 3),
            (3 * _P4 - 1, 4),
            (IPV4_MAX, 4),
        ],
    ),
    # 300 segments of 4 addresses inside one jump window (10.0.0.0/16).
    "dense-window": (
        [0, *_dense(0x0A00_0000, 300, 4)],
        [
            (0x09FF_FFFF, 0),
            (0x0A00_0000, 1),
            (0x0A00_0000 + 4 * 150 - 1, 150),
            (0x0A00_0000 + 4 * 150, 151),
            (0x0A00_0000 + 4 * 299 + 3, 300),
            (IPV4_MAX, 300),
        ],
    ),
    "starts-near-top": (
        [0, IPV4_MAX - 2, IPV4_MAX - 1, IPV4_MAX],
        [(IPV4_MAX - 3, 0), (IPV4_MAX - 2, 1), (IPV4_MAX - 1, 2), (IPV4_MAX, 3)],
    ),
}

_DOC = 0x2001_0DB8 << 96  # 2001:db8::/32
_V6_CASES = {
    "single-segment": ([0], [(0, 0), (1 << 64, 0), (IPV6_MAX, 0)]),
    "high-word-boundary": (
        [0, _U64_MAX, 1 << 64, (1 << 64) + 1],
        [
            (_U64_MAX - 1, 0),
            (_U64_MAX, 1),
            (1 << 64, 2),
            ((1 << 64) + 1, 3),
            (IPV6_MAX, 3),
        ],
    ),
    # Equal high words: the low word alone decides.
    "low-word-decides": (
        [0, (5 << 64) + 10, (5 << 64) + 11],
        [
            ((5 << 64) - 1, 0),
            ((5 << 64) + 9, 0),
            ((5 << 64) + 10, 1),
            ((5 << 64) + 11, 2),
            ((5 << 64) + _U64_MAX, 2),
            (6 << 64, 2),
        ],
    ),
    "last-address-alone": ([0, IPV6_MAX], [(IPV6_MAX - 1, 0), (IPV6_MAX, 1)]),
    "starts-near-top": (
        [0, IPV6_MAX - 2, IPV6_MAX - 1, IPV6_MAX],
        [(IPV6_MAX - 3, 0), (IPV6_MAX - 2, 1), (IPV6_MAX - 1, 2), (IPV6_MAX, 3)],
    ),
    "jump-window-edges": (
        [0, _P6 - 1, _P6, _P6 + 1, 3 * _P6 - 1],
        [
            (_P6 - 2, 0),
            (_P6 - 1, 1),
            (_P6, 2),
            (_P6 + 1, 3),
            (2 * _P6, 3),
            (3 * _P6 - 1, 4),
            (IPV6_MAX, 4),
        ],
    ),
    # 2001:db8::/32 cut into 300 /48s, all inside one jump window.
    "dense-window": (
        [0, *_dense(_DOC, 300, 1 << 80), _DOC + (1 << 96)],
        [
            (_DOC - 1, 0),
            (_DOC, 1),
            (_DOC + 150 * (1 << 80) - 1, 150),
            (_DOC + 150 * (1 << 80), 151),
            (_DOC + (1 << 96) - 1, 300),
            (_DOC + (1 << 96), 301),
            (IPV6_MAX, 301),
        ],
    ),
}

_V4_IDS = list(_V4_CASES)
_V6_IDS = list(_V6_CASES)


@pytest.mark.parametrize("case", _V4_IDS)
def test_find_v4_edges(search_core: ModuleType, case: str) -> None:
    starts_list, expected = _V4_CASES[case]
    starts = _v4(starts_list)
    jump = search_core.jump_table_v4(starts)
    keys = [key for key, _ in expected]
    out = np.full(len(keys), -1, dtype=np.int32)
    search_core.find_many_v4(starts, jump, _v4(keys), out)
    assert out.tolist() == [index for _, index in expected]
    assert [search_core.find_index_v4(starts, jump, key) for key in keys] == out.tolist()


@pytest.mark.parametrize("case", _V6_IDS)
def test_find_v6_edges(search_core: ModuleType, case: str) -> None:
    starts_list, expected = _V6_CASES[case]
    starts = _v6(starts_list)
    jump = search_core.jump_table_v6(starts)
    keys = [key for key, _ in expected]
    out = np.full(len(keys), -1, dtype=np.int32)
    search_core.find_many_v6(starts, jump, _v6(keys), out)
    assert out.tolist() == [index for _, index in expected]
    assert [search_core.find_index_v6(starts, jump, key) for key in keys] == out.tolist()


@pytest.mark.parametrize("case", _V4_IDS)
def test_jump_table_v4_matches_definition(search_core: ModuleType, case: str) -> None:
    starts_list = _V4_CASES[case][0]
    bits = search_core.JUMP_BITS_V4
    expected = [bisect.bisect_right(starts_list, p << (32 - bits)) - 1 for p in range(1 << bits)]
    jump = search_core.jump_table_v4(_v4(starts_list))
    assert jump.dtype == np.uint32
    assert jump.tolist() == [*expected, len(starts_list) - 1]


@pytest.mark.parametrize("case", _V6_IDS)
def test_jump_table_v6_matches_definition(search_core: ModuleType, case: str) -> None:
    starts_list = _V6_CASES[case][0]
    bits = search_core.JUMP_BITS_V6
    expected = [bisect.bisect_right(starts_list, p << (128 - bits)) - 1 for p in range(1 << bits)]
    jump = search_core.jump_table_v6(_v6(starts_list))
    assert jump.dtype == np.uint32
    assert jump.tolist() == [*expected, len(starts_list) - 1]


@pytest.mark.parametrize("size", _BATCH_SIZES)
def test_find_many_batch_sizes(search_core: ModuleType, size: int) -> None:
    rng = np.random.default_rng(size)
    starts_v4 = np.unique(np.append(rng.integers(0, 1 << 32, 500), 0)).astype(np.uint32)
    keys_v4 = rng.integers(0, 1 << 32, size, dtype=np.uint32)
    out = np.full(size, -1, dtype=np.int32)
    search_core.find_many_v4(starts_v4, search_core.jump_table_v4(starts_v4), keys_v4, out)
    starts_list = starts_v4.tolist()
    assert out.tolist() == [bisect.bisect_right(starts_list, k) - 1 for k in keys_v4.tolist()]

    # IPv6 starts packed into 2000::/16 so that every search runs inside one big window.
    values = sorted({0, *((0x2000 << 112) | int(x) << 64 for x in rng.integers(0, 1 << 48, 500))})
    keys = [(0x2000 << 112) | int(x) << 64 for x in rng.integers(0, 1 << 48, size)]
    out = np.full(size, -1, dtype=np.int32)
    starts_v6 = _v6(values)
    search_core.find_many_v6(starts_v6, search_core.jump_table_v6(starts_v6), _v6(keys), out)
    assert out.tolist() == [bisect.bisect_right(values, k) - 1 for k in keys]


# lookup_many tables: IPv4 1.0.0.0/8 -> label 5, the rest unknown; IPv6 ::/1 -> 7, 8000::/1 -> 9.
_LOOKUP_V4 = ([0, 0x0100_0000, 0x0200_0000], [0, 5, 0])
_LOOKUP_V6 = ([0, 1 << 127], [7, 9])


def _lookup(
    core: ModuleType, keys: Sequence[int], status: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Run lookup_many on the tables above; return (labels, statuses)."""
    v4 = _v4(_LOOKUP_V4[0])
    v6 = _v6(_LOOKUP_V6[0])
    status_array = np.array(status, dtype=np.uint8)
    out = np.full(len(keys), 0xFFFF, dtype=np.uint16)
    core.lookup_many(
        v4,
        core.jump_table_v4(v4),
        np.array(_LOOKUP_V4[1], dtype=np.uint16),
        v6,
        core.jump_table_v6(v6),
        np.array(_LOOKUP_V6[1], dtype=np.uint16),
        _v6(keys),
        status_array,
        out,
    )
    return out.tolist(), status_array.tolist()


_OK = Status.OK
_NOT_FOUND = Status.NOT_FOUND
_INVALID = Status.INVALID_ADDRESS


@pytest.mark.parametrize(
    ("key", "status_in", "label", "status_out"),
    [
        pytest.param(IPV4_MAPPED_PREFIX | 0x0100_0001, _OK, 5, _OK, id="mapped-1.0.0.1-to-v4"),
        pytest.param(IPV4_MAPPED_PREFIX | 0x0200_0000, _OK, 0, _NOT_FOUND, id="mapped-gap"),
        pytest.param(IPV4_MAPPED_PREFIX, _OK, 0, _NOT_FOUND, id="mapped-0.0.0.0"),
        pytest.param(IPV4_MAPPED_PREFIX | IPV4_MAX, _OK, 0, _NOT_FOUND, id="mapped-last"),
        pytest.param(IPV4_MAPPED_PREFIX - 1, _OK, 7, _OK, id="below-mapped-to-v6"),
        pytest.param(IPV4_MAPPED_PREFIX + (1 << 32), _OK, 7, _OK, id="above-mapped-to-v6"),
        pytest.param((1 << 64) | IPV4_MAPPED_PREFIX | 1, _OK, 7, _OK, id="high-set-to-v6"),
        pytest.param(0x0100_0001, _OK, 7, _OK, id="ipv4-compatible-to-v6"),
        pytest.param(1 << 127, _OK, 9, _OK, id="v6-second-half"),
        pytest.param(IPV6_MAX, _OK, 9, _OK, id="v6-last"),
        pytest.param(0, _INVALID, 0, _INVALID, id="invalid-zero-key"),
        pytest.param(IPV4_MAPPED_PREFIX | 0x0100_0001, _INVALID, 0, _INVALID, id="invalid-kept"),
    ],
)
def test_lookup_many_routes_and_statuses(
    search_core: ModuleType, key: int, status_in: Status, label: int, status_out: Status
) -> None:
    assert _lookup(search_core, [key], [status_in]) == ([label], [status_out])


@pytest.mark.parametrize("size", _BATCH_SIZES)
def test_lookup_many_mixed_batch(search_core: ModuleType, size: int) -> None:
    rng = np.random.default_rng(size)
    kinds = rng.integers(0, 3, size).tolist()  # 0: mapped IPv4, 1: IPv6, 2: invalid
    addresses = rng.integers(0, 1 << 32, size).tolist()
    keys = [
        IPV4_MAPPED_PREFIX | a if kind == 0 else a << 96 if kind == 1 else 0
        for kind, a in zip(kinds, addresses, strict=True)
    ]
    status = [_INVALID if kind == 2 else _OK for kind in kinds]
    labels, statuses = _lookup(search_core, keys, status)
    for kind, address, label, status_out in zip(kinds, addresses, labels, statuses, strict=True):
        if kind == 0:
            expected = 5 if 0x0100_0000 <= address < 0x0200_0000 else 0
        elif kind == 1:
            expected = 9 if address >> 31 else 7
        else:
            expected = 0
        assert label == expected
        assert status_out == (_INVALID if kind == 2 else _NOT_FOUND if expected == 0 else _OK)


def test_read_only_arrays(search_core: ModuleType) -> None:
    starts_v4 = _v4([0, 100])
    starts_v6 = _v6([0, 1 << 100])
    arrays = [
        starts_v4,
        jump_v4 := search_core.jump_table_v4(starts_v4),
        labels_v4 := np.array([0, 3], dtype=np.uint16),
        starts_v6,
        jump_v6 := search_core.jump_table_v6(starts_v6),
        labels_v6 := np.array([4, 6], dtype=np.uint16),
        keys_v4 := _v4([99, 100]),
        keys_v6 := _v6([IPV4_MAPPED_PREFIX | 100, 1 << 100]),
    ]
    for array in arrays:
        array.setflags(write=False)
    out = np.empty(2, dtype=np.int32)
    search_core.find_many_v4(starts_v4, jump_v4, keys_v4, out)
    assert out.tolist() == [0, 1]
    search_core.find_many_v6(starts_v6, jump_v6, keys_v6, out)
    assert out.tolist() == [0, 1]
    assert search_core.find_index_v4(starts_v4, jump_v4, 100) == 1
    assert search_core.find_index_v6(starts_v6, jump_v6, 1 << 100) == 1
    status = np.full(2, Status.OK, dtype=np.uint8)
    labels = np.empty(2, dtype=np.uint16)
    search_core.lookup_many(
        starts_v4, jump_v4, labels_v4, starts_v6, jump_v6, labels_v6, keys_v6, status, labels
    )
    assert labels.tolist() == [3, 6]


def test_bytes_backed_table(search_core: ModuleType) -> None:
    starts = np.frombuffer(_v4([0, 7, 9]).tobytes(), dtype=np.uint32)
    assert not starts.flags.writeable
    assert search_core.find_index_v4(starts, search_core.jump_table_v4(starts), 8) == 1


def test_read_only_output_is_refused(search_core: ModuleType) -> None:
    starts = _v4([0])
    out = np.empty(1, dtype=np.int32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        search_core.find_many_v4(starts, search_core.jump_table_v4(starts), _v4([1]), out)


def test_find_index_accepts_numpy_integers(search_core: ModuleType) -> None:
    starts = _v4([0, 5])
    jump = search_core.jump_table_v4(starts)
    assert search_core.find_index_v4(starts, jump, np.uint32(5)) == 1
    assert search_core.find_index_v6(_v6([0, 5]), search_core.jump_table_v6(_v6([0, 5])), 4) == 0


def test_jump_bits_agree() -> None:
    c_core = pytest.importorskip("lookupd.core._search_c")
    assert (c_core.JUMP_BITS_V4, c_core.JUMP_BITS_V6) == (
        _search_py.JUMP_BITS_V4,
        _search_py.JUMP_BITS_V6,
    )


def _stub_names() -> dict[str, list[str] | None]:
    """Map each name in _search_c.pyi to its parameter names (None for a constant)."""
    stub = ast.parse(Path(_search_py.__file__).with_name("_search_c.pyi").read_text())
    names: dict[str, list[str] | None] = {}
    for node in stub.body:
        if isinstance(node, ast.FunctionDef):
            names[node.name] = [arg.arg for arg in node.args.args]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = None
    return names


def test_core_matches_stub(search_core: ModuleType) -> None:
    names = _stub_names()
    assert "lookup_many" in names
    for name, parameters in names.items():
        value = getattr(search_core, name)
        if parameters is None:
            assert isinstance(value, int)
        else:
            assert list(inspect.signature(value).parameters) == parameters


def test_compiled_core_through_its_stub() -> None:
    """Call the compiled core by name: mypy checks these calls against _search_c.pyi."""
    pytest.importorskip("lookupd.core._search_c")
    from lookupd.core import _search_c

    starts_v4 = _v4([0, 100])
    jump_v4 = _search_c.jump_table_v4(starts_v4)
    starts_v6 = _v6([0, 1 << 100])
    jump_v6 = _search_c.jump_table_v6(starts_v6)
    rows = np.empty(2, dtype=np.int32)
    _search_c.find_many_v4(starts_v4, jump_v4, _v4([99, 100]), rows)
    assert rows.tolist() == [0, 1]
    _search_c.find_many_v6(starts_v6, jump_v6, _v6([1, 1 << 100]), rows)
    assert rows.tolist() == [0, 1]
    assert _search_c.find_index_v4(starts_v4, jump_v4, 100) == 1
    assert _search_c.find_index_v6(starts_v6, jump_v6, (1 << 100) - 1) == 0
    status = np.full(2, Status.OK, dtype=np.uint8)
    labels = np.empty(2, dtype=np.uint16)
    _search_c.lookup_many(
        starts_v4,
        jump_v4,
        np.array([0, 3], dtype=np.uint16),
        starts_v6,
        jump_v6,
        np.array([4, 6], dtype=np.uint16),
        _v6([IPV4_MAPPED_PREFIX | 7, 1 << 100]),
        status,
        labels,
    )
    assert labels.tolist() == [0, 6]
    assert status.tolist() == [Status.NOT_FOUND, Status.OK]


# ---- errors: both cores raise the same exception with the same message ----

_GOOD_V4 = [0, 10]
_GOOD_V6 = [0, 1 << 100]


@pytest.mark.parametrize(
    ("starts", "message"),
    [
        pytest.param(_v4([]), "IPv4 table is empty", id="empty"),
        pytest.param(_v4([1, 10]), r"IPv4 starts\[0\] must be 0.*got 1", id="not-from-zero"),
    ],
)
def test_bad_v4_table(
    search_core: ModuleType, starts: npt.NDArray[np.uint32], message: str
) -> None:
    jump = np.zeros((1 << search_core.JUMP_BITS_V4) + 1, dtype=np.uint32)
    out = np.empty(1, dtype=np.int32)
    with pytest.raises(ValueError, match=message):
        search_core.jump_table_v4(starts)
    with pytest.raises(ValueError, match=message):
        search_core.find_many_v4(starts, jump, _v4([3]), out)
    with pytest.raises(ValueError, match=message):
        search_core.find_index_v4(starts, jump, 3)


@pytest.mark.parametrize(
    ("starts", "message"),
    [
        pytest.param(_v6([]), "IPv6 table is empty", id="empty"),
        pytest.param(_v6([1, 10]), r"IPv6 starts\[0\] must be 0.*got 1", id="not-from-zero"),
        pytest.param(
            np.zeros((2, 3), dtype=np.uint64), r"shape \(n, 2\), got \(2, 3\)", id="three-columns"
        ),
    ],
)
def test_bad_v6_table(
    search_core: ModuleType, starts: npt.NDArray[np.uint64], message: str
) -> None:
    jump = np.zeros((1 << search_core.JUMP_BITS_V6) + 1, dtype=np.uint32)
    out = np.empty(1, dtype=np.int32)
    with pytest.raises(ValueError, match=message):
        search_core.jump_table_v6(starts)
    with pytest.raises(ValueError, match=message):
        search_core.find_many_v6(starts, jump, _v6([3]), out)
    with pytest.raises(ValueError, match=message):
        search_core.find_index_v6(starts, jump, 3)


def test_wrong_jump_length(search_core: ModuleType) -> None:
    starts_v4 = _v4(_GOOD_V4)
    short = search_core.jump_table_v4(starts_v4)[:-1]
    expected = (1 << search_core.JUMP_BITS_V4) + 1
    message = f"IPv4 jump table has {expected - 1} entries, expected {expected}"
    with pytest.raises(ValueError, match=message):
        search_core.find_index_v4(starts_v4, short, 1)
    with pytest.raises(ValueError, match=message):
        search_core.find_many_v4(starts_v4, short, _v4([1]), np.empty(1, dtype=np.int32))
    starts_v6 = _v6(_GOOD_V6)
    too_long = np.zeros((1 << search_core.JUMP_BITS_V6) + 2, dtype=np.uint32)
    with pytest.raises(ValueError, match="IPv6 jump table has"):
        search_core.find_many_v6(starts_v6, too_long, _v6([1]), np.empty(1, dtype=np.int32))


def test_length_mismatch(search_core: ModuleType) -> None:
    starts_v4 = _v4(_GOOD_V4)
    jump_v4 = search_core.jump_table_v4(starts_v4)
    starts_v6 = _v6(_GOOD_V6)
    jump_v6 = search_core.jump_table_v6(starts_v6)
    with pytest.raises(ValueError, match="keys=3, out=2"):
        search_core.find_many_v4(starts_v4, jump_v4, _v4([1, 2, 3]), np.empty(2, np.int32))
    with pytest.raises(ValueError, match="keys=1, out=2"):
        search_core.find_many_v6(starts_v6, jump_v6, _v6([1]), np.empty(2, np.int32))
    with pytest.raises(ValueError, match=r"keys must have shape \(n, 2\), got \(1, 3\)"):
        search_core.find_many_v6(
            starts_v6, jump_v6, np.zeros((1, 3), np.uint64), np.empty(1, np.int32)
        )


@pytest.mark.parametrize(
    ("name", "bad", "message"),
    [
        pytest.param("v4_labels", np.zeros(3, np.uint16), "v4_starts=2, v4_labels=3", id="v4"),
        pytest.param("v6_labels", np.zeros(1, np.uint16), "v6_starts=2, v6_labels=1", id="v6"),
        pytest.param("status", np.zeros(3, np.uint8), "keys=2, status=3, out=2", id="status"),
        pytest.param("out", np.zeros(1, np.uint16), "keys=2, status=2, out=1", id="out"),
        pytest.param(
            "keys", np.zeros((2, 3), np.uint64), r"keys must have shape \(n, 2\)", id="keys"
        ),
    ],
)
def test_lookup_many_length_mismatch(
    search_core: ModuleType, name: str, bad: npt.NDArray[np.generic], message: str
) -> None:
    starts_v4 = _v4(_GOOD_V4)
    starts_v6 = _v6(_GOOD_V6)
    arrays = {
        "v4_starts": starts_v4,
        "v4_jump": search_core.jump_table_v4(starts_v4),
        "v4_labels": np.zeros(2, np.uint16),
        "v6_starts": starts_v6,
        "v6_jump": search_core.jump_table_v6(starts_v6),
        "v6_labels": np.zeros(2, np.uint16),
        "keys": _v6([1, 2]),
        "status": np.full(2, Status.OK, np.uint8),
        "out": np.zeros(2, np.uint16),
    }
    arrays[name] = bad
    with pytest.raises(ValueError, match=message):
        search_core.lookup_many(**arrays)


@pytest.mark.parametrize(
    ("family", "key", "message"),
    [
        pytest.param("v4", -1, r"IPv4 key out of range 0\.\.2\*\*32-1: -1", id="v4-negative"),
        pytest.param("v4", 1 << 32, "IPv4 key out of range", id="v4-too-big"),
        pytest.param("v6", -1, r"IPv6 key out of range 0\.\.2\*\*128-1: -1", id="v6-negative"),
        pytest.param("v6", 1 << 128, "IPv6 key out of range", id="v6-too-big"),
    ],
)
def test_key_out_of_range(search_core: ModuleType, family: str, key: int, message: str) -> None:
    if family == "v4":
        starts_v4 = _v4(_GOOD_V4)
        with pytest.raises(ValueError, match=message):
            search_core.find_index_v4(starts_v4, search_core.jump_table_v4(starts_v4), key)
    else:
        starts_v6 = _v6(_GOOD_V6)
        with pytest.raises(ValueError, match=message):
            search_core.find_index_v6(starts_v6, search_core.jump_table_v6(starts_v6), key)


def test_key_not_an_integer(search_core: ModuleType) -> None:
    starts = _v4(_GOOD_V4)
    with pytest.raises(TypeError):
        search_core.find_index_v4(starts, search_core.jump_table_v4(starts), 1.5)


@pytest.mark.parametrize(
    "starts",
    [
        pytest.param(np.array([0, 10], dtype=np.int32), id="signed"),
        pytest.param(np.array([0, 10], dtype=np.uint64), id="wide"),
        pytest.param(np.array([0, 10], dtype=">u4"), id="big-endian"),
        pytest.param(np.array([0, 5, 10, 15], dtype=np.uint32)[::2], id="strided"),
        pytest.param(np.array([[0, 10]], dtype=np.uint32), id="two-dimensional"),
    ],
)
def test_bad_array_is_refused(search_core: ModuleType, starts: npt.NDArray[np.generic]) -> None:
    jump = np.zeros((1 << search_core.JUMP_BITS_V4) + 1, dtype=np.uint32)
    with pytest.raises(ValueError):
        search_core.find_many_v4(starts, jump, _v4([1]), np.empty(1, dtype=np.int32))


def test_foreign_jump_table_stays_in_bounds(search_core: ModuleType) -> None:
    """A jump table built for another table gives wrong answers, never a crash."""
    big = _v4(list(range(0, 1 << 32, 1 << 20)))
    small = _v4([0, 1 << 31])
    keys = np.arange(0, 1 << 32, 1 << 22, dtype=np.uint32)
    out = np.full(len(keys), -1, dtype=np.int32)
    search_core.find_many_v4(small, search_core.jump_table_v4(big), keys, out)
    assert ((out >= 0) & (out <= 1)).all()


# ---- find_index: the C core's quick boundary checks, and the general path behind them ----
#
# The compiled find_index_v4 / _v6 check plain buffers and plain int keys in C, and hand
# everything else to the typed-memoryview path and the twin's checks. Whichever path runs,
# the answer, the exception and its message must be the twin's.


class _Int(int):
    """An int subclass: not an exact int, so the C core takes the general path."""


class _Index:
    """Not an int, but usable as one through __index__."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


@pytest.mark.parametrize(
    "make",
    [int, _Int, _Index, np.uint32, np.uint64, np.int64],
    ids=["int", "int-subclass", "__index__", "uint32", "uint64", "int64"],
)
def test_find_index_key_kinds(search_core: ModuleType, make: type) -> None:
    starts_v4 = _v4([0, 5, IPV4_MAX])
    jump_v4 = search_core.jump_table_v4(starts_v4)
    starts_v6 = _v6([0, 5, 1 << 64])
    jump_v6 = search_core.jump_table_v6(starts_v6)
    for key, expected in [(0, 0), (4, 0), (5, 1), (IPV4_MAX, 2)]:
        assert search_core.find_index_v4(starts_v4, jump_v4, make(key)) == expected
    for key, expected in [(0, 0), (5, 1), (IPV4_MAX, 1)]:
        assert search_core.find_index_v6(starts_v6, jump_v6, make(key)) == expected
    assert search_core.find_index_v4(starts_v4, jump_v4, True) == 0


def _raised(call: Callable[[], object]) -> tuple[type[BaseException], str]:
    """Return the type and message of the exception ``call`` raises."""
    try:
        call()
    except Exception as exc:
        return type(exc), str(exc)
    pytest.fail("no exception raised")


def _short_jump(bits: int) -> npt.NDArray[np.uint32]:
    return np.zeros(1 << bits, dtype=np.uint32)


# (family, starts, jump (None: built from starts), key): every refusal the checks make,
# alone and combined (the table is checked before the key).
_REFUSALS: dict[str, tuple[str, list[int], str | None, object]] = {
    "v4-key-negative": ("v4", [0, 10], None, -1),
    "v4-key-2**32": ("v4", [0, 10], None, 1 << 32),
    "v4-key-2**64": ("v4", [0, 10], None, 1 << 64),
    "v4-key-huge-negative": ("v4", [0, 10], None, -(1 << 200)),
    "v4-key-float": ("v4", [0, 10], None, 1.5),
    "v4-key-none": ("v4", [0, 10], None, None),
    "v4-key-str": ("v4", [0, 10], None, "1"),
    "v4-empty": ("v4", [], "zeros", 1),
    "v4-not-from-zero": ("v4", [1, 10], "zeros", 1),
    "v4-short-jump": ("v4", [0, 10], "short", 1),
    "v4-bad-table-and-key": ("v4", [1, 10], "zeros", -1),
    "v6-key-negative": ("v6", [0, 10], None, -1),
    "v6-key-2**128": ("v6", [0, 10], None, 1 << 128),
    "v6-key-huge": ("v6", [0, 10], None, 1 << 200),
    "v6-key-huge-negative": ("v6", [0, 10], None, -(1 << 200)),
    "v6-key-float": ("v6", [0, 10], None, 2.0),
    "v6-empty": ("v6", [], "zeros", 1),
    "v6-not-from-zero": ("v6", [1, 10], "zeros", 1),
    "v6-low-word-not-zero": ("v6", [1], "zeros", 1),
    "v6-short-jump": ("v6", [0, 10], "short", 1),
    "v6-bad-table-and-key": ("v6", [1 << 64], "zeros", 1 << 128),
}


@pytest.mark.parametrize("case", list(_REFUSALS))
def test_find_index_refusals_match_the_twin(search_core: ModuleType, case: str) -> None:
    family, starts_list, jump_kind, key = _REFUSALS[case]
    bits = search_core.JUMP_BITS_V4 if family == "v4" else search_core.JUMP_BITS_V6
    starts: npt.NDArray[Any] = _v4(starts_list) if family == "v4" else _v6(starts_list)
    if jump_kind is None:
        build = search_core.jump_table_v4 if family == "v4" else search_core.jump_table_v6
        jump = build(starts)
    elif jump_kind == "short":
        jump = _short_jump(bits)
    else:
        jump = np.zeros((1 << bits) + 1, dtype=np.uint32)
    find: Callable[..., int] = (
        search_core.find_index_v4 if family == "v4" else search_core.find_index_v6
    )
    twin: Callable[..., int] = (
        _search_py.find_index_v4 if family == "v4" else _search_py.find_index_v6
    )
    assert _raised(lambda: find(starts, jump, key)) == _raised(lambda: twin(starts, jump, key))


@pytest.mark.parametrize(
    ("family", "starts"),
    [
        pytest.param("v4", np.array([0, 10], dtype=np.int32), id="v4-signed"),
        pytest.param("v4", np.array([0, 10], dtype=np.uint64), id="v4-wide"),
        pytest.param("v4", np.array([0, 10], dtype=">u4"), id="v4-big-endian"),
        pytest.param("v4", np.array([0, 5, 10, 15], dtype=np.uint32)[::2], id="v4-strided"),
        pytest.param("v4", np.array([[0, 10]], dtype=np.uint32), id="v4-two-dimensional"),
        pytest.param("v6", np.zeros((2, 2), dtype=np.int64), id="v6-signed"),
        pytest.param("v6", np.zeros((2, 2), dtype=">u8"), id="v6-big-endian"),
        pytest.param("v6", np.zeros(4, dtype=np.uint64), id="v6-one-dimensional"),
        pytest.param("v6", np.zeros((2, 4), dtype=np.uint64)[:, ::2], id="v6-strided"),
    ],
)
def test_find_index_bad_arrays_are_refused(
    search_core: ModuleType, family: str, starts: npt.NDArray[np.generic]
) -> None:
    bits = search_core.JUMP_BITS_V4 if family == "v4" else search_core.JUMP_BITS_V6
    jump = np.zeros((1 << bits) + 1, dtype=np.uint32)
    find = search_core.find_index_v4 if family == "v4" else search_core.find_index_v6
    with pytest.raises(ValueError):
        find(starts, jump, 1)
    with pytest.raises(ValueError):  # a jump table of the wrong dtype
        find(_v4([0, 10]) if family == "v4" else _v6([0, 10]), jump.astype(np.int32), 1)


def test_compiled_find_index_takes_any_buffer_layout() -> None:
    """Buffers that are not numpy arrays, in the formats numpy does not export, still work."""
    c_core = pytest.importorskip("lookupd.core._search_c")
    starts_v4 = _v4([0, 10, 1 << 20, IPV4_MAX])
    jump_v4 = c_core.jump_table_v4(starts_v4)
    starts_v6 = _v6([0, 10, 1 << 64, 1 << 100])
    jump_v6 = c_core.jump_table_v6(starts_v6)
    keys_v4 = [0, 9, 10, (1 << 20) - 1, 1 << 20, IPV4_MAX - 1, IPV4_MAX]
    keys_v6 = [0, 9, 10, (1 << 64) - 1, 1 << 64, 1 << 100, IPV6_MAX]

    def answers(
        starts_4: object, jump_4: object, starts_6: object, jump_6: object
    ) -> tuple[list[int], list[int]]:
        return (
            [c_core.find_index_v4(starts_4, jump_4, k) for k in keys_v4],
            [c_core.find_index_v6(starts_6, jump_6, k) for k in keys_v6],
        )

    expected = (
        [_search_py.find_index_v4(starts_v4, jump_v4, k) for k in keys_v4],
        [_search_py.find_index_v6(starts_v6, jump_v6, k) for k in keys_v6],
    )
    assert answers(starts_v4, jump_v4, starts_v6, jump_v6) == expected
    views = [array.data for array in (starts_v4, jump_v4, starts_v6, jump_v6)]  # memoryviews
    assert answers(*views) == expected
    # "Q" rather than numpy's "L" for uint64; bytes-backed, so read-only.
    starts_q = memoryview(starts_v6.tobytes()).cast("Q", list(starts_v6.shape))
    assert answers(starts_v4, jump_v4, starts_q, jump_v6) == expected
    # An explicit byte order ("<I", "<Q"): the general path reads these.
    ctypes_v4 = (ctypes.c_uint32 * len(starts_v4)).from_buffer_copy(starts_v4.tobytes())
    ctypes_jump = (ctypes.c_uint32 * len(jump_v4)).from_buffer_copy(jump_v4.tobytes())
    ctypes_v6 = ((ctypes.c_uint64 * 2) * len(starts_v6)).from_buffer_copy(starts_v6.tobytes())
    assert memoryview(ctypes_v4).format == "<I"
    assert answers(ctypes_v4, ctypes_jump, ctypes_v6, jump_v6) == expected
