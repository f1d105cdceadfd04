"""Read MaxMind DB (``.mmdb``) files: GeoIP2/GeoLite2 Country and City, or flat ``country_code``.

The ``maxminddb`` package opens the file (checking its layout) and decodes its metadata.
The networks and labels come from lookupd's core (``lookupd.core._mmdb``, compiled): it walks
the search tree as ``maxminddb`` iterates it (``mmdb_tree``) and checks and labels each
distinct data record once, reading only the values a label needs (``mmdb_records``); this
module adds the ranges. ``maxminddb`` stays the reference the tests compare with, network by
network.

Labels, per record, first match wins:

1. ``country_code`` (a flat schema, e.g. ip-location-db's ``{"country_code": "US"}``);
2. ``country.iso_code`` (GeoIP2/GeoLite2), with ``-`` and the first (largest) subdivision's
   ``iso_code`` when the record has ``subdivisions`` (City databases): ``UA-43``;
3. ``registered_country.iso_code`` when there is no ``country`` (e.g. anonymous proxies),
   counted in ``rows.notes``.

A network with none of these stays unknown, counted in ``rows.notes``; a file in which no
network has one is an error.

IPv4 aliasing: an IPv6 database keeps its IPv4 networks in ``::/96`` and usually points
``::ffff:0:0/96``, ``2001::/32`` (Teredo) and ``2002::/16`` (6to4) at the same subtree.
Like ``maxminddb``'s iteration, the walk yields that subtree once, as IPv4 networks, and
skips the aliases, so nothing is read twice. ``::ffff:0:0/96`` needs nothing more
(lookupd answers it from the IPv4 table); for every other alias the IPv4 networks are
mirrored into that IPv6 prefix, so the tables answer there what the database answers, and
the mirroring is counted in ``rows.notes``.
"""

from __future__ import annotations

import gzip
import ipaddress
import lzma
import mmap
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

import maxminddb
import numpy as np
import numpy.typing as npt

from lookupd.core.constants import IPV4_MAPPED_PREFIX, IPV4_MAX
from lookupd.datafiles.formats.mmdb_records import (
    KIND_NONE,
    KIND_REGISTERED_COUNTRY,
    RecordLabels,
    label_records,
)
from lookupd.datafiles.formats.mmdb_tree import ALIAS_DEPTH, Tree, walk_tree
from lookupd.datafiles.rows import RangeRows
from lookupd.errors import DataFormatError
from lookupd.files import NotARegularFileError, open_regular

if TYPE_CHECKING:
    from lookupd.datafiles.formats import Progress

NOTE_REGISTERED_COUNTRY = "mmdb: registered_country used (no country)"
"""``rows.notes`` key: networks labelled from ``registered_country``."""
NOTE_NO_COUNTRY = "mmdb: networks without a country (left unknown)"
"""``rows.notes`` key: networks whose record has no usable country code."""
NOTE_MAPPED = "mmdb: networks in ::ffff:0:0/96 read as IPv4"
"""``rows.notes`` key: IPv4-mapped networks the tree stores as IPv6 (not as an alias)."""
NOTE_MIRRORED = "mmdb: IPv4 networks mirrored into {prefix} (the database aliases it to IPv4)"
"""``rows.notes`` key pattern: IPv4 rows copied into an aliased IPv6 prefix."""

# The metadata section starts after this marker, somewhere in the file's last 128 KiB.
_METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"
_METADATA_MAX_BYTES = 128 * 1024
# 16 zero bytes separate the search tree from the data section.
_DATA_SEPARATOR_BYTES = 16
# Where _add_networks puts a network: the IPv4 table (from ::/96, or an IPv4 tree; or the
# tree's own ::ffff:0:0/96 data), the IPv6 table, or nowhere (no label).
_V4, _MAPPED, _V6, _UNLABELLED = 0, 1, 2, 3
_PROGRESS_EVERY = 1 << 16  # networks between two progress calls
_COMPRESSED_SUFFIXES = (".gz", ".xz")
MAX_DECOMPRESSED_BYTES = 2 << 30
"""A compressed database may expand to this much on disk, no more (the largest commercial
databases are a fraction of it; a compression bomb would fill the temporary directory)."""
_COPY_CHUNK_BYTES = 1 << 20
# What maxminddb raises for a corrupt file: InvalidDatabaseError (a RuntimeError); ValueError
# (UnicodeDecodeError in a string, ipaddress refusing a network); TypeError or KeyError from
# malformed metadata in the pure-Python reader; RecursionError from its recursive iterator.
_MAXMINDDB_ERRORS = (
    maxminddb.InvalidDatabaseError,
    OSError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    RecursionError,
)


