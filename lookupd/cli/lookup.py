"""``lookupd lookup``: the country of each address, from local data or from a server.

Addresses come from the arguments or, with ``-``, from stdin, which is answered block by
block so output starts before input ends (a pipeline of millions of lines streams). A line
of stdin longer than :data:`~lookupd.datafiles.formats.lines.MAX_LINE_BYTES` is refused
(exit status 2) before more of it is read, so memory stays bounded whatever comes in.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from lookupd.cli.tls import add_client_tls_flags, any_client_tls_flag, client_tls
from lookupd.codes import Status
from lookupd.core.database import Database
from lookupd.core.labels import split_label
from lookupd.datafiles.formats.lines import MAX_LINE_BYTES, check_lines, too_long
from lookupd.datafiles.open import open_database
from lookupd.errors import quoted

if TYPE_CHECKING:
    from lookupd.client import Client

# Printed for a valid address that no range covers.
NO_COUNTRY = "--"
_STDIN_CHUNK_BYTES = 1 << 20
_STDIN = "stdin"
_BOM = b"\xef\xbb\xbf"
# What the line parser strips around an address (and nothing else).
_BLANKS = b" \t\r"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``lookup`` command to the subparsers ``commands``."""
    lookup = commands.add_parser(
        "lookup",
        help="print the country of each address",
        description=(
            "Print 'ADDRESS<TAB>COUNTRY' per address, COUNTRY being '--' where the data has "
            "none. Invalid addresses are reported on stderr by position and skipped; the "
            "exit status is then 1. With '-', read one address per line from stdin "
            "(streamed; blank lines are skipped; surrounding whitespace is ignored; a line "
            f"longer than {MAX_LINE_BYTES:,} bytes stops the command with exit status 2)."
        ),
    )
    lookup.add_argument("addresses", nargs="+", metavar="IP", help="addresses, or - for stdin")
    lookup.add_argument(
        "--db",
        metavar="PATH",
        help="snapshot or any source file (see lookupd build) instead of the embedded data",
    )
    lookup.add_argument(
        "--subdivisions",
        action="store_true",
        help="add a third column: the ISO 3166-2 subdivision (UA-43), '--' where none",
    )
    lookup.add_argument(
        "--server",
        metavar="HOST:PORT",
        help="ask a lookupd server (lookupd serve) instead of reading data here",
    )
    add_client_tls_flags(lookup)
    lookup.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print each address and its country; return 1 if some address was invalid."""
    if args.server is not None:
        if args.db is not None:
            print("lookupd: error: --db and --server exclude each other", file=sys.stderr)
            return 2
        return _lookup_on_server(args)
    if any_client_tls_flag(args):
        print("lookupd: error: the --tls-* options apply only with --server", file=sys.stderr)
        return 2
    db = open_database(args.db)
    codes = _code_bytes(db, args.subdivisions)
    out = sys.stdout.buffer
    if args.addresses == ["-"]:
        invalid = _lookup_stream(db, sys.stdin.buffer, out, codes)
    else:
        invalid = _lookup_arguments(db, args.addresses, out, codes)
    return _finish(out, invalid)


def _finish(out: BinaryIO, invalid: int) -> int:
    out.flush()
    if invalid:
        print(f"lookupd: {invalid} invalid address(es)", file=sys.stderr)
        return 1
    return 0


def _lookup_arguments(db: Database, addresses: list[str], out: BinaryIO, codes: list[bytes]) -> int:
    result = db.lookup(addresses)
    lines = []
    invalid = 0
    for position, (address, label, status) in enumerate(
        zip(addresses, result.labels.tolist(), result.status.tolist(), strict=True), start=1
    ):
        if status == Status.INVALID_ADDRESS:
            print(
                f"lookupd: argument {position}: not an IP address: {quoted(address)}",
                file=sys.stderr,
            )
            invalid += 1
            continue
        lines.append(address.encode() + b"\t" + codes[label] + b"\n")
    out.write(b"".join(lines))
    return invalid


def _lookup_stream(db: Database, source: BinaryIO, out: BinaryIO, codes: list[bytes]) -> int:
    """Answer stdin chunk by chunk so output starts before input ends; return invalid count."""
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
                    text = quoted(address.decode("utf-8", "backslashreplace"))
                    print(
                        f"lookupd: line {first_line + offset}: not an IP address: {text}",
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
    """Yield runs of whole lines (each ending in a newline, except maybe the last).

    A UTF-8 byte order mark at the start is dropped.

    Raises:
        LineTooLongError: a line is longer than :data:`MAX_LINE_BYTES`.
    """
    pending = b""
    line = 1  # the number of pending's line
    start = True
    while True:
        data = (
            source.read1(_STDIN_CHUNK_BYTES)
            if hasattr(source, "read1")
            else source.read(_STDIN_CHUNK_BYTES)
        )
        if not data:
            break
        data = pending + data
        if start:
            if len(data) < len(_BOM) and _BOM.startswith(data):
                pending = data  # too short to tell yet
                continue
            start = False
            data = data.removeprefix(_BOM)
        cut = data.rfind(b"\n") + 1
        pending = data[cut:]
        if len(pending) > MAX_LINE_BYTES:
            raise too_long(_STDIN, line + data.count(b"\n", 0, cut))
        if cut:
            block = data[:cut]
            check_lines(block, _STDIN, line)
            line += block.count(b"\n")
            yield block
    if pending:
        yield pending


def _code_bytes(db: Database, subdivisions: bool) -> list[bytes]:
    """Return the output column(s) for each label index."""
    columns = []
    for label in db.label_names:
        country, subdivision = split_label(label) if label else (NO_COUNTRY, None)
        text = f"{country}\t{subdivision or NO_COUNTRY}" if subdivisions else country
        columns.append(text.encode())
    return columns


def _lookup_on_server(args: argparse.Namespace) -> int:
    """Answer the arguments or stdin by asking a server; output as without --server."""
    # gRPC is imported only by the commands that use it.
    from lookupd.client import Client

    out = sys.stdout.buffer
    with Client(args.server, tls=client_tls(args)) as client:
        if args.addresses == ["-"]:
            invalid = _stream_remotely(client, sys.stdin.buffer, out, args.subdivisions)
        else:
            where = [f"argument {position}" for position in range(1, len(args.addresses) + 1)]
            invalid = _answer_remotely(client, args.addresses, where, out, args.subdivisions)
    return _finish(out, invalid)


def _stream_remotely(client: Client, source: BinaryIO, out: BinaryIO, subdivisions: bool) -> int:
    """Ask the server block by block of ``source``'s lines; return the invalid count."""
    invalid = 0
    first_line = 1
    for block in _line_blocks(source):
        lines = block.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        numbered = [(first_line + offset, line.strip(_BLANKS)) for offset, line in enumerate(lines)]
        numbered = [(number, line) for number, line in numbered if line]
        texts = [line.decode("utf-8", "backslashreplace") for _, line in numbered]
        where = [f"line {number}" for number, _ in numbered]
        invalid += _answer_remotely(client, texts, where, out, subdivisions)
        out.flush()
        first_line += len(lines)
    return invalid


def _answer_remotely(
    client: Client, addresses: list[str], where: list[str], out: BinaryIO, subdivisions: bool
) -> int:
    """Look ``addresses`` up on the server, write the answers; return the invalid count."""
    answers = client.lookup(addresses, subdivisions=subdivisions)
    lines = []
    invalid = 0
    subs = answers.subdivisions.tolist() if answers.subdivisions is not None else None
    for i, (address, country, status) in enumerate(
        zip(addresses, answers.countries.tolist(), answers.status.tolist(), strict=True)
    ):
        if status == Status.INVALID_ADDRESS:
            print(f"lookupd: {where[i]}: not an IP address: {quoted(address)}", file=sys.stderr)
            invalid += 1
            continue
        line = f"{address}\t{country or NO_COUNTRY}"
        if subs is not None:
            line += f"\t{subs[i] or NO_COUNTRY}"
        lines.append(line + "\n")
    out.write("".join(lines).encode("utf-8", "backslashreplace"))
    return invalid
