"""Prometheus metrics of the lookupd server, and the HTTP endpoint that serves them.

One :class:`Metrics` per process holds every metric; the server calls its ``observe_*``
methods once per call (each costs a few microseconds). :func:`serve_metrics` answers
``GET /metrics`` in a daemon thread.

Two modes, chosen per process tree:

- **Single process** (``lookupd serve --workers 1``): values live in memory and the endpoint
  serves the :class:`Metrics`' own registry (plus process metrics: CPU, memory, files).
- **Multiprocess** (``--workers N``): the supervisor calls :func:`enable_multiprocess` on an
  empty directory before it creates any :class:`Metrics` and before it forks. Every process
  then writes its values to its own memory-mapped files there (prometheus_client's
  multiprocess mode), and every worker binds the same metrics port with ``SO_REUSEPORT``:
  whichever worker the kernel hands a scrape to merges all the files, so any answer is the
  view of the whole server. The supervisor calls :func:`mark_process_dead` for each worker
  that exits, which drops that worker's "live" gauges (its counters stay in the totals).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from socketserver import TCPServer, ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lookupd.codes import Status
from lookupd.errors import LookupdError
from lookupd.server.logs import log_event
from lookupd.v1 import lookup_pb2 as pb

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

_LOGGER = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The variable prometheus_client reads (and child processes inherit)."""
METRICS_PATH = "/metrics"

# 50 us (a cached one-address answer) to 5 s (a full batch on a loaded machine): 1-2.5-5 steps.
DURATION_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
# Addresses per request, 1 to the default --max-batch of 100,000, in steps of ~10^(1/2).
BATCH_BUCKETS = (1, 3, 10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)
# A reload opens and verifies a snapshot (ms) or compiles source files (seconds to a minute).
RELOAD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Label values: lookupd.Status names, and the proto's Verdict/Reason names without prefix.
_STATUS_NAMES: dict[int, str] = {int(member): member.name.lower() for member in Status}
# A run of OK status bytes as long as the default --max-batch and more: a batch that is all
# OK is a prefix of it.
_ALL_OK_BYTES = bytes([Status.OK]) * (1 << 17)
_VERDICT_NAMES: dict[int, str] = {
    number: name.removeprefix("VERDICT_").lower() for name, number in pb.Verdict.items()
}
_REASON_NAMES: dict[int, str] = {
    number: name.removeprefix("REASON_").lower() for name, number in pb.Reason.items()
}
# RPCs answering per-address results (addresses_total and batch_size series for them).
_ADDRESS_RPCS = ("Lookup", "LookupPacked", "StreamLookup")
_BATCH_RPCS = (*_ADDRESS_RPCS, "CheckRegion")
_ALL_RPCS: tuple[str, ...] = tuple(
    method.name for method in pb.DESCRIPTOR.services_by_name["LookupService"].methods
)
_OK = "OK"

# enable_multiprocess's directory in this process, or None (single-process mode).
_multiprocess_dir: str | None = None
# (pid, Metrics) of the instance recording in this process, in multiprocess mode.
_recorder: tuple[int, weakref.ref[Metrics]] | None = None
# Whether a Metrics was created in single-process mode in this process.
_created_in_memory = False


def enable_multiprocess(directory: str | os.PathLike[str]) -> None:
    """Switch this process, and the children it forks afterwards, to multiprocess mode.

    Sets ``PROMETHEUS_MULTIPROC_DIR`` (inherited by children) and replaces
    ``prometheus_client.values.ValueClass``, which prometheus_client chose once, when it was
    first imported, from that variable: every metric created afterwards keeps its values in
    memory-mapped files in ``directory`` (one per process and metric type).

    Call it once, in the supervisor, before any :class:`Metrics` exists in the process and
    before forking the workers: metrics created before it keep in-memory values that no
    other process sees. Calling it again with the same directory does nothing.

    Args:
        directory: an existing, empty directory that outlives the workers (the supervisor
            creates it, and removes it after the last worker). Stale files of an earlier
            run would be merged into the totals, so a directory holding any is refused.

    Raises:
        LookupdError: the directory is missing or holds metrics files, multiprocess mode is
            already on with another directory, or a :class:`Metrics` was already created
            in single-process mode.
    """
    global _multiprocess_dir
    path = os.path.abspath(os.fspath(directory))
    if _multiprocess_dir is not None:
        if _multiprocess_dir == path:
            return
        msg = f"metrics: multiprocess mode is already on with {_multiprocess_dir}, not {path}"
        raise LookupdError(msg)
    if not os.path.isdir(path):
        msg = f"metrics: multiprocess directory {path} does not exist"
        raise LookupdError(msg)
    stale = sorted(name for name in os.listdir(path) if name.endswith(".db"))
    if stale:
        msg = (
            f"metrics: multiprocess directory {path} holds metrics files of an earlier run "
            f"({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}); use an empty one"
        )
        raise LookupdError(msg)
    if _created_in_memory:
        msg = "metrics: enable_multiprocess must be called before any Metrics() is created"
        raise LookupdError(msg)
    os.environ[MULTIPROC_ENV] = path
    # prometheus_client reads the variable only at import; metric constructors look
    # ValueClass up on the module at each construction, so replacing it takes effect for
    # every metric created from now on.
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
    _multiprocess_dir = path


