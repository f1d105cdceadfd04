"""Label the data records a MaxMind DB search tree points at: each distinct record once.

Records are shared by many networks (a City database has far fewer records than networks),
so each distinct one is checked and labelled once, by the core (``lookupd.core._mmdb``),
without building a Python object: it checks the whole record as maxminddb's decoders would
(bounds, sizes, types, nesting, pointers, UTF-8) and refuses a map key that is not a string
(maxminddb's C extension read any key as a string: a corrupt file whose map key is a number,
a map or an array crashed the interpreter; found by fuzzing,
``fuzz/corpus/formats/finding-formats-mmdb-segv-map-key``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lookupd.core import _mmdb
from lookupd.core._mmdb_py import (
    KIND_COUNTRY,
    KIND_COUNTRY_CODE,
    KIND_NONE,
    KIND_REGISTERED_COUNTRY,
)
from lookupd.errors import DataFormatError

__all__ = [
    "KIND_COUNTRY",
    "KIND_COUNTRY_CODE",
    "KIND_NONE",
    "KIND_REGISTERED_COUNTRY",
    "RecordLabels",
    "label_records",
]

_DATA_SEPARATOR_BYTES = 16
_MISSING = ""  # never a name: a label is never empty


@dataclass(frozen=True, slots=True)
class RecordLabels:
    """The label of each distinct data record, and which record each network has."""

    kinds: npt.NDArray[np.uint8]
    """Per distinct record: which rule labels it (``KIND_*``; ``KIND_NONE``: no country)."""
    names: list[str | None]
    """Per distinct record: its label (``US``, ``UA-43``), None without one."""
    of_network: npt.NDArray[np.intp]
    """Per network: the index of its distinct record."""


def label_records(
    path: Path, data: memoryview, node_count: int, records: npt.NDArray[np.uint32]
) -> RecordLabels:
    """Check and label the data records that ``records`` (search-tree values) point at.

    Args:
        path: the file, for messages.
        data: the data section, from its first byte to the end of the file.
        node_count: the search tree's node count.
        records: each network's record value, from the tree walk.

    Raises:
        DataFormatError: a record outside the data section or corrupt, or a map key that is
            not a string, naming the file.
    """
    offsets = records.astype(np.int64) - (node_count + _DATA_SEPARATOR_BYTES)
    if offsets.size and int(offsets.min()) < 0:
        separator = "a search tree record points into the separator before the data section"
        raise _corrupt(path, separator)
    if offsets.size and int(offsets.max()) >= len(data):
        raise _corrupt(path, "a search tree record points past the end")
    distinct, of_network = _distinct(offsets.astype(np.uint32))
    kinds = np.empty(len(distinct), dtype=np.uint8)
    spans = np.empty((len(distinct), 4), dtype=np.uint32)
    problem: str | None = None
    try:
        _mmdb.find_labels(data, distinct, kinds, spans)
    except ValueError as exc:
        problem = str(exc)
    # Raised here, not in the handler: the core's error, and the views of the mapped file its
    # frames hold, are gone once the handler ends, so the caller can close the map.
    if problem is not None:
        raise _corrupt(path, problem)
    # Records share their strings (pointers): decode each distinct span once.
    decoded: dict[tuple[int, ...], str | None] = {}
    names = []
    for kind, span in zip(kinds.tolist(), spans.tolist(), strict=True):
        key = (kind, *span)
        name = decoded.get(key, _MISSING)
        if name == _MISSING:
            name = decoded[key] = _name(data, kind, span)
        names.append(name)
    return RecordLabels(kinds, names, of_network)


def _distinct(
    offsets: npt.NDArray[np.uint32],
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.intp]]:
    """The distinct values of ``offsets``, sorted, and each offset's index among them (one
    sort, in any order of equal values: numpy's hashing ``unique`` and a binary search per
    network cost more)."""
    order = np.argsort(offsets)
    ordered = offsets[order]
    first = np.empty(len(ordered), dtype=np.bool_)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    which = np.empty(len(ordered), dtype=np.intp)
    which[order] = np.cumsum(first) - 1
    return ordered[first], which


def _name(data: memoryview, kind: int, span: list[int]) -> str | None:
    if kind == KIND_NONE:
        return None
    start, size, sub_start, sub_size = span
    # The core checked that both are UTF-8.
    code = bytes(data[start : start + size]).decode()
    if sub_size:
        return f"{code}-{bytes(data[sub_start : sub_start + sub_size]).decode()}"
    return code


def _corrupt(path: Path, problem: str) -> DataFormatError:
    return DataFormatError(f"{path}: corrupt MaxMind DB file: {problem}")
