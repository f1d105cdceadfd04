"""Which data answers: its checksum and build time, the same for a snapshot and its source."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from lookupd.core.database import Database
from lookupd.core.table import Tables
from lookupd.datafiles.snapshot import payload_sha256


@dataclass(frozen=True, slots=True)
class DataVersion:
    """Which data answered: what every response carries."""

    id: str
    """SHA-256 (hex) of the compiled tables, as a snapshot of them records it."""
    built_at: str
    """Build time (ISO 8601 UTC) or release date; ``""`` if unknown."""


def data_version_of(db: Database) -> DataVersion:
    """Return the data version of a database.

    A snapshot records the SHA-256 of its payload (``metadata["data_version"]``). Other data
    (the embedded ``.npz``, source files) gets the SHA-256 of the payload a snapshot of the
    same tables would have, so the embedded data and a snapshot built from it share an id.
    """
    metadata = db.info.metadata
    version = metadata.get("data_version")
    if not isinstance(version, str):
        version = payload_sha256(Tables(db.v4, db.v6, db.label_names))
    built_at = metadata.get("created") or metadata.get("date") or ""
    return DataVersion(version, str(built_at))


def parse_built_at(text: str) -> float | None:
    """Return an ISO 8601 date or date-time (``DataVersion.built_at``) as Unix seconds.

    A date-time without an offset, and a bare date (midnight), are UTC. Returns None for
    ``""`` (unknown) or text that is not ISO 8601.
    """
    if not text:
        return None
    try:
        # Python 3.10's fromisoformat does not accept the "Z" suffix.
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()
