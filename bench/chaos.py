"""Chaos benchmark: `lookupd serve --workers 2` under steady load while files, signals and idle
clients do what operators and hostile clients do (issue 10). See bench/README.md, "Chaos".

    python bench/chaos.py [--duration 60] [--seed 1] [--clients 4] [--out build/chaos]

Load: ``--clients`` processes, each with one ``lookupd.client.Client`` connection (so each
sits on one worker), calling Lookup, LookupPacked, CheckRegion and StreamLookup in a loop
and checking every answer against the two good data versions. Faults, in a seeded random
order, for the first 80% of the run (the rest is calm, for recovery to show): good and
corrupt snapshots and policy files renamed over the live ones; the live snapshot rewritten
in place (cp over the same inode, truncated, random bytes at the same size, deleted);
SIGHUP bursts to the supervisor; kill -9 and SIGSTOP of a worker (SIGCONT later, or left
to the heartbeat); idle TCP connections and idle StreamLookup streams. Everything is on
127.0.0.1, and every count and wait is bounded.

Attribution of a failed call (see bench/README.md): "killed worker" when the client's
connection was on the worker killed or stopped (read from /proc/net/tcp and the processes'
socket inodes at the moment of the fault) and the call overlapped the fault's window
(from the fault to 1 s after the kill, or to 1 s after the SIGCONT or the stopped worker's
death); everything else is "unexplained", labelled with the kind of the last fault before
it. A wrong answer (a country neither good version gives) is a failure of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "geo-whois-asn-country"
# Addresses every client asks about; the override makes version B answer AQ for them.
PROBES = ["1.1.1.1", "8.8.8.8", "2001:4860:4860::8888", "9.9.9.9", "81.2.69.160", "203.0.113.9"]
OVERRIDE = "1.1.1.1,1.1.1.1,AQ\n8.8.8.8,8.8.8.8,AQ\n2001:4860:4860::8888,2001:4860:4860::8888,AQ\n"
KILL_WINDOW_S = 1.0
MAX_IDLE_SOCKETS = 200
MAX_IDLE_STREAMS = 40


# ------------------------------------------------------------------------------------------
# Files


def prepare(out: Path) -> dict[str, Path]:
    """Build (once; cached in ``out``) the good snapshots A and B, and the policy files."""
    files = {
        "a": out / "a.lkd",
        "b": out / "b.lkd",
        "policies": out / "policies.yaml",
        "policies_b": out / "policies-b.yaml",
    }
    sources = [
        str(DATA / "geo-whois-asn-country-ipv4.csv.xz"),
        str(DATA / "geo-whois-asn-country-ipv6.csv.xz"),
    ]
    lookupd = [sys.executable, "-m", "lookupd"]
    if not files["a"].exists():
        subprocess.run([*lookupd, "build", "-q", "-o", str(files["a"]), *sources], check=True)
    if not files["b"].exists():
        override = out / "override.csv"
        override.write_text(OVERRIDE)
        subprocess.run(
            [*lookupd, "build", "-q", "-o", str(files["b"]), *sources, str(override)], check=True
        )
    from lookupd.policies.loading import example_policies_path

    text = example_policies_path().read_text()
    files["policies"].write_text(text)
    files["policies_b"].write_text(text.replace("description:", "description: (B)", 1))
    return files


def expected_answers(files: dict[str, Path]) -> dict[str, set[str]]:
    """Per probe address: the countries the good versions give ("" for none)."""
    from lookupd.datafiles.open import open_database

    allowed: dict[str, set[str]] = {address: set() for address in PROBES}
    for name in ("a", "b"):
        db = open_database(files[name])
        for address in PROBES:
            allowed[address].add(db.lookup_one(address) or "")
    return allowed


# ------------------------------------------------------------------------------------------
# Load


def client_main(
    target: str, seed: int, until: float, allowed: dict[str, list[str]], out: str
) -> None:
    """One load process: calls in a loop until ``until``; writes its calls to ``out``."""
    import grpc
    import numpy as np

    from lookupd.client.channel import ServerError
    from lookupd.client.sync import Client

    rng = random.Random(seed)
    calls: list[tuple[float, float, str, str]] = []
    packed = np.array(
        [int.from_bytes(socket.inet_aton(a), "big") for a in PROBES if "." in a], dtype=">u4"
    )
    v4_probes = [a for a in PROBES if "." in a]
    with Client(target, channels=1, timeout_s=5.0) as client:
        while time.time() < until:
            rpc = rng.choice(["Lookup", "LookupPacked", "CheckRegion", "StreamLookup"])
            started = time.time()
            try:
                if rpc == "Lookup":
                    got = client.lookup(PROBES).countries_list()
                    outcome = _judge(PROBES, got, allowed)
                elif rpc == "LookupPacked":
                    got = client.lookup(packed.tobytes(), version=4).countries_list()
                    outcome = _judge(v4_probes, got, allowed)
                elif rpc == "CheckRegion":
                    checks = client.check("eu-only", PROBES)
                    outcome = _judge(
                        PROBES, [c or None for c in checks.countries.tolist()], allowed
                    )
                else:
                    outcome = "OK"
                    for answers in client.stream([PROBES] * 5):
                        outcome = _judge(PROBES, answers.countries_list(), allowed)
                        if outcome != "OK":
                            break
            except ServerError as exc:
                outcome = exc.code.name if isinstance(exc.code, grpc.StatusCode) else str(exc.code)
            except Exception as exc:  # a client-side failure is a failure too
                outcome = f"client:{type(exc).__name__}"
            calls.append((started, time.time(), rpc, outcome))
    Path(out).write_text(json.dumps({"pid": os.getpid(), "calls": calls}))


def _judge(addresses: list[str], got: list[str | None], allowed: dict[str, list[str]]) -> str:
    for address, country in zip(addresses, got, strict=True):
        if (country or "") not in allowed[address]:
            return "WRONG_ANSWER"
    return "OK"


# ------------------------------------------------------------------------------------------
# The server and its processes


class Server:
    """`lookupd serve --workers N` on 127.0.0.1, its JSON log, its worker pids."""

    def __init__(self, out: Path, db: Path, policies: Path, workers: int) -> None:
        help_text = subprocess.run(
            [sys.executable, "-m", "lookupd", "serve", "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        port_file = out / "port"
        port_file.unlink(missing_ok=True)
        self.log = out / "serve.log"
        command = [
            sys.executable, "-m", "lookupd", "serve", "--host", "127.0.0.1", "--port", "0",
            "--port-file", str(port_file), "--db", str(db), "--policies", str(policies),
            "--workers", str(workers), "--watch-interval", "0.5", "--log-format", "json",
        ]  # fmt: skip
        # Settings other fixes add; used when this lookupd has them.
        (out / "run").mkdir(mode=0o700, exist_ok=True)
        for flag, value in (("--heartbeat-timeout", "3"), ("--run-dir", str(out / "run"))):
            if flag in help_text:
                command += [flag, value]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKUPD_")}
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.time() > deadline:
                raise SystemExit(f"lookupd serve did not start:\n{self.log.read_text()}")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        self.target = f"127.0.0.1:{self.port}"

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if name is None or record.get("event") == name:
                        found.append(record)
        return found

    def workers(self) -> list[int]:
        """Pids of the supervisor's live children (its workers)."""
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return []
        return [int(child) for child in children]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
            return -9


