"""Snapshots: build time, load time, and the memory of worker processes sharing one file.

- ``build``: ``merge_sources`` + ``write_snapshot`` on the full real data, from the vendored
  CSVs and from the same release's ``.mmdb``.
- ``load-snapshot``: ``load_snapshot`` with and without ``verify``, beside the two ways of
  opening the same data that exist without snapshots: ``lookupd.open()`` (the embedded
  ``.npz``: inflate, check, build jump tables) and ``maxminddb.open_database``.
- ``memory``: 4 worker processes each load the data and look up 1M IPv4 and 1M IPv6
  addresses; the sum of their PSS (``/proc/PID/smaps_rollup``) counts a page shared by k
  processes as 1/k in each, so a snapshot's pages count once in the sum, while 4 processes
  that each inflate the ``.npz`` hold 4 copies. The time is for the 4 workers to start, load
  and answer. The same figures as a table: ``python bench/bench_snapshot.py``.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import lookupd
from lookupd.datafiles.merge import merge_sources
from lookupd.datafiles.snapshot import load_snapshot, write_snapshot
from lookupd.policies.iso3166 import non_iso_labels

# 10k addresses per workload are checked against the .mmdb reader before timing.
N_CHECK = 10_000

DATA_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "geo-whois-asn-country"
CSVS = [
    DATA_DIR / "geo-whois-asn-country-ipv4.csv.xz",
    DATA_DIR / "geo-whois-asn-country-ipv6.csv.xz",
]
MMDB_XZ = DATA_DIR / "geo-whois-asn-country.mmdb.xz"
WORKLOAD = "geo-whois-asn-country"
WORKERS = 4
# Addresses per family each worker looks up.
WORKER_ADDRESSES = 1_000_000
_BUILD_ROUNDS = 3
_WORKER_TIMEOUT_S = 300.0
_KINDS = ("none", "npz", "snapshot")

# A worker: load the data (or not, for "none"), look up 1M IPv4 and 1M IPv6 addresses drawn
# row-uniformly (a random segment's start plus a random offset inside it), say "ready",
# then wait for stdin to close so that the parent can read its memory while it holds it all.
_WORKER = r"""
import sys
import numpy as np
import lookupd
from lookupd.datafiles.snapshot import load_snapshot

kind, path, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(seed)
if kind == "snapshot":
    snap = load_snapshot(path)
    db = lookupd.Database(snap.v4, snap.v6, snap.label_names)
elif kind == "npz":
    db = lookupd.open()
else:
    db = None
if db is None:
    v4 = rng.integers(0, 1 << 32, n, dtype=np.uint32)
    v6 = rng.integers(0, 1 << 63, (n, 2), dtype=np.uint64)
else:
    v4 = db.v4.starts[rng.integers(0, len(db.v4), n)] | rng.integers(0, 16, n, dtype=np.uint32)
    v6 = db.v6.starts[rng.integers(0, len(db.v6), n)].copy()
    v6[:, 1] |= rng.integers(0, 16, n, dtype=np.uint64)
    answers = db.lookup(v4), db.lookup(v6)
    assert answers[0].labels.shape == (n,)
