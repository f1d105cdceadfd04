"""Read range files from disk into range tables and label tables."""

from __future__ import annotations

import csv
import gzip
import io
import lzma
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from lookupd import _parse
from lookupd._constants import IPV4_MAPPED_PREFIX, IPV4_MAX, IPV6_MAX, Status
from lookupd.errors import DataFormatError
from lookupd.table import MAX_LABELS, IPVersion, RangeTable, build_table

_U64_MASK = (1 << 64) - 1
_MAPPED_HI_BITS = IPV4_MAPPED_PREFIX >> 32  # 0xFFFF in bits 32..47 of the low word


@dataclass(slots=True)
class RangeRows:
    """Inclusive ranges read from files, one list per family, in file order."""

    label_names: list[str] = field(default_factory=lambda: [""])
    """Label table; index 0 is the unknown label."""
    v4: tuple[list[int], list[int], list[int]] = field(default_factory=lambda: ([], [], []))
    """IPv4 (starts, ends, label indices)."""
    v6: tuple[list[int], list[int], list[int]] = field(default_factory=lambda: ([], [], []))
    """IPv6 (starts, ends, label indices)."""
    _label_index: dict[str, int] = field(default_factory=dict, repr=False)

    def label(self, name: str) -> int:
        """Return the index of ``name`` in the label table, adding it if new."""
        index = self._label_index.get(name)
        if index is None:
            index = len(self.label_names)
            if index >= MAX_LABELS:
                msg = f"more than {MAX_LABELS - 1} distinct labels"
                raise DataFormatError(msg)
            self._label_index[name] = index
            self.label_names.append(name)
        return index

    def tables(self) -> tuple[RangeTable, RangeTable]:
        """Resolve overlaps and return the (IPv4, IPv6) tables."""
        return build_table(4, *self.v4), build_table(6, *self.v6)

    def __len__(self) -> int:
        return len(self.v4[0]) + len(self.v6[0])


def open_text(path: Path) -> IO[str]:
    """Open a text file, transparently decompressing ``.gz`` and ``.xz``."""
    suffix = path.suffix.lower()
    # Each stream is closed by the TextIOWrapper that wraps it.
    raw: io.BufferedIOBase
    if suffix == ".gz":
        raw = gzip.GzipFile(path, "rb")
    elif suffix == ".xz":
        raw = lzma.LZMAFile(path, "rb")  # noqa: SIM115
    else:
        raw = path.open("rb")
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def read_location_csv(path: str | os.PathLike[str], rows: RangeRows | None = None) -> RangeRows:
    """Read an ip-location-db style ``start,end,country_code`` CSV (optionally compressed).

    Addresses may be dotted/colon text or decimal integers. Numeric files are IPv6 when
    their name says ``ipv6`` (ip-location-db's naming), IPv4 otherwise. Rows are appended to
    ``rows`` when given, so several files build one table.

    Raises:
        DataFormatError: a malformed row, an invalid address, ``start > end``, a range
            mixing families, or no rows at all; the message names the file and line.
    """
    path = Path(path)
    rows = RangeRows() if rows is None else rows
    numeric_version: IPVersion = 6 if "ipv6" in path.name.lower() else 4
    line_numbers: list[int] = []
    start_texts: list[str] = []
    end_texts: list[str] = []
    label_texts: list[str] = []
    try:
        with open_text(path) as handle:
            for line_number, record in _records(handle):
                if len(record) < 3:
                    _fail(path, line_number, f"expected start,end,country_code, got {record!r}")
                line_numbers.append(line_number)
                start_texts.append(record[0].strip())
                end_texts.append(record[1].strip())
                label_texts.append(record[2].strip())
    except (OSError, UnicodeDecodeError, EOFError, lzma.LZMAError, zlib.error, csv.Error) as exc:
        msg = f"{path}: cannot read: {exc}"
        raise DataFormatError(msg) from exc
    if not line_numbers:
        msg = f"{path}: no ranges in file"
        raise DataFormatError(msg)

    numeric = start_texts[0].isdigit() and end_texts[0].isdigit()
    if numeric:
        starts = _numeric(path, start_texts, line_numbers, numeric_version)
        ends = _numeric(path, end_texts, line_numbers, numeric_version)
        versions = [numeric_version] * len(starts)
    else:
        starts, start_versions = _textual(path, start_texts, line_numbers)
        ends, end_versions = _textual(path, end_texts, line_numbers)
        for i, (a, b) in enumerate(zip(start_versions, end_versions, strict=True)):
            if a != b:
                _fail(path, line_numbers[i], f"range mixes IPv{a} and IPv{b} addresses")
        versions = start_versions

    for i, (start, end, version, name) in enumerate(
        zip(starts, ends, versions, label_texts, strict=True)
    ):
        if start > end:
            _fail(path, line_numbers[i], f"start {start_texts[i]} > end {end_texts[i]}")
        if not name:
            _fail(path, line_numbers[i], "empty country code")
        family = rows.v4 if version == 4 else rows.v6
        family[0].append(start)
        family[1].append(end)
        family[2].append(rows.label(name))
    return rows


def _records(handle: IO[str]) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each non-blank, non-comment CSV record."""
    reader = csv.reader(handle)
    for record in reader:
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        if record[0].startswith("#"):
            continue
        yield reader.line_num, record


def _fail(path: Path, line_number: int, problem: str) -> None:
    msg = f"{path}:{line_number}: {problem}"
    raise DataFormatError(msg)


def _numeric(
    path: Path, texts: list[str], line_numbers: list[int], version: IPVersion
) -> list[int]:
    last = IPV4_MAX if version == 4 else IPV6_MAX
    values: list[int] = []
    for i, text in enumerate(texts):
        if not text.isascii() or not text.isdigit():
            _fail(path, line_numbers[i], f"not a decimal address: {text!r}")
        value = int(text)
        if value > last:
            _fail(path, line_numbers[i], f"{text} is outside the IPv{version} space")
        values.append(value)
    return values


def _textual(
    path: Path, texts: list[str], line_numbers: list[int]
) -> tuple[list[int], list[IPVersion]]:
    """Parse addresses with the C parser; IPv4-mapped IPv6 text counts as IPv4."""
    keys = np.empty((len(texts), 2), dtype=np.uint64)
    status = np.empty(len(texts), dtype=np.uint8)
    if _parse.parse_many(texts, keys, status):
        first = int(np.argmax(status == Status.INVALID_ADDRESS))
        _fail(path, line_numbers[first], f"not an IP address: {texts[first]!r}")
    hi = keys[:, 0]
    lo = keys[:, 1]
    mapped = (hi == 0) & ((lo >> np.uint64(32)) == _MAPPED_HI_BITS)
    values = np.where(mapped, lo & np.uint64(IPV4_MAX), lo).tolist()
    his = hi.tolist()
    ints = [v if m else (h << 64) | v for v, h, m in zip(values, his, mapped.tolist(), strict=True)]
    versions: list[IPVersion] = [4 if m else 6 for m in mapped.tolist()]
    return ints, versions
