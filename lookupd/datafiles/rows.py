"""Inclusive ranges read from data files, before overlaps are resolved into tables."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from lookupd.core.table import MAX_LABELS, IPVersion, RangeTable, build_table
from lookupd.errors import DataFormatError, quoted

MAX_LABEL_CHARS = 64
"""The longest label a source may give: codes are a few characters (``US``, ``UA-43``)."""


@dataclass(slots=True)
class RangeRows:
    """Inclusive ranges read from files, one list per family, in file order."""

    label_names: list[str] = field(default_factory=lambda: [""])
    """Label table; index 0 is the unknown label."""
    v4: tuple[list[int], list[int], list[int]] = field(default_factory=lambda: ([], [], []))
    """IPv4 (starts, ends, label indices)."""
    v6: tuple[list[int], list[int], list[int]] = field(default_factory=lambda: ([], [], []))
    """IPv6 (starts, ends, label indices)."""
    notes: Counter[str] = field(default_factory=Counter)
    """Facts a reader wants reported, counted (e.g. rows that fell back to another field)."""
    _label_index: dict[str, int] = field(default_factory=dict, repr=False)

    def label(self, name: str) -> int:
        """Return the index of ``name`` in the label table, adding it if new."""
        index = self._label_index.get(name)
        if index is None:
            if len(name) > MAX_LABEL_CHARS:
                msg = f"label longer than {MAX_LABEL_CHARS} characters: {quoted(name)}"
                raise DataFormatError(msg)
            index = len(self.label_names)
            if index >= MAX_LABELS:
                msg = f"more than {MAX_LABELS - 1} distinct labels"
                raise DataFormatError(msg)
            self._label_index[name] = index
            self.label_names.append(name)
        return index

    def add(self, version: IPVersion, start: int, end: int, label: str) -> None:
        """Append one inclusive range (no checks: readers validate with file and line)."""
        family = self.v4 if version == 4 else self.v6
        family[0].append(start)
        family[1].append(end)
        family[2].append(self.label(label))

    def tables(self) -> tuple[RangeTable, RangeTable]:
        """Resolve overlaps and return the (IPv4, IPv6) tables."""
        return build_table(4, *self.v4), build_table(6, *self.v6)

    def __len__(self) -> int:
        return len(self.v4[0]) + len(self.v6[0])