def memory(pids: list[int]) -> dict[str, int]:
    """RSS and PSS (KB) summed over ``pids`` (smaps_rollup)."""
    total = {"rss_kb": 0, "pss_kb": 0}
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    total[f"{key.lower()}_kb"] += int(rest.split()[0])
    return total


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    return inodes


def _tcp_entries() -> list[tuple[int, int, str]]:
    """(local port, remote port, inode) of every TCP socket of this network namespace."""
    entries = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                entries.append(
                    (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16), inode)
                )
    return entries


def clients_on(worker: int, server_port: int, clients: list[int]) -> list[int]:
    """The client pids with a connection to ``worker`` (served on ``server_port``)."""
    entries = _tcp_entries()
    mine = _socket_inodes(worker)
    peer_ports = {
        remote for local, remote, inode in entries if local == server_port and inode in mine
    }
    on = []
    for pid in clients:
        inodes = _socket_inodes(pid)
        if any(local in peer_ports and inode in inodes for local, _, inode in entries):
            on.append(pid)
    return on


# ------------------------------------------------------------------------------------------
# Faults


class Chaos:
    """The fault script: one random fault at a time, each recorded with its time."""

    def __init__(
        self,
        server: Server,
        files: dict[str, Path],
        live: dict[str, Path],
        rng: random.Random,
        clients: list[int],
    ) -> None:
        self.server, self.files, self.live, self.rng, self.clients = (
            server,
            files,
            live,
            rng,
            clients,
        )
        self.faults: list[dict[str, Any]] = []
        self.stopped: dict[int, tuple[float, float | None]] = {}  # pid -> (stopped at, SIGCONT due)
        self.sockets: list[socket.socket] = []
        self.streams: list[Any] = []
        self._channel: Any = None

    def record(self, kind: str, **facts: Any) -> dict[str, Any]:
        fault = {"t": time.time(), "kind": kind, **facts}
        self.faults.append(fault)
        return fault

    def _rename_over(self, target: Path, data: bytes) -> None:
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def step(self) -> None:
        actions = [
            self.rename_good_data, self.rename_corrupt_data, self.cp_over_data, self.truncate_data,
            self.random_bytes_data, self.delete_data, self.rename_policies, self.sighup_burst,
            self.kill_worker, self.stop_worker, self.idle_connections, self.idle_streams,
        ]  # fmt: skip
        self.rng.choice(actions)()

    def good(self) -> bytes:
        return self.files[self.rng.choice(["a", "b"])].read_bytes()

    def rename_good_data(self) -> None:
        self._rename_over(self.live["db"], self.good())
        self.record("rename good snapshot")

    def rename_corrupt_data(self) -> None:
        data = bytearray(self.good())
        how = self.rng.choice(["truncated", "random bytes", "flipped byte"])
        if how == "truncated":
            data = data[: self.rng.randrange(len(data))]
        elif how == "random bytes":
            data = bytearray(self.rng.randbytes(len(data)))
        else:
            data[self.rng.randrange(len(data))] ^= 0xFF
        self._rename_over(self.live["db"], bytes(data))
        self.record("rename corrupt snapshot", how=how)

    def cp_over_data(self) -> None:
        data = self.good()
        with open(self.live["db"], "r+b" if self.live["db"].exists() else "wb") as handle:
            handle.truncate(0)  # what cp does: same inode, truncated, rewritten
            handle.write(data)
        self.record("cp over snapshot (same inode)")

    def truncate_data(self) -> None:
        if self.live["db"].exists():
            size = self.live["db"].stat().st_size
            os.truncate(self.live["db"], self.rng.randrange(max(size, 1)))
        self.record("truncate snapshot in place")

    def random_bytes_data(self) -> None:
        if self.live["db"].exists():
            size = self.live["db"].stat().st_size
            with open(self.live["db"], "r+b") as handle:
                handle.write(self.rng.randbytes(size))
        self.record("random bytes into snapshot in place")

    def delete_data(self) -> None:
        self.live["db"].unlink(missing_ok=True)
        self.record("delete snapshot")

    def rename_policies(self) -> None:
        choice = self.rng.choice(["good", "good b", "bad yaml", "unknown country"])
        text = {
            "good": self.files["policies"].read_text(),
            "good b": self.files["policies_b"].read_text(),
            "bad yaml": "policies: [unclosed\n",
            "unknown country": "policies:\n  x:\n    allow: [QQ]\n",
        }[choice]
        self._rename_over(self.live["policies"], text.encode())
        self.record("rename policies", which=choice)

    def sighup_burst(self) -> None:
        count = self.rng.randint(20, 60)
        for _ in range(count):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.server.process.pid, signal.SIGHUP)
            time.sleep(0.005)
        self.record("SIGHUP burst", count=count)

    def _victim(self) -> int | None:
        workers = [pid for pid in self.server.workers() if pid not in self.stopped]
        return self.rng.choice(workers) if workers else None

    def kill_worker(self) -> None:
        pid = self._victim()
        if pid is None:
            return
        on = clients_on(pid, self.server.port, self.clients)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        fault = self.record("kill -9 worker", pid=pid, clients=on)
        fault["window_end"] = fault["t"] + KILL_WINDOW_S

    def stop_worker(self) -> None:
        pid = self._victim()
        if pid is None:
            return
        on = clients_on(pid, self.server.port, self.clients)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
        # Half the time SIGCONT after 1-3 s; otherwise left to the heartbeat (SIGCONT after
        # 10 s at the latest, so that a server without one does not lose the worker for good).
        due = time.time() + (self.rng.uniform(1, 3) if self.rng.random() < 0.5 else 10.0)
        self.stopped[pid] = (time.time(), due)
        self.record(
            "SIGSTOP worker", pid=pid, clients=on, sigcont_due_in_s=round(due - time.time(), 1)
        )

    def tick(self, force: bool = False) -> None:
        """Send the SIGCONTs due; close the windows of stopped workers that died or resumed."""
        for pid, (_, due) in list(self.stopped.items()):
            alive = Path(f"/proc/{pid}").exists()
            if not alive or force or time.time() >= due:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                for fault in self.faults:
                    if fault.get("pid") == pid and fault["kind"] == "SIGSTOP worker":
                        fault["window_end"] = time.time() + KILL_WINDOW_S
                        fault["ended_by"] = "SIGCONT" if alive else "worker gone"
                del self.stopped[pid]

    def idle_connections(self) -> None:
        count = min(50, MAX_IDLE_SOCKETS - len(self.sockets))
        for _ in range(count):
            with contextlib.suppress(OSError):
                self.sockets.append(
                    socket.create_connection(("127.0.0.1", self.server.port), timeout=2)
                )
        self.record("idle connections", count=count, open=len(self.sockets))

    def idle_streams(self) -> None:
        import grpc

        from lookupd.v1 import lookup_pb2 as pb
        from lookupd.v1 import lookup_pb2_grpc

        if self._channel is None:
            self._channel = grpc.insecure_channel(self.server.target)
        stub = lookup_pb2_grpc.LookupServiceStub(self._channel)
        count = min(10, MAX_IDLE_STREAMS - len(self.streams))

        def one_then_idle() -> Any:
            yield pb.PackedLookupRequest(ipv4=bytes([1, 1, 1, 1]))
            time.sleep(3600)  # never sends more: the stream sits idle until cancelled

        for _ in range(count):
            call = stub.StreamLookup(one_then_idle(), timeout=120)
            self.streams.append(call)
        self.record("idle streams", count=count, open=len(self.streams))

    def close(self) -> None:
        self.tick(force=True)
        for sock in self.sockets:
            sock.close()
        for call in self.streams:
            call.cancel()
        if self._channel is not None:
            self._channel.close()


