"""The asyncio client: :class:`AsyncClient`, the methods of :class:`Client` as coroutines."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from types import TracebackType
from typing import Any, Literal

import grpc
import grpc.aio
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


class AsyncClient(Connected):
    """An asyncio client of a lookupd server (``grpc.aio``): :class:`Client`'s methods,
    arguments and results, as coroutines (``stream`` as an async iterator).

    Create and use it inside one running event loop; close it with ``await close()`` or
    ``async with``. Takes the same arguments as :class:`Client`, ``tls`` included.
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
            target, channels, chunk_size, in_flight, timeout_s, tls, "aio", keepalive_s
        )

    async def lookup(
        self,
        addresses: Addresses,
        *,
        version: Literal[4, 6] | None = None,
        text: bool | None = None,
        subdivisions: bool = False,
    ) -> Answers:
        """Look a batch up on the server (see :meth:`Client.lookup`)."""
        plan = lookup_plan(addresses, version, self.chunk_size, text, subdivisions)
        limit = asyncio.Semaphore(self._in_flight)

        async def call(request: Any, stub: Any) -> Any:
            async with limit:
                return await getattr(stub, plan.method)(request, timeout=self.timeout_s)

        try:
            responses = await asyncio.gather(
                *(call(request, self._stub()) for request in plan.requests)
            )
        except grpc.RpcError as exc:
            raise server_error(exc) from exc
        return plan.assemble(responses)

    async def check(
        self, policy: str, addresses: Addresses, *, version: Literal[4, 6] | None = None
    ) -> Checks:
        """Check a batch against the server's policy ``policy`` (see :meth:`Client.check`)."""
        request = check_request(policy, addresses, version)
        try:
            response = await self._stub().CheckRegion(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise server_error(exc) from exc
        return checks_from(response)

    async def info(self) -> Info:
        """Return the server's description (see :meth:`Client.info`)."""
        try:
            response = await self._stub().GetInfo(pb.GetInfoRequest(), timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise server_error(exc) from exc
        return info_from(response)

    async def reload(self, *, token: str | None = None) -> ReloadResult:
        """Ask the server to reload its data and policy files now (see :meth:`Client.reload`)."""
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        try:
            response = await self._admin.Reload(
                pb.ReloadRequest(), timeout=self.timeout_s, metadata=metadata
            )
        except grpc.RpcError as exc:
            raise server_error(exc) from exc
        return reload_result_from(response)

    async def stream(
        self, batches: Iterable[Addresses], *, version: Literal[4, 6] | None = None
    ) -> AsyncGenerator[Answers, None]:
        """Look batches up over one stream; yield each batch's answers in order (see
        :meth:`Client.stream`: the same sending as it goes, limits and errors).

        ``batches`` is read, and each batch packed, in a worker thread
        (:func:`asyncio.to_thread`): a source that blocks (a file, a pipe) and the parsing
        of large text batches never hold up the event loop.
        """
        source = iter(batches)
        # The first batch is read and checked here, before anything is sent.
        first = await _next_request(source, version, self.chunk_size)
        if first is None:
            return
        plans = collections.deque([first[1]])
        failure: list[Exception] = []

        async def requests() -> AsyncIterator[pb.PackedLookupRequest]:
            # grpc.aio would only cancel the call on an exception raised here: keep it, end
            # the requests, and raise it in order.
            item: tuple[pb.PackedLookupRequest, Plan] | None = first
            while item is not None:
                yield item[0]
                try:
                    item = await _next_request(source, version, self.chunk_size)
                except Exception as exc:
                    failure.append(exc)
                    return
                if item is not None:
                    plans.append(item[1])

        call = self._stub().StreamLookup(requests())
        try:
            async for response in call:
                yield plans.popleft().assemble([response])
        except grpc.RpcError as exc:
            raise server_error(exc) from exc
        finally:
            call.cancel()
        if failure:
            raise failure[0]

    async def wait_until_serving(self, timeout_s: float = 10.0) -> None:
        """Wait until the server's health service says SERVING (see
        :meth:`Client.wait_until_serving`)."""
        # The typing stubs of grpcio-health-checking do not declare the methods.
        health: Any = health_pb2_grpc.HealthStub(self._channels[0])
        request = health_pb2.HealthCheckRequest(service=LOOKUP_SERVICE)
        try:
            async for response in health.Watch(request, timeout=timeout_s, wait_for_ready=True):
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError as exc:
            raise server_error(exc) from exc
        raise ServerError(grpc.StatusCode.UNAVAILABLE, "health watch ended before SERVING")

    async def close(self) -> None:
        """Close the connections."""
        for channel in self._channels:
            await channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


async def _next_request(
    source: Iterator[Addresses], version: int | None, chunk_size: int
) -> tuple[pb.PackedLookupRequest, Plan] | None:
    """:func:`next_stream_request` in a worker thread."""
    return await asyncio.to_thread(next_stream_request, source, version, chunk_size)
