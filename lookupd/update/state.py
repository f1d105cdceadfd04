"""The state file beside the output: each source's validators and files, for the next run.

``.NAME.update.json`` records, per source, the ``ETag`` and ``Last-Modified`` of the copy
kept in the source cache (``.NAME.sources/``), its SHA-256 and the files unpacked from it,
and the data version of the snapshot last written. It is written (temporary file, fsync,
rename) only after the snapshot and the cache are in place, so it never names files or
versions the disk does not have: at worst it is older, and the next run downloads again.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_VERSION = 1


@dataclass(frozen=True, slots=True)
class SourceState:
    """What is known about one source's cached copy."""

    etag: str | None = None
    """``ETag`` of the download."""
    last_modified: str | None = None
    """``Last-Modified`` of the download (HTTP date)."""
    sha256: str = ""
    """SHA-256 of the download (or of the local file)."""
    size: int = 0
    """Bytes of the download."""
    files: list[str] = field(default_factory=list)
    """The files the build reads, relative to the source's cache directory."""


@dataclass(frozen=True, slots=True)
class State:
    """The state file's content."""

    sources: dict[str, SourceState] = field(default_factory=dict)
    """Per source key (:meth:`lookupd.update.sources.Source.key`)."""
    data_version: str | None = None
    """Data version id of the snapshot last written."""


def state_path(output: Path) -> Path:
    """Return the state file of ``output``."""
    return output.with_name(f".{output.name}.update.json")


def cache_path(output: Path) -> Path:
    """Return the source cache directory of ``output``."""
    return output.with_name(f".{output.name}.sources")


def load_state(output: Path) -> State:
    """Return the state of ``output``'s last update; empty if none or unreadable."""
    try:
        document: Any = json.loads(state_path(output).read_text())
        if not isinstance(document, dict) or document.get("version") != _VERSION:
            return State()
        sources = {
            str(key): SourceState(**value) for key, value in document.get("sources", {}).items()
        }
        return State(sources, document.get("data_version"))
    except (OSError, ValueError, TypeError):
        # A damaged state costs one full download, never a wrong "unchanged".
        return State()


def save_state(output: Path, state: State) -> None:
    """Write the state file atomically."""
    path = state_path(output)
    document = {
        "version": _VERSION,
        "data_version": state.data_version,
        "sources": {key: asdict(value) for key, value in state.sources.items()},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
