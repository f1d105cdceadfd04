"""Distinct versions of a small data snapshot and of a policy file, for reload tests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from lookupd.core.table import Tables
from lookupd.datafiles.data_version import data_version_of
from lookupd.datafiles.open import open_database
from lookupd.datafiles.rows import RangeRows
from lookupd.datafiles.snapshot import write_snapshot

# 1.0.0.0/24 answers AU in every version; 11.0.0.0/8 answers the version's own country.
STABLE_ADDRESS = "1.0.0.1"
CHANGING_ADDRESS = "11.0.0.1"
_COUNTRIES = ("FR", "DE", "JP", "BR", "NZ", "CA", "KE", "IN")


def country_of_version(n: int) -> str:
    """The country :data:`CHANGING_ADDRESS` has in data version ``n``."""
    return _COUNTRIES[n % len(_COUNTRIES)]


def write_data(path: Path, n: int) -> str:
    """Write data version ``n`` atomically at ``path``; return its data version id."""
    rows = RangeRows()
    rows.add(4, 0x0100_0000, 0x0100_00FF, "AU")
    rows.add(4, 0x0B00_0000, 0x0BFF_FFFF, country_of_version(n))
    # A range only this version has, so every n has its own tables (and version id).
    rows.add(4, 0x0C00_0000 + 256 * n, 0x0C00_0000 + 256 * n + 255, "US")
    rows.add(6, 0x2A00 << 112, (0x2A00 << 112) | ((1 << 112) - 1), "DE")
    v4, v6 = rows.tables()
    write_snapshot(path, Tables(v4, v6, tuple(rows.label_names)))
    return data_version_of(open_database(path)).id


def policy_text(n: int) -> str:
    """Policy file version ``n``: ``only-au`` allows AU only; ``deny-changing`` denies the
    country :data:`CHANGING_ADDRESS` has in data version ``n``."""
    return (
        "policies:\n"
        "  only-au:\n"
        f"    description: allow Australia only (version {n})\n"
        "    allow_countries: [AU]\n"
        "  deny-changing:\n"
        f"    description: deny {country_of_version(n)}\n"
        f"    deny_countries: [{country_of_version(n)}]\n"
    )


def write_policies(path: Path, n: int) -> str:
    """Write policy version ``n`` atomically at ``path``; return its version (SHA-256)."""
    text = policy_text(n).encode()
    replace_atomically(path, text)
    return hashlib.sha256(text).hexdigest()


def replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
