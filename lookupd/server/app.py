"""Serve lookups over gRPC: a servicer adapting :mod:`lookupd.server.answers`, and ``serve()``."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lookupd.errors import LookupdError
from lookupd.server.admin import ADMIN_SERVICE_NAME, AdminConfig, AdminServicer
from lookupd.server.answers import (
    DEFAULT_MAX_BATCH,
    Answerer,
    BadRequestError,
    CallAbandonedError,
    RequestError,
    UnknownPolicyError,
)
from lookupd.server.logs import log_event
from lookupd.server.reload import DEFAULT_WATCH_INTERVAL_S, Loader, Preloaded
from lookupd.v1 import lookup_pb2 as pb
from lookupd.v1 import lookup_pb2_grpc
from lookupd.wire import HEALTH_SERVICE_NAMES, LOOKUP_SERVICE

if TYPE_CHECKING:
    from lookupd.server.metrics import Metrics
    from lookupd.server.tls import ServerTLS

_LOGGER = logging.getLogger(__name__)

SERVICE_NAME = LOOKUP_SERVICE
DEFAULT_HOST = "[::]"
DEFAULT_PORT = 50051
# A sync server with a small pool: on this kind of machine an echo server spent 110-125 us
# of CPU per unary call with 2-8 threads (32 threads doubled it) against 155-210 us for
# grpc.aio, with p50/p99 latency 0.25/0.55 ms against 0.5/0.9-1.0 ms (bench/README.md).
DEFAULT_THREADS = 8
# Each open StreamLookup holds a thread for its lifetime, so streams get a pool of their own
# and can never starve unary calls: more streams than this wait for a thread.
DEFAULT_MAX_STREAMS = 16
DEFAULT_GRACE_S = 5.0
# 8 MiB: a full default batch of text (100,000 addresses of up to 45 characters plus 2 bytes
# of framing each is 4.7 MB) fits; gRPC's own default of 4 MiB would not.
DEFAULT_MAX_MESSAGE_BYTES = 8 << 20


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


class LookupServicer(lookup_pb2_grpc.LookupServiceServicer):
    """The ``lookupd.v1.LookupService`` servicer: a thin shell over :class:`Answerer`.

    Until :meth:`load` is called every call fails with UNAVAILABLE (health says
    NOT_SERVING meanwhile). Each call reads the answerer once, so it answers entirely from
    one data version even if another is loaded during the call.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        metrics: Metrics | None = None,
    ) -> None:
        self._answerer: Answerer | None = None
        self._max_message_bytes = max_message_bytes
        self._metrics = metrics

    def load(self, answerer: Answerer) -> None:
        """Answer from ``answerer`` from now on (one assignment: atomic for callers)."""
        self._answerer = answerer

    def _current(self, context: grpc.ServicerContext, rpc: str, started: float) -> Answerer:
        answerer = self._answerer
        if answerer is None:
            self._fail(context, rpc, started, grpc.StatusCode.UNAVAILABLE, "data not loaded yet")
        return answerer

    def Lookup(self, request: pb.LookupRequest, context: grpc.ServicerContext) -> pb.LookupResponse:
        """Answer a batch of text addresses."""
        return pb.LookupResponse.FromString(self.lookup_encoded(request, context))

    def lookup_encoded(
        self, request: pb.LookupRequest | bytes, context: grpc.ServicerContext
    ) -> bytes:
        """Answer a batch of text addresses with the serialized response.

        What the server registers for ``Lookup``, with pass-through (de)serializers: a
        large request is read straight from its bytes (:meth:`Answerer.
        lookup_request_answer`), others are decoded; the answer is encoded from per-label
        tables, not built as a message (see :meth:`Answerer.lookup_text_encoded`).
        """
        started = time.perf_counter()
        answerer = self._current(context, "Lookup", started)
        try:
            answer = None
            if isinstance(request, bytes):
                answer = answerer.lookup_request_answer(request, keep_going=context.is_active)
                if answer is None:
                    request = _decode_lookup_request(request)
            if answer is None:
                assert not isinstance(request, bytes)  # decoded just above
                answer = answerer.lookup_text_answer(
                    request.addresses,
                    subdivisions=request.include_subdivisions,
                    keep_going=context.is_active,
                )
            encoded, status = answer
        except Exception as exc:  # every failure ends the call with a status
            self._abort(context, "Lookup", started, exc)
        if self._metrics is not None:
            self._metrics.observe_lookup("Lookup", status, time.perf_counter() - started)
        return encoded

    def LookupPacked(
        self, request: pb.PackedLookupRequest, context: grpc.ServicerContext
    ) -> pb.PackedLookupResponse:
        """Answer a batch of packed addresses."""
        started = time.perf_counter()
        answerer = self._current(context, "LookupPacked", started)
        return self._packed(answerer, request, context, "LookupPacked", started)

    def StreamLookup(
        self, request_iterator: Iterator[pb.PackedLookupRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.PackedLookupResponse]:
        """Answer each packed batch of a stream, in order (each from the data current when
        it arrives)."""
        for request in request_iterator:
            started = time.perf_counter()
            answerer = self._current(context, "StreamLookup", started)
            yield self._packed(answerer, request, context, "StreamLookup", started)

    def _packed(
        self,
        answerer: Answerer,
        request: pb.PackedLookupRequest,
        context: grpc.ServicerContext,
        rpc: str,
        started: float,
    ) -> pb.PackedLookupResponse:
        try:
            v4_codes, v6_codes, v4_status, v6_status = answerer.lookup_packed(
                request.ipv4, request.ipv6, keep_going=context.is_active
            )
        except Exception as exc:  # every failure ends the call with a status
            self._abort(context, rpc, started, exc)
        response = pb.PackedLookupResponse(
            ipv4_countries=v4_codes,
            ipv6_countries=v6_codes,
            ipv4_status=v4_status,
            ipv6_status=v6_status,
            data_version=answerer.version_message(),
            tag=request.tag,
        )
        if self._metrics is not None:
            status = np.frombuffer(v4_status + v6_status, dtype=np.uint8)
            self._metrics.observe_lookup(rpc, status, time.perf_counter() - started)
        return response

    def CheckRegion(
        self, request: pb.CheckRegionRequest, context: grpc.ServicerContext
    ) -> pb.CheckRegionResponse:
        """Check a batch of addresses against a named policy."""
        started = time.perf_counter()
        answerer = self._current(context, "CheckRegion", started)
        try:
            verdicts, reasons, countries = answerer.check(
                request.policy, request.addresses, request.ipv4, request.ipv6
            )
        except Exception as exc:  # every failure ends the call with a status
            self._abort(context, "CheckRegion", started, exc)
        response = pb.CheckRegionResponse(
            verdicts=verdicts.tolist(),
            reasons=reasons.tolist(),
            countries=countries,
            data_version=answerer.version_message(),
            policy_version=answerer.policy_set.version if answerer.policy_set else "",
        )
        if self._metrics is not None:
            seconds = time.perf_counter() - started
            self._metrics.observe_check(request.policy, verdicts, reasons, seconds)
        return response

    def GetInfo(
        self, request: pb.GetInfoRequest, context: grpc.ServicerContext
    ) -> pb.GetInfoResponse:
        """Describe the data, policies, limits and versions."""
        started = time.perf_counter()
        answerer = self._current(context, "GetInfo", started)
        try:
            response = answerer.info(max_message_bytes=self._max_message_bytes)
        except Exception as exc:  # every failure ends the call with a status
            self._abort(context, "GetInfo", started, exc)
        if self._metrics is not None:
            self._metrics.observe_call("GetInfo", time.perf_counter() - started)
        return response

    def _abort(
        self, context: grpc.ServicerContext, rpc: str, started: float, exc: Exception
    ) -> NoReturn:
        """End the call with the status ``exc`` stands for; unexpected errors are INTERNAL."""
        if isinstance(exc, RequestError):
            code = _CODES.get(type(exc), grpc.StatusCode.INVALID_ARGUMENT)
            self._fail(context, rpc, started, code, str(exc))
        _LOGGER.exception("internal error answering a call")
        message = f"internal error: {type(exc).__name__}"
        self._fail(context, rpc, started, grpc.StatusCode.INTERNAL, message)

    def _fail(
        self,
        context: grpc.ServicerContext,
        rpc: str,
        started: float,
        code: grpc.StatusCode,
        message: str,
    ) -> NoReturn:
        if self._metrics is not None:
            self._metrics.observe_failure(rpc, code.name, time.perf_counter() - started)
        context.abort(code, message)


def _decode_lookup_request(message: bytes) -> pb.LookupRequest:
    try:
        return pb.LookupRequest.FromString(message)
    except DecodeError as exc:
        msg = f"malformed LookupRequest: {exc}"
        raise BadRequestError(msg) from exc


_CODES: dict[type[RequestError], grpc.StatusCode] = {
    BadRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    UnknownPolicyError: grpc.StatusCode.NOT_FOUND,
    CallAbandonedError: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class _HealthServicer(health.HealthServicer):
    """grpc's health servicer, whose open ``Watch`` streams can be ended on stop.

    Load balancers keep a ``Watch`` open for as long as a server lives; left open, it would
    hold ``server.stop(grace)`` for the whole grace. After telling watchers NOT_SERVING,
    :meth:`end_watches` closes their streams (OK status), as a stopping server should.
    """

    def __init__(self) -> None:
        super().__init__(experimental_non_blocking=True)
        self._watch_callbacks: list[_SendOnce] = []
        self._watch_lock = threading.Lock()

    def Watch(  # grpc passes send_response_callback in non-blocking mode
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.ServicerContext,
        send_response_callback: Callable[[Any], None] | None = None,
    ) -> Any:
        if send_response_callback is None:  # a server without non-blocking handlers
            return super().Watch(request, context)
        once = _SendOnce(send_response_callback)
        with self._watch_lock:
            self._watch_callbacks = [c for c in self._watch_callbacks if not c.ended]
            self._watch_callbacks.append(once)
        return super().Watch(request, context, once)

    def end_watches(self) -> None:
        """End every open ``Watch`` stream (they have been told NOT_SERVING first)."""
        with self._watch_lock:
            callbacks, self._watch_callbacks = self._watch_callbacks, []
        for callback in callbacks:
            callback(None)


class _SendOnce:
    """A Watch's send-response callback that ignores everything after the end (None):
    grpc's own close callback calls it again once the stream has ended."""

    def __init__(self, send: Callable[[Any], None]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self.ended = False

    def __call__(self, response: Any) -> None:
        with self._lock:
            if self.ended:
                return
            if response is None:
                self.ended = True
            self._send(response)


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
            ],
        )
        # 2. Add the servicers: lookup, admin, health (NOT_SERVING until loaded), reflection.
        self.servicer = LookupServicer(
            max_message_bytes=self.config.max_message_bytes, metrics=metrics
        )
        _add_lookup_service(self.servicer, self._server, self._stream_pool)
        self.admin = AdminServicer(self.config.admin.loaded(), reload, notify_others)
        lookup_pb2_grpc.add_AdminServiceServicer_to_server(  # type: ignore[no-untyped-call]
            self.admin, self._server
        )
        self.health = _HealthServicer()
        for name in HEALTH_SERVICE_NAMES:
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, ADMIN_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
            self._server,
        )
        if self.config.admin.token_file is not None and self.config.tls is None:
            _LOGGER.warning("the admin token travels in clear text: serve with TLS")
        self.port = 0
        self.address = ""

    def start(self) -> LookupServer:
        """Bind the port and start serving (UNAVAILABLE until :meth:`load`).

        Raises:
            LookupdError: the address cannot be bound, or the TLS files cannot be read.
        """
        # 3. Bind.
        credentials = self.config.tls.credentials() if self.config.tls else None
        self.address, self.port = _bind(
            self._server, self.config.host, self.config.port, credentials
        )
        # 4. Start.
        self._server.start()
        return self

    def load(self, answerer: Answerer) -> None:
        """Answer from ``answerer``, and tell health checks the server is SERVING."""
        self.servicer.load(answerer)
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

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the server stops (or ``timeout_s`` passes); return True if it stopped."""
        return not self._server.wait_for_termination(timeout_s)

    def __enter__(self) -> LookupServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop(0, drain_s=0)


def _pass_through(data: bytes) -> bytes:
    return data


# grpc's handler factory for each (client streams, server streams) shape of an RPC.
_HANDLER_FACTORIES: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _add_lookup_service(
    servicer: LookupServicer, server: grpc.Server, stream_pool: futures.ThreadPoolExecutor
) -> None:
    """Register the servicer as protoc's ``add_LookupServiceServicer_to_server`` would, but
    with ``Lookup`` answered by :meth:`LookupServicer.lookup_encoded` (already serialized)
    and client-streaming RPCs run in ``stream_pool``.

    The handlers are derived from the proto's service descriptor, so a new RPC needs no
    change here, only its servicer method.
    """
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in pb.DESCRIPTOR.services_by_name["LookupService"].methods:
        request_type = getattr(pb, method.input_type.name)
        response_type = getattr(pb, method.output_type.name)
        encoded = method.name == "Lookup"
        factory = _HANDLER_FACTORIES[(method.client_streaming, method.server_streaming)]
        behaviour = servicer.lookup_encoded if encoded else getattr(servicer, method.name)
        if method.client_streaming:
            behaviour = _in_pool(behaviour, stream_pool)
        handlers[method.name] = factory(
            behaviour,
            request_deserializer=_pass_through if encoded else request_type.FromString,
            response_serializer=_pass_through if encoded else response_type.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def _in_pool(behaviour: Callable[..., Any], pool: futures.ThreadPoolExecutor) -> Callable[..., Any]:
    """``behaviour``, run by grpc in ``pool`` rather than the server's own pool."""

    def run(request_iterator: Any, context: grpc.ServicerContext) -> Any:
        return behaviour(request_iterator, context)

    run.experimental_thread_pool = pool  # type: ignore[attr-defined]  # read by grpc
    return run


