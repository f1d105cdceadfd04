"""A local HTTP origin on 127.0.0.1 for the ``lookupd update`` tests: scripted answers.

Each path answers from a list of :class:`Reply` (the last one repeats), so a test says
"500, then 200" or "429 with Retry-After, then 200". Every request is recorded (path,
query and headers) so that tests can check conditional headers and credentials.
"""

from __future__ import annotations

import email.utils
import hashlib
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: float | None = None
    delay_s: float = 0.0
    truncate_to: int | None = None
    require_auth: str | None = None
    """The exact Authorization header required; other requests get 401."""


@dataclass
class Request:
    """One request the origin received."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


class Origin:
    """The server and its script; ``url(path)`` is the URL of a path on it."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                origin._answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, *replies: Reply) -> None:
        """Answer ``path`` with ``replies`` in turn, the last one for ever after."""
        with self._lock:
            self.routes[path] = list(replies)

    def file(self, path: str, body: bytes, *, stamp: float = 1_700_000_000.0) -> None:
        """Serve ``body`` with an ETag (its digest) and a Last-Modified, honouring both."""
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        self.serve(path, Reply(body=body, etag=etag, last_modified=stamp))

    def hits(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(handler.path)
        request = Request(parts.path, urllib.parse.parse_qs(parts.query), dict(handler.headers))
        with self._lock:
            self.requests.append(request)
            # A route may name the query too (MaxMind's ?suffix=tar.gz and .sha256).
            script = self.routes.get(f"{parts.path}?{parts.query}") or self.routes.get(parts.path)
            reply = (script.pop(0) if len(script) > 1 else script[0]) if script else Reply(404)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.require_auth is not None and handler.headers.get("Authorization") != (
            reply.require_auth
        ):
            self._send(handler, 401, b"unauthorized", {})
            return
        headers = dict(reply.headers)
        if reply.etag:
            headers["ETag"] = reply.etag
        if reply.last_modified is not None:
            headers["Last-Modified"] = email.utils.formatdate(reply.last_modified, usegmt=True)
        if (
            reply.status == 200
            and reply.etag
            and handler.headers.get("If-None-Match") == reply.etag
        ):
            self._send(handler, 304, b"", headers)
            return
        since = handler.headers.get("If-Modified-Since")
        if (
            reply.status == 200
            and not reply.etag
            and since
            and reply.last_modified is not None
            and email.utils.parsedate_to_datetime(since).timestamp() >= int(reply.last_modified)
        ):
            self._send(handler, 304, b"", headers)
            return
        self._send(handler, reply.status, reply.body, headers, reply.truncate_to)

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        headers: Mapping[str, str],
        truncate_to: int | None = None,
    ) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        if truncate_to is not None:
            handler.send_header("Connection", "close")
        handler.end_headers()
        if status != 304:
            handler.wfile.write(body if truncate_to is None else body[:truncate_to])
        if truncate_to is not None:
            handler.close_connection = True


@contextmanager
def running_origin() -> Iterator[Origin]:
    origin = Origin()
    try:
        yield origin
    finally:
        origin.close()
