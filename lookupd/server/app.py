"""Run the gRPC server: its configuration, :class:`LookupServer`, and ``serve()`` with signals."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import SERVICE_NAME as HEALTH_SERVICE
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from lookupd.datafiles.private_copy import PrivateCopies
from lookupd.errors import LookupdError
from lookupd.server.admin import AdminConfig, AdminServicer
from lookupd.server.answers import Answerer
from lookupd.server.authz.servicer import (
    AUTHZ_SERVICE,
    AuthorizationServicer,
    AuthzConfig,
    add_authorization_service,
)
from lookupd.server.batches import DEFAULT_MAX_BATCH
from lookupd.server.bind import bind_hosts, host_port, refuse_in_use
from lookupd.server.connections import (
    DEFAULT_HANDSHAKE_TIMEOUT_S,
    DEFAULT_KEEPALIVE_S,
    DEFAULT_KEEPALIVE_TIMEOUT_S,
    DEFAULT_MAX_CONCURRENT_STREAMS,
    DEFAULT_MAX_CONNECTION_AGE_GRACE_S,
    DEFAULT_MAX_CONNECTION_AGE_S,
    DEFAULT_MAX_CONNECTION_IDLE_S,
    connection_options,
)
from lookupd.server.descriptors import DescriptorWatch
from lookupd.server.guard import GuardedRegistrar
from lookupd.server.health import HealthServicer
from lookupd.server.logs import log_event
from lookupd.server.reload import (
    DEFAULT_WATCH_INTERVAL_S,
    Loader,
    Preloaded,
    ReloadOutcome,
    ReloadRequests,
)
from lookupd.server.rundir import RunDir
from lookupd.server.servicer import LookupServicer, add_lookup_service
from lookupd.server.streams import DEFAULT_STREAM_IDLE_S
from lookupd.v1 import lookup_pb2_grpc
from lookupd.wire import ADMIN_SERVICE, HEALTH_SERVICE_NAMES, LOOKUP_SERVICE

if TYPE_CHECKING:
    from lookupd.server.metrics import Metrics
    from lookupd.server.metrics_http import MetricsServer
    from lookupd.server.tls import ServerTLS

_LOGGER = logging.getLogger(__name__)

DEFAULT_HOST = "[::]"
DEFAULT_PORT = 50051
# A sync server with a small pool: on this kind of machine an echo server cost less CPU per
# unary call and answered with lower latency than grpc.aio, and a large pool (32 threads)
# cost more CPU per call (figures in bench/README.md, "Figures behind design choices in
# the code").
DEFAULT_THREADS = 8
# Each open StreamLookup holds a thread for its lifetime, so streams get a pool of their own
# and can never starve unary calls: more streams than this wait for a thread.
DEFAULT_MAX_STREAMS = 16
DEFAULT_GRACE_S = 5.0
# Long enough for a worker loading a large source file, short enough that clients stuck on
# a stopped worker's connections wait seconds, not for ever.
DEFAULT_HEARTBEAT_TIMEOUT_S = 10.0
# 8 MiB: a full default batch of text (100,000 addresses of up to 45 characters plus 2 bytes
# of framing each is 4.7 MB) fits; gRPC's own default of 4 MiB would not.
DEFAULT_MAX_MESSAGE_BYTES = 8 << 20
# How often the main thread wakes to run a signal handler the kernel left pending.
_SIGNAL_CHECK_S = 0.5


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How to run the server; every field has a ``lookupd serve`` flag and variable."""

    host: str = DEFAULT_HOST
    """Address to listen on; ``[::]`` (all, falling back to 0.0.0.0 without IPv6)."""
    port: int = DEFAULT_PORT
    """Port; 0 lets the system choose (see :attr:`LookupServer.port`)."""
    threads: int = DEFAULT_THREADS
    """Worker threads of the sync server."""
    max_batch: int = DEFAULT_MAX_BATCH
    """Most addresses per request (text and packed together)."""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """Largest request message accepted; larger ones fail with RESOURCE_EXHAUSTED."""
    max_streams: int = DEFAULT_MAX_STREAMS
    """Threads for StreamLookup streams (one each while open), apart from ``threads``."""
    grace_s: float = DEFAULT_GRACE_S
    """On stop, how long calls in flight may take to finish before they are cancelled."""
    drain_s: float = 0.0
    """On stop, how long to keep serving after health goes NOT_SERVING, so load balancers
    move traffic away before new calls are refused."""
    watch_interval_s: float = DEFAULT_WATCH_INTERVAL_S
    """How often to look for changed data and policy files; 0 turns watching off."""
    tls: ServerTLS | None = None
    """Certificate, key and optional client CA (mTLS); None serves plaintext."""
    admin: AdminConfig = field(default_factory=AdminConfig)
    """Who may call the admin RPCs (nobody by default)."""
    reuse_port: bool = False
    """Let other processes bind the same port (SO_REUSEPORT): for worker processes only,
    since otherwise a second server on a busy port would start silently."""
    heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S
    """With worker processes: how long a worker may send no heartbeat before the supervisor
    kills and replaces it (stopped, or its threads starved of the GIL); 0 turns it off."""
    # Connections and streams (see lookupd.server.connections for the defaults' reasons);
    # 0 seconds turns a limit off.
    handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S
    """How long a new connection may take to finish its TLS and HTTP/2 handshake."""
    keepalive_s: float = DEFAULT_KEEPALIVE_S
    """Ping a connection after this long without activity."""
    keepalive_timeout_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S
    """Close a connection whose ping is not acknowledged within this (0: gRPC's own)."""
    max_connection_idle_s: float = DEFAULT_MAX_CONNECTION_IDLE_S
    """Close a connection with no call in flight for this long."""
    max_connection_age_s: float = DEFAULT_MAX_CONNECTION_AGE_S
    """Close every connection after about this long (gRPC adds +-10%)."""
    max_connection_age_grace_s: float = DEFAULT_MAX_CONNECTION_AGE_GRACE_S
    """How long the calls in flight on a connection past its age may take to finish."""
    max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS
    """Most calls in flight on one connection (HTTP/2 streams; more wait in the client)."""
    stream_idle_timeout_s: float = DEFAULT_STREAM_IDLE_S
    """End a StreamLookup stream that sends no message for this long."""
    authz: AuthzConfig = field(default_factory=AuthzConfig)
    """How Envoy's ``Check`` is answered (default policy, address source, deny status)."""


