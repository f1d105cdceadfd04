"""The metrics of ``lookupd update --every``: what each result records, against a fixed clock."""

from __future__ import annotations

import inspect
import time

from lookupd.update.metrics import UpdateMetrics
from lookupd.update.run import Outcome, Result


def test_each_result_is_recorded_at_the_clocks_time() -> None:
    now = [1_800_000_000.0]
    metrics = UpdateMetrics(clock=lambda: now[0])

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert sample("lookupd_update_last_success_timestamp_seconds") == 0
    metrics.record(Result(Outcome.UPDATED, seconds=2.5))
    assert sample("lookupd_update_last_success_timestamp_seconds") == 1_800_000_000.0
    assert sample("lookupd_update_last_attempt_timestamp_seconds") == 1_800_000_000.0
    assert sample("lookupd_update_last_duration_seconds") == 2.5
    assert sample("lookupd_update_snapshots_written_total") == 1

    now[0] += 86_400
    metrics.record(Result(Outcome.UNCHANGED, seconds=0.5))
    assert sample("lookupd_update_last_success_timestamp_seconds") == 1_800_086_400.0
    assert sample("lookupd_update_snapshots_written_total") == 1

    # A failure moves the attempt, not the success: the stale-updater alert sees the gap.
    now[0] += 86_400
    metrics.record(Result(Outcome.FAILED, seconds=1.0, reason="download"))
    assert sample("lookupd_update_last_success_timestamp_seconds") == 1_800_086_400.0
    assert sample("lookupd_update_last_attempt_timestamp_seconds") == 1_800_172_800.0
    assert sample("lookupd_update_failures_total", reason="download") == 1
    assert sample("lookupd_update_runs_total", outcome="updated") == 1
    assert sample("lookupd_update_runs_total", outcome="unchanged") == 1
    assert sample("lookupd_update_runs_total", outcome="failed") == 1


def test_the_clock_is_unix_time_unless_told() -> None:
    """Prometheus timestamps are Unix seconds: the default is the wall clock, not a
    monotonic one."""
    assert inspect.signature(UpdateMetrics).parameters["clock"].default is time.time
