"""Helpers shared by the text formats: CSV records, address columns, IPv4-mapped ranges."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from lookupd.codes import Status
from lookupd.core import _parse
from lookupd.core.constants import IPV4_MAPPED_PREFIX, IPV4_MAX, IPV6_MAX
from lookupd.core.table import IPVersion
from lookupd.datafiles.formats._csv import csv_batches, fail
from lookupd.datafiles.formats._open import READ_ERRORS, cannot_read, open_text
from lookupd.datafiles.rows import MAX_LABEL_CHARS
from lookupd.errors import QUOTE_CHARS, DataFormatError, quoted

if TYPE_CHECKING:
    from lookupd.datafiles.formats import Progress
    from lookupd.datafiles.rows import RangeRows

_MAPPED_HI_BITS = IPV4_MAPPED_PREFIX >> 32  # 0xFFFF in bits 32..47 of the low word
# ::ffff:0.0.0.0 and ::ffff:255.255.255.255, the bounds of the IPv4-mapped block.
MAPPED_FIRST = IPV4_MAPPED_PREFIX
MAPPED_LAST = IPV4_MAPPED_PREFIX | IPV4_MAX

# The most decimal digits an address has (2**128 - 1 has 39), leading zeros aside.
_MAX_DECIMAL_DIGITS = 39


def shown(text: str) -> str:
    """``text`` as an error message shows a value it names: as is, or quoted and cut if long."""
    return text if len(text) <= QUOTE_CHARS else quoted(text)


def check_label(path: Path, line_number: int, label: str) -> None:
    """Fail unless ``label`` is a plausible country (or subdivision) code: not empty, short."""
    if not label:
        fail(path, line_number, "empty country code")
    if len(label) > MAX_LABEL_CHARS:
        fail(path, line_number, f"country code longer than {MAX_LABEL_CHARS}: {quoted(label)}")


def file_size(path: Path) -> int:
    """Return a file's size in bytes, 0 if it cannot be read (the reader reports that)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def records(
    handle: IO[str], path: Path, *, strict: bool = False
) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each non-blank, non-comment CSV record.

    Args:
        handle: the open text file.
        path: the file's name, for errors (a CSV syntax error names the file and line).
        strict: refuse bad quoting (``"a"b``, an unterminated quote) instead of reading
            it leniently; for formats whose writers always quote correctly.
    """
    for numbers, batch in csv_batches(handle, path, strict=strict):
        for number, record in zip(numbers, batch, strict=True):
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            if record[0].startswith("#"):
                continue
            yield number, record


# First and second column names of a range CSV's header row: ip-location-db's and DB-IP's
# documented columns, and the spellings people write their corrections files with.
_HEADER_STARTS = frozenset({"start", "ip_start", "start_ip", "range_start", "first"})
_HEADER_ENDS = frozenset({"end", "ip_end", "end_ip", "range_end", "last"})


def is_range_header(fields: Sequence[str]) -> bool:
    """Whether a record is a ``start,end,country_code``-style header row (column names, not
    a range): its first two fields are known start and end column names, in any case."""
    if len(fields) < 3:
        return False
    first = fields[0].strip().lstrip("\ufeff").lower()
    return first in _HEADER_STARTS and fields[1].strip().lower() in _HEADER_ENDS


def read_range_columns(
    path: Path,
    progress: Progress | None,
    columns: str,
    *,
    strict: bool = False,
    header: bool = False,
) -> tuple[list[int], list[str], list[str], list[str]]:
    """Read the first three fields of every record: (line numbers, starts, ends, labels).

    Starts and ends keep their text (callers parse them as a batch); labels are stripped.
    With ``header``, a first record that :func:`is_range_header` recognises is skipped.

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
                if header and not line_numbers and is_range_header(record):
                    header = False  # only the first record may be one
                    continue
                if len(record) < 3:
                    fail(path, line_number, f"expected {columns}, got {quoted(','.join(record))}")
                line_numbers.append(line_number)
                starts.append(record[0])
                ends.append(record[1])
                labels.append(record[2].strip())
    except READ_ERRORS as exc:
        raise cannot_read(path, exc) from exc
    if not line_numbers:
        msg = f"{path}: no ranges in file"
        raise DataFormatError(msg)
    return line_numbers, starts, ends, labels


def numeric_addresses(
    path: Path, texts: list[str], line_numbers: list[int], version: IPVersion
) -> list[int]:
    """Parse decimal addresses of one family; fail on the first bad one."""
    last = IPV4_MAX if version == 4 else IPV6_MAX
    values: list[int] = []
    for i, text in enumerate(texts):
        if not text.isascii() or not text.isdigit():
            fail(path, line_numbers[i], f"not a decimal address: {quoted(text)}")
        # int() of a very long digit string is slow, or refused by Python: check the length.
        value = int(text) if len(text.lstrip("0")) <= _MAX_DECIMAL_DIGITS else last + 1
        if value > last:
            fail(path, line_numbers[i], f"{shown(text)} is outside the IPv{version} space")
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
        fail(path, line_numbers[first], f"not an IP address: {quoted(texts[first])}")
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


def csv_column(path: Path, line_number: int, columns: dict[str, int], name: str) -> int:
    """Return the index of column ``name``, or fail naming the header line."""
    if name not in columns:
        fail(path, line_number, f"no {name!r} column in the header {quoted(','.join(columns))}")
    return columns[name]
