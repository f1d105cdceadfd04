"""Prometheus metrics of a long-running ``lookupd update --every``, and their endpoint."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app

from lookupd.update.run import Outcome, Result

# Every failure reason an UpdateError (or the run) can give: series exist from the start.
_REASONS = ("download", "checksum", "archive", "build", "io")


class UpdateMetrics:
    """The update metrics, in a registry of their own; ``clock`` gives the Unix seconds each
    result is recorded at (tests pass their own)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.registry = CollectorRegistry()
        self.last_success = Gauge(
            "lookupd_update_last_success_timestamp_seconds",
            "When an update last ended updated or unchanged (Unix seconds)",
            registry=self.registry,
        )
        self.last_attempt = Gauge(
            "lookupd_update_last_attempt_timestamp_seconds",
            "When an update last ended, whatever its outcome (Unix seconds)",
            registry=self.registry,
        )
        self.outcomes = Counter(
            "lookupd_update_runs",
            "Updates run, by outcome: updated, unchanged, refused, failed, locked",
            ["outcome"],
            registry=self.registry,
        )
        self.updates = Counter(
            "lookupd_update_snapshots_written",
            "Snapshots written (updates that changed the data)",
            registry=self.registry,
        )
        self.failures = Counter(
            "lookupd_update_failures",
            "Failed updates, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.duration = Gauge(
            "lookupd_update_last_duration_seconds",
            "How long the last update took",
            registry=self.registry,
        )
        for outcome in Outcome:
            self.outcomes.labels(outcome.value)
        for reason in _REASONS:
            self.failures.labels(reason)

    def record(self, result: Result) -> None:
        """Count one update's result, which has just ended."""
        now_s = self._clock()
        self.last_attempt.set(now_s)
        self.duration.set(result.seconds)
        self.outcomes.labels(result.outcome.value).inc()
        if result.outcome in (Outcome.UPDATED, Outcome.UNCHANGED):
            self.last_success.set(now_s)
        if result.outcome is Outcome.UPDATED:
            self.updates.inc()
        if result.outcome is Outcome.FAILED:
            self.failures.labels(result.reason or "error").inc()


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # base's name
        """Write no access log: scrapes are not events."""


class MetricsEndpoint:
    """``/metrics`` over plain HTTP, served from a daemon thread until :meth:`close`."""

    def __init__(self, metrics: UpdateMetrics, host: str, port: int) -> None:
        host = host.strip("[]")
        server_class = _Server6 if ":" in host else _Server
        self._server = make_server(
            host,
            port,
            make_wsgi_app(metrics.registry),
            server_class=server_class,
            handler_class=_QuietHandler,
        )
        self.port: int = self._server.server_port
        """The port bound (the one asked for, or the one picked for 0)."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="lookupd-update-metrics", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
