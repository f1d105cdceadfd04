"""`lookupd serve` as a real process, started the way the README starts it, and its settings."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from served import TIMEOUT_S, Served, child_env, start_serve

from lookupd.cli import main
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
