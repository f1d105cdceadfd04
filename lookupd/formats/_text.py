"""Helpers shared by the text formats: decompression, CSV records, address columns."""

from __future__ import annotations

import csv
import gzip
import io
import lzma
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NoReturn

import numpy as np

from lookupd import _parse
from lookupd._constants import IPV4_MAPPED_PREFIX, IPV4_MAX, IPV6_MAX, Status
from lookupd.errors import DataFormatError
from lookupd.table import IPVersion

_MAPPED_HI_BITS = IPV4_MAPPED_PREFIX >> 32  # 0xFFFF in bits 32..47 of the low word

# What can go wrong while reading a (possibly compressed) text file.
READ_ERRORS = (OSError, UnicodeDecodeError, EOFError, lzma.LZMAError, zlib.error, csv.Error)


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


def records(handle: IO[str]) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each non-blank, non-comment CSV record."""
    reader = csv.reader(handle)
    for record in reader:
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        if record[0].startswith("#"):
            continue
        yield reader.line_num, record


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


def text_addresses(
    path: Path, texts: list[str], line_numbers: list[int]
) -> tuple[list[int], list[IPVersion]]:
    """Parse addresses with the C parser; IPv4-mapped IPv6 text counts as IPv4."""
    keys = np.empty((len(texts), 2), dtype=np.uint64)
    status = np.empty(len(texts), dtype=np.uint8)
    if _parse.parse_many(texts, keys, status):
        first = int(np.argmax(status == Status.INVALID_ADDRESS))
        fail(path, line_numbers[first], f"not an IP address: {texts[first]!r}")
    hi = keys[:, 0]
    lo = keys[:, 1]
    mapped = (hi == 0) & ((lo >> np.uint64(32)) == _MAPPED_HI_BITS)
    values = np.where(mapped, lo & np.uint64(IPV4_MAX), lo).tolist()
    his = hi.tolist()
    ints = [v if m else (h << 64) | v for v, h, m in zip(values, his, mapped.tolist(), strict=True)]
    versions: list[IPVersion] = [4 if m else 6 for m in mapped.tolist()]
    return ints, versions
