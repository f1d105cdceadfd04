"""Combine range tables: merge sources by precedence, count addresses, compare two tables.

Every table operation here works on whole segment arrays with numpy: the segment starts of
the tables involved are united, each table's label at each united start is found with the
search core, and the result is re-merged where neighbouring segments end up equal.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from lookupd.core import _search
from lookupd.core.constants import IPV4_MAX, IPV6_MAX, UNKNOWN_LABEL
from lookupd.core.table import MAX_LABELS, IPVersion, RangeTable, Tables
from lookupd.datafiles.formats import detect_format, read_source, read_with_their_blocks
from lookupd.datafiles.progress import Reporter
from lookupd.datafiles.snapshot import FORMAT, is_snapshot, load_snapshot
from lookupd.datafiles.source_date import source_date
from lookupd.datafiles.sources import SourceDate, SourceInfo, fingerprint, oldest
from lookupd.errors import DataFormatError, InvalidTableError

_Starts = npt.NDArray[np.uint32] | npt.NDArray[np.uint64]
_Labels = TypeVar("_Labels", npt.NDArray[np.uint16], npt.NDArray[np.uint32])
_U32_MASK = np.uint64(0xFFFF_FFFF)


@dataclass(frozen=True, slots=True)
class Merged:
    """Sources read, resolved and laid over each other, ready to be written."""

    tables: Tables
    """The merged tables."""
    sources: tuple[SourceInfo, ...]
    """Each source, in precedence order (later wins)."""

    @property
    def data_date(self) -> SourceDate:
        """Return the date of the data: its oldest source's."""
        return oldest(source.data_date for source in self.sources)

    @property
    def rows(self) -> tuple[int, int]:
        """Return the rows read from all sources, (IPv4, IPv6)."""
        return (
            sum(source.rows[0] for source in self.sources),
            sum(source.rows[1] for source in self.sources),
        )

    @property
    def notes(self) -> dict[str, int]:
        """Return all readers' notes, summed over the sources."""
        total: Counter[str] = Counter()
        for source in self.sources:
            total.update(source.notes)
        return dict(sorted(total.items()))


def merge_sources(
    paths: Sequence[str | os.PathLike[str]],
    *,
    formats: Sequence[str | None] | None = None,
    dates: Sequence[SourceDate | None] | None = None,
    report: Reporter | None = None,
) -> Merged:
    """Read each source, resolve its overlaps by the table rule, then overlay them in order.

    Args:
        paths: source files (or GeoLite2 CSV directories); a later one overrides an earlier
            one wherever it has a known label. GeoLite2 Locations files given beside their
            Blocks files are read with them (see
            :func:`~lookupd.datafiles.formats.read_with_their_blocks`).
        formats: a format name per path (``None`` to detect it), or ``None`` to detect all.
        dates: the date of each path's data as the caller knows it (a download's
            ``Last-Modified``), used where the file itself tells none (see
            :func:`~lookupd.datafiles.source_date.source_date`); ``None``: not known.
        report: told each phase and, while reading, the reader's progress.

    Raises:
        DataFormatError: a source cannot be read (the message names it), or holds no ranges.
        ValueError: no paths, or ``formats`` of another length.
    """
    if not paths:
        msg = "no sources to merge"
        raise ValueError(msg)
    formats = [None] * len(paths) if formats is None else list(formats)
    if len(formats) != len(paths):
        msg = f"{len(formats)} formats for {len(paths)} sources"
        raise ValueError(msg)
    dates = [None] * len(paths) if dates is None else list(dates)
    if len(dates) != len(paths):
        msg = f"{len(dates)} dates for {len(paths)} sources"
        raise ValueError(msg)
    layers: list[Tables] = []
    sources: list[SourceInfo] = []
    joined = read_with_their_blocks([Path(given) for given in paths])
    for number, (given, forced, known) in enumerate(zip(paths, formats, dates, strict=True), 1):
        if number - 1 in joined:
            continue  # a Locations file, read with the Blocks files beside it
        path = Path(given)
        if report is not None:
            of = f" ({number}/{len(paths)})" if len(paths) > 1 else ""
            report.phase(f"reading {path.name}{of}")
        layer, name, counts, notes, recorded = _read_layer(path, forced, report)
        layers.append(layer)
        size, digest = fingerprint(path)
        date = recorded or source_date(path, known)
        sources.append(
            SourceInfo(str(given), name, size, digest, counts, notes, date.date, date.origin)
        )
    if report is not None and len(layers) > 1:
        report.phase(f"merging {len(layers)} sources")
    return Merged(overlay(layers), tuple(sources))


