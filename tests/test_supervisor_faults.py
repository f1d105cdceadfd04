"""What operators do to a `lookupd serve --workers 2`: SIGHUP bursts while a worker
restarts, SIGSTOP on a worker, a second server on the same port. Real processes on
127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from served import TIMEOUT_S, Served, child_env, start_serve

from lookupd.client import Client
from lookupd.errors import LookupdError
from lookupd.server.bind import claim_port

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="workers need fork()")


@pytest.fixture
def started() -> Iterator[list[Served]]:
    servers: list[Served] = []
    yield servers
    for served in servers:
        for event in served.events("worker_start"):  # a stopped worker: let it die
            try:
                os.kill(event["pid"], signal.SIGCONT)
            except ProcessLookupError:
                continue
        served.kill()


def _serve(tmp_path: Path, *args: str) -> Served:
    served = start_serve(tmp_path, "--workers", "2", "--log-format", "json", *args)
    with Client(served.target, timeout_s=TIMEOUT_S) as client:
        client.wait_until_serving(TIMEOUT_S)
    return served


def _answers_on_new_connections(target: str, connections: int = 10) -> None:
    for _ in range(connections):  # the kernel spreads new connections over the workers
        with Client(target, timeout_s=TIMEOUT_S) as client:
            assert client.lookup(["1.1.1.1"]).countries.tolist() == ["AU"]


def _worker_restarts(served: Served) -> float:
    (start,) = served.events("supervisor_start")
    url = f"http://127.0.0.1:{start['metrics_port']}/metrics"
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # local
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "lookupd_worker_restarts_total":
                return float(sample.value)
    return 0.0


def test_a_sighup_burst_while_a_worker_restarts_kills_no_worker(
    tmp_path: Path, started: list[Served]
) -> None:
    served = _serve(tmp_path, "--watch-interval", "0")
    started.append(served)
    first = served.wait_for_event("worker_start", 2)
    os.kill(first[0]["pid"], signal.SIGKILL)
    # 200 SIGHUPs 5 ms apart at the supervisor, while it restarts the worker.
    for _ in range(200):
        served.process.send_signal(signal.SIGHUP)
        time.sleep(0.005)
    served.wait_for_event("worker_start", 3)
    with Client(served.target, timeout_s=TIMEOUT_S) as client:
        client.wait_until_serving(TIMEOUT_S)
    _answers_on_new_connections(served.target)
    exits = served.events("worker_exit")
    assert [event["exit"] for event in exits] == ["signal SIGKILL"], exits
    assert len(served.events("worker_start")) == 3
    # Coalesced: a few reloads per worker, not one per SIGHUP.
    reloads = [event for event in served.events("reload") if event["trigger"] == "signal"]
    by_worker: dict[int, int] = {}
    for event in reloads:
        by_worker[event["pid"]] = by_worker.get(event["pid"], 0) + 1
    assert by_worker
    assert max(by_worker.values()) <= 10, by_worker
    assert served.stop() == 0


def test_a_stopped_worker_is_replaced(tmp_path: Path, started: list[Served]) -> None:
    served = _serve(
        tmp_path,
        "--watch-interval",
        "0",
        "--heartbeat-timeout",
        "1",
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        "0",
    )
    started.append(served)
    first = served.wait_for_event("worker_start", 2)
    victim = first[0]["pid"]
    os.kill(victim, signal.SIGSTOP)
    (unresponsive,) = served.wait_for_event("worker_unresponsive")
    assert unresponsive["pid"] == victim
    replacement = served.wait_for_event("worker_start", 3)[-1]
    assert replacement["worker"] == first[0]["worker"]
    (exit_event,) = served.events("worker_exit")
    assert exit_event["pid"] == victim
    assert "SIGKILL" in exit_event["exit"]
    deadline = time.monotonic() + TIMEOUT_S
    while True:  # the replacement serves once it has loaded
        try:
            _answers_on_new_connections(served.target)
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert _worker_restarts(served) == 1
    assert served.stop() == 0


def _second_server(port: int, workers: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lookupd", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", workers]
    return subprocess.run(
        command, capture_output=True, text=True, env=child_env(), timeout=TIMEOUT_S, check=False
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_server_on_the_same_port_is_refused(
    tmp_path: Path, started: list[Served], workers: str
) -> None:
    served = _serve(tmp_path)
    started.append(served)
    second = _second_server(served.port, workers)
    assert second.returncode == 2
    lines = (second.stdout + second.stderr).splitlines()
    assert len(lines) == 1, lines
    assert str(served.port) in lines[0]
    assert "in use" in lines[0]
    _answers_on_new_connections(served.target)
    assert served.stop() == 0


def test_two_lookupds_cannot_claim_the_same_port() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("abstract sockets are Linux's")
    first = claim_port("127.0.0.1", 1)
    assert first is not None
    try:
        with pytest.raises(LookupdError, match=r"127\.0\.0\.1:1: the port is in use"):
            claim_port("127.0.0.1", 1)
    finally:
        first.close()
    again = claim_port("127.0.0.1", 1)  # freed with its socket
    assert again is not None
    again.close()
