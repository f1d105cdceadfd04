"""A watch on the process's open file descriptors: a warning as they near the limit.

Every connection holds a descriptor, and at the limit (``RLIMIT_NOFILE``) new connections
fail in the kernel's accept with nothing in the log. So each server process counts its
descriptors every second, sets ``lookupd_open_fds`` and ``lookupd_max_fds``, and logs one
``fd_limit_near`` warning when they reach 80% of the limit, then no more until they have
fallen below 70% (a count hovering at the threshold logs once, not once a second).
"""

from __future__ import annotations

import logging
import os
import resource
import threading
from typing import TYPE_CHECKING

from lookupd.server.logs import log_event

if TYPE_CHECKING:
    from lookupd.server.metrics import Metrics

_LOGGER = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0
WARN_FRACTION = 0.8
REARM_FRACTION = 0.7
# Where the kernel lists the process's descriptors (Linux; /dev/fd elsewhere).
_FD_DIRECTORIES = ("/proc/self/fd", "/dev/fd")


def open_descriptors() -> int | None:
    """How many descriptors the process has open; None where that cannot be known."""
    for directory in _FD_DIRECTORIES:
        try:
            # listdir's own descriptor is counted too: one more than the others.
            return len(os.listdir(directory)) - 1
        except OSError:
            continue
    return None


def descriptor_limit() -> int | None:
    """The process's soft limit on open descriptors; None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


class DescriptorWatch:
    """Counts the process's descriptors every ``interval_s`` in a thread, from
    :meth:`start` to :meth:`stop`, and warns near the limit (see the module)."""

    def __init__(
        self, metrics: Metrics | None = None, interval_s: float = CHECK_INTERVAL_S
    ) -> None:
        self._metrics = metrics
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def start(self) -> None:
        """Check now, then every interval in a daemon thread."""
        self.check()
        self._thread = threading.Thread(target=self._run, name="lookupd-fd-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread (at once: it waits on an event)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.check()

    def check(self) -> None:
        """Count once: set the metrics, and warn on crossing the threshold upwards."""
        count, limit = open_descriptors(), descriptor_limit()
        if count is None:
            return
        if self._metrics is not None:
            self._metrics.set_descriptors(count, limit)
        if limit is None:
            return
        if count >= WARN_FRACTION * limit and not self._warned:
            self._warned = True
            log_event(
                _LOGGER,
                logging.WARNING,
                "fd_limit_near",
                f"{count} of {limit} file descriptors open: at the limit no new connection "
                "can be accepted; raise the limit (ulimit -n, LimitNOFILE) or find who holds them",
                open_fds=count,
                max_fds=limit,
            )
        elif count < REARM_FRACTION * limit:
            self._warned = False
