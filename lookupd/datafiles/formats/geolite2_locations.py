"""Read GeoLite2/GeoIP2 Locations CSVs: what each ``geoname_id`` names, for the Blocks reader.

See :mod:`lookupd.datafiles.formats.geolite2_csv` for the format as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lookupd.datafiles.formats._csv import csv_batches, csv_header, fail, nonblank
from lookupd.datafiles.formats._open import READ_ERRORS, cannot_read, open_text
from lookupd.datafiles.formats._text import check_label, csv_column, shown
from lookupd.errors import DataFormatError, quoted

if TYPE_CHECKING:
    from lookupd.datafiles.formats import Progress

BLOCKS = "-blocks-"
"""What a Blocks file's name holds (lower case) between its prefix and its family."""


@dataclass(frozen=True, slots=True)
class Location:
    """What one Locations row says about a ``geoname_id``."""

    label: str | None
    """``country_iso_code``, with ``-subdivision_1_iso_code`` when there is one."""
    country: str | None
    """``country_iso_code`` alone; None for a location with none (a continent)."""


def locations_file(block: Path) -> Path:
    """Find the Locations file of a Blocks file (same prefix, ``-en`` preferred)."""
    at = block.name.lower().find(BLOCKS)
    if at < 0:
        msg = (
            f"{block}: cannot find its Locations file: the name does not contain"
            " '-Blocks-' (GeoLite2 names: PREFIX-Blocks-IPv4.csv, PREFIX-Locations-en.csv)"
        )
        raise DataFormatError(msg)
    prefix = block.name[:at].lower()
    candidates: list[tuple[int, str, Path]] = []
    for entry in block.parent.iterdir():
        name = entry.name.lower()
        if not name.startswith(f"{prefix}-locations-") or not entry.is_file():
            continue
        stem = name
        for suffix in (".gz", ".xz"):
            stem = stem.removesuffix(suffix)
        if stem.endswith(".csv"):
            locale = stem[len(prefix) + len("-locations-") : -len(".csv")]
            candidates.append((0 if locale == "en" else 1, entry.name, entry))
    if not candidates:
        msg = (
            f"{block}: no {block.name[:at]}-Locations-en.csv beside it"
            " (Blocks files are joined with their Locations file on geoname_id)"
        )
        raise DataFormatError(msg)
    return min(candidates)[2]


def read_locations(
    path: Path, progress: Progress | None, done_before: int, total: int
) -> dict[str, Location]:
    """Read a Locations file into geoname_id -> location."""
    locations: dict[str, Location] = {}
    try:
        with open_text(path, progress, done_before=done_before, total=total) as handle:
            rows = nonblank(csv_batches(handle, path, strict=True))
            header_line, columns = csv_header(path, rows)
            id_at = csv_column(path, header_line, columns, "geoname_id")
            country_at = csv_column(path, header_line, columns, "country_iso_code")
            subdivision_at = columns.get("subdivision_1_iso_code")
            width = 1 + max(id_at, country_at, -1 if subdivision_at is None else subdivision_at)
            for line, record in rows:
                if len(record) < width:
                    got = quoted(",".join(record))
                    fail(path, line, f"expected {len(columns)} fields, got {got}")
                geoname_id = record[id_at].strip()
                if not geoname_id:
                    fail(path, line, "empty geoname_id")
                if geoname_id in locations:
                    fail(path, line, f"geoname_id {shown(geoname_id)} listed twice")
                country = record[country_at].strip() or None
                label = country
                if country is not None and subdivision_at is not None:
                    subdivision = record[subdivision_at].strip()
                    if subdivision:
                        label = f"{country}-{subdivision.removeprefix(f'{country}-')}"
                if label is not None:
                    check_label(path, line, label)
                locations[geoname_id] = Location(label, country)
    except READ_ERRORS as exc:
        raise cannot_read(path, exc) from exc
    if not locations:
        msg = f"{path}: no locations in file"
        raise DataFormatError(msg)
    return locations
