"""Properties: the C core agrees with the pure twin, the twin with a bisect model."""

import bisect
import importlib
import random
from collections.abc import Sequence
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lookupd.codes import Status
from lookupd.core import _search_py
from lookupd.core.constants import IPV4_MAPPED_PREFIX, IPV4_MAX, IPV6_MAX

try:
    _search_c: ModuleType | None = importlib.import_module("lookupd.core._search_c")
except ImportError:  # pragma: no cover - the pure-Python run
    _search_c = None

_needs_c = pytest.mark.skipif(_search_c is None, reason="compiled search core not built")

_U64_MAX = (1 << 64) - 1


def _v6(values: Sequence[int]) -> npt.NDArray[np.uint64]:
    rows = [[value >> 64, value & _U64_MAX] for value in values]
    return np.array(rows, dtype=np.uint64).reshape(-1, 2)


def _model(starts: Sequence[int], key: int) -> int:
    """The index of the last start <= key, over plain Python ints."""
    return bisect.bisect_right(starts, key) - 1


def _tables(top: int) -> st.SearchStrategy[list[int]]:
    """Sorted tables of starts in 0..top, always starting at 0.

    Tables mix uniform starts, clusters (many starts in one jump window), starts near the
    top address, and bulk runs of up to 1,000 seeded random starts for larger tables.
    """
    uniform = st.lists(st.integers(1, top), max_size=50)
    cluster = st.tuples(
        st.integers(0, top), st.lists(st.integers(0, 4096), min_size=1, max_size=50)
    ).map(lambda drawn: [min(drawn[0] + offset, top) for offset in drawn[1]])
    near_top = st.lists(st.integers(top - 64, top), max_size=10)
    bulk = st.tuples(
        st.integers(0, 2**32), st.integers(0, top), st.sampled_from([1 << 12, 1 << 24, top])
    ).map(lambda drawn: _bulk(*drawn, top=top))
    return st.lists(st.one_of(uniform, cluster, near_top, bulk), min_size=1, max_size=3).map(
        lambda parts: sorted({0, *(start for part in parts for start in part)})
    )


def _bulk(seed: int, base: int, span: int, *, top: int) -> list[int]:
    """Return up to 1,000 random starts in base .. base + span (clipped to top)."""
    rng = random.Random(seed)
    return [min(base + rng.randrange(span), top) for _ in range(rng.randrange(1000))]


def _key(starts: list[int], top: int) -> st.SearchStrategy[int]:
    """A key anywhere, on, just below or just above a start, or at either end."""
    near = st.sampled_from(starts).flatmap(
        lambda s: st.sampled_from([max(s - 1, 0), s, min(s + 1, top)])
    )
    return st.one_of(st.integers(0, top), near, st.sampled_from([0, top]))


def _keys(starts: list[int], top: int) -> st.SearchStrategy[list[int]]:
    return st.lists(_key(starts, top), max_size=100)


