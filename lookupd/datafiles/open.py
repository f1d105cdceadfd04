"""Open a database from any data lookupd reads: the embedded data, a snapshot, a source file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from lookupd.core.database import Database, DataInfo
from lookupd.datafiles.merge import merge_sources
from lookupd.datafiles.npz import load_compiled
from lookupd.datafiles.private_copy import PrivateCopies
from lookupd.datafiles.progress import Reporter
from lookupd.datafiles.snapshot import is_snapshot, load_snapshot
from lookupd.errors import DataFormatError

# The data shipped in lookupd/data, opened when no path is given.
EMBEDDED_DATA = "geo-whois-asn-country.npz"


def open_database(
    path: str | os.PathLike[str] | None = None,
    *,
    mark_reserved: bool = True,
    copies: PrivateCopies | None = None,
) -> Database:
    """Open a database: the embedded default data, a snapshot, or any source file.

    Args:
        path: ``None`` for the data shipped with the package; a snapshot written by
            ``lookupd build`` (memory-mapped, not copied: replace it by renaming a new
            file over it, never rewrite it in place, unless ``copies`` is given); a
            ``.npz`` written by
            :func:`lookupd.datafiles.npz.save_compiled`; or any source
            :mod:`lookupd.datafiles.formats` reads (format detected), which is read and
            compiled in memory.
        mark_reserved: see :class:`Database`.
        copies: map a snapshot from a private, verified copy made there instead of from
            ``path`` (what a server does: see :mod:`lookupd.datafiles.private_copy`).

    Raises:
        DataFormatError: the file cannot be read or is malformed (the message names it).
        LookupdError: the private copy cannot be written.
    """
    if path is None:
        with resources.as_file(resources.files("lookupd") / "data" / EMBEDDED_DATA) as embedded:
            v4, v6, names, metadata = load_compiled(embedded)
        return Database(
            v4,
            v6,
            names,
            DataInfo(f"embedded:{EMBEDDED_DATA}", metadata),
            mark_reserved=mark_reserved,
        )
    path = Path(path)
    if not path.exists():
        msg = f"{path}: no such file"
        raise DataFormatError(msg)
    if path.is_file() and is_snapshot(path):
        snapshot = load_snapshot(path) if copies is None else copies.load(path)
        return Database(
            snapshot.v4,
            snapshot.v6,
            snapshot.label_names,
            DataInfo(str(path), snapshot.metadata),
            mark_reserved=mark_reserved,
        )
    if path.is_file() and path.suffix == ".npz":
        v4, v6, names, metadata = load_compiled(path)
        return Database(v4, v6, names, DataInfo(str(path), metadata), mark_reserved=mark_reserved)
    return open_sources([path], mark_reserved=mark_reserved)


def open_sources(
    paths: Sequence[str | os.PathLike[str]],
    *,
    formats: Sequence[str | None] | None = None,
    report: Reporter | None = None,
    mark_reserved: bool = True,
) -> Database:
    """Read and merge source files in precedence order (as ``lookupd build`` does) into a
    database in memory, its metadata naming each source and its date.

    Raises:
        DataFormatError: a file cannot be read or is malformed (the message names it).
    """
    merged = merge_sources(paths, formats=formats, report=report)
    tables = merged.tables
    metadata = {"sources": [source.as_json() for source in merged.sources]}
    return Database(
        tables.v4,
        tables.v6,
        tables.label_names,
        DataInfo(" + ".join(str(path) for path in paths), metadata),
        mark_reserved=mark_reserved,
    )
