"""Snapshots: round trip, zero-copy mapping, atomic writes, and refusal of every bad file."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import lookupd
from lookupd import Database
from lookupd.core import _search
from lookupd.core.table import Tables
from lookupd.datafiles.private_copy import PrivateCopies
from lookupd.datafiles.rows import RangeRows
from lookupd.datafiles.snapshot import (
    FORMAT_VERSION,
    MAGIC,
    PAGE_BYTES,
    Snapshot,
    is_snapshot,
    load_snapshot,
    write_snapshot,
)
from lookupd.datafiles.sources import SourceInfo
from lookupd.errors import DataFormatError, LookupdError

_PREFIX = struct.Struct("<12sII32s")
_SOURCE = SourceInfo(
    "base.csv", "location-csv", 123, "ab" * 32, (4, 2), {"fallback": 3}, "2026-06-01", "given"
)
_ARRAY_NAMES = ["v4_starts", "v4_labels", "v4_jump", "v6_starts", "v6_labels", "v6_jump"]


def _small_tables() -> Tables:
    rows = RangeRows()
    rows.add(4, 0, 0, "AA")
    rows.add(4, 16777216, 16777471, "AU")  # 1.0.0.0/24
    rows.add(4, 16777472, 16777472, "EU")
    rows.add(4, 0xFFFF_FF00, 0xFFFF_FFFF, "NZ")
    rows.add(6, 0x2001_0DB8 << 96, (0x2001_0DB8 << 96) | 0xFFFF, "US")
    rows.add(6, (1 << 128) - 1, (1 << 128) - 1, "FR")
    v4, v6 = rows.tables()
    return Tables(v4, v6, tuple(rows.label_names))


def _write(path: Path, tables: Tables | None = None) -> dict[str, Any]:
    return write_snapshot(
        path,
        tables or _small_tables(),
        sources=[_SOURCE],
        notes={"fallback": 3},
        non_iso_labels=["EU"],
        created=datetime.datetime(2026, 6, 17, 12, 0, 0, tzinfo=datetime.timezone.utc),
    )


def _assert_same_tables(snapshot: Snapshot, tables: Tables) -> None:
    # A snapshot holds the canonical form (labels sorted): _small_tables() names them in
    # row order, so this compares against a relabelled copy, never the same object.
    tables = tables.canonical()
    assert snapshot.label_names == tables.label_names
    for loaded, original in ((snapshot.v4, tables.v4), (snapshot.v6, tables.v6)):
        np.testing.assert_array_equal(loaded.starts, original.starts)
        np.testing.assert_array_equal(loaded.labels, original.labels)
        np.testing.assert_array_equal(loaded.jump, original.jump)


@pytest.fixture(scope="module")
def snapshot_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("snapshot") / "small.lkd"
    _write(path)
    return path.read_bytes()


def _header_of(data: bytes) -> tuple[dict[str, Any], int]:
    _, _, length, _ = _PREFIX.unpack_from(data)
    return json.loads(data[_PREFIX.size : _PREFIX.size + length]), _PREFIX.size + length


def _rebuild(
    data: bytes,
    edit_header: Callable[[dict[str, Any]], None] | None = None,
    edit_payload: Callable[[bytearray, dict[str, Any]], None] | None = None,
    *,
    rehash_payload: bool = True,
) -> bytes:
    """Return ``data`` with its header and/or payload edited, checksums made valid again.

    The result is corrupt only in the way the edit makes it, so each check is tested alone.
    """
    header, _ = _header_of(data)
    offset = header["payload_offset"]
    payload = bytearray(data[offset:])
    if edit_payload is not None:
        edit_payload(payload, header)
        if rehash_payload:
            header["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    if edit_header is not None:
        edit_header(header)
    text = json.dumps(header).encode()
    assert _PREFIX.size + len(text) <= offset
    prefix = MAGIC + struct.pack("<II", FORMAT_VERSION, len(text))
    head = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(text), hashlib.sha256(prefix + text).digest())
    return (head + text).ljust(offset, b"\0") + bytes(payload)


def _refused(tmp_path: Path, data: bytes, match: str, *, verify: bool = True) -> str:
    path = tmp_path / "bad.lkd"
    path.write_bytes(data)
    with pytest.raises(DataFormatError, match=match) as info:
        load_snapshot(path, verify=verify)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


# ---------------------------------------------------------------------------------------
# round trip


def test_round_trip_small(tmp_path: Path) -> None:
    tables = _small_tables()
    path = tmp_path / "small.lkd"
    header = _write(path, tables)
    for verify in (True, False):
        snapshot = load_snapshot(path, verify=verify)
        _assert_same_tables(snapshot, tables)
        assert snapshot.header == header
        assert snapshot.path == path
    assert snapshot.data_version == header["payload_sha256"]
    assert snapshot.tables.label_names == tables.canonical().label_names


def test_header_records_the_build(tmp_path: Path) -> None:
    path = tmp_path / "small.lkd"
    _write(path)
    header = load_snapshot(path).header
    assert header["format"] == "lookupd-snapshot"
    assert header["format_version"] == FORMAT_VERSION
    assert header["created"] == "2026-06-17T12:00:00+00:00"
    assert header["lookupd_version"] == lookupd.__version__
    assert header["sources"] == [
        {
            "name": "base.csv",
            "format": "location-csv",
            "size": 123,
            "sha256": "ab" * 32,
            "rows": {"ipv4": 4, "ipv6": 2},
            "notes": {"fallback": 3},
            "date": "2026-06-01",
            "date_from": "given",
        }
    ]
    # The data's date is its sources' (the oldest), not the build's.
    assert (header["data_date"], header["data_date_from"]) == ("2026-06-01", "given")
    tables = _small_tables().canonical()
    assert header["counts"] == {
        "ipv4": {"rows": 4, "segments": len(tables.v4)},
        "ipv6": {"rows": 2, "segments": len(tables.v6)},
    }
    assert header["label_names"] == list(tables.label_names)
    assert header["non_iso_labels"] == ["EU"]
    assert header["notes"] == {"fallback": 3}
    assert header["file_size"] == path.stat().st_size
    for name, spec in header["arrays"].items():
        assert spec["offset"] % PAGE_BYTES == 0, name
    in_file_order = sorted(header["arrays"], key=lambda name: header["arrays"][name]["offset"])
    assert in_file_order == [*_ARRAY_NAMES, "label_names"]
    dtypes = [header["arrays"][name]["dtype"] for name in in_file_order]
    assert dtypes == ["<u4", "<u2", "<u4", "<u8", "<u2", "<u4", "|u1"]
    assert header["payload_offset"] == PAGE_BYTES


def test_metadata_for_database_info(tmp_path: Path) -> None:
    path = tmp_path / "small.lkd"
    header = _write(path)
    metadata = load_snapshot(path).metadata
    assert metadata["data_version"] == header["payload_sha256"]
    assert metadata["created"] == header["created"]
    assert metadata["sources"] == header["sources"]
    json.dumps(metadata)  # JSON-ready, for the service


def test_arrays_are_read_only_views_of_the_mapping(tmp_path: Path) -> None:
    path = tmp_path / "small.lkd"
    _write(path)
    snapshot = load_snapshot(path)
    for table in (snapshot.v4, snapshot.v6):
        for array in (table.starts, table.labels, table.jump):
            assert not array.flags.writeable
            assert not array.flags.owndata
            assert array.flags.c_contiguous
            with pytest.raises(ValueError, match="read-only"):
                array[0] = 1


def test_round_trip_real_data(tmp_path: Path) -> None:
    embedded = lookupd.open()
    tables = Tables(embedded.v4, embedded.v6, embedded.label_names)
    path = tmp_path / "real.lkd"
    _write(path, tables)
    snapshot = load_snapshot(path)
    _assert_same_tables(snapshot, tables)
    db = Database(snapshot.v4, snapshot.v6, snapshot.label_names)
    rng = np.random.default_rng(2026)
    keys = rng.integers(0, 1 << 32, 100_000, dtype=np.uint32)
    np.testing.assert_array_equal(db.lookup(keys).labels, embedded.lookup(keys).labels)
    samples = ["1.1.1.1", "8.8.8.8", "2001:4860:4860::8888", "2a00:1450::1", "::1", "10.0.0.1"]
    assert db.lookup(samples).countries() == embedded.lookup(samples).countries()
    assert [db.lookup_one(s) for s in samples] == [embedded.lookup_one(s) for s in samples]


def test_data_version_depends_only_on_the_answers(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a.lkd", tmp_path / "b.lkd", tmp_path / "c.lkd"
    version = _write(first)["payload_sha256"]
    # Another build time and other sources: the same data version.
    again = write_snapshot(second, _small_tables(), sources=[], notes={})
    assert again["payload_sha256"] == version
    assert first.read_bytes() != second.read_bytes()
    # Another label name for the same arrays: another data version.
    tables = _small_tables()
    renamed = Tables(tables.v4, tables.v6, ("", *(n.lower() for n in tables.label_names[1:])))
    assert write_snapshot(other, renamed)["payload_sha256"] != version


def test_jump_table_of_another_width_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A snapshot from a build whose jump width differs from this one's: its jump arrays are
    # not used; the loader derives its own.
    path = tmp_path / "small.lkd"
    tables = _small_tables()
    _write(path, tables)
    monkeypatch.setattr(_search, "JUMP_BITS_V4", 12)
    monkeypatch.setattr(_search, "JUMP_BITS_V6", 12)
    loaded = load_snapshot(path)
    assert loaded.v4.jump.flags.owndata or loaded.v4.jump.base is not None
    assert loaded.v4.jump.flags.writeable  # built here, not mapped
    np.testing.assert_array_equal(loaded.v4.jump, tables.v4.jump)


# ---------------------------------------------------------------------------------------
# writing


def test_write_replaces_atomically_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "data.lkd"
    _write(path)
    old = load_snapshot(path)
    embedded = lookupd.open()
    _write(path, Tables(embedded.v4, embedded.v6, embedded.label_names))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.lkd"]
    # A reader that mapped the old file keeps its data: the rename made a new inode.
    _assert_same_tables(old, _small_tables())
    assert len(load_snapshot(path).v4) == len(embedded.v4)


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "data.lkd"
    _write(path)
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(LookupdError, match=r"data\.lkd.*No space left"):
        _write(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.lkd"]


def test_write_into_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(LookupdError, match="cannot write snapshot"):
        _write(tmp_path / "missing" / "data.lkd")


def test_permissions(tmp_path: Path) -> None:
    path = tmp_path / "data.lkd"
    _write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    path.chmod(0o640)
    _write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_is_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "data.lkd"
    _write(path)
    assert is_snapshot(path)
    assert is_snapshot(str(path))
    text = tmp_path / "ranges.csv"
    text.write_text("1.0.0.0,1.0.0.255,AU\n")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert not is_snapshot(text)
    assert not is_snapshot(empty)
    assert not is_snapshot(tmp_path / "missing")
    assert not is_snapshot(tmp_path)


# ---------------------------------------------------------------------------------------
# refusing bad files


def test_refuses_other_files(tmp_path: Path) -> None:
    _refused(tmp_path, b"1.0.0.0,1.0.0.255,AU\n" * 10, "not a lookupd snapshot")
    _refused(tmp_path, b"PK\x03\x04" + bytes(100), "not a lookupd snapshot")
    _refused(tmp_path, b"", "empty file")
    _refused(tmp_path, MAGIC[:5], "truncated snapshot")


def test_refuses_missing_files_and_directories(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="cannot read"):
        load_snapshot(tmp_path / "missing.lkd")
    with pytest.raises(DataFormatError, match="cannot read"):
        load_snapshot(tmp_path)


@pytest.mark.parametrize("version", [0, 2, 255, 0xFFFF_FFFF])
def test_refuses_other_format_versions(tmp_path: Path, snapshot_bytes: bytes, version: int) -> None:
    data = bytearray(snapshot_bytes)
    struct.pack_into("<I", data, len(MAGIC), version)
    message = _refused(tmp_path, bytes(data), "unsupported snapshot format version")
    assert f"version {version}" in message


def test_refuses_truncated_files(tmp_path: Path, snapshot_bytes: bytes) -> None:
    _, header_end = _header_of(snapshot_bytes)
    size = len(snapshot_bytes)
    for cut in (len(MAGIC), _PREFIX.size - 1, _PREFIX.size + 3, header_end, size - 1):
        message = _refused(tmp_path, snapshot_bytes[:cut], "truncated snapshot")
        assert f"{cut} bytes" in message
    for cut in (header_end + 1, PAGE_BYTES, size - PAGE_BYTES):
        _refused(tmp_path, snapshot_bytes[:cut], "truncated snapshot", verify=False)


def test_refuses_trailing_bytes(tmp_path: Path, snapshot_bytes: bytes) -> None:
    _refused(tmp_path, snapshot_bytes + b"\0", "after the end it declares")


def test_refuses_a_corrupt_header(tmp_path: Path, snapshot_bytes: bytes) -> None:
    _, header_end = _header_of(snapshot_bytes)
    for position in (_PREFIX.size, header_end - 1, _PREFIX.size - 1, 16):
        data = bytearray(snapshot_bytes)
        data[position] ^= 0x20
        _refused(tmp_path, bytes(data), "corrupt snapshot|truncated snapshot")


def test_refuses_a_corrupt_payload(tmp_path: Path, snapshot_bytes: bytes) -> None:
    header, _ = _header_of(snapshot_bytes)
    for name in (*_ARRAY_NAMES, "label_names"):
        data = bytearray(snapshot_bytes)
        data[header["arrays"][name]["offset"]] ^= 0x01
        _refused(tmp_path, bytes(data), "payload checksum mismatch")
    data = bytearray(snapshot_bytes)
    data[header["payload_offset"] + 7] ^= 0x01  # padding is covered too
    _refused(tmp_path, bytes(data), "payload checksum mismatch")


def _set(path: list[str], value: object) -> Callable[[dict[str, Any]], None]:
    def edit(header: dict[str, Any]) -> None:
        node = header
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set(["format"], "something-else"), "names format"),
        (_set(["format_version"], 2), "names format"),
        (_set(["payload_offset"], 100), "payload offset"),
        (_set(["payload_offset"], -4096), "not a byte count"),
        (_set(["file_size"], "big"), "not a byte count"),
        (_set(["payload_sha256"], None), "payload checksum"),
        (_set(["jump_bits"], {"ipv4": 16}), "jump_bits"),
        (_set(["sources"], {}), "'sources' is not a JSON list"),
        (_set(["created"], 12), "'created' is not a string"),
        (_set(["label_names"], ["AU", ""]), "label table"),
        (_set(["label_names"], ["", "AU", "AU"]), "label table"),
        (_set(["label_names"], []), "label table"),
        (_set(["arrays", "v4_jump"], None), "v4_jump"),
        (_set(["arrays", "v4_starts", "dtype"], ">u4"), "v4_starts"),
        (_set(["arrays", "v6_starts", "shape"], [3]), "v6_starts"),
        (_set(["arrays", "v4_labels", "offset"], 4095), "misplaced"),
        (_set(["arrays", "v4_labels", "offset"], 0), "misplaced"),
        (_set(["arrays", "v6_jump", "offset"], 1 << 40), "misplaced"),
        (_set(["arrays", "v4_starts", "shape"], [1 << 60]), "misplaced"),
        (_set(["arrays", "v4_labels", "shape"], [2]), "starts and labels differ"),
        (_set(["arrays", "v4_jump", "shape"], [3]), "jump"),
        (_set(["counts", "ipv6", "segments"], 1), "segment count"),
        (_set(["arrays"], {}), "must list the arrays"),
    ],
)
def test_refuses_a_header_with_bad_fields(
    tmp_path: Path, snapshot_bytes: bytes, edit: Callable[[dict[str, Any]], None], match: str
) -> None:
    # Each header is well-formed JSON with a valid checksum: only the field is wrong.
    _refused(tmp_path, _rebuild(snapshot_bytes, edit), match)


def test_refuses_a_header_that_is_not_an_object(tmp_path: Path, snapshot_bytes: bytes) -> None:
    header, _ = _header_of(snapshot_bytes)
    for text in (b"[1, 2]", b"\xff\xfe", b"{"):
        prefix = MAGIC + struct.pack("<II", FORMAT_VERSION, len(text))
        digest = hashlib.sha256(prefix + text).digest()
        head = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(text), digest)
        data = (head + text).ljust(header["payload_offset"], b"\0")
        data += snapshot_bytes[header["payload_offset"] :]
        _refused(tmp_path, data, "corrupt snapshot")


def _poke(name: str, index: int, value: int) -> Callable[[bytearray, dict[str, Any]], None]:
    """Overwrite element ``index`` of a payload array (raw little-endian bytes)."""

    def edit(payload: bytearray, header: dict[str, Any]) -> None:
        spec = header["arrays"][name]
        dtype = np.dtype(spec["dtype"])
        at = spec["offset"] - header["payload_offset"] + index * dtype.itemsize
        payload[at : at + dtype.itemsize] = np.array([value], dtype=dtype).tobytes()

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_poke("v4_starts", 0, 5), "does not start at address 0"),
        (_poke("v4_starts", 2, 1), "not strictly increasing"),
        (_poke("v6_starts", 4, 0), "not strictly increasing"),
        (_poke("v4_labels", 1, 999), "labels point past the label table"),
        (_poke("v6_labels", 0, 65535), "labels point past the label table"),
        (_poke("v4_jump", 300, 0), "jump table"),
        (_poke("v6_jump", 65536, 0), "jump table"),
    ],
)
def test_refuses_invalid_tables_under_a_valid_checksum(
    tmp_path: Path,
    snapshot_bytes: bytes,
    edit: Callable[[bytearray, dict[str, Any]], None],
    match: str,
) -> None:
    _refused(tmp_path, _rebuild(snapshot_bytes, edit_payload=edit), match)


def test_refuses_label_tables_that_disagree(tmp_path: Path, snapshot_bytes: bytes) -> None:
    header, _ = _header_of(snapshot_bytes)
    changed = list(header["label_names"])
    changed[1] = changed[1].lower()
    edit = _set(["label_names"], changed)
    _refused(tmp_path, _rebuild(snapshot_bytes, edit), "label tables differ")


# ---------------------------------------------------------------------------------------
# fuzzing: any damage is refused with DataFormatError, or the load is correct


def _check_damaged(tmp_path: Path, data: bytes, *, verify: bool) -> None:
    path = tmp_path / "fuzzed.lkd"
    path.write_bytes(data)
    message = ""
    try:
        snapshot = load_snapshot(path, verify=verify)
    except DataFormatError as exc:
        message = str(exc)
    if verify:  # a private copy is refused exactly when the file is, and leaves nothing
        refused = ""
        try:
            copy = PrivateCopies(tmp_path / "copies").load(path)
        except DataFormatError as exc:
            refused = str(exc)
        assert bool(refused) == bool(message), (refused, message)
        assert refused.startswith(str(path)) if refused else copy.tables is not None
        assert not list((tmp_path / "copies").glob(".tmp-*"))
    if message:
        assert "\n" not in message
        assert str(path) in message
        return
    if verify:
        _assert_same_tables(snapshot, _small_tables())


_FUZZ_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ_SETTINGS
@given(
    flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 255)), max_size=4),
    header_bias=st.booleans(),
    cut=st.none() | st.integers(0, 1 << 20),
    verify=st.booleans(),
)
@example(flips=[(12, 1)], header_bias=True, cut=None, verify=True)
@example(flips=[], header_bias=False, cut=60, verify=True)
def test_fuzz_flips_and_truncations(
    tmp_path: Path,
    snapshot_bytes: bytes,
    flips: list[tuple[int, int]],
    header_bias: bool,
    cut: int | None,
    verify: bool,
) -> None:
    data = bytearray(snapshot_bytes)
    _, header_end = _header_of(snapshot_bytes)
    # Most bytes of a small snapshot are padding; aim half the flips at the header.
    span = header_end if header_bias else len(data)
    for position, mask in flips:
        data[position % span] ^= mask
    if cut is not None:
        del data[cut % (len(data) + 1) :]
    _check_damaged(tmp_path, bytes(data), verify=verify)


@_FUZZ_SETTINGS
@given(garbage=st.binary(max_size=200), keep_magic=st.booleans())
def test_fuzz_garbage(tmp_path: Path, garbage: bytes, keep_magic: bool) -> None:
    data = (MAGIC if keep_magic else b"") + garbage
    _check_damaged(tmp_path, data, verify=True)


@_FUZZ_SETTINGS
@given(
    key=st.sampled_from(
        ["payload_offset", "file_size", "jump_bits", "arrays", "counts", "label_names"]
    ),
    value=st.recursive(
        st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=6,
    ),
)
def test_fuzz_header_values(tmp_path: Path, snapshot_bytes: bytes, key: str, value: Any) -> None:
    # Well-formed, correctly checksummed headers with arbitrary values in the fields.
    _check_damaged(tmp_path, _rebuild(snapshot_bytes, _set([key], value)), verify=True)


def test_unverified_load_still_refuses_a_table_off_address_0(
    tmp_path: Path, snapshot_bytes: bytes
) -> None:
    data = _rebuild(snapshot_bytes, edit_payload=_poke("v6_starts", 1, 7))
    _refused(tmp_path, data, "IPv6 table does not start at address 0", verify=False)
    # Unverified, a damaged payload elsewhere is not noticed: that is what verify is for.
    header, _ = _header_of(snapshot_bytes)
    damaged = bytearray(snapshot_bytes)
    damaged[header["arrays"]["v4_labels"]["offset"] + 2] ^= 0x01
    path = tmp_path / "damaged.lkd"
    path.write_bytes(bytes(damaged))
    assert len(load_snapshot(path, verify=False).v4) == len(_small_tables().v4)


# ---------------------------------------------------------------------------------------
# private copies: what a server maps instead of the operator's file


def test_a_private_copy_survives_its_source_being_truncated(tmp_path: Path) -> None:
    tables = _small_tables()
    source, copies = tmp_path / "small.lkd", tmp_path / "copies"
    header = _write(source, tables)
    snapshot = PrivateCopies(copies).load(source)
    assert snapshot.path == source
    (copy,) = copies.iterdir()
    assert copy.name.startswith(header["payload_sha256"] + ".")
    assert stat.S_IMODE(copy.stat().st_mode) == 0o400
    assert stat.S_IMODE(copies.stat().st_mode) == 0o700
    os.truncate(source, 0)  # a mapping of the source itself would now fault when read
    _assert_same_tables(snapshot, tables)


def test_a_version_already_copied_is_mapped_not_copied_again(tmp_path: Path) -> None:
    source, copies = tmp_path / "small.lkd", tmp_path / "copies"
    _write(source)
    first = PrivateCopies(copies).load(source)
    (copy,) = copies.iterdir()
    inode = copy.stat().st_ino
    second = PrivateCopies(copies).load(source)  # another process, say
    assert [p.stat().st_ino for p in copies.iterdir()] == [inode]
    assert first.data_version == second.data_version
    # Corrupt under an intact header: refused, though its copy exists.
    data = bytearray(source.read_bytes())
    data[-1] ^= 1
    source.write_bytes(data)
    with pytest.raises(DataFormatError, match="payload checksum mismatch"):
        PrivateCopies(copies).load(source)
    assert [p.stat().st_ino for p in copies.iterdir()] == [inode]


def test_an_older_copy_is_removed_when_a_new_version_loads(tmp_path: Path) -> None:
    source, copies = tmp_path / "small.lkd", tmp_path / "copies"
    _write(source)
    old = PrivateCopies(copies).load(source)
    # The same data built again: another header (build time), so another copy.
    write_snapshot(source, _small_tables(), created=datetime.datetime(2027, 1, 1))
    new = PrivateCopies(copies).load(source)
    assert new.data_version == old.data_version
    assert new.header["created"] != old.header["created"]
    (copy,) = copies.iterdir()
    assert copy.name.startswith(new.data_version)
    _assert_same_tables(old, _small_tables())  # still mapped, though its file is gone


def test_temporary_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    source, copies = tmp_path / "small.lkd", tmp_path / "copies"
    _write(source)
    copies.mkdir()
    dead = copies / ".tmp-999999999-abc.lkd"  # above any pid_max
    alive = copies / f".tmp-{os.getpid()}-abc.lkd"
    dead.write_bytes(b"")
    alive.write_bytes(b"")
    PrivateCopies(copies).load(source)
    assert not dead.exists()
    assert alive.exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "data.lkd"
    os.mkfifo(fifo)
    assert not is_snapshot(fifo)
    with pytest.raises(DataFormatError, match="a FIFO, not a regular file"):
        load_snapshot(fifo)
    with pytest.raises(DataFormatError, match="a FIFO, not a regular file"):
        PrivateCopies(tmp_path / "copies").load(fifo)
