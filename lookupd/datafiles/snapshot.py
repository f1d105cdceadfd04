"""Write compiled snapshots, and map them back without copying their arrays.

A snapshot is one file: a small fixed prefix, a JSON header, then the tables' arrays, each
at a page-aligned offset, so that every process that loads it maps the same pages of the
page cache instead of holding its own copy.

Layout (all integers little-endian)::

    0   magic          12 bytes  b"\\x93LOOKUPD\\r\\n\\x1a\\n"
    12  format version uint32    FORMAT_VERSION
    16  header length  uint32    N, bytes of JSON
    20  header SHA-256 32 bytes  of bytes 0..19 followed by the JSON
    52  header         N bytes   UTF-8 JSON object (see write_snapshot)
        zero padding to the payload offset (a multiple of 4096)
        payload: v4_starts, v4_labels, v4_jump, v6_starts, v6_labels, v6_jump and
        label_names (the label table as UTF-8 JSON), each at a multiple of 4096, zero
        padding between them; the file ends with the last array.

The SHA-256 of the payload (from its offset to the end of the file) is stored in the
header; it is the data version: two snapshots with the same version answer every address
the same way, whatever their sources or build times. The label table is part of the
payload for that reason; the header repeats it for readers that do not map the arrays.

The writer and the reader of the format stay in this one module, past the usual size,
so that the layout written and the layout checked cannot drift apart.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import mmap
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from lookupd.core import _search
from lookupd.core.table import MAX_LABELS, IPVersion, RangeTable, Tables
from lookupd.datafiles.atomic import replace_atomically
from lookupd.datafiles.sources import SourceDate, SourceInfo, oldest
from lookupd.errors import DataFormatError, InvalidTableError, LookupdError
from lookupd.files import open_regular
from lookupd.version import __version__

MAGIC = b"\x93LOOKUPD\r\n\x1a\n"
"""First bytes of every snapshot (a non-ASCII byte, then line endings a text-mode copy
would mangle, as in PNG's signature)."""
FORMAT = "lookupd-snapshot"
FORMAT_VERSION = 1
PAGE_BYTES = 4096

# magic, format version, header length, SHA-256 of the header.
_PREFIX = struct.Struct("<12sII32s")
# A header is a few KB (mostly the label table); refuse to parse anything absurd.
_MAX_HEADER_BYTES = 16 << 20
# name -> (dtype, dimensions): the payload arrays of format version 1, in file order.
_ARRAYS: dict[str, tuple[str, int]] = {
    "v4_starts": ("<u4", 1),
    "v4_labels": ("<u2", 1),
    "v4_jump": ("<u4", 1),
    "v6_starts": ("<u8", 2),
    "v6_labels": ("<u2", 1),
    "v6_jump": ("<u4", 1),
    "label_names": ("|u1", 1),
}
_FAMILIES = {4: "ipv4", 6: "ipv6"}
_VERSIONS: tuple[IPVersion, ...] = (4, 6)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A loaded snapshot: its tables (arrays mapped from the file) and its header."""

    path: Path
    """The file it was loaded from."""
    v4: RangeTable
    """The IPv4 table; its arrays are read-only views of the mapped file."""
    v6: RangeTable
    """The IPv6 table; its arrays are read-only views of the mapped file."""
    label_names: tuple[str, ...]
    """Label table; ``label_names[0] == ""``."""
    header: dict[str, Any]
    """The parsed JSON header."""

    @property
    def data_version(self) -> str:
        """Return the data version: the SHA-256 (hex) of the payload."""
        version: str = self.header["payload_sha256"]
        return version

    @property
    def data_date(self) -> SourceDate:
        """Return the date of the data (its oldest source's); a snapshot written before
        lookupd recorded it gives its build time, from ``created``."""
        date = self.header.get("data_date")
        if isinstance(date, str) and date:
            return SourceDate(date, str(self.header.get("data_date_from", "")))
        return SourceDate(self.header["created"], "snapshot build time")

    @property
    def tables(self) -> Tables:
        """Return the tables and label table as one record."""
        return Tables(self.v4, self.v6, self.label_names)

    @property
    def metadata(self) -> dict[str, Any]:
        """Return the header's facts about the data, for ``DataInfo.metadata``."""
        keys = ("created", "lookupd_version", "sources", "counts", "non_iso_labels", "notes")
        date = self.data_date
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "data_version": self.data_version,
            **{key: self.header[key] for key in keys},
            "data_date": date.date,
            "data_date_from": date.origin,
        }


def is_snapshot(path: str | os.PathLike[str]) -> bool:
    """Return whether ``path`` is a regular file that starts with the snapshot magic."""
    try:
        with open_regular(path) as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except (OSError, LookupdError):
        return False


def write_snapshot(
    path: str | os.PathLike[str],
    tables: Tables,
    *,
    sources: Sequence[SourceInfo] = (),
    notes: Mapping[str, int] | None = None,
    non_iso_labels: Sequence[str] = (),
    created: datetime.datetime | None = None,
) -> dict[str, Any]:
    """Write ``tables`` as a snapshot at ``path``, atomically; return the header written.

    The tables are written in canonical form (:meth:`Tables.canonical`), so the payload
    checksum, the data version id, depends only on the answers.

    The file is written under a temporary name in the same directory, flushed to disk and
    renamed over ``path``, and the directory is synced, so a reader sees either the old
    file or the whole new one. An existing file keeps its permissions; a new one gets 0644.

    Args:
        sources: where the data came from, recorded in the header.
        notes: the readers' notes, counted (e.g. ``registered_country`` fallbacks).
        non_iso_labels: labels that are not ISO 3166-1 codes, recorded for ``info``.
        created: the build time (default: now), stored as UTC ISO 8601.

    Raises:
        LookupdError: the file cannot be written (the message names it).
    """
    path = Path(path)
    tables = tables.canonical()
    payload, arrays = _payload(tables)
    counts = {
        _FAMILIES[table.version]: {
            "rows": sum(source.rows[0 if table.version == 4 else 1] for source in sources),
            "segments": len(table),
        }
        for table in (tables.v4, tables.v6)
    }
    when = created or datetime.datetime.now(datetime.timezone.utc)
    data_date = oldest(source.data_date for source in sources)
    header: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": when.astimezone(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data_date": data_date.date,
        "data_date_from": data_date.origin,
        "lookupd_version": __version__,
        "sources": [source.as_json() for source in sources],
        "counts": counts,
        "label_names": list(tables.label_names),
        "non_iso_labels": sorted(non_iso_labels),
        "notes": dict(sorted((notes or {}).items())),
        "jump_bits": {"ipv4": _search.JUMP_BITS_V4, "ipv6": _search.JUMP_BITS_V6},
        "page_bytes": PAGE_BYTES,
    }
    offset, layout, text = _place_payload(header, arrays, payload)
    prefix = MAGIC + struct.pack("<II", FORMAT_VERSION, len(text))
    head = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(text), hashlib.sha256(prefix + text).digest())
    try:
        _write_atomically(path, [head, text], offset, layout, payload)
    except OSError as exc:
        msg = f"{path}: cannot write snapshot: {exc}"
        raise LookupdError(msg) from exc
    return header


