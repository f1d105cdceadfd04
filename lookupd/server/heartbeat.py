"""A worker's heartbeat to its supervisor: a byte on a pipe, written by a thread of its own.

The supervisor has no threads and no gRPC objects (it forks), so it reads the beats in its
signal loop, without blocking, and replaces a worker silent for longer than the timeout
(``SIGKILL`` works on a stopped process too). What a beat proves: the process is scheduled
(not stopped by ``SIGSTOP``, not frozen) and its threads get the GIL within the interval
(no long call holding it, no deadlock holding it). It does not prove that the gRPC server
answers: a worker whose call threads are all busy still beats (its calls end by their
deadlines, and the thread pools bound them).
"""

from __future__ import annotations

import os
import threading
import time

# Beats per timeout: a late beat or two must not cost a worker its life.
_BEATS_PER_TIMEOUT = 4
# At least this often, so the supervisor's loop (which waits up to 1 s) sees them.
_MOST_INTERVAL_S = 1.0


def beat_interval(timeout_s: float) -> float:
    """Seconds between beats for a heartbeat timeout of ``timeout_s``."""
    return min(_MOST_INTERVAL_S, timeout_s / _BEATS_PER_TIMEOUT)


class Heartbeat:
    """One worker's heartbeat pipe: made before the fork, then each side keeps its end.

    Args:
        timeout_s: how long the worker may be silent before the supervisor replaces it.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._read, self._write = os.pipe()
        self._last = time.monotonic()

    def in_supervisor(self) -> None:
        """After the fork, in the supervisor: keep the read end, from now."""
        os.close(self._write)
        self._write = -1
        os.set_blocking(self._read, False)
        self._last = time.monotonic()

    def in_worker(self) -> None:
        """After the fork, in the worker: keep the write end and start beating."""
        os.close(self._read)
        self._read = -1
        os.set_blocking(self._write, False)
        thread = threading.Thread(target=self._beat, name="lookupd-heartbeat", daemon=True)
        thread.start()

    def silent_s(self, now: float) -> float:
        """In the supervisor: read the beats that came; return the seconds since the last."""
        try:
            while os.read(self._read, 4096):  # b"": the worker has exited
                self._last = now
        except BlockingIOError:
            pass
        return now - self._last

    def forgive(self, now: float) -> None:
        """In the supervisor: count from ``now`` again (the worker was just dealt with)."""
        self._last = now

    def close(self) -> None:
        """Close this side's end (and, before a fork, both)."""
        for fd in (self._read, self._write):
            if fd >= 0:
                os.close(fd)
        self._read = self._write = -1

    def _beat(self) -> None:
        interval = beat_interval(self.timeout_s)
        while True:
            try:
                os.write(self._write, b".")
            except BlockingIOError:  # full: the supervisor has beats enough to read
                pass
            except OSError:  # closed: the supervisor is gone, and so is this worker soon
                return
            time.sleep(interval)
