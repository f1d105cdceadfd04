"""Files that would block a reader, and reloads that must never wait for one another.

A FIFO renamed over the policy file once hung the watcher for ever while it held the reload
lock: SIGHUP, admin reloads and later good files were ignored. Real processes, FIFOs and
sockets; every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from served import TIMEOUT_S, Served, start_serve
from versions import write_data, write_policies

from lookupd.client import Client
from lookupd.policies import PolicyError, load_policies
from lookupd.server.answers import Answerer
from lookupd.server.reload import IN_PROGRESS, Loader, ReloadRequests, file_state
from lookupd.v1 import lookup_pb2 as pb
from lookupd.v1 import lookup_pb2_grpc

_TOKEN = "a-token-of-twenty-characters"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    data, policies = tmp_path / "data.lookupd", tmp_path / "policies.yaml"
    write_data(data, 0)
    write_policies(policies, 0)
    return data, policies


def _fifo_over(path: Path) -> None:
    """Rename a FIFO over ``path`` (as ``mkfifo f && mv f path`` does)."""
    fifo = path.with_name(f".{path.name}.fifo")
    os.mkfifo(fifo)
    fifo.replace(path)


def _admin_reload(target: str) -> grpc.StatusCode:
    """Call the admin Reload; return its status code (bounded by a deadline)."""
    with grpc.insecure_channel(target) as channel:
        stub = lookup_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            stub.Reload(
                pb.ReloadRequest(),
                timeout=TIMEOUT_S,
                metadata=(("authorization", f"Bearer {_TOKEN}"),),
            )
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return code
    return grpc.StatusCode.OK


def _reloads(served: Served, trigger: str, result: str) -> list[dict[str, object]]:
    return [
        event
        for event in served.events("reload")
        if event["trigger"] == trigger and event["result"] == result
    ]


def _serve_watching(tmp_path: Path, files: tuple[Path, Path]) -> Served:
    token = tmp_path / "token"
    token.write_text(_TOKEN)
    token.chmod(0o600)
    served = start_serve(
        tmp_path,
        "--workers",
        "1",
        "--db",
        str(files[0]),
        "--policies",
        str(files[1]),
        "--watch-interval",
        "0.05",
        "--admin-token-file",
        str(token),
        "--log-format",
        "json",
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        "0",
    )
    with Client(served.target, timeout_s=TIMEOUT_S) as client:
        client.wait_until_serving(TIMEOUT_S)
    return served


def _failed_reloads(served: Served) -> float:
    """``lookupd_reloads_total{result="failure"}``: every failure, where the log holds
    repeats of the same error line back."""
    (start,) = served.events("start")
    with urllib.request.urlopen(f"http://{start['metrics']}/metrics", timeout=TIMEOUT_S) as r:
        text = r.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "lookupd_reloads_total" and sample.labels["result"] == "failure":
                return float(sample.value)
    return 0.0


def _wait_for_failed_reloads(served: Served, count: float) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while _failed_reloads(served) < count:
        assert time.monotonic() < deadline, served.log_text()
        time.sleep(0.02)


def test_a_fifo_over_the_policy_file_blocks_nothing(
    tmp_path: Path, files: tuple[Path, Path]
) -> None:
    served = _serve_watching(tmp_path, files)
    try:
        _fifo_over(files[1])
        (failure,) = served.wait_for_event("reload")
        assert failure["result"] == "failure"
        assert "FIFO" in str(failure["error"])
        # SIGHUP and the admin RPC are answered (the FIFO is still there: both fail)...
        served.process.send_signal(signal.SIGHUP)
        _wait_for_failed_reloads(served, 2)
        assert _admin_reload(served.target) == grpc.StatusCode.FAILED_PRECONDITION
        with Client(served.target, timeout_s=TIMEOUT_S) as client:
            assert client.lookup(["1.0.0.1"]).countries.tolist() == ["AU"]
        # ...the watcher tried it once, not once per poll...
        time.sleep(0.3)  # several polls: the same FIFO is not read again
        assert _failed_reloads(served) == 3
        assert len(_reloads(served, "watch", "failure")) == 1
        # ...and a good file is picked up.
        version = write_policies(files[1], 1)
        deadline = time.monotonic() + TIMEOUT_S
        while not _reloads(served, "watch", "success"):
            assert time.monotonic() < deadline, served.log_text()
            time.sleep(0.02)
        (success,) = _reloads(served, "watch", "success")
        assert success["policy_version"] == version
        assert served.stop() == 0
    finally:
        served.kill()


def test_load_policies_refuses_a_fifo_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "policies.yaml"
    os.mkfifo(fifo)
    with pytest.raises(PolicyError, match=r"policies\.yaml: is a FIFO, not a regular file"):
        load_policies(fifo)


# ---------------------------------------------------------------------------------------
# A reload never waits for another


class _Published:
    def __init__(self) -> None:
        self.answerers: list[Answerer] = []

    def __call__(self, answerer: Answerer) -> None:
        self.answerers.append(answerer)


class _SlowPublish(_Published):
    """Publishes after ``release`` is set: a reload in progress, for as long as a test
    wants (publish runs after the files are read, in the reloading thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, answerer: Answerer) -> None:
        if self.answerers:  # the first load passes
            self.entered.set()
            self.release.wait(TIMEOUT_S)
        super().__call__(answerer)


