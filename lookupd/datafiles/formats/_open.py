"""Open a source file: a regular file only, decompressed, counted for progress, lines bounded."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import lzma
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from lookupd.datafiles.formats.lines import LineGuard
from lookupd.errors import DataFormatError
from lookupd.files import NotARegularFileError, open_regular

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from lookupd.datafiles.formats import Progress

# Report progress after about this much input, so a caller redraws a bar a few times a
# second at most; one comparison per buffer refill keeps it free when nobody listens.
PROGRESS_STEP_BYTES = 1 << 20
_READ_BUFFER_BYTES = 1 << 16
# Text sources may start with a UTF-8 byte order mark (Excel and some Windows tools write
# one): LineGuard drops it.
_ENCODING = "utf-8"

# What can go wrong while reading a (possibly compressed) text file.
READ_ERRORS = (OSError, UnicodeDecodeError, EOFError, lzma.LZMAError, zlib.error, csv.Error)

if TYPE_CHECKING:
    _Binary = gzip.GzipFile | lzma.LZMAFile | io.BufferedReader[io.RawIOBase]
    _TextIOWrapper = io.TextIOWrapper[LineGuard]
else:  # not subscriptable at run time
    _TextIOWrapper = io.TextIOWrapper


class _ProgressReader(io.RawIOBase):
    """A raw file that calls ``progress(done_before + bytes read, total)`` now and then."""

    def __init__(self, raw: io.RawIOBase, progress: Progress, done_before: int, total: int) -> None:
        super().__init__()
        self._raw = raw
        self._progress = progress
        self._done_before = done_before
        self._total = total
        self._position = 0
        self._next_report = PROGRESS_STEP_BYTES
        self._reported = -1

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        count = self._raw.readinto(buffer) or 0
        self._position += count
        # Every step, and once at the end (a read of 0 bytes), never twice for one position.
        if (count == 0 or self._position >= self._next_report) and (
            self._position != self._reported
        ):
            self._reported = self._position
            self._next_report = self._position + PROGRESS_STEP_BYTES
            self._progress(self._done_before + self._position, self._total)
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()


class _TextFile(_TextIOWrapper):
    """A text stream that also closes the file under a decompressor when it closes."""

    def __init__(self, buffer: LineGuard, file: io.BufferedIOBase) -> None:
        super().__init__(buffer, encoding=_ENCODING, newline="")
        self._file = file

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._file.close()


def open_text(
    path: Path,
    progress: Progress | None = None,
    *,
    done_before: int = 0,
    total: int | None = None,
) -> IO[str]:
    """Open a text file, transparently decompressing ``.gz`` and ``.xz``.

    Only a regular file is opened (a FIFO or a device would block). A UTF-8 byte order
    mark at its start is skipped. Its lines are bounded: reading a line longer than
    :data:`~lookupd.datafiles.formats.lines.MAX_LINE_BYTES` (decompressed) raises
    :class:`~lookupd.datafiles.formats.lines.LineTooLongError` naming the line.

    Args:
        path: the file; its suffix picks the decompressor.
        progress: if given, called with ``(done_before + bytes read, total)`` after about
            every :data:`PROGRESS_STEP_BYTES` of the file itself (the compressed bytes for
            ``.gz``/``.xz``), and once at its end.
        done_before: bytes of earlier files of the same job, for readers of several files.
        total: the job's size in bytes; the file's size when not given.

    Raises:
        DataFormatError: not a regular file.
        OSError: it cannot be opened.
    """
    raw = _open_raw(path)
    try:
        if progress is not None:
            size = os.fstat(raw.fileno()).st_size
            raw = _ProgressReader(raw, progress, done_before, size if total is None else total)
        buffered = io.BufferedReader(raw, _READ_BUFFER_BYTES)
        return _TextFile(LineGuard(_decompressed(path, buffered), str(path)), buffered)
    except BaseException:
        raw.close()
        raise


@contextmanager
def open_binary(path: Path) -> Iterator[_Binary]:
    """Open a file's bytes, decompressed (``.gz``/``.xz``); closed when the block ends.

    Raises:
        DataFormatError: not a regular file.
        OSError: it cannot be opened.
    """
    buffered = io.BufferedReader(_open_raw(path), _READ_BUFFER_BYTES)
    try:
        with _decompressed(path, buffered) as stream:
            yield stream
    finally:
        buffered.close()


def cannot_read(path: Path, exc: BaseException) -> DataFormatError:
    """Return the error for a file that failed to read with ``exc`` (one of READ_ERRORS)."""
    if isinstance(exc, UnicodeDecodeError):
        line = undecodable_line(path)
        where = "" if line is None else f" line {line}"
        problem = "not UTF-8 text (binary data, or another encoding)"
        return DataFormatError(f"{path}: cannot read{where}: {problem}")
    return DataFormatError(f"{path}: cannot read: {exc}")


def undecodable_line(path: Path) -> int | None:
    """Return the number of the first line of ``path`` that is not UTF-8, None if none.

    A text stream fails a chunk ahead of the line it hands out, so the line is found by
    reading the bytes again (an error path: the cost does not matter, the memory does).
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 1
    try:
        with open_binary(path) as stream:
            while chunk := stream.read(_READ_BUFFER_BYTES):
                held = decoder.getstate()[0]
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    return lines + (held + chunk)[: exc.start].count(b"\n")
                lines += chunk.count(b"\n")
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return lines
    except (*READ_ERRORS, DataFormatError):
        return None
    return None


def _open_raw(path: Path) -> io.RawIOBase:
    try:
        handle = open_regular(path)
    except NotARegularFileError as exc:
        raise DataFormatError(str(exc)) from exc
    return cast("io.BufferedReader", handle).detach()


def _decompressed(path: Path, buffered: io.BufferedReader[io.RawIOBase]) -> _Binary:
    """The bytes of ``buffered``, decompressed by ``path``'s suffix (or ``buffered`` itself)."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    if suffix == ".xz":
        return lzma.LZMAFile(buffered, "rb")
    return buffered
