"""Save and load compiled range tables as compressed ``.npz`` archives.

This is the form of the data embedded in the package: both families' segment arrays,
the label table and a JSON metadata record, deflate-compressed (a few MB). Loading
decompresses into memory; it never unpickles (``allow_pickle=False``).
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from lookupd.core.table import RangeTable, Tables
from lookupd.errors import DataFormatError, InvalidTableError

FORMAT = "lookupd-compiled-npz"
FORMAT_VERSION = 1
_ARRAYS = ("v4_starts", "v4_labels", "v6_starts", "v6_labels", "label_names", "metadata")


def save_compiled(
    path: str | os.PathLike[str],
    v4: RangeTable,
    v6: RangeTable,
    label_names: list[str] | tuple[str, ...],
    metadata: dict[str, Any],
) -> None:
    """Write the tables to ``path`` (written to a temporary name, then renamed).

    Written in canonical form (:meth:`Tables.canonical`), as a snapshot is.
    """
    path = Path(path)
    canonical = Tables(v4, v6, tuple(label_names)).canonical()
    v4, v6, label_names = canonical.v4, canonical.v6, canonical.label_names
    record = {"format": FORMAT, "format_version": FORMAT_VERSION, **metadata}
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        np.savez_compressed(
            handle,
            # Deltas of sorted starts are small numbers, which deflate packs much better.
            v4_starts=np.diff(v4.starts, prepend=np.uint32(0)),
            v4_labels=v4.labels,
            v6_starts=v6.starts,
            v6_labels=v6.labels,
            label_names=np.array(label_names, dtype=np.str_),
            metadata=np.frombuffer(json.dumps(record, sort_keys=True).encode(), dtype=np.uint8),
        )
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def load_compiled(
    path: str | os.PathLike[str],
) -> tuple[RangeTable, RangeTable, list[str], dict[str, Any]]:
    """Read tables written by :func:`save_compiled`.

    Raises:
        DataFormatError: the file is not a compiled archive, is truncated, or is of an
            unknown format version.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            archive = np.load(handle, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                msg = f"{path}: not a lookupd compiled archive (a bare array, not an .npz)"
                raise DataFormatError(msg)
            missing = [name for name in _ARRAYS if name not in archive.files]
            if missing:
                msg = f"{path}: not a lookupd compiled archive (missing {', '.join(missing)})"
                raise DataFormatError(msg)
            with archive:
                arrays = {name: archive[name] for name in _ARRAYS}
        metadata = json.loads(arrays["metadata"].tobytes())
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        # json.JSONDecodeError and UnicodeDecodeError are ValueErrors too.
        msg = f"{path}: cannot read compiled archive: {exc}"
        raise DataFormatError(msg) from exc
    if not isinstance(metadata, dict):
        msg = f"{path}: metadata is not a JSON object"
        raise DataFormatError(msg)
    if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        msg = (
            f"{path}: unsupported compiled format {metadata.get('format')!r} "
            f"version {metadata.get('format_version')!r} (expected {FORMAT} {FORMAT_VERSION})"
        )
        raise DataFormatError(msg)
    v4_starts = np.cumsum(arrays["v4_starts"], dtype=np.uint32)
    try:
        v4 = RangeTable.from_arrays(4, v4_starts, arrays["v4_labels"])
        v6 = RangeTable.from_arrays(6, arrays["v6_starts"], arrays["v6_labels"])
    except (InvalidTableError, ValueError, TypeError) as exc:
        msg = f"{path}: invalid table: {exc}"
        raise DataFormatError(msg) from exc
    label_names = [str(name) for name in arrays["label_names"].reshape(-1).tolist()]
    if not label_names or label_names[0] != "":
        msg = f"{path}: label table must start with the unknown label ''"
        raise DataFormatError(msg)
    for table in (v4, v6):
        if table.labels.max(initial=0) >= len(label_names):
            msg = f"{path}: IPv{table.version} labels point past the label table"
            raise DataFormatError(msg)
    # Label codes in the order a snapshot of the same answers has (a no-op for files
    # save_compiled wrote, which it writes canonical).
    tables = Tables(v4, v6, tuple(label_names)).canonical()
    return tables.v4, tables.v6, list(tables.label_names), metadata
