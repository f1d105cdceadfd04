"""`lookupd serve` as a real process, started the way the README starts it, and its settings."""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from certs import write_certs
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from served import TIMEOUT_S, Served, child_env, start_serve
from versions import write_data, write_policies

from lookupd.cli import main
from lookupd.cli.settings import SERVE_SETTINGS
from lookupd.client import Client
from lookupd.v1 import lookup_pb2 as pb
from lookupd.v1 import lookup_pb2_grpc

_TIMEOUT_S = TIMEOUT_S
_STREAMS = 4
_MESSAGES_AFTER_SIGTERM = 25


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = start_serve(tmp_path, "--grace", "20")
    yield server
    server.kill()


def test_serve_answers_and_logs_what_it_loaded(served: Served) -> None:
    with Client(served.target, timeout_s=_TIMEOUT_S) as client:
        client.wait_until_serving(_TIMEOUT_S)
        answers = client.lookup(["1.1.1.1", "2001:4860:4860::8888", "10.0.0.1", "bad"])
        assert answers.countries.tolist() == ["AU", "US", "", ""]
        info = client.info()
        assert len(info.data_version.id) == 64
        assert info.policies
        checks = client.check(info.policies[0].name, ["1.1.1.1"])
        assert checks.policy_version == info.policy_version
    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(_TIMEOUT_S) == 0
    log = served.log_text()
    assert "event=load " in log
    assert f"search_core={info.search_core}" in log
    assert f"data_version={info.data_version.id}" in log
    assert f"policy_version={info.policy_version}" in log
    assert f"listening on {served.target}" in log
    assert "event=stopped" in log


def test_sigterm_lets_calls_in_flight_finish(served: Served) -> None:
    channel = grpc.insecure_channel(served.target)
    stub: Any = lookup_pb2_grpc.LookupServiceStub(channel)  # type: ignore[no-untyped-call]
    health: Any = health_pb2_grpc.HealthStub(channel)
    watch = health.Watch(
        health_pb2.HealthCheckRequest(service="lookupd.v1.LookupService"),
        timeout=_TIMEOUT_S,
        wait_for_ready=True,
    )
    while next(watch).status != health_pb2.HealthCheckResponse.SERVING:
        pass
    request = pb.PackedLookupRequest(ipv4=np.arange(1000, dtype=">u4").tobytes())
    go = threading.Event()
    started = threading.Semaphore(0)
    answered = [0] * _STREAMS
    failures: list[BaseException] = []

    def requests() -> Iterator[pb.PackedLookupRequest]:
        yield request
        go.wait(_TIMEOUT_S)
        for _ in range(_MESSAGES_AFTER_SIGTERM):
            yield request

    def run(index: int) -> None:
        try:
            for response in stub.StreamLookup(requests(), timeout=_TIMEOUT_S):
                assert len(response.ipv4_status) == 1000
                answered[index] += 1
                if answered[index] == 1:
                    started.release()
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)
            started.release()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(_STREAMS)]
    for thread in threads:
        thread.start()
    try:
        for _ in threads:
            assert started.acquire(timeout=_TIMEOUT_S)
        assert failures == []
        served.process.send_signal(signal.SIGTERM)
        # The stop has begun once health says NOT_SERVING; the streams are still open.
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        go.set()
        for thread in threads:
            thread.join(_TIMEOUT_S)
        assert failures == []
        assert answered == [1 + _MESSAGES_AFTER_SIGTERM] * _STREAMS
        assert served.process.wait(_TIMEOUT_S) == 0
        # The server ended the Watch itself, rather than holding its stop for the grace.
        with pytest.raises(StopIteration):
            next(watch)
    finally:
        go.set()
        channel.close()
    assert "received SIGTERM" in served.log_text()


def _tgkill(pid: int, tid: int, signum: int) -> None:
    """Send ``signum`` to one thread of another process (Linux's tgkill)."""
    number = _TGKILL_SYSCALLS[platform.machine()]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill({pid}, {tid})")


