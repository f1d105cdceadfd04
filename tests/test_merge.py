"""Merging sources by precedence, counting addresses per label, and diffing two tables."""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
from bisect import bisect_right
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import ReferenceRanges

from lookupd.core.constants import IPV4_MAX, IPV6_MAX
from lookupd.core.table import IPVersion, RangeTable, Tables
from lookupd.datafiles.merge import address_totals, diff, merge_sources, overlay
from lookupd.datafiles.rows import RangeRows
from lookupd.errors import DataFormatError

_Row = tuple[str, str, str]


def _int(address: str) -> int:
    return int(ipaddress.ip_address(address))


def _tables(rows: list[_Row]) -> Tables:
    """Build one source's tables from inclusive (first, last, label) text rows."""
    found = RangeRows()
    for first, last, label in rows:
        version: IPVersion = 4 if ipaddress.ip_address(first).version == 4 else 6
        found.add(version, _int(first), _int(last), label)
    v4, v6 = found.tables()
    return Tables(v4, v6, tuple(found.label_names))


def _segments(tables: Tables, version: IPVersion) -> list[tuple[str, str, str]]:
    """Return a family's segments as (first, last, label) text, '' for unknown."""
    table = tables.table(version)
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return [
        (str(make(first)), str(make(last)), tables.label_names[label])
        for first, last, label in table.segments()
    ]


def _label_at(tables: Tables, version: IPVersion, address: int) -> str:
    table = tables.table(version)
    index = bisect_right(table.start_ints(), address) - 1
    return tables.label_names[int(table.labels[index])]


# ---------------------------------------------------------------------------------------
# overlay: precedence on known tables


