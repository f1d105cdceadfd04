"""Read ip-location-db style ``start,end,country_code`` CSVs (also DB-IP lite country CSVs).

DB-IP's lite country CSV (``ip_start,ip_end,country``, no header) is the same format with
IPv4 and IPv6 rows in one file; each row's family comes from its own addresses. DB-IP marks
reserved and unallocated ranges with ``ZZ``: those rows are kept as the label ``ZZ`` (it is
what the file says, and :func:`lookupd.policies.iso3166.non_iso_labels` reports it), not turned into
"unknown".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from lookupd.core.table import IPVersion
from lookupd.datafiles.formats._csv import fail
from lookupd.datafiles.formats._text import (
    MAPPED_FIRST,
    add_ipv6_range,
    check_label,
    numeric_addresses,
    read_range_columns,
    shown,
    text_addresses,
)
from lookupd.datafiles.rows import RangeRows

if TYPE_CHECKING:
    from lookupd.datafiles.formats import Progress


def read_location_csv(
    path: str | os.PathLike[str],
    rows: RangeRows | None = None,
    progress: Progress | None = None,
) -> RangeRows:
    """Read an ip-location-db style ``start,end,country_code`` CSV (optionally compressed).

    Addresses may be dotted/colon text or decimal integers. Text rows of both families may
    be mixed in one file (DB-IP); IPv4-mapped IPv6 text goes to the IPv4 table. Numeric files
    are IPv6 when their name says ``ipv6`` (ip-location-db's naming), IPv4 otherwise. Rows
    are appended to ``rows`` when given, so several files build one table. Columns after
    the third are ignored, and so is a first row of column names (``start,end,country_code``,
    ``ip_start,ip_end,country``: see :func:`~lookupd.datafiles.formats._text.is_range_header`),
    as a corrections file written by hand often has.

    Args:
        path: the file (``.gz``/``.xz`` decompressed on the fly).
        rows: rows to append to; a new :class:`RangeRows` when not given.
        progress: called with (bytes read, file size) about every MiB of the file.

    Raises:
        DataFormatError: a malformed row, an invalid address, ``start > end``, a range
            mixing families, or no rows at all; the message names the file and line.
    """
    path = Path(path)
    rows = RangeRows() if rows is None else rows
    numeric_version: IPVersion = 6 if "ipv6" in path.name.lower() else 4
    line_numbers, start_texts, end_texts, label_texts = read_range_columns(
        path, progress, "start,end,country_code", header=True
    )
    start_texts = [text.strip() for text in start_texts]
    end_texts = [text.strip() for text in end_texts]

    straddling: set[int] = set()
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
                if ":" not in start_texts[i] or ":" not in end_texts[i]:
                    fail(path, line_numbers[i], f"range mixes IPv{a} and IPv{b} addresses")
                # An IPv6 range with one end inside ::ffff:0:0/96: keep it 128-bit here,
                # add_ipv6_range sends the part inside that block to the IPv4 table.
                straddling.add(i)
                starts[i] += MAPPED_FIRST if a == 4 else 0
                ends[i] += MAPPED_FIRST if b == 4 else 0
        versions = start_versions

    for i, (start, end, version, name) in enumerate(
        zip(starts, ends, versions, label_texts, strict=True)
    ):
        if start > end:
            problem = f"start {shown(start_texts[i])} > end {shown(end_texts[i])}"
            fail(path, line_numbers[i], problem)
        check_label(path, line_numbers[i], name)
        if straddling and i in straddling:
            add_ipv6_range(rows, start, end, name)
        else:
            rows.add(version, start, end, name)
    return rows


def read(path: Path, rows: RangeRows, progress: Progress | None = None) -> RangeRows:
    """Format entry point (see :mod:`lookupd.datafiles.formats`)."""
    return read_location_csv(path, rows, progress)
