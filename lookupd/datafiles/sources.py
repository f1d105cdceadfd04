"""Where a source of a build came from: its name, format, size, checksum and row counts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from lookupd.errors import DataFormatError


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

    def as_json(self) -> dict[str, object]:
        """Return the record as JSON-ready values."""
        return {
            "name": self.name,
            "format": self.format,
            "size": self.size,
            "sha256": self.sha256,
            "rows": {"ipv4": self.rows[0], "ipv6": self.rows[1]},
            "notes": dict(self.notes),
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