def _bind(
    server: grpc.Server, host: str, port: int, credentials: grpc.ServerCredentials | None
) -> tuple[str, int]:
    """Bind ``host:port`` (with TLS if ``credentials``); ``[::]`` falls back to 0.0.0.0
    where IPv6 is unavailable."""
    hosts = [host, "0.0.0.0"] if host in ("[::]", "::") else [host]
    problem = ""
    for candidate in hosts:
        name = f"[{candidate}]" if ":" in candidate and not candidate.startswith("[") else candidate
        try:
            address = f"{name}:{port}"
            bound = (
                server.add_secure_port(address, credentials)
                if credentials is not None
                else server.add_insecure_port(address)
            )
        except RuntimeError as exc:  # grpcio raises where older versions returned 0
            problem = str(exc)
            continue
        if bound:
            return f"{name}:{bound}", bound
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

    Raises:
        LookupdError: the port cannot be bound, or the data or policies cannot be loaded.
    """
    config = config or ServerConfig()
    stop = stop_event or threading.Event()
    metrics = None
    metrics_server = None
    if metrics_address is not None:
        from lookupd.server.metrics import Metrics, serve_metrics

        metrics = Metrics()
        metrics_server = serve_metrics(*metrics_address, metrics)
    loader: Loader | None = None

    def reload(trigger: str) -> Any:
        if loader is None or loader.current is None:
            return None
        return loader.reload(trigger)

    restore = _handle_signals(stop, lambda: reload("signal"))
    try:
        server = LookupServer(config, metrics=metrics, reload=reload, notify_others=notify_others)
        server.start()
        log_event(
            _LOGGER,
            logging.INFO,
            "start",
            f"listening on {server.address}",
            address=server.address,
            tls="mtls" if config.tls and config.tls.client_ca else "tls" if config.tls else "off",
            admin="on" if config.admin.enabled else "off",
            metrics=f"{metrics_address[0]}:{metrics_server.port}"
            if metrics_address and metrics_server
            else "off",
        )
        loader = Loader(
            db_path,
            policies_path,
            publish=server.load,
            max_batch=config.max_batch,
            metrics=metrics,
            preloaded=preloaded,
        )
        try:
            loader.load()
        except BaseException:
            server.stop(0, drain_s=0)
            raise
        loader.refresh()
        if config.watch_interval_s > 0:
            loader.watch(config.watch_interval_s, stop)
        if port_file is not None:
            write_port_file(Path(port_file), server.port)
        if on_serving is not None:
            on_serving()
        log_event(_LOGGER, logging.INFO, "serving", "serving", address=server.address)
        # 5. Wait. Event.wait is interrupted by signals, whose handlers set the event.
        stop.wait()
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
    finally:
        restore()
        if metrics_server is not None:
            metrics_server.close()


def _handle_signals(stop: threading.Event, reload: Callable[[], object]) -> Callable[[], None]:
    """Make SIGTERM and SIGINT set ``stop``, and SIGHUP call ``reload`` in a thread; return
    a function restoring the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_stop(signum: int, frame: FrameType | None) -> None:
        log_event(_LOGGER, logging.INFO, "signal", "received " + signal.Signals(signum).name)
        stop.set()

    def on_hangup(signum: int, frame: FrameType | None) -> None:
        # Off the main thread: a reload can take seconds, and stop must stay responsive.
        threading.Thread(target=reload, name="lookupd-reload", daemon=True).start()

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
