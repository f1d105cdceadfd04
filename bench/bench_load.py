"""Opening the data: ``lookupd.open()`` (embedded ``.npz``) vs ``maxminddb.open_database``.

``lookupd.open()`` decompresses and checks its tables and builds the jump tables; the
``maxminddb`` reader maps the file (``MODE_MMAP_EXT``, the default with the C extension) or
reads it whole (``MODE_MEMORY``) and decodes records lazily, on each ``get``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import lookupd

WORKLOAD = "geo-whois-asn-country"


def open_and_close_mmdb(path: str, mode: int) -> None:
    """Open a reader and close it (an unclosed reader would leak its file)."""
    import maxminddb

    maxminddb.open_database(path, mode).close()


@pytest.mark.benchmark(group="load")
def test_open_embedded(run_batch: Callable[..., Any], db: lookupd.Database) -> None:
    run_batch(lookupd.open, n=1, workload=WORKLOAD, unit="call")


@pytest.mark.benchmark(group="load")
@pytest.mark.parametrize("mode", ["MODE_MMAP_EXT", "MODE_MEMORY"])
def test_maxminddb_open(
    run_call: Callable[..., Any], mmdb_reader: Any, mmdb_path: Path, mode: str
) -> None:
    import maxminddb

    run_call(
        open_and_close_mmdb,
        str(mmdb_path),
        getattr(maxminddb, mode),
        workload=WORKLOAD,
        baseline=f"maxminddb {mode}",
    )
