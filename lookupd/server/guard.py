"""Register gRPC services so that a request that does not decode is refused, not a fault.

gRPC's own handling of bytes its deserializer cannot decode is to end the call INTERNAL
("Exception deserializing request!"), log a traceback, and leave the call uncounted. The
services lookupd serves beside its own (admin, health, reflection) are registered through
:class:`GuardedRegistrar`, which wraps each handler: its deserializer never raises, and a
request that did not decode ends the call with INVALID_ARGUMENT and a short message,
counted in ``lookupd_requests_total`` and logged as a ``bad_request`` (rate-limited like
every repeated warning). The lookup service decodes in its own frame
(:mod:`lookupd.server.servicer`), which does the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from google.protobuf.message import Message

from lookupd.server.decoding import decode
from lookupd.server.errors import BadRequestError
from lookupd.server.logs import log_event

if TYPE_CHECKING:
    from lookupd.server.metrics import Metrics

_LOGGER = logging.getLogger(__name__)

# grpc's handler factory for each (client streams, server streams) shape of an RPC.
HANDLER_FACTORIES: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}
# The attributes grpc reads off a behaviour (a non-blocking Watch, a stream's own pool).
_BEHAVIOUR_ATTRIBUTES = ("experimental_non_blocking", "experimental_thread_pool")


def log_bad_request(
    logger: logging.Logger, rpc: str, detail: str, context: grpc.ServicerContext
) -> None:
    """Log that a call of ``rpc`` was refused as INVALID_ARGUMENT, and why (``detail``: a
    message that quotes at most a few dozen characters of the client's input)."""
    log_event(
        logger,
        logging.WARNING,
        "bad_request",
        f"refused a malformed or over-limit {rpc} request",
        rpc=rpc,
        code=grpc.StatusCode.INVALID_ARGUMENT.name,
        peer=context.peer(),
        error=detail,
    )


@dataclass(frozen=True, slots=True)
class Undecodable:
    """What a guarded deserializer returns for bytes that do not decode."""

    problem: str
    """Why, in a few words (the status message)."""


class GuardedRegistrar:
    """The half of a ``grpc.Server`` that the generated ``add_*Servicer_to_server``
    functions call, registering every handler guarded (see the module docstring).

    Args:
        server: the server to register on.
        metrics: where a refused call is counted, if anywhere.
    """

    def __init__(self, server: grpc.Server, metrics: Metrics | None = None) -> None:
        self._server = server
        self._metrics = metrics

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Add ``handlers``, each answering with guarded method handlers."""
        self._server.add_generic_rpc_handlers(
            tuple(_GuardedGeneric(handler, self) for handler in handlers)
        )

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        """Register the methods of ``service``, guarded."""
        self._server.add_registered_method_handlers(
            service, {name: self.guard(name, handler) for name, handler in handlers.items()}
        )

    def guard(
        self, rpc: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """Return ``handler`` (of method ``rpc``) with a deserializer that never raises and
        a behaviour that refuses what did not decode."""
        shape = (handler.request_streaming, handler.response_streaming)
        behaviour: Callable[..., Any] | None = (
            handler.stream_stream or handler.stream_unary
            if handler.request_streaming
            else handler.unary_stream or handler.unary_unary
        )
        if behaviour is None:  # pragma: no cover - grpc's factories always set one
            msg = f"{rpc}: a method handler without a behaviour"
            raise TypeError(msg)
        guarded = (
            self._checking_stream(rpc, behaviour)
            if handler.request_streaming
            else self._checking_request(rpc, behaviour)
        )
        for name in _BEHAVIOUR_ATTRIBUTES:
            if hasattr(behaviour, name):
                setattr(guarded, name, getattr(behaviour, name))
        return HANDLER_FACTORIES[shape](
            guarded,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _checking_request(self, rpc: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def behave(request: Any, context: grpc.ServicerContext, *rest: Any) -> Any:
            if isinstance(request, Undecodable):
                self.refuse(rpc, request.problem, context, time.perf_counter())
            return behaviour(request, context, *rest)

        return behave

    def _checking_stream(self, rpc: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def behave(requests: Iterator[Any], context: grpc.ServicerContext, *rest: Any) -> Any:
            return behaviour(self._checked(rpc, requests, context), context, *rest)

        return behave

    def _checked(
        self, rpc: str, requests: Iterator[Any], context: grpc.ServicerContext
    ) -> Iterator[Any]:
        for request in requests:
            if isinstance(request, Undecodable):
                self.refuse(rpc, request.problem, context, time.perf_counter())
            yield request

    def refuse(
        self, rpc: str, problem: str, context: grpc.ServicerContext, started: float
    ) -> NoReturn:
        """End the call with INVALID_ARGUMENT, counted and logged."""
        if self._metrics is not None:
            code = grpc.StatusCode.INVALID_ARGUMENT.name
            self._metrics.observe_failure(rpc, code, time.perf_counter() - started)
        log_bad_request(_LOGGER, rpc, problem, context)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)


class _GuardedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose method handlers are guarded (each guarded once)."""

    def __init__(self, inner: grpc.GenericRpcHandler, registrar: GuardedRegistrar) -> None:
        self._inner = inner
        self._registrar = registrar
        self._guarded: dict[str, tuple[object, grpc.RpcMethodHandler[Any, Any]]] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        known = self._guarded.get(method)
        if known is None or known[0] is not handler:
            known = (handler, self._registrar.guard(method.rpartition("/")[2], handler))
            self._guarded[method] = known
        return known[1]


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    """``deserializer``, returning :class:`Undecodable` where it would raise."""
    message_type = getattr(deserializer, "__self__", None)

    def deserialize(data: bytes) -> Any:
        if deserializer is None:
            return data
        if isinstance(message_type, type) and issubclass(message_type, Message):
            try:
                return decode(message_type, data)
            except BadRequestError as exc:
                return Undecodable(str(exc))
        try:
            return deserializer(data)
        except Exception as exc:  # a deserializer of another kind: any failure refuses
            return Undecodable(f"malformed request: {type(exc).__name__}")

    return deserialize
