"""Small sources for the ``lookupd update`` tests, and a way to read back a snapshot."""

from __future__ import annotations

from pathlib import Path

from lookupd.datafiles.snapshot import load_snapshot

# Three IPv4 ranges and one IPv6 range: 16,777,216 * 2 + 256 known IPv4 addresses.
ROWS = {
    "1.0.0.0,1.0.0.255": "AU",
    "2.0.0.0,2.255.255.255": "FR",
    "3.0.0.0,3.255.255.255": "US",
    "2a00::,2a00:ffff:ffff:ffff:ffff:ffff:ffff:ffff": "DE",
}


def csv(**changes: str) -> bytes:
    """The rows as location-csv, with ``changes`` ({"FR": "DE"}-style relabelling)."""
    return "".join(f"{span},{changes.get(code, code)}\n" for span, code in ROWS.items()).encode()


def small_change() -> bytes:
    """The rows with 1.0.0.0/24 relabelled: 256 of 33 million addresses."""
    return csv().replace(b"1.0.0.255,AU", b"1.0.0.255,NZ")


def version(path: Path) -> str:
    """The data version of the snapshot at ``path``."""
    return load_snapshot(path).data_version


def country(path: Path, address: str) -> str:
    """The label the snapshot at ``path`` gives ``address`` ('' for none)."""
    from lookupd.core.database import Database, DataInfo

    snapshot = load_snapshot(path)
    db = Database(snapshot.v4, snapshot.v6, snapshot.label_names, DataInfo(str(path), {}))
    return db.lookup([address]).countries()[0] or ""
