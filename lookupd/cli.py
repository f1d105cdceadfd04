"""The ``lookupd`` command line: look addresses up, report the version."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import lookupd
from lookupd import _parse, _search
from lookupd._constants import Status
from lookupd.database import Database, open_database
from lookupd.errors import LookupdError

# Printed for a valid address that no range covers.
NO_COUNTRY = "--"
_STDIN_CHUNK_BYTES = 1 << 20
# What the line parser strips around an address (and nothing else).
_BLANKS = b" \t\r"
_LOGGER = logging.getLogger("lookupd")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="lookupd: %(levelname)s: %(message)s",
    )
    try:
        status: int = args.run(args)
    except LookupdError as exc:
        print(f"lookupd: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return status


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookupd", description="High-throughput IP-to-country lookups."
    )
    parser.add_argument("--version", action="version", version=f"lookupd {lookupd.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    lookup = commands.add_parser(
        "lookup",
        help="print the country of each address",
        description=(
            "Print 'ADDRESS<TAB>COUNTRY' per address, COUNTRY being '--' where the data has "
            "none. Invalid addresses are reported on stderr by position and skipped; the "
            "exit status is then 1. With '-', read one address per line from stdin "
            "(streamed; blank lines are skipped; surrounding whitespace is ignored)."
        ),
    )
    lookup.add_argument("addresses", nargs="+", metavar="IP", help="addresses, or - for stdin")
    lookup.add_argument(
        "--db", metavar="PATH", help="data file (.npz or CSV) instead of the embedded data"
    )
    lookup.set_defaults(run=_run_lookup)

    version = commands.add_parser("version", help="print versions, cores and data source")
    version.add_argument("--db", metavar="PATH", help="data file instead of the embedded data")
    version.set_defaults(run=_run_version)
    return parser


def _run_lookup(args: argparse.Namespace) -> int:
    db = open_database(args.db)
    out = sys.stdout.buffer
    if args.addresses == ["-"]:
        invalid = _lookup_stream(db, sys.stdin.buffer, out)
    else:
        invalid = _lookup_arguments(db, args.addresses, out)
    out.flush()
    if invalid:
        print(f"lookupd: {invalid} invalid address(es)", file=sys.stderr)
        return 1
    return 0


def _lookup_arguments(db: Database, addresses: list[str], out: BinaryIO) -> int:
    result = db.lookup(addresses)
    codes = _code_bytes(db)
    lines = []
    invalid = 0
    for position, (address, label, status) in enumerate(
        zip(addresses, result.labels.tolist(), result.status.tolist(), strict=True), start=1
    ):
        if status == Status.INVALID_ADDRESS:
            print(f"lookupd: argument {position}: not an IP address: {address!r}", file=sys.stderr)
            invalid += 1
            continue
        lines.append(address.encode() + b"\t" + codes[label] + b"\n")
    out.write(b"".join(lines))
    return invalid


def _lookup_stream(db: Database, source: BinaryIO, out: BinaryIO) -> int:
    """Answer stdin chunk by chunk so output starts before input ends; return invalid count."""
    codes = _code_bytes(db)
    invalid = 0
    first_line = 1
    for block in _line_blocks(source):
        result = db.lookup_lines(block)
        lines = block.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        chunk = []
        for offset, (line, label, status) in enumerate(
            zip(lines, result.labels.tolist(), result.status.tolist(), strict=True)
        ):
            address = line.strip(_BLANKS)
            if status == Status.INVALID_ADDRESS:
                if address:
                    text = address.decode("utf-8", "backslashreplace")
                    print(
                        f"lookupd: line {first_line + offset}: not an IP address: {text!r}",
                        file=sys.stderr,
                    )
                    invalid += 1
                continue
            chunk.append(address + b"\t" + codes[label])
        if chunk:
            out.write(b"\n".join(chunk) + b"\n")
            out.flush()
        first_line += len(lines)
    return invalid


def _line_blocks(source: BinaryIO) -> Iterator[bytes]:
    """Yield runs of whole lines (each ending in a newline, except maybe the last)."""
    pending = b""
    while True:
        data = (
            source.read1(_STDIN_CHUNK_BYTES)
            if hasattr(source, "read1")
            else source.read(_STDIN_CHUNK_BYTES)
        )
        if not data:
            break
        data = pending + data
        cut = data.rfind(b"\n") + 1
        pending = data[cut:]
        if cut:
            yield data[:cut]
    if pending:
        yield pending


def _code_bytes(db: Database) -> list[bytes]:
    return [NO_COUNTRY.encode(), *(name.encode() for name in db.label_names[1:])]


def _run_version(args: argparse.Namespace) -> int:
    db = open_database(args.db)
    print(f"lookupd {lookupd.__version__}")
    print(f"search core: {_search.CORE}")
    print(f"parse core: {_parse.CORE}")
    print(f"data: {db.info.source}")
    for key in ("name", "version", "date", "license"):
        if key in db.info.metadata:
            print(f"data {key}: {db.info.metadata[key]}")
    print(f"segments: {len(db.v4)} IPv4, {len(db.v6)} IPv6; labels: {len(db.label_names) - 1}")
    return 0
