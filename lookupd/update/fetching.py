"""Turn one download into the files a build reads: check its SHA-256, then unpack it."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from lookupd.update.archives import Limits, gunzip, kind_of, unpack
from lookupd.update.errors import ChecksumError
from lookupd.update.http import Fetched, Policy, fetch
from lookupd.update.secrets import Redactor
from lookupd.update.sources import Source

_HEX64 = re.compile(r"\b([0-9a-fA-F]{64})\b")
_MAX_CHECKSUM_BYTES = 64 * 1024
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def verify(
    source: Source,
    fetched: Fetched,
    policy: Policy,
    redact: Redactor,
    sleep: Callable[[float], None] = time.sleep,
    *,
    directory: Path,
) -> None:
    """Check the download's SHA-256 against ``sha256`` or the ``checksum_url`` file.

    Raises:
        ChecksumError: a different digest, or a checksum file without one.
        DownloadError: the checksum file cannot be downloaded.
    """
    expected = source.sha256
    if source.checksum_url is not None:
        small = dataclasses.replace(policy, max_bytes=_MAX_CHECKSUM_BYTES)
        sums = fetch(
            source.checksum_url,
            directory,
            headers=source.headers,
            policy=small,
            redactor=redact,
            sleep=sleep,
            name=f"{source.name} checksum",
        )
        assert sums.path is not None
        text = sums.path.read_text(errors="replace")
        sums.path.unlink()
        found = _HEX64.search(text)
        if found is None:
            msg = f"{redact(source.checksum_url)}: no SHA-256 in the checksum file"
            raise ChecksumError(msg)
        expected = found.group(1).lower()
    if expected is not None and fetched.sha256 != expected:
        msg = (
            f"{redact(source.url or source.name)}: SHA-256 {fetched.sha256} is not the "
            f"expected {expected}"
        )
        raise ChecksumError(msg)


def unpack_download(source: Source, fetched: Fetched, staged: Path, limits: Limits) -> list[Path]:
    """Turn the download into the files the build reads, inside ``staged``.

    Raises:
        ArchiveError: an unsafe or corrupt archive (see :mod:`lookupd.update.archives`).
    """
    assert fetched.path is not None
    kind = kind_of(fetched.path)
    name = _SAFE_NAME.sub("_", Path(source.filename or fetched.filename or "download").name)
    name = name.lstrip(".") or "download"
    if kind in ("tar.gz", "zip"):
        files = unpack(fetched.path, kind, staged, source.extract, limits)
        fetched.path.unlink()
    elif kind == "gz" and (source.format == "mmdb" or name.endswith(".mmdb.gz")):
        # maxminddb maps the file: a compressed .mmdb is unpacked once here.
        target = staged / (name.removesuffix(".gz") if name.endswith(".gz") else name + ".mmdb")
        gunzip(fetched.path, target, limits)
        fetched.path.unlink()
        files = [target]
    else:
        # The readers decompress .gz themselves: the name must say it is compressed.
        if kind == "gz" and not name.endswith(".gz"):
            name += ".gz"
        target = staged / name
        fetched.path.rename(target)
        files = [target]
    stamp = fetched.last_modified_s
    for file in files:
        os.chmod(file, 0o644)
        if stamp is not None:
            os.utime(file, (stamp, stamp))
    return files