def _place_payload(
    header: dict[str, Any],
    arrays: Mapping[str, npt.NDArray[Any]],
    payload: Sequence[bytes | memoryview],
) -> tuple[int, dict[str, dict[str, Any]], bytes]:
    """Complete ``header`` with the payload's layout and checksum; return the payload
    offset, the layout and the header's JSON text."""
    # Array offsets depend on the header's length, which depends on the offsets' digits:
    # lay out until the payload offset stops moving (twice at most, in practice).
    offset = PAGE_BYTES
    while True:
        header["payload_offset"] = offset
        layout, end = _layout(offset, arrays)
        header["file_size"] = end
        header["arrays"] = layout
        header["payload_sha256"] = _payload_sha256(offset, layout, payload)
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        needed = _round_up(_PREFIX.size + len(text), PAGE_BYTES)
        if needed == offset:
            break
        offset = needed
    return offset, layout, text


def load_snapshot(path: str | os.PathLike[str], *, verify: bool = True) -> Snapshot:
    """Map a snapshot read-only and return its tables, without copying the arrays.

    The header is always checked (magic, version, header SHA-256, sizes, array offsets,
    dtypes and shapes, label table). ``verify`` also checks the payload SHA-256 and the
    tables themselves (sorted starts, labels inside the label table, jump tables), which
    reads the whole file (timed in bench/README.md, "Snapshots"). Skip it only for a file
    already verified, e.g. by a parent process before its workers load the same file.

    The file stays mapped: it must be replaced by renaming a new file over it, never
    rewritten in place (a truncated mapping faults with SIGBUS when read). A server maps a
    private copy instead (:mod:`lookupd.datafiles.private_copy`).

    Raises:
        DataFormatError: the file is not a snapshot, is of another format version, is
            truncated or corrupt, or is not a regular file; the message names the file and
            the problem.
    """
    path = Path(path)
    try:
        handle = open_regular(path)
    except (OSError, LookupdError) as exc:
        msg = f"{path}: cannot read: {exc}"
        raise DataFormatError(msg) from exc
    with handle:
        return map_snapshot(handle, path, verify=verify)


