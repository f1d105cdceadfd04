"""Read MaxMind DB (``.mmdb``) files: GeoIP2/GeoLite2 Country and City, or flat ``country_code``.

The ``maxminddb`` package reads the file and iterates its networks; this module only checks
that the search tree and its records are safe to iterate (``mmdb_tree``, ``mmdb_records``),
picks a label per record and adds the ranges.

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
``maxminddb`` yields that subtree once, as IPv4 networks, and skips the aliases, so nothing is
read twice. ``::ffff:0:0/96`` needs nothing more (lookupd answers it from the IPv4 table);
for every other alias the IPv4 networks are mirrored into that IPv6 prefix, so the tables
answer there what the database answers, and the mirroring is counted in ``rows.notes``.
"""

from __future__ import annotations

import gzip
import ipaddress
import lzma
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import maxminddb

from lookupd.core.constants import IPV4_MAPPED_PREFIX, IPV4_MAX, IPV6_MAX
from lookupd.datafiles.formats.mmdb_records import check_records
from lookupd.datafiles.formats.mmdb_tree import ALIAS_DEPTH, Tree, check_tree
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
        size = _check_file(path, plain)
        reader = _open(path, plain)
        try:
            metadata = reader.metadata()
            tree = check_tree(
                path, plain, size, metadata.node_count, metadata.record_size, metadata.ip_version
            )
            check_records(path, plain, metadata.node_count, metadata.record_size, tree.records)
            _read_networks(path, reader, rows, tree, progress)
        except _MAXMINDDB_ERRORS as exc:
            msg = f"{path}: corrupt MaxMind DB file: {_one_line(exc, plain)}"
            raise DataFormatError(msg) from exc
        finally:
            reader.close()
    return rows


def _read_networks(
    path: Path,
    reader: maxminddb.Reader,
    rows: RangeRows,
    tree: Tree,
    progress: Progress | None,
) -> None:
    notes = rows.notes
    total = tree.networks
    done = labelled = unlabelled = mapped = 0
    # Genuine IPv4 rows, kept only to mirror them into the aliased prefixes afterwards.
    mirror: list[tuple[int, int, str]] | None = [] if _mirrored(tree.aliases) else None
    add = rows.add
    for network, record in reader:
        done += 1
        if progress is not None and done % _PROGRESS_EVERY == 0:
            progress(done, total)
        # The flat schema first: it is the common record of the largest country databases.
        code = record.get("country_code") if isinstance(record, dict) else None
        if not (isinstance(code, str) and code):
            code = _geoip2_label(record, notes)
            if code is None:
                unlabelled += 1
                continue
        labelled += 1
        start = int(network.network_address)
        prefix = network.prefixlen
        if network.version == 4:
            end = start | (IPV4_MAX >> prefix)
            add(4, start, end, code)
            if mirror is not None:
                mirror.append((start, end, code))
        elif start >> 32 == IPV4_MAPPED_PREFIX >> 32 and prefix >= ALIAS_DEPTH:
            # The tree has its own data in ::ffff:0:0/96 (not an alias); lookupd answers
            # IPv4-mapped addresses from the IPv4 table, so that is where they belong.
            mapped += 1
            add(4, start & IPV4_MAX, (start | (IPV6_MAX >> prefix)) & IPV4_MAX, code)
        else:
            add(6, start, start | (IPV6_MAX >> prefix), code)
    if progress is not None:
        progress(done, done)
    if unlabelled:
        notes[NOTE_NO_COUNTRY] += unlabelled
    if mapped:
        notes[NOTE_MAPPED] += mapped
    if not labelled:
        msg = (
            f"{path}: no country data: none of its {done} networks has a country_code, "
            "country.iso_code or registered_country.iso_code"
        )
        raise DataFormatError(msg)
    if mirror:
        _mirror_aliases(rows, tree.aliases, mirror)


def _geoip2_label(record: Any, notes: Counter[str]) -> str | None:
    """Label a GeoIP2/GeoLite2 record (see the module docstring); None if it has no country."""
    if not isinstance(record, dict):
        return None
    code = _iso_code(record.get("country"))
    if code is not None:
        subdivisions = record.get("subdivisions")
        if isinstance(subdivisions, list) and subdivisions:
            subdivision = _iso_code(subdivisions[0])
            if subdivision is not None:
                return f"{code}-{subdivision}"
        return code
    code = _iso_code(record.get("registered_country"))
    if code is not None:
        notes[NOTE_REGISTERED_COUNTRY] += 1
    return code


def _iso_code(place: Any) -> str | None:
    code = place.get("iso_code") if isinstance(place, dict) else None
    return code if isinstance(code, str) and code else None


def _mirrored(aliases: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The aliases whose answers the tables must copy: all but ``::ffff:0:0/96``."""
    return [
        (first, length)
        for first, length in aliases
        if length <= ALIAS_DEPTH and not (length == ALIAS_DEPTH and first == IPV4_MAPPED_PREFIX)
    ]


def _mirror_aliases(
    rows: RangeRows, aliases: list[tuple[int, int]], v4_rows: list[tuple[int, int, str]]
) -> None:
    for first, length in _mirrored(aliases):
        # The IPv4 address follows the alias prefix; the bits after it are free.
        shift = 128 - length - 32
        host = (1 << shift) - 1
        for start, end, code in v4_rows:
            rows.add(6, first | (start << shift), first | (end << shift) | host, code)
        prefix = f"{ipaddress.IPv6Address(first)}/{length}"
        rows.notes[NOTE_MIRRORED.format(prefix=prefix)] += len(v4_rows)


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

    maxminddb's fast reader maps a real file, so a compressed one is written out first
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


def _check_file(path: Path, plain: Path) -> int:
    """Return the file's size after refusing the obvious non-databases with a clear reason."""
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
    return size


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
