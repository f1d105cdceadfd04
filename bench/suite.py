"""The benchmark suite in one command: every part, a dated results directory, a report.

    make bench-report                                  # the quick suite (a few minutes)
    PYTHONPATH=. python bench/suite.py --full          # the full one
    PYTHONPATH=. python bench/suite.py --parts micro,grpc --quick
    PYTHONPATH=. python bench/suite.py --quick --compare         # regression guard
    PYTHONPATH=. python bench/suite.py --quick --save-baseline   # record this machine's

Each part runs the benchmark that measures it (pytest-benchmark files and the scripts beside
this one), with a baseline in the same run, and leaves its raw JSON in
``bench/results/STAMP-COMMIT/``; the suite then writes ``report.md`` and the PNG plots
there, copies them to ``bench/report/`` and rewrites the report section of
``bench/README.md``. Every figure is a ratio against a baseline measured in the same run,
beside the absolute numbers.

Parts: ``micro`` (ns per address, lookupd and its peers), ``grpc`` (addresses/s against
batch size beside the echo ceiling and a naive server), ``latency`` (single-address calls,
lookupd beside echo, as a CDF), ``workers`` (throughput and memory against ``--workers``),
``authz`` (requests/s through Envoy, with and without lookupd as its authorizer; needs
Envoy and ``wrk``, else skipped with the reason), ``build`` (build and load time per source
format and size).

The regression guard compares the ratios (every one defined so that higher is better for
lookupd) with the saved ones of the same machine (``bench/baselines/MACHINE.json``) and
fails when one fell by more than ``--tolerance``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import lzma
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
PUBLISHED = BENCH / "report"
BASELINES = BENCH / "baselines"
README = BENCH / "README.md"
REPORT_START = "<!-- bench-report:start (written by bench/suite.py; do not edit by hand) -->"
REPORT_END = "<!-- bench-report:end -->"
PARTS = ("micro", "grpc", "latency", "workers", "authz", "build")
DEFAULT_TOLERANCE = 0.15
GUARDED_PARTS = ("micro", "build")
"""The parts --compare checks unless --compare-all: single-process timings, whose ratios
moved at most 10% down between two quick runs of one commit. The others are systems of
several processes on two shared cores: their ratios moved up to 78% between those runs,
so a 15% guard on them would cry wolf (bench/README.md, "The regression guard")."""
_MMDB_XZ = ROOT / "tests" / "data" / "geo-whois-asn-country" / "geo-whois-asn-country.mmdb.xz"
_CSVS = sorted((ROOT / "tests" / "data" / "geo-whois-asn-country").glob("*-ipv*.csv.xz"))


def _sibling(name: str) -> ModuleType:
    """Another bench script as a module, imported when first used: bench/ is sys.path[0]
    when this runs as a script, but not while pytest collects bench/."""
    return importlib.import_module(name)


# ---------------------------------------------------------------------------------------
# What a run records


@dataclass
class Part:
    """One part's outcome: its raw figures, the ratios it contributes, its tables and plot."""

    name: str
    title: str
    data: dict[str, Any] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    """Named ratios, higher better for lookupd: the regression guard compares these."""
    tables: list[str] = field(default_factory=list)
    """Markdown tables (absolute figures beside the ratios)."""
    plot: str | None = None
    """File name of the part's PNG in the results directory."""
    skipped: str | None = None
    """Why the part did not run."""
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Mode:
    """How long each part measures: quick (a few minutes in all) or full."""

    name: str
    micro_budget_s: float
    grpc_seconds: float
    grpc_rounds: int
    latency_calls: int
    workers_seconds: float
    workers_rounds: int
    authz_seconds: int
    authz_rounds: int
    build_rounds: int


QUICK = Mode("quick", 0.3, 0.4, 1, 2_000, 1.0, 1, 1, 1, 1)
FULL = Mode("full", 1.5, 1.0, 2, 20_000, 2.0, 3, 3, 3, 3)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def machine_key(described: dict[str, Any]) -> str:
    """A file name for a machine's baselines: its CPU model and core count."""
    words = "".join(ch if ch.isalnum() else "-" for ch in str(described["cpu"]).lower())
    words = "-".join(part for part in words.split("-") if part)
    return f"{words}-{described['cores']}c"


