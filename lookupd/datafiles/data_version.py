"""Which data answers: its checksum, date and build time, the same for a snapshot and its source."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lookupd.core.database import Database
from lookupd.core.table import Tables
from lookupd.datafiles.snapshot import payload_sha256
from lookupd.datafiles.source_date import FROM_NPZ
from lookupd.datafiles.sources import SourceDate, oldest, parse_date


@dataclass(frozen=True, slots=True)
class DataVersion:
    """Which data answered: what every response carries."""

    id: str
    """SHA-256 (hex) of the compiled tables, as a snapshot of them records it."""
    built_at: str
    """Build time (ISO 8601 UTC) or release date; ``""`` if unknown."""
    data_date: str = ""
    """When the data itself was made: its oldest source's date (ISO 8601); ``""`` if unknown."""
    data_date_from: str = ""
    """Where ``data_date`` came from (e.g. ``mmdb build_epoch``)."""


def data_version_of(db: Database) -> DataVersion:
    """Return the data version of a database.

    A snapshot records the SHA-256 of its payload (``metadata["data_version"]``). Other data
    (the embedded ``.npz``, source files) gets the SHA-256 of the payload a snapshot of the
    same answers would have (its tables in canonical form, as ``write_snapshot`` writes
    them), so equal answers share an id whatever format they came in.
    """
    metadata = db.info.metadata
    version = metadata.get("data_version")
    if not isinstance(version, str):
        version = payload_sha256(Tables(db.v4, db.v6, db.label_names))
    built_at = metadata.get("created") or metadata.get("date") or ""
    date = data_date_of(metadata)
    return DataVersion(version, str(built_at), date.date, date.origin)


def data_date_of(metadata: Mapping[str, Any]) -> SourceDate:
    """Return the date of the data a database's metadata describes.

    A snapshot records it (``data_date``); a compiled ``.npz`` records its release
    ``date``; data read from sources has each source's date (the oldest wins).
    """
    date = metadata.get("data_date")
    if isinstance(date, str) and date:
        return SourceDate(date, str(metadata.get("data_date_from", "")))
    release = metadata.get("date")
    if isinstance(release, str) and parse_date(release) is not None:
        return SourceDate(release, FROM_NPZ)
    sources = metadata.get("sources")
    if isinstance(sources, list):
        return oldest(
            SourceDate(str(source.get("date", "")), str(source.get("date_from", "")))
            for source in sources
            if isinstance(source, dict)
        )
    return SourceDate("", "")


def parse_built_at(text: str) -> float | None:
    """Return an ISO 8601 date or date-time (``DataVersion.built_at``, ``data_date``) as
    Unix seconds.

    A date-time without an offset, and a bare date (midnight), are UTC. Returns None for
    ``""`` (unknown) or text that is not ISO 8601.
    """
    return parse_date(text) if text else None