def test_reload_now_does_not_wait_for_a_reload_in_progress(files: tuple[Path, Path]) -> None:
    published = _Published()
    loader = Loader(*files, publish=published)
    loader.load()
    # A reload in progress (stuck reading a file, say): the load lock taken as a reload
    # takes it, and released as one ends.
    assert loader._begin("watch")
    try:
        outcomes = [loader.reload_now("admin") for _ in range(3)]
        assert loader._begin_quietly() is False  # and the watcher skips its poll
    finally:
        loader._end()
    assert all(outcome.busy and not outcome.ok for outcome in outcomes)
    assert outcomes[0].error == IN_PROGRESS
    # The three asked while it ran make one reload, after it.
    deadline = time.monotonic() + TIMEOUT_S
    while len(published.answerers) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.2)
    assert len(published.answerers) == 2


def test_requests_during_a_reload_make_one_more(files: tuple[Path, Path]) -> None:
    published = _SlowPublish()
    loader = Loader(*files, publish=published)
    loader.load()
    done = threading.Semaphore(0)

    def reload() -> None:
        loader.reload_now("signal")
        done.release()

    requests = ReloadRequests(reload)
    try:
        requests.request()
        assert published.entered.wait(TIMEOUT_S)  # the first reload is in progress
        for _ in range(200):  # a burst of SIGHUPs
            requests.request()
        published.release.set()
        assert done.acquire(timeout=TIMEOUT_S)
        assert done.acquire(timeout=TIMEOUT_S)  # the one the burst asked for
        assert not done.acquire(timeout=0.3)  # and no more
    finally:
        published.release.set()
        requests.close()
    assert len(published.answerers) == 3  # the load, the first reload, one for the burst


# ---------------------------------------------------------------------------------------
# ctime: a file changed only in its metadata is read again


def test_a_file_changed_only_in_its_ctime_is_read_again(files: tuple[Path, Path]) -> None:
    published = _Published()
    data, policies = files
    good = policies.read_bytes()
    loader = Loader(data, policies, publish=published)
    loader.load()
    # Broken, at the same size; then the good bytes again in place, the mtime put back:
    # only the ctime tells the two apart (as after a chmod that makes a file readable).
    before = policies.stat()
    broken = b"x" * (len(good) - 1) + b":"
    assert len(broken) == len(good)
    policies.write_bytes(broken)
    os.utime(policies, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    assert loader.poll() is None  # changed: wait one poll for it to hold still
    failed = loader.poll()
    assert failed is not None
    assert not failed.ok
    broken_state = file_state(policies)
    time.sleep(0.01)  # a later ctime
    policies.write_bytes(good)
    os.utime(policies, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    fixed = file_state(policies)
    assert fixed is not None
    assert broken_state is not None
    assert (fixed.inode, fixed.size, fixed.mtime_ns) == (
        broken_state.inode,
        broken_state.size,
        broken_state.mtime_ns,
    )
    assert loader.poll() is None
    outcome = loader.poll()
    assert outcome is not None
    assert outcome.ok


def test_chmod_changes_the_file_state(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    before = file_state(path)
    time.sleep(0.01)
    path.chmod(0o600)
    assert file_state(path) != before


# ---------------------------------------------------------------------------------------
# The token file's permission warning: once


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_token_file_warning_is_logged_once(tmp_path: Path, workers: str) -> None:
    token = tmp_path / "token"
    token.write_text(_TOKEN)
    token.chmod(0o644)
    served = start_serve(tmp_path, "--workers", workers, "--admin-token-file", str(token))
    try:
        with Client(served.target, timeout_s=TIMEOUT_S) as client:
            client.wait_until_serving(TIMEOUT_S)
        assert served.stop() == 0
    finally:
        served.kill()
    assert served.log_text().count("can be read by other users") == 1
