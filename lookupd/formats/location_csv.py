"""Read ip-location-db style ``start,end,country_code`` CSVs (also DB-IP lite country CSVs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from lookupd.errors import DataFormatError
from lookupd.formats._text import (
    READ_ERRORS,
    fail,
    numeric_addresses,
    open_text,
    records,
    text_addresses,
)
from lookupd.rows import RangeRows
from lookupd.table import IPVersion

if TYPE_CHECKING:
    from lookupd.formats import Progress


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
            for line_number, record in records(handle):
                if len(record) < 3:
                    fail(path, line_number, f"expected start,end,country_code, got {record!r}")
                line_numbers.append(line_number)
                start_texts.append(record[0].strip())
                end_texts.append(record[1].strip())
                label_texts.append(record[2].strip())
    except READ_ERRORS as exc:
        msg = f"{path}: cannot read: {exc}"
        raise DataFormatError(msg) from exc
    if not line_numbers:
        msg = f"{path}: no ranges in file"
        raise DataFormatError(msg)

    numeric = start_texts[0].isdigit() and end_texts[0].isdigit()
    if numeric:
        starts = numeric_addresses(path, start_texts, line_numbers, numeric_version)
        ends = numeric_addresses(path, end_texts, line_numbers, numeric_version)
        versions = [numeric_version] * len(starts)
    else:
        starts, start_versions = text_addresses(path, start_texts, line_numbers)
        ends, end_versions = text_addresses(path, end_texts, line_numbers)
        for i, (a, b) in enumerate(zip(start_versions, end_versions, strict=True)):
            if a != b:
                fail(path, line_numbers[i], f"range mixes IPv{a} and IPv{b} addresses")
        versions = start_versions

    for i, (start, end, version, name) in enumerate(
        zip(starts, ends, versions, label_texts, strict=True)
    ):
        if start > end:
            fail(path, line_numbers[i], f"start {start_texts[i]} > end {end_texts[i]}")
        if not name:
            fail(path, line_numbers[i], "empty country code")
        rows.add(version, start, end, name)
    return rows


def read(path: Path, rows: RangeRows, progress: Progress | None = None) -> RangeRows:
    """Format entry point (see :mod:`lookupd.formats`)."""
    return read_location_csv(path, rows)
