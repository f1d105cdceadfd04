"""The ``lookupd`` command line: look addresses up, build and inspect data, report versions."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from lookupd.codes import Status
from lookupd.core import _parse, _search
from lookupd.core.database import Database
from lookupd.core.labels import split_label
from lookupd.core.table import Tables
from lookupd.datafiles.formats import FORMATS
from lookupd.datafiles.merge import (
    FamilyDiff,
    address_totals,
    diff,
    merge_sources,
)
from lookupd.datafiles.npz import load_compiled
from lookupd.datafiles.open import open_database
from lookupd.datafiles.progress import progress_line
from lookupd.datafiles.snapshot import is_snapshot, load_snapshot, write_snapshot
from lookupd.errors import LookupdError
from lookupd.policies.iso3166 import non_iso_labels
from lookupd.version import __version__

if TYPE_CHECKING:
    from lookupd.client import Client
    from lookupd.client.tls import ClientTLS

# Printed for a valid address that no range covers.
NO_COUNTRY = "--"
_STDIN_CHUNK_BYTES = 1 << 20
# What the line parser strips around an address (and nothing else).
_BLANKS = b" \t\r"
_LOGGER = logging.getLogger("lookupd")
# Data metadata keys `lookupd version` prints, and how it names them.
_VERSION_FIELDS = {
    "name": "data name",
    "version": "data release",
    "date": "data date",
    "license": "data license",
    "data_version": "data version id",
    "created": "data built",
}
_FAMILY_NAMES = {4: "IPv4", 6: "IPv6"}


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
    parser.add_argument("--version", action="version", version=f"lookupd {__version__}")
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
    _add_client_tls_flags(lookup)
    lookup.set_defaults(run=_run_lookup)

    reload = commands.add_parser(
        "reload",
        help="ask a server to reload its data and policy files (an admin RPC)",
        description=(
            "Ask a running lookupd server to reload its data and policy files now. The "
            "server must enable admin RPCs (--admin-token-file or --admin-mtls). With "
            "several worker processes, the one that takes the call reloads before it "
            "answers and tells the others to follow."
        ),
    )
    reload.add_argument("--server", metavar="HOST:PORT", required=True, help="the server")
    reload.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding the admin token [LOOKUPD_ADMIN_TOKEN_FILE]",
    )
    _add_client_tls_flags(reload)
    reload.set_defaults(run=_run_reload)

    serve = commands.add_parser(
        "serve",
        help="run the gRPC server",
        description=(
            "Serve lookups and policy checks over gRPC (service lookupd.v1.LookupService, "
            "with grpc.health.v1 health and server reflection). Each option can also be set "
            "by the environment variable named in its help; an option given here wins. "
            "SIGTERM or SIGINT stops the server: health goes NOT_SERVING, new calls are "
            "refused after the drain and calls in flight get the grace period to finish. "
            "SIGHUP reloads the data and policy files (so does a change to them)."
        ),
    )
    for setting in SERVE_SETTINGS:
        text = f"{setting.help} (default: {setting.default}) [{setting.variable}]"
        if setting.kind == "bool":
            serve.add_argument(setting.flag, action="store_true", default=None, help=text)
        else:
            metavar = setting.variable.removeprefix("LOOKUPD_")
            serve.add_argument(setting.flag, metavar=metavar, help=text)
    serve.set_defaults(run=_run_serve)

    version = commands.add_parser("version", help="print versions, cores and data source")
    version.add_argument("--db", metavar="PATH", help="data file instead of the embedded data")
    version.set_defaults(run=_run_version)

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
    build.add_argument(
        "--format",
        action="append",
        choices=sorted(FORMATS),
        metavar="NAME",
        help=(
            "source format, once for all sources or once per source in order: "
            + ", ".join(sorted(FORMATS))
        ),
    )
    build.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")
    build.set_defaults(run=_run_build)

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
    info.set_defaults(run=_run_info)

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
        "--limit", type=_non_negative, metavar="N", help="list at most N ranges per family"
    )
    compare.add_argument("--json", action="store_true", help="print one JSON object")
    compare.set_defaults(run=_run_diff)
    return parser


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        msg = f"not a count: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _run_lookup(args: argparse.Namespace) -> int:
    if args.server is not None:
        if args.db is not None:
            print("lookupd: error: --db and --server exclude each other", file=sys.stderr)
            return 2
        return _lookup_on_server(args)
    if args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name:
        print("lookupd: error: the --tls-* options apply only with --server", file=sys.stderr)
        return 2
    db = open_database(args.db)
    codes = _code_bytes(db, args.subdivisions)
    out = sys.stdout.buffer
    if args.addresses == ["-"]:
        invalid = _lookup_stream(db, sys.stdin.buffer, out, codes)
    else:
        invalid = _lookup_arguments(db, args.addresses, out, codes)
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
            print(f"lookupd: argument {position}: not an IP address: {address!r}", file=sys.stderr)
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


def _add_client_tls_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS to the server")
    group.add_argument("--tls-ca", metavar="PATH", help="CA (PEM) to verify the server with")
    group.add_argument("--tls-cert", metavar="PATH", help="client certificate (PEM), for mTLS")
    group.add_argument("--tls-key", metavar="PATH", help="client private key (PEM), for mTLS")
    group.add_argument(
        "--tls-server-name", metavar="NAME", help="name to expect in the server certificate"
    )


def _client_tls(args: argparse.Namespace) -> ClientTLS | None:
    """The client TLS settings of the flags; None (plaintext) when no TLS flag is given."""
    from lookupd.client.tls import ClientTLS

    if not (args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name):
        return None
    if bool(args.tls_cert) != bool(args.tls_key):
        msg = "--tls-cert and --tls-key go together"
        raise LookupdError(msg)
    return ClientTLS(
        ca=Path(args.tls_ca) if args.tls_ca else None,
        cert=Path(args.tls_cert) if args.tls_cert else None,
        key=Path(args.tls_key) if args.tls_key else None,
        server_name=args.tls_server_name,
    )


def _run_reload(args: argparse.Namespace) -> int:
    from lookupd.client import Client
    from lookupd.server.admin import AdminConfig

    token_file = args.token_file or os.environ.get("LOOKUPD_ADMIN_TOKEN_FILE")
    # Read and checked as the server reads it.
    token = AdminConfig(token_file=Path(token_file)).loaded().token if token_file else None
    with Client(args.server, tls=_client_tls(args)) as client:
        response = client.reload(token=token)
    changed = [
        name
        for name, flag in (("data", response.data_changed), ("policies", response.policies_changed))
        if flag
    ]
    print(f"data version: {response.data_version.id}")
    print(f"policy version: {response.policy_version or '(none)'}")
    print(f"changed: {', '.join(changed) or 'nothing'}")
    return 0


def _lookup_on_server(args: argparse.Namespace) -> int:
    """Answer the arguments or stdin by asking a server; output as without --server."""
    # gRPC is imported only by the commands that use it.
    from lookupd.client import Client

    out = sys.stdout.buffer
    invalid = 0
    with Client(args.server, tls=_client_tls(args)) as client:
        if args.addresses == ["-"]:
            first_line = 1
            for block in _line_blocks(sys.stdin.buffer):
                lines = block.split(b"\n")
                if lines and lines[-1] == b"":
                    lines.pop()
                numbered = [
                    (first_line + offset, line.strip(_BLANKS)) for offset, line in enumerate(lines)
                ]
                numbered = [(number, line) for number, line in numbered if line]
                texts = [line.decode("utf-8", "backslashreplace") for _, line in numbered]
                where = [f"line {number}" for number, _ in numbered]
                invalid += _answer_remotely(client, texts, where, out, args.subdivisions)
                out.flush()
                first_line += len(lines)
        else:
            where = [f"argument {position}" for position in range(1, len(args.addresses) + 1)]
            invalid = _answer_remotely(client, args.addresses, where, out, args.subdivisions)
    out.flush()
    if invalid:
        print(f"lookupd: {invalid} invalid address(es)", file=sys.stderr)
        return 1
    return 0


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
            print(f"lookupd: {where[i]}: not an IP address: {address!r}", file=sys.stderr)
            invalid += 1
            continue
        line = f"{address}\t{country or NO_COUNTRY}"
        if subs is not None:
            line += f"\t{subs[i] or NO_COUNTRY}"
        lines.append(line + "\n")
    out.write("".join(lines).encode("utf-8", "backslashreplace"))
    return invalid


def _code_bytes(db: Database, subdivisions: bool) -> list[bytes]:
    """Return the output column(s) for each label index."""
    columns = []
    for label in db.label_names:
        country, subdivision = split_label(label) if label else (NO_COUNTRY, None)
        text = f"{country}\t{subdivision or NO_COUNTRY}" if subdivisions else country
        columns.append(text.encode())
    return columns


def _run_version(args: argparse.Namespace) -> int:
    db = open_database(args.db)
    print(f"lookupd {__version__}")
    print(f"search core: {_search.CORE}")
    print(f"parse core: {_parse.CORE}")
    print(f"data: {db.info.source}")
    for key, title in _VERSION_FIELDS.items():
        if key in db.info.metadata:
            print(f"{title}: {db.info.metadata[key]}")
    print(f"segments: {len(db.v4)} IPv4, {len(db.v6)} IPv6; labels: {len(db.label_names) - 1}")
    return 0


# ---------------------------------------------------------------------------------------
# serve


@dataclass(frozen=True, slots=True)
class Setting:
    """One ``lookupd serve`` setting: a flag, an environment variable, a default."""

    flag: str
    variable: str
    kind: str
    """``str``, ``port``, ``count`` (>= 1), ``seconds`` (>= 0), ``bool``, or
    ``choice:a,b``."""
    default: str
    """The default, as the README table shows it."""
    help: str

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


SERVE_SETTINGS: tuple[Setting, ...] = (
    Setting("--host", "LOOKUPD_HOST", "str", "[::]", "address to listen on ([::]: all)"),
    Setting("--port", "LOOKUPD_PORT", "port", "50051", "gRPC port (0: any free port)"),
    Setting("--db", "LOOKUPD_DB", "str", "embedded data", "data file: a snapshot or a source"),
    Setting("--policies", "LOOKUPD_POLICIES", "str", "example policies", "policy file (YAML)"),
    Setting(
        "--workers",
        "LOOKUPD_WORKERS",
        "count",
        "CPUs available",
        "server processes sharing the port (CPUs of the affinity mask and cgroup quota)",
    ),
    Setting("--threads", "LOOKUPD_THREADS", "count", "8", "threads per process for unary calls"),
    Setting(
        "--max-streams",
        "LOOKUPD_MAX_STREAMS",
        "count",
        "16",
        "threads per process for StreamLookup streams (one per open stream)",
    ),
    Setting("--max-batch", "LOOKUPD_MAX_BATCH", "count", "100000", "most addresses per request"),
    Setting(
        "--max-message-bytes",
        "LOOKUPD_MAX_MESSAGE_BYTES",
        "count",
        "8388608",
        "largest request message accepted",
    ),
    Setting(
        "--drain",
        "LOOKUPD_DRAIN_S",
        "seconds",
        "0",
        "on stop, seconds to keep serving after health goes NOT_SERVING",
    ),
    Setting("--grace", "LOOKUPD_GRACE_S", "seconds", "5", "on stop, seconds calls in flight get"),
    Setting(
        "--watch-interval",
        "LOOKUPD_WATCH_INTERVAL_S",
        "seconds",
        "2",
        "seconds between checks for changed data and policy files (0: off)",
    ),
    Setting(
        "--metrics-port",
        "LOOKUPD_METRICS_PORT",
        "port",
        "off",
        "serve Prometheus metrics on this port (/metrics)",
    ),
    Setting("--metrics-host", "LOOKUPD_METRICS_HOST", "str", "[::]", "address for metrics"),
    Setting("--log-format", "LOOKUPD_LOG_FORMAT", "choice:kv,json", "kv", "log line format"),
    Setting(
        "--log-level",
        "LOOKUPD_LOG_LEVEL",
        "choice:debug,info,warning,error",
        "info",
        "least severe level logged",
    ),
    Setting("--tls-cert", "LOOKUPD_TLS_CERT", "str", "off", "server certificate (PEM): TLS"),
    Setting("--tls-key", "LOOKUPD_TLS_KEY", "str", "off", "server private key (PEM)"),
    Setting(
        "--tls-client-ca",
        "LOOKUPD_TLS_CLIENT_CA",
        "str",
        "off",
        "CA (PEM) that must have signed client certificates: mTLS",
    ),
    Setting(
        "--admin-token-file",
        "LOOKUPD_ADMIN_TOKEN_FILE",
        "str",
        "off",
        "enable admin RPCs for callers sending the token in this file",
    ),
    Setting(
        "--admin-mtls",
        "LOOKUPD_ADMIN_MTLS",
        "bool",
        "off",
        "enable admin RPCs for callers with a verified client certificate",
    ),
    Setting(
        "--admin-allow",
        "LOOKUPD_ADMIN_ALLOW",
        "str",
        "any",
        "with --admin-mtls: certificate names (CN or SAN) allowed, comma-separated",
    ),
    Setting(
        "--port-file",
        "LOOKUPD_PORT_FILE",
        "str",
        "none",
        "write the port here once listening (with --port 0)",
    ),
)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _serve_setting(args: argparse.Namespace, setting: Setting) -> Any:
    """Return a setting: the flag, else the environment variable, else None (default)."""
    value = getattr(args, setting.dest)
    source = setting.flag
    if value is None or value is False:
        value = os.environ.get(setting.variable) or None
        source = setting.variable
    kind = setting.kind
    if value is None or kind == "str":
        return value
    if kind == "bool":
        if value is True or str(value).lower() in _TRUE:
            return True
        if str(value).lower() in _FALSE:
            return None
        msg = f"{source}: expected one of {', '.join(_TRUE + _FALSE[:-1])}, not {value!r}"
        raise LookupdError(msg)
    if kind.startswith("choice:"):
        choices = kind.removeprefix("choice:").split(",")
        if value not in choices:
            msg = f"{source}: expected one of {', '.join(choices)}, not {value!r}"
            raise LookupdError(msg)
        return value
    try:
        number = float(value) if kind == "seconds" else int(value)
    except ValueError:
        number = -1
    low = 1 if kind == "count" else 0
    if number < low or (kind == "port" and number > 65535) or number != number:
        msg = f"{source}: not a valid {'port' if kind == 'port' else 'value'}: {value!r}"
        raise LookupdError(msg)
    return number


def _run_serve(args: argparse.Namespace) -> int:
    # gRPC is imported only by the commands that use it.
    from lookupd.server import app as server
    from lookupd.server import logs, workers
    from lookupd.server.admin import AdminConfig, parse_names
    from lookupd.server.tls import ServerTLS

    settings = {setting.flag: _serve_setting(args, setting) for setting in SERVE_SETTINGS}
    level = logging.DEBUG if args.verbose else _LOG_LEVELS[settings["--log-level"] or "info"]
    log_format: logs.LogFormat = settings["--log-format"] or "kv"
    logs.configure(log_format, level=level)
    cert, key, client_ca = (
        settings["--tls-cert"],
        settings["--tls-key"],
        settings["--tls-client-ca"],
    )
    if bool(cert) != bool(key):
        msg = "--tls-cert and --tls-key go together"
        raise LookupdError(msg)
    if client_ca and not cert:
        msg = "--tls-client-ca (mTLS) needs --tls-cert and --tls-key"
        raise LookupdError(msg)
    if settings["--admin-mtls"] and not client_ca:
        msg = "--admin-mtls needs --tls-client-ca: clients can only show certificates with mTLS"
        raise LookupdError(msg)
    token_file = settings["--admin-token-file"]
    defaults = server.ServerConfig()
    config = server.ServerConfig(
        host=settings["--host"] or defaults.host,
        port=defaults.port if settings["--port"] is None else settings["--port"],
        threads=settings["--threads"] or defaults.threads,
        max_streams=settings["--max-streams"] or defaults.max_streams,
        max_batch=settings["--max-batch"] or defaults.max_batch,
        max_message_bytes=settings["--max-message-bytes"] or defaults.max_message_bytes,
        grace_s=_or_default(settings["--grace"], defaults.grace_s),
        drain_s=_or_default(settings["--drain"], defaults.drain_s),
        watch_interval_s=_or_default(settings["--watch-interval"], defaults.watch_interval_s),
        tls=ServerTLS(Path(cert), Path(key), Path(client_ca) if client_ca else None)
        if cert
        else None,
        admin=AdminConfig(
            token_file=Path(token_file) if token_file else None,
            mtls=bool(settings["--admin-mtls"]),
            allowed_names=parse_names(settings["--admin-allow"]),
        ),
    )
    if config.tls is not None:
        config.tls.check()  # bad files fail here, before any process (and no gRPC object)
    config.admin.loaded()  # likewise the token file
    metrics_host = settings["--metrics-host"] or defaults.host
    metrics_port = settings["--metrics-port"]
    count = settings["--workers"] or workers.available_cpus()
    if count == 1:
        server.serve(
            config,
            db_path=settings["--db"],
            policies_path=settings["--policies"],
            port_file=settings["--port-file"],
            metrics_address=None if metrics_port is None else (metrics_host, metrics_port),
        )
        return 0
    supervisor = workers.Supervisor(
        config,
        workers.WorkerSettings(
            workers=count,
            db_path=settings["--db"],
            policies_path=settings["--policies"],
            port_file=settings["--port-file"],
            metrics_host=metrics_host,
            metrics_port=metrics_port,
            log_format=log_format,
            log_level=level,
        ),
    )
    return supervisor.run()


_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _or_default(value: float | None, default: float) -> float:
    return default if value is None else value


# ---------------------------------------------------------------------------------------
# build


def _run_build(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    formats: list[str | None]
    if not args.format:
        formats = [None] * len(args.sources)
    elif len(args.format) == 1:
        formats = list(args.format) * len(args.sources)
    elif len(args.format) == len(args.sources):
        formats = list(args.format)
    else:
        print(
            f"lookupd: error: {len(args.format)} --format options for {len(args.sources)} "
            "sources: give one for all, or one per source",
            file=sys.stderr,
        )
        return 2
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
    tables = merged.tables
    rows_v4, rows_v6 = merged.rows
    print(f"wrote {output} ({header['file_size']:,} bytes)")
    print(f"data version id: {header['payload_sha256']}")
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
    print(f"time: {elapsed_s:.2f} s")
    return 0


# ---------------------------------------------------------------------------------------
# info, diff


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


def _run_info(args: argparse.Namespace) -> int:
    loaded = _load_any(args.file, quiet=args.json)
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
        return 0
    print(f"file: {loaded.name}")
    print(f"kind: {loaded.kind}")
    metadata = loaded.metadata
    for key, title in (
        ("data_version", "data version id"),
        ("format_version", "format version"),
        ("created", "built"),
        ("lookupd_version", "built by lookupd"),
        ("name", "name"),
        ("version", "version"),
        ("date", "date"),
        ("license", "license"),
    ):
        if key in metadata:
            print(f"{title}: {metadata[key]}")
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
    return 0


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
    if facts:
        parts.append(f"({', '.join(facts)})")
    return " ".join(parts)


def _run_diff(args: argparse.Namespace) -> int:
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
        title = _FAMILY_NAMES[family.version]
        if not len(family):
            print(f"{title}: no changes")
            continue
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
    return 1 if different else 0


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