print("ready", flush=True)
sys.stdin.read()
"""


# --- build ----------------------------------------------------------------------------------


def build(sources: list[Path], output: Path) -> dict[str, Any]:
    """What ``lookupd build SOURCE... -o OUTPUT -q`` does."""
    merged = merge_sources(sources)
    return write_snapshot(
        output,
        merged.tables,
        sources=merged.sources,
        notes=merged.notes,
        non_iso_labels=non_iso_labels(merged.tables.label_names),
    )


def _time_rounds(benchmark: Any, target: Callable[[], Any], workload: str) -> None:
    benchmark.pedantic(target, rounds=_BUILD_ROUNDS, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(n_addresses=1, workload=workload, baseline="", unit="call")
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        median_s = stats.stats.median
        benchmark.extra_info["ns_per_address"] = median_s * 1e9
        benchmark.extra_info["addresses_per_s"] = 1 / median_s if median_s else float("inf")


@pytest.fixture(scope="module")
def snapshot_path(tmp_path_factory: pytest.TempPathFactory, db: lookupd.Database) -> Path:
    """The real data built from its CSVs, checked against the (``.mmdb``-checked) ``db``."""
    path = tmp_path_factory.mktemp("snapshot") / "real.lkd"
    build(CSVS, path)
    snapshot = load_snapshot(path)
    ours = lookupd.Database(snapshot.v4, snapshot.v6, snapshot.label_names)
    for family in (db.v4, db.v6):
        keys = family.starts
        assert ours.lookup(keys).countries() == db.lookup(keys).countries()
    return path


@pytest.mark.benchmark(group="build")
def test_build_from_csv(benchmark: Any, tmp_path: Path, snapshot_path: Path) -> None:
    output = tmp_path / "csv.lkd"
    _time_rounds(benchmark, functools.partial(build, CSVS, output), f"{WORKLOAD} CSV (xz)")
    assert load_snapshot(output).data_version == load_snapshot(snapshot_path).data_version


@pytest.mark.benchmark(group="build")
def test_build_from_mmdb(
    benchmark: Any,
    tmp_path: Path,
    mmdb_path: Path,
    mmdb_reader: Any,
    ipv4_strs: dict[str, list[str]],
    ipv6_strs: list[str],
) -> None:
    pytest.importorskip(
        "lookupd.datafiles.formats.mmdb", reason="the .mmdb reader is not there yet"
    )
    output = tmp_path / "mmdb.lkd"
    _time_rounds(benchmark, functools.partial(build, [mmdb_path], output), f"{WORKLOAD} .mmdb")
    snapshot = load_snapshot(output)
    ours = lookupd.Database(snapshot.v4, snapshot.v6, snapshot.label_names)
    samples = [*ipv4_strs["row-uniform"][:N_CHECK], *ipv6_strs[:N_CHECK]]
    expected = [(mmdb_reader.get(ip) or {}).get("country_code") for ip in samples]
    assert ours.lookup(samples).countries() == expected


# --- load -----------------------------------------------------------------------------------


def _open_mmdb(path: str) -> None:
    import maxminddb

    maxminddb.open_database(path, maxminddb.MODE_MMAP_EXT).close()


@pytest.mark.benchmark(group="load-snapshot")
@pytest.mark.parametrize("verify", [True, False], ids=["verify", "no-verify"])
def test_load_snapshot(run_call: Callable[..., Any], snapshot_path: Path, verify: bool) -> None:
    run_call(functools.partial(load_snapshot, snapshot_path, verify=verify), workload=WORKLOAD)


@pytest.mark.benchmark(group="load-snapshot")
def test_load_embedded_npz(run_call: Callable[..., Any], db: lookupd.Database) -> None:
    run_call(lookupd.open, workload=WORKLOAD, baseline="lookupd.open (.npz)")


@pytest.mark.benchmark(group="load-snapshot")
def test_load_maxminddb(run_call: Callable[..., Any], mmdb_path: Path, mmdb_reader: Any) -> None:
    run_call(_open_mmdb, str(mmdb_path), workload=WORKLOAD, baseline="maxminddb MODE_MMAP_EXT")


# --- memory ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Memory:
    """The summed memory of the workers of one kind, in KiB, and how long they took."""

    kind: str
    """``none`` (no data: the interpreter, numpy and the addresses), ``npz`` or ``snapshot``."""
    pss_kib: int
    """Sum of the workers' PSS."""
    pss_anon_kib: int
    """Sum of their anonymous (private heap) PSS."""
    pss_file_kib: int
    """Sum of their file-backed PSS (libraries, the mapped snapshot)."""
    rss_kib: int
    """Sum of their RSS, shared pages counted in full in each."""
    mapping_pss_kib: int
    """Sum of the PSS of their mappings of the snapshot file (0 for the other kinds)."""
    mapping_rss_kib: int
    """Sum of the RSS of their mappings of the snapshot file."""
    ready_s: float
    """From starting the workers to all of them having answered."""


