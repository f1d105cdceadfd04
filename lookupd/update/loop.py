"""``--every``: run updates at an interval, with jitter, until SIGTERM or SIGINT."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable

from lookupd.update.run import Result

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
JITTER = 0.1
"""Each wait is the interval times a random factor in [1 - JITTER, 1 + JITTER], so that
many pods started together do not all hit the vendor at the same second."""


def parse_duration(text: str) -> float:
    """Return ``30s``, ``30m``, ``6h``, ``1d`` or plain seconds as seconds.

    Raises:
        ValueError: not a positive duration.
    """
    found = _DURATION.match(text)
    if found is None or float(found.group(1)) <= 0:
        msg = f"not a duration: {text!r} (e.g. 30m, 6h, 1d, or seconds)"
        raise ValueError(msg)
    return float(found.group(1)) * _UNIT_S[found.group(2)]


def run_every(
    interval_s: float,
    once: Callable[[], Result],
    stop: threading.Event,
    *,
    jitter: float = JITTER,
    on_result: Callable[[Result], None] | None = None,
) -> int:
    """Run ``once`` now, then every ``interval_s`` (jittered) until ``stop`` is set.

    A failed update is retried at the next interval: the snapshot in place keeps serving.
    Returns the number of updates run.
    """
    runs = 0
    while not stop.is_set():
        result = once()
        runs += 1
        if on_result is not None:
            on_result(result)
        wait_s = interval_s * random.uniform(1 - jitter, 1 + jitter)  # not crypto
        stop.wait(wait_s)
    return runs
