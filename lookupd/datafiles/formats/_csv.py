"""CSV records read in bounded batches of lines, each record numbered by its first line.

The csv module, iterating a file, keeps pulling lines while a quoted field is open: one
unclosed quote, or a crafted file of short lines each ending inside quotes, makes a single
record of the whole file in memory. Here the csv module parses a batch of whole lines at a
time (C speed); a record still open at a batch's end is carried into the next batch, and
refused once it has run on for more than :data:`~lookupd.datafiles.formats.lines.MAX_LINE_BYTES`.
Quoted fields may span lines (a GeoLite2 Locations name may); records may not grow unbounded.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, NoReturn

from lookupd.datafiles.formats.lines import MAX_LINE_BYTES
from lookupd.errors import DataFormatError

Batch = tuple[Sequence[int], list[list[str]]]
"""Records (a blank line is an empty record) and the number of each one's first line."""

# Characters of whole lines per batch (a few hundred records): enough that the per-batch
# work vanishes, few enough that its records stay in the CPU cache (64 KiB batches read a
# GeoLite2 Blocks file a quarter slower; bench/README.md, "Figures behind design choices").
_BATCH_CHARS = 1 << 14
# Appended to a batch: it reads back as this one-field record unless a quoted field left
# open by the batch's last line swallowed it.
_END = "lookupd:end-of-batch"
_END_LINE = _END + "\n"


def csv_batches(handle: IO[str], path: Path, *, strict: bool) -> Iterator[Batch]:
    """Yield the records of ``handle`` batch by batch, with the number of each one's line.

    Raises:
        DataFormatError: a malformed record (with ``strict``: bad quoting), or a record
            running on over more than :data:`MAX_LINE_BYTES`; the message names the line.
    """
    first = 1  # the number of lines[0]
    carry: list[str] = []
    while True:
        fresh = handle.readlines(_BATCH_CHARS)
        lines = carry + fresh if carry else fresh
        if not lines:
            return
        numbers, records, open_from = _parse(path, lines, first, strict, final=not fresh)
        if records:
            yield numbers, records
        if open_from is None:
            first += len(lines)
            carry = []
            continue
        carry = lines[open_from:]
        first += open_from
        if sum(map(len, carry)) > MAX_LINE_BYTES:
            problem = (
                f"a record runs on over more than {MAX_LINE_BYTES:,} characters of lines"
                " (a quoted field left open?)"
            )
            fail(path, first, problem)


def nonblank(batches: Iterator[Batch]) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, record) for each record that is not a blank line."""
    for numbers, records in batches:
        for number, record in zip(numbers, records, strict=True):
            if record:
                yield number, record


def csv_header(path: Path, rows: Iterator[tuple[int, list[str]]]) -> tuple[int, dict[str, int]]:
    """Read the header (the first record of ``rows``): its line and name -> column."""
    for line, names in rows:
        # Strip a UTF-8 byte order mark, which some tools write before the first name.
        return line, {name.strip().lstrip("\ufeff"): i for i, name in enumerate(names)}
    msg = f"{path}: empty file (expected a header line)"
    raise DataFormatError(msg)


def fail(path: Path, line_number: int, problem: str) -> NoReturn:
    """Raise a DataFormatError naming the file and line."""
    msg = f"{path}:{line_number}: {problem}"
    raise DataFormatError(msg)


def _parse(
    path: Path, lines: list[str], first: int, strict: bool, *, final: bool
) -> tuple[Sequence[int], list[list[str]], int | None]:
    """Parse a batch: (line numbers, records, index of the line an open record starts at).

    The common batch, one record per line and none left open, costs one pass of the csv
    module; others are parsed again record by record to number them.
    """
    reader = csv.reader(lines if final else [*lines, _END_LINE], strict=strict)
    try:
        records = list(reader)
    except csv.Error as exc:
        if final or reader.line_num <= len(lines):
            fail(path, first + reader.line_num - 1, f"malformed CSV record: {exc}")
        return _parse_slowly(path, lines, first, strict, final=final)
    if final and len(records) == len(lines):
        return range(first, first + len(lines)), records, None
    if len(records) == len(lines) + 1 and records[-1] == [_END]:
        records.pop()
        return range(first, first + len(lines)), records, None
    return _parse_slowly(path, lines, first, strict, final=final)


def _parse_slowly(
    path: Path, lines: list[str], first: int, strict: bool, *, final: bool
) -> tuple[list[int], list[list[str]], int | None]:
    """:func:`_parse` for a batch with a record spanning lines, or one left open."""
    reader = csv.reader(lines if final else [*lines, _END_LINE], strict=strict)
    numbers: list[int] = []
    records: list[list[str]] = []
    start = 0  # index of the line the next record starts at
    try:
        for record in reader:
            if reader.line_num > len(lines):
                # The end marker: alone, the batch ended cleanly; swallowed, a record is open.
                return numbers, records, None if start == len(lines) else start
            numbers.append(first + start)
            records.append(record)
            start = reader.line_num
    except csv.Error as exc:
        if final or reader.line_num <= len(lines):
            fail(path, first + reader.line_num - 1, f"malformed CSV record: {exc}")
        return numbers, records, start
    return numbers, records, None
