"""City-level real data for the export tests: a slice of the embedded data with the
MaxMind City test database over it, as a snapshot, and its MaxMind DB export.

The slice keeps every 10th segment of the embedded data (its real ranges and countries,
with gaps of unknown space between them), so the export is quick to write but still holds
~60,000 real networks; the City test database adds subdivision labels (GB-ENG, US-WA...)
where its networks lie.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conftest import DATA_DIR

from lookupd.cli import main
from lookupd.core.constants import IPV4_MAX, IPV6_MAX
from lookupd.core.database import Database
from lookupd.core.table import RangeTable, Tables, build_table
from lookupd.datafiles.open import open_database
from lookupd.datafiles.snapshot import write_snapshot
from lookupd.datafiles.sources import SourceInfo

CITY_TEST = DATA_DIR / "maxmind-test" / "test-data" / "GeoIP2-City-Test.mmdb"
COUNTRY_TEST = DATA_DIR / "maxmind-test" / "test-data" / "GeoIP2-Country-Test.mmdb"
EVERY = 10
SLICE_DATE = "2025-06-01"


@dataclass(frozen=True)
class Exported:
    snapshot: Path
    """The merged data, as `lookupd serve` loads it."""
    mmdb: Path
    """`lookupd export mmdb` of the snapshot."""
    db: Database
    """The snapshot, opened."""


def _every_tenth(table: RangeTable, version: int, top: int) -> RangeTable:
    if version == 4:
        starts = [int(key) for key in table.starts.tolist()]
    else:
        starts = [(int(high) << 64) | int(low) for high, low in table.starts.tolist()]
    ends = [*(start - 1 for start in starts[1:]), top]
    labels = table.labels.tolist()
    keep = [i for i in range(0, len(starts), EVERY) if labels[i]]
    return build_table(
        4 if version == 4 else 6,
        [starts[i] for i in keep],
        [ends[i] for i in keep],
        [labels[i] for i in keep],
    )


def make_exported(directory: Path) -> Exported:
    """Write the slice, merge the City test database over it and export the result."""
    embedded = open_database()
    sliced = Tables(
        _every_tenth(embedded.v4, 4, IPV4_MAX),
        _every_tenth(embedded.v6, 6, IPV6_MAX),
        embedded.label_names,
    )
    slice_path = directory / "slice.lookupd"
    source = SourceInfo(
        name="embedded, every 10th segment",
        format="npz",
        size=0,
        sha256="",
        rows=(len(sliced.v4), len(sliced.v6)),
        date=SLICE_DATE,
        date_from="test slice",
    )
    write_snapshot(slice_path, sliced, sources=[source])
    snapshot = directory / "merged.lookupd"
    assert main(["build", str(slice_path), str(CITY_TEST), "-o", str(snapshot), "-q"]) == 0
    mmdb = directory / "merged.mmdb"
    assert main(["export", "mmdb", str(snapshot), "-o", str(mmdb), "-q"]) == 0
    return Exported(snapshot, mmdb, open_database(snapshot))
