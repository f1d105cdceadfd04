"""The ``lookupd.v1.LookupService`` servicer: each RPC calls what it computes inside one frame.

The frame (:meth:`LookupServicer._answer`) is written once: it starts the clock, reads the
current :class:`~lookupd.server.answers.Answerer` once, ends a refused request with the
status its error stands for, and records the call in the metrics. What each RPC computes
is a pure function of the answerer and the request (:mod:`~lookupd.server.lookups`,
:mod:`~lookupd.server.checks`, :mod:`~lookupd.server.info`).

Requests arrive as the bytes gRPC received, and are decoded inside the frame
(:mod:`~lookupd.server.decoding`): bytes that do not decode, and a batch over the limit
(counted on the wire, before it is decoded), are refused like any bad request, with
INVALID_ARGUMENT, counted, and logged (rate-limited) as a ``bad_request``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import grpc
import numpy as np
import numpy.typing as npt

from lookupd.server.answers import Answerer
from lookupd.server.batches import KeepGoing
from lookupd.server.checks import Checked, answer_check
from lookupd.server.decoding import decode
from lookupd.server.errors import (
    BadRequestError,
    CallAbandonedError,
    RequestError,
    UnknownPolicyError,
)
from lookupd.server.guard import HANDLER_FACTORIES, log_bad_request
from lookupd.server.info import info
from lookupd.server.logs import log_event
from lookupd.server.lookups import answer_lookup, answer_packed
from lookupd.server.streams import DEFAULT_STREAM_IDLE_S, StreamIdleError, within_idle_timeout
from lookupd.v1 import lookup_pb2 as pb
from lookupd.v1 import lookup_pb2_grpc
from lookupd.wire import LOOKUP_SERVICE

if TYPE_CHECKING:
    from lookupd.server.metrics import Metrics

_LOGGER = logging.getLogger(__name__)

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_Facts = TypeVar("_Facts")

_CODES: dict[type[RequestError], grpc.StatusCode] = {
    BadRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    UnknownPolicyError: grpc.StatusCode.NOT_FOUND,
    CallAbandonedError: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """Return the gRPC status code and detail a failed call ends with.

    A :class:`~lookupd.server.errors.RequestError` says what was wrong with the request;
    anything else is a fault of the server: INTERNAL, naming only the exception's type.
    """
    if isinstance(exc, RequestError):
        return _CODES.get(type(exc), grpc.StatusCode.INVALID_ARGUMENT), str(exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"


class LookupServicer(lookup_pb2_grpc.LookupServiceServicer):
    """The ``lookupd.v1.LookupService`` servicer: a thin shell over the answering functions.

    Until :meth:`load` is called every call fails with UNAVAILABLE (health says
    NOT_SERVING meanwhile). Each call reads the answerer once, so it answers entirely from
    one data version even if another is loaded during the call.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int,
        metrics: Metrics | None = None,
        stream_idle_s: float = DEFAULT_STREAM_IDLE_S,
    ) -> None:
        self._answerer: Answerer | None = None
        self._max_message_bytes = max_message_bytes
        self._metrics = metrics
        self._stream_idle_s = stream_idle_s
        # (RPC, exception type) of the faults whose traceback is logged already: once each,
        # so a client repeating a request that trips a bug cannot fill the log.
        self._faults_logged: set[tuple[str, type[BaseException]]] = set()

    def load(self, answerer: Answerer) -> None:
        """Answer from ``answerer`` from now on (one assignment: atomic for callers)."""
        self._answerer = answerer

    def Lookup(self, request: pb.LookupRequest, context: grpc.ServicerContext) -> pb.LookupResponse:
        """Answer a batch of text addresses."""
        return pb.LookupResponse.FromString(self.lookup_encoded(request, context))

    def lookup_encoded(
        self, request: pb.LookupRequest | bytes, context: grpc.ServicerContext
    ) -> bytes:
        """Answer a batch of text addresses with the serialized response.

        What the server registers for ``Lookup``, with pass-through (de)serializers (see
        :func:`lookupd.server.lookups.answer_lookup`).
        """
        return self._answer("Lookup", answer_lookup, _observe_lookup, request, context)

    def LookupPacked(
        self, request: pb.PackedLookupRequest | bytes, context: grpc.ServicerContext
    ) -> pb.PackedLookupResponse:
        """Answer a batch of packed addresses."""
        return self._answer("LookupPacked", answer_packed, _observe_packed, request, context)

    def StreamLookup(
        self,
        request_iterator: Iterator[pb.PackedLookupRequest | bytes],
        context: grpc.ServicerContext,
    ) -> Iterator[pb.PackedLookupResponse]:
        """Answer each packed batch of a stream, in order (each from the data current when
        it arrives); end a stream that sends no message within the idle timeout with
        DEADLINE_EXCEEDED (see :mod:`lookupd.server.streams`)."""
        try:
            for request in within_idle_timeout(request_iterator, self._stream_idle_s):
                yield self._answer("StreamLookup", answer_packed, _observe_packed, request, context)
        except StreamIdleError as exc:
            log_event(
                _LOGGER,
                logging.INFO,
                "stream_idle",
                f"stream ended: no message for {exc.idle_s:g} s",
                peer=context.peer(),
                idle_s=exc.idle_s,
            )
            code = grpc.StatusCode.DEADLINE_EXCEEDED
            self._fail(context, "StreamLookup", time.perf_counter(), code, str(exc))

    def CheckRegion(
        self, request: pb.CheckRegionRequest | bytes, context: grpc.ServicerContext
    ) -> pb.CheckRegionResponse:
        """Check a batch of addresses against a named policy."""
        return self._answer("CheckRegion", answer_check, _observe_check, request, context)

    def GetInfo(
        self, request: pb.GetInfoRequest | bytes, context: grpc.ServicerContext
    ) -> pb.GetInfoResponse:
        """Describe the data, policies, limits and versions."""
        return self._answer("GetInfo", self._info, _observe_call, request, context)

    def _info(
        self, answerer: Answerer, request: pb.GetInfoRequest | bytes, keep_going: KeepGoing
    ) -> tuple[pb.GetInfoResponse, None]:
        if isinstance(request, bytes):
            decode(pb.GetInfoRequest, request)  # nothing to read, but bytes may be malformed
        return info(answerer, max_message_bytes=self._max_message_bytes), None

    def _answer(
        self,
        rpc: str,
        compute: Callable[[Answerer, _Request, KeepGoing], tuple[_Response, _Facts]],
        observe: Callable[[Metrics, str, _Facts, float], None],
        request: _Request,
        context: grpc.ServicerContext,
    ) -> _Response:
        """Answer one call (or stream message) of ``rpc``: the frame of every RPC.

        ``compute`` answers from the current answerer, returning the response and the facts
        the metrics want of it (per-address statuses, a check's verdicts), which
        ``observe`` records. A failure ends the call with its status (:func:`status_of`),
        counted under that code.
        """
        started = time.perf_counter()
        answerer = self._answerer
        if answerer is None:
            self._fail(context, rpc, started, grpc.StatusCode.UNAVAILABLE, "data not loaded yet")
        try:
            response, facts = compute(answerer, request, context.is_active)
        except Exception as exc:  # every failure ends the call with a status
            code, detail = status_of(exc)
            fault = (rpc, type(exc))
            if code == grpc.StatusCode.INTERNAL and fault not in self._faults_logged:
                # A fault of the server: its traceback is worth logging, once.
                self._faults_logged.add(fault)
                _LOGGER.exception("internal error answering %s (logged once)", rpc)
            elif code == grpc.StatusCode.INVALID_ARGUMENT:
                log_bad_request(_LOGGER, rpc, detail, context)
            self._fail(context, rpc, started, code, detail)
        if self._metrics is not None:
            observe(self._metrics, rpc, facts, time.perf_counter() - started)
        return response

    def _fail(
        self,
        context: grpc.ServicerContext,
        rpc: str,
        started: float,
        code: grpc.StatusCode,
        detail: str,
    ) -> NoReturn:
        if self._metrics is not None:
            self._metrics.observe_failure(rpc, code.name, time.perf_counter() - started)
        context.abort(code, detail)