def read_mmdb(path: str | os.PathLike[str], rows: RangeRows | None = None) -> RangeRows:
    """Read a MaxMind DB file (optionally ``.gz``/``.xz``-compressed) into ``rows``."""
    return read(Path(path), RangeRows() if rows is None else rows)


def read(path: Path, rows: RangeRows, progress: Progress | None = None) -> RangeRows:
    """Format entry point (see :mod:`lookupd.datafiles.formats`).

    Raises:
        DataFormatError: the file is missing, empty, not a MaxMind DB file, corrupt (one
            line naming the file and the problem), or no network in it has a country.
    """
    _check_regular(path)
    with _uncompressed(path) as plain:
        _check_file(path, plain)
        shape = _tree_shape(path, plain)
        try:
            handle = plain.open("rb")
            with handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                _read_mapped(path, mapped, shape, rows, progress)
        except OSError as exc:
            msg = f"{path}: cannot read: {_one_line(exc, plain)}"
            raise DataFormatError(msg) from exc
    return rows


def _read_mapped(
    path: Path,
    mapped: mmap.mmap,
    shape: tuple[int, int, int],
    rows: RangeRows,
    progress: Progress | None,
) -> None:
    node_count, record_size, ip_version = shape
    # The views go before the map closes (an exported buffer would keep it open).
    with memoryview(mapped) as whole:
        tree = walk_tree(path, whole, node_count, record_size, ip_version)
        data_start = node_count * record_size // 4 + _DATA_SEPARATOR_BYTES
        with whole[data_start:] as data:
            labels = label_records(path, data, node_count, tree.records)
    _add_networks(path, rows, tree, labels, ip_version, progress)


def _tree_shape(path: Path, plain: Path) -> tuple[int, int, int]:
    """Open with maxminddb, which checks the file's layout and decodes its metadata, and
    return the search tree's (node count, record size, IP version)."""
    reader = _open(path, plain)
    try:
        metadata = reader.metadata()
        return metadata.node_count, metadata.record_size, metadata.ip_version
    except _MAXMINDDB_ERRORS as exc:
        msg = f"{path}: corrupt MaxMind DB file: {_one_line(exc, plain)}"
        raise DataFormatError(msg) from exc
    finally:
        reader.close()


def _add_networks(
    path: Path,
    rows: RangeRows,
    tree: Tree,
    labels: RecordLabels,
    ip_version: int,
    progress: Progress | None,
) -> None:
    """Add each labelled network to ``rows``, in the readers' order, with today's notes."""
    total = tree.networks
    kinds = labels.kinds[labels.of_network]
    labelled = kinds != KIND_NONE
    label_ids = _label_ids(rows, labels, labelled)[labels.of_network]
    high, low = tree.starts[:, 0], tree.starts[:, 1]
    depths = tree.depths.astype(np.int64)
    if ip_version == 4:
        family = np.full(total, _V4, dtype=np.uint8)
        v4_prefixes = depths
    else:
        ipv4 = (high == 0) & (low >> np.uint64(32) == 0)  # ::/96, read as IPv4
        # The tree's own data in ::ffff:0:0/96 (not an alias): lookupd answers IPv4-mapped
        # addresses from the IPv4 table, so that is where they belong.
        mapped = (high == 0) & (low >> np.uint64(32) == IPV4_MAPPED_PREFIX >> 32) & (depths >= 96)
        family = np.where(ipv4, _V4, np.where(mapped, _MAPPED, _V6)).astype(np.uint8)
        v4_prefixes = depths - ALIAS_DEPTH
        wide = np.flatnonzero(ipv4 & (v4_prefixes < 0))
        if wide.size:
            # maxminddb's iteration failed there too: ipaddress refused a negative prefix.
            problem = f"data for ::/{int(depths[wide[0]])}, a network holding all of ::/96"
            msg = f"{path}: corrupt MaxMind DB file: {problem} (the IPv4 subtree)"
            raise DataFormatError(msg)
    family[~labelled] = _UNLABELLED
    v4_starts = low & np.uint64(IPV4_MAX)
    v4_ends = v4_starts | (np.uint64(IPV4_MAX) >> np.clip(v4_prefixes, 0, 32).astype(np.uint64))
    high_ends, low_ends = _last_addresses(high, low, depths)
    for first in range(0, total, _PROGRESS_EVERY):
        chunk = slice(first, min(first + _PROGRESS_EVERY, total))
        part = family[chunk]
        v4 = (part == _V4) | (part == _MAPPED)
        rows.v4[0].extend(v4_starts[chunk][v4].tolist())
        rows.v4[1].extend(v4_ends[chunk][v4].tolist())
        rows.v4[2].extend(label_ids[chunk][v4].tolist())
        v6 = part == _V6
        rows.v6[0].extend(_ints(high[chunk][v6], low[chunk][v6]))
        rows.v6[1].extend(_ints(high_ends[chunk][v6], low_ends[chunk][v6]))
        rows.v6[2].extend(label_ids[chunk][v6].tolist())
        if progress is not None and chunk.stop % _PROGRESS_EVERY == 0:
            progress(chunk.stop, total)
    if progress is not None:
        progress(total, total)
    notes = rows.notes
    for note, count in (
        (NOTE_REGISTERED_COUNTRY, np.count_nonzero(kinds == KIND_REGISTERED_COUNTRY)),
        (NOTE_NO_COUNTRY, total - np.count_nonzero(labelled)),
        (NOTE_MAPPED, np.count_nonzero(family == _MAPPED)),
    ):
        if count:
            notes[note] += int(count)
    if not labelled.any():
        msg = (
            f"{path}: no country data: none of its {total} networks has a country_code, "
            "country.iso_code or registered_country.iso_code"
        )
        raise DataFormatError(msg)
    genuine = family == _V4
    _mirror_aliases(rows, tree.aliases, v4_starts[genuine], v4_ends[genuine], label_ids[genuine])


