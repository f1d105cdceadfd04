"""The ``lookupd`` command line: look addresses up, serve, reload, build, update and inspect data.

Each command group lives in its own module, which adds its subparser and the function
that runs it (``set_defaults(run=...)``); this module assembles them and runs one.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

# gRPC's core logs to stderr below lookupd's logging, at its INFO level a line for every
# failed TLS handshake (a client can add those at will); an operator can still set it.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from lookupd.cli import admin, bench, build, describe, export, lookup, serve, update, version
from lookupd.errors import LookupdError
from lookupd.version import __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    # Logging is configured here only (lookupd serve replaces it with its own lines).
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
    parser.add_argument("--version", action="version", version=f"lookupd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    lookup.add_parser(commands)
    admin.add_parser(commands)
    serve.add_parser(commands)
    version.add_parser(commands)
    build.add_parser(commands)
    describe.add_parsers(commands)
    update.add_parser(commands)
    bench.add_parser(commands)
    export.add_parser(commands)
    return parser