def _rollup(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return fields


def _file_mapping(pid: int, path: Path) -> tuple[int, int]:
    """Return the (RSS, PSS) in KiB of a process's mappings of ``path``."""
    rss = pss = 0
    inside = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and ":" not in fields[0]:  # a mapping's header line
            inside = len(fields) >= 6 and fields[5] == str(path)
        elif inside and fields[0] == "Rss:":
            rss += int(fields[1])
        elif inside and fields[0] == "Pss:":
            pss += int(fields[1])
    return rss, pss


def measure_workers(kind: str, snapshot: Path, workers: int = WORKERS) -> Memory:
    """Start ``workers`` processes of ``kind``, wait until all answered, sum their memory."""
    env = dict(os.environ)
    root = str(Path(lookupd.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, kind, str(snapshot), str(WORKER_ADDRESSES), str(i)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        for i in range(workers)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line != b"ready\n":
                msg = f"worker {proc.pid} ({kind}) failed: {line!r}"
                raise RuntimeError(msg)
        ready_s = time.perf_counter() - started
        rollups = [_rollup(proc.pid) for proc in procs]
        mappings = [_file_mapping(proc.pid, snapshot.resolve()) for proc in procs]
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in procs:
            proc.wait(timeout=_WORKER_TIMEOUT_S)
            assert proc.stdout is not None
            proc.stdout.close()
    return Memory(
        kind,
        sum(r["Pss"] for r in rollups),
        sum(r.get("Pss_Anon", 0) for r in rollups),
        sum(r.get("Pss_File", 0) for r in rollups),
        sum(r["Rss"] for r in rollups),
        sum(pss for _, pss in mappings),
        sum(rss for rss, _ in mappings),
        ready_s,
    )


@pytest.fixture(scope="module")
def unmapped_snapshot(tmp_path_factory: pytest.TempPathFactory, snapshot_path: Path) -> Path:
    """A copy of the snapshot that this process never maps (its own mapping would share)."""
    path = tmp_path_factory.mktemp("workers") / "workers.lkd"
    shutil.copyfile(snapshot_path, path)
    return path


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="Linux smaps_rollup")
@pytest.mark.benchmark(group="memory")
@pytest.mark.parametrize("kind", _KINDS)
def test_memory_of_workers(benchmark: Any, unmapped_snapshot: Path, kind: str) -> None:
    found: list[Memory] = []
    benchmark.pedantic(
        lambda: found.append(measure_workers(kind, unmapped_snapshot)), rounds=1, iterations=1
    )
    memory = found[-1]
    benchmark.extra_info.update(
        n_addresses=1,
        workload=f"{WORKERS} workers x 1M IPv4 + 1M IPv6",
        baseline="4 workers, embedded .npz" if kind == "npz" else "",
        unit="call",
        pss_kib=memory.pss_kib,
        pss_anon_kib=memory.pss_anon_kib,
        pss_file_kib=memory.pss_file_kib,
        rss_kib=memory.rss_kib,
        mapping_pss_kib=memory.mapping_pss_kib,
        mapping_rss_kib=memory.mapping_rss_kib,
    )


# --- as a script: the memory table -----------------------------------------------------------


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def main(argv: list[str] | None = None) -> int:
    """Build the snapshot, measure the workers of each kind, print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--repeat", type=int, default=3, help="runs per kind; the median is shown")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = Path(tmp) / "real.lkd"
        started = time.perf_counter()
        build(CSVS, snapshot)
        print(f"built {snapshot.stat().st_size:,} bytes in {time.perf_counter() - started:.2f} s")
        results: dict[str, Memory] = {}
        for kind in _KINDS:
            runs = sorted(
                (measure_workers(kind, snapshot, args.workers) for _ in range(args.repeat)),
                key=lambda m: m.pss_kib,
            )
            results[kind] = runs[len(runs) // 2]
    npz = results["npz"]
    print()
    print(
        f"| {args.workers} workers, each 1M IPv4 + 1M IPv6 lookups | PSS sum | PSS anon | "
        "PSS file | PSS vs npz | snapshot mapping: RSS sum / PSS sum | RSS sum | ready |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind, memory in results.items():
        mapping = (
            f"{_mib(memory.mapping_rss_kib)} / {_mib(memory.mapping_pss_kib)} MiB"
            if kind == "snapshot"
            else "—"
        )
        print(
            f"| {kind} | {_mib(memory.pss_kib)} MiB | {_mib(memory.pss_anon_kib)} MiB | "
            f"{_mib(memory.pss_file_kib)} MiB | {_mib(memory.pss_kib - npz.pss_kib)} MiB | "
            f"{mapping} | {_mib(memory.rss_kib)} MiB | {memory.ready_s:.2f} s |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
