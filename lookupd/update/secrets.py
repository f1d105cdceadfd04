"""Credentials read from the environment or a file, and their redaction from every text."""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from lookupd.errors import LookupdError
from lookupd.files import open_regular
from lookupd.update.errors import ConfigError

REDACTED = "***"
"""What a secret is replaced with in logs and error messages."""
# Query parameters that carry a credential in a URL, whatever their value.
_SECRET_PARAMS = frozenset({"token", "license_key", "key", "password", "apikey", "api_key"})
_MAX_SECRET_BYTES = 4096
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def read_secret(*, env: str | None = None, file: str | None = None, what: str) -> str:
    """Return a credential from the environment variable ``env`` or the file ``file``.

    A file's content is stripped of surrounding whitespace (a trailing newline). The value
    itself never appears in an error.

    Raises:
        ConfigError: neither is given, the variable is unset or empty, the file unreadable.
    """
    if env:
        value = os.environ.get(env, "").strip()
        if not value:
            msg = f"{what}: environment variable {env} is not set"
            raise ConfigError(msg)
        return value
    if file:
        try:
            with open_regular(Path(file)) as handle:
                data = handle.read(_MAX_SECRET_BYTES + 1)
        except OSError as exc:
            msg = f"{what}: cannot read {file}: {exc.strerror or exc}"
            raise ConfigError(msg) from exc
        except LookupdError as exc:  # a FIFO, a device, a directory
            msg = f"{what}: cannot read {file}: {exc}"
            raise ConfigError(msg) from exc
        text = data.decode("utf-8", "replace").strip()
        if not text or len(data) > _MAX_SECRET_BYTES:
            msg = f"{what}: {file} is empty or too long for a credential"
            raise ConfigError(msg)
        return text
    msg = f"{what}: give an environment variable (…_env) or a file (…_file)"
    raise ConfigError(msg)


def has_query_credential(url: str) -> bool:
    """Return whether ``url`` carries a credential in its query or its user info."""
    parts = urllib.parse.urlsplit(url)
    if "@" in parts.netloc:
        return True
    names = {name.lower() for name, _ in urllib.parse.parse_qsl(parts.query)}
    return bool(names & _SECRET_PARAMS)


class Redactor:
    """Replace known secrets, URL user info and credential query parameters in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Redact these values too (short values are still redacted: they are secrets)."""
        for secret in secrets:
            if secret:
                self._secrets.add(secret)
                self._secrets.add(urllib.parse.quote(secret, safe=""))

    def __call__(self, text: str) -> str:
        """Return ``text`` with every secret replaced by ``***``."""
        text = _USERINFO.sub(f"{REDACTED}@", text)
        text = re.sub(
            r"([?&])(" + "|".join(sorted(_SECRET_PARAMS)) + r")=[^&#\s'\"]*",
            rf"\1\2={REDACTED}",
            text,
            flags=re.IGNORECASE,
        )
        # Longest first, so that a secret containing another is replaced whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text
