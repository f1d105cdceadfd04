"""The pod shape: what a 1-CPU limit does to one worker, and what a second worker adds in it.

Run as a script, as root (it makes a cgroup with a CPU quota, as a container's CPU limit is)::

    PYTHONPATH=. python bench/bench_pod_shape.py [--seconds 2] [--rounds 3] [--json out.json]

Three servers, each ``lookupd serve`` started by ``bench_workers.Server`` (a real
subprocess on 127.0.0.1, every worker checked SERVING before the clock starts), alternated
round by round in a rotating order:

- ``1 worker, no limit``: the baseline;
- ``1 worker, 1 CPU``: the base Deployment's pod (limit 1 CPU, so lookupd starts one
  worker), in a cgroup with a CFS quota of one CPU (v1 ``cpu.cfs_quota_us`` or v2
  ``cpu.max``, 100 ms period as the kubelet sets it);
- ``2 workers, 1 CPU``: the same limit with a second worker, as ``--workers 2`` set by hand
  against a 1-CPU limit would run.

The clients are spawned processes outside the cgroup (2 by default, 4 connections each, one
call in flight per connection, as in ``bench_workers.py``), so on a 2-core machine a server
limited to one CPU leaves the clients the other core, which the unlimited baseline does not.
For each server and scenario: the rate, the server's CPU in cores, and the share of the
quota's periods in which it was throttled (``cpu.stat``). Latency: one more client process
with one connection and one single-address call at a time, timed call by call (p50, p99),
measured alone (no other load) and under the full load.

Prints markdown tables; ``--json`` also writes the figures.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib
import json
import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def _sibling(name: str) -> Any:
    """Another bench script as a module, imported when first used: bench/ is sys.path[0]
    when this runs as a script, but not while pytest collects bench/ (it imports this file
    too, looking for benchmarks; there are none)."""
    return importlib.import_module(name)


PERIOD_US = 100_000  # the kubelet's CFS period
# (name, --workers, CPU limit or None)
SHAPES = (
    ("1 worker, no limit", 1, None),
    ("1 worker, 1 CPU", 1, 1.0),
    ("2 workers, 1 CPU", 2, 1.0),
)
SCENARIOS = (("packed", 1_000), ("text", 1))


class CpuCgroup:
    """A cgroup with a CPU quota of ``cpus`` (v1 cpu controller or v2), removed on exit."""

    def __init__(self, name: str, cpus: float) -> None:
        v1 = Path("/sys/fs/cgroup/cpu")
        v2 = Path("/sys/fs/cgroup")
        if (v1 / "cpu.cfs_quota_us").exists():
            self.path = v1 / name
            self.path.mkdir()
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(round(cpus * PERIOD_US)))
        elif "cpu" in (v2 / "cgroup.controllers").read_text().split():
            self.path = v2 / name
            self.path.mkdir()
            (self.path / "cpu.max").write_text(f"{round(cpus * PERIOD_US)} {PERIOD_US}")
        else:
            msg = "no cgroup cpu controller to set a quota with"
            raise RuntimeError(msg)
        self.procs = str(self.path / "cgroup.procs")

    def throttling(self) -> tuple[int, int]:
        """(periods, periods throttled) so far."""
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return int(stat["nr_periods"]), int(stat["nr_throttled"])

    def remove(self) -> None:
        for _ in range(50):  # the last processes may still be exiting
            with contextlib.suppress(OSError):
                self.path.rmdir()
                return
            time.sleep(0.1)


@contextlib.contextmanager
def _server(workers: int, cpus: float | None) -> Iterator[tuple[Any, CpuCgroup | None]]:
    cgroup = None if cpus is None else CpuCgroup(f"lookupd-bench-{os.getpid()}", cpus)
    server = _sibling("bench_workers").Server(
        workers, cgroup_procs=None if cgroup is None else cgroup.procs
    )
    try:
        server.start()
        yield server, cgroup
    finally:
        server.stop()
        if cgroup is not None:
            cgroup.remove()


def _latency_client(target: str, seconds: float, start_at: float) -> list[float]:
    """Single-address text calls, one at a time on one connection: each call's seconds."""
    conn = _sibling("bench_workers")._connect(target)
    request = _sibling("bench_grpc")._requests("text", 1)[0]
    conn.stub.Lookup(request, timeout=30)
    time.sleep(max(0.0, start_at - time.time()))
    times: list[float] = []
    end = time.perf_counter() + seconds
    while (now := time.perf_counter()) < end:
        conn.stub.Lookup(request, timeout=30)
        times.append(time.perf_counter() - now)
    conn.channel.close()
    return times


def _percentiles(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1e3
    return {"calls": len(times), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99))}  # fmt: skip


