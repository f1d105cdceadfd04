"""Serve lookups over gRPC: a servicer adapting :mod:`lookupd.service`, and ``serve()``."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lookupd.database import open_database
from lookupd.errors import LookupdError
from lookupd.service import (
    DEFAULT_MAX_BATCH,
    Answerer,
    BadRequestError,
    CallAbandonedError,
    RequestError,
    UnknownPolicyError,
)
from lookupd.v1 import lookup_pb2 as pb
from lookupd.v1 import lookup_pb2_grpc

if TYPE_CHECKING:
    from lookupd.tls import ServerTLS

_LOGGER = logging.getLogger(__name__)

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["LookupService"].full_name
DEFAULT_HOST = "[::]"
DEFAULT_PORT = 50051
# A sync server with a small pool: on this kind of machine an echo server spent 110-125 us
# of CPU per unary call with 2-8 threads (32 threads doubled it) against 155-210 us for
# grpc.aio, with p50/p99 latency 0.25/0.55 ms against 0.5/0.9-1.0 ms (bench/README.md).
# Each open StreamLookup holds one thread for its lifetime: size the pool above the number
# of streams expected at once.
DEFAULT_THREADS = 8
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
    grace_s: float = DEFAULT_GRACE_S
    """On stop, how long calls in flight may take to finish before they are cancelled."""
    tls: ServerTLS | None = None
    """Certificate, key and optional client CA (mTLS); None serves plaintext."""


class LookupServicer(lookup_pb2_grpc.LookupServiceServicer):
    """The ``lookupd.v1.LookupService`` servicer: a thin shell over :class:`Answerer`.

    Until :meth:`load` is called every call fails with UNAVAILABLE (health says
    NOT_SERVING meanwhile). Each call reads the answerer once, so it answers entirely from
    one data version even if another is loaded during the call.
    """

    def __init__(self, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._answerer: Answerer | None = None
        self._max_message_bytes = max_message_bytes

    def load(self, answerer: Answerer) -> None:
        """Answer from ``answerer`` from now on."""
        self._answerer = answerer

    def _current(self, context: grpc.ServicerContext) -> Answerer:
        answerer = self._answerer
        if answerer is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "data not loaded yet")
        return answerer

    def Lookup(self, request: pb.LookupRequest, context: grpc.ServicerContext) -> pb.LookupResponse:
        """Answer a batch of text addresses."""
        return pb.LookupResponse.FromString(self.lookup_encoded(request, context))

    def lookup_encoded(self, request: pb.LookupRequest, context: grpc.ServicerContext) -> bytes:
        """Answer a batch of text addresses with the serialized response.

        What the server registers for ``Lookup`` (with a pass-through serializer): the
        answer is encoded from per-label tables, not built as a message (see
        :meth:`Answerer.lookup_text_encoded`).
        """
        answerer = self._current(context)
        try:
            return answerer.lookup_text_encoded(
                request.addresses,
                subdivisions=request.include_subdivisions,
                keep_going=context.is_active,
            )
        except Exception as exc:  # every failure ends the call with a status
            _abort(context, exc)

    def LookupPacked(
        self, request: pb.PackedLookupRequest, context: grpc.ServicerContext
    ) -> pb.PackedLookupResponse:
        """Answer a batch of packed addresses."""
        answerer = self._current(context)
        return self._packed(answerer, request, context)

    def StreamLookup(
        self, request_iterator: Iterator[pb.PackedLookupRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.PackedLookupResponse]:
        """Answer each packed batch of a stream, in order."""
        for request in request_iterator:
            yield self._packed(self._current(context), request, context)

    def _packed(
        self,
        answerer: Answerer,
        request: pb.PackedLookupRequest,
        context: grpc.ServicerContext,
    ) -> pb.PackedLookupResponse:
        try:
            v4_codes, v6_codes, v4_status, v6_status = answerer.lookup_packed(
                request.ipv4, request.ipv6, keep_going=context.is_active
            )
        except Exception as exc:  # every failure ends the call with a status
            _abort(context, exc)
        return pb.PackedLookupResponse(
            ipv4_countries=v4_codes,
            ipv6_countries=v6_codes,
            ipv4_status=v4_status,
            ipv6_status=v6_status,
            data_version=answerer.version_message(),
            tag=request.tag,
        )

    def CheckRegion(
        self, request: pb.CheckRegionRequest, context: grpc.ServicerContext
    ) -> pb.CheckRegionResponse:
        """Check a batch of addresses against a named policy."""
        answerer = self._current(context)
        try:
            verdicts, reasons, countries = answerer.check(
                request.policy, request.addresses, request.ipv4, request.ipv6
            )
        except Exception as exc:  # every failure ends the call with a status
            _abort(context, exc)
        return pb.CheckRegionResponse(
            verdicts=verdicts,  # type: ignore[arg-type]  # Verdict numbers
            reasons=reasons,  # type: ignore[arg-type]  # Reason numbers
            countries=countries,
            data_version=answerer.version_message(),
            policy_version=answerer.policy_set.version if answerer.policy_set else "",
        )

    def GetInfo(
        self, request: pb.GetInfoRequest, context: grpc.ServicerContext
    ) -> pb.GetInfoResponse:
        """Describe the data, policies, limits and versions."""
        answerer = self._current(context)
        try:
            return answerer.info(max_message_bytes=self._max_message_bytes)
        except Exception as exc:  # every failure ends the call with a status
            _abort(context, exc)


_CODES: dict[type[RequestError], grpc.StatusCode] = {
    BadRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    UnknownPolicyError: grpc.StatusCode.NOT_FOUND,
    CallAbandonedError: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def _abort(context: grpc.ServicerContext, exc: Exception) -> NoReturn:
    """End the call with the status ``exc`` stands for; unexpected errors are INTERNAL."""
    if isinstance(exc, RequestError):
        context.abort(_CODES.get(type(exc), grpc.StatusCode.INVALID_ARGUMENT), str(exc))
    _LOGGER.exception("internal error answering a call")
    context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")


class LookupServer:
    """A gRPC server with the lookup, health and reflection services.

    Built, bound and started by the constructor's caller in :func:`serve`'s order: the
    constructor builds the server and adds the servicers, :meth:`start` binds and starts it
    (health NOT_SERVING), :meth:`load` makes it answer (health SERVING), :meth:`stop` ends it.
    """

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        # 1. Build the server.
        self._server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=self.config.threads, thread_name_prefix="lookupd-grpc"
            ),
            options=[
                ("grpc.max_receive_message_length", self.config.max_message_bytes),
                ("grpc.max_send_message_length", -1),
            ],
        )
        # 2. Add the servicers: lookup, health (NOT_SERVING until loaded), reflection.
        self.servicer = LookupServicer(max_message_bytes=self.config.max_message_bytes)
        _add_lookup_service(self.servicer, self._server)
        self.health = health.HealthServicer()
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        self.port = 0
        self.address = ""

    def start(self) -> LookupServer:
        """Bind the port and start serving (UNAVAILABLE until :meth:`load`).

        Raises:
            LookupdError: the address cannot be bound.
        """
        # 3. Bind.
        credentials = self.config.tls.credentials() if self.config.tls else None
        self.address, self.port = _bind(
            self._server, self.config.host, self.config.port, credentials
        )
        # 4. Start.
        self._server.start()
        _LOGGER.info("listening on %s", self.address)
        return self

    def load(self, answerer: Answerer) -> None:
        """Answer from ``answerer``, and tell health checks the server is SERVING."""
        self.servicer.load(answerer)
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace_s: float | None = None) -> None:
        """Go NOT_SERVING, refuse new calls, let calls in flight finish within the grace.

        Returns once the server has stopped: at most ``grace_s`` (default: the config's)
        after calls in flight are given their grace.
        """
        grace = self.config.grace_s if grace_s is None else grace_s
        self.health.enter_graceful_shutdown()
        self._server.stop(grace).wait()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the server stops (or ``timeout_s`` passes); return True if it stopped."""
        return not self._server.wait_for_termination(timeout_s)

    def __enter__(self) -> LookupServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop(0)


def _pass_through(response: bytes) -> bytes:
    return response


# grpc's handler factory for each (client streams, server streams) shape of an RPC.
_HANDLER_FACTORIES: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _add_lookup_service(servicer: LookupServicer, server: grpc.Server) -> None:
    """Register the servicer as protoc's ``add_LookupServiceServicer_to_server`` would, but
    with ``Lookup`` answered by :meth:`LookupServicer.lookup_encoded` (already serialized).

    The handlers are derived from the proto's service descriptor, so a new RPC needs no
    change here, only its servicer method.
    """
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in pb.DESCRIPTOR.services_by_name["LookupService"].methods:
        request_type = getattr(pb, method.input_type.name)
        response_type = getattr(pb, method.output_type.name)
        encoded = method.name == "Lookup"
        factory = _HANDLER_FACTORIES[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = factory(
            servicer.lookup_encoded if encoded else getattr(servicer, method.name),
            request_deserializer=request_type.FromString,
            response_serializer=_pass_through if encoded else response_type.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


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


def load_answerer(
    db_path: str | os.PathLike[str] | None,
    policies_path: str | os.PathLike[str] | None,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Answerer:
    """Open the data and the policies and compile them; log what was loaded.

    Args:
        db_path: data file, or None for the embedded data.
        policies_path: policy file, or None for the example policies shipped with lookupd.

    Raises:
        LookupdError: the data or the policies cannot be loaded.
    """
    from lookupd.policies import example_policies_path, load_policies

    db = open_database(db_path)
    policy_set = load_policies(policies_path if policies_path else example_policies_path())
    answerer = Answerer.load(db, policy_set, max_batch=max_batch)
    for line in answerer.describe():
        _LOGGER.info("%s", line)
    if answerer.policies is not None:
        for warning in answerer.policies.warnings:
            _LOGGER.warning("policies: %s", warning)
    return answerer


def serve(
    config: ServerConfig | None = None,
    *,
    db_path: str | os.PathLike[str] | None = None,
    policies_path: str | os.PathLike[str] | None = None,
    port_file: str | os.PathLike[str] | None = None,
    stop_event: threading.Event | None = None,
) -> None:
    """Run the server until SIGTERM or SIGINT (or ``stop_event``), then stop gracefully.

    Five steps: build the server, add the servicers, bind, start, wait. The data and the
    policies are loaded after the start, so health checks see NOT_SERVING until they are
    loaded. On a signal, health goes NOT_SERVING and calls in flight get ``grace_s`` to
    finish.

    Args:
        port_file: write the bound port (and a newline) here once listening: with port 0,
            how a parent process learns the port.
        stop_event: set it to stop (signals set it too when called from the main thread).

    Raises:
        LookupdError: the port cannot be bound, or the data or policies cannot be loaded.
    """
    config = config or ServerConfig()
    stop = stop_event or threading.Event()
    restore = _handle_signals(stop)
    server = LookupServer(config)
    try:
        server.start()
        if port_file is not None:
            _write_port_file(Path(port_file), server.port)
        try:
            server.load(load_answerer(db_path, policies_path, max_batch=config.max_batch))
        except BaseException:
            server.stop(0)
            raise
        _LOGGER.info("serving on %s", server.address)
        # 5. Wait. Event.wait is interrupted by signals, whose handlers set the event.
        stop.wait()
        _LOGGER.info("stopping: NOT_SERVING, %.1f s grace for calls in flight", config.grace_s)
        server.stop(config.grace_s)
        _LOGGER.info("stopped")
    finally:
        restore()


def _handle_signals(stop: threading.Event) -> Callable[[], None]:
    """Make SIGTERM and SIGINT set ``stop``; return a function restoring the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        _LOGGER.info("received %s", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def _write_port_file(path: Path, port: int) -> None:
    """Write the port atomically, so a reader never sees a partial file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(path)