def map_snapshot(handle: BinaryIO, path: Path, *, verify: bool) -> Snapshot:
    """Map the snapshot open as ``handle`` read-only (see :func:`load_snapshot`); ``path``
    names it in messages and in :attr:`Snapshot.path`.

    Raises:
        DataFormatError: the file is not a snapshot, or is truncated or corrupt.
    """
    try:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            msg = f"{path}: empty file, not a lookupd snapshot"
            raise DataFormatError(msg)
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        msg = f"{path}: cannot read: {exc}"
        raise DataFormatError(msg) from exc
    return _load(path, mapped, verify=verify)


def read_header(path: Path, handle: BinaryIO) -> tuple[bytes, dict[str, Any]]:
    """Read and check the fixed prefix and the JSON header from ``handle``, with plain
    reads (no mapping); return their bytes and the header. ``handle`` is left just past
    the header.

    Raises:
        DataFormatError: not a snapshot, or a truncated or corrupt header.
    """
    head = handle.read(_PREFIX.size)
    if len(head) == _PREFIX.size and head.startswith(MAGIC):
        length = _PREFIX.unpack_from(head)[2]
        if length <= _MAX_HEADER_BYTES:  # else refused below, unread
            head += handle.read(length)
    if not head:
        msg = f"{path}: empty file, not a lookupd snapshot"
        raise DataFormatError(msg)
    return head, _read_header(path, head)


def header_sha256(head: bytes) -> str:
    """Return the header's own SHA-256 (hex), from the bytes :func:`read_header` read.

    The header records the payload's checksum, the build time and the sources: with the
    payload verified, this checksum names the whole file.
    """
    digest: bytes = _PREFIX.unpack_from(head)[3]
    return digest.hex()


