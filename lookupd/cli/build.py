"""``lookupd build``: compile source files into one memory-mapped snapshot."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lookupd.datafiles.formats import FORMATS
from lookupd.datafiles.merge import Merged, merge_sources
from lookupd.datafiles.progress import progress_line
from lookupd.datafiles.snapshot import write_snapshot
from lookupd.errors import LookupdError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``build`` command to the subparsers ``commands``."""
    build = commands.add_parser(
        "build",
        help="compile sources into one memory-mapped snapshot",
        description=(
            "Read each SOURCE (format detected from its name and content unless --format "
            "says), resolve its overlapping ranges, lay the sources over each other in "
            "order and write one snapshot. Where sources overlap, a later source wins "
            "wherever it has a country; its gaps leave the earlier sources' data in place "
            "(e.g. a local corrections CSV given after the vendor database). The output is "
            "written to a temporary file and renamed over FILE: nothing is written on error."
        ),
    )
    build.add_argument("sources", nargs="+", metavar="SOURCE", help="data files, in precedence")
    build.add_argument("-o", "--output", required=True, metavar="FILE", help="snapshot to write")
    add_format_option(build)
    build.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")
    build.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Merge the sources, write the snapshot and (unless quiet) summarise it."""
    # Policies load YAML and pycountry: only the commands that check labels pay for them.
    from lookupd.policies.iso3166 import non_iso_labels

    started = time.perf_counter()
    formats = formats_for(args.format, len(args.sources))
    output = Path(args.output)
    display = progress_line(sys.stderr, quiet=args.quiet)
    try:
        merged = merge_sources(args.sources, formats=formats, report=display)
        non_iso = non_iso_labels(merged.tables.label_names)
        if display is not None:
            display.phase(f"writing {output.name}")
        header = write_snapshot(
            output,
            merged.tables,
            sources=merged.sources,
            notes=merged.notes,
            non_iso_labels=non_iso,
        )
    finally:
        if display is not None:
            display.close()
    if args.quiet:
        return 0
    elapsed_s = time.perf_counter() - started
    print(f"wrote {output} ({header['file_size']:,} bytes)")
    print(f"data version id: {header['payload_sha256']}")
    if header["data_date"]:
        print(f"data date: {header['data_date']} (from {header['data_date_from']})")
    _summarise(merged, non_iso)
    print(f"time: {elapsed_s:.2f} s")
    return 0


def add_format_option(command: argparse.ArgumentParser) -> None:
    """Add ``--format`` to a command that reads SOURCE files (build, export mmdb)."""
    command.add_argument(
        "--format",
        action="append",
        choices=sorted(FORMATS),
        metavar="NAME",
        help=(
            "source format, once for all sources or once per source in order: "
            + ", ".join(sorted(FORMATS))
            + " (a snapshot source is read as one whatever this says)"
        ),
    )


def formats_for(given: list[str] | None, sources: int) -> list[str | None]:
    """One format (None: detect) per source, from the ``--format`` options.

    Raises:
        LookupdError: the count is neither one nor one per source.
    """
    if not given:
        return [None] * sources
    chosen: list[str | None] = list(given)
    if len(chosen) == 1:
        return chosen * sources
    if len(chosen) == sources:
        return chosen
    msg = (
        f"{len(chosen)} --format options for {sources} sources: give one for all, or one per source"
    )
    raise LookupdError(msg)


def _summarise(merged: Merged, non_iso: list[str]) -> None:
    tables = merged.tables
    rows_v4, rows_v6 = merged.rows
    for number, source in enumerate(merged.sources, start=1):
        print(
            f"source {number}: {source.name} ({source.format}, {source.rows[0]:,} IPv4 and "
            f"{source.rows[1]:,} IPv6 rows)"
        )
    print(f"rows: {rows_v4:,} IPv4, {rows_v6:,} IPv6")
    print(f"segments: {len(tables.v4):,} IPv4, {len(tables.v6):,} IPv6")
    print(f"labels: {len(tables.label_names) - 1}")
    print(f"non-ISO labels: {', '.join(non_iso) if non_iso else 'none'}")
    for note, count in merged.notes.items():
        print(f"note: {note}: {count:,}")
