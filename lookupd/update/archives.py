"""Unpack a download safely: only the members needed, into a private directory.

A download is a ``.tar.gz``, a ``.zip``, a gzip-compressed single file or a plain file,
told by its first bytes. Archives are refused whole when any member is unsafe: an absolute
path, a ``..`` component, a link, a device or FIFO; when they have too many members; when
the members' sizes (as the archive declares them, then as actually read) pass the limits
(zip and gzip bombs). Members are written by their base name, flat, only those matching
the patterns asked for.
"""

from __future__ import annotations

import fnmatch
import gzip
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

from lookupd.update.errors import ArchiveError

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_TAR_MAGIC_OFFSET = 257
_CHUNK_BYTES = 1 << 16
# What a download holding several files may hold that lookupd reads.
DATA_PATTERNS = ("*.mmdb", "*.csv", "*.CSV", "*.csv.gz", "*.csv.xz")


@dataclass(frozen=True, slots=True)
class Limits:
    """The most an archive may hold."""

    max_members: int = 10_000
    """Entries (files, directories, anything) in the archive."""
    max_member_bytes: int = 4 << 30
    """Uncompressed size of any one member."""
    max_total_bytes: int = 8 << 30
    """Uncompressed size of all members together."""


def kind_of(path: Path) -> str:
    """Return ``tar.gz``, ``zip``, ``gz`` (one compressed file) or ``plain``."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as stream:
                block = stream.read(512)
        except (OSError, EOFError, zlib.error) as exc:
            msg = f"corrupt gzip data: {exc}"
            raise ArchiveError(msg) from exc
        if block[_TAR_MAGIC_OFFSET : _TAR_MAGIC_OFFSET + 5] == b"ustar":
            return "tar.gz"
        return "gz"
    return "plain"


def unpack(
    archive: Path,
    kind: str,
    destination: Path,
    patterns: Sequence[str],
    limits: Limits | None = None,
) -> list[Path]:
    """Extract the members of ``archive`` whose base names match ``patterns`` (or, when
    none are given, the data files: ``*.mmdb``, ``*.csv``) into ``destination``; return
    the files written, sorted.

    Raises:
        ArchiveError: an unsafe or corrupt archive, or no member matched.
    """
    limits = limits or Limits()
    wanted = tuple(patterns) or DATA_PATTERNS
    try:
        if kind == "tar.gz":
            written = _unpack_tar(archive, destination, wanted, limits)
        elif kind == "zip":
            written = _unpack_zip(archive, destination, wanted, limits)
        else:
            msg = f"not an archive: {kind}"
            raise ValueError(msg)
    except (OSError, EOFError, zlib.error, tarfile.TarError, zipfile.BadZipFile) as exc:
        msg = f"corrupt archive: {exc}"
        raise ArchiveError(msg) from exc
    if not written:
        msg = f"no member matching {', '.join(wanted)} in the archive"
        raise ArchiveError(msg)
    return sorted(written)


def gunzip(source: Path, target: Path, limits: Limits | None = None) -> None:
    """Decompress one gzip file, refusing more than ``max_member_bytes`` of output.

    Raises:
        ArchiveError: corrupt data, or output past the limit (a gzip bomb).
    """
    limits = limits or Limits()
    try:
        with gzip.open(source, "rb") as stream, target.open("xb") as out:
            _copy(stream, out, limits.max_member_bytes, source.name)
    except (OSError, EOFError, zlib.error) as exc:
        target.unlink(missing_ok=True)
        msg = f"corrupt gzip data: {exc}"
        raise ArchiveError(msg) from exc
    except ArchiveError:
        target.unlink(missing_ok=True)
        raise


def _check_name(name: str) -> str:
    """Return a member's base name; refuse absolute paths and ``..`` components."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        msg = f"unsafe member {name!r}: absolute path"
        raise ArchiveError(msg)
    if ".." in path.parts:
        msg = f"unsafe member {name!r}: '..' in its path"
        raise ArchiveError(msg)
    return path.name


def _matches(base: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(base, pattern) for pattern in patterns)


def _unpack_tar(
    archive: Path, destination: Path, patterns: Sequence[str], limits: Limits
) -> list[Path]:
    written: list[Path] = []
    # Check every header first (reading headers only decompresses the stream once):
    # nothing is written from an archive with an unsafe member anywhere in it.
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        total = 0
        for member in tar:
            members.append(member)
            if len(members) > limits.max_members:
                msg = f"more than {limits.max_members:,} members"
                raise ArchiveError(msg)
            _check_name(member.name)
            if member.issym() or member.islnk():
                msg = f"unsafe member {member.name!r}: a link"
                raise ArchiveError(msg)
            if not (member.isfile() or member.isdir()):
                msg = f"unsafe member {member.name!r}: a device, FIFO or other special file"
                raise ArchiveError(msg)
            _check_size(member.name, member.size, limits)
            total += member.size
            if total > limits.max_total_bytes:
                msg = f"members larger than {limits.max_total_bytes:,} bytes in all"
                raise ArchiveError(msg)
        for member in members:
            base = PurePosixPath(member.name.replace("\\", "/")).name
            if not member.isfile() or not _matches(base, patterns):
                continue
            stream = tar.extractfile(member)
            if stream is None:  # pragma: no cover - isfile() members always have data
                continue
            written.append(_write_member(stream, destination, base, member.size, limits))
    return written


def _unpack_zip(
    archive: Path, destination: Path, patterns: Sequence[str], limits: Limits
) -> list[Path]:
    written: list[Path] = []
    with zipfile.ZipFile(archive) as bundle:
        infos = bundle.infolist()
        if len(infos) > limits.max_members:
            msg = f"more than {limits.max_members:,} members"
            raise ArchiveError(msg)
        total = 0
        for info in infos:
            _check_name(info.filename)
            mode = info.external_attr >> 16
            # No file type bits (permissions only, as Python's zipfile writes): a file.
            if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                kind = "a link" if stat.S_ISLNK(mode) else "a device, FIFO or other special file"
                msg = f"unsafe member {info.filename!r}: {kind}"
                raise ArchiveError(msg)
            _check_size(info.filename, info.file_size, limits)
            total += info.file_size
            if total > limits.max_total_bytes:
                msg = f"members larger than {limits.max_total_bytes:,} bytes in all"
                raise ArchiveError(msg)
        for info in infos:
            base = PurePosixPath(info.filename.replace("\\", "/")).name
            if info.is_dir() or not _matches(base, patterns):
                continue
            with bundle.open(info) as stream:
                written.append(_write_member(stream, destination, base, info.file_size, limits))
    return written


def _check_size(name: str, size: int, limits: Limits) -> None:
    if size > limits.max_member_bytes:
        msg = f"member {name!r} of {size:,} bytes, more than {limits.max_member_bytes:,}"
        raise ArchiveError(msg)


def _write_member(
    stream: IO[bytes], destination: Path, base: str, declared: int, limits: Limits
) -> Path:
    target = destination / base
    if target.exists():
        msg = f"two members named {base!r}"
        raise ArchiveError(msg)
    with target.open("xb") as out:
        # The declared size bounds what is read: a member that inflates past it is a bomb.
        _copy(stream, out, min(declared, limits.max_member_bytes), base)
    os.chmod(target, 0o600)
    return target


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _copy(stream: _Readable, out: IO[bytes], limit: int, name: str) -> None:
    copied = 0
    while chunk := stream.read(_CHUNK_BYTES):
        copied += len(chunk)
        if copied > limit:
            msg = f"{name}: decompresses to more than {limit:,} bytes"
            raise ArchiveError(msg)
        out.write(chunk)
