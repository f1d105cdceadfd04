"""A source of the snapshot: a URL to download (with its checks and credentials) or a file."""

from __future__ import annotations

import base64
import hashlib
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lookupd.update.errors import ConfigError
from lookupd.update.secrets import Redactor, read_secret

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Source:
    """One source of the snapshot: a URL to download, or a local file."""

    name: str
    """Short name for logs and metrics (the preset's edition, or the file name)."""
    url: str | None = None
    """What to download (may hold a query credential: shown only through the redactor)."""
    path: Path | None = None
    """A local file or directory instead of a URL."""
    format: str | None = None
    """Format name as ``lookupd build --format`` takes it; ``None``: detected."""
    sha256: str | None = None
    """Expected SHA-256 of the download (hex)."""
    checksum_url: str | None = None
    """URL of a ``sha256sum``-style file holding the download's SHA-256."""
    extract: tuple[str, ...] = ()
    """Archive members to extract (glob patterns on their base names); empty: data files."""
    filename: str | None = None
    """Name to store the download under, when the URL and response do not give one."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Request headers with credentials (``Authorization``); never logged."""
    fallback_url: str | None = None
    """Tried when ``url`` answers 404 (DB-IP: last month's file, before this month's is out)."""

    def key(self) -> str:
        """Return a stable identity of the source for the state file (no secret in it)."""
        what = f"{self.url or ''}\0{self.path or ''}\0{self.format or ''}"
        return hashlib.sha256(what.encode()).hexdigest()[:16]


def url_source(
    url: str,
    redactor: Redactor,
    *,
    format: str | None = None,
    sha256: str | None = None,
    checksum_url: str | None = None,
    extract: Sequence[str] = (),
    filename: str | None = None,
    username: str | None = None,
    username_env: str | None = None,
    username_file: str | None = None,
    password_env: str | None = None,
    password_file: str | None = None,
    bearer_token_env: str | None = None,
    bearer_token_file: str | None = None,
    name: str | None = None,
    fallback_url: str | None = None,
    where: str = "source",
) -> Source:
    """Return a URL source, its credentials read and registered with ``redactor``.

    Raises:
        ConfigError: a bad URL, checksum or format, or a credential that cannot be read.
    """
    if not re.match(r"^https?://[^/\s]+", url):
        msg = f"{where}: not an http(s) URL: {redactor(url)!r}"
        raise ConfigError(msg)
    if re.match(r"^https?://[^/\s]*@", url):
        msg = f"{where}: credentials in the URL are not accepted; use username_env/password_env"
        raise ConfigError(msg)
    if sha256 is not None:
        sha256 = str(sha256).strip().lower()
        if not _SHA256.match(sha256):
            msg = f"{where}: sha256 must be 64 hex digits"
            raise ConfigError(msg)
    headers: dict[str, str] = {}
    if password_env or password_file or username or username_env or username_file:
        user = username or read_secret(
            env=username_env, file=username_file, what=f"{where}: username"
        )
        password = read_secret(env=password_env, file=password_file, what=f"{where}: password")
        redactor.add(user, password)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        redactor.add(token)
        headers["Authorization"] = f"Basic {token}"
    elif bearer_token_env or bearer_token_file:
        token = read_secret(env=bearer_token_env, file=bearer_token_file, what=f"{where}: token")
        redactor.add(token)
        headers["Authorization"] = f"Bearer {token}"
    shown = name or _url_name(url)
    return Source(
        shown,
        url=url,
        format=format,
        sha256=sha256,
        checksum_url=checksum_url,
        extract=tuple(extract),
        filename=filename,
        headers=headers,
        fallback_url=fallback_url,
    )


def _url_name(url: str) -> str:
    return Path(urllib.parse.urlsplit(url).path).name or urllib.parse.urlsplit(url).netloc
