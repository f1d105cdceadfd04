"""Open an operator's file for reading: only a regular file, never blocking, size-bounded.

Every file lookupd reads on an operator's behalf (data, policies, certificates, tokens) is
opened here. A FIFO, a device or a socket put where a file was expected would block the
open or the read for ever (and with it whatever lock the reader holds), so the open does
not block (``O_NONBLOCK``) and the descriptor is checked to be a regular file before a byte
is read. The check is made on the opened descriptor, not on the path, so nothing can swap
the path between the check and the read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from lookupd.errors import LookupdError


class NotARegularFileError(LookupdError):
    """The path names something other than a regular file (a FIFO, device, directory...)."""


class FileTooLargeError(LookupdError):
    """The file is larger than its reader accepts."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file, without ever blocking.

    Raises:
        NotARegularFileError: it is a FIFO, socket, device or directory.
        OSError: it cannot be opened (missing, no permission...).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFileError(f"{os.fspath(path)}: is {_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], *, limit: int) -> bytes:
    """Read all of the regular file ``path``, refusing one larger than ``limit`` bytes.

    Raises:
        NotARegularFileError: it is not a regular file.
        FileTooLargeError: it holds more than ``limit`` bytes.
        OSError: it cannot be opened or read.
    """
    with open_regular(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLargeError(f"{Path(path)}: larger than {limit} bytes")
    return data