_TGKILL_SYSCALLS = {"x86_64": 234, "aarch64": 131}


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.machine() not in _TGKILL_SYSCALLS,
    reason="tgkill is Linux's; its syscall number is per architecture",
)
def test_sigterm_delivered_to_another_thread_stops_the_server(tmp_path: Path) -> None:
    # The kernel hands a process's signal to any thread that does not block it; Python runs
    # the handler in the main thread, which must not sleep through it.
    served = start_serve(tmp_path, "--workers", "1")
    with Client(served.target, timeout_s=_TIMEOUT_S) as client:
        client.wait_until_serving(_TIMEOUT_S)
    pid = served.process.pid
    threads = sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid)
    assert threads, "the server runs gRPC threads"
    try:
        _tgkill(pid, threads[-1], signal.SIGTERM)
        assert served.process.wait(_TIMEOUT_S) == 0
    finally:
        served.kill()
    assert "received SIGTERM" in served.log_text()


def test_settings_come_from_the_environment_and_flags_win(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    env = child_env(
        LOOKUPD_HOST="127.0.0.1",
        LOOKUPD_PORT="0",
        LOOKUPD_PORT_FILE=str(port_file),
        LOOKUPD_MAX_BATCH="10",
        LOOKUPD_THREADS="2",
        LOOKUPD_GRACE_S="1.5",
        LOOKUPD_MAX_MESSAGE_BYTES="100000",
    )
    server = start_serve(tmp_path, "--max-batch", "20", env=env)
    try:
        with Client(server.target, timeout_s=_TIMEOUT_S) as client:
            client.wait_until_serving(_TIMEOUT_S)
            info = client.info()
            assert info.max_batch == 20
            assert info.max_message_bytes == 100_000
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(_TIMEOUT_S) == 0
        assert "1.5 s grace" in server.log_text()
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(_TIMEOUT_S)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LOOKUPD_PORT", "http", "LOOKUPD_PORT: not a valid port: 'http'"),
        ("LOOKUPD_PORT", "70000", "not a valid port"),
        ("LOOKUPD_MAX_BATCH", "0", "LOOKUPD_MAX_BATCH: not a valid value: '0'"),
        ("LOOKUPD_GRACE_S", "-1", "LOOKUPD_GRACE_S: not a valid value"),
    ],
)
def test_bad_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["serve"]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_data_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith("LOOKUPD_"):
            monkeypatch.delenv(name)
    status = main(["serve", "--host", "127.0.0.1", "--port", "0", "--db", str(tmp_path / "no")])
    assert status == 2
    assert "no such file" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# Operations: one process with metrics and JSON logs, TLS, the reload command


def test_one_worker_serves_metrics_and_json_logs(tmp_path: Path) -> None:
    server = start_serve(tmp_path, "--workers", "1", "--metrics-port", "0", "--log-format", "json")
    try:
        with Client(server.target, timeout_s=_TIMEOUT_S) as client:
            client.wait_until_serving(_TIMEOUT_S)
            client.lookup(["1.1.1.1", "bad"], text=True)
        (start,) = server.events("start")
        assert start["address"] == server.target
        assert start["tls"] == "off"
        assert start["admin"] == "off"
        url = f"http://{start['metrics'].replace('[::]', '127.0.0.1')}/metrics"
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            text = response.read().decode()
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        assert samples[("lookupd_requests_total", (("code", "OK"), ("rpc", "Lookup")))] == 1
        assert samples[("lookupd_addresses_total", (("rpc", "Lookup"), ("status", "ok")))] == 1
        assert server.stop() == 0
        (load,) = server.events("load")
        assert load["search_core"] in ("c", "python")
        # No line per request: start, load, serving, signal, stop, stopped and warnings.
        assert {e.get("event") for e in server.events()} <= {
            "start",
            "load",
            "metrics",
            "policy_warning",
            "serving",
            "signal",
            "stop",
            "stopped",
        }
    finally:
        server.kill()


