"""The HTTP endpoint answering ``GET /metrics``, in a daemon thread of each serving process."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import TCPServer, ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app

from lookupd.errors import LookupdError
from lookupd.server.bind import ALL_IPV4, ALL_IPV6, bind_hosts, family_of
from lookupd.server.logs import log_event
from lookupd.server.metrics_process import scrape_registry

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from lookupd.server.metrics import Metrics

_LOGGER = logging.getLogger(__name__)

METRICS_PATH = "/metrics"


class _Handler(WSGIRequestHandler):
    """Request handler: no access log on stderr, and no connection held for long."""

    timeout = 10.0  # seconds a client may take to send its request

    def log_message(self, format: str, *args: Any) -> None:  # the base's signature
        _LOGGER.debug("metrics: %s " + format, self.address_string(), *args)


class _HTTPServer(ThreadingMixIn, WSGIServer):
    """Thread-per-scrape WSGI server bound with SO_REUSEPORT and SO_REUSEADDR."""

    daemon_threads = True  # a scrape in progress never holds up the process's exit
    allow_reuse_address = True  # SO_REUSEADDR: rebind at once after a restart

    def __init__(self, family: int, address: tuple[str, int], app: WSGIApplication) -> None:
        self.address_family = family
        super().__init__(address, _Handler)
        self.set_app(app)

    def server_bind(self) -> None:
        # SO_REUSEPORT: every worker binds the same port, the kernel spreads scrapes over
        # them. Set here by hand because socketserver's allow_reuse_port is 3.11+.
        if hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if self.address_family == socket.AF_INET6:
            # "::" also takes IPv4 (dual stack), whatever the system's default.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # TCPServer's bind, not HTTPServer's: that one resolves the host's FQDN, a DNS
        # lookup that can take seconds, only to fill in SERVER_NAME.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A scraper hanging up mid-answer is no reason for a traceback on stderr.
        _LOGGER.debug("metrics: error answering %s", client_address, exc_info=True)


def _only_metrics_path(app: Callable[..., Any]) -> WSGIApplication:
    """Wrap prometheus_client's app (which answers any path) to answer ``/metrics`` only."""

    def wrapped(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found: metrics are served at /metrics\n"]
        result: Iterable[bytes] = app(environ, start_response)
        return result

    return wrapped


def _bind_candidates(host: str, port: int) -> Iterator[tuple[int, tuple[str, int]]]:
    """Yield (family, address) to try for ``host``, as the gRPC side reads it.

    ``[::]``, ``::`` and ``""`` are all addresses (IPv6 dual stack, falling back to IPv4
    0.0.0.0 without IPv6; :func:`~lookupd.server.bind.bind_hosts`); ``0.0.0.0`` all IPv4
    addresses; an IPv6 literal may be bracketed; a name is resolved, and each of its
    addresses tried in turn.
    """
    for name in bind_hosts(host):
        if name in (ALL_IPV6, ALL_IPV4):
            family = family_of(name)
            if family == socket.AF_INET or socket.has_ipv6:
                yield family, (name, port)
            continue
        try:
            infos = socket.getaddrinfo(
                name, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
            )
        except OSError as exc:
            msg = f"cannot serve metrics on {host}:{port}: {exc}"
            raise LookupdError(msg) from exc
        for family, _, _, _, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                yield family, (str(sockaddr[0]), int(sockaddr[1]))


class MetricsServer:
    """An HTTP server answering ``GET /metrics`` from a registry, in a daemon thread.

    Use :func:`serve_metrics` to start one; :meth:`close` (or ``with``) stops it.
    """

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        *,
        poll_interval_s: float = 0.2,
    ) -> None:
        """Bind ``host:port`` and start serving.

        Raises:
            LookupdError: the address cannot be bound (the message names it).
        """
        app = _only_metrics_path(make_wsgi_app(registry))
        problem: OSError | None = None
        server: _HTTPServer | None = None
        for family, address in _bind_candidates(host, port):
            try:
                server = _HTTPServer(family, address, app)
                break
            except OSError as exc:
                problem = exc
        if server is None:
            why = f": {problem.strerror or problem}" if problem else ": no address to bind"
            msg = f"cannot serve metrics on {host}:{port}{why}"
            raise LookupdError(msg)
        self._server = server
        bound_host, bound_port = server.server_address[:2]
        self.host: str = str(bound_host)
        """The address bound (``::`` or ``0.0.0.0`` for all)."""
        self.port: int = int(bound_port)
        """The port bound (the one chosen when asked for 0)."""
        self._thread = threading.Thread(
            target=server.serve_forever,
            # serve_forever checks for close() this often: close() waits up to this long.
            kwargs={"poll_interval": poll_interval_s},
            name="lookupd-metrics",
            daemon=True,
        )
        self._thread.start()
        shown = f"[{self.host}]" if ":" in self.host else self.host
        url = f"http://{shown}:{self.port}{METRICS_PATH}"
        log_event(_LOGGER, logging.INFO, "metrics", f"metrics on {url}", url=url)

    def close(self) -> None:
        """Stop answering and close the socket; idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_metrics(host: str, port: int, metrics: Metrics | None) -> MetricsServer:
    """Serve ``GET /metrics`` on ``host:port`` in a daemon thread (see :class:`MetricsServer`).

    In multiprocess mode call it in each worker, after the fork: all bind the same port
    (``SO_REUSEPORT``) and any of them answers with the merged view of every process. In
    single-process mode it serves ``metrics``' registry.

    Args:
        host: ``[::]`` (all addresses, as the gRPC side), ``0.0.0.0``, an address or a name.
        port: the port; 0 picks a free one (see :attr:`MetricsServer.port`).
        metrics: this process's metrics (for its registry and its data age), or None.

    Raises:
        LookupdError: the address cannot be bound.
    """
    return MetricsServer(host, port, scrape_registry(metrics))