class LookupServer:
    """A gRPC server with the lookup, admin, health and reflection services.

    Built, bound and started by the constructor's caller in :func:`serve`'s order: the
    constructor builds the server and adds the servicers, :meth:`start` binds and starts it
    (health NOT_SERVING), :meth:`load` makes it answer (health SERVING), :meth:`stop` ends it.

    Args:
        metrics: where calls are counted and timed, if anywhere.
        reload: what the admin ``Reload`` RPC calls (see :class:`lookupd.server.reload.Loader`).
        notify_others: what the admin ``Reload`` RPC calls next, to reach the other worker
            processes.
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        metrics: Metrics | None = None,
        reload: Callable[[str], Any] | None = None,
        notify_others: Callable[[], None] | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        # 1. Build the server; streams get their own pool (see DEFAULT_MAX_STREAMS).
        self._stream_pool = futures.ThreadPoolExecutor(
            max_workers=self.config.max_streams, thread_name_prefix="lookupd-stream"
        )
        self._server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=self.config.threads, thread_name_prefix="lookupd-grpc"
            ),
            options=[
                ("grpc.max_receive_message_length", self.config.max_message_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", int(self.config.reuse_port)),
                *connection_options(self.config),
            ],
        )
        # 2. Add the servicers: lookup, admin, health (NOT_SERVING until loaded), reflection.
        self.servicer = LookupServicer(
            max_message_bytes=self.config.max_message_bytes,
            metrics=metrics,
            stream_idle_s=self.config.stream_idle_timeout_s,
        )
        add_lookup_service(self.servicer, self._server, self._stream_pool)
        # The other services refuse undecodable requests as the lookup service does.
        guarded = GuardedRegistrar(self._server, metrics)
        self.admin = AdminServicer(self.config.admin.loaded(), reload, notify_others)
        lookup_pb2_grpc.add_AdminServiceServicer_to_server(  # type: ignore[no-untyped-call]
            self.admin, guarded
        )
        # Envoy's external authorization, from the same data and policies.
        self.authz = AuthorizationServicer(self.config.authz, metrics)
        add_authorization_service(self.authz, guarded)
        self.health = HealthServicer()
        for name in HEALTH_SERVICE_NAMES:
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, guarded)  # type: ignore[arg-type]
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(  # type: ignore[no-untyped-call]
            reflection.ReflectionServicer(
                (
                    LOOKUP_SERVICE,
                    ADMIN_SERVICE,
                    AUTHZ_SERVICE,
                    HEALTH_SERVICE,
                    reflection.SERVICE_NAME,
                )
            ),
            guarded,
        )
        if self.config.admin.token_file is not None and self.config.tls is None:
            _LOGGER.warning("the admin token travels in clear text: serve with TLS")
        self.port = 0
        self.address = ""
        self._metrics = metrics
        self._descriptors = DescriptorWatch(metrics)

    def start(self) -> LookupServer:
        """Bind the port and start serving (UNAVAILABLE until :meth:`load`).

        Raises:
            LookupdError: the address cannot be bound, or the TLS files cannot be read.
        """
        # 3. Bind. Alone on the port (not a worker): refuse it if another server listens
        # there, before gRPC tries (it would log its own error lines first).
        if not self.config.reuse_port:
            refuse_in_use(self.config.host, self.config.port)
        credentials = self.config.tls.credentials(self._metrics) if self.config.tls else None
        self.address, self.port = _bind(
            self._server, self.config.host, self.config.port, credentials
        )
        # 4. Start, and watch the descriptors that connections take.
        self._server.start()
        self._descriptors.start()
        return self

    def load(self, answerer: Answerer) -> None:
        """Answer from ``answerer``, and tell health checks the server is SERVING."""
        self.servicer.load(answerer)
        self.authz.load(answerer)
        for name in HEALTH_SERVICE_NAMES:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace_s: float | None = None, *, drain_s: float | None = None) -> None:
        """Go NOT_SERVING, keep answering for ``drain_s``, then refuse new calls and let
        calls in flight finish within ``grace_s`` (defaults: the config's).

        Open health ``Watch`` streams are told NOT_SERVING at once and ended after the
        drain, so they do not hold the stop.
        """
        grace = self.config.grace_s if grace_s is None else grace_s
        drain = self.config.drain_s if drain_s is None else drain_s
        self.health.enter_graceful_shutdown()
        if drain > 0:
            time.sleep(drain)
        self.health.end_watches()
        self._server.stop(grace).wait()
        self._stream_pool.shutdown(wait=False)
        self._descriptors.stop()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the server stops (or ``timeout_s`` passes); return True if it stopped."""
        return not self._server.wait_for_termination(timeout_s)

    def __enter__(self) -> LookupServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop(0, drain_s=0)


def _bind(
    server: grpc.Server, host: str, port: int, credentials: grpc.ServerCredentials | None
) -> tuple[str, int]:
    """Bind ``host:port`` (with TLS if ``credentials``), trying :func:`bind_hosts` in turn;
    return the address bound and its port."""
    problem = ""
    for candidate in bind_hosts(host):
        address = host_port(candidate, port)
        try:
            bound = (
                server.add_secure_port(address, credentials)
                if credentials is not None
                else server.add_insecure_port(address)
            )
        except RuntimeError as exc:  # grpcio raises where older versions returned 0
            problem = str(exc)
            continue
        if bound:
            return host_port(candidate, bound), bound
    msg = f"cannot listen on {host}:{port}" + (f": {problem}" if problem else "")
    raise LookupdError(msg)


def serve(
    config: ServerConfig | None = None,
    *,
    db_path: str | os.PathLike[str] | None = None,
    policies_path: str | os.PathLike[str] | None = None,
    port_file: str | os.PathLike[str] | None = None,
    metrics_address: tuple[str, int] | None = None,
    stop_event: threading.Event | None = None,
    notify_others: Callable[[], None] | None = None,
    preloaded: Preloaded | None = None,
    on_serving: Callable[[], None] | None = None,
    run_dir: RunDir | None = None,
) -> None:
    """Run the server until SIGTERM or SIGINT (or ``stop_event``), then stop gracefully.

    Five steps: build the server, add the servicers, bind, start, wait. The data and the
    policies are loaded after the start, so health checks see NOT_SERVING until they are
    loaded; then they are watched (``watch_interval_s``) and reloaded on SIGHUP and on the
    admin ``Reload`` RPC. On SIGTERM or SIGINT, health goes NOT_SERVING, the server keeps
    answering for ``drain_s``, and calls in flight get ``grace_s`` to finish.

    Args:
        port_file: write the bound port (and a newline) here once serving (listening, data
            and policies loaded): with port 0, how a parent process learns the port.
        metrics_address: (host, port) to serve Prometheus metrics on; None: no metrics.
        stop_event: set it to stop (signals set it too when called from the main thread).
        notify_others: called after an admin reload, to reach other worker processes.
        preloaded: the data and policies, loaded already (by a supervisor before forking);
            files changed since are reloaded at once.
        on_serving: called once the data and policies are loaded and calls are answered.
        run_dir: where a snapshot's private copy is kept (see
            :mod:`lookupd.datafiles.private_copy`); None: a run directory of its own in
            the system's temporary directory, removed on return.

    Raises:
        LookupdError: the port cannot be bound, the run directory cannot be made, or the
            data or policies cannot be loaded.
    """
    config = config or ServerConfig()
    stop = stop_event or threading.Event()
    run = run_dir or RunDir.create()
    metrics, metrics_server = _start_metrics(metrics_address)
    reload = _LateReload()
    # SIGHUP: a byte on a pipe, read by one thread that reloads (a burst is one reload).
    requests = ReloadRequests(lambda: reload("signal"))
    restore = _handle_signals(stop, requests.request)
    try:
        # 1-2. Build the server and add the servicers; 3-4. bind and start.
        server = LookupServer(config, metrics=metrics, reload=reload, notify_others=notify_others)
        reload.loader = loader = Loader(
            db_path,
            policies_path,
            publish=server.load,
            max_batch=config.max_batch,
            metrics=metrics,
            preloaded=preloaded,
            copies=PrivateCopies(run.data),
        )
        if preloaded is not None:
            # A worker: the kernel hands it connections as soon as it listens (SO_REUSEPORT),
            # so it answers from the supervisor's data from its first call, not UNAVAILABLE.
            # Only the loader holds the preloaded data: once a reload replaces it, its
            # mapping goes (a reference here would keep it for the worker's life).
            del preloaded
            loader.load()
        server.start()
        _log_start(server, metrics_address, metrics_server)
        _load(server, loader, stop)
        _announce(server, port_file, on_serving)
        _wait_then_stop(server, stop)
    finally:
        restore()
        requests.close()
        if metrics_server is not None:
            metrics_server.close()
        if run_dir is None:
            run.remove()


class _LateReload:
    """What the admin ``Reload`` RPC and SIGHUP call: the loader's reload once it has loaded
    the data; nothing before (None). It never waits for a reload in progress."""

    loader: Loader | None = None

    def __call__(self, trigger: str) -> ReloadOutcome | None:
        loader = self.loader
        if loader is None or loader.current is None:
            return None
        return loader.reload_now(trigger)


def _start_metrics(
    address: tuple[str, int] | None,
) -> tuple[Metrics | None, MetricsServer | None]:
    """This process's metrics and their HTTP endpoint on ``address``; none without one."""
    if address is None:
        return None, None
    # prometheus_client is imported only by servers that serve metrics.
    from lookupd.server.metrics import Metrics
    from lookupd.server.metrics_http import serve_metrics

    metrics = Metrics()
    return metrics, serve_metrics(*address, metrics)


def _log_start(
    server: LookupServer,
    metrics_address: tuple[str, int] | None,
    metrics_server: MetricsServer | None,
) -> None:
    config = server.config
    tls = config.tls
    log_event(
        _LOGGER,
        logging.INFO,
        "start",
        f"listening on {server.address}",
        address=server.address,
        tls="mtls" if tls and tls.client_ca else "tls" if tls else "off",
        admin="on" if config.admin.enabled else "off",
        metrics=f"{metrics_address[0]}:{metrics_server.port}"
        if metrics_address and metrics_server
        else "off",
    )


def _load(server: LookupServer, loader: Loader, stop: threading.Event) -> None:
    """Load the data and the policies unless preloaded (the server stops if they cannot
    be), catch up with files changed since a preload, and watch the files until ``stop``."""
    if loader.current is None:
        try:
            loader.load()
        except BaseException:
            server.stop(0, drain_s=0)
            raise
    loader.refresh()
    if server.config.watch_interval_s > 0:
        loader.watch(server.config.watch_interval_s, stop)


def _announce(
    server: LookupServer,
    port_file: str | os.PathLike[str] | None,
    on_serving: Callable[[], None] | None,
) -> None:
    """Say that the server answers: in the port file, to ``on_serving``, in the log."""
    if port_file is not None:
        write_port_file(Path(port_file), server.port)
    if on_serving is not None:
        on_serving()
    log_event(_LOGGER, logging.INFO, "serving", "serving", address=server.address)


def _wait_then_stop(server: LookupServer, stop: threading.Event) -> None:
    """5. Wait until ``stop`` is set, then stop the server gracefully."""
    # Python runs signal handlers in the main thread, but the kernel may deliver the signal
    # to any other thread (gRPC's); a wait without a timeout would then never return to run
    # the handler, so the wait wakes now and then.
    while not stop.wait(_SIGNAL_CHECK_S):
        pass
    config = server.config
    log_event(
        _LOGGER,
        logging.INFO,
        "stop",
        f"stopping: NOT_SERVING, {config.drain_s:g} s drain, {config.grace_s:g} s grace",
        drain_s=config.drain_s,
        grace_s=config.grace_s,
    )
    server.stop()
    log_event(_LOGGER, logging.INFO, "stopped", "stopped")


def _handle_signals(stop: threading.Event, reload: Callable[[], object]) -> Callable[[], None]:
    """Make SIGTERM and SIGINT set ``stop``, and SIGHUP call ``reload`` (which must be safe
    in a signal handler: see :class:`ReloadRequests`); return a function restoring the old
    handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_stop(signum: int, frame: FrameType | None) -> None:
        log_event(_LOGGER, logging.INFO, "signal", "received " + signal.Signals(signum).name)
        stop.set()

    def on_hangup(signum: int, frame: FrameType | None) -> None:
        # Only a request: the reload runs in a thread, so stop stays responsive.
        reload()

    handlers = {signal.SIGTERM: on_stop, signal.SIGINT: on_stop, signal.SIGHUP: on_hangup}
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def write_port_file(path: Path, port: int) -> None:
    """Write the port atomically, so a reader never sees a partial file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(path)