def _load(path: Path, mapped: mmap.mmap, *, verify: bool) -> Snapshot:
    size = len(mapped)
    header = _read_header(path, mapped)
    file_size = header["file_size"]
    if size < file_size:
        msg = f"{path}: truncated snapshot: {size} bytes, the header says {file_size}"
        raise DataFormatError(msg)
    if size > file_size:
        msg = f"{path}: corrupt snapshot: {size - file_size} bytes after the end it declares"
        raise DataFormatError(msg)
    arrays = _map_arrays(path, mapped, header)
    if verify:
        view = memoryview(mapped)[header["payload_offset"] :]
        try:
            digest = hashlib.sha256(view).hexdigest()
        finally:
            view.release()
        if digest != header["payload_sha256"]:
            msg = f"{path}: corrupt snapshot: payload checksum mismatch"
            raise DataFormatError(msg)
    label_names = _label_table(path, arrays["label_names"], header)
    tables = []
    for version in _VERSIONS:
        prefix = f"v{version}"
        bits = header["jump_bits"][_FAMILIES[version]]
        current = _search.JUMP_BITS_V4 if version == 4 else _search.JUMP_BITS_V6
        # Written by a build with another jump width: derive this build's own table.
        jump = arrays[f"{prefix}_jump"] if bits == current else None
        try:
            table = RangeTable.from_arrays(
                version,
                arrays[f"{prefix}_starts"],
                arrays[f"{prefix}_labels"],
                verify=verify,
                jump=jump,
            )
        except (InvalidTableError, ValueError) as exc:
            msg = f"{path}: corrupt snapshot: invalid table: {exc}"
            raise DataFormatError(msg) from exc
        if table.starts.reshape(len(table), -1)[0].any():
            # Checked even unverified (it costs nothing): the search core refuses such a
            # table on every call, better to say so once, here.
            msg = f"{path}: corrupt snapshot: IPv{version} table does not start at address 0"
            raise DataFormatError(msg)
        if verify and int(table.labels.max()) >= len(label_names):
            msg = f"{path}: corrupt snapshot: IPv{version} labels point past the label table"
            raise DataFormatError(msg)
        tables.append(table)
    return Snapshot(path, tables[0], tables[1], label_names, header)


def _read_header(path: Path, mapped: mmap.mmap | bytes) -> dict[str, Any]:
    """Check the prefix, then parse and check the JSON header (``mapped``: the whole file,
    or at least its prefix and header)."""
    size = len(mapped)
    if mapped[: min(size, len(MAGIC))] != MAGIC[: min(size, len(MAGIC))]:
        msg = f"{path}: not a lookupd snapshot (wrong magic bytes)"
        raise DataFormatError(msg)
    if size < _PREFIX.size:
        msg = f"{path}: truncated snapshot: {size} bytes, shorter than its fixed header"
        raise DataFormatError(msg)
    _, version, length, digest = _PREFIX.unpack_from(mapped)
    if version != FORMAT_VERSION:
        msg = (
            f"{path}: unsupported snapshot format version {version} (this lookupd reads "
            f"version {FORMAT_VERSION}; rebuild the snapshot with this lookupd)"
        )
        raise DataFormatError(msg)
    if length > _MAX_HEADER_BYTES:
        msg = f"{path}: corrupt snapshot: header length {length} is absurd"
        raise DataFormatError(msg)
    end = _PREFIX.size + length
    if size < end:
        msg = f"{path}: truncated snapshot: {size} bytes, the header alone needs {end}"
        raise DataFormatError(msg)
    text = mapped[_PREFIX.size : end]
    if hashlib.sha256(mapped[:20] + text).digest() != digest:
        msg = f"{path}: corrupt snapshot: header checksum mismatch"
        raise DataFormatError(msg)
    try:
        header = json.loads(text)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        msg = f"{path}: corrupt snapshot: header is not JSON: {exc}"
        raise DataFormatError(msg) from exc
    _check_header(path, header, end)
    return header  # type: ignore[no-any-return]


