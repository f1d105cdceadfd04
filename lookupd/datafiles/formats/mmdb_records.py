"""Check the data records a MaxMind DB search tree points at before the C extension decodes them.

maxminddb's C extension reads every map key as a string without checking its type: a
corrupt file whose map key is a number, a map or an array crashed the interpreter
(SIGSEGV; found by fuzzing, ``fuzz/corpus/formats/finding-formats-mmdb-segv-map-key``).
maxminddb's pure-Python decoder is memory-safe and bounded (it limits depth, values and
payload per record), so each distinct record is decoded with it first and every map key
must come out a string. Only then does the fast reader iterate the file.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from maxminddb.decoder import Decoder

from lookupd.errors import DataFormatError

_DATA_SEPARATOR_BYTES = 16


def check_records(
    path: Path, plain: Path, node_count: int, record_size: int, records: npt.NDArray[np.uint32]
) -> None:
    """Decode each record in ``records`` (search-tree record values) and check its map keys.

    Raises:
        DataFormatError: a record past the end of the file or with a map key that is not a
            string, naming the file. maxminddb's own errors (a corrupt record) propagate
            for the caller to word.
    """
    tree_bytes = node_count * record_size // 4
    with plain.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        decoder = Decoder(data, tree_bytes + _DATA_SEPARATOR_BYTES)
        end = data.size()
        for record in records.tolist():
            offset = record - node_count + tree_bytes
            if offset >= end:
                msg = f"{path}: corrupt MaxMind DB file: a search tree record points past the end"
                raise DataFormatError(msg)
            try:
                value, _ = decoder.decode(offset)
            except TypeError:  # a map or array as a map key: unhashable
                value = {(): None}
            if not _string_keys(value):
                msg = f"{path}: corrupt MaxMind DB file: a map key in its data is not a string"
                raise DataFormatError(msg)


def _string_keys(value: Any) -> bool:
    """Whether every map key in ``value``, however nested, is a string."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                return False
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True
