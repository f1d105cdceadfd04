"""The blocking client: :class:`Client`, thread-safe, over ``grpc`` channels."""

from __future__ import annotations

import collections
from collections.abc import Generator, Iterable, Iterator
from types import TracebackType
from typing import Any, Literal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lookupd.client.channel import (
    DEFAULT_CHANNELS,
    DEFAULT_IN_FLIGHT,
    DEFAULT_KEEPALIVE_S,
    DEFAULT_TIMEOUT_S,
    Connected,
    ServerError,
    server_error,
)
from lookupd.client.requests import (
    DEFAULT_CHUNK_SIZE,
    Addresses,
    Plan,
    check_request,
    lookup_plan,
    next_stream_request,
)
from lookupd.client.results import (
    Answers,
    Checks,
    Info,
    ReloadResult,
    checks_from,
    info_from,
    reload_result_from,
)
from lookupd.client.tls import ClientTLS
from lookupd.v1 import lookup_pb2 as pb
from lookupd.wire import LOOKUP_SERVICE


class Client(Connected):
    """A blocking client of a lookupd server. Thread-safe; close it (or use ``with``).

    Args:
        target: ``HOST:PORT`` of the server.
        channels: connections to open (opened on first use); calls are spread over them
            round-robin. Several server processes sharing a port are only all used with
            several connections; against 4 workers, 4 connections reach 2.7 of them on
            average (the kernel picks at random): use more for more workers.
        chunk_size: most addresses per request; at most the server's limit (``info()``'s
            ``max_batch``, 100,000 by default).
        in_flight: chunks of one batch sent before the first answer is awaited, per channel.
        timeout_s: deadline of each call (retries included).
        tls: connect over TLS, verifying the server with its CA and presenting its client
            certificate if it has one (:class:`lookupd.client.tls.ClientTLS`); None: plaintext.
        keepalive_s: ping each connection after this long without activity, and drop it
            if the ping is not answered within half of it: a stopped or vanished server is
            noticed within seconds, not at each call's deadline. 0: no pings. lookupd serve
            accepts a ping a second; other servers may want fewer (gRPC's default allows
            one every 5 minutes, and ends connections pinged more often).

    Raises:
        ValueError: ``channels``, ``chunk_size`` or ``in_flight`` is under 1, or
            ``keepalive_s`` is negative.
        LookupdError: a file of ``tls`` cannot be read or is not a usable PEM file.
    """

    def __init__(
        self,
        target: str,
        *,
        channels: int = DEFAULT_CHANNELS,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        in_flight: int = DEFAULT_IN_FLIGHT,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        tls: ClientTLS | None = None,
        keepalive_s: float = DEFAULT_KEEPALIVE_S,
    ) -> None:
        super().__init__(
            target, channels, chunk_size, in_flight, timeout_s, tls, "sync", keepalive_s
        )

    def lookup(
        self,
        addresses: Addresses,
        *,
        version: Literal[4, 6] | None = None,
        text: bool | None = None,
        subdivisions: bool = False,
    ) -> Answers:
        """Look a batch up on the server, in chunks of at most ``chunk_size`` addresses.

        Args:
            addresses: a list of ``str`` (IPv4 and IPv6 mixed), a ``uint32`` array (IPv4),
                a ``uint64`` array of shape (n, 2) (IPv6 as high, low), or packed bytes.
            version: for packed bytes: 4 (4 bytes per address) or 6 (16 bytes).
            text: True sends a list of ``str`` over the text RPC as it is (the server then
                parses it); by default it is parsed here and sent packed.
            subdivisions: also return the ISO 3166-2 subdivisions (uses the text RPC).

        Raises:
            ServerError: a call failed (its gRPC status code and message).
            TypeError, ValueError: for input of an unsupported type or shape (before any call).
        """
        plan = lookup_plan(addresses, version, self.chunk_size, text, subdivisions)
        return plan.assemble(self._call_all(plan))

    def _call_all(self, plan: Plan) -> list[Any]:
        """Send a plan's requests with up to ``in_flight`` outstanding; return the responses."""
        pending: collections.deque[Any] = collections.deque()
        responses = []
        try:
            for request in plan.requests:
                if len(pending) >= self._in_flight:
                    responses.append(pending.popleft().result())
                call = getattr(self._stub(), plan.method)
                pending.append(call.future(request, timeout=self.timeout_s))
            while pending:
                responses.append(pending.popleft().result())
        except grpc.RpcError as exc:
            for future in pending:
                future.cancel()
            raise server_error(exc) from exc
        return responses

    def check(
        self, policy: str, addresses: Addresses, *, version: Literal[4, 6] | None = None
    ) -> Checks:
        """Check a batch against the server's policy ``policy`` (one request).

        Raises:
            ServerError: NOT_FOUND for an unknown policy; INVALID_ARGUMENT for a batch over
                the server's limit; any other failure of the call.
            TypeError, ValueError: for input of an unsupported type or shape (before any call).
        """
        request = check_request(policy, addresses, version)
        try:
            return checks_from(self._stub().CheckRegion(request, timeout=self.timeout_s))
        except grpc.RpcError as exc:
            raise server_error(exc) from exc

    def info(self) -> Info:
        """Return the server's description: data version, sources, policies, limits.

        Raises:
            ServerError: the call failed.
        """
        try:
            response = self._stub().GetInfo(pb.GetInfoRequest(), timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise server_error(exc) from exc
        return info_from(response)

    def reload(self, *, token: str | None = None) -> ReloadResult:
        """Ask the server to reload its data and policy files now (an admin RPC).

        Args:
            token: the server's admin token, if it authenticates admin calls by token
                (with admin by mTLS, the client certificate of ``tls`` is what counts).

        Raises:
            ServerError: PERMISSION_DENIED (admin off, or a certificate not allowed),
                UNAUTHENTICATED (a missing or wrong token), FAILED_PRECONDITION (the reload
                failed: the old version keeps serving; the details say why).
        """
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        try:
            response = self._admin.Reload(
                pb.ReloadRequest(), timeout=self.timeout_s, metadata=metadata
            )
        except grpc.RpcError as exc:
            raise server_error(exc) from exc
        return reload_result_from(response)

    def stream(
        self, batches: Iterable[Addresses], *, version: Literal[4, 6] | None = None
    ) -> Generator[Answers, None, None]:
        """Look batches up over one StreamLookup stream; yield each batch's answers in order.

        Batches are read from ``batches`` (which may be an endless generator) and sent one
        at a time as gRPC's flow control allows, while earlier answers come back: memory
        stays bounded. Text batches are parsed here (streams are packed only); each batch
        holds at most ``chunk_size`` addresses. Closing the generator ends the stream.

        Raises:
            ValueError, TypeError: a batch is over ``chunk_size`` or of an unsupported type
                or shape. A bad first batch raises before the stream opens; a later one
                ends the stream, and raises after the answers of the batches before it.
            ServerError: the stream failed.
        """
        source = iter(batches)
        # The first batch is read and checked here, before anything is sent.
        first = next_stream_request(source, version, self.chunk_size)
        if first is None:
            return
        plans = collections.deque([first[1]])
        failure: list[Exception] = []

        def requests() -> Iterator[pb.PackedLookupRequest]:
            # Runs in gRPC's sending thread. gRPC would only log an exception raised here
            # (and cancel the call): keep it, end the requests, and raise it in order.
            item: tuple[pb.PackedLookupRequest, Plan] | None = first
            while item is not None:
                yield item[0]
                try:
                    item = next_stream_request(source, version, self.chunk_size)
                except Exception as exc:
                    failure.append(exc)
                    return
                if item is not None:
                    plans.append(item[1])

        call = self._stub().StreamLookup(requests())
        try:
            for response in call:
                yield plans.popleft().assemble([response])
        except grpc.RpcError as exc:
            raise server_error(exc) from exc
        finally:
            call.cancel()
        if failure:
            raise failure[0]

    def wait_until_serving(self, timeout_s: float = 10.0) -> None:
        """Wait until the server's health service says SERVING.

        Raises:
            ServerError: it did not within ``timeout_s`` (DEADLINE_EXCEEDED), or the call
                failed.
        """
        # The typing stubs of grpcio-health-checking do not declare the methods.
        health: Any = health_pb2_grpc.HealthStub(self._channels[0])
        request = health_pb2.HealthCheckRequest(service=LOOKUP_SERVICE)
        try:
            for response in health.Watch(request, timeout=timeout_s, wait_for_ready=True):
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError as exc:
            raise server_error(exc) from exc
        raise ServerError(grpc.StatusCode.UNAVAILABLE, "health watch ended before SERVING")

    def close(self) -> None:
        """Close the connections."""
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
