"""Where a source of a build came from: its name, format, size, checksum, row counts and date."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lookupd.errors import DataFormatError


@dataclass(frozen=True, slots=True)
class SourceDate:
    """When a source's data was made, and how that was found out."""

    date: str
    """ISO 8601 in UTC (``2026-12-01`` or ``2026-12-01T04:05:06+00:00``); ``""`` if unknown."""
    origin: str
    """Where the date came from (see :mod:`~lookupd.datafiles.source_date`), ``""`` if unknown."""


def oldest(dates: Iterable[SourceDate]) -> SourceDate:
    """Return the oldest of ``dates`` that is known, else the unknown date."""
    known = [(when, date) for date in dates if (when := parse_date(date.date)) is not None]
    if not known:
        return SourceDate("", "")
    return min(known, key=lambda pair: pair[0])[1]


def iso_from_timestamp(seconds: float) -> str:
    """Return Unix seconds as ISO 8601 in UTC, to the second."""
    when = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return when.isoformat(timespec="seconds")


def parse_date(text: str) -> float | None:
    """Return an ISO 8601 date or date-time as Unix seconds (UTC if it has no offset)."""
    try:
        # Python 3.10's fromisoformat does not accept the "Z" suffix.
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """Where one source of a build came from, and what it held."""

    name: str
    """The path as given."""
    format: str
    """Format name (a key of :data:`lookupd.datafiles.formats.FORMATS`)."""
    size: int
    """Size in bytes (of all its files, for a directory)."""
    sha256: str
    """SHA-256 of the file, hex; for a directory, of its ``sha256sum``-style listing."""
    rows: tuple[int, int]
    """Rows read, (IPv4, IPv6)."""
    notes: dict[str, int] = field(default_factory=dict)
    """The reader's notes (e.g. rows that fell back to ``registered_country``), counted."""
    date: str = ""
    """When the vendor made the data (ISO 8601, see :mod:`~lookupd.datafiles.source_date`)."""
    date_from: str = ""
    """Where ``date`` came from (e.g. ``mmdb build_epoch``); ``""`` if unknown."""

    @property
    def data_date(self) -> SourceDate:
        """Return the date of the source's data and where it came from."""
        return SourceDate(self.date, self.date_from)

    def as_json(self) -> dict[str, object]:
        """Return the record as JSON-ready values."""
        return {
            "name": self.name,
            "format": self.format,
            "size": self.size,
            "sha256": self.sha256,
            "rows": {"ipv4": self.rows[0], "ipv6": self.rows[1]},
            "notes": dict(self.notes),
            "date": self.date,
            "date_from": self.date_from,
        }


def fingerprint(path: Path) -> tuple[int, str]:
    """Return the size and SHA-256 of a file, or of a directory's files (sha256sum style)."""
    try:
        if not path.is_dir():
            return _file_fingerprint(path)
        total = 0
        listing = hashlib.sha256()
        for child in sorted(p for p in path.iterdir() if p.is_file()):
            size, digest = _file_fingerprint(child)
            total += size
            listing.update(f"{digest}  {child.name}\n".encode())
        return total, listing.hexdigest()
    except OSError as exc:
        msg = f"{path}: cannot read: {exc}"
        raise DataFormatError(msg) from exc


def _file_fingerprint(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
