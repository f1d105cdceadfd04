"""One ``lookupd update`` per output at a time: ``flock`` on a lock file beside it."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lookupd.update.errors import LockedError

_POLL_S = 0.1


def lock_path(output: Path) -> Path:
    """Return the lock file of ``output``: ``.NAME.lock`` in its directory."""
    return output.with_name(f".{output.name}.lock")


@contextmanager
def locked(output: Path, *, wait_s: float = 0.0) -> Iterator[Path]:
    """Hold the exclusive lock of ``output`` for the block.

    The lock is the kernel's (``flock``): it is released when the process ends, however it
    ends, so a killed run never leaves a stale lock. The file itself stays.

    Args:
        wait_s: how long to wait for another holder to finish; 0: do not wait.

    Raises:
        LockedError: another process holds the lock after ``wait_s``.
    """
    path = lock_path(output)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    msg = f"another lookupd update holds {path}"
                    raise LockedError(msg) from None
                time.sleep(_POLL_S)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)
