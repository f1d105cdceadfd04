"""One HTTP download: conditional, retried with backoff, size-bounded, streamed to disk.

Standard library only (``urllib``): a GET with ``If-None-Match`` / ``If-Modified-Since``
when the caller knows the last version, retried on connection errors, timeouts, truncated
bodies, 5xx and 429 (``Retry-After`` honoured up to a cap), never on other 4xx. The body is
written to a file in a directory the caller owns, counted against a size limit and the
``Content-Length``; its SHA-256 is computed on the way.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import logging
import os
import random
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lookupd.datafiles.progress import Reporter
from lookupd.update.errors import DownloadError
from lookupd.update.secrets import Redactor
from lookupd.version import __version__

_LOGGER = logging.getLogger(__name__)
_CHUNK_BYTES = 1 << 16
_USER_AGENT = f"lookupd/{__version__} (lookupd update)"
# Statuses worth another try: the server or something before it is busy or failing.
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_FILENAME = re.compile(r"""filename\*?=(?:UTF-8'')?["']?([^"';]+)""", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Policy:
    """How hard to try: timeouts, retries, backoff and the size limit."""

    timeout_s: float = 60.0
    """Socket timeout: connecting, and each wait for more of the body."""
    attempts: int = 4
    """Tries in all (1 + retries)."""
    backoff_s: float = 1.0
    """First retry delay; doubled each retry, plus up to as much again of random jitter."""
    max_delay_s: float = 60.0
    """Cap on any delay, ``Retry-After`` included."""
    max_bytes: int = 1 << 30
    """Largest body accepted."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """The result of one download: a new body on disk, or ``not_modified``."""

    not_modified: bool
    """The server answered 304: the caller's copy is current; nothing was written."""
    path: Path | None = None
    """The body, when one was downloaded."""
    size: int = 0
    """Bytes of the body."""
    sha256: str = ""
    """SHA-256 of the body (hex)."""
    etag: str | None = None
    """The response's ``ETag``."""
    last_modified: str | None = None
    """The response's ``Last-Modified`` (HTTP date), kept for the next conditional request."""
    filename: str | None = None
    """The name the server gave (``Content-Disposition``), or the URL path's last part."""

    @property
    def last_modified_s(self) -> float | None:
        """Return ``Last-Modified`` as Unix seconds, None if absent or unparseable."""
        return http_date_s(self.last_modified)


def http_date_s(value: str | None) -> float | None:
    """Return an HTTP date as Unix seconds, None if absent or unparseable."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


class _NoRedirectCredentials(urllib.request.HTTPRedirectHandler):
    """Follow redirects (MaxMind sends downloads to a storage host), keeping credentials off
    the next host: the ``Authorization`` header is added as unredirected, and this also
    drops any conditional header on a redirect to another host."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: object,
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)  # type: ignore[arg-type]
        if (
            new is not None
            and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc
        ):
            for name in ("Authorization", "If-none-match", "If-modified-since"):
                new.remove_header(name)
        return new


_OPENER = urllib.request.build_opener(_NoRedirectCredentials())


