"""`lookupd serve --workers 2` as real processes: reloads under load, a killed worker,
SIGTERM under load, metrics across workers, admin reloads reaching every worker.

Bounded: every wait has a deadline, every load loop runs for a fixed short time or a fixed
number of rounds, and everything talks to 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from served import TIMEOUT_S, Served, child_env, start_serve
from versions import (
    CHANGING_ADDRESS,
    STABLE_ADDRESS,
    country_of_version,
    replace_atomically,
    write_data,
    write_policies,
)

from lookupd.client import Client, ServerError
from lookupd.errors import LookupdError
from lookupd.server import cpus, workers
from lookupd.server.app import LookupServer, ServerConfig, serve
from lookupd.server.reload import preload
from lookupd.v1 import lookup_pb2 as pb
from lookupd.v1 import lookup_pb2_grpc

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="workers need fork()")

_REPLACEMENTS = 20
_CLIENT_THREADS = 2


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    data, policies = tmp_path / "data.lookupd", tmp_path / "policies.yaml"
    write_data(data, 0)
    write_policies(policies, 0)
    return data, policies


def _serve(tmp_path: Path, files: tuple[Path, Path], *args: str) -> Served:
    served = start_serve(
        tmp_path,
        "--workers",
        "2",
        "--db",
        str(files[0]),
        "--policies",
        str(files[1]),
        "--log-format",
        "json",
        *args,
    )
    with Client(served.target, timeout_s=TIMEOUT_S) as client:
        client.wait_until_serving(TIMEOUT_S)
    return served


@pytest.fixture
def cleanup() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for served in started:
        served.kill()


def _versions_by_process(target: str, want: int = 2) -> dict[int, tuple[str, str]]:
    """Ask GetInfo over fresh connections (the kernel spreads them over the workers) until
    ``want`` processes answered; return their data and policy versions by process id."""
    seen: dict[int, tuple[str, str]] = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(seen) < want and time.monotonic() < deadline:
        with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
            stub: Any = lookup_pb2_grpc.LookupServiceStub(ch)  # type: ignore[no-untyped-call]
            info = stub.GetInfo(pb.GetInfoRequest(), timeout=TIMEOUT_S)
            seen[info.process_id] = (info.data_version.id, info.policy_version)
    assert len(seen) >= want, f"only processes {sorted(seen)} answered"
    return seen


def _wait_until_every_worker_serves(target: str, versions: tuple[str, str]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        seen = _versions_by_process(target)
        if all(v == versions for v in seen.values()):
            return
        assert time.monotonic() < deadline, f"workers serve {seen}, not {versions}"
        time.sleep(0.05)


class _Load:
    """Client threads calling CheckRegion and Lookup in a loop until stopped; every answer
    and every failure is kept."""

    def __init__(self, target: str, threads: int = _CLIENT_THREADS, channels: int = 2) -> None:
        self.answers: list[tuple[str, str, str, int]] = []
        self.failures: list[BaseException] = []
        self.calls = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(target, channels)) for _ in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, target: str, channels: int) -> None:
        try:
            with Client(target, channels=channels, timeout_s=TIMEOUT_S) as client:
                while not self._stop.is_set():
                    checks = client.check("deny-changing", [CHANGING_ADDRESS, STABLE_ADDRESS])
                    self.answers.append(
                        (
                            checks.data_version,
                            checks.policy_version,
                            str(checks.countries[0]),
                            int(checks.verdicts[0]),
                        )
                    )
                    answers = client.lookup([STABLE_ADDRESS, CHANGING_ADDRESS])
                    assert answers.countries[0] == "AU"
                    self.calls += 2
        except BaseException as exc:  # reported by the test
            self.failures.append(exc)

    def wait_for_calls(self, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while self.calls < count and not self.failures and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(TIMEOUT_S)
        assert not any(thread.is_alive() for thread in self._threads)


# ---------------------------------------------------------------------------------------


def test_replacing_data_and_policies_under_load_fails_no_call(
    tmp_path: Path, files: tuple[Path, Path], cleanup: list[Served]
) -> None:
    served = _serve(tmp_path, files, "--watch-interval", "0.02")
    cleanup.append(served)
    data_versions = [write_data(files[0], 0)]
    policy_versions = [write_policies(files[1], 0)]
    load = _Load(served.target)
    try:
        load.wait_for_calls(20)
        for n in range(1, _REPLACEMENTS + 1):
            data_versions.append(write_data(files[0], n))
            policy_versions.append(write_policies(files[1], n))
            time.sleep(0.08)
        _wait_until_every_worker_serves(served.target, (data_versions[-1], policy_versions[-1]))
        load.wait_for_calls(load.calls + 20)
    finally:
        load.stop()
    assert load.failures == []
    assert len(set(data_versions)) == _REPLACEMENTS + 1
    for data_version, policy_version, country, verdict in load.answers:
        # Each answer came from versions that were written, and from one consistent pair:
        # the country is the one its data version has, the verdict the one its policy
        # version gives that country.
        n = data_versions.index(data_version)
        m = policy_versions.index(policy_version)
        assert country == country_of_version(n)
        denied = country_of_version(m) == country
        assert verdict == (pb.VERDICT_DENY if denied else pb.VERDICT_ALLOW)
    answered_by = {answer[0] for answer in load.answers}
    assert len(answered_by) > 2, "the load did not overlap the replacements"
    assert load.answers[-1][:2] == (data_versions[-1], policy_versions[-1])
    reloads = served.events("reload")
    assert reloads
    assert all(event["result"] == "success" for event in reloads)
    assert served.stop() == 0


def test_a_corrupt_file_keeps_the_old_version_serving(
    tmp_path: Path, files: tuple[Path, Path], cleanup: list[Served]
) -> None:
    served = _serve(tmp_path, files, "--watch-interval", "0.02", "--metrics-port", "0")
    cleanup.append(served)
    versions = _versions_by_process(served.target)
    (good,) = set(versions.values())
    load = _Load(served.target)
    try:
        load.wait_for_calls(20)
        # Written in place, as a careless writer would: the snapshot's checksum refuses it.
        with files[0].open("r+b") as file:
            file.seek(5000)
            file.write(b"\xff" * 64)
        failures = served.wait_for_event("reload", 2)
        load.wait_for_calls(load.calls + 20)
    finally:
        load.stop()
    assert load.failures == []
    assert {answer[:2] for answer in load.answers} == {good}
    assert {event["result"] for event in failures} == {"failure"}
    assert {event["worker"] for event in failures} == {0, 1}
    assert all("checksum" in event["error"] or "corrupt" in event["error"] for event in failures)
    with Client(served.target, timeout_s=TIMEOUT_S) as client:
        client.wait_until_serving(TIMEOUT_S)  # health stays SERVING
        assert client.lookup([CHANGING_ADDRESS]).countries[0] == country_of_version(0)
    assert set(_versions_by_process(served.target).values()) == {good}
    metrics = _scrape(served)
    assert metrics[("lookupd_reloads_total", (("result", "failure"),))] == 2
    # A good file later is loaded as usual.
    fixed = (write_data(files[0], 7), good[1])
    _wait_until_every_worker_serves(served.target, fixed)
    assert served.stop() == 0


def test_a_killed_worker_is_replaced_and_no_call_fails(
    tmp_path: Path, files: tuple[Path, Path], cleanup: list[Served]
) -> None:
    served = _serve(tmp_path, files, "--watch-interval", "0", "--metrics-port", "0")
    cleanup.append(served)
    started = served.wait_for_event("worker_start", 2)
    load = _Load(served.target, channels=4)
    try:
        load.wait_for_calls(20)
        victim = started[0]["pid"]
        os.kill(victim, signal.SIGKILL)
        restarted = served.wait_for_event("worker_start", 3)[-1]
        assert restarted["worker"] == started[0]["worker"]
        load.wait_for_calls(load.calls + 50)
        pids = set(_versions_by_process(served.target))
    finally:
        load.stop()
    assert load.failures == []
    assert victim not in pids
    assert restarted["pid"] in pids
    (exit_event,) = served.events("worker_exit")
    assert exit_event["pid"] == victim
    assert "SIGKILL" in exit_event["exit"]
    metrics = _scrape(served)
    assert metrics[("lookupd_worker_restarts_total", ())] == 1
    assert served.stop() == 0


def test_sigterm_under_load_lets_calls_in_flight_finish(
    tmp_path: Path, files: tuple[Path, Path], cleanup: list[Served]
) -> None:
    served = _serve(tmp_path, files, "--watch-interval", "0", "--drain", "0.5")
    cleanup.append(served)
    batch = [CHANGING_ADDRESS, STABLE_ADDRESS, "not an address"] * 30_000
    signalled = threading.Event()
    before: list[str] = []  # outcome of each call started before the signal
    errors_after: list[grpc.StatusCode] = []

    def run() -> None:
        with Client(served.target, channels=2, timeout_s=TIMEOUT_S) as client:
            while True:
                was_signalled = signalled.is_set()
                try:
                    answers = client.lookup(batch, text=True)
                    outcome = "ok" if answers.countries[0] == country_of_version(0) else "wrong"
                except ServerError as exc:
                    if not was_signalled:
                        before.append(f"failed: {exc}")
                    errors_after.append(exc.code)
                    return
                if not was_signalled:
                    before.append(outcome)
                if was_signalled and served.process.poll() is not None:
                    return

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    while len(before) < 6:
        time.sleep(0.01)
        assert served.process.poll() is None
    signalled.set()
    served.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(TIMEOUT_S)
    assert served.process.wait(TIMEOUT_S) == 0
    assert set(before) == {"ok"}, before
    # Calls sent after the signal (and after the drain) meet a stopping server: refused
    # (UNAVAILABLE) or, if queued for a thread when the stop came, cancelled.
    assert set(errors_after) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    assert served.events("supervisor_stop")[0]["code"] == 0


def test_metrics_count_the_calls_of_every_worker(
    tmp_path: Path, files: tuple[Path, Path], cleanup: list[Served]
) -> None:
    served = _serve(tmp_path, files, "--watch-interval", "0", "--metrics-port", "0")
    cleanup.append(served)
    calls = 40
    with Client(served.target, channels=8, timeout_s=TIMEOUT_S) as client:
        for _ in range(calls):
            client.lookup([STABLE_ADDRESS, "10.0.0.1", "bad", "203.0.113.9"], text=True)
    assert len(_versions_by_process(served.target)) == 2
    metrics = _scrape(served)
    requests = (("code", "OK"), ("rpc", "Lookup"))
    assert metrics[("lookupd_requests_total", requests)] == calls
    assert metrics[("lookupd_addresses_total", (("rpc", "Lookup"), ("status", "ok")))] == calls
    reserved = (("rpc", "Lookup"), ("status", "reserved"))
    assert metrics[("lookupd_addresses_total", reserved)] == 2 * calls
    invalid = (("rpc", "Lookup"), ("status", "invalid_address"))
    assert metrics[("lookupd_addresses_total", invalid)] == calls
    assert metrics[("lookupd_request_duration_seconds_count", (("rpc", "Lookup"),))] == calls
    # Both workers serve one data version: one info series, 1 (the most of live workers).
    ((version, policy_version),) = set(_versions_by_process(served.target).values())
    info = {labels: v for (name, labels), v in metrics.items() if name == "lookupd_data_info"}
    assert info == {(("policy_version", policy_version), ("version", version)): 1.0}
    assert served.stop() == 0


def test_admin_reload_reaches_every_worker(
    tmp_path: Path, files: tuple[Path, Path], cleanup: list[Served]
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-admin-token-for-tests\n")
    token.chmod(0o600)
    served = _serve(tmp_path, files, "--watch-interval", "0", "--admin-token-file", str(token))
    cleanup.append(served)
    (before,) = set(_versions_by_process(served.target).values())
    new_data = write_data(files[0], 3)
    new_policies = write_policies(files[1], 3)
    with grpc.insecure_channel(served.target) as channel:
        admin: Any = lookup_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as refused:
            admin.Reload(pb.ReloadRequest(), timeout=TIMEOUT_S)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert set(_versions_by_process(served.target).values()) == {before}
        metadata = (("authorization", "Bearer s3cret-admin-token-for-tests"),)
        response = admin.Reload(pb.ReloadRequest(), timeout=TIMEOUT_S, metadata=metadata)
    assert response.data_version.id == new_data
    assert response.policy_version == new_policies
    assert response.data_changed
    assert response.policies_changed
    # The other worker was told by the supervisor (no file watching in this test).
    _wait_until_every_worker_serves(served.target, (new_data, new_policies))
    assert served.stop() == 0


def _scrape(served: Served) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The metrics endpoint's samples, by name and sorted labels (``pid`` dropped)."""
    (start,) = served.events("supervisor_start")
    url = f"http://127.0.0.1:{start['metrics_port']}/metrics"
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # local
        text = response.read().decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pid"))
            key = (sample.name, labels)
            samples[key] = samples.get(key, 0.0) + sample.value
    return samples


