"""``lookupd bench``: load-test a running lookupd (local, a Kubernetes Service, a gateway)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lookupd.cli.tls import add_client_tls_flags, client_tls

# lookupd.loadgen's RPCS and FAMILIES, spelled here so that building the parser loads no
# protobuf (tests/test_loadgen.py checks they agree).
RPCS = ("text", "packed", "stream", "check")
FAMILIES = ("ipv4", "ipv6", "mixed")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` command to the subparsers ``commands``."""
    bench = commands.add_parser(
        "bench",
        help="load-test a running server: throughput, latency percentiles, errors",
        description=(
            "Send calls to the lookupd server at TARGET (HOST:PORT, or dns:///NAME:PORT "
            "for every address of a name) and report calls and addresses per second, "
            "latency percentiles (an HDR histogram: p50 to p99.99 and the maximum), failed "
            "calls by gRPC status code, the data versions that answered, and whether the "
            "client rather than the server was the limit. Closed loop by default (each of "
            "--concurrency callers sends its next call when the last is answered); --rate "
            "sends calls at a fixed rate instead and counts each call's latency from when "
            "it fell due, so queueing shows (no coordinated omission). Exit status: 0 if "
            "every call was answered, 1 if some failed, 2 on error."
        ),
    )
    bench.add_argument("target", metavar="TARGET", help="server address, HOST:PORT")
    bench.add_argument("--rpc", choices=RPCS, default="text", help="what to call (default: text)")
    bench.add_argument("--batch", type=_count, default=100, metavar="N", help="addresses per call")
    bench.add_argument("--policy", metavar="NAME", help="policy to check (--rpc check)")
    source = bench.add_mutually_exclusive_group()
    source.add_argument(
        "--addresses", metavar="FILE", help="addresses to send, one per line (cycled)"
    )
    source.add_argument(
        "--family",
        choices=FAMILIES,
        default="mixed",
        help="random public addresses of this family from the data (default: mixed)",
    )
    bench.add_argument(
        "--db", metavar="PATH", help="data to draw addresses from (default: embedded)"
    )
    bench.add_argument("--seed", type=int, default=0, help="random seed for the addresses")
    bench.add_argument("--processes", type=_count, default=1, metavar="N", help="client processes")
    bench.add_argument(
        "--connections",
        type=_count,
        metavar="N",
        help=(
            "connections in all (default: one per process; for --rpc stream one per "
            "caller, as each holds its stream open and a server allows a connection few)"
        ),
    )
    bench.add_argument(
        "--concurrency",
        type=_count,
        default=16,
        metavar="N",
        help="calls in flight at most, in all",
    )
    amount = bench.add_mutually_exclusive_group()
    amount.add_argument(
        "--duration", type=_seconds, default=10.0, metavar="S", help="seconds to send (default 10)"
    )
    amount.add_argument("--requests", type=_count, metavar="N", help="calls to send, in all")
    bench.add_argument(
        "--rate", type=_seconds, metavar="R", help="open loop: calls per second, in all"
    )
    bench.add_argument(
        "--warmup", type=_non_negative, default=1.0, metavar="S", help="seconds not counted first"
    )
    bench.add_argument(
        "--timeout", type=_seconds, default=10.0, metavar="S", help="deadline of each call"
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    add_client_tls_flags(bench)
    bench.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Draw or read the addresses, run the test, print the report."""
    from lookupd.datafiles.open import open_database
    from lookupd.datafiles.progress import progress_line
    from lookupd.errors import LookupdError
    from lookupd.loadgen.addresses import random_public, read_addresses
    from lookupd.loadgen.calls import DISTINCT_REQUESTS, build_calls
    from lookupd.loadgen.report import Report
    from lookupd.loadgen.run import Plan, run_plan
    from lookupd.loadgen.worker import Load

    if args.rpc == "check" and not args.policy:
        raise LookupdError("--rpc check needs --policy NAME")
    # A stream holds its slot on a connection for the whole test, and a server allows a
    # connection few at once (lookupd: 8): one connection per caller never waits for one.
    default = args.concurrency if args.rpc == "stream" else args.processes
    connections = args.connections or default
    if connections < args.processes or args.concurrency < args.processes:
        raise LookupdError("--connections and --concurrency must be at least --processes")
    if args.addresses:
        addresses = read_addresses(Path(args.addresses))
    else:
        count = min(args.batch * DISTINCT_REQUESTS, 1_000_000)
        addresses = random_public(open_database(args.db), args.family, count, args.seed)
    try:
        calls = build_calls(args.rpc, addresses, args.batch, policy=args.policy or "")
    except ValueError as exc:
        raise LookupdError(str(exc)) from exc
    load = Load(
        connections=connections,
        concurrency=args.concurrency,
        duration_s=None if args.requests else args.duration,
        requests=args.requests,
        rate=args.rate,
        timeout_s=args.timeout,
        warmup_s=args.warmup,
    )
    plan = Plan(args.target, client_tls(args), calls, load, args.processes)
    display = progress_line(sys.stderr, quiet=args.json)
    try:
        tally = run_plan(plan, display)
    finally:
        if display is not None:
            display.close()
    report = Report(plan, tally)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(report.text())
    return 0 if tally.calls and tally.ok == tally.calls else 1


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"not a positive whole number: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _seconds(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        msg = f"must be more than 0: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        msg = f"not a number of seconds: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value
