"""Read every supported geolocation format into rows; tell which format a file is.

Each format lives in its own module with one entry point,
``read(path: Path, rows: RangeRows, progress: Progress | None) -> RangeRows``, which appends
the file's inclusive ranges to ``rows`` and raises :class:`~lookupd.errors.DataFormatError`
with the file (and line, where there is one) for anything it cannot read.

Labels are ISO 3166-1 alpha-2 codes as the data spells them (``US``), or, for data that
carries a first-level ISO 3166-2 subdivision, ``COUNTRY-SUBDIVISION`` (``UA-43``).
"""

from __future__ import annotations

import codecs
import csv
import importlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from lookupd.core import _parse
from lookupd.datafiles.formats._open import READ_ERRORS, cannot_read, open_binary, open_text
from lookupd.datafiles.formats._text import is_range_header
from lookupd.datafiles.formats.lines import MAX_LINE_BYTES
from lookupd.datafiles.rows import RangeRows
from lookupd.datafiles.snapshot import MAGIC, is_snapshot
from lookupd.errors import DataFormatError, quoted
from lookupd.files import open_regular

Progress = Callable[[int, int], None]
"""Called now and then with (work done, total work), in a unit of the reader's choosing."""

# name -> (module in lookupd.datafiles.formats, one-line description)
FORMATS: dict[str, tuple[str, str]] = {
    "location-csv": (
        "location_csv",
        "ip-location-db start,end,country_code CSV (dotted/colon or decimal addresses)",
    ),
    "dbip-csv": ("location_csv", "DB-IP lite country CSV: ip_start,ip_end,country"),
    "mmdb": ("mmdb", "MaxMind DB file: GeoIP2/GeoLite2 Country and City, or flat country_code"),
    "geolite2-csv": (
        "geolite2_csv",
        "MaxMind GeoLite2/GeoIP2 Country or City CSV: *-Blocks-IPv4/IPv6.csv + *-Locations-en.csv",
    ),
    "ip2location-csv": (
        "ip2location_csv",
        'IP2Location LITE DB1 CSV: "ip_from","ip_to","country_code","country_name"',
    ),
}

# The last bytes of every MaxMind DB file lead up to its metadata with this marker.
_MMDB_MARKER = b"\xab\xcd\xefMaxMind.com"
_MMDB_TAIL_BYTES = 128 * 1024
_COMPRESSED = (".gz", ".xz")
_BLOCKS_NAME = re.compile(r"-blocks-ipv[46]\.csv(\.gz|\.xz)?$", re.IGNORECASE)
_LOCATIONS_FILE = (
    "{path}: a GeoLite2 Locations file; pass the *-Blocks-IPv4/IPv6.csv files"
    " (or the directory holding them) instead"
)
# Detection reads at most this many lines of at most this many characters: half the line
# limit, so that a long first line (binary data with no line break) is named by what
# detection saw of it, before the reader's line limit trips.
_DETECT_MAX_LINES = 1000
_DETECT_LINE_CHARS = MAX_LINE_BYTES // 2
# A text format is told from binary data by this many first bytes (decompressed).
_SNIFF_BYTES = 8 * 1024
_SNAPSHOT_SUFFIX = ".lkd"


def detect_format(path: str | os.PathLike[str]) -> str:
    """Return the name of ``path``'s format (a key of :data:`FORMATS`).

    The rules, in order (``.gz``/``.xz`` files are judged by their content and their name
    without that suffix):

    1. A directory holding ``*-Blocks-IPv4.csv`` / ``*-Blocks-IPv6.csv`` files (the
       GeoLite2 CSV zip, extracted): ``geolite2-csv``.
    2. A name ending ``.mmdb``, or the MaxMind DB metadata marker near the end: ``mmdb``.
       A name ending ``.lkd``, or a start like a snapshot's (which is not a source: it was
       not read as one because it is not a valid snapshot): an error, "not a lookupd
       snapshot". Binary data (not UTF-8 in the first 8 KiB): an error.
    3. A name containing ``-Blocks-IPv``: ``geolite2-csv``; ``-Locations-``: an error
       saying to pass the Blocks files.
    4. By the first line that is not blank or a ``#`` comment: a header starting
       ``network`` is ``geolite2-csv`` (``geoname_id``: a Locations file, an error); two
       decimal fields, quoted or followed by two more, are ``ip2location-csv``; two
       addresses (text or decimal) and a third field, or a header row of such columns
       (``start,end,country_code``), are ``dbip-csv`` when the name starts ``dbip``, else
       ``location-csv`` (the same reader).

    Raises:
        DataFormatError: the file is missing, unreadable, or of no known format.
    """
    path = Path(path)
    if path.is_dir():
        if any(_BLOCKS_NAME.search(entry.name) for entry in path.iterdir()):
            return "geolite2-csv"
        msg = f"{path}: a directory, but no *-Blocks-IPv4.csv / *-Blocks-IPv6.csv in it"
        raise DataFormatError(msg)
    if not path.is_file():
        msg = f"{path}: no such file"
        raise DataFormatError(msg)
    name = path.name.lower()
    for suffix in _COMPRESSED:
        name = name.removesuffix(suffix)
    if name.endswith(".mmdb") or _has_mmdb_marker(path):
        return "mmdb"
    _refuse_binary(path, name)
    if "-blocks-ipv" in name:
        return "geolite2-csv"
    if "-locations-" in name:
        raise DataFormatError(_LOCATIONS_FILE.format(path=path))
    return _detect_csv(path)