def test_bad_policies_stop_the_start_before_any_worker(tmp_path: Path) -> None:
    policies = tmp_path / "policies.yaml"
    policies.write_text("policies:\n  p:\n    description: d\n    allow_countries: [MI]\n")
    command = [sys.executable, "-m", "lookupd", "serve", "--workers", "2"]
    done = subprocess.run(
        [*command, "--host", "127.0.0.1", "--port", "0", "--policies", str(policies)],
        capture_output=True,
        env=child_env(),
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 2
    assert b"MI" in done.stderr
    assert b"worker_start" not in done.stderr


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_cpu_quota(tmp_path: Path, files: dict[str, str], expected: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpus._cgroup_cpu_quota(tmp_path) == expected


def test_available_cpus_is_within_the_affinity_mask() -> None:
    assert 1 <= cpus.available_cpus() <= len(os.sched_getaffinity(0))


def test_a_reserved_port_can_be_shared_but_not_taken() -> None:
    first, port = workers.reserve_port("127.0.0.1", 0)
    try:
        second, same = workers.reserve_port("127.0.0.1", port)
        second.close()
        assert same == port
        # A plain socket (no SO_REUSEPORT), as a single-process server binds, is refused.
        plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with plain, pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
    finally:
        first.close()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with pytest.raises(LookupdError, match=r"cannot listen on 127\.0\.0\.1"):
            workers.reserve_port("127.0.0.1", listener.getsockname()[1])


def _kill_a_worker_and_wait_for_its_replacement(served: Served) -> tuple[int, int]:
    """SIGKILL worker 0; return (its pid, its replacement's pid) once the new one serves."""
    started = served.wait_for_event("worker_start", 2)
    victim = next(event["pid"] for event in started if event["worker"] == 0)
    os.kill(victim, signal.SIGKILL)
    replacement = served.wait_for_event("worker_start", 3)[-1]["pid"]
    deadline = time.monotonic() + TIMEOUT_S
    while replacement not in _versions_by_process(served.target):
        assert time.monotonic() < deadline, "the replacement never answered"
    return victim, replacement


def test_a_worker_answers_its_first_call_from_the_preloaded_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The kernel hands a (re)started worker connections as soon as it listens, so its first
    # call must find the data served: asked at once after the start, in its own process.
    codes: list[grpc.StatusCode] = []
    start = LookupServer.start

    def start_then_ask(server: LookupServer) -> LookupServer:
        start(server)
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub: Any = lookup_pb2_grpc.LookupServiceStub(channel)  # type: ignore[no-untyped-call]
            try:
                stub.GetInfo(pb.GetInfoRequest(), timeout=TIMEOUT_S)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
        return server

    monkeypatch.setattr(LookupServer, "start", start_then_ask)
    stop = threading.Event()
    stop.set()  # serve() returns once it has served
    config = ServerConfig(host="127.0.0.1", port=0, watch_interval_s=0)
    serve(config, preloaded=preload(None, None), stop_event=stop)
    assert codes == [grpc.StatusCode.OK]


def test_a_restarted_worker_catches_up_with_the_files(
    tmp_path: Path, files: tuple[Path, Path], cleanup: list[Served]
) -> None:
    # No watching: only the restarted worker reads the files again.
    served = _serve(tmp_path, files, "--watch-interval", "0")
    cleanup.append(served)
    (old,) = set(_versions_by_process(served.target).values())
    new = (write_data(files[0], 4), old[1])
    victim, replacement = _kill_a_worker_and_wait_for_its_replacement(served)
    # It serves the preloaded versions from its start, then catches up: wait for that.
    deadline = time.monotonic() + TIMEOUT_S
    while (versions := _versions_by_process(served.target)).get(replacement) != new:
        assert time.monotonic() < deadline, f"the replacement still serves {versions}"
        time.sleep(0.05)
    assert victim not in versions
    assert versions[replacement] == new
    assert set(versions.values()) == {old, new}  # the other worker waits for a SIGHUP
    served.process.send_signal(signal.SIGHUP)
    _wait_until_every_worker_serves(served.target, new)
    assert served.stop() == 0


def test_a_worker_restarted_while_a_file_is_broken_serves_the_start_versions(
    tmp_path: Path, files: tuple[Path, Path], cleanup: list[Served]
) -> None:
    served = _serve(tmp_path, files, "--watch-interval", "0")
    cleanup.append(served)
    (old,) = set(_versions_by_process(served.target).values())
    replace_atomically(files[1], b"policies: [broken\n")
    _, replacement = _kill_a_worker_and_wait_for_its_replacement(served)
    assert _versions_by_process(served.target)[replacement] == old
    failure = served.wait_for_event("reload")[0]
    assert failure["result"] == "failure"
    assert failure["trigger"] == "refresh"
    assert served.process.poll() is None  # the server did not stop
    assert served.stop() == 0


def test_a_dead_supervisors_run_directory_is_removed(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT_S,
    )
    stale = tmp_path / f"lookupd-run-{int(dead.stdout)}-abc123"
    (stale / "metrics").mkdir(parents=True)
    alive = tmp_path / f"lookupd-run-{os.getpid()}-def456"
    alive.mkdir()
    other = tmp_path / "lookupd-run-notapid-1"
    other.mkdir()
    served = start_serve(
        tmp_path,
        "--workers",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--port-file",
        str(tmp_path / "port"),
        env=child_env(TMPDIR=str(tmp_path)),
    )
    try:
        assert not stale.exists()
        assert alive.exists()
        assert other.exists()
        (own,) = set(tmp_path.glob("lookupd-run-*")) - {alive, other}
        assert served.stop() == 0
        assert not own.exists()  # a clean stop removes its own
    finally:
        served.kill()
