"""The server's run directory: a private directory for its metrics files and data copies.

``lookupd serve`` makes one directory of its own, ``lookupd-run-<pid>-<random>`` (mode 0700),
inside ``--run-dir`` (default: ``$TMPDIR``, else ``/tmp``), in single-process and worker
mode alike. It holds the workers' Prometheus files (``metrics/``) and the private copies of
the data the server maps (``data/``, see :mod:`lookupd.datafiles.private_copy`), and it is
removed when the server stops. The run directories of servers that died without removing
theirs (SIGKILL, an out-of-memory kill) are removed when the next one starts there.

A run directory that cannot be made (the parent is missing, is not a directory, is on a
read-only file system, as in a hardened container without ``/tmp``) stops the start with
one line naming it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lookupd.errors import LookupdError
from lookupd.server.logs import log_event

_LOGGER = logging.getLogger(__name__)

RUN_DIR_PREFIX = "lookupd-run-"
"""Names of run directories: the prefix, the owner's process id, ``-``, random letters."""


class RunDirError(LookupdError):
    """The run directory cannot be made."""


def default_parent() -> Path:
    """Where run directories go by default: ``$TMPDIR`` if set, else ``/tmp``."""
    return Path(os.environ.get("TMPDIR") or "/tmp")


@dataclass(frozen=True, slots=True)
class RunDir:
    """A private run directory, removed by :meth:`remove` in the process that made it."""

    path: Path
    """The directory (mode 0700)."""
    owner: int
    """The process that made it: only it removes it (forked workers share it)."""

    @property
    def data(self) -> Path:
        """Where the private copies of the data files go."""
        return self.path / "data"

    @property
    def metrics(self) -> Path:
        """Where the worker processes' Prometheus files go."""
        return self.path / "metrics"

    @classmethod
    def create(cls, parent: str | os.PathLike[str] | None = None) -> RunDir:
        """Make a run directory inside ``parent`` (None: :func:`default_parent`), after
        removing the run directories there of processes that are gone.

        Raises:
            RunDirError: it cannot be made (the message names ``parent`` and why).
        """
        where = Path(parent) if parent else default_parent()
        _remove_stale(where)
        try:
            path = Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-", dir=where))
            (path / "data").mkdir(mode=0o700)
        except OSError as exc:
            named = "--run-dir" if parent else "$TMPDIR" if os.environ.get("TMPDIR") else "/tmp"
            msg = (
                f"cannot make a run directory in {where} ({named}): "
                f"{exc.strerror or exc}; set --run-dir (LOOKUPD_RUN_DIR) to a writable directory"
            )
            raise RunDirError(msg) from exc
        return cls(path, os.getpid())

    def remove(self) -> None:
        """Remove the directory and everything in it, if this process made it."""
        if os.getpid() == self.owner:
            shutil.rmtree(self.path, ignore_errors=True)


def _remove_stale(parent: Path) -> None:
    """Remove the run directories in ``parent`` of processes that are gone: their metrics
    files and data copies would otherwise stay."""
    with contextlib.suppress(OSError):
        for path in parent.glob(f"{RUN_DIR_PREFIX}*-*"):
            pid_text = path.name.removeprefix(RUN_DIR_PREFIX).split("-", 1)[0]
            if not pid_text.isdigit() or not path.is_dir():
                continue
            try:
                os.kill(int(pid_text), 0)
            except ProcessLookupError:  # that process is gone
                shutil.rmtree(path, ignore_errors=True)
                log_event(
                    _LOGGER,
                    logging.INFO,
                    "run_dir_removed",
                    f"removed the run directory of a dead server: {path}",
                    path=str(path),
                )
            except PermissionError:  # alive, another user's
                continue