def test_later_source_wins_where_it_overlaps() -> None:
    base = _tables([("1.0.0.0", "1.0.0.255", "AU"), ("2001:db8::", "2001:db8::ffff", "US")])
    fixes = _tables([("1.0.0.128", "1.0.1.9", "NZ"), ("2001:db8::8000", "2001:db8::8000", "CA")])
    merged = overlay([base, fixes])
    assert _segments(merged, 4) == [
        ("0.0.0.0", "0.255.255.255", ""),
        ("1.0.0.0", "1.0.0.127", "AU"),
        ("1.0.0.128", "1.0.1.9", "NZ"),
        ("1.0.1.10", "255.255.255.255", ""),
    ]
    assert _segments(merged, 6) == [
        ("::", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", ""),
        ("2001:db8::", "2001:db8::7fff", "US"),
        ("2001:db8::8000", "2001:db8::8000", "CA"),
        ("2001:db8::8001", "2001:db8::ffff", "US"),
        ("2001:db8::1:0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ""),
    ]
    # The earlier source, given later, wins instead.
    reversed_order = overlay([fixes, base])
    assert _label_at(reversed_order, 4, _int("1.0.0.200")) == "AU"
    assert _label_at(reversed_order, 4, _int("1.0.1.5")) == "NZ"
    assert _label_at(reversed_order, 6, _int("2001:db8::8000")) == "US"


def test_later_gaps_do_not_erase_earlier_data() -> None:
    base = _tables([("1.0.0.0", "1.0.0.255", "AU"), ("2.0.0.0", "2.0.0.255", "US")])
    fixes = _tables([("1.0.0.5", "1.0.0.5", "NZ"), ("2a00::", "2a00::1", "FR")])
    merged = overlay([base, fixes])
    assert _segments(merged, 4) == [
        ("0.0.0.0", "0.255.255.255", ""),
        ("1.0.0.0", "1.0.0.4", "AU"),
        ("1.0.0.5", "1.0.0.5", "NZ"),
        ("1.0.0.6", "1.0.0.255", "AU"),
        ("1.0.1.0", "1.255.255.255", ""),
        ("2.0.0.0", "2.0.0.255", "US"),
        ("2.0.1.0", "255.255.255.255", ""),
    ]
    # The base has no IPv6 at all: the fixes' IPv6 is all there is.
    assert _segments(merged, 6) == [
        ("::", "29ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ""),
        ("2a00::", "2a00::1", "FR"),
        ("2a00::2", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ""),
    ]


@pytest.mark.parametrize(
    ("base", "fix", "expected"),
    [
        pytest.param(
            [("0.0.0.0", "255.255.255.255", "AA")],
            [("0.0.0.0", "0.0.0.0", "BB"), ("255.255.255.255", "255.255.255.255", "CC")],
            [
                ("0.0.0.0", "0.0.0.0", "BB"),
                ("0.0.0.1", "255.255.255.254", "AA"),
                ("255.255.255.255", "255.255.255.255", "CC"),
            ],
            id="ipv4-first-and-last-address",
        ),
        pytest.param(
            [("0.0.0.0", "0.0.0.0", "AA"), ("255.255.255.255", "255.255.255.255", "AA")],
            [("0.0.0.1", "255.255.255.254", "AA")],
            [("0.0.0.0", "255.255.255.255", "AA")],
            id="ipv4-equal-labels-fill-the-space",
        ),
        pytest.param(
            [("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "AA")],
            [("::", "::", "BB"), ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",) * 2 + ("CC",)],
            [
                ("::", "::", "BB"),
                ("::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", "AA"),
                (
                    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                    "CC",
                ),
            ],
            id="ipv6-first-and-last-address",
        ),
        pytest.param(
            [("::", "0:0:0:0:ffff:ffff:ffff:ffff", "AA")],
            [("0:0:0:0:ffff:ffff:ffff:ffff", "0:0:0:1::", "BB")],
            [
                ("::", "::ffff:ffff:ffff:fffe", "AA"),
                ("::ffff:ffff:ffff:ffff", "0:0:0:1::", "BB"),
                ("::1:0:0:0:1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ""),
            ],
            id="ipv6-across-the-64-bit-halves",
        ),
    ],
)
def test_edges(base: list[_Row], fix: list[_Row], expected: list[_Row]) -> None:
    version: IPVersion = 4 if "." in base[0][0] else 6
    merged = overlay([_tables(base), _tables(fix)])
    assert _segments(merged, version) == expected


def test_identical_labels_merge_into_one_segment() -> None:
    base = _tables([("1.0.0.0", "1.0.0.255", "AU"), ("1.0.2.0", "1.0.2.255", "AU")])
    fixes = _tables([("1.0.1.0", "1.0.1.255", "AU"), ("1.0.0.10", "1.0.0.20", "AU")])
    merged = overlay([base, fixes])
    assert _segments(merged, 4) == [
        ("0.0.0.0", "0.255.255.255", ""),
        ("1.0.0.0", "1.0.2.255", "AU"),
        ("1.0.3.0", "255.255.255.255", ""),
    ]


def test_three_layers_last_known_wins() -> None:
    layers = [
        _tables([("10.0.0.0", "10.0.0.99", "AA")]),
        _tables([("10.0.0.50", "10.0.0.149", "BB")]),
        _tables([("10.0.0.90", "10.0.0.109", "CC")]),
    ]
    merged = overlay(layers)
    assert _segments(merged, 4)[1:-1] == [
        ("10.0.0.0", "10.0.0.49", "AA"),
        ("10.0.0.50", "10.0.0.89", "BB"),
        ("10.0.0.90", "10.0.0.109", "CC"),
        ("10.0.0.110", "10.0.0.149", "BB"),
    ]


def test_label_table_is_canonical() -> None:
    # Labels sorted, the unknown label first; a label overridden everywhere is gone.
    base = _tables([("1.0.0.0", "1.0.0.255", "ZZ"), ("2.0.0.0", "2.0.0.0", "GONE")])
    fixes = _tables([("2.0.0.0", "2.0.0.0", "AA"), ("::1", "::1", "MM")])
    merged = overlay([base, fixes])
    assert merged.label_names == ("", "AA", "MM", "ZZ")
    # The same answers from differently ordered label tables give the same arrays.
    again = overlay([base, _tables([("::1", "::1", "MM"), ("2.0.0.0", "2.0.0.0", "AA")])])
    assert again.label_names == ("", "AA", "MM", "ZZ")
    for version in (4, 6):
        np.testing.assert_array_equal(again.table(version).labels, merged.table(version).labels)


def test_overlay_of_one_layer_keeps_its_answers() -> None:
    layer = _tables([("1.0.0.0", "1.0.0.255", "BB"), ("2.0.0.0", "2.0.0.255", "AA")])
    merged = overlay([layer])
    assert _segments(merged, 4) == _segments(layer, 4)
    assert merged.label_names == ("", "AA", "BB")


def test_overlay_needs_a_layer() -> None:
    with pytest.raises(ValueError, match="at least one"):
        overlay([])


# ---------------------------------------------------------------------------------------
# overlay: property against a per-address model of the raw rows

# Small regions where sources collide: both ends of each space and the 64-bit seam of IPv6.
_REGIONS: dict[IPVersion, list[int]] = {
    4: [0, 1 << 24, IPV4_MAX - 63],
    6: [0, (1 << 64) - 32, IPV6_MAX - 63],
}
_LABELS = st.sampled_from(["AA", "BB", "CC", "DD"])


@st.composite
def _rows(draw: st.DrawFn, version: IPVersion) -> list[tuple[int, int, str]]:
    base = draw(st.sampled_from(_REGIONS[version]))
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        first = base + draw(st.integers(0, 63))
        last = min(first + draw(st.integers(0, 20)), base + 63)
        rows.append((first, last, draw(_LABELS)))
    return rows


def _tables_from_ints(v4: list[tuple[int, int, str]], v6: list[tuple[int, int, str]]) -> Tables:
    found = RangeRows()
    for version, rows in ((4, v4), (6, v6)):
        for first, last, label in rows:
            found.add(version, first, last, label)  # type: ignore[arg-type]
    table_v4, table_v6 = found.tables()
    return Tables(table_v4, table_v6, tuple(found.label_names))


@given(st.lists(st.tuples(_rows(4), _rows(6)), min_size=1, max_size=4))
def test_overlay_matches_a_per_address_model(
    layers: list[tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]]],
) -> None:
    merged = overlay([_tables_from_ints(v4, v6) for v4, v6 in layers])
    for index, version in enumerate((4, 6)):
        family: IPVersion = 4 if version == 4 else 6
        references = [ReferenceRanges(layer[index]) for layer in layers]
        points = {0, IPV4_MAX if version == 4 else IPV6_MAX}
        for reference in references:
            points |= {p for p in reference.edges() if 0 <= p <= max(points)}
        for address in sorted(points):
            expected = ""
            for reference in references:
                expected = reference.label_at(address) or expected
            assert _label_at(merged, family, address) == expected, (version, address)
        table = merged.table(family)
        labels = table.labels.tolist()
        assert all(a != b for a, b in itertools.pairwise(labels)), "not coalesced"
    assert list(merged.label_names) == ["", *sorted(set(merged.label_names[1:]))]


# ---------------------------------------------------------------------------------------
# merge_sources: files


def test_merge_sources_reads_and_records(tmp_path: Path) -> None:
    base = tmp_path / "base.csv"
    base.write_text("1.0.0.0,1.0.0.255,AU\n2001:db8::,2001:db8::ff,US\n")
    fixes = tmp_path / "fixes.csv"
    fixes.write_text("1.0.0.7,1.0.0.7,NZ\n")
    merged = merge_sources([base, fixes])
    assert _label_at(merged.tables, 4, _int("1.0.0.7")) == "NZ"
    assert _label_at(merged.tables, 4, _int("1.0.0.8")) == "AU"
    assert _label_at(merged.tables, 6, _int("2001:db8::1")) == "US"
    assert [s.name for s in merged.sources] == [str(base), str(fixes)]
    assert [s.format for s in merged.sources] == ["location-csv", "location-csv"]
    assert merged.sources[0].rows == (1, 1)
    assert merged.sources[0].size == base.stat().st_size
    assert merged.rows == (2, 1)
    assert merged.sources[1].sha256 == hashlib.sha256(fixes.read_bytes()).hexdigest()


def test_a_snapshot_is_a_snapshot_whatever_the_format_says(tmp_path: Path) -> None:
    """``--format location-csv`` given once for a snapshot and a corrections file: the
    snapshot is still read as one (it was read as text before, and refused as binary)."""
    from lookupd.datafiles.snapshot import FORMAT, write_snapshot

    base = tmp_path / "base.csv"
    base.write_text("1.0.0.0,1.0.0.255,AU\n")
    snapshot = tmp_path / "base.lkd"
    write_snapshot(snapshot, merge_sources([base]).tables)
    fixes = tmp_path / "fixes.csv"
    fixes.write_text("start,end,country_code\n1.0.0.7,1.0.0.7,NZ\n")
    merged = merge_sources([snapshot, fixes], formats=["location-csv", "location-csv"])
    assert [s.format for s in merged.sources] == [FORMAT, "location-csv"]
    assert _label_at(merged.tables, 4, _int("1.0.0.7")) == "NZ"
    assert _label_at(merged.tables, 4, _int("1.0.0.8")) == "AU"


def test_merge_sources_refuses_a_bad_source(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("1.0.0.0,1.0.0.300,AU\n")
    with pytest.raises(DataFormatError, match=r"bad\.csv"):
        merge_sources([bad])


# ---------------------------------------------------------------------------------------
# address_totals


def test_address_totals_known() -> None:
    tables = _tables(
        [
            ("1.0.0.0", "1.0.0.255", "AU"),
            ("1.0.2.0", "1.0.2.15", "AU"),
            ("255.255.255.0", "255.255.255.255", "NZ"),
            ("2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "US"),
            ("ffff::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "NZ"),
        ]
    )
    names = tables.label_names
    v4 = {names[k]: v for k, v in address_totals(tables.v4).items()}
    v6 = {names[k]: v for k, v in address_totals(tables.v6).items()}
    assert v4 == {"AU": 256 + 16, "NZ": 256, "": (1 << 32) - 528}
    assert v6 == {"US": 1 << 96, "NZ": 1 << 112, "": (1 << 128) - (1 << 96) - (1 << 112)}


@pytest.mark.parametrize("version", [4, 6])
def test_address_totals_of_an_empty_table(version: IPVersion) -> None:
    assert address_totals(RangeTable.empty(version)) == {0: 1 << (32 if version == 4 else 128)}


@given(st.tuples(_rows(4), _rows(6)))
def test_address_totals_sum_segment_sizes(rows: tuple[list[tuple[int, int, str]], ...]) -> None:
    tables = _tables_from_ints(*rows)
    for table in (tables.v4, tables.v6):
        expected: dict[int, int] = {}
        for first, last, label in table.segments():
            expected[label] = expected.get(label, 0) + last - first + 1
        assert address_totals(table) == expected


# ---------------------------------------------------------------------------------------
# diff


def test_diff_known_tables() -> None:
    old = _tables(
        [
            ("1.0.0.0", "1.0.0.255", "AU"),
            ("2.0.0.0", "2.0.0.255", "US"),
            ("255.255.255.0", "255.255.255.255", "NZ"),
            ("2001:db8::", "2001:db8::ffff", "US"),
        ]
    )
    new = _tables(
        [
            ("1.0.0.0", "1.0.0.127", "AU"),
            ("1.0.0.128", "1.0.0.255", "NZ"),
            ("2.0.0.0", "2.0.0.255", "US"),
            ("3.0.0.0", "3.0.0.9", "FR"),
            ("255.255.255.0", "255.255.255.255", "AU"),
            ("2001:db8::", "2001:db8::ffff", "DE"),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",) * 2 + ("FR",),
        ]
    )
    v4, v6 = diff(old, new)
    assert list(v4.ranges()) == [
        (_int("1.0.0.128"), _int("1.0.0.255"), "AU", "NZ"),
        (_int("3.0.0.0"), _int("3.0.0.9"), "", "FR"),
        (_int("255.255.255.0"), IPV4_MAX, "NZ", "AU"),
    ]
    assert v4.totals == {("AU", "NZ"): 128, ("NZ", "AU"): 256, ("", "FR"): 10}
    assert v4.addresses == 394
    assert list(v6.ranges()) == [
        (_int("2001:db8::"), _int("2001:db8::ffff"), "US", "DE"),
        (IPV6_MAX, IPV6_MAX, "", "FR"),
    ]
    assert v6.totals == {("US", "DE"): 65536, ("", "FR"): 1}
    assert list(v4.ranges(limit=1)) == list(v4.ranges())[:1]
    assert list(v4.ranges(limit=0)) == []
    # Backwards, every pair is reversed.
    back_v4, _ = diff(new, old)
    assert back_v4.totals == {("NZ", "AU"): 128, ("AU", "NZ"): 256, ("FR", ""): 10}


def test_diff_adjacent_changes_with_the_same_pair_are_one_range() -> None:
    old = _tables([("1.0.0.0", "1.0.0.9", "AA"), ("1.0.0.10", "1.0.0.19", "AA")])
    new = _tables([("1.0.0.0", "1.0.0.4", "BB"), ("1.0.0.5", "1.0.0.19", "BB")])
    v4, v6 = diff(old, new)
    assert list(v4.ranges()) == [(_int("1.0.0.0"), _int("1.0.0.19"), "AA", "BB")]
    assert len(v6) == 0


def test_diff_compares_labels_by_name() -> None:
    # Different label tables (order, unused labels), same answers: no difference.
    old = _tables([("1.0.0.0", "1.0.0.9", "BB"), ("2.0.0.0", "2.0.0.0", "AA")])
    new = _tables([("2.0.0.0", "2.0.0.0", "AA"), ("1.0.0.0", "1.0.0.9", "BB")])
    assert old.label_names != new.label_names
    v4, v6 = diff(old, new)
    assert len(v4) == len(v6) == 0
    assert v4.totals == v6.totals == {}


@given(st.tuples(_rows(4), _rows(6)), st.tuples(_rows(4), _rows(6)))
def test_diff_matches_a_segment_model(
    old_rows: tuple[list[tuple[int, int, str]], ...],
    new_rows: tuple[list[tuple[int, int, str]], ...],
) -> None:
    old, new = _tables_from_ints(*old_rows), _tables_from_ints(*new_rows)
    for family in diff(old, new):
        version = family.version
        last = IPV4_MAX if version == 4 else IPV6_MAX
        points = sorted(set(old.table(version).start_ints()) | set(new.table(version).start_ints()))
        expected: dict[tuple[str, str], int] = {}
        changed: list[tuple[int, int, str, str]] = []
        for first, following in zip(points, [*points[1:], last + 1], strict=True):
            pair = (_label_at(old, version, first), _label_at(new, version, first))
            if pair[0] != pair[1]:
                expected[pair] = expected.get(pair, 0) + following - first
                if changed and changed[-1][1] == first - 1 and changed[-1][2:] == pair:
                    changed[-1] = (changed[-1][0], following - 1, *pair)
                else:
                    changed.append((first, following - 1, *pair))
        assert family.totals == expected
        assert list(family.ranges()) == changed