@st.composite
def _v4_cases(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    starts = draw(_tables(IPV4_MAX))
    return starts, draw(_keys(starts, IPV4_MAX))


@st.composite
def _v6_cases(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    starts = draw(_tables(IPV6_MAX))
    return starts, draw(_keys(starts, IPV6_MAX))


def _find_many_v4(core: ModuleType, starts: list[int], keys: list[int]) -> list[int]:
    table = np.array(starts, dtype=np.uint32)
    out = np.full(len(keys), -1, dtype=np.int32)
    core.find_many_v4(table, core.jump_table_v4(table), np.array(keys, dtype=np.uint32), out)
    result: list[int] = out.tolist()
    return result


def _find_many_v6(core: ModuleType, starts: list[int], keys: list[int]) -> list[int]:
    table = _v6(starts)
    out = np.full(len(keys), -1, dtype=np.int32)
    core.find_many_v6(table, core.jump_table_v6(table), _v6(keys), out)
    result: list[int] = out.tolist()
    return result


def _find_index_v4(core: ModuleType, starts: list[int], keys: list[int]) -> list[int]:
    table = np.array(starts, dtype=np.uint32)
    jump = core.jump_table_v4(table)
    return [core.find_index_v4(table, jump, key) for key in keys]


def _find_index_v6(core: ModuleType, starts: list[int], keys: list[int]) -> list[int]:
    table = _v6(starts)
    jump = core.jump_table_v6(table)
    return [core.find_index_v6(table, jump, key) for key in keys]


@given(_v4_cases())
@example(([0], [0, IPV4_MAX]))
@example(([0, IPV4_MAX], [IPV4_MAX - 1, IPV4_MAX]))
@example(([0, 0xFFFF, 0x10000], [0xFFFE, 0xFFFF, 0x10000, 0x1FFFF]))
def test_twin_matches_bisect_v4(case: tuple[list[int], list[int]]) -> None:
    starts, keys = case
    expected = [_model(starts, key) for key in keys]
    assert _find_many_v4(_search_py, starts, keys) == expected
    assert _find_index_v4(_search_py, starts, keys[:10]) == expected[:10]


@given(_v6_cases())
@example(([0], [0, IPV6_MAX]))
@example(([0, IPV6_MAX], [IPV6_MAX - 1, IPV6_MAX]))
@example(([0, _U64_MAX, 1 << 64], [_U64_MAX - 1, _U64_MAX, 1 << 64, (1 << 64) + 1]))
@example(([0, (5 << 64) + 10], [(5 << 64) + 9, (5 << 64) + 10, 6 << 64]))
def test_twin_matches_bisect_v6(case: tuple[list[int], list[int]]) -> None:
    starts, keys = case
    expected = [_model(starts, key) for key in keys]
    assert _find_many_v6(_search_py, starts, keys) == expected
    assert _find_index_v6(_search_py, starts, keys[:10]) == expected[:10]


@_needs_c
@given(_v4_cases())
@example(([0], [0, IPV4_MAX]))
@example(([0, 0xFFFF, 0x10000], [0xFFFE, 0xFFFF, 0x10000, 0x1FFFF]))
def test_c_matches_twin_v4(case: tuple[list[int], list[int]]) -> None:
    assert _search_c is not None
    starts, keys = case
    assert _find_many_v4(_search_c, starts, keys) == _find_many_v4(_search_py, starts, keys)
    assert _find_index_v4(_search_c, starts, keys[:10]) == _find_index_v4(
        _search_py, starts, keys[:10]
    )


@_needs_c
@given(_v6_cases())
@example(([0], [0, IPV6_MAX]))
@example(([0, _U64_MAX, 1 << 64], [_U64_MAX - 1, _U64_MAX, 1 << 64, (1 << 64) + 1]))
def test_c_matches_twin_v6(case: tuple[list[int], list[int]]) -> None:
    assert _search_c is not None
    starts, keys = case
    assert _find_many_v6(_search_c, starts, keys) == _find_many_v6(_search_py, starts, keys)
    assert _find_index_v6(_search_c, starts, keys[:10]) == _find_index_v6(
        _search_py, starts, keys[:10]
    )


@given(st.data())
def test_jump_windows_hold_the_answer(data: st.DataObject) -> None:
    """Every key's answer lies in jump[p] .. jump[p + 1], p being the key's top bits.

    The compiled core re-exports these builders, so this covers both cores.
    """
    starts_v4, keys_v4 = data.draw(_v4_cases())
    jump = _search_py.jump_table_v4(np.array(starts_v4, dtype=np.uint32))
    shift = 32 - _search_py.JUMP_BITS_V4
    for key in keys_v4:
        assert jump[key >> shift] <= _model(starts_v4, key) <= jump[(key >> shift) + 1]
    starts_v6, keys_v6 = data.draw(_v6_cases())
    jump = _search_py.jump_table_v6(_v6(starts_v6))
    shift = 128 - _search_py.JUMP_BITS_V6
    for key in keys_v6:
        assert jump[key >> shift] <= _model(starts_v6, key) <= jump[(key >> shift) + 1]


@st.composite
def _lookup_cases(
    draw: st.DrawFn,
) -> tuple[list[int], list[int], list[int], list[int], list[int], list[int]]:
    """Draw two labelled tables and a batch of mapped IPv4, IPv6 and invalid keys."""
    starts_v4 = draw(_tables(IPV4_MAX))
    starts_v6 = draw(_tables(IPV6_MAX))
    # Labels 0..3, so that label 0 (unknown, hence NOT_FOUND) is common.
    rng = random.Random(draw(st.integers(0, 2**32)))
    labels_v4 = [rng.randrange(4) for _ in starts_v4]
    labels_v6 = [rng.randrange(4) for _ in starts_v6]
    mapped = _key(starts_v4, IPV4_MAX).map(lambda key: IPV4_MAPPED_PREFIX | key)
    items = draw(
        st.lists(
            st.tuples(
                st.one_of(mapped, _key(starts_v6, IPV6_MAX)),
                st.sampled_from([Status.OK, Status.OK, Status.INVALID_ADDRESS]),
            ),
            max_size=300,
        )
    )
    keys = [key for key, _ in items]
    status = [int(status) for _, status in items]
    return starts_v4, labels_v4, starts_v6, labels_v6, keys, status


def _lookup(
    core: ModuleType,
    case: tuple[list[int], list[int], list[int], list[int], list[int], list[int]],
) -> tuple[list[int], list[int]]:
    starts_v4, labels_v4, starts_v6, labels_v6, keys, status = case
    v4 = np.array(starts_v4, dtype=np.uint32)
    v6 = _v6(starts_v6)
    status_array = np.array(status, dtype=np.uint8)
    out = np.full(len(keys), 0xFFFF, dtype=np.uint16)
    core.lookup_many(
        v4,
        core.jump_table_v4(v4),
        np.array(labels_v4, dtype=np.uint16),
        v6,
        core.jump_table_v6(v6),
        np.array(labels_v6, dtype=np.uint16),
        _v6(keys),
        status_array,
        out,
    )
    return out.tolist(), status_array.tolist()


def _lookup_model(
    case: tuple[list[int], list[int], list[int], list[int], list[int], list[int]],
) -> tuple[list[int], list[int]]:
    starts_v4, labels_v4, starts_v6, labels_v6, keys, status = case
    labels: list[int] = []
    statuses: list[int] = []
    for key, status_in in zip(keys, status, strict=True):
        if status_in != Status.OK:
            labels.append(0)
            statuses.append(status_in)
            continue
        if key >> 32 == IPV4_MAPPED_PREFIX >> 32:
            label = labels_v4[_model(starts_v4, key & IPV4_MAX)]
        else:
            label = labels_v6[_model(starts_v6, key)]
        labels.append(label)
        statuses.append(Status.NOT_FOUND if label == 0 else Status.OK)
    return labels, statuses


@given(_lookup_cases())
def test_twin_lookup_many_matches_model(
    case: tuple[list[int], list[int], list[int], list[int], list[int], list[int]],
) -> None:
    assert _lookup(_search_py, case) == _lookup_model(case)


@_needs_c
@given(_lookup_cases())
def test_c_matches_twin_lookup_many(
    case: tuple[list[int], list[int], list[int], list[int], list[int], list[int]],
) -> None:
    assert _search_c is not None
    assert _lookup(_search_c, case) == _lookup(_search_py, case)


# --- answer_many and its relatives: reserved marking by /16 flags, names out ---------------

_Answer = tuple[list[int], list[int]]
# A reserved table's starts, its 0/1 flag per segment, and its flag per /16.
_Side = tuple[list[int], list[int], npt.NDArray[np.uint8]]
# The data's IPv4 starts and labels, its IPv6 ones, and the reserved side of each family.
_Tables = tuple[list[int], list[int], list[int], list[int], _Side, _Side]


@st.composite
def _reserved_side(draw: st.DrawFn, top: int, keys: list[int], shift: int) -> _Side:
    """A reserved table (starts, a 0/1 flag per segment) and its /16 flags.

    The /16 flags are drawn per /16 the keys fall in (0 none, 1 all, 2 or above: search),
    not derived from the table: the core must follow them as given.
    """
    starts = draw(_tables(top))
    rng = random.Random(draw(st.integers(0, 2**32)))
    flags = [rng.randrange(2) for _ in starts]
    prefixes = np.zeros(1 << 16, dtype=np.uint8)
    for key in keys:
        prefixes[key >> shift] = rng.choice([0, 0, 1, 2, 2, 2, 255])
    return starts, flags, prefixes


@st.composite
def _answer_cases(draw: st.DrawFn) -> tuple[_Tables, list[int], list[int]]:
    """Draw the answer tables (data and reserved, both families) and a batch of keys."""
    starts_v4, labels_v4, starts_v6, labels_v6, keys, status = draw(_lookup_cases())
    v4_keys = [key & IPV4_MAX for key in keys if key >> 32 == IPV4_MAPPED_PREFIX >> 32]
    v6_keys = [key for key in keys if key >> 32 != IPV4_MAPPED_PREFIX >> 32]
    reserved_v4 = draw(_reserved_side(IPV4_MAX, v4_keys, 16))
    reserved_v6 = draw(_reserved_side(IPV6_MAX, v6_keys, 112))
    tables: _Tables = (starts_v4, labels_v4, starts_v6, labels_v6, reserved_v4, reserved_v6)
    return tables, keys, status


def _answer_arrays(core: ModuleType, tables: _Tables) -> list[npt.NDArray[np.generic]]:
    starts_v4, labels_v4, starts_v6, labels_v6, reserved_v4, reserved_v6 = tables
    v4 = np.array(starts_v4, dtype=np.uint32)
    v6 = _v6(starts_v6)
    r4_starts, r4_flags, r4_prefixes = reserved_v4
    r6_starts, r6_flags, r6_prefixes = reserved_v6
    r4 = np.array(r4_starts, dtype=np.uint32)
    r6 = _v6(r6_starts)
    return [
        v4,
        core.jump_table_v4(v4),
        np.array(labels_v4, dtype=np.uint16),
        v6,
        core.jump_table_v6(v6),
        np.array(labels_v6, dtype=np.uint16),
        r4,
        core.jump_table_v4(r4),
        np.array(r4_flags, dtype=np.uint8),
        r4_prefixes,
        r6,
        core.jump_table_v6(r6),
        np.array(r6_flags, dtype=np.uint8),
        r6_prefixes,
    ]


def _answer(core: ModuleType, case: tuple[_Tables, list[int], list[int]]) -> _Answer:
    tables, keys, status = case
    status_array = np.array(status, dtype=np.uint8)
    out = np.full(len(keys), 0xFFFF, dtype=np.uint16)
    core.answer_many(*_answer_arrays(core, tables), _v6(keys), status_array, out)
    return out.tolist(), status_array.tolist()


def _reserved_model(side: _Side, key: int, shift: int) -> int:
    starts, flags, prefixes = side
    flag = int(prefixes[key >> shift])
    if flag > 1:
        return int(flags[_model(starts, key)] != 0)
    return flag


def _answer_model(case: tuple[_Tables, list[int], list[int]]) -> _Answer:
    tables, keys, status = case
    starts_v4, labels_v4, starts_v6, labels_v6, reserved_v4, reserved_v6 = tables
    labels, statuses = _lookup_model((starts_v4, labels_v4, starts_v6, labels_v6, keys, status))
    for i, key in enumerate(keys):
        if statuses[i] == Status.INVALID_ADDRESS:
            continue
        if key >> 32 == IPV4_MAPPED_PREFIX >> 32:
            flag = _reserved_model(reserved_v4, key & IPV4_MAX, 16)
        else:
            flag = _reserved_model(reserved_v6, key, 112)
        if flag:
            labels[i], statuses[i] = 0, Status.RESERVED
    return labels, statuses


@given(_answer_cases())
def test_twin_answer_many_matches_model(
    case: tuple[_Tables, list[int], list[int]],
) -> None:
    assert _answer(_search_py, case) == _answer_model(case)


@_needs_c
@given(_answer_cases())
def test_c_matches_twin_answer_many(case: tuple[_Tables, list[int], list[int]]) -> None:
    assert _search_c is not None
    assert _answer(_search_c, case) == _answer(_search_py, case)


def _answer_v4(core: ModuleType, case: tuple[_Tables, list[int], list[int]]) -> _Answer:
    """answer_many_v4 on the case's IPv4 keys (its mapped keys, as uint32)."""
    tables, keys, _ = case
    arrays = _answer_arrays(core, tables)
    v4_keys = np.array(
        [key & IPV4_MAX for key in keys if key >> 32 == IPV4_MAPPED_PREFIX >> 32], dtype=np.uint32
    )
    out = np.full(v4_keys.shape[0], 0xFFFF, dtype=np.uint16)
    status = np.zeros(v4_keys.shape[0], dtype=np.uint8)
    core.answer_many_v4(*arrays[:3], *arrays[6:10], v4_keys, out, status)
    return out.tolist(), status.tolist()


def _v4_only(case: tuple[_Tables, list[int], list[int]]) -> _Answer:
    tables, keys, _ = case
    mapped = [key for key in keys if key >> 32 == IPV4_MAPPED_PREFIX >> 32]
    return _answer_model((tables, mapped, [Status.OK] * len(mapped)))


@given(_answer_cases())
def test_twin_answer_many_v4_matches_model(
    case: tuple[_Tables, list[int], list[int]],
) -> None:
    assert _answer_v4(_search_py, case) == _v4_only(case)


@_needs_c
@given(_answer_cases())
def test_c_matches_twin_answer_many_v4(
    case: tuple[_Tables, list[int], list[int]],
) -> None:
    assert _search_c is not None
    assert _answer_v4(_search_c, case) == _answer_v4(_search_py, case)


def _packed_v6(core: ModuleType, case: tuple[_Tables, list[int], list[int]], seed: int) -> _Answer:
    tables, keys, _ = case
    codes = np.random.default_rng(seed).permutation(1 << 16).astype(np.uint16)
    out = np.zeros(len(keys), dtype=np.uint16)
    status = np.zeros(len(keys), dtype=np.uint8)
    packed = b"".join(key.to_bytes(16, "big") for key in keys)
    core.answer_packed_v6(*_answer_arrays(core, tables), codes, packed, out, status)
    return out.tolist(), status.tolist()


@given(_answer_cases(), st.integers(0, 2**32))
def test_twin_answer_packed_v6_matches_model(
    case: tuple[_Tables, list[int], list[int]], seed: int
) -> None:
    tables, keys, _ = case
    labels, status = _answer_model((tables, keys, [Status.OK] * len(keys)))
    codes = np.random.default_rng(seed).permutation(1 << 16).astype(np.uint16)
    assert _packed_v6(_search_py, case, seed) == (codes[labels].tolist(), status)


@_needs_c
@given(_answer_cases(), st.integers(0, 2**32))
def test_c_matches_twin_answer_packed_v6(
    case: tuple[_Tables, list[int], list[int]], seed: int
) -> None:
    assert _search_c is not None
    assert _packed_v6(_search_c, case, seed) == _packed_v6(_search_py, case, seed)


def _gather(core: ModuleType, names: tuple[object, ...], labels: list[int]) -> object:
    """The names, or the error's type and message."""
    try:
        result: object = core.gather_names(names, np.array(labels, dtype=np.uint16))
    except ValueError as exc:
        return ValueError, str(exc)
    return result


@st.composite
def _gather_cases(draw: st.DrawFn) -> tuple[tuple[object, ...], list[int]]:
    size = draw(st.sampled_from([0, 1, 3, 256, 1 << 16]))
    names = tuple(f"n{i}" for i in range(size))
    top = min(draw(st.sampled_from([max(size - 1, 0), size, 0xFFFF])), 0xFFFF)
    labels = draw(st.lists(st.integers(0, top), max_size=700))
    return names, labels


@given(_gather_cases())
@example(((), []))
@example(((None,), [0] * 600 + [1]))
def test_twin_gather_names_matches_model(case: tuple[tuple[object, ...], list[int]]) -> None:
    names, labels = case
    beyond = [label for label in labels if label >= len(names)]
    if beyond:
        message = f"label {beyond[0]} has no name: there are {len(names)} names"
        assert _gather(_search_py, names, labels) == (ValueError, message)
    else:
        assert _gather(_search_py, names, labels) == [names[label] for label in labels]


@_needs_c
@given(_gather_cases())
@example(((None,), [0] * 600 + [1]))
def test_c_matches_twin_gather_names(case: tuple[tuple[object, ...], list[int]]) -> None:
    assert _search_c is not None
    names, labels = case
    assert _gather(_search_c, names, labels) == _gather(_search_py, names, labels)