def read_with_their_blocks(paths: Sequence[Path]) -> set[int]:
    """Return the positions of the GeoLite2 Locations files among ``paths`` that are read
    with a Blocks file also given from the same directory (its reader joins the Locations
    files beside it), so that the whole unpacked download
    (``GeoLite2-Country-CSV_*/*.csv``) builds like the directory. A Locations file given
    without its Blocks files stays a source, and an error saying to pass them."""
    with_blocks = {path.parent.resolve() for path in paths if _BLOCKS_NAME.search(path.name)}
    return {
        index
        for index, path in enumerate(paths)
        if "-locations-" in path.name.lower() and path.parent.resolve() in with_blocks
    }


def read_source(
    path: str | os.PathLike[str],
    rows: RangeRows | None = None,
    *,
    format: str | None = None,
    progress: Progress | None = None,
) -> RangeRows:
    """Read one source file (format detected unless given) into ``rows``.

    Raises:
        DataFormatError: unknown format name, or the file cannot be read as that format.
    """
    path = Path(path)
    name = format or detect_format(path)
    if name not in FORMATS:
        msg = f"unknown format {name!r}; known: {', '.join(FORMATS)}"
        raise DataFormatError(msg)
    module = importlib.import_module(f"lookupd.datafiles.formats.{FORMATS[name][0]}")
    reader: Callable[..., RangeRows] = module.read
    return reader(path, RangeRows() if rows is None else rows, progress)


def _has_mmdb_marker(path: Path) -> bool:
    try:
        with open_regular(path) as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _MMDB_TAIL_BYTES))
            return _MMDB_MARKER in handle.read()
    except OSError as exc:
        msg = f"{path}: cannot read: {exc}"
        raise DataFormatError(msg) from exc


def _detect_csv(path: Path) -> str:
    """Tell the CSV formats apart by their first record (see :func:`detect_format`)."""
    line = _first_line(path)
    if line is None:
        msg = f"{path}: empty file"
        raise DataFormatError(msg)
    try:
        fields = [field.strip() for field in next(csv.reader([line]), [])]
    except csv.Error:
        fields = []
    first = fields[0].lstrip("\ufeff").lower() if fields else ""
    if first == "network":
        return "geolite2-csv"
    if first == "geoname_id":
        raise DataFormatError(_LOCATIONS_FILE.format(path=path))
    if is_range_header(fields):
        return "dbip-csv" if path.name.lower().startswith("dbip") else "location-csv"
    decimal = len(fields) >= 3 and all(f.isascii() and f.isdigit() for f in fields[:2])
    if decimal and (line.startswith('"') or len(fields) >= 4):
        return "ip2location-csv"
    if len(fields) >= 3 and all(
        (f.isascii() and f.isdigit()) or _parse.parse_one(f) is not None for f in fields[:2]
    ):
        return "dbip-csv" if path.name.lower().startswith("dbip") else "location-csv"
    shown = quoted(line.rstrip("\r\n"))
    msg = f"{path}: cannot tell the format from its first line {shown}; pass --format"
    raise DataFormatError(msg)


def _first_line(path: Path) -> str | None:
    """Return the first line that is not blank or a ``#`` comment, or None if none."""
    try:
        with open_text(path) as handle:
            for _ in range(_DETECT_MAX_LINES):
                # Bounded: a binary file may have no line break for gigabytes.
                line = handle.readline(_DETECT_LINE_CHARS)
                if not line:
                    return None
                if line.strip() and not line.startswith("#"):
                    return line
    except READ_ERRORS as exc:
        raise cannot_read(path, exc) from exc
    msg = f"{path}: only blank or comment lines in its first {_DETECT_MAX_LINES}; pass --format"
    raise DataFormatError(msg)


def _refuse_binary(path: Path, name: str) -> None:
    """Refuse a file no text format can read: a damaged snapshot, or binary data."""
    try:
        with open_binary(path) as stream:
            head = stream.read(_SNIFF_BYTES)
    except READ_ERRORS as exc:
        raise cannot_read(path, exc) from exc
    snapshot_like = bool(head) and head[: len(MAGIC)] == MAGIC[: len(head)]
    if name.endswith(_SNAPSHOT_SUFFIX) or snapshot_like:
        if is_snapshot(path):
            msg = f"{path}: a lookupd snapshot, not a source file of any format"
        elif head.startswith(MAGIC):
            msg = f"{path}: a compressed lookupd snapshot; decompress it first"
        elif snapshot_like:
            msg = f"{path}: not a lookupd snapshot (truncated: {len(head)} bytes)"
        else:
            msg = f"{path}: not a lookupd snapshot (wrong magic bytes)"
        raise DataFormatError(msg)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        msg = (
            f"{path}: cannot read: not a text file (not UTF-8), nor a MaxMind DB or a lookupd"
            " snapshot: no format lookupd reads"
        )
        raise DataFormatError(msg) from exc