def commit() -> str:
    """The checkout's commit (short), with ``+`` if it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=10", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _script(name: str, out: Path, *args: str, timeout_s: float = 1800) -> dict[str, Any]:
    """Run ``bench/NAME.py ARGS --json OUT`` and return what it wrote."""
    command = [sys.executable, str(BENCH / f"{name}.py"), *args, "--json", str(out)]
    subprocess.run(command, cwd=ROOT, env=_env(), check=True, timeout=timeout_s)
    data: dict[str, Any] = json.loads(out.read_text())
    return data


# ---------------------------------------------------------------------------------------
# The parts


def part_micro(mode: Mode, out: Path) -> Part:
    """ns per address of lookupd's calls and its peers', on the same workloads."""
    part = Part("micro", "Per-address cost: lookupd and its peers")
    raw = out / "micro.json"
    env = _env() | {"LOOKUPD_BENCH_BUDGET_S": str(mode.micro_budget_s)}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "bench/bench_lookup.py",
        "bench/bench_find_many.py",
        "-p",
        "no:cacheprovider",
        "-q",
        "--benchmark-timer=time.process_time",
        f"--benchmark-json={raw}",
    ]
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=1800)
    data = json.loads(raw.read_text())
    part.data = micro_figures(data)
    part.ratios = {
        f"micro: {row['ours']} / {row['peer']} ({row['workload']})": row["speedup"]
        for row in part.data["pairs"]
    }
    part.tables.append(micro_table(part.data["pairs"]))
    return part


# The comparisons the micro part reports: (our benchmark, workload, the peer's benchmark).
MICRO_PAIRS = (
    ("test_lookup_v4_str_countries[row-uniform]", "test_iptocc_v4[row-uniform]"),
    ("test_lookup_v4_str[row-uniform]", "test_maxminddb_v4[row-uniform]"),
    ("test_lookup_v6_str_countries", "test_iptocc_v6"),
    ("test_lookup_v6_str", "test_maxminddb_v6"),
    ("test_find_many_v4[row-uniform]", "test_searchsorted_v4[row-uniform]"),
    ("test_find_many_v6", "test_searchsorted_v6_s16"),
)


def micro_figures(data: dict[str, Any]) -> dict[str, Any]:
    """The pairs of :data:`MICRO_PAIRS` found in pytest-benchmark JSON, ns per address."""
    per: dict[str, dict[str, Any]] = {}
    for bench in data.get("benchmarks", []):
        extra = bench.get("extra_info", {})
        n = extra.get("n_addresses") or 1
        per[bench["name"]] = {
            "ns": bench["stats"]["median"] * 1e9 / n,
            "workload": extra.get("workload", ""),
            "baseline": extra.get("baseline"),
        }
    pairs = []
    for ours, peer in MICRO_PAIRS:
        if ours in per and peer in per:
            mine, theirs = per[ours], per[peer]
            pairs.append(
                {
                    "ours": _call_name(ours),
                    "peer": theirs["baseline"] or _call_name(peer),
                    "workload": mine["workload"],
                    "ns": mine["ns"],
                    "peer_ns": theirs["ns"],
                    "speedup": theirs["ns"] / mine["ns"],
                }
            )
    return {"pairs": pairs, "machine_info": data.get("machine_info", {})}


def _call_name(test: str) -> str:
    names = {
        "test_lookup_v4_str_countries": "lookup(strs).countries()",
        "test_lookup_v6_str_countries": "lookup(strs).countries()",
        "test_lookup_v4_str": "lookup(strs)",
        "test_lookup_v6_str": "lookup(strs)",
        "test_find_many_v4": "find_many_v4",
        "test_find_many_v6": "find_many_v6",
    }
    return names.get(test.split("[", 1)[0], test)


def micro_table(pairs: list[dict[str, Any]]) -> str:
    lines = [
        "| lookupd | peer | workload | lookupd ns/address | peer ns/address | speed-up |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in pairs:
        lines.append(
            f"| `{row['ours']}` | {row['peer']} | {row['workload']} | {row['ns']:.1f} | "
            f"{row['peer_ns']:.1f} | **{row['speedup']:.2f}x** |"
        )
    return "\n".join(lines)


def part_grpc(mode: Mode, out: Path) -> Part:
    """Addresses/s against batch size, text, packed and stream, beside echo and naive."""
    part = Part("grpc", "Through gRPC: addresses/s against batch size")
    data = _script(
        "bench_grpc",
        out / "grpc.json",
        "--seconds",
        str(mode.grpc_seconds),
        "--rounds",
        str(mode.grpc_rounds),
    )
    part.data = data
    rates = data["rates"]
    lines = [
        "| RPC | batch | lookupd addr/s | echo addr/s | lookupd / echo |",
        "|---|---:|---:|---:|---:|",
    ]
    for rpc in ("text", "packed", "stream"):
        for batch in (1, 100, 1000, 10000):
            ours, echo = rates.get(f"lookupd {rpc} {batch}"), rates.get(f"echo {rpc} {batch}")
            if ours and echo:
                part.ratios[f"grpc: lookupd / echo ({rpc}, batch {batch})"] = ours / echo
                lines.append(
                    f"| {rpc} | {batch:,} | {ours:,.0f} | {echo:,.0f} | {ours / echo:.0%} |"
                )
    part.tables.append("\n".join(lines))
    naive, ours = rates.get("naive text 10000"), rates.get("lookupd text 10000")
    if naive and ours:
        part.ratios["grpc: lookupd / naive maxminddb server (text, batch 10000)"] = ours / naive
        part.tables.append(
            f"Naive server (`maxminddb` reader, one `get` per address), text batch 10,000: "
            f"{naive:,.0f} addresses/s; lookupd {ours:,.0f}: **{ours / naive:.1f}x**."
        )
    return part


CDF_PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100)


def part_latency(mode: Mode, out: Path) -> Part:
    """Single-address text calls, one at a time: lookupd's latency beside echo's."""
    from lookupd.loadgen.calls import build_calls
    from lookupd.loadgen.run import Plan, run_plan
    from lookupd.loadgen.worker import Load, new_histogram

    part = Part("latency", "Single-address calls: latency, lookupd beside echo")
    grpc = _sibling("bench_grpc")
    workdir = Path(tempfile.mkdtemp())
    mmdb = workdir / "data.mmdb"
    with lzma.open(_MMDB_XZ) as source, mmdb.open("wb") as sink:
        shutil.copyfileobj(source, sink)
    calls = build_calls("text", ["1.1.1.1", "8.8.8.8", "2001:4860:4860::8888", "9.9.9.9"], 1)
    load = Load(1, 1, None, mode.latency_calls, None, 10.0, warmup_s=0.5)
    curves: dict[str, dict[str, float]] = {}
    try:
        for kind in ("echo", "lookupd", "echo", "lookupd"):  # alternated; the best kept
            server = grpc._Server(kind, str(mmdb))
            try:
                tally = run_plan(Plan(server.target, None, calls, load, 1))
            finally:
                server.close()
            histogram = new_histogram()
            histogram.decode_and_add(tally.histogram)
            curve = {f"{p:g}": histogram.get_value_at_percentile(p) / 1000 for p in CDF_PERCENTILES}
            if kind not in curves or curve["50"] < curves[kind]["50"]:
                curves[kind] = curve
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    part.data = {"percentile_ms": curves, "calls": mode.latency_calls}
    lines = ["| percentile | lookupd ms | echo ms | echo / lookupd |", "|---:|---:|---:|---:|"]
    for p in ("50", "90", "99", "99.9"):
        ours, echo = curves["lookupd"][p], curves["echo"][p]
        lines.append(f"| p{p} | {ours:.3f} | {echo:.3f} | {echo / ours:.0%} |")
        if p in ("50", "99"):
            part.ratios[f"latency: echo / lookupd (p{p})"] = echo / ours
    part.tables.append("\n".join(lines))
    return part


def part_workers(mode: Mode, out: Path) -> Part:
    """Throughput and memory against ``--workers``."""
    part = Part("workers", "Worker processes: throughput and memory against --workers")
    data = _script(
        "bench_workers",
        out / "workers.json",
        "--seconds",
        str(mode.workers_seconds),
        "--rounds",
        str(mode.workers_rounds),
    )
    part.data = data
    best: dict[tuple[str, int, int, int], dict[str, Any]] = {}
    for row in data.get("throughput", []):
        key = (row["mode"], row["batch"], row["clients"], row["workers"])
        if key not in best or row["rate"] > best[key]["rate"]:
            best[key] = row
    lines = [
        "| RPC, batch | clients | --workers | best rate/s | vs --workers 1 | server cores |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for (rpc, batch, clients, workers), row in sorted(best.items()):
        one = best.get((rpc, batch, clients, 1))
        ratio = row["rate"] / one["rate"] if one else float("nan")
        if workers > 1 and one:
            part.ratios[f"workers: {workers} / 1 workers ({rpc} {batch}, {clients} clients)"] = (
                ratio
            )
        lines.append(
            f"| {rpc}, {batch:,} | {clients} | {workers} | {row['rate']:,.0f} | {ratio:.2f}x | "
            f"{row.get('server_cores', 0):.2f} |"
        )
    part.tables.append("\n".join(lines))
    memory = data.get("memory", [])
    if memory:
        lines = ["| data | --workers | PSS MiB | RSS MiB |", "|---|---:|---:|---:|"]
        for entry in memory:
            lines.append(
                f"| {entry['data']} | {entry['workers']} | {entry['pss_kib'] / 1024:.1f} | "
                f"{entry['rss_kib'] / 1024:.1f} |"
            )
        part.tables.append("\n".join(lines))
    part.tables.append(
        f"On {data.get('settings', {}).get('cpus')} CPUs, clients on the same machine: more "
        "workers than spare cores cannot add throughput here (see the device notes in "
        "bench/README.md for a larger machine)."
    )
    return part


AUTHZ_KINDS = ("envoy alone", "native geoip", "lookupd 1", "lookupd 2", "do-nothing authorizer")
AUTHZ_NAMES = {
    "envoy alone": "Envoy alone",
    "native geoip": "Envoy geoip + RBAC (lookupd export)",
    "lookupd 1": "lookupd, --workers 1",
    "lookupd 2": "lookupd, --workers 2",
    "do-nothing authorizer": "do-nothing authorizer",
}


def part_authz(mode: Mode, out: Path) -> Part:
    """Requests/s through Envoy: alone, with its own geoip + RBAC on lookupd's exports, with
    lookupd's ext_authz, with a do-nothing one."""
    part = Part("authz", "Through Envoy: requests/s with lookupd as the external authorizer")
    beside = Path(sys.executable).with_name("envoy")
    missing = [
        tool
        for tool, found in (
            ("wrk", shutil.which("wrk")),
            ("envoy", beside.exists() or shutil.which("envoy")),
        )
        if not found
    ]
    if missing:
        part.skipped = f"{' and '.join(missing)} not found"
        return part
    data = _script(
        "bench_authz",
        out / "authz.json",
        "--seconds",
        str(mode.authz_seconds),
        "--rounds",
        str(mode.authz_rounds),
    )
    part.data = data
    best: dict[str, dict[str, Any]] = {}
    for row in data.get("rows", []):
        if row["kind"] not in best or row["rate"] > best[row["kind"]]["rate"]:
            best[row["kind"]] = row
    ceiling = best.get("do-nothing authorizer", {}).get("rate")
    alone = best.get("envoy alone", {}).get("rate")
    lines = [
        "| setup | best req/s | vs do-nothing authorizer | vs Envoy alone | p50 / p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind in AUTHZ_KINDS:
        if kind not in best:
            continue
        row = best[kind]
        latency = row.get("latency_ms", {})
        lines.append(
            f"| {AUTHZ_NAMES[kind]} | {row['rate']:,.0f} | {row['rate'] / ceiling:.2f}x | "
            f"{row['rate'] / alone:.3f}x | {latency.get('50', 0):.2f} / "
            f"{latency.get('99', 0):.2f} |"
        )
    part.tables.append("\n".join(lines))
    if ceiling and "lookupd 1" in best:
        part.ratios["authz: lookupd --workers 1 / do-nothing authorizer"] = (
            best["lookupd 1"]["rate"] / ceiling
        )
    if alone and "native geoip" in best:
        part.ratios["authz: native geoip + RBAC / Envoy alone"] = (
            best["native geoip"]["rate"] / alone
        )
    return part


def part_build(mode: Mode, out: Path) -> Part:
    """Build and load time per source format and size, beside maxminddb."""
    import maxminddb

    from lookupd.datafiles.formats import read_source
    from lookupd.datafiles.merge import merge_sources
    from lookupd.datafiles.open import open_database
    from lookupd.datafiles.snapshot import load_snapshot, write_snapshot

    part = Part("build", "Building and loading data, per source format and size")
    workdir = Path(tempfile.mkdtemp())
    try:
        mmdb = workdir / "data.mmdb"
        with lzma.open(_MMDB_XZ) as source, mmdb.open("wb") as sink:
            shutil.copyfileobj(source, sink)
        csvs = []
        for path in _CSVS:
            plain = workdir / path.name.removesuffix(".xz")
            plain.write_bytes(lzma.decompress(path.read_bytes()))
            csvs.append(plain)
        tenth = []
        for path in csvs:
            lines = path.read_text().splitlines(keepends=True)
            small = workdir / f"tenth-{path.name}"
            small.write_text("".join(lines[: max(1, len(lines) // 10)]))
            tenth.append(small)
        snapshot = workdir / "data.lkd"

        def best(run: Callable[[], object]) -> float:
            times = []
            for _ in range(mode.build_rounds):
                started = time.perf_counter()
                run()
                times.append(time.perf_counter() - started)
            return min(times)

        def build(sources: list[Path]) -> Callable[[], object]:
            def run() -> object:
                merged = merge_sources(sources)
                return write_snapshot(snapshot, merged.tables, sources=merged.sources)

            return run

        def iterate_mmdb() -> None:
            with maxminddb.open_database(str(mmdb), maxminddb.MODE_MMAP_EXT) as reader:
                for _ in reader:
                    pass

        fixes = workdir / "fixes.csv"
        fixes.write_text("1.0.0.0,1.0.0.255,AU\n")
        figures = {
            "read .mmdb (the format reader alone)": best(lambda: read_source(mmdb, format="mmdb")),
            "maxminddb: iterate the same .mmdb": best(iterate_mmdb),
            "build from .mmdb (read, merge, write)": best(build([mmdb])),
            "build from location-csv, 551k rows": best(build(csvs)),
            "build from location-csv, a tenth": best(build(tenth)),
        }
        build(csvs)()
        kept = workdir / "kept.lkd"
        shutil.copyfile(snapshot, kept)
        figures["build from a snapshot + a corrections CSV"] = best(build([kept, fixes]))
        build(csvs)()
        figures["load snapshot (verified)"] = best(lambda: load_snapshot(snapshot))
        figures["load snapshot (unverified)"] = best(lambda: load_snapshot(snapshot, verify=False))
        figures["load the embedded .npz"] = best(lambda: open_database())
        figures["maxminddb: open the .mmdb (MODE_MMAP_EXT)"] = best(
            lambda: maxminddb.open_database(str(mmdb), maxminddb.MODE_MMAP_EXT).close()
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    part.data = {"seconds": figures}
    ratio = (
        figures["maxminddb: iterate the same .mmdb"]
        / figures["read .mmdb (the format reader alone)"]
    )
    part.ratios["build: maxminddb iteration / lookupd .mmdb reader"] = ratio
    lines = ["| what | seconds |", "|---|---:|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in figures.items()]
    part.tables.append("\n".join(lines))
    part.tables.append(
        f"lookupd reads the real `.mmdb` (1.0M networks, flat `country_code` records) "
        f"**{ratio:.1f}x** faster than `maxminddb` iterates it; a City-schema file of "
        "GeoLite2-City's size is measured by `bench/bench_mmdb_build.py` (below: 13-15x). "
        "Loads are given as times: a snapshot is mapped and checked (SHA-256 when "
        "verified), the embedded `.npz` inflated, the `.mmdb` only mapped."
    )
    return part


RUNNERS: dict[str, Callable[[Mode, Path], Part]] = {
    "micro": part_micro,
    "grpc": part_grpc,
    "latency": part_latency,
    "workers": part_workers,
    "authz": part_authz,
    "build": part_build,
}


# ---------------------------------------------------------------------------------------
# Plots: one PNG per part, drawn from the part's figures


def plot(part: Part, out: Path) -> None:
    """Draw ``part``'s plot into ``out`` (and name it on the part); nothing if no figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawers: dict[str, Callable[[Any, Part], bool]] = {
        "micro": _plot_micro,
        "grpc": _plot_grpc,
        "latency": _plot_latency,
        "workers": _plot_workers,
        "authz": _plot_authz,
        "build": _plot_build,
    }
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        if drawers[part.name](axes, part):
            axes.set_title(part.title, fontsize=11)
            axes.grid(True, which="both", alpha=0.3)
            figure.tight_layout()
            name = f"{part.name}.png"
            figure.savefig(out / name)
            part.plot = name
    finally:
        plt.close(figure)


def _plot_micro(axes: Any, part: Part) -> bool:
    pairs = part.data.get("pairs", [])
    if not pairs:
        return False
    labels = [f"{row['ours']}\nvs {row['peer']}\n({row['workload']})" for row in pairs]
    where = list(range(len(pairs)))
    axes.barh([y - 0.2 for y in where], [row["ns"] for row in pairs], 0.4, label="lookupd")
    axes.barh([y + 0.2 for y in where], [row["peer_ns"] for row in pairs], 0.4, label="peer")
    for y, row in zip(where, pairs, strict=True):
        axes.text(row["peer_ns"], y + 0.2, f" {row['speedup']:.1f}x", va="center", fontsize=8)
    axes.set_yticks(where, labels, fontsize=7)
    axes.set_xscale("log")
    axes.set_xlabel("ns per address (log; shorter is faster)")
    axes.invert_yaxis()
    axes.legend(fontsize=8)
    return True


def _plot_grpc(axes: Any, part: Part) -> bool:
    rates = part.data.get("rates", {})
    if not rates:
        return False
    for kind, style in (("lookupd", "-o"), ("echo", "--")):
        for rpc in ("text", "packed", "stream"):
            points = [
                (batch, rates[f"{kind} {rpc} {batch}"])
                for batch in (1, 100, 1000, 10000)
                if f"{kind} {rpc} {batch}" in rates
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                axes.plot(xs, ys, style, label=f"{kind} {rpc}")
    if "naive text 10000" in rates:
        axes.plot([10000], [rates["naive text 10000"]], "kx", markersize=9, label="naive maxminddb")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("addresses per call")
    axes.set_ylabel("addresses/s")
    axes.legend(fontsize=7, ncol=2)
    return True


def _plot_latency(axes: Any, part: Part) -> bool:
    curves = part.data.get("percentile_ms", {})
    if not curves:
        return False
    for kind, curve in curves.items():
        percentiles = [float(p) for p in curve]
        axes.plot(list(curve.values()), percentiles, "-o", markersize=3, label=kind)
    axes.set_xscale("log")
    axes.set_xlabel("latency, ms (log)")
    axes.set_ylabel("percentile of calls")
    axes.legend(fontsize=8)
    return True


def _plot_workers(axes: Any, part: Part) -> bool:
    rows = part.data.get("throughput", [])
    if not rows:
        return False
    best: dict[tuple[str, int, int], dict[int, float]] = {}
    for row in rows:
        series = best.setdefault((row["mode"], row["batch"], row["clients"]), {})
        series[row["workers"]] = max(series.get(row["workers"], 0.0), row["rate"])
    for (rpc, batch, clients), series in sorted(best.items()):
        workers = sorted(series)
        one = series.get(1) or 1.0
        axes.plot(
            workers,
            [series[w] / one for w in workers],
            "-o",
            label=f"{rpc} {batch}, {clients} clients",
        )
    memory = part.data.get("memory", [])
    axes.set_xlabel("--workers")
    axes.set_ylabel("throughput / --workers 1 (solid)")
    axes.set_xticks(sorted({row["workers"] for row in rows} | {e["workers"] for e in memory}))
    axes.legend(fontsize=7, loc="center left")
    if memory:
        twin = axes.twinx()
        for data in sorted({entry["data"] for entry in memory}):
            points = sorted(
                (e["workers"], e["pss_kib"] / 1024) for e in memory if e["data"] == data
            )
            xs, ys = zip(*points, strict=True)
            twin.plot(xs, ys, ":s", label=f"PSS, {data}")
        twin.set_ylabel("PSS of all processes, MiB (dotted)")
        twin.legend(fontsize=7, loc="upper center")
    return True


def _plot_authz(axes: Any, part: Part) -> bool:
    rows = part.data.get("rows", [])
    if not rows:
        return False
    best = {
        kind: max((r["rate"] for r in rows if r["kind"] == kind), default=0.0)
        for kind in AUTHZ_KINDS
    }
    axes.bar(range(len(best)), list(best.values()))
    axes.set_xticks(range(len(best)), [AUTHZ_NAMES[kind] for kind in best], fontsize=7)
    axes.set_ylabel("requests/s (best round)")
    return True


def _plot_build(axes: Any, part: Part) -> bool:
    seconds = part.data.get("seconds", {})
    if not seconds:
        return False
    names = list(seconds)
    axes.barh(range(len(names)), list(seconds.values()))
    axes.set_yticks(range(len(names)), names, fontsize=7)
    axes.set_xscale("log")
    axes.set_xlabel("seconds (log)")
    axes.invert_yaxis()
    return True


# ---------------------------------------------------------------------------------------
# The report, the published copy, the regression guard


def report(parts: list[Part], header: dict[str, Any], plots_dir: str) -> str:
    """The Markdown report: machine and commit, then each part's tables and plot."""
    described = header["machine"]
    lines = [
        f"Suite run `{header['mode']}` at {header['started']} UTC, commit `{header['commit']}`, "
        f"{header['seconds']:.0f} s. Machine: {described['cpu']}, {described['cores']} "
        f"cores, Python {described['python']}, {described['system']}; load average "
        f"{header['loadavg_start'][0]:.2f} before, {header['loadavg_end'][0]:.2f} after. "
        "Every ratio is against a baseline measured in the same run; the raw JSON of each "
        "part is in the run's results directory.",
        "",
    ]
    for part in parts:
        lines.append(f"### {part.title}")
        lines.append("")
        if part.skipped:
            lines.append(f"Skipped: {part.skipped}.")
            lines.append("")
            continue
        if part.plot:
            lines.append(f"![{part.title}]({plots_dir}/{part.plot})")
            lines.append("")
        for table in part.tables:
            lines.append(table)
            lines.append("")
        lines.append(f"_{part.seconds:.0f} s._")
        lines.append("")
    return "\n".join(lines)


def publish(run_dir: Path, parts: list[Part], text: str) -> None:
    """Copy the report and plots to bench/report/ and rewrite bench/README.md's section."""
    PUBLISHED.mkdir(exist_ok=True)
    for old in PUBLISHED.glob("*.png"):
        old.unlink()
    for part in parts:
        if part.plot:
            shutil.copyfile(run_dir / part.plot, PUBLISHED / part.plot)
    (PUBLISHED / "report.md").write_text(text.replace("](report/", "]("))
    readme = README.read_text()
    if REPORT_START in readme and REPORT_END in readme:
        before = readme.split(REPORT_START, 1)[0]
        after = readme.split(REPORT_END, 1)[1]
        README.write_text(f"{before}{REPORT_START}\n\n{text}\n{REPORT_END}{after}")


def ratios_of(parts: list[Part]) -> dict[str, float]:
    return {name: value for part in parts for name, value in part.ratios.items()}


def compare(
    current: dict[str, float],
    saved: dict[str, float],
    tolerance: float,
    parts: tuple[str, ...] = PARTS,
) -> list[str]:
    """The ratios of ``parts`` that fell by more than ``tolerance`` (a share) since ``saved``."""
    fallen = []
    for name, before in sorted(saved.items()):
        if name.split(":", 1)[0] not in parts:
            continue
        now = current.get(name)
        if now is None or before <= 0:
            continue
        if now < before * (1 - tolerance):
            fallen.append(f"{name}: {before:.3g} -> {now:.3g} ({now / before - 1:+.0%})")
    return fallen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_true", help="a few minutes in all (default)")
    speed.add_argument("--full", action="store_true", help="longer, steadier measurements")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"of {','.join(PARTS)}")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument("--no-publish", action="store_true", help="leave bench/report alone")
    parser.add_argument("--compare", action="store_true", help="fail on a fallen ratio")
    parser.add_argument(
        "--compare-all",
        action="store_true",
        help=f"compare every part's ratios, not only {', '.join(GUARDED_PARTS)}'s",
    )
    parser.add_argument("--save-baseline", action="store_true", help="record these ratios")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    args = parser.parse_args(argv)
    mode = FULL if args.full else QUICK
    chosen = [name.strip() for name in args.parts.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts: {', '.join(unknown)}")
    described = machine()
    started = datetime.datetime.now(datetime.timezone.utc)
    stamp = started.strftime("%Y-%m-%dT%H%M")
    run_dir = args.out / f"{stamp}-{commit().rstrip('+')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    loadavg_start = os.getloadavg()
    began = time.monotonic()
    parts = []
    for name in chosen:
        print(f"== {name}", flush=True)
        part_began = time.monotonic()
        part = RUNNERS[name](mode, run_dir)
        part.seconds = time.monotonic() - part_began
        if not part.skipped:
            plot(part, run_dir)
        (run_dir / f"{name}.part.json").write_text(
            json.dumps(
                {"ratios": part.ratios, "skipped": part.skipped, "data": part.data}, indent=2
            )
        )
        parts.append(part)
    header = {
        "mode": mode.name,
        "started": started.strftime("%Y-%m-%d %H:%M"),
        "commit": commit(),
        "machine": described,
        "loadavg_start": loadavg_start,
        "loadavg_end": os.getloadavg(),
        "seconds": time.monotonic() - began,
    }
    ratios = ratios_of(parts)
    (run_dir / "summary.json").write_text(json.dumps({**header, "ratios": ratios}, indent=2))
    text = report(parts, header, ".")
    (run_dir / "report.md").write_text(text)
    print(text)
    if not args.no_publish:
        publish(run_dir, parts, report(parts, header, "report"))
    # Per machine and mode: quick rounds are noisier than full ones.
    baseline = BASELINES / f"{machine_key(described)}-{mode.name}.json"
    status = 0
    if args.compare or args.compare_all:
        if not baseline.exists():
            print(f"no baseline for this machine ({baseline.name}): nothing to compare")
        else:
            saved = json.loads(baseline.read_text())
            guarded = PARTS if args.compare_all else GUARDED_PARTS
            fallen = compare(ratios, saved["ratios"], args.tolerance, guarded)
            print(
                f"compared {', '.join(guarded)} with {baseline.name} "
                f"(commit {saved.get('commit')}, tolerance {args.tolerance:.0%}):"
            )
            for line in fallen or ["no ratio fell by more than the tolerance"]:
                print(f"  {line}")
            status = 1 if fallen else 0
    if args.save_baseline:
        BASELINES.mkdir(exist_ok=True)
        baseline.write_text(json.dumps({**header, "ratios": ratios}, indent=2) + "\n")
        print(f"saved {baseline}")
    print(f"results: {run_dir}")
    return status


if __name__ == "__main__":
    sys.exit(main())