def _measure_shape(
    pool: concurrent.futures.ProcessPoolExecutor,
    name: str,
    workers: int,
    cpus: float | None,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    rows = []
    with _server(workers, cpus) as (server, cgroup):
        start_at = time.time() + 1.0
        alone = pool.submit(_latency_client, server.target, args.seconds, start_at)
        rows.append({"shape": name, "scenario": "latency alone", **_percentiles(alone.result())})
        for mode, batch in SCENARIOS:
            before = cgroup.throttling() if cgroup else (0, 0)
            latency = None
            if mode == "text":  # timed calls beside the load
                latency = pool.submit(
                    _latency_client, server.target, args.seconds, time.time() + 1.5
                )
            rate = _sibling("bench_workers")._measure(
                pool, server, mode, batch, args.clients, args.channels, args.seconds
            )
            after = cgroup.throttling() if cgroup else (0, 0)
            periods, throttled = after[0] - before[0], after[1] - before[1]
            row = {
                "shape": name,
                "scenario": f"{mode} {batch}",
                "rate": rate.rate,
                "server_cores": rate.server_cores,
                "client_cores": rate.client_cores,
                "connections": rate.connections,
                "throttled_share": throttled / periods if periods else None,
            }
            if latency is not None:
                row["latency_under_load"] = _percentiles(latency.result())
            rows.append(row)
            print(
                f"{name}: {mode} {batch}: {_sibling('bench_grpc')._fmt(rate.rate)}/s, "
                f"server {rate.server_cores:.2f} cores, "
                f"throttled {row['throttled_share'] or 0:.0%} of periods",
                flush=True,
            )
        server.notes.extend(_sibling("bench_workers")._NOTES)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--channels", type=int, default=4, help="connections per client")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_pod_shape: run as root (it makes a cgroup with a CPU quota)")
    results: dict[str, Any] = {
        "settings": {**vars(args), "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
        "rows": [],
    }
    started = time.time()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.clients + 1, mp_context=context) as pool:
        for job in [pool.submit(_sibling("bench_workers")._warm) for _ in range(args.clients + 1)]:
            job.result()
        for round_number in range(args.rounds):
            shift = round_number % len(SHAPES)
            for name, workers, cpus in SHAPES[shift:] + SHAPES[:shift]:
                for row in _measure_shape(pool, name, workers, cpus, args):
                    results["rows"].append({"round": round_number, **row})
    results["settings"]["loadavg_end"] = os.getloadavg()
    results["settings"]["seconds_total"] = time.time() - started
    _report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def _report(results: dict[str, Any]) -> None:
    settings, rows = results["settings"], results["rows"]
    print(
        f"\n{settings['cpus']} CPUs; load average {settings['loadavg_start'][0]:.2f} at the "
        f"start, {settings['loadavg_end'][0]:.2f} at the end; {settings['seconds_total']:.0f} s;"
        f" {settings['clients']} client processes x {settings['channels']} connections\n"
    )
    baseline = SHAPES[0][0]
    print("| scenario | shape | best rate | vs no limit (bests) | per round | server cores "
          "| throttled periods | p50 / p99 ms under load |")  # fmt: skip
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for mode, batch in SCENARIOS:
        scenario = f"{mode} {batch}"
        mine = [r for r in rows if r["scenario"] == scenario]
        best = {name: max((r for r in mine if r["shape"] == name), key=lambda r: r["rate"])
                for name, _, _ in SHAPES}  # fmt: skip
        for name, _, _ in SHAPES:
            per_round = []
            for number in sorted({r["round"] for r in mine}):
                by = {r["shape"]: r["rate"] for r in mine if r["round"] == number}
                per_round.append(f"{by[name] / by[baseline]:.2f}")
            row = best[name]
            share = row["throttled_share"]
            latency = row.get("latency_under_load")
            timed = "" if latency is None else f"{latency['p50_ms']:.2f} / {latency['p99_ms']:.2f}"
            print(
                f"| {scenario} | {name} | {_sibling('bench_grpc')._fmt(row['rate'])}/s | "
                f"{row['rate'] / best[baseline]['rate']:.2f}x | {' '.join(per_round)} | "
                f"{row['server_cores']:.2f} | {'-' if share is None else f'{share:.0%}'} | "
                f"{timed} |"
            )
    print("\n| shape | single calls alone: p50 / p99 ms (median of rounds) |")
    print("|---|---:|")
    for name, _, _ in SHAPES:
        alone = [r for r in rows if r["shape"] == name and r["scenario"] == "latency alone"]
        p50 = float(np.median([r["p50_ms"] for r in alone]))
        p99 = float(np.median([r["p99_ms"] for r in alone]))
        print(f"| {name} | {p50:.2f} / {p99:.2f} |")


if __name__ == "__main__":
    main()