def _read_layer(
    path: Path, forced: str | None, report: Reporter | None
) -> tuple[Tables, str, tuple[int, int], dict[str, int], SourceDate | None]:
    """Read one source into tables; return them, its format, row counts, notes and the
    date of its data if the source records it (a snapshot does).

    A snapshot is a source too (its tables are used as they are), so an operator can lay
    a corrections file over a snapshot already built. It is recognised by its content
    whatever ``forced`` says: ``--format`` given once for all sources names the others'.
    """
    if is_snapshot(path):
        snapshot = load_snapshot(path)
        counts = snapshot.header["counts"]
        rows_of = (counts["ipv4"].get("rows", 0), counts["ipv6"].get("rows", 0))
        return snapshot.tables, FORMAT, rows_of, dict(snapshot.header["notes"]), snapshot.data_date
    name = forced or detect_format(path)
    rows = read_source(path, format=name, progress=None if report is None else report.update)
    if len(rows) == 0:
        msg = f"{path}: no ranges in source"
        raise DataFormatError(msg)
    if report is not None:
        report.phase(f"resolving overlaps in {path.name}")
    v4, v6 = rows.tables()
    layer = Tables(v4, v6, tuple(rows.label_names))
    return layer, name, (len(rows.v4[0]), len(rows.v6[0])), dict(sorted(rows.notes.items())), None


def overlay(layers: Sequence[Tables]) -> Tables:
    """Lay tables over each other: at each address the last layer with a known label wins.

    A later layer's gaps (unknown label) leave the earlier layers' labels in place, so a
    small corrections file laid over a vendor database changes only the ranges it lists.
    The result's label table is canonical: ``""`` then the labels in use, sorted, so the
    same answers always give the same arrays whatever order the sources named them in.

    Raises:
        ValueError: if ``layers`` is empty.
        InvalidTableError: if the layers use more distinct labels than a table can hold.
    """
    if not layers:
        msg = "overlay() needs at least one layer"
        raise ValueError(msg)
    names = sorted({name for layer in layers for name in layer.label_names} - {""})
    if len(names) >= MAX_LABELS:
        msg = f"the sources have {len(names)} distinct labels, more than {MAX_LABELS - 1}"
        raise InvalidTableError(msg)
    union = ("", *names)
    index = {name: i for i, name in enumerate(union)}
    remaps = [
        np.array([index[name] for name in layer.label_names], dtype=np.uint16) for layer in layers
    ]
    merged: dict[IPVersion, tuple[_Starts, npt.NDArray[np.uint16]]] = {}
    for version in (4, 6):
        # A layer with no data in this family (e.g. an IPv4-only file) changes nothing.
        pairs = [
            (layer.table(version), remap)
            for layer, remap in zip(layers, remaps, strict=True)
            if len(layer.table(version)) > 1 or layer.table(version).labels[0] != UNKNOWN_LABEL
        ]
        tables = [table for table, _ in pairs] or [RangeTable.empty(version)]
        starts = _union_starts(version, tables)
        labels = np.zeros(starts.shape[0], dtype=np.uint16)
        for table, remap in pairs:
            here = remap[table.labels[_segment_of(table, starts)]]
            labels = np.where(here != UNKNOWN_LABEL, here, labels)
        merged[version] = _coalesce(starts, labels)
    v4_starts, v4_labels = merged[4]
    v6_starts, v6_labels = merged[6]
    # Labels no segment uses any more (overridden everywhere) are dropped here.
    return Tables(
        RangeTable.from_arrays(4, v4_starts, v4_labels, verify=False),
        RangeTable.from_arrays(6, v6_starts, v6_labels, verify=False),
        union,
    ).canonical()


def address_totals(table: RangeTable) -> dict[int, int]:
    """Return the number of addresses per label index (exact; labels with none left out)."""
    limbs, last_size = _size_limbs(table.version, table.starts)
    keys = table.labels.astype(np.intp)
    totals = _sum_limbs(keys[:-1], limbs)
    last = int(keys[-1])
    totals[last] = totals.get(last, 0) + last_size
    return totals


