"""A plain-Python model of range lookups: ``ipaddress`` + ``bisect`` over the raw rows.

Deliberately built differently from ``lookupd.core.table`` (no painting, no segments): for an
address, scan back from the last row starting at or below it and take the first row that
covers it, rows being ordered so that the first hit is the winner under the overlap rule
(greatest start, then narrowest, then later row).
"""

from __future__ import annotations

import csv
import io
import ipaddress
import lzma
from bisect import bisect_right
from pathlib import Path


class ReferenceRanges:
    """Answer "which label covers this address?" straight from inclusive rows."""

    def __init__(self, rows: list[tuple[int, int, str]]) -> None:
        # Scan order is the reverse of priority: later in this list wins.
        order = sorted(range(len(rows)), key=lambda i: (rows[i][0], -rows[i][1], i))
        self.starts = [rows[i][0] for i in order]
        self.ends = [rows[i][1] for i in order]
        self.labels = [rows[i][2] for i in order]
        # max_end[i]: the furthest any of rows 0..i reaches; scanning back stops below it.
        self.max_end: list[int] = []
        furthest = -1
        for end in self.ends:
            furthest = max(furthest, end)
            self.max_end.append(furthest)

    def label_at(self, address: int) -> str | None:
        """Return the winning row's label for ``address``, or None if no row covers it."""
        i = bisect_right(self.starts, address) - 1
        while i >= 0 and self.max_end[i] >= address:
            if self.ends[i] >= address:
                return self.labels[i]
            i -= 1
        return None

    def edges(self) -> set[int]:
        """Every row's first and last address and their outside neighbours."""
        points: set[int] = set()
        for start, end in zip(self.starts, self.ends, strict=True):
            points.update((start - 1, start, end, end + 1))
        return points


def read_rows(path: Path) -> list[tuple[int, int, str]]:
    """Read an (optionally xz-compressed) ``start,end,label`` CSV with ``ipaddress``."""
    raw = path.read_bytes()
    if path.suffix == ".xz":
        raw = lzma.decompress(raw)
    rows = []
    for start, end, label in csv.reader(io.StringIO(raw.decode())):
        rows.append((int(ipaddress.ip_address(start)), int(ipaddress.ip_address(end)), label))
    return rows
