"""Multi-process serving: ``lookupd serve --workers N`` measured as a real subprocess.

Run as a script (not collected as pytest-benchmark tests: it needs several processes)::

    PYTHONPATH=. python bench/bench_workers.py [--seconds 2] [--rounds 3] [--json out.json]

Every server is ``python -m lookupd serve --host 127.0.0.1 --port 0 --port-file F
--workers N --watch-interval 0 --log-format json`` in its own process group, killed (with
its workers) when its measurement ends, even on errors. ``--workers 1`` is a single
process (no supervisor); ``--workers N`` is a supervisor and N forked workers that share
one port with ``SO_REUSEPORT``. A server is ready when every worker has a listening socket
and has answered a health check with SERVING: connections are opened one at a time until
each worker holds one (its owner is found from the socket inodes in ``/proc/PID/fd`` and
``/proc/net/tcp6``), and each connection's health check must say SERVING.

1. **Throughput**, alternating ``--workers 1`` and ``--workers 2`` round by round (the
   order flips each round); the best round of each is reported, and the 2/1 ratio both of
   the bests and within each round. Clients are spawned processes (``--clients``, 2 and 4
   by default), each opening ``--channels`` connections (gRPC channels with
   ``grpc.use_local_subchannel_pool=1``, 4 by default), with one call in flight per
   connection (a thread per channel): the kernel spreads connections, not calls, over the
   worker processes. Scenarios: ``LookupPacked`` with 1,000 random public IPv4 addresses
   per call (addresses/s), and the text ``Lookup`` with one address per call (calls/s).
   Beside each rate: how the connections landed on the server processes, and the CPU the
   server processes and the clients used during the measurement, in cores (``/proc/PID/stat``
   and ``time.process_time``). On a 2-core machine, clients and servers share the cores.
2. **Memory**: for the embedded data and for a snapshot of it (written with
   ``write_snapshot`` into a temporary directory, passed as ``--db``), ``--workers 1``, 2
   and 4; once every worker has answered 200k IPv4 and 200k IPv6 addresses (a random
   segment's start plus a few low bits, so every part of the tables is touched) and 1,000
   text addresses, ``Pss`` and ``Rss`` of each process (``/proc/PID/smaps_rollup``), their
   sums, the PSS sum against ``--workers 1`` of the same data, and the mean
   ``Private_Dirty`` of a worker (what it does not share with the supervisor or the
   others). For the snapshot, also the server's mappings of its private copy of the data
   (in its run directory, ``--run-dir``; ``/proc/PID/smaps``): the PSS of each process's
   mappings, their sum against the copy's size (1.0: the processes share one copy of its
   pages), and their RSS. File-backed pages (libraries) are also shared with any other
   process on the machine that maps them, which lowers everyone's PSS a little.

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
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# bench_grpc's helpers (random public IPv4 requests, rate formatting). Imported by name at
# run time: bench/ is sys.path[0] when this runs as a script, and mypy does not follow it
# into bench_grpc.py (checked on its own, with its own ignores).
_bench_grpc: Any = importlib.import_module("bench_grpc")
_fmt = _bench_grpc._fmt
_requests = _bench_grpc._requests
_rollup = importlib.import_module("bench_snapshot")._rollup

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261125
WORKER_COUNTS = (1, 2)
MEMORY_WORKERS = (1, 2, 4)
# (RPC, addresses per call): LookupPacked at 1,000 and single-address text Lookup.
SCENARIOS = (("packed", 1_000), ("text", 1))
_READY_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 15.0
_MEMORY_ADDRESSES = 200_000  # per family and worker
_MEMORY_CHUNK = 50_000
_TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------
# /proc


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(int(link[8:-1]))
    return inodes


def _tcp_sockets(port: int, state: str) -> set[int]:
    """Inodes of the TCP sockets whose local port is ``port``, in ``state`` (hex: 0A
    listening, 01 established)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                    inodes.add(int(fields[9]))
    return inodes


def _owners(pids: list[int], port: int, state: str) -> dict[int, int]:
    """Socket inode -> owning pid, for the sockets of ``pids`` on ``port`` in ``state``."""
    wanted = _tcp_sockets(port, state)
    return {inode: pid for pid in pids for inode in _socket_inodes(pid) & wanted}


def _cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


# ---------------------------------------------------------------------------------------
# Connections


@dataclass
class Connection:
    """One gRPC channel of its own (one TCP connection) and its stub."""

    channel: Any
    stub: Any