def test_tls_serving_and_the_command_line_client(tmp_path: Path) -> None:
    certs = write_certs(tmp_path / "certs")
    server = start_serve(
        tmp_path,
        "--workers",
        "2",
        "--tls-cert",
        str(certs.server_cert),
        "--tls-key",
        str(certs.server_key),
        "--tls-client-ca",
        str(certs.ca),
    )
    try:
        tls = ["--tls-ca", str(certs.ca)]
        mtls = [*tls, "--tls-cert", str(certs.client_cert), "--tls-key", str(certs.client_key)]
        ask = [sys.executable, "-m", "lookupd", "lookup", "--server", server.target]
        deadline = time.monotonic() + _TIMEOUT_S
        while True:  # until the workers have loaded the data
            done = subprocess.run(
                [*ask, *mtls, "1.1.1.1"], capture_output=True, env=child_env(), check=False
            )
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert done.stdout == b"1.1.1.1\tAU\n", done.stderr
        # Without a client certificate the server refuses the connection.
        refused = subprocess.run(
            [*ask, *tls, "1.1.1.1"], capture_output=True, env=child_env(), check=False
        )
        assert refused.returncode == 2
        assert b"UNAVAILABLE" in refused.stderr
        for _ in range(3):  # and a client without TLS
            plain = subprocess.run([*ask, "1.1.1.1"], capture_output=True, env=child_env())
            assert plain.returncode == 2
        # gRPC's core logs each failed handshake at its INFO level: not in lookupd's log,
        # where any client could add a line at will.
        assert "Handshake failed" not in server.log_text()
        assert server.events() == []  # kv logs by default
        assert "tls=mtls" in server.log_text()
        assert server.stop() == 0
    finally:
        server.kill()


def test_the_reload_command(tmp_path: Path) -> None:
    data, policies, token = tmp_path / "data", tmp_path / "policies.yaml", tmp_path / "token"
    write_data(data, 0)
    write_policies(policies, 0)
    token.write_text("a-long-enough-admin-token\n")
    token.chmod(0o600)
    server = start_serve(
        tmp_path,
        "--workers",
        "1",
        "--db",
        str(data),
        "--policies",
        str(policies),
        "--watch-interval",
        "0",
        "--admin-token-file",
        str(token),
    )
    try:
        command = [sys.executable, "-m", "lookupd", "reload", "--server", server.target]
        with Client(server.target, timeout_s=_TIMEOUT_S) as client:
            client.wait_until_serving(_TIMEOUT_S)
            refused = subprocess.run(command, capture_output=True, env=child_env(), check=False)
            assert refused.returncode == 2
            assert b"UNAUTHENTICATED" in refused.stderr
            version = write_data(data, 1)
            done = subprocess.run(
                [*command, "--token-file", str(token)],
                capture_output=True,
                env=child_env(),
                check=False,
            )
            assert done.returncode == 0, done.stderr
            assert f"data version: {version}\n".encode() in done.stdout
            assert b"changed: data\n" in done.stdout
            assert client.info().data_version.id == version
        assert server.stop() == 0
    finally:
        server.kill()


def test_every_serve_setting_is_in_the_readme_table() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    rows = {
        line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| `--")
    }
    for setting in SERVE_SETTINGS:
        row = rows.get(f"`{setting.flag}`")
        assert row is not None, f"README has no row for {setting.flag}"
        assert f"`{setting.variable}`" in row, setting.flag
        assert setting.default in row, setting.flag


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "x.pem"], "--tls-cert and --tls-key go together"),
        (["--tls-client-ca", "ca.pem"], "--tls-client-ca (mTLS) needs --tls-cert"),
        (["--admin-mtls"], "--admin-mtls needs --tls-client-ca"),
        (["--log-format", "xml"], "--log-format: expected one of kv, json, not 'xml'"),
        (["--workers", "0"], "--workers: not a valid value: '0'"),
        (["--admin-token-file", "/nonexistent/token"], "admin token file /nonexistent/token"),
    ],
)
def test_bad_operations_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    for name in list(os.environ):
        if name.startswith("LOOKUPD_"):
            monkeypatch.delenv(name)
    assert main(["serve", "--host", "127.0.0.1", "--port", "0", *args]) == 2
    assert message in capsys.readouterr().err


def test_boolean_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOOKUPD_ADMIN_MTLS", "maybe")
    assert main(["serve"]) == 2
    assert "LOOKUPD_ADMIN_MTLS: expected one of 1, true, yes, on, 0, false, no, off" in (
        capsys.readouterr().err
    )
