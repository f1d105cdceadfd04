"""Prometheus metrics of the lookupd server: their definitions, and what the server observes.

One :class:`Metrics` per process holds every metric; the server calls its ``observe_*``
methods once per call, and each RPC's label children are looked up once and kept, so a
call only increments and observes. The endpoint that serves them is
:mod:`lookupd.server.metrics_http`; multiprocess mode (``--workers N``) is
:mod:`lookupd.server.metrics_process`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lookupd.codes import Status
from lookupd.server.metrics_process import claim_process, multiprocess_directory
from lookupd.v1 import lookup_pb2 as pb

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
AUTHZ_RPC = "Check"
"""Envoy's ``envoy.service.auth.v3.Authorization/Check``, as the ``rpc`` label names it."""
_ALL_RPCS: tuple[str, ...] = (
    *(method.name for method in pb.DESCRIPTOR.services_by_name["LookupService"].methods),
    AUTHZ_RPC,
)
_OK = "OK"


class _DataAgeCollector(Collector):
    """``lookupd_data_age_seconds``, computed at scrape time from a data-date getter.

    A collector rather than a gauge: ``Gauge.set_function`` does not exist in multiprocess
    mode, and a stored age would be stale by the time it is scraped. The age is that of the
    data of the process answering the scrape.
    """

    def __init__(self, dated: Callable[[], float | None], clock: Callable[[], float]) -> None:
        self._dated = dated
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "lookupd_data_age_seconds",
            "Seconds since the data this process serves was made: its oldest source's date "
            "(the vendor's build, release or Last-Modified), else its build time (the "
            "process answering the scrape; absent when neither is known).",
        )
        dated = self._dated()
        if dated is not None and math.isfinite(dated):
            family.add_metric([], self._clock() - dated)
        yield family


class _RpcSeries:
    """One RPC's label children, looked up once: ``labels()`` checks and converts the
    label values and takes a lock on every call."""

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
        claim_process(self)
        self.registry = CollectorRegistry() if registry is None else registry
        registry = self.registry
        self._lock = threading.Lock()
        self._built_at: float | None = None
        self._dated: float | None = None
        # Where "now" comes from for the load time and the data age (tests pass their own).
        self._clock = clock
        self._serving: tuple[str, str] | None = None
        self._define_call_metrics(registry)
        self._define_data_metrics(registry)
        self.data_age = _DataAgeCollector(lambda: self._dated, clock)
        registry.register(self.data_age)
        if multiprocess_directory() is None:
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
        # (policy, verdict, reason) -> its authz_decisions_total child.
        self._authz_series: dict[tuple[str, str, str], Counter] = {}

    def _define_call_metrics(self, registry: CollectorRegistry) -> None:
        """The metrics of calls: counts, durations, batch sizes, addresses and verdicts."""
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
        self.authz_decisions = Counter(
            "lookupd_authz_decisions",
            "Envoy external authorization (Check) answers, by policy, verdict and deciding "
            "rule (the reasons of CheckRegion, and unknown_policy).",
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

    def _define_data_metrics(self, registry: CollectorRegistry) -> None:
        """The metrics of the data served, its reloads, and the workers' restarts."""
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
        # - data date: the same, for the date of the data itself (what the age counts from).
        self.data_date_timestamp = Gauge(
            "lookupd_data_date_timestamp_seconds",
            "Date of the data most recently loaded: its oldest source's own date; NaN when "
            "unknown.",
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
        # Descriptors: process_open_fds says the same, but only in single-process mode.
        # "livemostrecent" (which ignores the supervisor's 0, never set): the worker that
        # counted last (each counts every second, and the kernel spreads connections
        # evenly); the limit is the same in every worker.
        self.open_fds = Gauge(
            "lookupd_open_fds",
            "Open file descriptors (connections among them) of the server process.",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.max_fds = Gauge(
            "lookupd_max_fds",
            "The server process's limit on open file descriptors (RLIMIT_NOFILE); 0 or "
            "absent when unlimited.",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        # "livemostrecent": the files as last read by a live worker (all read the same).
        self.tls_certificate_expiry = Gauge(
            "lookupd_tls_certificate_expiry_timestamp_seconds",
            "When the TLS certificate file in use expires (its earliest notAfter), by "
            "certificate (server, client_ca).",
            ("certificate",),
            registry=registry,
            multiprocess_mode="livemostrecent",
        )

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
        # The usual batch is all OK: a bytes prefix test (a copy and one memcmp) settles it
        # without bincount, which widens every status to intp before it counts.
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

    def observe_authz(self, policy: str, verdict: str, reason: str, seconds: float) -> None:
        """Count an Envoy ``Check`` answered (allowed or denied: both are OK calls).

        Args:
            policy: the policy asked for, as a label (the caller bounds unknown names).
            verdict: ``allow`` or ``deny``.
            reason: the deciding rule's word (``country_denied``, ``unknown_policy``, ...).
            seconds: time taken to answer.
        """
        series = self._series(AUTHZ_RPC)
        series.ok.inc()
        series.duration.observe(seconds)
        key = (policy, verdict, reason)
        child = self._authz_series.get(key)
        if child is None:
            child = self._authz_series[key] = self.authz_decisions.labels(*key)
        child.inc()

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

    def set_data(
        self,
        version: str,
        built_at: float | None,
        policy_version: str,
        data_date: float | None = None,
    ) -> None:
        """Record that this process now serves ``version`` of the data with those policies.

        Sets ``lookupd_data_info`` to 1 for the pair and to 0 for the pair served before,
        the build time and the data's own date (NaN when unknown; the data age counts from
        the date, else from the build time, else is absent), and the load time (now).
        """
        with self._lock:  # a reload thread and a start may race; flips stay paired
            serving = (version, policy_version)
            if serving != self._serving:
                if self._serving is not None:
                    self.data_info.labels(*self._serving).set(0)
                self._serving = serving
            self.data_info.labels(*serving).set(1)
            self._built_at = built_at
            self._dated = built_at if data_date is None else data_date
            self.data_build_timestamp.set(math.nan if built_at is None else built_at)
            self.data_date_timestamp.set(math.nan if data_date is None else data_date)
            self.data_loaded_timestamp.set(self._clock())

    def reload_finished(self, ok: bool, seconds: float) -> None:
        """Count a reload of data and policies, successful (``ok``) or failed."""
        (self._reload_ok if ok else self._reload_failed).inc()
        self.reload_duration.observe(seconds)

    def set_certificate_expiry(self, certificate: str, expires: float) -> None:
        """Record when the ``certificate`` file in use (server, client_ca) expires."""
        self.tls_certificate_expiry.labels(certificate).set(expires)

    def set_descriptors(self, count: int, limit: int | None) -> None:
        """Record the open descriptors of this process and its limit (None: unlimited)."""
        self.open_fds.set(count)
        if limit is not None:
            self.max_fds.set(limit)

    def worker_restarted(self) -> None:
        """Count a worker the supervisor started again (called in the supervisor)."""
        self.worker_restarts.inc()

    @property
    def built_at(self) -> float | None:
        """Build time of the data this process serves (Unix seconds), None if unknown."""
        return self._built_at


__all__: Sequence[str] = (
    "AUTHZ_RPC",
    "BATCH_BUCKETS",
    "DURATION_BUCKETS",
    "RELOAD_BUCKETS",
    "Metrics",
)