# ------------------------------------------------------------------------------------------
# Report


def attribute(call: tuple[float, float, str, str], pid: int, faults: list[dict[str, Any]]) -> str:
    started, ended, _, outcome = call
    if outcome == "WRONG_ANSWER":
        return "wrong answer"
    for fault in faults:
        if fault["kind"] in ("kill -9 worker", "SIGSTOP worker") and pid in fault["clients"]:
            end = fault.get("window_end", float("inf"))
            if started <= end and ended >= fault["t"] - 0.05:
                return "killed worker"
    before = [fault["kind"] for fault in faults if fault["t"] <= ended]
    return f"unexplained (after {before[-1]})" if before else "unexplained (no fault yet)"


def report(result: dict[str, Any]) -> str:
    lines = [
        f"## Chaos run: {result['duration_s']} s, seed {result['seed']}, "
        f"{result['clients']} clients, {result['workers']} workers",
        "",
        "| figure | value |",
        "|---|---|",
        f"| calls | {result['calls']} |",
        f"| calls OK | {result['ok']} |",
        f"| calls failed | {result['failed']} |",
    ]
    for code, n in sorted(result["failed_by_code"].items()):
        lines.append(f"| failed: {code} | {n} |")
    for cause, n in sorted(result["failed_by_cause"].items()):
        lines.append(f"| cause: {cause} | {n} |")
    for kind, n in sorted(result["faults_by_kind"].items()):
        lines.append(f"| fault: {kind} | {n} |")
    for key in (
        "worker_exits",
        "worker_starts",
        "worker_unresponsive",
        "reloads_ok",
        "reloads_failed",
        "server_exit",
    ):
        lines.append(f"| {key.replace('_', ' ')} | {result[key]} |")
    for when in ("before", "after"):
        mem = result[f"memory_{when}"]
        lines.append(
            f"| memory {when} (supervisor + workers) | RSS {mem['rss_kb'] / 1024:.0f} MB, "
            f"PSS {mem['pss_kb'] / 1024:.0f} MB |"
        )
    lines.append(f"| final answers from the good version | {result['final_answers_good']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "chaos")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    files = prepare(out)
    allowed = {address: sorted(countries) for address, countries in expected_answers(files).items()}
    live = {"db": out / "live" / "countries.lkd", "policies": out / "live" / "policies.yaml"}
    shutil.rmtree(out / "live", ignore_errors=True)
    live["db"].parent.mkdir()
    shutil.copyfile(files["a"], live["db"])
    shutil.copyfile(files["policies"], live["policies"])
    rng = random.Random(args.seed)
    server = Server(out, live["db"], live["policies"], args.workers)
    context = multiprocessing.get_context("spawn")
    started = time.time()
    until = started + args.duration
    results = [out / f"client-{i}.json" for i in range(args.clients)]
    processes = [
        context.Process(
            target=client_main,
            args=(server.target, args.seed * 1000 + i, until, allowed, str(path)),
        )
        for i, path in enumerate(results)
    ]
    for process in processes:
        process.start()
    time.sleep(min(3.0, args.duration / 10))  # warm: connections made, data paged in
    memory_before = memory([server.process.pid, *server.workers()])
    chaos = Chaos(server, files, live, rng, [p.pid for p in processes if p.pid])
    calm_from = started + 0.8 * args.duration
    try:
        while time.time() < calm_from and server.process.poll() is None:
            chaos.step()
            chaos.tick()
            end = time.time() + rng.uniform(0.2, 1.2)
            while time.time() < end:
                chaos.tick()
                time.sleep(0.05)
        # The calm: good files back, stopped workers resumed, a reload picks them up.
        chaos.close()
        chaos._rename_over(live["db"], files["a"].read_bytes())
        chaos._rename_over(live["policies"], files["policies"].read_bytes())
        chaos.record("calm: good snapshot A and policies renamed back")
        for process in processes:
            process.join(max(1.0, until - time.time() + 30))
        memory_after = memory([server.process.pid, *server.workers()])
        final_good = _final_answers_good(server.target, files)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
        server_exit = server.stop()
    calls = []
    for path in results:
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(path.read_text())
            calls += [(record["pid"], tuple(call)) for call in record["calls"]]
    failed = [(pid, call) for pid, call in calls if call[3] != "OK"]
    events = Counter(record.get("event") for record in server.events())
    reloads = Counter(record.get("result") for record in server.events("reload"))
    result = {
        "duration_s": args.duration,
        "seed": args.seed,
        "clients": args.clients,
        "workers": args.workers,
        "calls": len(calls),
        "ok": len(calls) - len(failed),
        "failed": len(failed),
        "failed_by_code": dict(Counter(call[3] for _, call in failed)),
        "failed_by_rpc": dict(Counter(call[2] for _, call in failed)),
        "failed_by_cause": dict(
            Counter(attribute(call, pid, chaos.faults) for pid, call in failed)
        ),
        "faults_by_kind": dict(Counter(fault["kind"] for fault in chaos.faults)),
        "worker_exits": events["worker_exit"],
        "worker_starts": events["worker_start"],
        "worker_unresponsive": events["worker_unresponsive"],
        "reloads_ok": reloads["success"],
        "reloads_failed": reloads["failure"],
        "memory_before": memory_before,
        "memory_after": memory_after,
        "final_answers_good": final_good,
        "server_exit": server_exit,
        "faults": chaos.faults,
    }
    (out / "chaos.json").write_text(json.dumps(result, indent=1, default=str))
    table = report(result)
    (out / "chaos.md").write_text(table + "\n")
    print(table)
    print(f"\n(JSON: {out / 'chaos.json'}; server log: {server.log})")


def _final_answers_good(target: str, files: dict[str, Path]) -> bool:
    """After the calm: does every worker answer as good version A (bounded wait)?"""
    from lookupd.client.sync import Client
    from lookupd.datafiles.open import open_database

    db = open_database(files["a"])
    want = [db.lookup_one(address) for address in PROBES]
    deadline = time.time() + 20
    while time.time() < deadline:
        with contextlib.suppress(Exception), Client(target, channels=4, timeout_s=2.0) as client:
            if all(client.lookup(PROBES).countries_list() == want for _ in range(8)):
                return True
        time.sleep(0.5)
    return False


if __name__ == "__main__":
    main()
