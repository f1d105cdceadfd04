"""``--every``: durations, and the loop's runs until the stop event."""

from __future__ import annotations

import threading

import pytest

from lookupd.update.loop import JITTER, parse_duration, run_every
from lookupd.update.run import Outcome, Result


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30), ("45s", 45), ("30m", 1800), ("6h", 21600), ("1d", 86400), ("0.5s", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "-1h", "6 hours", "h", "1w"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_the_loop_runs_until_stopped_and_reports_each_result() -> None:
    stop = threading.Event()
    seen: list[Result] = []

    def once() -> Result:
        if len(seen) == 2:
            stop.set()  # as a SIGTERM during the third update would
        return Result(Outcome.UNCHANGED)

    runs = run_every(0.01, once, stop, on_result=seen.append)
    assert runs == 3
    assert [r.outcome for r in seen] == [Outcome.UNCHANGED] * 3
    assert 0 < JITTER < 1


def test_a_stop_before_the_first_run_runs_nothing() -> None:
    stop = threading.Event()
    stop.set()
    assert run_every(3600, lambda: Result(Outcome.FAILED), stop) == 0