def _check_header(path: Path, header: object, header_end: int) -> None:
    """Check every field the loader relies on, so that no later step can fail oddly."""

    def bad(problem: str) -> DataFormatError:
        return DataFormatError(f"{path}: corrupt snapshot: {problem}")

    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    if header.get("format") != FORMAT or header.get("format_version") != FORMAT_VERSION:
        raise bad(f"header names format {header.get('format')!r} {header.get('format_version')!r}")
    for key in ("payload_offset", "file_size"):
        if not _is_count(header.get(key)):
            raise bad(f"header field {key!r} is not a byte count")
    payload_offset, file_size = header["payload_offset"], header["file_size"]
    if payload_offset % PAGE_BYTES or payload_offset < header_end or payload_offset > file_size:
        raise bad(f"payload offset {payload_offset} is misplaced")
    if not (isinstance(header.get("payload_sha256"), str) and len(header["payload_sha256"]) == 64):
        raise bad("header has no payload checksum")
    jump_bits = header.get("jump_bits")
    if not (
        isinstance(jump_bits, dict)
        and all(
            isinstance(jump_bits.get(f), int) and 0 < jump_bits[f] <= 32 for f in ("ipv4", "ipv6")
        )
    ):
        raise bad("header field 'jump_bits' is malformed")
    for key, kind in (
        ("sources", list),
        ("counts", dict),
        ("non_iso_labels", list),
        ("notes", dict),
    ):
        if not isinstance(header.get(key), kind):
            raise bad(f"header field {key!r} is not a JSON {kind.__name__}")
    for key in ("created", "lookupd_version"):
        if not isinstance(header.get(key), str):
            raise bad(f"header field {key!r} is not a string")
    for key in ("data_date", "data_date_from"):  # absent before lookupd recorded them
        if not isinstance(header.get(key, ""), str):
            raise bad(f"header field {key!r} is not a string")
    names = header.get("label_names")
    if not (
        isinstance(names, list)
        and 0 < len(names) <= MAX_LABELS
        and all(isinstance(name, str) for name in names)
        and names[0] == ""
        and len(set(names)) == len(names)
    ):
        raise bad("the label table must be distinct strings, the first one ''")
    arrays = header.get("arrays")
    if not isinstance(arrays, dict) or set(arrays) != set(_ARRAYS):
        raise bad(f"header must list the arrays {', '.join(_ARRAYS)}")
    _check_array_layout(path, arrays, payload_offset, file_size)
    _check_tables(path, arrays, jump_bits, header["counts"])


def _check_array_layout(
    path: Path, arrays: dict[str, Any], payload_offset: int, file_size: int
) -> None:
    """Check each array's dtype and shape, and that they lie in order inside the file."""

    def bad(problem: str) -> DataFormatError:
        return DataFormatError(f"{path}: corrupt snapshot: {problem}")

    previous_end = payload_offset
    for name, (dtype, ndim) in _ARRAYS.items():
        spec = arrays[name]
        if not (
            isinstance(spec, dict)
            and spec.get("dtype") == dtype
            and _is_count(spec.get("offset"))
            and isinstance(spec.get("shape"), list)
            and len(spec["shape"]) == ndim
            and all(_is_count(n) for n in spec["shape"])
        ):
            raise bad(f"array {name!r}: expected dtype {dtype} with {ndim} dimension(s)")
        offset = spec["offset"]
        nbytes = math.prod(spec["shape"]) * np.dtype(dtype).itemsize
        if offset % PAGE_BYTES or offset < previous_end or offset + nbytes > file_size:
            raise bad(f"array {name!r} at offset {offset} ({nbytes} bytes) is misplaced")
        previous_end = offset + nbytes


def _check_tables(
    path: Path, arrays: dict[str, Any], jump_bits: dict[str, int], counts: dict[str, Any]
) -> None:
    """Check that each family's arrays agree with each other and with the header's counts."""

    def bad(problem: str) -> DataFormatError:
        return DataFormatError(f"{path}: corrupt snapshot: {problem}")

    for version in (4, 6):
        prefix, family = f"v{version}", _FAMILIES[version]
        n = arrays[f"{prefix}_starts"]["shape"][0]
        if n == 0:
            raise bad(f"IPv{version} table is empty")
        if version == 6 and arrays["v6_starts"]["shape"][1] != 2:
            raise bad("IPv6 starts must be (high, low) pairs")
        if arrays[f"{prefix}_labels"]["shape"] != [n]:
            raise bad(f"IPv{version} starts and labels differ in length")
        if arrays[f"{prefix}_jump"]["shape"] != [(1 << jump_bits[family]) + 1]:
            raise bad(f"IPv{version} jump table does not match its jump width")
        family_counts = counts.get(family)
        if not (isinstance(family_counts, dict) and family_counts.get("segments") == n):
            raise bad(f"IPv{version} segment count disagrees with its arrays")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _map_arrays(
    path: Path, mapped: mmap.mmap, header: dict[str, Any]
) -> dict[str, npt.NDArray[Any]]:
    """Return each payload array as a read-only view of the mapping (no copy)."""
    arrays = {}
    for name, spec in header["arrays"].items():
        shape = tuple(spec["shape"])
        try:
            array = np.frombuffer(
                mapped, dtype=np.dtype(spec["dtype"]), count=math.prod(shape), offset=spec["offset"]
            )
        except ValueError as exc:  # _check_header leaves no way here; still, never crash
            msg = f"{path}: corrupt snapshot: array {name!r}: {exc}"
            raise DataFormatError(msg) from exc
        arrays[name] = array.reshape(shape)
    return arrays