@dataclass(frozen=True, slots=True)
class FamilyDiff:
    """The address ranges of one family whose label differs between two tables.

    Adjacent changed ranges with the same (old, new) pair are one range.
    """

    version: IPVersion
    """4 or 6."""
    label_names: tuple[str, ...]
    """Label table that ``old`` and ``new`` index (both tables' labels, by name)."""
    starts: _Starts
    """First address of each changed range (``uint32``, or ``uint64`` (high, low) rows)."""
    ends: list[int]
    """Last address of each changed range."""
    old: npt.NDArray[np.uint16]
    """Label index of each range in the old table."""
    new: npt.NDArray[np.uint16]
    """Label index of each range in the new table."""
    totals: dict[tuple[str, str], int]
    """Addresses per (old label, new label) pair, ``""`` standing for unknown."""

    def __len__(self) -> int:
        return int(self.old.shape[0])

    @property
    def addresses(self) -> int:
        """Return the number of addresses whose label changed."""
        return sum(self.totals.values())

    def ranges(self, limit: int | None = None) -> Iterator[tuple[int, int, str, str]]:
        """Yield (first address, last address, old label, new label), at most ``limit``."""
        n = len(self) if limit is None else min(limit, len(self))
        starts = self.starts[:n]
        firsts = (
            [int(s) for s in starts.tolist()]
            if self.version == 4
            else [(hi << 64) | lo for hi, lo in starts.tolist()]
        )
        for first, last, old, new in zip(
            firsts, self.ends[:n], self.old[:n].tolist(), self.new[:n].tolist(), strict=True
        ):
            yield first, last, self.label_names[old], self.label_names[new]


def diff(old: Tables, new: Tables) -> tuple[FamilyDiff, FamilyDiff]:
    """Return the (IPv4, IPv6) ranges whose label differs from ``old`` to ``new``.

    Labels are compared by name, so two tables with differently ordered label tables but
    the same answers have no differences.
    """
    names = sorted((set(old.label_names) | set(new.label_names)) - {""})
    union = ("", *names)
    index = {name: i for i, name in enumerate(union)}
    remap_old = np.array([index[name] for name in old.label_names], dtype=np.uint16)
    remap_new = np.array([index[name] for name in new.label_names], dtype=np.uint16)
    return (
        _diff_family(4, old.v4, new.v4, remap_old, remap_new, union),
        _diff_family(6, old.v6, new.v6, remap_old, remap_new, union),
    )


def _diff_family(
    version: IPVersion,
    old: RangeTable,
    new: RangeTable,
    remap_old: npt.NDArray[np.uint16],
    remap_new: npt.NDArray[np.uint16],
    union: tuple[str, ...],
) -> FamilyDiff:
    starts = _union_starts(version, [old, new])
    old_labels = remap_old[old.labels[_segment_of(old, starts)]]
    new_labels = remap_new[new.labels[_segment_of(new, starts)]]
    # Pack each (old, new) pair into one number so that runs of equal pairs coalesce.
    pairs = (old_labels.astype(np.uint32) << np.uint32(16)) | new_labels
    starts, pairs = _coalesce(starts, pairs)
    limbs, last_size = _size_limbs(version, starts)
    changed = (pairs >> np.uint32(16)) != (pairs & np.uint32(0xFFFF))
    last_changed = bool(changed[-1])
    keep = np.flatnonzero(changed)
    body = keep[keep < pairs.shape[0] - 1]
    per_pair = _sum_limbs(pairs[body].astype(np.intp), limbs[body])
    if last_changed:
        key = int(pairs[-1])
        per_pair[key] = per_pair.get(key, 0) + last_size
    totals = {
        (union[key >> 16], union[key & 0xFFFF]): count
        for key, count in sorted(per_pair.items(), key=lambda item: (-item[1], item[0]))
    }
    ends = _ends(version, starts, keep)
    return FamilyDiff(
        version,
        union,
        starts[keep],
        ends,
        (pairs[keep] >> np.uint32(16)).astype(np.uint16),
        (pairs[keep] & np.uint32(0xFFFF)).astype(np.uint16),
        totals,
    )


