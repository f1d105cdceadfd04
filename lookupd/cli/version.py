"""``lookupd version``: the package version, the active cores and the data's provenance."""

from __future__ import annotations

import argparse

from lookupd.core import _mmdb, _parse, _search
from lookupd.datafiles.data_version import data_version_of
from lookupd.datafiles.open import open_database
from lookupd.version import __version__

# Data metadata keys `lookupd version` prints, and how it names them.
_VERSION_FIELDS = {
    "name": "data name",
    "version": "data release",
    "license": "data license",
}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``version`` command to the subparsers ``commands``."""
    version = commands.add_parser("version", help="print versions, cores and data source")
    version.add_argument("--db", metavar="PATH", help="data file instead of the embedded data")
    version.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the versions, the cores in use and what the data says about itself."""
    db = open_database(args.db)
    print(f"lookupd {__version__}")
    print(f"search core: {_search.CORE}")
    print(f"parse core: {_parse.CORE}")
    print(f"mmdb core: {_mmdb.CORE}")
    print(f"data: {db.info.source}")
    for key, title in _VERSION_FIELDS.items():
        if key in db.info.metadata:
            print(f"{title}: {db.info.metadata[key]}")
    version = data_version_of(db)
    print(f"data version id: {version.id}")
    if version.data_date:
        print(f"data date: {version.data_date} (from {version.data_date_from})")
    if version.built_at:
        print(f"data built: {version.built_at}")
    print(f"segments: {len(db.v4)} IPv4, {len(db.v6)} IPv6; labels: {len(db.label_names) - 1}")
    return 0
