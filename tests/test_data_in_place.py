"""A served snapshot rewritten in place: truncated, copied over, scribbled on, deleted.

`lookupd serve` (one process, and a supervisor with two workers) under load from client
threads, while the operator's data file is damaged on disk in each way an operator does
it. No worker may die, every call must succeed with the answers of the data version it
reports, a damaged file is refused with one error line per process, and a later good file
is picked up. The server maps private, verified copies of the data in its run directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from served import TIMEOUT_S, Served, start_serve
from versions import CHANGING_ADDRESS, STABLE_ADDRESS, country_of_version, write_data

from lookupd.client.sync import Client
from lookupd.v1 import lookup_pb2 as pb
from lookupd.v1 import lookup_pb2_grpc

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="workers need fork()")


class _Load:
    """Client threads looking up two addresses in a loop (packed and text calls) until
    stopped; every answer (data version, country of the changing address) and every
    failure is kept."""

    def __init__(self, target: str, threads: int = 2) -> None:
        self.answers: list[tuple[str, str]] = []
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(target,)) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self, target: str) -> None:
        try:
            with Client(target, channels=2, timeout_s=TIMEOUT_S) as client:
                text = False
                while not self._stop.is_set():
                    answers = client.lookup([CHANGING_ADDRESS, STABLE_ADDRESS], text=text)
                    assert answers.countries[1] == "AU"
                    self.answers.append((answers.data_version, str(answers.countries[0])))
                    text = not text
        except BaseException as exc:  # reported by the test
            self.failures.append(exc)

    def wait_for_answers(self, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while len(self.answers) < count and not self.failures:
            assert time.monotonic() < deadline, "no answers"
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(TIMEOUT_S)
        assert not any(thread.is_alive() for thread in self._threads)


def _versions_by_process(target: str, want: int) -> dict[int, str]:
    """Ask GetInfo over fresh connections until ``want`` processes answered; return their
    data versions by process id."""
    seen: dict[int, str] = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(seen) < want and time.monotonic() < deadline:
        with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
            stub: Any = lookup_pb2_grpc.LookupServiceStub(ch)  # type: ignore[no-untyped-call]
            info = stub.GetInfo(pb.GetInfoRequest(), timeout=TIMEOUT_S)
            seen[info.process_id] = info.data_version.id
    assert len(seen) >= want, f"only processes {sorted(seen)} answered"
    return seen


def _wait_until_served(target: str, workers: int, version: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        seen = _versions_by_process(target, workers)
        if all(v == version for v in seen.values()):
            return
        assert time.monotonic() < deadline, f"processes serve {seen}, not {version}"
        time.sleep(0.05)


def _wait_for_failures(served: Served, words: str, count: int) -> None:
    """Wait (bounded) until ``count`` failed reloads whose error holds ``words`` are logged."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        failed = [
            event
            for event in served.events("reload")
            if event.get("result") == "failure" and words in event.get("error", "")
        ]
        if len(failed) >= count:
            return
        assert served.process.poll() is None, served.log_text()
        assert time.monotonic() < deadline, f"no {count} failures with {words!r}:\n" + (
            served.log_text()
        )
        time.sleep(0.02)


@pytest.fixture
def started() -> Iterator[list[Served]]:
    servers: list[Served] = []
    yield servers
    for served in servers:
        served.kill()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_snapshot_damaged_in_place_never_crashes_or_changes_an_answer(
    tmp_path: Path, workers: int, started: list[Served]
) -> None:
    snap, run_parent = tmp_path / "snap.lkd", tmp_path / "run"
    run_parent.mkdir()
    versions = {write_data(snap, 0): 0}
    good = snap.read_bytes()
    other, third = tmp_path / "other.lkd", tmp_path / "third.lkd"
    versions[write_data(other, 1)] = 1
    versions[write_data(third, 2)] = 2
    v0, v1, v2 = versions
    served = start_serve(
        tmp_path,
        "--workers",
        str(workers),
        "--db",
        str(snap),
        "--run-dir",
        str(run_parent),
        "--watch-interval",
        "0.2",
        "--log-format",
        "json",
    )
    started.append(served)
    (run_dir,) = run_parent.iterdir()
    load = _Load(served.target)
    try:
        load.wait_for_answers(20)
        inode = snap.stat().st_ino
        # 1. Truncated (the same inode): today, SIGBUS in every process mapping it.
        os.truncate(snap, 1000)
        _wait_for_failures(served, "truncated snapshot", workers)
        if workers > 1:  # a replacement starts from the supervisor's copy, not the file
            os.kill(served.events("worker_start")[0]["pid"], signal.SIGKILL)
            _wait_for_failures(served, "truncated snapshot", workers + 1)
        # 2. Random bytes written into it at its size, under an intact header.
        with snap.open("r+b") as handle:
            handle.write(good[:4096] + os.urandom(len(good) - 4096))
        _wait_for_failures(served, "payload checksum mismatch", workers)
        _wait_until_served(served.target, workers, v0)
        # 3. Another good snapshot copied over it (the same inode): picked up.
        shutil.copyfile(other, snap)
        assert snap.stat().st_ino == inode
        _wait_until_served(served.target, workers, v1)
        # 4. Deleted: still serving.
        snap.unlink()
        _wait_for_failures(served, "no such file", workers)
        answered = len(load.answers)
        load.wait_for_answers(answered + 20)
        _wait_until_served(served.target, workers, v1)
        # 5. A good file renamed in: picked up.
        os.replace(third, snap)
        _wait_until_served(served.target, workers, v2)
        load.wait_for_answers(len(load.answers) + 20)
    finally:
        load.stop()
    assert not load.failures, load.failures[:3]
    for version, country in load.answers:
        assert country == country_of_version(versions[version]), version
    assert {version for version, _ in load.answers} >= {v0, v1, v2}
    # The copies: private, read-only, named by version; only the one served is left.
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((run_dir / "data").stat().st_mode) == 0o700
    (copy,) = (run_dir / "data").iterdir()
    assert copy.name.startswith(f"{v2}.")
    assert copy.suffix == ".lkd"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o400
    deaths = served.events("worker_exit")
    assert len(deaths) == (1 if workers > 1 else 0), deaths  # only the one killed above
    assert served.stop() == 0
    assert not run_dir.exists()
