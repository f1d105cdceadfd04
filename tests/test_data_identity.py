"""One data set, one version id: the id depends only on what the data answers.

The id is the checksum of the tables in canonical form (labels sorted, unused labels
dropped, adjacent segments of one label joined), whatever format the data came in and
whatever order its sources named the labels in.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import subprocess
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from served import child_env

from lookupd.core.table import RangeTable, Tables
from lookupd.datafiles.data_version import data_version_of
from lookupd.datafiles.merge import merge_sources
from lookupd.datafiles.npz import load_compiled, save_compiled
from lookupd.datafiles.open import open_database
from lookupd.datafiles.rows import RangeRows
from lookupd.datafiles.snapshot import load_snapshot, payload_sha256, write_snapshot

_DATA = Path(__file__).parent / "data" / "geo-whois-asn-country"
_CSVS = sorted(_DATA.glob("geo-whois-asn-country-ipv*.csv.xz"))
_LABELS = ["US", "DE", "FR", "AU", "UA-43", "EU", "NZ"]


def _answers(tables: Tables, keys: list[int], version: int) -> list[str]:
    """The label name each key gets, by a plain scan (no search core involved)."""
    table = tables.table(4 if version == 4 else 6)
    starts = table.start_ints()
    out = []
    for key in keys:
        index = int(np.searchsorted(np.array(starts, dtype=object), key, side="right")) - 1
        out.append(tables.label_names[int(table.labels[index])])
    return out


_ranges = st.lists(
    st.tuples(
        st.integers(0, (1 << 32) - 1),
        st.integers(0, 1 << 20),
        st.sampled_from(_LABELS),
    ),
    min_size=1,
    max_size=12,
)


def _tables(ranges: list[tuple[int, int, str]], names_first: list[str]) -> Tables:
    """Tables of IPv4 ``ranges``, whose label table first lists ``names_first`` (some of
    them perhaps unused) in that order."""
    rows = RangeRows()
    for name in names_first:
        rows.label(name)
    for start, width, name in ranges:
        rows.add(4, start, min(start + width, (1 << 32) - 1), name)
    v4, v6 = rows.tables()
    return Tables(v4, v6, tuple(rows.label_names))


@settings(max_examples=60, deadline=None)
@given(_ranges, st.permutations(_LABELS), st.integers(0, len(_LABELS)))
def test_the_id_depends_only_on_the_answers(
    ranges: list[tuple[int, int, str]], order: list[str], unused: int
) -> None:
    plain = _tables(ranges, [])
    # The same ranges, the label table in another order and holding labels no range uses.
    shuffled = _tables(ranges, order[:unused])
    canonical = shuffled.canonical()
    assert canonical.label_names[0] == ""
    # Only the labels some address has (a later range may cover an earlier one whole).
    answered = {plain.label_names[code] for code in plain.v4.labels.tolist() if code}
    assert list(canonical.label_names[1:]) == sorted(answered)
    assert payload_sha256(plain) == payload_sha256(shuffled)
    keys = sorted({start for start, _, _ in ranges} | {0, (1 << 32) - 1, 1 << 31})
    assert _answers(canonical, keys, 4) == _answers(shuffled, keys, 4)


@settings(max_examples=40, deadline=None)
@given(_ranges, st.integers(1, (1 << 32) - 1))
def test_a_segment_split_in_two_keeps_the_id(ranges: list[tuple[int, int, str]], cut: int) -> None:
    tables = _tables(ranges, [])
    starts, labels = tables.v4.starts, tables.v4.labels
    if cut in set(starts.tolist()):
        return
    # Split the segment holding ``cut`` into two of the same label: same answers.
    at = int(np.searchsorted(starts, cut, side="right"))
    split = RangeTable.from_arrays(
        4, np.insert(starts, at, cut), np.insert(labels, at, labels[at - 1])
    )
    assert payload_sha256(Tables(split, tables.v6, tables.label_names)) == payload_sha256(tables)
    assert Tables(split, tables.v6, tables.label_names).canonical().v4.starts.tolist() == (
        tables.canonical().v4.starts.tolist()
    )


def test_canonical_tables_are_returned_as_they_are() -> None:
    tables = _tables([(10, 5, "DE"), (100, 5, "AU")], []).canonical()
    assert tables.canonical() is tables


def test_the_embedded_data_and_a_snapshot_of_its_sources_share_an_id(tmp_path: Path) -> None:
    embedded = data_version_of(open_database())
    snapshot = tmp_path / "data.lkd"
    merged = merge_sources(_CSVS)
    header = write_snapshot(snapshot, merged.tables, sources=merged.sources)
    assert header["payload_sha256"] == embedded.id
    assert load_snapshot(snapshot).data_version == embedded.id
    assert data_version_of(open_database(snapshot)).id == embedded.id
    # ... and the source files read directly, in either order.
    assert data_version_of(open_database(_CSVS[0])).id != embedded.id  # IPv4 only
    reversed_merge = merge_sources(list(reversed(_CSVS)))
    assert payload_sha256(reversed_merge.tables) == embedded.id
    # Same label codes too, so a packed answer means the same thing from either.
    db = open_database()
    assert db.label_names == load_snapshot(snapshot).label_names


def test_info_and_version_show_the_embedded_id(tmp_path: Path) -> None:
    embedded = data_version_of(open_database()).id
    snapshot = tmp_path / "data.lkd"
    merged = merge_sources(_CSVS)
    write_snapshot(snapshot, merged.tables, sources=merged.sources)

    def run(*args: str) -> str:
        command = [sys.executable, "-m", "lookupd", *args]
        done = subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert f"data version id: {embedded}\n" in run("info")
    assert f"data version id: {embedded}\n" in run("info", str(snapshot))
    assert json.loads(run("info", "--json"))["metadata"]["data_version"] == embedded
    assert f"data version id: {embedded}\n" in run("version")


def test_a_compiled_archive_is_written_and_read_canonical(tmp_path: Path) -> None:
    shuffled = _tables([(10, 5, "NZ"), (100, 5, "AU"), (300, 1, "DE")], ["FR", "NZ"])
    assert shuffled.label_names != shuffled.canonical().label_names
    path = tmp_path / "data.npz"
    save_compiled(path, shuffled.v4, shuffled.v6, shuffled.label_names, {"date": "2026-01-02"})
    v4, v6, names, _ = load_compiled(path)
    assert tuple(names) == ("", "AU", "DE", "NZ")
    assert payload_sha256(Tables(v4, v6, tuple(names))) == payload_sha256(shuffled)


def test_an_archive_written_in_another_order_is_read_canonical(tmp_path: Path) -> None:
    # An archive from before save_compiled wrote canonical tables (as the embedded one is):
    # written here by hand, labels in row order.
    shuffled = _tables([(0x0100_0000, 5, "NZ"), (0x0100_0100, 5, "AU")], [])  # 1.0.0.0, 1.0.1.0
    path = tmp_path / "old.npz"
    record = {"format": "lookupd-compiled-npz", "format_version": 1}
    with path.open("wb") as handle:
        np.savez_compressed(
            handle,
            v4_starts=np.diff(shuffled.v4.starts, prepend=np.uint32(0)),
            v4_labels=shuffled.v4.labels,
            v6_starts=shuffled.v6.starts,
            v6_labels=shuffled.v6.labels,
            label_names=np.array(shuffled.label_names, dtype=np.str_),
            metadata=np.frombuffer(json.dumps(record).encode(), dtype=np.uint8),
        )
    assert shuffled.label_names == ("", "NZ", "AU")
    assert load_compiled(path)[2] == ["", "AU", "NZ"]
    db = open_database(path)
    assert db.lookup(["1.0.0.2", "1.0.1.2"]).countries() == ["NZ", "AU"]
    assert data_version_of(db).id == payload_sha256(shuffled)


def test_the_vendored_csvs_are_what_the_embedded_data_was_built_from() -> None:
    # Guards the first test's premise: the CSVs read here are the embedded data's sources.
    metadata = open_database().info.metadata
    recorded = {source["name"]: source["sha256"] for source in metadata["sources"]}
    for path in _CSVS:
        digest = hashlib.sha256(lzma.decompress(path.read_bytes())).hexdigest()
        assert recorded[path.name.removesuffix(".xz")] == digest
