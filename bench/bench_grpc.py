"""gRPC round trips: lookupd's server beside an echo server (the transport ceiling) and a naive one.

Run as a script (not collected as pytest-benchmark tests: it needs several processes)::

    PYTHONPATH=. python bench/bench_grpc.py [--seconds 1.0] [--rounds 2] [--json out.json]
    PYTHONPATH=. python bench/bench_grpc.py --only latency --rounds 6
    PYTHONPATH=. python bench/bench_grpc.py --only packed:1000 --rounds 4 --seconds 1.5

One server process at a time, clients in other processes (spawned), on 127.0.0.1:

- ``lookupd``: :class:`lookupd.server.app.LookupServer` on the embedded data.
- ``echo``: a sync server with the same thread pool and message shapes that does no work:
  it answers each request with prebuilt fields of the right length.
- ``naive``: the text RPC answered with the ``maxminddb`` C reader, one ``get`` per address
  (on the ``.mmdb`` of the same data, from ``tests/data``).

With ``--baseline DIR`` (a checkout of another lookupd version, e.g. a ``git worktree``
with its compiled cores), a ``baseline`` server runs that version's ``LookupServer`` too,
alternating with the others: before/after figures from the same run.

Measured, alternating lookupd and echo round by round (the best round is reported):
single-address unary latency (p50/p99, one client, one call at a time), then addresses/s
for batches of 1, 100, 1,000 and 10,000, text and packed, unary (two client processes,
one call in flight each) and packed on a bidirectional stream (two client processes, up to
8 messages in flight each); and the naive server's text batch of 10,000.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ipaddress
import json
import lzma
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MMDB_XZ = ROOT / "tests" / "data" / "geo-whois-asn-country" / "geo-whois-asn-country.mmdb.xz"
BATCHES = (1, 100, 1_000, 10_000)
SEED = 20261125
_CLIENTS = 2
_STREAM_WINDOW = 8
_LATENCY_CALLS = 2_000
_THREADS = 8


# ---------------------------------------------------------------------------------------
# Servers (run in a child process: python bench/bench_grpc.py --serve KIND --port-file F)


def _echo_servicer() -> Any:
    from lookupd.v1 import lookup_pb2 as pb
    from lookupd.v1 import lookup_pb2_grpc

    most = 100_000
    countries = ["--"] * most
    status = [pb.STATUS_NOT_FOUND] * most
    codes = b"--" * most
    statuses = bytes([pb.STATUS_NOT_FOUND]) * most
    version = pb.DataVersion(id="0" * 64, built_at="")

    class Echo(lookup_pb2_grpc.LookupServiceServicer):  # type: ignore[misc]
        def Lookup(self, request: Any, context: Any) -> Any:
            n = len(request.addresses)
            return pb.LookupResponse(
                countries=countries[:n], status=status[:n], data_version=version
            )

        def _packed(self, request: Any) -> Any:
            n4, n6 = len(request.ipv4) // 4, len(request.ipv6) // 16
            return pb.PackedLookupResponse(
                ipv4_countries=codes[: 2 * n4],
                ipv6_countries=codes[: 2 * n6],
                ipv4_status=statuses[:n4],
                ipv6_status=statuses[:n6],
                data_version=version,
                tag=request.tag,
            )

        def LookupPacked(self, request: Any, context: Any) -> Any:
            return self._packed(request)

        def StreamLookup(self, requests: Any, context: Any) -> Any:
            for request in requests:
                yield self._packed(request)

    return Echo()


def _naive_servicer(mmdb: str) -> Any:
    import maxminddb

    from lookupd.v1 import lookup_pb2 as pb
    from lookupd.v1 import lookup_pb2_grpc

    reader = maxminddb.open_database(mmdb)
    version = pb.DataVersion(id="0" * 64, built_at="")

    class Naive(lookup_pb2_grpc.LookupServiceServicer):  # type: ignore[misc]
        def Lookup(self, request: Any, context: Any) -> Any:
            countries = []
            status = []
            for address in request.addresses:
                try:
                    record = reader.get(address)
                except ValueError:
                    countries.append("")
                    status.append(pb.STATUS_INVALID_ADDRESS)
                    continue
                code = record.get("country_code", "") if isinstance(record, dict) else ""
                countries.append(code)
                status.append(pb.STATUS_OK if code else pb.STATUS_NOT_FOUND)
            return pb.LookupResponse(countries=countries, status=status, data_version=version)

    return Naive()


def _serve(kind: str, port_file: str, mmdb: str) -> None:
    import grpc

    from lookupd.server.answers import Answerer
    from lookupd.server.app import LookupServer, ServerConfig
    from lookupd.v1 import lookup_pb2_grpc

    if kind in ("lookupd", "baseline"):
        import lookupd

        server = LookupServer(ServerConfig(host="127.0.0.1", port=0, threads=_THREADS)).start()
        server.load(Answerer.load(lookupd.open()))
        port = server.port
    else:
        grpc_server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=_THREADS),
            options=[("grpc.max_receive_message_length", 8 << 20)],
        )
        servicer = _echo_servicer() if kind == "echo" else _naive_servicer(mmdb)
        lookup_pb2_grpc.add_LookupServiceServicer_to_server(servicer, grpc_server)
        port = grpc_server.add_insecure_port("127.0.0.1:0")
        grpc_server.start()
    Path(port_file + ".tmp").write_text(str(port))
    os.replace(port_file + ".tmp", port_file)
    threading.Event().wait()  # until killed


class _Server:
    def __init__(self, kind: str, mmdb: str, baseline: str | None = None) -> None:
        self.kind = kind
        env = dict(os.environ)
        if kind == "baseline" and baseline:
            env["PYTHONPATH"] = baseline
        self._dir = tempfile.mkdtemp()
        port_file = os.path.join(self._dir, "port")
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, "--port-file", port_file, "--mmdb", mmdb],
            env=env,
        )
        deadline = time.monotonic() + 60
        while not os.path.exists(port_file):
            if self.process.poll() is not None or time.monotonic() > deadline:
                msg = f"{kind} server did not start"
                raise RuntimeError(msg)
            time.sleep(0.02)
        self.target = f"127.0.0.1:{Path(port_file).read_text()}"

    def close(self) -> None:
        self.process.kill()
        self.process.wait(30)
        shutil.rmtree(self._dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Clients (in worker processes)


def _requests(kind: str, batch: int) -> list[Any]:
    """Eight distinct requests of ``batch`` random public IPv4 addresses."""
    from lookupd.v1 import lookup_pb2 as pb

    rng = np.random.default_rng(SEED + batch)
    out = []
    for _ in range(8):
        keys = rng.integers(1 << 24, 223 << 24, batch, dtype=np.uint64).astype(np.uint32)
        if kind == "text":
            texts = [str(ipaddress.IPv4Address(int(k))) for k in keys]
            out.append(pb.LookupRequest(addresses=texts))
        else:
            out.append(pb.PackedLookupRequest(ipv4=keys.astype(">u4").tobytes()))
    return out


def _channel(target: str) -> Any:
    """A connected channel with a connection of its own (not shared with other channels)."""
    import grpc

    channel = grpc.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.use_local_subchannel_pool", 1),
        ],
    )
    grpc.channel_ready_future(channel).result(timeout=30)
    return channel


def _stub(target: str) -> Any:
    from lookupd.v1 import lookup_pb2_grpc

    return lookup_pb2_grpc.LookupServiceStub(_channel(target))


def _latency(target: str) -> list[float]:
    from lookupd.v1 import lookup_pb2 as pb

    stub = _stub(target)
    request = pb.LookupRequest(addresses=["1.1.1.1"])
    for _ in range(200):
        stub.Lookup(request, timeout=10)
    times = []
    for _ in range(_LATENCY_CALLS):
        start = time.perf_counter()
        stub.Lookup(request, timeout=10)
        times.append(time.perf_counter() - start)
    return times


def _throughput(target: str, mode: str, batch: int, seconds: float, start_at: float) -> int:
    """Addresses answered in ``seconds`` from ``start_at`` (wall clock shared by workers)."""
    stub = _stub(target)
    kind = "text" if mode == "text" else "packed"
    requests = _requests(kind, batch)
    call = stub.Lookup if mode == "text" else stub.LookupPacked
    call(requests[0], timeout=30)  # warm up
    time.sleep(max(0.0, start_at - time.time()))
    end = time.perf_counter() + seconds
    answered = 0
    if mode == "stream":
        window = threading.Semaphore(_STREAM_WINDOW)
        stop = threading.Event()

        def produce() -> Iterator[Any]:
            i = 0
            while not stop.is_set():
                window.acquire()
                yield requests[i % len(requests)]
                i += 1

        responses = stub.StreamLookup(produce(), timeout=seconds + 30)
        for response in responses:
            window.release()
            answered += len(response.ipv4_status)
            if time.perf_counter() >= end:
                stop.set()
                window.release()
                responses.cancel()
                break
        return answered
    i = 0
    while time.perf_counter() < end:
        response = call(requests[i % len(requests)], timeout=30)
        answered += len(response.status) if mode == "text" else len(response.ipv4_status)
        i += 1
    return answered


def _rate(
    pool: concurrent.futures.ProcessPoolExecutor, target: str, mode: str, batch: int, seconds: float
) -> float:
    start_at = time.time() + 1.0  # after every worker has connected and built its requests
    jobs = [
        pool.submit(_throughput, target, mode, batch, seconds, start_at) for _ in range(_CLIENTS)
    ]
    return sum(job.result() for job in jobs) / seconds


# ---------------------------------------------------------------------------------------


def _fmt(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f}k"
    return f"{rate:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    parser.add_argument("--mmdb", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternations lookupd/echo")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--baseline", help="checkout of another lookupd to measure alongside")
    parser.add_argument(
        "--only",
        metavar="WHAT",
        help="measure only 'latency' or one MODE:BATCH (e.g. packed:1000), every round "
        "reported (for many quick alternations: --rounds 6)",
    )
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port_file, args.mmdb)
        return
    if args.only:
        _only(args.only, args.rounds, args.seconds)
        return
    workdir = tempfile.mkdtemp()
    mmdb = os.path.join(workdir, "data.mmdb")
    with lzma.open(MMDB_XZ) as source, open(mmdb, "wb") as sink:
        shutil.copyfileobj(source, sink)
    context = multiprocessing.get_context("spawn")
    results: dict[str, Any] = {"latency_ms": {}, "rates": {}}
    scenarios = [(mode, batch) for mode in ("text", "packed", "stream") for batch in BATCHES]
    with concurrent.futures.ProcessPoolExecutor(_CLIENTS, mp_context=context) as pool:
        for round_number in range(args.rounds):
            kinds = ("echo", "lookupd", "baseline") if args.baseline else ("echo", "lookupd")
            for kind in kinds if round_number % 2 == 0 else kinds[::-1]:
                server = _Server(kind, mmdb, args.baseline)
                try:
                    times = np.array(pool.submit(_latency, server.target).result()) * 1e3
                    p50, p99 = float(np.percentile(times, 50)), float(np.percentile(times, 99))
                    best = results["latency_ms"].get(kind)
                    if best is None or p50 < best[0]:
                        results["latency_ms"][kind] = (p50, p99)
                    for mode, batch in scenarios:
                        rate = _rate(pool, server.target, mode, batch, args.seconds)
                        key = f"{kind} {mode} {batch}"
                        results["rates"][key] = max(rate, results["rates"].get(key, 0.0))
                        print(f"round {round_number} {key}: {_fmt(rate)} addresses/s", flush=True)
                finally:
                    server.close()
        server = _Server("naive", mmdb)
        try:
            for kind_mode in ("naive text 10000",):
                rate = max(
                    _rate(pool, server.target, "text", 10_000, args.seconds) for _ in range(2)
                )
                results["rates"][kind_mode] = rate
        finally:
            server.close()
    shutil.rmtree(workdir, ignore_errors=True)
    _report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def _only(what: str, rounds: int, seconds: float) -> None:
    """Alternate echo and lookupd ``rounds`` times on one measurement; print every round."""
    context = multiprocessing.get_context("spawn")
    per_round: dict[str, list[str]] = {"echo": [], "lookupd": []}
    ratios = []
    with concurrent.futures.ProcessPoolExecutor(_CLIENTS, mp_context=context) as pool:
        for round_number in range(rounds):
            kinds = ("echo", "lookupd") if round_number % 2 == 0 else ("lookupd", "echo")
            values = {}
            for kind in kinds:
                server = _Server(kind, mmdb="")
                try:
                    if what == "latency":
                        times = np.array(pool.submit(_latency, server.target).result()) * 1e3
                        p50, p99 = np.percentile(times, 50), np.percentile(times, 99)
                        values[kind] = float(p50)
                        per_round[kind].append(f"{p50:.3f} / {p99:.3f}")
                    else:
                        mode, batch = what.split(":")
                        rate = _rate(pool, server.target, mode, int(batch), seconds)
                        values[kind] = rate
                        per_round[kind].append(_fmt(rate))
                finally:
                    server.close()
            ratios.append(values["lookupd"] / values["echo"])
    unit = "p50 / p99 ms" if what == "latency" else "addresses/s"
    print(f"| round | echo {unit} | lookupd {unit} | lookupd / echo |")
    print("|---:|---:|---:|---:|")
    for number, (echo, ours, ratio) in enumerate(
        zip(per_round["echo"], per_round["lookupd"], ratios, strict=True), 1
    ):
        print(f"| {number} | {echo} | {ours} | {ratio:.0%} |")
    print(f"| mean | | | {sum(ratios) / len(ratios):.0%} |")


def _report(results: dict[str, Any]) -> None:
    print()
    print("| latency, 1 address, text unary | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for kind, (p50, p99) in results["latency_ms"].items():
        print(f"| {kind} | {p50:.3f} | {p99:.3f} |")
    print()
    rates = results["rates"]
    base = "baseline text 1" in rates
    extra = " baseline | baseline / echo |" if base else ""
    print("| addresses/s | batch | lookupd | echo | lookupd / echo |" + extra)
    print("|---|---:|---:|---:|---:|" + ("---:|---:|" if base else ""))
    for mode in ("text", "packed", "stream"):
        for batch in BATCHES:
            ours, echo = rates[f"lookupd {mode} {batch}"], rates[f"echo {mode} {batch}"]
            label = {"text": "text unary", "packed": "packed unary", "stream": "packed stream"}
            row = f"| {label[mode]} | {batch:,} | {_fmt(ours)} | {_fmt(echo)} | {ours / echo:.0%} |"
            if base:
                theirs = rates[f"baseline {mode} {batch}"]
                row += f" {_fmt(theirs)} | {theirs / echo:.0%} |"
            print(row)
    naive = rates["naive text 10000"]
    print()
    for kind in ("lookupd", "baseline") if base else ("lookupd",):
        ours = rates[f"{kind} text 10000"]
        print(
            f"naive maxminddb server, text batch 10,000: {_fmt(naive)} addresses/s; "
            f"{kind} {_fmt(ours)} = {ours / naive:.1f}x"
        )


if __name__ == "__main__":
    main()
