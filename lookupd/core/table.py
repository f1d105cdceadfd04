"""Range tables: sorted segment starts covering an address space, and their labels.

A table is built from inclusive ``(start, end, label)`` ranges that may be unsorted,
duplicated, nested or partially overlapping. For each address, among the ranges that
cover it, the one with the greatest start wins; among equal starts, the narrowest; among
identical ranges, the later row. For nested ranges that is the most specific range, and
it is how MaxMind DB writers resolve partial overlaps (a later, more specific network is
inserted over an earlier one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from lookupd.core import _search
from lookupd.core.constants import IPV4_MAX, IPV6_MAX, UNKNOWN_LABEL
from lookupd.errors import InvalidTableError

IPVersion = Literal[4, 6]

# uint16 label indices; index 0 is "unknown".
MAX_LABELS = 1 << 16
_U64_MASK = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class RangeTable:
    """One address family's segments: ``starts[i]`` begins segment ``i``, labelled ``labels[i]``.

    ``starts`` is sorted, strictly increasing and begins at 0, so every address falls in
    exactly one segment; a gap in the data is a segment labelled ``UNKNOWN_LABEL``.
    IPv4 starts are ``uint32``; IPv6 starts are ``uint64`` rows ``(high, low)``.
    """

    version: IPVersion
    """4 or 6."""
    starts: npt.NDArray[np.uint32] | npt.NDArray[np.uint64]
    """Segment starts, shape (n,) for IPv4 and (n, 2) for IPv6."""
    labels: npt.NDArray[np.uint16]
    """Label index of each segment."""
    jump: npt.NDArray[np.uint32] = field(repr=False)
    """Top-bits jump table derived from ``starts`` (see ``lookupd.core._search_py``)."""

    @classmethod
    def from_arrays(
        cls,
        version: IPVersion,
        starts: npt.ArrayLike,
        labels: npt.ArrayLike,
        *,
        verify: bool = True,
        jump: npt.ArrayLike | None = None,
    ) -> RangeTable:
        """Wrap segment arrays (copied only if not already contiguous of the right dtype).

        Args:
            jump: the table's jump table, if already built (e.g. mapped from a snapshot);
                derived from ``starts`` when ``None``.

        Raises:
            InvalidTableError: if ``verify`` and the starts are unsorted, do not begin at
                0, or the arrays disagree in length; or ``jump`` is given and is not the
                jump table of these starts.
        """
        if version == 4:
            starts_arr: npt.NDArray[np.uint32] | npt.NDArray[np.uint64] = np.ascontiguousarray(
                starts, dtype=np.uint32
            )
        else:
            starts_arr = np.ascontiguousarray(starts, dtype=np.uint64).reshape(-1, 2)
        labels_arr = np.ascontiguousarray(labels, dtype=np.uint16)
        if verify:
            _verify(version, starts_arr, labels_arr)
        if jump is not None:
            jump_arr = np.ascontiguousarray(jump, dtype=np.uint32)
            if verify:
                _verify_jump(version, starts_arr, jump_arr)
            return cls(version, starts_arr, labels_arr, jump_arr)
        derived = (
            _search.jump_table_v4(starts_arr)  # type: ignore[arg-type]
            if version == 4
            else _search.jump_table_v6(starts_arr)  # type: ignore[arg-type]
        )
        return cls(version, starts_arr, labels_arr, derived)

    @classmethod
    def empty(cls, version: IPVersion) -> RangeTable:
        """Return a table with one unknown segment covering the whole space."""
        return cls.from_arrays(version, [0] if version == 4 else [[0, 0]], [UNKNOWN_LABEL])

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def start_ints(self) -> list[int]:
        """Return the segment starts as Python ints (128-bit for IPv6)."""
        if self.version == 4:
            return [int(s) for s in self.starts.tolist()]
        return [(hi << 64) | lo for hi, lo in self.starts.tolist()]

    def segments(self) -> list[tuple[int, int, int]]:
        """Return every segment as an inclusive ``(start, end, label)`` triple."""
        starts = self.start_ints()
        last = IPV4_MAX if self.version == 4 else IPV6_MAX
        ends = [s - 1 for s in starts[1:]] + [last]
        return list(zip(starts, ends, self.labels.tolist(), strict=True))


def _verify(
    version: IPVersion,
    starts: npt.NDArray[np.uint32] | npt.NDArray[np.uint64],
    labels: npt.NDArray[np.uint16],
) -> None:
    n = starts.shape[0]
    if n == 0:
        msg = f"IPv{version} table is empty: it must cover the whole address space"
        raise InvalidTableError(msg)
    if labels.shape[0] != n:
        msg = f"IPv{version} table has {n} starts but {labels.shape[0]} labels"
        raise InvalidTableError(msg)
    if version == 4:
        first_is_zero = starts[0] == 0
        increasing = starts[1:] > starts[:-1]
    else:
        first_is_zero = starts[0, 0] == 0 and starts[0, 1] == 0
        hi, lo = starts[:, 0], starts[:, 1]
        increasing = (hi[1:] > hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] > lo[:-1]))
    if not first_is_zero:
        msg = f"IPv{version} table does not start at address 0"
        raise InvalidTableError(msg)
    if not increasing.all():
        bad = int(np.argmin(increasing)) + 1
        msg = f"IPv{version} table starts are not strictly increasing at segment {bad}"
        raise InvalidTableError(msg)


def _verify_jump(
    version: IPVersion,
    starts: npt.NDArray[np.uint32] | npt.NDArray[np.uint64],
    jump: npt.NDArray[np.uint32],
) -> None:
    """Check that ``jump`` is exactly the jump table the search core would build.

    Cheaper than rebuilding it: entry ``p`` must index the last start at or below prefix
    ``p``'s first address, which two gathers per entry confirm.
    """
    bits = _search.JUMP_BITS_V4 if version == 4 else _search.JUMP_BITS_V6
    n = starts.shape[0]
    if jump.shape != ((1 << bits) + 1,):
        msg = f"IPv{version} jump table has shape {jump.shape}, expected ({(1 << bits) + 1},)"
        raise InvalidTableError(msg)
    if int(jump[-1]) != n - 1 or int(jump.max()) >= n:
        msg = f"IPv{version} jump table points past the {n} segments"
        raise InvalidTableError(msg)
    index = jump[:-1].astype(np.intp)
    after = np.minimum(index + 1, n - 1)
    last = index == n - 1  # no start after it to compare with
    prefixes = np.arange(1 << bits, dtype=np.uint64)
    if version == 4:
        firsts = (prefixes << np.uint64(32 - bits)).astype(np.uint32)
        at_or_below = starts[index] <= firsts
        above = last | (starts[after] > firsts)
    else:
        firsts_hi = prefixes << np.uint64(64 - bits)
        # A prefix's first address has a zero low half: a start is at or below it when its
        # high half is smaller, or equal with a zero low half.
        hi, lo = starts[index, 0], starts[index, 1]
        at_or_below = (hi < firsts_hi) | ((hi == firsts_hi) & (lo == 0))
        hi_after, lo_after = starts[after, 0], starts[after, 1]
        above = last | (hi_after > firsts_hi) | ((hi_after == firsts_hi) & (lo_after > 0))
    good = at_or_below & above
    if not good.all():
        bad = int(np.argmin(good))
        msg = f"IPv{version} jump table entry {bad} does not match the starts"
        raise InvalidTableError(msg)


def build_table(
    version: IPVersion,
    starts: list[int],
    ends: list[int],
    labels: list[int],
) -> RangeTable:
    """Build a table from inclusive ranges, resolving overlaps by the rule in this module.

    Args:
        version: 4 or 6; addresses are ints in that family's space.
        starts, ends: inclusive range bounds, one per row, in row order.
        labels: label index per row (0 paints the range as unknown).

    Raises:
        InvalidTableError: a row with ``start > end`` or outside the address space, or
            rows of different lengths.
    """
    n = len(starts)
    if len(ends) != n or len(labels) != n:
        msg = f"ranges disagree in length: {n} starts, {len(ends)} ends, {len(labels)} labels"
        raise InvalidTableError(msg)
    last = IPV4_MAX if version == 4 else IPV6_MAX
    for row, (start, end) in enumerate(zip(starts, ends, strict=True)):
        if not 0 <= start <= end <= last:
            msg = f"row {row}: invalid IPv{version} range {start}..{end}"
            raise InvalidTableError(msg)
    # Priority order: by start, then widest first, then row order; for any address the
    # covering range that comes last in this order wins.
    order = sorted(range(n), key=lambda i: (starts[i], -ends[i], i))
    seg_starts, seg_labels = _paint(
        [starts[i] for i in order], [ends[i] for i in order], [labels[i] for i in order], last
    )
    if version == 4:
        return RangeTable.from_arrays(4, seg_starts, seg_labels, verify=False)
    pairs = [(s >> 64, s & _U64_MASK) for s in seg_starts]
    return RangeTable.from_arrays(6, pairs, seg_labels, verify=False)


def _paint(
    starts: list[int], ends: list[int], labels: list[int], last: int
) -> tuple[list[int], list[int]]:
    """Sweep ranges in priority order; return merged segment starts and labels.

    A stack holds the ranges that have begun; the top-most one still covering the sweep
    position is the winner there.
    """
    seg_starts: list[int] = []
    seg_labels: list[int] = []
    stack: list[tuple[int, int]] = []  # (end, label), latest range on top
    pos = 0

    def fill_until(until: int) -> None:
        """Emit segments for [pos, until) from the stack, or unknown where it is empty."""
        nonlocal pos
        while pos < until:
            while stack and stack[-1][0] < pos:
                stack.pop()
            if stack:
                end, label = stack[-1]
                upto = min(end + 1, until)
            else:
                label, upto = UNKNOWN_LABEL, until
            if not seg_labels or seg_labels[-1] != label:
                seg_starts.append(pos)
                seg_labels.append(label)
            pos = upto

    for start, end, label in zip(starts, ends, labels, strict=True):
        fill_until(start)
        stack.append((end, label))
    fill_until(last + 1)
    return seg_starts, seg_labels


@dataclass(frozen=True, slots=True)
class Tables:
    """One database's IPv4 and IPv6 tables and the label table they index."""

    v4: RangeTable
    """The IPv4 table."""
    v6: RangeTable
    """The IPv6 table."""
    label_names: tuple[str, ...]
    """Label table; ``label_names[0] == ""`` is the unknown label."""

    def table(self, version: IPVersion) -> RangeTable:
        """Return the table of one family."""
        return self.v4 if version == 4 else self.v6

    def canonical(self) -> Tables:
        """Return the same answers in canonical form: these tables if they already are.

        Canonical: the label table is ``""`` then the labels some segment uses, sorted, and
        no two adjacent segments share a label. Two data sets that answer alike are then
        the same arrays, so a checksum of them (the data version id) is the same too,
        whatever order a source named its labels in.
        """
        used = np.zeros(len(self.label_names), dtype=bool)
        used[UNKNOWN_LABEL] = True
        for table in (self.v4, self.v6):
            used[table.labels] = True
        # "" sorts first: the unknown label keeps index 0.
        names = sorted(
            name for name, keep in zip(self.label_names, used.tolist(), strict=True) if keep
        )
        index = {name: code for code, name in enumerate(names)}
        remap = np.array([index.get(name, 0) for name in self.label_names], dtype=np.uint16)
        in_order = bool((remap == np.arange(len(remap), dtype=np.uint16)).all())
        if in_order and all(_is_coalesced(table) for table in (self.v4, self.v6)):
            return self
        v4, v6 = (_coalesced(table, remap[table.labels]) for table in (self.v4, self.v6))
        return Tables(v4, v6, tuple(names))


def _is_coalesced(table: RangeTable) -> bool:
    """Whether no two adjacent segments of ``table`` share a label."""
    return not bool((table.labels[1:] == table.labels[:-1]).any())


def _coalesced(table: RangeTable, labels: npt.NDArray[np.uint16]) -> RangeTable:
    """``table`` relabelled with ``labels``, adjacent segments of one label made one."""
    keep = np.ones(labels.shape[0], dtype=bool)
    keep[1:] = labels[1:] != labels[:-1]
    return RangeTable.from_arrays(table.version, table.starts[keep], labels[keep], verify=False)
