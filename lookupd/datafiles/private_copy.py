"""Serve a snapshot from a private, verified copy, never from the operator's file.

A mapped file is only as stable as its inode: truncate the file a server maps and the next
read of a page past the new end kills the process with SIGBUS; ``cp other.lkd snap.lkd``
truncates and rewrites the same inode; bytes written into it change the answers of every
process mapping it, behind the checksum verified at load. An operator's file is theirs to
rewrite, so a server never maps it. :class:`PrivateCopies` instead:

1. reads the operator's file with plain reads (a read of a truncated file ends short; it
   cannot fault), and writes what it read to a temporary file in a directory of its own
   (the server's run directory, 0700);
2. verifies the copy, not the source: the payload checksum and the tables, on the very
   pages that will be served; a torn or corrupt copy is refused and deleted, and the
   version already loaded keeps serving;
3. makes the copy read-only (0400) and links it to a content-addressed name,
   ``<data version>.<header digest>.lkd`` (the payload's SHA-256, then the start of the
   header's: two builds of the same data differ in their header's build time and
   sources, which ``GetInfo`` reports), and maps it.

A process that loads a version whose copy is already there (the workers of a supervisor
all watch the same file and reload it on their own) still reads and checks the operator's
file, so a corrupt file is reported, but maps the existing copy: N workers map one file,
and share one copy of its pages in the page cache. A copy is linked to its name only once
verified, and only by this class, so an existing copy is mapped without checking its
payload again. Two processes that copy the same version at once both verify their copy;
the first link wins and the other maps the winner's.

Copies no process needs any more are removed: after each load, every copy older (by
modification time, set when a copy is made or mapped again) than the one just loaded.
Removing a copy that another process still maps is safe: the mapping keeps the unlinked
inode (and its pages) until that process maps something else. Temporary files of
processes that died mid-copy are removed the same way. The run directory's owner removes
the rest at exit.

The cost: the data is held twice while the operator's file is in the page cache (the
copy's pages are what is served; the source's are clean and reclaimable), and a reload
reads the file twice (once to copy, once to verify the copy).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from lookupd.datafiles.snapshot import Snapshot, header_sha256, map_snapshot, read_header
from lookupd.errors import DataFormatError, LookupdError
from lookupd.files import open_regular

_CHUNK_BYTES = 1 << 20
_SUFFIX = ".lkd"
_TMP_PREFIX = ".tmp-"
# Characters of the header digest in a copy's name: enough to tell builds apart.
_HEADER_DIGITS = 16


class PrivateCopies:
    """Loads snapshots from private, verified copies in ``directory`` (created 0700)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def load(self, path: str | os.PathLike[str]) -> Snapshot:
        """Copy and verify the snapshot at ``path`` (or find its copy), and map the copy.

        Raises:
            DataFormatError: the file cannot be read, is not a snapshot, or is truncated or
                corrupt as read (the message names it).
            LookupdError: the copy cannot be written (a full or read-only directory).
        """
        path = Path(path)
        try:
            source = open_regular(path)
        except (OSError, LookupdError) as exc:
            msg = f"{path}: cannot read: {exc}"
            raise DataFormatError(msg) from exc
        with source:
            head, header = read_header(path, source)
            name = f"{header['payload_sha256']}.{header_sha256(head)[:_HEADER_DIGITS]}{_SUFFIX}"
            final = self.directory / name
            existing = _open_existing(final)
            if existing is not None:
                with existing:
                    _check_source(path, source, head, header)
                    snapshot = map_snapshot(existing, path, verify=False)
            else:
                snapshot = self._copy(path, source, head, header, final)
        self._remove_older(final)
        return snapshot

    def _copy(
        self, path: Path, source: BinaryIO, head: bytes, header: dict[str, Any], final: Path
    ) -> Snapshot:
        """Copy the rest of ``source`` to a temporary file, verify it, link it as ``final``
        and return its mapping (or the mapping of the copy another process linked first)."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(
                dir=self.directory, prefix=f"{_TMP_PREFIX}{os.getpid()}-", suffix=_SUFFIX
            )
        except OSError as exc:
            msg = f"{path}: cannot copy into {self.directory}: {exc}"
            raise LookupdError(msg) from exc
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as sink:
                sink.write(head)
                # One byte more than the header declares: trailing bytes are refused.
                size = len(head) + _stream(source, header["file_size"] - len(head) + 1, sink.write)
            _check_size(path, size, header)
            os.chmod(tmp, 0o400)
            with tmp.open("rb") as copy:
                snapshot = map_snapshot(copy, path, verify=True)  # verified on the copy
            return _link(tmp, final, path, snapshot)
        except OSError as exc:
            msg = f"{path}: cannot copy into {self.directory}: {exc}"
            raise LookupdError(msg) from exc
        finally:
            tmp.unlink(missing_ok=True)

    def _remove_older(self, keep: Path) -> None:
        """Remove the copies older than ``keep`` and the temporary files of dead processes."""
        with contextlib.suppress(OSError):
            os.utime(keep)  # the newest: what was loaded last
            newest = keep.stat().st_mtime_ns
            for entry in _entries(self.directory):
                with contextlib.suppress(OSError):
                    if entry.name.startswith(_TMP_PREFIX):
                        if not _alive(entry.name.removeprefix(_TMP_PREFIX).split("-", 1)[0]):
                            entry.unlink()
                    elif entry != keep and entry.stat().st_mtime_ns < newest:
                        entry.unlink()


def _open_existing(final: Path) -> BinaryIO | None:
    """Open the copy named ``final`` if there is one (held open, it outlives a removal)."""
    try:
        return final.open("rb")
    except FileNotFoundError:
        return None
    except OSError as exc:
        msg = f"{final}: cannot open: {exc}"
        raise LookupdError(msg) from exc


def _check_source(path: Path, source: BinaryIO, head: bytes, header: dict[str, Any]) -> None:
    """Check that the rest of ``source`` is the payload ``header`` names (no copy)."""
    digest = hashlib.sha256()
    padding = _stream(source, header["payload_offset"] - len(head), _discard)
    payload = _stream(source, header["file_size"] - header["payload_offset"] + 1, digest.update)
    _check_size(path, len(head) + padding + payload, header)
    if digest.hexdigest() != header["payload_sha256"]:
        msg = f"{path}: corrupt snapshot: payload checksum mismatch"
        raise DataFormatError(msg)


def _stream(source: BinaryIO, limit: int, into: Callable[[bytes], object]) -> int:
    """Pass up to ``limit`` bytes of ``source`` to ``into``; return how many there were."""
    read = 0
    while read < limit:
        chunk = source.read(min(_CHUNK_BYTES, limit - read))
        if not chunk:
            break
        into(chunk)
        read += len(chunk)
    return read


def _discard(chunk: bytes) -> None:
    del chunk


def _check_size(path: Path, size: int, header: dict[str, Any]) -> None:
    file_size = header["file_size"]
    if size < file_size:
        msg = f"{path}: truncated snapshot: {size} bytes read, the header says {file_size}"
        raise DataFormatError(msg)
    if size > file_size:
        msg = f"{path}: corrupt snapshot: bytes after the end it declares ({file_size})"
        raise DataFormatError(msg)


def _link(tmp: Path, final: Path, path: Path, snapshot: Snapshot) -> Snapshot:
    """Name the verified copy ``tmp`` (mapped as ``snapshot``) as ``final``, and map
    ``final``: if another process named its copy first, that one, so that the processes
    share its pages."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        pass
    else:
        tmp.unlink()
    # Mapped again by its name (the same pages): what /proc/PID/maps shows, and what the
    # next process's check for an existing copy finds.
    existing = _open_existing(final)
    if existing is None:  # removed in between by a newer load: ours stands in
        with contextlib.suppress(FileNotFoundError):
            os.replace(tmp, final)
        return snapshot
    with existing:
        return map_snapshot(existing, path, verify=False)


def _entries(directory: Path) -> Iterator[Path]:
    try:
        yield from directory.iterdir()
    except OSError:
        return


def _alive(pid_text: str) -> bool:
    """Whether the process ``pid_text`` (from a file name) may still be running."""
    if not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