def multiprocess_directory() -> str | None:
    """Return :func:`enable_multiprocess`'s directory, or None in single-process mode."""
    return _multiprocess_dir


def mark_process_dead(pid: int) -> None:
    """Forget the live gauges of an exited worker (multiprocess mode; otherwise a no-op).

    The supervisor calls it for every worker that exits (restarted or not): the
    ``lookupd_data_*`` gauges then describe only the workers alive. The worker's counters
    and histograms stay in the directory and in the totals, so totals never go down.
    """
    if _multiprocess_dir is not None:
        multiprocess.mark_process_dead(pid, _multiprocess_dir)  # type: ignore[no-untyped-call]  # untyped in prometheus_client


class _DataAgeCollector(Collector):
    """``lookupd_data_age_seconds``, computed at scrape time from a build-time getter.

    A collector rather than a gauge: ``Gauge.set_function`` does not exist in multiprocess
    mode, and a stored age would be stale by the time it is scraped. The age is that of the
    data of the process answering the scrape.
    """

    def __init__(self, built_at: Callable[[], float | None], clock: Callable[[], float]) -> None:
        self._built_at = built_at
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "lookupd_data_age_seconds",
            "Seconds since the build of the data this process serves (the process answering "
            "the scrape; absent when the build time is unknown).",
        )
        built_at = self._built_at()
        if built_at is not None and math.isfinite(built_at):
            family.add_metric([], self._clock() - built_at)
        yield family


class _RpcSeries:
    """One RPC's label children, looked up once: ``labels()`` costs ~1 us a call."""

    __slots__ = ("addresses", "batch", "duration", "ok")

    def __init__(self, metrics: Metrics, rpc: str, *, everything: bool = False) -> None:
        self.ok = metrics.requests.labels(rpc, _OK)
        self.duration = metrics.request_duration.labels(rpc)
        # Only the series an RPC can have: no batch size for GetInfo (or another name, such
        # as the admin service's), no addresses for CheckRegion (its answers are counted in
        # verdicts_total); observe_lookup asks for everything.
        self.batch: Histogram | None = None
        if rpc in _BATCH_RPCS or everything:
            self.batch = metrics.batch_size.labels(rpc)
        self.addresses: dict[int, Counter] | None = None
        if rpc in _ADDRESS_RPCS or everything:
            self.addresses = {
                number: metrics.addresses.labels(rpc, name)
                for number, name in _STATUS_NAMES.items()
            }


