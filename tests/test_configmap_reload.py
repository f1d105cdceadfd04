"""A policy file in a Kubernetes ConfigMap volume is hot-reloaded when the ConfigMap changes.

The kubelet writes a ConfigMap volume with its atomic writer: the files live in a
timestamped directory ``..2026_12_04_06_30_00.123456789``, ``..data`` is a symlink to it, and
each key (``policies.yaml``) is a symlink to ``..data/policies.yaml``. An update writes a new
timestamped directory, points a new symlink ``..data_tmp`` at it, renames that over
``..data`` (one atomic step) and removes the old directory. The path lookupd is given never
changes, its target does. Here the same steps are taken on a real directory under a real
``lookupd serve --workers 2`` with clients calling it, and every worker must serve the new
policy version with no failed call.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from served import TIMEOUT_S, start_serve
from versions import policy_text, write_data

from lookupd.client import Client

_KEY = "policies.yaml"


def _timestamped(volume: Path, text: str, n: int) -> Path:
    """The kubelet's timestamped directory with one key, as it writes it (0644 files)."""
    directory = volume / time.strftime(f"..%Y_%m_%d_%H_%M_%S.{n:09d}", time.gmtime())
    directory.mkdir(mode=0o755)
    key = directory / _KEY
    key.write_text(text)
    key.chmod(0o644)
    return directory


def _make_volume(volume: Path, text: str) -> Path:
    first = _timestamped(volume, text, 0)
    (volume / "..data").symlink_to(first.name)
    (volume / _KEY).symlink_to(f"..data/{_KEY}")
    return first


def _update_volume(volume: Path, text: str, old: Path, n: int) -> Path:
    """The atomic writer's update: new directory, ``..data_tmp`` renamed over ``..data``,
    the old directory removed."""
    new = _timestamped(volume, text, n)
    (volume / "..data_tmp").symlink_to(new.name)
    os.rename(volume / "..data_tmp", volume / "..data")
    shutil.rmtree(old)
    return new


def _version(n: int) -> str:
    """The policy version (SHA-256 of the file) of policy file version ``n``."""
    return hashlib.sha256(policy_text(n).encode()).hexdigest()


def _policy_versions(target: str, want: int = 2) -> set[str]:
    """The policy versions the workers serve, asked over fresh connections until ``want``
    distinct processes answered (the kernel spreads new connections over the workers)."""
    seen: dict[int, str] = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(seen) < want:
        assert time.monotonic() < deadline, f"only processes {sorted(seen)} answered"
        with Client(target, timeout_s=TIMEOUT_S) as client:
            info = client.info()
            seen[info.process_id] = info.policy_version
    return set(seen.values())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="workers need fork()")
def test_a_configmap_update_is_reloaded_by_every_worker_with_no_failed_call(
    tmp_path: Path,
) -> None:
    data = tmp_path / "countries.lkd"
    write_data(data, 0)
    volume = tmp_path / "policies"
    volume.mkdir()
    old = _make_volume(volume, policy_text(0))
    served = start_serve(
        tmp_path,
        "--workers",
        "2",
        "--db",
        str(data),
        "--policies",
        str(volume / _KEY),
        "--watch-interval",
        "0.2",
        "--log-format",
        "json",
    )
    failures: list[BaseException] = []
    calls = [0]
    stop = threading.Event()

    def load() -> None:
        try:
            with Client(served.target, channels=4, timeout_s=TIMEOUT_S) as client:
                while not stop.is_set():
                    checks = client.check("only-au", ["1.0.0.1", "11.0.0.1"])
                    assert checks.verdicts.tolist() == [1, 2]  # ALLOW, DENY
                    calls[0] += 1
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    try:
        with Client(served.target, timeout_s=TIMEOUT_S) as client:
            client.wait_until_serving(TIMEOUT_S)
        assert _policy_versions(served.target) == {_version(0)}
        thread = threading.Thread(target=load)
        thread.start()
        try:
            for n in (1, 2):  # two updates: the second replaces a directory the first made
                old = _update_volume(volume, policy_text(n), old, n)
                deadline = time.monotonic() + TIMEOUT_S
                while (versions := _policy_versions(served.target)) != {_version(n)}:
                    assert time.monotonic() < deadline, f"workers serve {versions}"
                    time.sleep(0.1)
        finally:
            stop.set()
            thread.join(TIMEOUT_S)
        assert failures == []
        assert calls[0] > 0
        reloads = [e for e in served.events("reload") if e["trigger"] == "watch"]
        assert {e["result"] for e in reloads} == {"success"}
        assert len({e["pid"] for e in reloads}) == 2  # both workers reloaded
        assert served.stop() == 0
    finally:
        served.kill()
