"""Helpers shared by the text formats: decompression, progress, CSV records, address columns."""

from __future__ import annotations

import csv
import gzip
import io
import lzma
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, NoReturn

import numpy as np
import numpy.typing as npt

from lookupd.codes import Status
from lookupd.core import _parse
from lookupd.core.constants import IPV4_MAPPED_PREFIX, IPV4_MAX, IPV6_MAX
from lookupd.core.table import IPVersion
from lookupd.errors import DataFormatError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from lookupd.datafiles.formats import Progress
    from lookupd.datafiles.rows import RangeRows

_MAPPED_HI_BITS = IPV4_MAPPED_PREFIX >> 32  # 0xFFFF in bits 32..47 of the low word
# ::ffff:0.0.0.0 and ::ffff:255.255.255.255, the bounds of the IPv4-mapped block.
MAPPED_FIRST = IPV4_MAPPED_PREFIX
MAPPED_LAST = IPV4_MAPPED_PREFIX | IPV4_MAX

# Report progress after about this much input, so a caller redraws a bar a few times a
# second at most; one comparison per buffer refill keeps it free when nobody listens.
PROGRESS_STEP_BYTES = 1 << 20
_READ_BUFFER_BYTES = 1 << 16

# What can go wrong while reading a (possibly compressed) text file.
READ_ERRORS = (OSError, UnicodeDecodeError, EOFError, lzma.LZMAError, zlib.error, csv.Error)


class _ProgressReader(io.RawIOBase):
    """A raw file that calls ``progress(done_before + bytes read, total)`` now and then."""

    def __init__(self, raw: io.FileIO, progress: Progress, done_before: int, total: int) -> None:
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
        count = self._raw.readinto(buffer)
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


if TYPE_CHECKING:
    _Decompressed = gzip.GzipFile | lzma.LZMAFile | io.BufferedReader[_ProgressReader]
    _TextIOWrapper = io.TextIOWrapper[_Decompressed]
else:  # not subscriptable at run time
    _TextIOWrapper = io.TextIOWrapper


class _TextFile(_TextIOWrapper):
    """A text stream that also closes the file under a decompressor when it closes."""

    def __init__(self, buffer: _Decompressed, file: io.RawIOBase) -> None:
        super().__init__(buffer, encoding="utf-8", newline="")
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

    Args:
        path: the file; its suffix picks the decompressor.
        progress: if given, called with ``(done_before + bytes read, total)`` after about
            every :data:`PROGRESS_STEP_BYTES` of the file itself (the compressed bytes for
            ``.gz``/``.xz``), and once at its end.
        done_before: bytes of earlier files of the same job, for readers of several files.
        total: the job's size in bytes; the file's size when not given.
    """
    suffix = path.suffix.lower()
    if progress is None:
        # Each stream is closed by the TextIOWrapper that wraps it.
        raw: io.BufferedIOBase
        if suffix == ".gz":
            raw = gzip.GzipFile(path, "rb")
        elif suffix == ".xz":
            raw = lzma.LZMAFile(path, "rb")  # noqa: SIM115
        else:
            raw = path.open("rb")
        return io.TextIOWrapper(raw, encoding="utf-8", newline="")
    file = io.FileIO(path, "rb")
    try:
        size = os.fstat(file.fileno()).st_size
        counted = _ProgressReader(file, progress, done_before, size if total is None else total)
        buffered = io.BufferedReader(counted, _READ_BUFFER_BYTES)
        stream: _Decompressed
        if suffix == ".gz":
            stream = gzip.GzipFile(fileobj=buffered, mode="rb")
        elif suffix == ".xz":
            stream = lzma.LZMAFile(buffered, "rb")  # noqa: SIM115
        else:
            stream = buffered
        return _TextFile(stream, counted)
    except BaseException:
        file.close()
        raise


def file_size(path: Path) -> int:
    """Return a file's size in bytes, 0 if it cannot be read (the reader reports that)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def records(
    handle: IO[str], path: Path | None = None, *, strict: bool = False
) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each non-blank, non-comment CSV record.

    Args:
        handle: the open text file.
        path: the file's name; when given, a CSV syntax error becomes a DataFormatError
            naming the file and line (otherwise ``csv.Error`` propagates).
        strict: refuse bad quoting (``"a"b``, an unterminated quote) instead of reading
            it leniently; for formats whose writers always quote correctly.
    """
    reader = csv.reader(handle, strict=strict)
    try:
        for record in reader:
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            if record[0].startswith("#"):
                continue
            yield reader.line_num, record
    except csv.Error as exc:
        if path is None:
            raise
        fail(path, reader.line_num, f"malformed CSV record: {exc}")


def read_range_columns(
    path: Path,
    progress: Progress | None,
    columns: str,
    *,
    strict: bool = False,
) -> tuple[list[int], list[str], list[str], list[str]]:
    """Read the first three fields of every record: (line numbers, starts, ends, labels).

    Starts and ends keep their text (callers parse them as a batch); labels are stripped.

    Raises:
        DataFormatError: a record with fewer than three fields (named by ``columns``, e.g.
            ``"start,end,country_code"``), an unreadable file, or no records at all.
    """
    line_numbers: list[int] = []
    starts: list[str] = []
    ends: list[str] = []
    labels: list[str] = []
    try:
        with open_text(path, progress) as handle:
            for line_number, record in records(handle, path, strict=strict):
                if len(record) < 3:
                    fail(path, line_number, f"expected {columns}, got {record!r}")
                line_numbers.append(line_number)
                starts.append(record[0])
                ends.append(record[1])
                labels.append(record[2].strip())
    except READ_ERRORS as exc:
        msg = f"{path}: cannot read: {exc}"
        raise DataFormatError(msg) from exc
    if not line_numbers:
        msg = f"{path}: no ranges in file"
        raise DataFormatError(msg)
    return line_numbers, starts, ends, labels


def fail(path: Path, line_number: int, problem: str) -> NoReturn:
    """Raise a DataFormatError naming the file and line."""
    msg = f"{path}:{line_number}: {problem}"
    raise DataFormatError(msg)


def numeric_addresses(
    path: Path, texts: list[str], line_numbers: list[int], version: IPVersion
) -> list[int]:
    """Parse decimal addresses of one family; fail on the first bad one."""
    last = IPV4_MAX if version == 4 else IPV6_MAX
    values: list[int] = []
    for i, text in enumerate(texts):
        if not text.isascii() or not text.isdigit():
            fail(path, line_numbers[i], f"not a decimal address: {text!r}")
        value = int(text)
        if value > last:
            fail(path, line_numbers[i], f"{text} is outside the IPv{version} space")
        values.append(value)
    return values


def address_keys(
    path: Path, texts: list[str], line_numbers: list[int]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Parse addresses with the C parser into 128-bit keys (high, low halves).

    IPv4 text becomes its IPv4-mapped key ``::ffff:a.b.c.d``, as everywhere in lookupd.
    """
    keys = np.empty((len(texts), 2), dtype=np.uint64)
    status = np.empty(len(texts), dtype=np.uint8)
    if _parse.parse_many(texts, keys, status):
        first = int(np.argmax(status == Status.INVALID_ADDRESS))
        fail(path, line_numbers[first], f"not an IP address: {texts[first]!r}")
    return keys[:, 0], keys[:, 1]