def _connect(target: str) -> Connection:
    """A channel with its own connection (``grpc.use_local_subchannel_pool``), connected."""
    from lookupd.v1 import lookup_pb2_grpc

    channel = _bench_grpc._channel(target)
    stub = lookup_pb2_grpc.LookupServiceStub(channel)  # type: ignore[no-untyped-call]
    return Connection(channel, stub)


# ---------------------------------------------------------------------------------------
# The server under test


@dataclass
class Server:
    """``lookupd serve --workers N`` in its own process group."""

    workers: int
    db: str | None = None
    cgroup_procs: str | None = None
    """A cgroup's ``cgroup.procs`` file: the server joins it before it starts (its workers
    are forked inside it), as a container's processes live in the container's cgroup."""
    process: Any = None
    port: int = 0
    supervisor: int | None = None
    pids: list[int] = field(default_factory=list)
    ready_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    _dir: str = ""

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def worker_pids(self) -> list[int]:
        return [pid for pid in self.pids if pid != self.supervisor]

    def start(self) -> Server:
        self._dir = tempfile.mkdtemp(prefix="bench-workers-")
        port_file = os.path.join(self._dir, "port")
        command = [
            sys.executable,
            "-m",
            "lookupd",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--port-file",
            port_file,
            "--workers",
            str(self.workers),
            "--watch-interval",
            "0",
            "--log-format",
            "json",
        ]
        if self.db is not None:
            # The server's run directory (where it copies the data it maps) goes in ours.
            command += ["--db", self.db, "--run-dir", self._dir]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        started = time.perf_counter()
        with open(os.path.join(self._dir, "log"), "wb") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=None if self.cgroup_procs is None else self._join_cgroup,
            )
        try:
            self._wait_ready(port_file)
        except BaseException:
            self.stop()
            raise
        self.ready_s = time.perf_counter() - started
        return self

    def _join_cgroup(self) -> None:
        """In the child, before exec: move this process into ``cgroup_procs``'s cgroup."""
        assert self.cgroup_procs is not None
        with open(self.cgroup_procs, "w") as procs:
            procs.write("0")  # 0: the writing process itself

    def _alive(self, what: str) -> None:
        if self.process.poll() is not None:
            msg = f"--workers {self.workers}: exited with {self.process.returncode} {what}"
            raise RuntimeError(msg + "\n" + self.log_tail())

    def _wait_ready(self, port_file: str) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not os.path.exists(port_file):
            self._alive("before writing its port file")
            if time.monotonic() > deadline:
                raise RuntimeError("no port file\n" + self.log_tail())
            time.sleep(0.02)
        self.port = int(Path(port_file).read_text())
        if self.workers > 1:
            self.supervisor = self.process.pid
        # Every process listening (a supervisor reserves the port without listening).
        while True:
            self._alive("while starting")
            if self.supervisor is None:
                self.pids = [self.process.pid]
            else:
                self.pids = [self.supervisor, *_children(self.supervisor)]
            listening = set(_owners(self.worker_pids, self.port, "0A").values())
            if len(self.worker_pids) == self.workers and len(listening) == self.workers:
                break
            if time.monotonic() > deadline:
                msg = f"{len(listening)} of {self.workers} workers listening\n"
                raise RuntimeError(msg + self.log_tail())
            time.sleep(0.02)
        # Every worker SERVING on a connection it owns.
        for conn in self.serving_connections().values():
            conn.channel.close()

    def serving_connections(self) -> dict[int, Connection]:
        """One connection per worker, each checked SERVING: worker pid -> connection.

        Connections are opened one at a time, each one's owner found from the sockets
        that appeared; up to 40 per worker before giving up (the kernel hashes each
        connection to a listener: a worker that never gets one is a finding).
        """
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        found: dict[int, Connection] = {}
        spare: list[Connection] = []
        request = health_pb2.HealthCheckRequest(service="lookupd.v1.LookupService")
        deadline = time.monotonic() + _READY_TIMEOUT_S
        try:
            for _ in range(40 * self.workers):
                before = set(_owners(self.worker_pids, self.port, "01"))
                conn = _connect(self.target)
                health: Any = health_pb2_grpc.HealthStub(conn.channel)
                while True:
                    self._alive("while checking health")
                    try:
                        status = health.Check(request, timeout=5, wait_for_ready=True).status
                    except grpc.RpcError as exc:
                        if time.monotonic() > deadline:
                            raise
                        self.notes.append(f"health check failed: {exc.code()}")
                        time.sleep(0.05)
                        continue
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("not SERVING\n" + self.log_tail())
                    time.sleep(0.02)
                after = _owners(self.worker_pids, self.port, "01")
                new = [after[inode] for inode in set(after) - before]
                if len(new) == 1 and new[0] not in found:
                    found[new[0]] = conn
                else:
                    spare.append(conn)
                if len(found) == self.workers:
                    return found
            msg = f"only {len(found)} of {self.workers} workers got one of the connections"
            raise RuntimeError(msg)
        finally:
            for conn in spare:
                conn.channel.close()
            if len(found) < self.workers:
                for conn in found.values():
                    conn.channel.close()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = Path(self._dir, "log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def problems(self) -> list[str]:
        """Log lines at warning level or above, less the expected policy warnings."""
        out = []
        with contextlib.suppress(OSError):
            for line in Path(self._dir, "log").read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    out.append(line)
                    continue
                if record.get("level") in ("warning", "error", "critical") and record.get(
                    "event"
                ) not in ("policy_warning",):
                    out.append(line)
        return out

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the process group and any worker left; remove the dir."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.notes.append(f"did not stop within {_STOP_TIMEOUT_S} s of SIGTERM")
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            for pid in self.worker_pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    self.notes.append(f"worker {pid} outlived the server: killed")
            if self.process.returncode not in (0, None):
                self.notes.append(f"exit status {self.process.returncode}")
        self.notes.extend(self.problems())
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Clients (in spawned processes)


def _client(
    target: str, mode: str, batch: int, channels: int, seconds: float, start_at: float
) -> tuple[int, float, float]:
    """Answered addresses, this process's CPU seconds, and how late it started, with
    ``channels`` calls in flight."""
    conns = [_connect(target) for _ in range(channels)]
    requests = _requests(mode, batch)
    method = "Lookup" if mode == "text" else "LookupPacked"
    calls = [getattr(conn.stub, method) for conn in conns]
    for call in calls:
        call(requests[0], timeout=30)  # warm up every connection
    counts = [0] * channels
    errors: list[BaseException] = []
    late = time.time() - start_at
    time.sleep(max(0.0, -late))
    end = time.perf_counter() + seconds
    cpu = time.process_time()

    def run(index: int) -> None:
        call, i, answered = calls[index], index, 0
        try:
            while time.perf_counter() < end:
                response = call(requests[i % len(requests)], timeout=30)
                answered += len(response.status if mode == "text" else response.ipv4_status)
                i += 1
        except BaseException as exc:
            errors.append(exc)
        counts[index] = answered

    threads = [threading.Thread(target=run, args=(index,)) for index in range(channels)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = time.process_time() - cpu
    for conn in conns:
        conn.channel.close()
    if errors:
        raise errors[0]
    return sum(counts), cpu, max(0.0, late)


def _warm() -> None:
    """Import what a client needs, and stay busy a moment (so each process gets one)."""
    import grpc  # noqa: F401

    from lookupd.v1 import lookup_pb2_grpc  # noqa: F401

    time.sleep(0.5)


@dataclass
class Rate:
    rate: float
    """Addresses (calls, at batch 1) per second."""
    connections: list[int]
    """Connections of the clients per server process."""
    server_cores: float
    """CPU of the server's processes (the supervisor's included), in cores."""
    worker_cores: list[float]
    """The same, per worker."""
    client_cores: float


def _measure(
    pool: concurrent.futures.ProcessPoolExecutor,
    server: Server,
    mode: str,
    batch: int,
    clients: int,
    channels: int,
    seconds: float,
) -> Rate:
    start_at = time.time() + 1.5  # after every client has connected and warmed up
    jobs = [
        pool.submit(_client, server.target, mode, batch, channels, seconds, start_at)
        for _ in range(clients)
    ]
    time.sleep(max(0.0, start_at - time.time()))
    pids = server.pids
    cpu = [_cpu_s([pid]) for pid in pids]
    owners = _owners(server.worker_pids, server.port, "01")
    time.sleep(seconds)
    cores = [(_cpu_s([pid]) - before) / seconds for pid, before in zip(pids, cpu, strict=True)]
    results = [job.result() for job in jobs]
    connections = [list(owners.values()).count(pid) for pid in server.worker_pids]
    late = max(late for _, _, late in results)
    if late > 0.05:
        _NOTES.append(f"{mode} {batch} x{clients}: a client started {late:.2f} s late")
    return Rate(
        sum(answered for answered, _, _ in results) / seconds,
        connections,
        sum(cores),
        [core for pid, core in zip(pids, cores, strict=True) if pid != server.supervisor],
        sum(cpu for _, cpu, _ in results) / seconds,
    )


# ---------------------------------------------------------------------------------------
# Memory


def _memory_workload(seed: int) -> list[Any]:
    """Packed requests: row-uniform IPv4 and IPv6 (a segment's start plus low bits)."""
    import lookupd
    from lookupd.v1 import lookup_pb2 as pb

    db = lookupd.open()
    rng = np.random.default_rng(seed)
    n = _MEMORY_ADDRESSES
    v4 = db.v4.starts[rng.integers(0, len(db.v4), n)] | rng.integers(0, 16, n, dtype=np.uint32)
    v6 = db.v6.starts[rng.integers(0, len(db.v6), n)].copy()
    v6[:, 1] |= rng.integers(0, 16, n, dtype=np.uint64)
    v4_bytes = v4.astype(">u4").tobytes()
    v6_bytes = v6.astype(">u8").tobytes()
    return [
        pb.PackedLookupRequest(
            ipv4=v4_bytes[4 * start : 4 * (start + _MEMORY_CHUNK)],
            ipv6=v6_bytes[16 * start : 16 * (start + _MEMORY_CHUNK)],
        )
        for start in range(0, n, _MEMORY_CHUNK)
    ]


def _memory(workers: int, db: str | None, requests: list[Any]) -> dict[str, Any]:
    server = Server(workers, db).start()
    try:
        _touch_every_worker(server, requests)
        processes = [
            {"pid": pid, "role": "supervisor" if pid == server.supervisor else "worker"}
            | {key: value for key, value in _rollup(pid).items() if key in _ROLLUP}
            for pid in server.pids
        ]
        entry = {
            "workers": workers,
            "data": "snapshot" if db else "embedded",
            "ready_s": server.ready_s,
            "processes": processes,
            "pss_kib": sum(p["Pss"] for p in processes),
            "rss_kib": sum(p["Rss"] for p in processes),
            "data_mappings": _data_mappings(server) if db else None,
        }
        if db is not None:
            _rebuild_and_reload(server, db)
            _touch_every_worker(server, requests)
            entry["data_mappings_after_reload"] = _data_mappings(server)
        return entry
    finally:
        server.stop()
        _NOTES.extend(f"memory --workers {workers} {db or 'embedded'}: {n}" for n in server.notes)


def _touch_every_worker(server: Server, requests: list[Any]) -> None:
    """Send every worker the memory workload (and 1,000 text addresses), then let go."""
    conns = server.serving_connections()
    text = _requests("text", 1_000)[0]
    for conn in conns.values():
        for request in requests:
            response = conn.stub.LookupPacked(request, timeout=60)
            assert len(response.ipv4_status) == _MEMORY_CHUNK
        assert len(conn.stub.Lookup(text, timeout=60).status) == 1_000
    for conn in conns.values():
        conn.channel.close()
    time.sleep(0.2)


def _rebuild_and_reload(server: Server, db: str) -> None:
    """Write the snapshot again (the same data, another build time: a new header, so a new
    private copy), SIGHUP the server and wait until every worker reloaded it."""
    from lookupd.datafiles.snapshot import load_snapshot, write_snapshot

    before = len(_events(server, "reload"))
    data = load_snapshot(db)
    write_snapshot(db, data.tables)
    del data
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while len(_events(server, "reload")) < before + server.workers:
        server._alive("while reloading")
        if time.monotonic() > deadline:
            raise RuntimeError("no reload\n" + server.log_tail())
        time.sleep(0.02)


def _events(server: Server, name: str) -> list[dict[str, Any]]:
    out = []
    with contextlib.suppress(OSError):
        for line in Path(server._dir, "log").read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("event") == name:
                    out.append(record)
    return out


def _data_mappings(server: Server) -> dict[str, Any]:
    """Each process's mappings of the server's private data copies (its run directory,
    ``data/``, in the server's temporary directory), by file, and the copies' sizes."""
    copies = list(Path(server._dir).glob("lookupd-run-*/data/*.lkd"))
    by_file: dict[str, dict[str, Any]] = {}
    for pid in server.pids:
        role = "sup" if pid == server.supervisor else "worker"
        for name, (rss, pss, removed) in _mapped_under(pid, server._dir).items():
            mapping = by_file.setdefault(name, {"removed": removed, "pss_kib": [], "rss_kib": []})
            mapping["pss_kib"].append((role, pss))
            mapping["rss_kib"].append((role, rss))
    return {
        "copies": len(copies),
        "copy_kib": max((path.stat().st_size for path in copies), default=0) / 1024,
        "files": by_file,
    }


def _mapped_under(pid: int, directory: str) -> dict[str, tuple[int, int, bool]]:
    """The RSS and PSS (KiB) of a process's mappings of each file under ``directory`` (by
    inode, named by the path it was mapped by), and whether that path was removed."""
    found: dict[str, tuple[int, int, bool]] = {}
    key = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and ":" not in fields[0]:  # a mapping's header line
            path = line.split(None, 5)[5] if len(fields) >= 6 else ""
            key = ""
            if path.startswith(directory + os.sep):
                key = f"inode {fields[4]}: {Path(path.removesuffix(' (deleted)')).name}"
                rss, pss, _ = found.get(key, (0, 0, False))
                found[key] = (rss, pss, path.endswith(" (deleted)"))
        elif key and fields[0] in ("Rss:", "Pss:"):
            rss, pss, removed = found[key]
            kib = int(fields[1])
            found[key] = (
                (rss + kib, pss, removed) if fields[0] == "Rss:" else (rss, pss + kib, removed)
            )
    return found


_ROLLUP = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Shared_Clean", "Private_Dirty")
_NOTES: list[str] = []


# ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of 1 and 2 workers")
    parser.add_argument(
        "--clients", default="2,4", help="client processes, comma-separated (default 2,4)"
    )
    parser.add_argument("--channels", type=int, default=4, help="connections per client")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    client_counts = [int(c) for c in args.clients.split(",")]
    results: dict[str, Any] = {
        "settings": {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "clients": client_counts,
            "channels": args.channels,
            "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
        },
        "throughput": [],
        "memory": [],
    }
    started = time.time()
    if not args.skip_throughput:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max(client_counts), mp_context=context) as pool:
            for job in [pool.submit(_warm) for _ in range(max(client_counts))]:
                job.result()
            for round_number in range(args.rounds):
                order = WORKER_COUNTS if round_number % 2 == 0 else WORKER_COUNTS[::-1]
                for workers in order:
                    server = Server(workers).start()
                    try:
                        for mode, batch in SCENARIOS:
                            for clients in client_counts:
                                rate = _measure(
                                    pool, server, mode, batch, clients, args.channels, args.seconds
                                )
                                row = {
                                    "round": round_number,
                                    "workers": workers,
                                    "mode": mode,
                                    "batch": batch,
                                    "clients": clients,
                                    "ready_s": server.ready_s,
                                    **rate.__dict__,
                                }
                                results["throughput"].append(row)
                                print(
                                    f"round {round_number} --workers {workers} {mode} {batch} "
                                    f"x{clients} clients: {_fmt(rate.rate)}/s, connections "
                                    f"{rate.connections}, server {rate.server_cores:.2f} "
                                    f"cores {[round(c, 2) for c in rate.worker_cores]}, "
                                    f"clients {rate.client_cores:.2f}",
                                    flush=True,
                                )
                    finally:
                        server.stop()
                        _NOTES.extend(
                            f"round {round_number} --workers {workers}: {note}"
                            for note in server.notes
                        )
    if not args.skip_memory:
        import lookupd
        from lookupd.core.table import Tables
        from lookupd.datafiles.snapshot import write_snapshot

        requests = _memory_workload(SEED)
        with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
            snapshot = os.path.join(tmp, "embedded.lkd")
            db = lookupd.open()
            write_snapshot(snapshot, Tables(db.v4, db.v6, db.label_names))
            del db
            for data in (None, snapshot):
                for workers in MEMORY_WORKERS:
                    entry = _memory(workers, data, requests)
                    results["memory"].append(entry)
                    print(
                        f"memory --workers {workers} {entry['data']}: PSS "
                        f"{_mib(entry['pss_kib'])} MiB, RSS {_mib(entry['rss_kib'])} MiB",
                        flush=True,
                    )
    results["settings"]["loadavg_end"] = os.getloadavg()
    results["settings"]["seconds_total"] = time.time() - started
    results["notes"] = _NOTES
    _report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def _report(results: dict[str, Any]) -> None:
    settings = results["settings"]
    print()
    print(
        f"{settings['cpus']} CPUs; load average {settings['loadavg_start'][0]:.2f} at the start, "
        f"{settings['loadavg_end'][0]:.2f} at the end; {settings['seconds_total']:.0f} s in all"
    )
    rows = results["throughput"]
    if rows:
        print()
        print(
            "| RPC | client processes x connections | --workers 1 | --workers 2 | 2 / 1 (bests) "
            "| 2 / 1 per round | connections per worker (2 workers) | server / client cores, "
            "1 worker | server / client cores, 2 workers |"
        )
        print("|---|---|---:|---:|---:|---|---|---|---|")
        for mode, batch in SCENARIOS:
            for clients in settings["clients"]:
                mine = [
                    r
                    for r in rows
                    if r["mode"] == mode and r["batch"] == batch and r["clients"] == clients
                ]
                best = {
                    w: max((r for r in mine if r["workers"] == w), key=lambda r: r["rate"])
                    for w in WORKER_COUNTS
                }
                per_round = []
                for round_number in sorted({r["round"] for r in mine}):
                    by = {r["workers"]: r["rate"] for r in mine if r["round"] == round_number}
                    per_round.append(f"{by[2] / by[1]:.2f}")
                splits = ", ".join(
                    "/".join(map(str, r["connections"])) for r in mine if r["workers"] == 2
                )
                unit = "addresses/s" if batch > 1 else "calls/s"
                label = (
                    f"`LookupPacked` batch {batch:,} ({unit})"
                    if mode == "packed"
                    else f"text `Lookup` batch {batch} ({unit})"
                )
                one, two = best[1], best[2]
                print(
                    f"| {label} | {clients} x {settings['channels']} | {_fmt(one['rate'])} | "
                    f"{_fmt(two['rate'])} | {two['rate'] / one['rate']:.2f}x | "
                    f"{' '.join(per_round)} | {splits} | "
                    f"{one['server_cores']:.2f} / {one['client_cores']:.2f} | "
                    f"{two['server_cores']:.2f} / {two['client_cores']:.2f} |"
                )
    memory = results["memory"]
    if memory:
        print()
        print(
            "| data | --workers | processes | PSS per process (MiB) | RSS per process (MiB) "
            "| PSS sum | RSS sum | PSS sum vs 1 worker | private dirty per worker | ready |"
        )
        print("|---|---:|---:|---|---|---:|---:|---:|---:|---:|")
        for entry in memory:
            one = next(
                e["pss_kib"] for e in memory if e["data"] == entry["data"] and e["workers"] == 1
            )
            procs = entry["processes"]
            dirty = [p["Private_Dirty"] for p in procs if p["role"] == "worker"]

            def each(key: str, procs: list[dict[str, Any]] = procs) -> str:
                return " + ".join(
                    ("sup " if p["role"] == "supervisor" else "") + _mib(p[key]) for p in procs
                )

            print(
                f"| {entry['data']} | {entry['workers']} | {len(procs)} | {each('Pss')} | "
                f"{each('Rss')} | {_mib(entry['pss_kib'])} MiB | {_mib(entry['rss_kib'])} MiB | "
                f"{entry['pss_kib'] / one:.2f}x (+{_mib(entry['pss_kib'] - one)} MiB) | "
                f"{_mib(float(np.mean(dirty)))} MiB | {entry['ready_s']:.2f} s |"
            )
    mapped = [entry for entry in memory if entry.get("data_mappings")]
    if mapped:
        print()
        print(
            "| --workers | when | private copies on disk | copy size | mapped file | "
            "PSS per process (MiB) | PSS sum | PSS sum / copy size | RSS per process (MiB) |"
        )
        print("|---:|---|---:|---:|---|---|---:|---:|---|")
        for entry in mapped:
            for when, key in (
                ("start", "data_mappings"),
                ("after a reload", "data_mappings_after_reload"),
            ):
                data = entry.get(key)
                if not data:
                    continue
                for name, mapping in data["files"].items():
                    pss = [kib for _, kib in mapping["pss_kib"]]
                    print(
                        f"| {entry['workers']} | {when} | {data['copies']} | "
                        f"{_mib(data['copy_kib'])} MiB | {name[:24]}…"
                        f"{' (removed)' if mapping['removed'] else ''} | "
                        f"{' + '.join(f'{role} {_mib(k)}' for role, k in mapping['pss_kib'])} | "
                        f"{_mib(sum(pss))} MiB | {sum(pss) / data['copy_kib']:.2f} | "
                        f"{' + '.join(f'{role} {_mib(k)}' for role, k in mapping['rss_kib'])} |"
                    )
    if results["notes"]:
        print()
        print("Notes (server log warnings/errors, exit statuses):")
        for note in results["notes"]:
            print(f"- {note}")


if __name__ == "__main__":
    main()
