"""``lookupd update`` as a command: exit codes, logs, secrets, ``--every``, metrics, and a
server reloading what it writes. Each run is a child process talking to 127.0.0.1 only."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from origin import Origin, Reply, running_origin
from prometheus_client.parser import text_string_to_metric_families
from served import TIMEOUT_S, child_env, start_serve
from update_data import csv, small_change, version

from lookupd.client import Client
from lookupd.update.lock import locked

_SECRET = "pa55-W0RD-never-shown"
_USER = "someone"


@pytest.fixture
def origin() -> Iterator[Origin]:
    with running_origin() as server:
        yield server


def _update(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # -v (debug lines: the retries) is the command line's, before the command.
    verbose = ["-v"] if "-v" in args else []
    rest = [arg for arg in args if arg != "-v"]
    command = [sys.executable, "-m", "lookupd", *verbose, "update", "--log-format", "json", *rest]
    assert all(_SECRET not in part for part in command)
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=child_env(**env),
        timeout=TIMEOUT_S,
        check=False,
    )


def _events(stderr: str, name: str = "update") -> list[dict[str, Any]]:
    found = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == name:
                found.append(record)
    return found


def test_exit_codes_per_outcome(origin: Origin, tmp_path: Path) -> None:
    output = tmp_path / "countries.lkd"
    origin.file("/c.csv", csv())
    common = ("--url", origin.url("/c.csv"), "--format", "location-csv", "-o", str(output))
    updated = _update(*common)
    assert updated.returncode == 0, updated.stderr
    (event,) = _events(updated.stderr)
    assert event["outcome"] == "updated"
    assert event["new_version"] == version(output)
    assert event["sources"][0]["bytes"] == len(csv())
    assert event["sources"][0]["last_modified"] == 1_700_000_000
    assert event["bytes"] == output.stat().st_size

    unchanged = _update(*common)
    assert unchanged.returncode == 3, unchanged.stderr
    assert _events(unchanged.stderr)[0]["outcome"] == "unchanged"

    origin.file("/c.csv", csv(FR="DE"), stamp=1_800_000_000)
    refused = _update(*common)
    assert refused.returncode == 4, refused.stderr
    (event,) = _events(refused.stderr)
    assert event["outcome"] == "refused"
    assert event["level"] == "warning"
    assert event["change"]["ipv4"] == pytest.approx(0.5, abs=0.001)
    assert _update(*common, "--max-change", "60%").returncode == 0

    origin.serve("/c.csv", Reply(500))
    failed = _update(*common, "--retries", "1", "--backoff", "0.01")
    assert failed.returncode == 5, failed.stderr
    (event,) = _events(failed.stderr)
    assert (event["outcome"], event["reason"], event["level"]) == ("failed", "download", "error")
    assert event["old_version"] == version(output)
    assert "HTTP 500" in event["error"]
    assert len(origin.hits("/c.csv")) == 6  # 1 + 1 + 1 + 1 + 2 attempts

    with locked(output):
        busy = _update(*common)
    assert busy.returncode == 6, busy.stderr
    assert _events(busy.stderr)[0]["outcome"] == "locked"

    assert _update("-o", str(output)).returncode == 2
    assert _update(*common, "--max-change", "150%").returncode == 2


def test_the_second_of_two_concurrent_runs_waits_with_lock_wait(
    origin: Origin, tmp_path: Path
) -> None:
    output = tmp_path / "countries.lkd"
    origin.serve("/c.csv", Reply(body=csv(), delay_s=1.0))
    common = ("--url", origin.url("/c.csv"), "-o", str(output), "--log-format", "json")
    command = [sys.executable, "-m", "lookupd", "update", *common]
    env = child_env()
    first = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # Wait (bounded) until the first run holds the lock: its request reached the origin.
        deadline = time.monotonic() + TIMEOUT_S
        while not origin.hits("/c.csv"):
            assert time.monotonic() < deadline, "the first run never asked"
            time.sleep(0.02)
        second = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=TIMEOUT_S, check=False
        )
        waiting = subprocess.run(
            [*command, "--lock-wait", str(TIMEOUT_S)],
            capture_output=True,
            text=True,
            env=env,
            timeout=TIMEOUT_S * 2,
            check=False,
        )
        _, first_err = first.communicate(timeout=TIMEOUT_S)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(TIMEOUT_S)
    assert first.returncode == 0, first_err
    assert second.returncode == 6, second.stderr
    # The waiter ran after the first had finished: its request found the snapshot in place.
    assert waiting.returncode in (0, 3), waiting.stderr
    assert _events(waiting.stderr)[0]["outcome"] in ("unchanged", "updated")


def test_credentials_never_appear_in_logs_errors_or_argv(origin: Origin, tmp_path: Path) -> None:
    import base64

    basic = "Basic " + base64.b64encode(f"{_USER}:{_SECRET}".encode()).decode()
    origin.serve("/c.csv", Reply(body=csv(), require_auth=basic))
    output = tmp_path / "countries.lkd"
    common = (
        "--url",
        origin.url("/c.csv"),
        "-o",
        str(output),
        "--username-env",
        "SRC_USER",
        "--password-env",
        "SRC_PASSWORD",
        "-v",
    )
    good = _update(*common, SRC_USER=_USER, SRC_PASSWORD=_SECRET)
    assert good.returncode == 0, good.stderr
    assert origin.hits("/c.csv")[0].headers["Authorization"] == basic
    wrong = _update(*common, SRC_USER=_USER, SRC_PASSWORD=_SECRET + "x")
    assert wrong.returncode == 5
    assert "HTTP 401" in wrong.stderr
    missing = _update(*common, SRC_USER=_USER)
    assert missing.returncode == 2
    assert "SRC_PASSWORD is not set" in missing.stderr
    # A token in the URL (IP2Location's shape) is redacted wherever the URL is shown.
    origin.serve("/download/", Reply(403))
    token_url = origin.url(f"/download/?token={_SECRET}&file=DB1LITECSV")
    config = tmp_path / "update.yaml"
    config.write_text(f"sources:\n  - url: '{token_url}'\n")
    leaked = _update("--config", str(config), "-o", str(output), "-v")
    assert leaked.returncode == 5
    assert "token=***" in leaked.stderr
    for run in (good, wrong, missing, leaked):
        assert _SECRET not in run.stderr + run.stdout
        assert base64.b64encode(f"{_USER}:{_SECRET}".encode()).decode() not in run.stderr
    for state in tmp_path.glob(".*.json"):
        assert _SECRET not in state.read_text()
    # There is no flag that takes a secret, and a URL carrying one is refused on argv.
    refused = _update("--url", origin.url("/c.csv"), "-o", str(output), "--password", "x")
    assert refused.returncode == 2
    on_argv = _update("--url", origin.url("/download/?token=abc&file=x"), "-o", str(output))
    assert on_argv.returncode == 2
    assert "--config" in on_argv.stderr
    assert "abc" not in on_argv.stderr


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=TIMEOUT_S) as page:
        text = page.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def _wait_for(
    log: Path, name: str, count: int, process: subprocess.Popen[bytes]
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        found = _events(log.read_text(errors="replace"), name)
        if len(found) >= count:
            return found
        if time.monotonic() > deadline or process.poll() is not None:
            pytest.fail(f"no {count} {name!r} events:\n{log.read_text(errors='replace')}")
        time.sleep(0.02)


def test_every_runs_until_sigterm_and_serves_metrics(origin: Origin, tmp_path: Path) -> None:
    output = tmp_path / "countries.lkd"
    origin.file("/c.csv", csv())
    log = tmp_path / "update.log"
    command = [
        sys.executable, "-m", "lookupd", "update", "--log-format", "json",
        "--url", origin.url("/c.csv"), "-o", str(output),
        "--every", "0.2s", "--metrics-port", "0",
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stderr=sink, env=child_env())
    try:
        (metrics,) = _wait_for(log, "metrics", 1, process)
        assert metrics["host"] == "127.0.0.1"
        events = _wait_for(log, "update", 3, process)
        assert [e["outcome"] for e in events[:3]] == ["updated", "unchanged", "unchanged"]
        values = _scrape(metrics["port"])
        assert values["lookupd_update_runs_total{outcome=updated}"] == 1
        assert values["lookupd_update_runs_total{outcome=unchanged}"] >= 2
        assert values["lookupd_update_snapshots_written_total"] == 1
        assert values["lookupd_update_failures_total{reason=download}"] == 0
        # Set by the runs (their values against a fixed clock: tests/test_update_metrics.py).
        assert values["lookupd_update_last_success_timestamp_seconds"] > 0
        assert (
            values["lookupd_update_last_attempt_timestamp_seconds"]
            >= (values["lookupd_update_last_success_timestamp_seconds"])
        )
        origin.serve("/c.csv", Reply(404))
        _wait_for(log, "update", len(_events(log.read_text())) + 2, process)
        failed = _scrape(metrics["port"])
        assert failed["lookupd_update_failures_total{reason=download}"] >= 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT_S)
    assert _events(log.read_text(), "signal")[0]["signal"] == "SIGTERM"
    assert version(output) == events[0]["new_version"]


def test_a_running_server_picks_up_the_updated_snapshot(origin: Origin, tmp_path: Path) -> None:
    output = tmp_path / "countries.lkd"
    origin.file("/c.csv", csv())
    common = ("--url", origin.url("/c.csv"), "-o", str(output))
    assert _update(*common).returncode == 0
    served = start_serve(tmp_path, "--workers", "1", "--db", str(output), "--watch-interval", "0.2")
    try:
        with Client(served.target, timeout_s=TIMEOUT_S) as client:
            client.wait_until_serving(TIMEOUT_S)
            assert client.info().data_version.id == version(output)
            assert client.lookup(["1.0.0.1"]).countries_list() == ["AU"]
            origin.file("/c.csv", small_change(), stamp=1_800_000_000)
            done = _update(*common)
            assert done.returncode == 0, done.stderr
            new = _events(done.stderr)[0]["new_version"]
            deadline = time.monotonic() + TIMEOUT_S
            while client.info().data_version.id != new:
                assert time.monotonic() < deadline, served.log_text()
                time.sleep(0.05)
            assert client.lookup(["1.0.0.1"]).countries_list() == ["NZ"]
        assert served.stop() == 0
    finally:
        served.kill()


def test_the_command_line_constants_match_the_updater() -> None:
    from lookupd.cli import update as command
    from lookupd.update.run import DEFAULT_MAX_CHANGE, Outcome

    assert command._DEFAULT_MAX_CHANGE == DEFAULT_MAX_CHANGE
    assert set(command.EXIT_CODES) == {outcome.value for outcome in Outcome}
    assert len(set(command.EXIT_CODES.values())) == len(Outcome)
    assert 2 not in command.EXIT_CODES.values()  # bad flags or config, as every command


def test_the_readme_lists_every_metric_and_exit_status() -> None:
    from lookupd.cli import update as command
    from lookupd.update.metrics import UpdateMetrics

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Keeping data fresh", 1)[1].split("\n## ", 1)[0]
    documented = {
        line.split("`")[1] for line in section.splitlines() if line.startswith("| `lookupd_update_")
    }
    names = {
        sample.name
        for family in UpdateMetrics().registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }
    assert documented == names
    statuses = {
        line.split("`")[1]: int(line.split("|")[1])
        for line in section.splitlines()
        if line.startswith("| ") and line.split("|")[1].strip().isdigit() and "`" in line
    }
    assert statuses == command.EXIT_CODES