class Metrics:
    """Every metric of lookupd, and the cheap calls the server makes per request.

    In single-process mode each instance has its own registry (a fresh one by default), so
    several servers in one process do not collide. In multiprocess mode the values live in
    the shared directory whatever the registry: create exactly one instance per process
    (a second would overwrite the first's values; a worker may also keep using the one it
    inherited from the supervisor).

    Thread-safe: the gRPC server calls the ``observe_*`` methods from its pool threads.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        global _created_in_memory, _recorder
        if _multiprocess_dir is None:
            _created_in_memory = True
        else:
            previous = _recorder[1]() if _recorder and _recorder[0] == os.getpid() else None
            if previous is not None:
                msg = "metrics: only one Metrics per process in multiprocess mode"
                raise LookupdError(msg)
            _recorder = (os.getpid(), weakref.ref(self))
        self.registry = CollectorRegistry() if registry is None else registry
        registry = self.registry
        self._lock = threading.Lock()
        self._built_at: float | None = None
        # Where "now" comes from for the load time and the data age (tests pass their own).
        self._clock = clock
        self._serving: tuple[str, str] | None = None
        self.requests = Counter(
            "lookupd_requests",
            "gRPC calls answered, by RPC and gRPC status code.",
            ("rpc", "code"),
            registry=registry,
        )
        self.addresses = Counter(
            "lookupd_addresses",
            "Addresses answered by lookup RPCs, by per-address status.",
            ("rpc", "status"),
            registry=registry,
        )
        self.verdicts = Counter(
            "lookupd_verdicts",
            "CheckRegion answers, by policy, verdict and deciding rule.",
            ("policy", "verdict", "reason"),
            registry=registry,
        )
        self.request_duration = Histogram(
            "lookupd_request_duration_seconds",
            "Time to answer a gRPC call (or a StreamLookup message), by RPC.",
            ("rpc",),
            registry=registry,
            buckets=DURATION_BUCKETS,
        )
        self.batch_size = Histogram(
            "lookupd_batch_size",
            "Addresses per answered request, by RPC.",
            ("rpc",),
            registry=registry,
            buckets=BATCH_BUCKETS,
        )
        # Gauge modes in multiprocess mode. All "live": mark_process_dead drops a dead
        # worker's values, so the gauges describe the workers alive. Every process writes a
        # 0 for an unlabelled gauge as it creates it (the supervisor too, which never sets
        # them): "min" would report that 0, and "max" too before any load; "mostrecent"
        # ignores values never set, since only set() stamps them with a time.
        # - build time: "livemostrecent", the data most recently loaded by a live worker
        #   (right for a rollback to older data too, where "max" would lag); absent until
        #   one has loaded.
        self.data_build_timestamp = Gauge(
            "lookupd_data_build_timestamp_seconds",
            "Build (or release) time of the data most recently loaded; NaN when unknown.",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        # - load time: "livemostrecent", the last load by a live worker (as "max" would
        #   give, less the supervisor's 0).
        self.data_loaded_timestamp = Gauge(
            "lookupd_data_loaded_timestamp_seconds",
            "When data and policies were last loaded (start or reload).",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        # - info: "livemax", 1 while at least one live worker serves the version, 0 once
        #   none does: it stays a 0/1 info metric that joins (group_left) cleanly, where
        #   "livesum" would count workers and "liveall" would add a pid label.
        self.data_info = Gauge(
            "lookupd_data_info",
            "1 for the data and policy versions being served, 0 for ones served before.",
            ("version", "policy_version"),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "lookupd_reloads",
            "Data and policy reloads, by result (success, failure).",
            ("result",),
            registry=registry,
        )
        self.reload_duration = Histogram(
            "lookupd_reload_duration_seconds",
            "Time to load new data and policies, successful or not.",
            registry=registry,
            buckets=RELOAD_BUCKETS,
        )
        self.worker_restarts = Counter(
            "lookupd_worker_restarts",
            "Worker processes the supervisor started again after they exited.",
            registry=registry,
        )
        self.data_age = _DataAgeCollector(lambda: self._built_at, clock)
        registry.register(self.data_age)
        if _multiprocess_dir is None:
            # Custom collectors do not merge across processes: only in single-process mode.
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        # Create the series of every known RPC now, at 0: rate() and increase() then see
        # the first call instead of taking its series' appearance as the baseline.
        # rpc -> its label children, made on first use (here for the RPCs known now).
        self._rpcs: dict[str, _RpcSeries] = {}
        for rpc in _ALL_RPCS:
            self._series(rpc)
        self._reload_ok = self.reloads.labels("success")
        self._reload_failed = self.reloads.labels("failure")
        # (policy, verdict << 8 | reason) -> its verdicts_total child.
        self._verdict_series: dict[tuple[str, int], Counter] = {}

    def _series(self, rpc: str) -> _RpcSeries:
        series = self._rpcs.get(rpc)
        if series is None:
            series = self._rpcs[rpc] = _RpcSeries(self, rpc)
        return series

    def observe_lookup(self, rpc: str, status: npt.NDArray[np.uint8], seconds: float) -> None:
        """Count a lookup request answered OK.

        Args:
            rpc: the RPC's name (``Lookup``, ``LookupPacked``, ``StreamLookup``).
            status: the ``lookupd.Status`` number of each address (``LookupResult.status``,
                or the packed answer's status bytes: the numbers are the same).
            seconds: time taken to answer.
        """
        series = self._series(rpc)
        batch, known = series.batch, series.addresses
        if batch is None or known is None:  # an RPC that usually has no addresses
            series = self._rpcs[rpc] = _RpcSeries(self, rpc, everything=True)
            batch, known = series.batch, series.addresses
            assert batch is not None
            assert known is not None
        series.ok.inc()
        series.duration.observe(seconds)
        size = status.shape[0]
        batch.observe(size)
        # The usual batch is all OK: a bytes prefix test (memcmp: 0.2 us; 5 us for 100,000)
        # settles it without bincount, which widens to intp (0.7 us; 140 us for 100,000).
        if _ALL_OK_BYTES.startswith(status.tobytes()):
            if size:
                known[Status.OK].inc(size)
            return
        counts = np.bincount(status)
        for number in np.flatnonzero(counts).tolist():
            child = known.get(number)
            if child is not None:
                child.inc(int(counts[number]))
            else:  # not a Status number: counted under the number, never dropped
                self.addresses.labels(rpc, str(number)).inc(int(counts[number]))

    def observe_check(
        self,
        policy: str,
        verdicts: npt.ArrayLike,
        reasons: npt.ArrayLike,
        seconds: float,
    ) -> None:
        """Count a CheckRegion request answered OK.

        Args:
            policy: the policy checked against (a known one: unknown names fail the call).
            verdicts: per address, the ``lookupd.v1.Verdict`` number (0-255).
            reasons: per address, the ``lookupd.v1.Reason`` number (0-255).
            seconds: time taken to answer.
        """
        verdict = np.asarray(verdicts, dtype=np.uint8)
        reason = np.asarray(reasons, dtype=np.uint8)
        if verdict.shape != reason.shape or verdict.ndim != 1:
            msg = f"verdicts and reasons differ in shape: {verdict.shape}, {reason.shape}"
            raise ValueError(msg)
        series = self._series("CheckRegion")
        series.ok.inc()
        series.duration.observe(seconds)
        assert series.batch is not None  # made for CheckRegion in __init__
        series.batch.observe(verdict.shape[0])
        # One bincount over (verdict, reason) pairs packed into one number.
        counts = np.bincount(verdict.astype(np.uint16) << 8 | reason)
        for pair in np.flatnonzero(counts).tolist():
            child = self._verdict_series.get((policy, pair))
            if child is None:
                child = self.verdicts.labels(
                    policy,
                    _VERDICT_NAMES.get(pair >> 8, str(pair >> 8)),
                    _REASON_NAMES.get(pair & 0xFF, str(pair & 0xFF)),
                )
                self._verdict_series[(policy, pair)] = child
            child.inc(int(counts[pair]))

    def observe_call(self, rpc: str, seconds: float) -> None:
        """Count a call answered OK that has no per-address answers (``GetInfo``)."""
        series = self._series(rpc)
        series.ok.inc()
        series.duration.observe(seconds)

    def observe_failure(self, rpc: str, code: str, seconds: float) -> None:
        """Count a call that ended with a non-OK gRPC status.

        Args:
            rpc: the RPC's name.
            code: the ``grpc.StatusCode`` name, e.g. ``INVALID_ARGUMENT``
                (``StatusCode.INVALID_ARGUMENT.name``).
            seconds: time until it failed.
        """
        self.requests.labels(rpc, code).inc()
        self._series(rpc).duration.observe(seconds)

    def set_data(self, version: str, built_at: float | None, policy_version: str) -> None:
        """Record that this process now serves ``version`` of the data with those policies.

        Sets ``lookupd_data_info`` to 1 for the pair and to 0 for the pair served before,
        the build time (NaN when unknown, and then no data age), and the load time (now).
        """
        with self._lock:  # a reload thread and a start may race; flips stay paired
            serving = (version, policy_version)
            if serving != self._serving:
                if self._serving is not None:
                    self.data_info.labels(*self._serving).set(0)
                self._serving = serving
            self.data_info.labels(*serving).set(1)
            self._built_at = built_at
            self.data_build_timestamp.set(math.nan if built_at is None else built_at)
            self.data_loaded_timestamp.set(self._clock())

    def reload_finished(self, ok: bool, seconds: float) -> None:
        """Count a reload of data and policies, successful (``ok``) or failed."""
        (self._reload_ok if ok else self._reload_failed).inc()
        self.reload_duration.observe(seconds)

    def worker_restarted(self) -> None:
        """Count a worker the supervisor started again (called in the supervisor)."""
        self.worker_restarts.inc()

    @property
    def built_at(self) -> float | None:
        """Build time of the data this process serves (Unix seconds), None if unknown."""
        return self._built_at


def scrape_registry(metrics: Metrics | None) -> CollectorRegistry:
    """Return the registry a metrics endpoint of this process serves.

    Multiprocess mode: a fresh registry merging every process's files, plus the data age of
    ``metrics`` (this process). Single-process mode: ``metrics``' registry (an empty one
    when ``metrics`` is None).
    """
    if _multiprocess_dir is None:
        return metrics.registry if metrics is not None else CollectorRegistry()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=_multiprocess_dir)  # type: ignore[no-untyped-call]  # untyped in prometheus_client
    if metrics is not None:
        registry.register(metrics.data_age)
    return registry


# --------------------------------------------------------------------------------------
# The HTTP endpoint


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
    0.0.0.0 without IPv6); ``0.0.0.0`` all IPv4 addresses; an IPv6 literal may be
    bracketed; a name is resolved, and each of its addresses tried in turn.
    """
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if name in ("", "::"):
        if socket.has_ipv6:
            yield socket.AF_INET6, ("::", port)
        yield socket.AF_INET, ("0.0.0.0", port)
        return
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


__all__: Sequence[str] = (
    "BATCH_BUCKETS",
    "DURATION_BUCKETS",
    "RELOAD_BUCKETS",
    "Metrics",
    "MetricsServer",
    "enable_multiprocess",
    "mark_process_dead",
    "multiprocess_directory",
    "scrape_registry",
    "serve_metrics",
)