def _label_table(
    path: Path, blob: npt.NDArray[np.uint8], header: dict[str, Any]
) -> tuple[str, ...]:
    """Decode the payload's label table and check it is the header's."""
    try:
        names = json.loads(blob.tobytes())
    except ValueError as exc:
        msg = f"{path}: corrupt snapshot: label table is not JSON: {exc}"
        raise DataFormatError(msg) from exc
    if names != header["label_names"]:
        msg = f"{path}: corrupt snapshot: the header's and the payload's label tables differ"
        raise DataFormatError(msg)
    return tuple(names)


def payload_sha256(tables: Tables) -> str:
    """Return the SHA-256 (hex) of the payload a snapshot of ``tables`` would hold.

    The payload starts on a page boundary, so its checksum does not depend on the header:
    this is the ``data_version`` :func:`write_snapshot` records. Like that function it
    takes the tables in canonical form, so equal answers give equal checksums.
    """
    payload, arrays = _payload(tables.canonical())
    layout, _ = _layout(0, arrays)
    return _payload_sha256(0, layout, payload)


def _payload(tables: Tables) -> tuple[list[bytes | memoryview], dict[str, npt.NDArray[Any]]]:
    """Return the payload arrays in file order, little-endian and contiguous."""
    labels = json.dumps(list(tables.label_names), separators=(",", ":")).encode()
    arrays: dict[str, npt.NDArray[Any]] = {
        "v4_starts": tables.v4.starts,
        "v4_labels": tables.v4.labels,
        "v4_jump": tables.v4.jump,
        "v6_starts": tables.v6.starts,
        "v6_labels": tables.v6.labels,
        "v6_jump": tables.v6.jump,
        "label_names": np.frombuffer(labels, dtype=np.uint8),
    }
    arrays = {
        name: np.ascontiguousarray(arrays[name], dtype=np.dtype(dtype))
        for name, (dtype, _) in _ARRAYS.items()
    }
    return [array.data.cast("B") for array in arrays.values()], arrays


def _layout(
    offset: int, arrays: Mapping[str, npt.NDArray[Any]]
) -> tuple[dict[str, dict[str, Any]], int]:
    """Place each array at the next page boundary from ``offset``; return specs and the end."""
    layout = {}
    end = offset
    for name, array in arrays.items():
        start = _round_up(end, PAGE_BYTES)
        layout[name] = {"offset": start, "dtype": array.dtype.str, "shape": list(array.shape)}
        end = start + array.nbytes
    return layout, end


def _payload_sha256(
    offset: int, layout: Mapping[str, Mapping[str, Any]], payload: Sequence[bytes | memoryview]
) -> str:
    digest = hashlib.sha256()
    position = offset
    for spec, data in zip(layout.values(), payload, strict=True):
        digest.update(bytes(spec["offset"] - position))
        digest.update(data)
        position = spec["offset"] + len(data)
    return digest.hexdigest()


def _write_atomically(
    path: Path,
    head: Sequence[bytes],
    offset: int,
    layout: Mapping[str, Mapping[str, Any]],
    payload: Sequence[bytes | memoryview],
) -> None:
    """Write the header and the arrays at their offsets, replacing ``path`` atomically."""

    def fill(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            written = 0
            for chunk in head:
                handle.write(chunk)
                written += len(chunk)
            handle.write(bytes(offset - written))
            position = offset
            for spec, data in zip(layout.values(), payload, strict=True):
                handle.write(bytes(spec["offset"] - position))
                handle.write(data)
                position = spec["offset"] + len(data)

    replace_atomically(path, fill)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