def _ends(version: IPVersion, starts: _Starts, keep: npt.NDArray[np.intp]) -> list[int]:
    """Return the last address of the segments at ``keep`` (one less than the next start)."""
    last = IPV4_MAX if version == 4 else IPV6_MAX
    following = keep + 1
    inside = following[following < starts.shape[0]]
    if version == 4:
        ends = [int(s) - 1 for s in starts[inside].tolist()]
    else:
        ends = [((hi << 64) | lo) - 1 for hi, lo in starts[inside].tolist()]
    if inside.shape[0] < keep.shape[0]:
        ends.append(last)
    return ends


def _union_starts(version: IPVersion, tables: Sequence[RangeTable]) -> _Starts:
    """Return the sorted union of the tables' segment starts."""
    if len(tables) == 1:
        return tables[0].starts
    if version == 4:
        # Sort and drop repeats rather than np.unique, whose hashing lost to the sort here
        # (bench/README.md, "Figures behind design choices in the code").
        starts = np.sort(np.concatenate([table.starts for table in tables]))
        fresh_v4 = np.ones(starts.shape[0], dtype=bool)
        fresh_v4[1:] = starts[1:] != starts[:-1]
        return starts[fresh_v4]
    rows = np.concatenate([table.starts for table in tables])
    rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]
    fresh = np.ones(rows.shape[0], dtype=bool)
    fresh[1:] = (rows[1:, 0] != rows[:-1, 0]) | (rows[1:, 1] != rows[:-1, 1])
    return np.ascontiguousarray(rows[fresh])


def _segment_of(table: RangeTable, keys: _Starts) -> npt.NDArray[np.int32]:
    """Return the index of the segment of ``table`` holding each key."""
    out = np.empty(keys.shape[0], dtype=np.int32)
    if table.version == 4:
        _search.find_many_v4(table.starts, table.jump, keys, out)  # type: ignore[arg-type]
    else:
        _search.find_many_v6(table.starts, table.jump, keys, out)  # type: ignore[arg-type]
    return out


def _coalesce(starts: _Starts, labels: _Labels) -> tuple[_Starts, _Labels]:
    """Merge each segment into the one before it when their labels are equal."""
    first = np.ones(labels.shape[0], dtype=bool)
    first[1:] = labels[1:] != labels[:-1]
    # numpy types a masked index as a generic array: the dtype is the input's.
    return np.ascontiguousarray(starts[first]), labels[first]  # type: ignore[return-value]


def _size_limbs(version: IPVersion, starts: _Starts) -> tuple[npt.NDArray[np.uint64], int]:
    """Return the sizes of all segments but the last as 32-bit limbs, and the last's size.

    Limbs are columns of a (n - 1, k) ``uint64`` array, least significant first, each below
    2**32: summed in ``uint64`` they cannot overflow for fewer than 2**32 segments.
    """
    if version == 4:
        wide = starts.astype(np.uint64)
        sizes = wide[1:] - wide[:-1]
        limbs = np.stack([sizes & _U32_MASK, sizes >> np.uint64(32)], axis=1)
        return limbs, IPV4_MAX + 1 - int(starts[-1])
    hi, lo = starts[:, 0], starts[:, 1]
    size_lo = lo[1:] - lo[:-1]  # wraps modulo 2**64; the borrow goes to the high half
    borrow = (lo[1:] < lo[:-1]).astype(np.uint64)
    size_hi = hi[1:] - hi[:-1] - borrow
    limbs = np.stack(
        [
            size_lo & _U32_MASK,
            size_lo >> np.uint64(32),
            size_hi & _U32_MASK,
            size_hi >> np.uint64(32),
        ],
        axis=1,
    )
    last_start = (int(hi[-1]) << 64) | int(lo[-1])
    return limbs, IPV6_MAX + 1 - last_start


def _sum_limbs(keys: npt.NDArray[np.intp], limbs: npt.NDArray[np.uint64]) -> dict[int, int]:
    """Sum the limb-split sizes per key exactly; return {key: total}."""
    if keys.shape[0] == 0:
        return {}
    unique, inverse = np.unique(keys, return_inverse=True)
    acc = np.zeros((unique.shape[0], limbs.shape[1]), dtype=np.uint64)
    np.add.at(acc, inverse, limbs)
    return {
        key: sum(value << (32 * i) for i, value in enumerate(row))
        for key, row in zip(unique.tolist(), acc.tolist(), strict=True)
        if any(row)
    }
