"""The longest line lookupd reads, and the checks that hold every text input to it.

Whatever reads a line holds all of it in memory (a text stream's ``readline``, the csv
module, ``bytes.split``), so a file or a pipe with one gigabyte line would take a gigabyte
or more, whatever else is wrong with it. Every text input is therefore read in chunks of at
most :data:`MAX_LINE_BYTES`, and a line longer than that is refused, naming the line, before
more of it is read: memory stays bounded by the limit whatever the input's size.
"""

from __future__ import annotations

import io
from typing import Protocol

from lookupd.errors import DataFormatError

MAX_LINE_BYTES = 64 * 1024
"""The longest line (in bytes, without its line break) any text input may have.

A line of every data format lookupd reads is well under 1 KiB (a GeoLite2 City Locations
row, the widest, is about 200 bytes), and so is an address line; a longer line means the
wrong file, a damaged one or a hostile one."""


_BOM = b"\xef\xbb\xbf"


class LineTooLongError(DataFormatError):
    """A text input has a line longer than :data:`MAX_LINE_BYTES`."""


class _Readable(Protocol):
    def read1(self, size: int = ..., /) -> bytes: ...

    def close(self) -> None: ...


def too_long(where: str, line: int, limit: int = MAX_LINE_BYTES) -> LineTooLongError:
    """Return the error for line ``line`` of ``where`` (a path, ``stdin``)."""
    return LineTooLongError(
        f"{where}:{line}: a line longer than {limit:,} bytes (the longest line lookupd reads)"
    )


class LineGuard(io.BufferedIOBase):
    """A binary stream that hands its bytes on unchanged, refusing any line over a limit.

    Each read returns at most ``limit`` bytes, so a chunk can hold a too-long line only as
    its first or last piece: the check is two searches and a count per chunk, at C speed.
    Lines end at ``\\n`` (a ``\\r\\n`` line ends there too; the ``\\r`` counts as a byte).

    A UTF-8 byte order mark at the start is dropped here, not by a ``utf-8-sig`` text
    stream: text streams decode plain ``utf-8`` on a faster path (a fifth faster to read).
    """

    def __init__(self, stream: _Readable, where: str, limit: int = MAX_LINE_BYTES) -> None:
        super().__init__()
        self._stream = stream
        self._where = where
        self._limit = limit
        self._lines = 0  # line breaks seen
        self._run = 0  # bytes of the current line seen so far
        self._start = True

    @property
    def name(self) -> str:
        """What the stream is read from, for messages."""
        return self._where

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1, /) -> bytes:
        if size == 0:
            return b""
        wanted = self._limit if size < 0 else min(size, self._limit)
        data = self._stream.read1(wanted)
        if self._start:
            self._start = False
            # A short read may hold part of the mark only: read on until it can be told.
            while data and len(data) < len(_BOM) and _BOM.startswith(data):
                more = self._stream.read1(wanted)
                if not more:
                    break
                data += more
            data = data.removeprefix(_BOM)
        self._check(data)
        return data

    def read(self, size: int | None = -1, /) -> bytes:
        parts: list[bytes] = []
        wanted = -1 if size is None or size < 0 else size
        got = 0
        while wanted < 0 or got < wanted:
            data = self.read1(self._limit if wanted < 0 else wanted - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            super().close()

    def _check(self, data: bytes) -> None:
        first = data.find(b"\n")
        if first < 0:
            self._run += len(data)
            if self._run > self._limit:
                raise too_long(self._where, self._lines + 1, self._limit)
            return
        if self._run + first > self._limit:
            raise too_long(self._where, self._lines + 1, self._limit)
        # Lines wholly inside the chunk are shorter than the chunk, itself within the limit.
        self._lines += data.count(b"\n")
        self._run = len(data) - data.rfind(b"\n") - 1


def check_lines(block: bytes, where: str, first_line: int, limit: int = MAX_LINE_BYTES) -> None:
    """Refuse ``block`` (whole lines, the first numbered ``first_line``) if a line is too long.

    Raises:
        LineTooLongError: naming the first line longer than ``limit`` bytes.
    """
    if len(block) <= limit:
        return
    # A line over the limit covers a whole aligned window of half the limit: only a block
    # with a window free of line breaks (a line of at least half the limit) is split.
    step = limit // 2
    for start in range(0, len(block) - step + 1, step):
        if block.find(b"\n", start, start + step) < 0:
            for number, line in enumerate(block.split(b"\n"), first_line):
                if len(line) > limit:
                    raise too_long(where, number, limit)
            return
