"""``lookupd info`` and ``lookupd diff``: describe a data file, or how two of them differ."""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookupd.cli.arguments import whole_number
from lookupd.cli.lookup import NO_COUNTRY
from lookupd.core.table import Tables
from lookupd.datafiles.data_version import data_date_of
from lookupd.datafiles.merge import FamilyDiff, address_totals, diff, merge_sources
from lookupd.datafiles.npz import load_compiled
from lookupd.datafiles.open import open_database
from lookupd.datafiles.progress import progress_line
from lookupd.datafiles.snapshot import is_snapshot, load_snapshot, payload_sha256

_FAMILY_NAMES = {4: "IPv4", 6: "IPv6"}
# Header facts `lookupd info` prints, and how it names them.
_INFO_FIELDS = {
    "data_version": "data version id",
    "format_version": "format version",
    "data_date": "data date",
    "created": "built",
    "lookupd_version": "built by lookupd",
    "name": "name",
    "version": "version",
    "date": "date",
    "license": "license",
}


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``info`` and ``diff`` commands to the subparsers ``commands``."""
    info = commands.add_parser(
        "info",
        help="describe a snapshot or source: metadata, counts, addresses per label",
        description=(
            "Describe FILE (a snapshot, a compiled .npz or any source file; the embedded "
            "data without FILE): where the data came from, segment counts, the addresses "
            "each label covers in IPv4 and IPv6 (exact), and labels that are not ISO "
            "3166-1 country codes."
        ),
    )
    info.add_argument("file", nargs="?", metavar="FILE", help="data file (default: embedded)")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(run=run_info)

    compare = commands.add_parser(
        "diff",
        help="list the address ranges whose country differs between two data files",
        description=(
            "Compare OLD and NEW (snapshots, compiled .npz or source files) address by "
            "address: list each range whose label changed and total the addresses per "
            "(old -> new) pair, for IPv4 and IPv6. '--' is no country. Exit status: 0 if "
            "every address has the same label, 1 if some differ, 2 on error."
        ),
    )
    compare.add_argument("old", metavar="OLD")
    compare.add_argument("new", metavar="NEW")
    compare.add_argument("--summary", action="store_true", help="totals only, no ranges")
    compare.add_argument(
        "--limit", type=whole_number, metavar="N", help="list at most N ranges per family"
    )
    compare.add_argument("--json", action="store_true", help="print one JSON object")
    compare.set_defaults(run=run_diff)


@dataclass(frozen=True, slots=True)
class _Loaded:
    """Any data file, as tables and a description of it."""

    name: str
    """The path as given, or ``embedded:NAME``."""
    kind: str
    """``snapshot``, ``compiled``, ``embedded`` or ``source``."""
    tables: Tables
    """The tables, label table canonical for sources."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """What the file says about itself (snapshot header facts, source fingerprints)."""


def _load_any(path: str | None, *, quiet: bool = False) -> _Loaded:
    """Load the embedded data, a snapshot, a compiled ``.npz`` or any source file."""
    if path is None:
        db = open_database()
        return _Loaded(
            db.info.source, "embedded", Tables(db.v4, db.v6, db.label_names), db.info.metadata
        )
    if is_snapshot(path):
        snapshot = load_snapshot(path)
        return _Loaded(path, "snapshot", snapshot.tables, snapshot.metadata)
    if Path(path).suffix == ".npz":
        v4, v6, names, metadata = load_compiled(path)
        return _Loaded(path, "compiled", Tables(v4, v6, tuple(names)), metadata)
    display = progress_line(sys.stderr, quiet=quiet)
    try:
        merged = merge_sources([path], report=display)
    finally:
        if display is not None:
            display.close()
    (source,) = merged.sources
    metadata = {"sources": [source.as_json()], "notes": merged.notes}
    return _Loaded(path, f"source ({source.format})", merged.tables, metadata)


# ---------------------------------------------------------------------------------------
# info


def run_info(args: argparse.Namespace) -> int:
    """Describe one data file, as text or as one JSON object."""
    # Policies load YAML and pycountry: only the commands that check labels pay for them.
    from lookupd.policies.iso3166 import non_iso_labels

    loaded = _load_any(args.file, quiet=args.json)
    loaded = _with_version_and_date(loaded)
    tables = loaded.tables
    names = tables.label_names
    totals = {
        family: {names[label]: count for label, count in address_totals(table).items()}
        for family, table in (("ipv4", tables.v4), ("ipv6", tables.v6))
    }
    non_iso = non_iso_labels(names)
    if args.json:
        record = {
            "file": loaded.name,
            "kind": loaded.kind,
            "metadata": loaded.metadata,
            "segments": {"ipv4": len(tables.v4), "ipv6": len(tables.v6)},
            "labels": list(names[1:]),
            "non_iso_labels": non_iso,
            "addresses": totals,
        }
        print(json.dumps(record, indent=2, sort_keys=False))
    else:
        _print_info(loaded, totals, non_iso)
    return 0


def _with_version_and_date(loaded: _Loaded) -> _Loaded:
    """``loaded`` with its data version id and data date in its metadata, whatever its kind.

    A snapshot records both; for other data they are what a snapshot of it would record,
    so the embedded data shows the id a snapshot built from its sources has.
    """
    metadata = dict(loaded.metadata)
    if not isinstance(metadata.get("data_version"), str):
        metadata = {"data_version": payload_sha256(loaded.tables), **metadata}
    date = data_date_of(metadata)
    metadata["data_date"] = date.date
    metadata["data_date_from"] = date.origin
    return _Loaded(loaded.name, loaded.kind, loaded.tables, metadata)


def _print_info(loaded: _Loaded, totals: dict[str, dict[str, int]], non_iso: list[str]) -> None:
    tables = loaded.tables
    names = tables.label_names
    metadata = loaded.metadata
    print(f"file: {loaded.name}")
    print(f"kind: {loaded.kind}")
    for key, title in _INFO_FIELDS.items():
        if metadata.get(key):
            origin = metadata.get("data_date_from") if key == "data_date" else None
            print(f"{title}: {metadata[key]}" + (f" (from {origin})" if origin else ""))
    for number, source in enumerate(metadata.get("sources", []), start=1):
        print(f"source {number}: {_describe_source(source)}")
    print(f"segments: {len(tables.v4):,} IPv4, {len(tables.v6):,} IPv6")
    print(f"labels: {len(names) - 1}")
    print(f"non-ISO labels: {', '.join(non_iso) if non_iso else 'none'}")
    for note, count in metadata.get("notes", {}).items():
        print(f"note: {note}: {count:,}")
    print("addresses per label:")
    rows = [("label", "IPv4", "IPv6")]
    for name in names:
        v4, v6 = totals["ipv4"].get(name, 0), totals["ipv6"].get(name, 0)
        rows.append((name or NO_COUNTRY, str(v4), str(v6)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for label, v4_text, v6_text in rows:
        print(f"  {label:<{widths[0]}}  {v4_text:>{widths[1]}}  {v6_text:>{widths[2]}}")


def _describe_source(source: Any) -> str:
    """Return one line about a source record of a header (tolerating old or odd records)."""
    if not isinstance(source, dict):
        return str(source)
    parts = [str(source.get("name", "?"))]
    facts = []
    for key in ("format", "size", "sha256"):
        if key in source:
            value = source[key]
            facts.append(f"{value:,} bytes" if key == "size" else f"{key} {value}")
    rows = source.get("rows")
    if isinstance(rows, dict):
        facts.append(f"{rows.get('ipv4', 0):,} IPv4 and {rows.get('ipv6', 0):,} IPv6 rows")
    if source.get("date"):
        facts.append(f"dated {source['date']} from {source.get('date_from') or '?'}")
    if facts:
        parts.append(f"({', '.join(facts)})")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------
# diff


def run_diff(args: argparse.Namespace) -> int:
    """List how two data files differ; return 1 if they do, 0 if not."""
    old = _load_any(args.old, quiet=args.json)
    new = _load_any(args.new, quiet=args.json)
    families = diff(old.tables, new.tables)
    different = any(len(family) for family in families)
    limit = 0 if args.summary else args.limit
    if args.json:
        record = {
            "old": _json_side(old),
            "new": _json_side(new),
            "identical": not different,
            **{f"ipv{family.version}": _json_family(family, limit) for family in families},
        }
        print(json.dumps(record, indent=2))
        return 1 if different else 0
    print(f"--- {_describe_side(old)}")
    print(f"+++ {_describe_side(new)}")
    for family in families:
        _print_family(family, limit)
    return 1 if different else 0


def _print_family(family: FamilyDiff, limit: int | None) -> None:
    title = _FAMILY_NAMES[family.version]
    if not len(family):
        print(f"{title}: no changes")
        return
    print(f"{title}: {len(family):,} ranges changed, {family.addresses:,} addresses")
    for first, last, old_label, new_label in family.ranges(limit):
        count = last - first + 1
        print(
            f"  {_address(family.version, first)}-{_address(family.version, last)}  "
            f"{old_label or NO_COUNTRY} -> {new_label or NO_COUNTRY}  {count:,}"
        )
    shown = len(family) if limit is None else min(limit, len(family))
    if 0 < shown < len(family):
        print(f"  ... {len(family) - shown:,} more ranges")
    print(f"{title} totals (old -> new: addresses):")
    for (old_label, new_label), count in family.totals.items():
        print(f"  {old_label or NO_COUNTRY} -> {new_label or NO_COUNTRY}: {count:,}")


def _describe_side(loaded: _Loaded) -> str:
    facts = [loaded.kind]
    if "data_version" in loaded.metadata:
        facts.append(f"data version id {loaded.metadata['data_version']}")
    tables = loaded.tables
    facts.append(f"{len(tables.v4):,} IPv4 and {len(tables.v6):,} IPv6 segments")
    return f"{loaded.name} ({', '.join(facts)})"


def _json_side(loaded: _Loaded) -> dict[str, Any]:
    return {
        "file": loaded.name,
        "kind": loaded.kind,
        "data_version": loaded.metadata.get("data_version"),
        "segments": {"ipv4": len(loaded.tables.v4), "ipv6": len(loaded.tables.v6)},
    }


def _json_family(family: FamilyDiff, limit: int | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "ranges_changed": len(family),
        "addresses_changed": family.addresses,
        "totals": [
            {"old": old, "new": new, "addresses": count}
            for (old, new), count in family.totals.items()
        ],
    }
    if limit != 0:
        record["ranges"] = [
            {
                "first": _address(family.version, first),
                "last": _address(family.version, last),
                "old": old,
                "new": new,
                "addresses": last - first + 1,
            }
            for first, last, old, new in family.ranges(limit)
        ]
    return record


def _address(version: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))