def fetch(
    url: str,
    directory: Path,
    *,
    headers: Mapping[str, str] | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
    policy: Policy | None = None,
    redactor: Redactor | None = None,
    report: Reporter | None = None,
    sleep: Callable[[float], None] = time.sleep,
    name: str = "download",
) -> Fetched:
    """Download ``url`` into a new file in ``directory`` (or learn it is unchanged).

    Args:
        headers: credentials (sent only to ``url``'s host, never logged).
        etag, last_modified: the validators of the copy the caller has: a 304 answer
            returns ``Fetched(not_modified=True)``.
        report: told the phase and the bytes received (of ``Content-Length``).
        sleep: waits between attempts (tests pass a recorder).

    Raises:
        DownloadError: every attempt failed, or the answer was an error not worth
            retrying (404, 401, 403, ...); the message names the URL, redacted.
    """
    policy = policy or Policy()
    redact = redactor or Redactor()
    shown = redact(url)
    request_headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if etag:
        request_headers["If-None-Match"] = etag
    if last_modified:
        request_headers["If-Modified-Since"] = last_modified
    failure = ""
    for attempt in range(1, policy.attempts + 1):
        request = urllib.request.Request(url, headers=request_headers)
        for key, value in (headers or {}).items():
            # Unredirected: urllib copies other headers to wherever a redirect points.
            request.add_unredirected_header(key, value)
        retry_after: float | None = None
        try:
            return _attempt(request, directory, policy, report, name)
        except urllib.error.HTTPError as exc:
            if exc.code == 304:
                exc.close()
                return Fetched(not_modified=True, etag=etag, last_modified=last_modified)
            failure = f"HTTP {exc.code} {exc.reason}"
            retry_after = _retry_after_s(exc.headers.get("Retry-After"))
            exc.close()
            if exc.code not in _RETRY_STATUSES:
                msg = f"{shown}: {failure}"
                raise DownloadError(redact(msg), exc.code) from None
        except _Retryable as exc:
            failure = str(exc)
        except DownloadError as exc:  # too large: another try would be too
            msg = f"{shown}: {exc}"
            raise DownloadError(redact(msg)) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            failure = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
            if isinstance(reason, (socket.timeout, TimeoutError)):
                failure = f"timed out after {policy.timeout_s:g} s"
        if attempt == policy.attempts:
            break
        delay = min(policy.backoff_s * 2 ** (attempt - 1), policy.max_delay_s)
        delay += random.uniform(0, delay)  # jitter, not cryptography
        if retry_after is not None:
            delay = max(delay, retry_after)
        delay = min(delay, policy.max_delay_s)
        _LOGGER.info(
            "%s: attempt %d of %d failed (%s); retrying in %.2f s",
            shown,
            attempt,
            policy.attempts,
            redact(failure),
            delay,
        )
        sleep(delay)
    msg = f"{shown}: {failure} (after {policy.attempts} attempts)"
    raise DownloadError(redact(msg))


class _Retryable(Exception):
    """A body that broke off or overran: worth another try."""


def _attempt(
    request: urllib.request.Request,
    directory: Path,
    policy: Policy,
    report: Reporter | None,
    name: str,
) -> Fetched:
    with _OPENER.open(request, timeout=policy.timeout_s) as response:
        length_header = response.headers.get("Content-Length")
        expected = int(length_header) if length_header and length_header.isdigit() else None
        if expected is not None and expected > policy.max_bytes:
            msg = f"{expected:,} bytes announced, more than the limit of {policy.max_bytes:,}"
            raise DownloadError(msg)
        filename = _filename(response.headers.get("Content-Disposition"), response.url)
        fd, part_name = _new_file(directory)
        part = Path(part_name)
        digest = hashlib.sha256()
        size = 0
        if report is not None:
            report.phase(f"downloading {name}")
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    try:
                        chunk = response.read(_CHUNK_BYTES)
                    except http.client.IncompleteRead as exc:
                        msg = f"body broke off after {size + len(exc.partial):,} bytes"
                        raise _Retryable(msg) from None
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > policy.max_bytes:
                        msg = f"body larger than the limit of {policy.max_bytes:,} bytes"
                        raise DownloadError(msg)
                    digest.update(chunk)
                    out.write(chunk)
                    if report is not None and expected:
                        report.update(size, expected)
                out.flush()
                os.fsync(out.fileno())
            if expected is not None and size != expected:
                msg = f"body of {size:,} bytes, Content-Length said {expected:,} (truncated)"
                raise _Retryable(msg)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        last_modified = response.headers.get("Last-Modified")
        stamp = http_date_s(last_modified)
        if stamp is not None:
            # The file carries its release date, as `curl -R` and geoipupdate leave it.
            os.utime(part, (stamp, stamp))
        return Fetched(
            not_modified=False,
            path=part,
            size=size,
            sha256=digest.hexdigest(),
            etag=response.headers.get("ETag"),
            last_modified=last_modified,
            filename=filename,
        )


def _new_file(directory: Path) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(dir=directory, prefix="download-", suffix=".part")


def _filename(disposition: str | None, url: str) -> str | None:
    """Return the server's name for the body: ``Content-Disposition``'s, else the URL's."""
    if disposition:
        found = _FILENAME.search(disposition)
        if found:
            return urllib.parse.unquote(found.group(1)).strip()
    return Path(urllib.parse.urlsplit(url).path).name or None


def _retry_after_s(value: str | None) -> float | None:
    """Return ``Retry-After`` in seconds (a number or an HTTP date), None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    stamp = http_date_s(value)
    return None if stamp is None else max(0.0, stamp - time.time())