def _observe_lookup(metrics: Metrics, rpc: str, status: npt.NDArray[np.uint8], s: float) -> None:
    metrics.observe_lookup(rpc, status, s)


def _observe_packed(metrics: Metrics, rpc: str, statuses: tuple[bytes, bytes], s: float) -> None:
    metrics.observe_lookup(rpc, np.frombuffer(b"".join(statuses), dtype=np.uint8), s)


def _observe_check(metrics: Metrics, rpc: str, checked: Checked, s: float) -> None:
    metrics.observe_check(checked.policy, checked.verdicts, checked.reasons, s)


def _observe_call(metrics: Metrics, rpc: str, facts: None, s: float) -> None:
    metrics.observe_call(rpc, s)


# --------------------------------------------------------------------------------------
# Registration


def _pass_through(data: bytes) -> bytes:
    return data


def add_lookup_service(
    servicer: LookupServicer, server: grpc.Server, stream_pool: futures.ThreadPoolExecutor
) -> None:
    """Register the servicer as protoc's ``add_LookupServiceServicer_to_server`` would, but
    with every request passed on as the bytes received (the frame decodes them), ``Lookup``
    answered by :meth:`LookupServicer.lookup_encoded` (already serialized), and
    client-streaming RPCs run in ``stream_pool``.

    The handlers are derived from the proto's service descriptor, so a new RPC needs no
    change here, only its servicer method.
    """
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in pb.DESCRIPTOR.services_by_name["LookupService"].methods:
        response_type = getattr(pb, method.output_type.name)
        encoded = method.name == "Lookup"
        factory = HANDLER_FACTORIES[(method.client_streaming, method.server_streaming)]
        behaviour = servicer.lookup_encoded if encoded else getattr(servicer, method.name)
        if method.client_streaming:
            behaviour = _in_pool(behaviour, stream_pool)
        handlers[method.name] = factory(
            behaviour,
            request_deserializer=_pass_through,
            response_serializer=_pass_through if encoded else response_type.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(LOOKUP_SERVICE, handlers),)
    )
    server.add_registered_method_handlers(LOOKUP_SERVICE, handlers)


def _in_pool(behaviour: Callable[..., Any], pool: futures.ThreadPoolExecutor) -> Callable[..., Any]:
    """``behaviour``, run by grpc in ``pool`` rather than the server's own pool."""

    def run(request_iterator: Any, context: grpc.ServicerContext) -> Any:
        return behaviour(request_iterator, context)

    run.experimental_thread_pool = pool  # type: ignore[attr-defined]  # read by grpc
    return run
