"""The date of a source's data: when its vendor made it, as well as the file can tell.

A build today from a two-year-old database is two-year-old data: the age an operator
alerts on is the data's, so each source's own date is recorded beside the build time, and
the data's date is the oldest of them. Where it comes from, first found wins:

1. the file's own record of it: a MaxMind DB's ``build_epoch``, a snapshot's data date,
   a compiled ``.npz``'s release date;
2. the release date in the name of a known package: MaxMind's ``GeoLite2-City_20261201``
   (archive folders and CSV downloads), DB-IP's ``dbip-country-lite-2026-12`` (the
   first of the month);
3. a date the caller knows (``lookupd update``: the download's ``Last-Modified``);
4. the file's modification time (for a directory, its newest file's).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np
from maxminddb.decoder import Decoder

from lookupd.datafiles.formats._open import open_binary
from lookupd.datafiles.sources import SourceDate, iso_from_timestamp, parse_date

FROM_MMDB = "mmdb build_epoch"
FROM_NPZ = "release date in its metadata"
FROM_NAME = "release date in its file name"
FROM_MTIME = "file modification time"
FROM_LAST_MODIFIED = "Last-Modified"
UNKNOWN = ""

# The metadata section starts after this marker, somewhere in the file's last 128 KiB.
_MMDB_MARKER = b"\xab\xcd\xefMaxMind.com"
_MMDB_METADATA_BYTES = 128 * 1024
_MMDB_SUFFIXES = (".mmdb", ".mmdb.gz", ".mmdb.xz")
# GeoLite2-Country_20261201, GeoIP2-City-CSV_20261201: MaxMind's release folders.
_MAXMIND_NAME = re.compile(r"^(?:GeoLite2|GeoIP2)-[A-Za-z0-9-]+_(\d{4})(\d{2})(\d{2})$")
# dbip-country-lite-2026-12.mmdb.gz, dbip-city-lite-2026-12.csv.gz: DB-IP's monthly files.
_DBIP_NAME = re.compile(r"^dbip-[a-z0-9-]+-(\d{4})-(\d{2})(?:\.|$)")


def source_date(path: Path, known: SourceDate | None = None) -> SourceDate:
    """Return the date of the data in ``path`` (a source file or directory) by the rules
    above, ``known`` being the caller's (rule 3)."""
    found = _recorded_date(path) or _name_date(path) or known or _mtime_date(path)
    return found or SourceDate(UNKNOWN, UNKNOWN)


def _recorded_date(path: Path) -> SourceDate | None:
    """The date the file records about itself, if it is of a kind that records one."""
    name = path.name.lower()
    try:
        if path.is_file() and name.endswith(_MMDB_SUFFIXES):
            epoch = _mmdb_build_epoch(path)
            return None if epoch is None else SourceDate(iso_from_timestamp(epoch), FROM_MMDB)
        if path.is_file() and name.endswith(".npz"):
            date = _npz_date(path)
            return None if not date else SourceDate(date, FROM_NPZ)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
        return None
    return None


def _mmdb_build_epoch(path: Path) -> int | None:
    """The ``build_epoch`` of a MaxMind DB file's metadata (read from its last 128 KiB)."""
    tail = b""
    with open_binary(path) as stream:
        if path.suffix.lower() == ".mmdb":
            stream.seek(max(0, path.stat().st_size - _MMDB_METADATA_BYTES))
        while chunk := stream.read(1 << 20):
            tail = (tail + chunk)[-_MMDB_METADATA_BYTES:]
    start = tail.rfind(_MMDB_MARKER)
    if start < 0:
        return None
    start += len(_MMDB_MARKER)
    try:
        metadata, _ = Decoder(tail, start).decode(start)
    except (ValueError, TypeError, KeyError, IndexError, RecursionError, OverflowError):
        return None
    epoch = metadata.get("build_epoch") if isinstance(metadata, dict) else None
    if isinstance(epoch, int) and 0 < epoch < 1 << 40:
        return epoch
    return None


def _npz_date(path: Path) -> str:
    """The ``date`` a compiled ``.npz`` records (the release it was compiled from)."""
    with np.load(path, allow_pickle=False) as archive:
        if "metadata" not in archive.files:
            return ""
        record = json.loads(archive["metadata"].tobytes())
    date = record.get("date") if isinstance(record, dict) else None
    return date if isinstance(date, str) and parse_date(date) is not None else ""


def _name_date(path: Path) -> SourceDate | None:
    """A release date in the name of the file or of the folder holding it."""
    for name in (path.name, path.parent.name):
        stem = name.split(".", 1)[0]
        if match := _MAXMIND_NAME.match(stem):
            year, month, day = match.groups()
        elif match := _DBIP_NAME.match(name):
            (year, month), day = match.groups(), "01"
        else:
            continue
        try:
            date = datetime.date(int(year), int(month), int(day))
        except ValueError:
            continue
        return SourceDate(date.isoformat(), FROM_NAME)
    return None


def _mtime_date(path: Path) -> SourceDate | None:
    """The modification time of the file, or of a directory's newest file."""
    try:
        if path.is_dir():
            times = [child.stat().st_mtime for child in path.iterdir() if child.is_file()]
            if not times:
                return None
            seconds = max(times)
        else:
            seconds = os.stat(path).st_mtime
    except OSError:
        return None
    return SourceDate(iso_from_timestamp(seconds), FROM_MTIME)
