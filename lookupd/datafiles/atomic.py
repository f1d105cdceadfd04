"""Replace a file atomically: write beside it, sync, rename over it, sync the directory."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def replace_atomically(path: Path, fill: Callable[[Path], None]) -> None:
    """Have ``fill`` write a temporary file beside ``path``, then put it in ``path``'s place.

    A reader (a server reloading the file, Envoy watching for a rename) sees either the old
    file or the whole new one, never a part. An existing file keeps its permissions; a new
    one gets 0644. Nothing is left behind if ``fill`` raises.

    Raises:
        OSError: the file cannot be written, synced or renamed.
    """
    directory = path.parent
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        fill(tmp)
        with tmp.open("rb+") as handle:
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_directory(directory)


def sync_directory(directory: Path) -> None:
    """Flush a rename to disk (where the platform lets a directory be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