def _label_ids(
    rows: RangeRows, labels: RecordLabels, labelled: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int64]:
    """Each distinct record's label index in ``rows`` (-1 without one), the labels added in
    the order their first network comes (as a network-by-network reader adds them)."""
    ids = np.full(len(labels.names), -1, dtype=np.int64)
    networks = len(labels.of_network)
    # Each record's first labelled network (``networks`` where it has none).
    first = np.full(len(labels.names), networks, dtype=np.int64)
    np.minimum.at(first, labels.of_network[labelled], np.flatnonzero(labelled))
    for record in np.argsort(first, kind="stable").tolist():
        if first[record] == networks:
            break
        name = labels.names[record]
        assert name is not None  # a labelled network's record has a name
        ids[record] = rows.label(name)
    return ids


def _last_addresses(
    high: npt.NDArray[np.uint64], low: npt.NDArray[np.uint64], depths: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """The last address of each IPv6 network as (high, low) halves."""
    host = 128 - depths  # bits after the prefix: 0 to 128
    all_ones = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
    one = np.uint64(1)
    # A shift by 64 is undefined: clip it, then take all ones where the host bits fill a half.
    low_mask = np.where(host >= 64, all_ones, (one << np.clip(host, 0, 63).astype(np.uint64)) - one)
    high_host = np.clip(host - 64, 0, 64)
    high_mask = np.where(
        high_host >= 64, all_ones, (one << np.clip(high_host, 0, 63).astype(np.uint64)) - one
    )
    return high | high_mask, low | low_mask


def _ints(high: npt.NDArray[np.uint64], low: npt.NDArray[np.uint64]) -> list[int]:
    return [(h << 64) | lo for h, lo in zip(high.tolist(), low.tolist(), strict=True)]


def _mirrored(aliases: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The aliases whose answers the tables must copy: all but ``::ffff:0:0/96``."""
    return [
        (first, length)
        for first, length in aliases
        if length <= ALIAS_DEPTH and not (length == ALIAS_DEPTH and first == IPV4_MAPPED_PREFIX)
    ]


def _mirror_aliases(
    rows: RangeRows,
    aliases: list[tuple[int, int]],
    starts: npt.NDArray[np.uint64],
    ends: npt.NDArray[np.uint64],
    label_ids: npt.NDArray[np.int64],
) -> None:
    """Copy the genuine IPv4 rows into each aliased IPv6 prefix that needs them."""
    if not len(starts):
        return
    v4_starts, v4_ends, ids = starts.tolist(), ends.tolist(), label_ids.tolist()
    for first, length in _mirrored(aliases):
        # The IPv4 address follows the alias prefix; the bits after it are free.
        shift = 128 - length - 32
        host = (1 << shift) - 1
        rows.v6[0].extend([first | (start << shift) for start in v4_starts])
        rows.v6[1].extend([first | (end << shift) | host for end in v4_ends])
        rows.v6[2].extend(ids)
        prefix = f"{ipaddress.IPv6Address(first)}/{length}"
        rows.notes[NOTE_MIRRORED.format(prefix=prefix)] += len(v4_starts)


def _check_regular(path: Path) -> None:
    """Refuse a missing file, and a FIFO or device (which would block the readers' open)."""
    try:
        with open_regular(path):
            pass
    except FileNotFoundError:
        msg = f"{path}: no such file"
        raise DataFormatError(msg) from None
    except NotARegularFileError as exc:
        raise DataFormatError(str(exc)) from exc
    except OSError as exc:
        msg = f"{path}: cannot read: {_one_line(exc, path)}"
        raise DataFormatError(msg) from exc


@contextmanager
def _uncompressed(path: Path) -> Iterator[Path]:
    """Yield ``path``, or a temporary decompressed copy of a ``.gz``/``.xz`` file.

    maxminddb and the walk map a real file, so a compressed one is written out first
    (streamed to disk: memory stays flat), up to ``MAX_DECOMPRESSED_BYTES``.
    """
    suffix = path.suffix.lower()
    if suffix not in _COMPRESSED_SUFFIXES:
        yield path
        return
    try:
        scratch = tempfile.TemporaryDirectory(prefix="lookupd-mmdb-")
    except OSError as exc:  # no writable temporary directory (a read-only root, no /tmp)
        msg = f"{path}: no temporary directory to decompress it into: {_one_line(exc, path)}"
        raise DataFormatError(msg) from exc
    with scratch as tmp:
        plain = Path(tmp) / path.stem
        try:
            with (
                open_regular(path) as raw,
                gzip.GzipFile(fileobj=raw) if suffix == ".gz" else lzma.LZMAFile(raw) as source,
                plain.open("wb") as target,
            ):
                _copy_bounded(path, source, target)
        except (OSError, EOFError, lzma.LZMAError) as exc:
            msg = f"{path}: cannot decompress: {_one_line(exc, path)}"
            raise DataFormatError(msg) from exc
        yield plain


def _copy_bounded(path: Path, source: gzip.GzipFile | lzma.LZMAFile, target: IO[bytes]) -> None:
    written = 0
    while chunk := source.read(_COPY_CHUNK_BYTES):
        written += len(chunk)
        if written > MAX_DECOMPRESSED_BYTES:
            limit = MAX_DECOMPRESSED_BYTES >> 30
            msg = f"{path}: decompresses to more than {limit} GiB, the limit for a MaxMind DB file"
            raise DataFormatError(msg)
        target.write(chunk)


def _check_file(path: Path, plain: Path) -> None:
    """Refuse the obvious non-databases with a clear reason."""
    try:
        size = plain.stat().st_size
        with plain.open("rb") as handle:
            handle.seek(max(0, size - _METADATA_MAX_BYTES))
            tail = handle.read()
    except OSError as exc:
        msg = f"{path}: cannot read: {_one_line(exc, plain)}"
        raise DataFormatError(msg) from exc
    if size == 0:
        msg = f"{path}: empty file"
        raise DataFormatError(msg)
    if _METADATA_MARKER not in tail:
        msg = f"{path}: not a MaxMind DB file (no metadata marker in its last 128 KiB)"
        raise DataFormatError(msg)


def _open(path: Path, plain: Path) -> maxminddb.Reader:
    """Open with maxminddb's fastest reader (its C extension when installed)."""
    try:
        return maxminddb.open_database(os.fspath(plain))
    except _MAXMINDDB_ERRORS as exc:
        reason = _one_line(exc, plain)
        # The C extension says only "Is this a valid MaxMind DB file?"; the pure-Python
        # reader usually names the problem (a bad record size, a tree past the end...).
        detail = _pure_python_complaint(plain)
        msg = f"{path}: not a valid MaxMind DB file: {detail or reason}"
        raise DataFormatError(msg) from exc


def _pure_python_complaint(plain: Path) -> str | None:
    try:
        reader = maxminddb.open_database(os.fspath(plain), maxminddb.MODE_MEMORY)
    except Exception as exc:  # only to word the error that is raised anyway
        return _one_line(exc, plain)
    reader.close()
    return None


def _one_line(exc: BaseException, path: Path) -> str:
    """``exc``'s message on one line, without the path the message repeats."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split()).replace(f" ({path})", "").replace(str(path), "the file")
    return text or type(exc).__name__
