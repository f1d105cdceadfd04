"""Building range tables from overlapping ranges, checked against the row-scanning model."""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from reference import ReferenceRanges

from lookupd.core.constants import IPV4_MAX, IPV6_MAX
from lookupd.core.table import IPVersion, RangeTable, build_table
from lookupd.errors import InvalidTableError

Row = tuple[int, int, int]


def _build(version: IPVersion, rows: list[Row]) -> RangeTable:
    return build_table(version, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


def _label_at(table: RangeTable, address: int) -> int:
    starts = table.start_ints()
    return int(table.labels[bisect_right(starts, address) - 1])


def _reference(rows: list[Row]) -> ReferenceRanges:
    return ReferenceRanges([(s, e, str(label)) for s, e, label in rows])


def _expected(model: ReferenceRanges, address: int) -> int:
    label = model.label_at(address)
    return 0 if label is None else int(label)


def _check_against_model(version: IPVersion, rows: list[Row], queries: list[int]) -> None:
    last = IPV4_MAX if version == 4 else IPV6_MAX
    table = _build(version, rows)
    model = _reference(rows)
    points = {0, last, *queries} | {p for p in model.edges() if 0 <= p <= last}
    for address in sorted(points):
        assert _label_at(table, address) == _expected(model, address), hex(address)
    # Merged: no two neighbouring segments share a label.
    labels = table.labels
    assert not np.any(labels[1:] == labels[:-1])


@st.composite
def _rows(draw: st.DrawFn, last: int) -> list[Row]:
    """Ranges crowded into a few small windows so nesting and partial overlaps are common."""
    anchors = draw(
        st.lists(st.one_of(st.just(0), st.just(last), st.integers(0, last)), min_size=1, max_size=3)
    )
    rows = []
    for _ in range(draw(st.integers(0, 25))):
        anchor = draw(st.sampled_from(anchors))
        a = min(last, max(0, anchor + draw(st.integers(-40, 40))))
        b = min(last, max(0, a + draw(st.integers(0, 60))))
        rows.append((a, b, draw(st.integers(0, 4))))
    return rows


@given(rows=_rows(IPV4_MAX), queries=st.lists(st.integers(0, IPV4_MAX), max_size=20))
@example(rows=[(10, 20, 1), (12, 15, 2), (14, 30, 3)], queries=[])
@example(rows=[(0, IPV4_MAX, 1), (0, IPV4_MAX, 2)], queries=[])
@example(rows=[(5, 9, 1), (5, 7, 2), (5, 9, 3)], queries=[])
def test_ipv4_table_matches_model(rows: list[Row], queries: list[int]) -> None:
    _check_against_model(4, rows, queries)


@given(rows=_rows(IPV6_MAX), queries=st.lists(st.integers(0, IPV6_MAX), max_size=20))
@example(
    rows=[(IPV6_MAX - 5, IPV6_MAX, 1), (0, 1 << 64, 2), ((1 << 64) - 1, 1 << 64, 3)], queries=[]
)
def test_ipv6_table_matches_model(rows: list[Row], queries: list[int]) -> None:
    _check_against_model(6, rows, queries)


# (rows, [(address, expected label)]) -- the overlap rule spelled out case by case.
_CASES: list[tuple[str, list[Row], list[tuple[int, int]]]] = [
    ("empty data is one unknown segment", [], [(0, 0), (IPV4_MAX, 0)]),
    (
        "gap before, between and after",
        [(10, 19, 1), (30, 39, 2)],
        [(9, 0), (10, 1), (19, 1), (20, 0), (29, 0), (30, 2), (39, 2), (40, 0)],
    ),
    (
        "nested: most specific wins",
        [(0, 99, 1), (40, 49, 2)],
        [(39, 1), (40, 2), (49, 2), (50, 1), (99, 1)],
    ),
    (
        "nested, inner row first in the file",
        [(40, 49, 2), (0, 99, 1)],
        [(39, 1), (40, 2), (49, 2), (50, 1)],
    ),
    (
        "partial overlap: greater start wins",
        [(0, 50, 1), (40, 99, 2)],
        [(39, 1), (40, 2), (50, 2), (99, 2)],
    ),
    (
        "equal starts: narrowest wins",
        [(10, 20, 1), (10, 15, 2)],
        [(10, 2), (15, 2), (16, 1), (20, 1)],
    ),
    ("identical rows: later row wins", [(10, 20, 1), (10, 20, 2)], [(10, 2), (20, 2)]),
    ("adjacent same label merged", [(0, 9, 1), (10, 19, 1)], [(0, 1), (19, 1), (20, 0)]),
    ("whole space", [(0, IPV4_MAX, 3)], [(0, 3), (IPV4_MAX, 3)]),
    (
        "single addresses at both ends",
        [(0, 0, 1), (IPV4_MAX, IPV4_MAX, 2)],
        [(0, 1), (1, 0), (IPV4_MAX - 1, 0), (IPV4_MAX, 2)],
    ),
    (
        "three-deep nesting",
        [(0, 100, 1), (10, 90, 2), (20, 30, 3)],
        [(9, 1), (10, 2), (19, 2), (20, 3), (31, 2), (91, 1)],
    ),
    (
        "label 0 paints unknown over a wider range",
        [(0, 100, 1), (50, 60, 0)],
        [(49, 1), (50, 0), (60, 0), (61, 1)],
    ),
]


@pytest.mark.parametrize(("rows", "answers"), [c[1:] for c in _CASES], ids=[c[0] for c in _CASES])
def test_overlap_rule_cases(rows: list[Row], answers: list[tuple[int, int]]) -> None:
    table = _build(4, rows)
    for address, label in answers:
        assert _label_at(table, address) == label, address


def test_segments_cover_the_space_in_order() -> None:
    table = _build(6, [(5, 9, 1), (IPV6_MAX - 1, IPV6_MAX, 2)])
    assert table.segments() == [
        (0, 4, 0),
        (5, 9, 1),
        (10, IPV6_MAX - 2, 0),
        (IPV6_MAX - 1, IPV6_MAX, 2),
    ]
    assert table.starts.dtype == np.uint64
    assert table.starts.shape == (4, 2)


@pytest.mark.parametrize(
    ("version", "row", "message"),
    [
        (4, (20, 10, 1), "row 0: invalid IPv4 range 20..10"),
        (4, (0, IPV4_MAX + 1, 1), "row 0: invalid IPv4 range"),
        (6, (-1, 5, 1), "row 0: invalid IPv6 range"),
        (6, (0, IPV6_MAX + 1, 1), "row 0: invalid IPv6 range"),
    ],
)
def test_bad_rows_are_refused(version: IPVersion, row: Row, message: str) -> None:
    with pytest.raises(InvalidTableError, match=message):
        _build(version, [row])


@pytest.mark.parametrize(
    ("starts", "labels", "message"),
    [
        ([], [], "empty"),
        ([1, 5], [1, 2], "does not start at address 0"),
        ([0, 5, 5], [1, 2, 3], "not strictly increasing at segment 2"),
        ([0, 5], [1], "2 starts but 1 labels"),
    ],
)
def test_from_arrays_verifies(starts: list[int], labels: list[int], message: str) -> None:
    with pytest.raises(InvalidTableError, match=message):
        RangeTable.from_arrays(4, starts, labels)


def test_from_arrays_verifies_ipv6_order() -> None:
    with pytest.raises(InvalidTableError, match="not strictly increasing at segment 2"):
        RangeTable.from_arrays(6, [[0, 0], [1, 0], [0, 7]], [0, 1, 2])