def mapped_mask(hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
    """Mark the keys inside the IPv4-mapped block ``::ffff:0:0/96``."""
    inside: npt.NDArray[np.bool_] = (hi == 0) & ((lo >> np.uint64(32)) == _MAPPED_HI_BITS)
    return inside


def text_addresses(
    path: Path, texts: list[str], line_numbers: list[int]
) -> tuple[list[int], list[IPVersion]]:
    """Parse addresses with the C parser; IPv4-mapped IPv6 text counts as IPv4."""
    hi, lo = address_keys(path, texts, line_numbers)
    mapped = mapped_mask(hi, lo)
    values = np.where(mapped, lo & np.uint64(IPV4_MAX), lo).tolist()
    his = hi.tolist()
    ints = [v if m else (h << 64) | v for v, h, m in zip(values, his, mapped.tolist(), strict=True)]
    versions: list[IPVersion] = [4 if m else 6 for m in mapped.tolist()]
    return ints, versions


def add_ipv6_range(rows: RangeRows, start: int, end: int, label: str) -> None:
    """Add an inclusive IPv6 range; its part inside ``::ffff:0:0/96`` goes to the IPv4 table.

    lookupd answers IPv4-mapped addresses from the IPv4 table, so a file that spells IPv4
    ranges as IPv6 (IP2Location, some MaxMind CSVs) must put them there to be seen at all.
    """
    if end < MAPPED_FIRST or start > MAPPED_LAST:
        rows.add(6, start, end, label)
        return
    if start < MAPPED_FIRST:
        rows.add(6, start, MAPPED_FIRST - 1, label)
    first, last = max(start, MAPPED_FIRST), min(end, MAPPED_LAST)
    rows.add(4, first - MAPPED_FIRST, last - MAPPED_FIRST, label)
    if end > MAPPED_LAST:
        rows.add(6, MAPPED_LAST + 1, end, label)


def csv_header(path: Path, reader: Iterator[list[str]]) -> tuple[int, dict[str, int]]:
    """Read the header (the first non-blank record): its record index and name -> column."""
    for record, names in enumerate(reader):
        if names:
            # Strip a UTF-8 byte order mark, which some tools write before the first name.
            return record, {name.strip().lstrip("\ufeff"): i for i, name in enumerate(names)}
    msg = f"{path}: empty file (expected a header line)"
    raise DataFormatError(msg)


def csv_column(path: Path, line_number: int, columns: dict[str, int], name: str) -> int:
    """Return the index of column ``name``, or fail naming the header line."""
    if name not in columns:
        shown = ",".join(columns)[:200]
        fail(path, line_number, f"no {name!r} column in the header {shown!r}")
    return columns[name]
