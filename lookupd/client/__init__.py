"""Call a lookupd server: typed sync and asyncio clients that chunk and pack batches.

```python
from lookupd.client import Client

with Client("localhost:50051") as client:
    answers = client.lookup(["1.1.1.1", "2001:4860:4860::8888", "10.0.0.1"])
    answers.countries        # array(['AU', 'US', ''], dtype='<U2')
    answers.status           # StatusArray([OK, OK, RESERVED]): lookupd.Status numbers
    client.check("example", ["1.1.1.1"]).allowed   # array([ True])
```

Batches go over the packed RPC wherever the client can pack them: numpy arrays and packed
bytes always, and lists of ``str`` too when the compiled parser is present (each address is
parsed here, in C, and invalid ones are answered here without a round trip); the text RPC
costs about 100 ns per string on each side. Large batches are split into chunks of at most
``chunk_size`` addresses, several in flight at once.

``tls=ClientTLS(...)`` (:mod:`lookupd.server.tls`) connects over TLS, with a client certificate
for servers that require one. The idempotent calls (every one but ``StreamLookup``) are
retried by gRPC when they fail with UNAVAILABLE: see ``_SERVICE_CONFIG``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeAlias

import grpc
import grpc.aio
import numpy as np
import numpy.typing as npt
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lookupd.client.tls import ClientTLS
from lookupd.codes import CodeArray, Reason, Status, Verdict, code_array
from lookupd.core import _parse
from lookupd.core.constants import IPV4_MAPPED_PREFIX
from lookupd.core.packed import packed_count
from lookupd.errors import LookupdError
from lookupd.v1 import lookup_pb2 as pb
from lookupd.v1 import lookup_pb2_grpc
from lookupd.wire import LOOKUP_SERVICE, NO_COUNTRY_CODE

# What lookup() and check() take: text addresses, IPv4 as uint32, IPv6 as (n, 2) uint64
# (high, low), or packed bytes in network order with version=4 or 6.
Addresses: TypeAlias = (
    Sequence[str] | npt.NDArray[np.uint32] | npt.NDArray[np.uint64] | bytes | bytearray | memoryview
)

# Within the server's default limit of 100,000 addresses per request; large enough that
# per-call overhead (~100 us of server CPU) is a few percent of a packed chunk's work.
DEFAULT_CHUNK_SIZE = 50_000
# Chunks of one batch in flight at once, per channel.
DEFAULT_IN_FLIGHT = 2
# Connections per client. The kernel spreads connections, not calls, over the worker
# processes of `lookupd serve --workers N`, so one connection would use one worker.
DEFAULT_CHANNELS = 4
DEFAULT_TIMEOUT_S = 30.0
# Answers are smaller than requests, but subdivisions and the text RPC can be large.
_MAX_RECEIVE_BYTES = 64 << 20
# Calls gRPC retries: those that change nothing on the server, so that running one twice
# is harmless. Not StreamLookup: a stream that failed part way has already delivered answers.
_RETRIED_METHODS = ("Lookup", "LookupPacked", "CheckRegion", "GetInfo")
# When one of several server processes sharing a port is stopped or killed, the calls in
# flight on its connection fail with UNAVAILABLE; gRPC retries them (after 0-50 ms, then
# 0-100 ms, 0-200 ms: random up to the backoff) on a new connection, which lands on a
# live process. Retries count against the call's deadline. gRPC's JSON service config
# format (gRFC A6); maxAttempts includes the first attempt.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {
                        "service": LOOKUP_SERVICE,
                        "method": method,
                    }
                    for method in _RETRIED_METHODS
                ],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)
# gRPC keeps a call's request to resend it, but by default only up to 256 KiB: a larger
# request (50,000 IPv6 addresses packed are 800 kB) would not be retried. 16 MiB covers any
# request the server accepts by default (8 MiB); the copy lives only while the call does.
_RETRY_BUFFER_BYTES = 16 << 20
_IPV4_MAPPED_HIGH = IPV4_MAPPED_PREFIX >> 32  # 0xFFFF: the high 32 bits of the low half


class ServerError(LookupdError):
    """A call to the server failed; ``code`` and ``details`` are the gRPC status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"server: {code.name}: {details}")
        self.code = code
        """The gRPC status code."""
        self.details = details
        """The server's message (or gRPC's, for transport errors)."""


@dataclass(frozen=True, slots=True)
class Answers:
    """A batch's answers, in input order."""

    countries: npt.NDArray[np.str_]
    """Country code per address; ``""`` where none (status other than OK)."""
    status: CodeArray
    """A :class:`lookupd.Status` number per address, as :meth:`lookupd.Database.lookup`: a
    ``uint8`` array that prints the names (:class:`~lookupd.codes.StatusArray`)."""
    data_versions: tuple[str, ...]
    """The data version ids that answered, each once (one unless the data changed)."""
    subdivisions: npt.NDArray[np.str_] | None = None
    """With ``subdivisions=True``: the ISO 3166-2 subdivision per address, ``""`` if none."""

    def __len__(self) -> int:
        return int(self.status.shape[0])

    @property
    def data_version(self) -> str:
        """Return the data version id that answered (the last, if the data changed)."""
        return self.data_versions[-1] if self.data_versions else ""

    def countries_list(self) -> list[str | None]:
        """Return the country per address, ``None`` where none (as ``countries()``)."""
        return [country or None for country in self.countries.tolist()]


@dataclass(frozen=True, slots=True)
class Checks:
    """A policy's answers for a batch, in input order."""

    verdicts: CodeArray
    """A :class:`lookupd.Verdict` number per address (1 ALLOW, 2 DENY), printed by name
    (:class:`~lookupd.codes.VerdictArray`)."""
    reasons: CodeArray
    """A :class:`lookupd.Reason` number per address (1 COUNTRY_ALLOWED ... 9
    SUBDIVISION_ALLOWED), printed by name (:class:`~lookupd.codes.ReasonArray`)."""
    countries: npt.NDArray[np.str_]
    """Country code per address; ``""`` where none."""
    data_version: str
    """The data version id that answered."""
    policy_version: str
    """SHA-256 of the policy file that answered."""

    def __len__(self) -> int:
        return int(self.verdicts.shape[0])

    @property
    def allowed(self) -> npt.NDArray[np.bool_]:
        """Mask of the addresses the policy allows."""
        allowed: npt.NDArray[np.bool_] = self.verdicts == pb.VERDICT_ALLOW
        return allowed


# ---------------------------------------------------------------------------------------
# Turning a batch into requests, and answers back into one result


@dataclass(slots=True)
class _Plan:
    """A batch cut into requests, and where each answer goes in the result."""

    size: int
    """Addresses in the batch."""
    kind: Literal["text", "packed"]
    """Which RPC the requests are for."""
    requests: list[Any] = field(default_factory=list)
    """LookupRequest or PackedLookupRequest messages, in order."""
    status: npt.NDArray[np.uint8] | None = None
    """Packed: statuses known before asking (invalid text); OK elsewhere."""
    v4_index: npt.NDArray[np.intp] | None = None
    """Packed: the positions of the IPv4 addresses in the batch (None: 0..n4-1)."""
    v6_index: npt.NDArray[np.intp] | None = None
    """Packed: the positions of the IPv6 addresses in the batch (None: after the IPv4)."""
    v4_count: int = 0
    """Packed: IPv4 addresses."""

    def assemble(self, responses: Sequence[Any]) -> Answers:
        """Return the batch's answers from its requests' responses, in order."""
        versions = tuple(dict.fromkeys(response.data_version.id for response in responses))
        if self.kind == "text":
            countries = list(itertools.chain.from_iterable(r.countries for r in responses))
            text_status = np.fromiter(
                itertools.chain.from_iterable(r.status for r in responses),
                dtype=np.uint8,
                count=self.size,
            )
            subdivisions = list(itertools.chain.from_iterable(r.subdivisions for r in responses))
            return Answers(
                np.array(countries, dtype=np.str_).reshape(self.size),
                code_array(text_status, Status),
                versions,
                np.array(subdivisions, dtype=np.str_).reshape(-1) if subdivisions else None,
            )
        codes = np.full(self.size, NO_COUNTRY_CODE, dtype="S2")
        status = (
            self.status.copy()
            if self.status is not None
            else np.full(self.size, Status.OK, dtype=np.uint8)
        )
        for family in (4, 6):
            raw_codes = b"".join(
                r.ipv4_countries if family == 4 else r.ipv6_countries for r in responses
            )
            raw_status = b"".join(
                r.ipv4_status if family == 4 else r.ipv6_status for r in responses
            )
            if not raw_status:
                continue
            family_status = np.frombuffer(raw_status, dtype=np.uint8)
            family_codes = np.frombuffer(raw_codes, dtype="S2")
            index = self.v4_index if family == 4 else self.v6_index
            if index is None:
                index = (
                    np.arange(len(family_status))
                    if family == 4
                    else np.arange(len(family_status)) + self.v4_count
                )
            status[index] = family_status
            codes[index] = family_codes
        answered = codes.astype("U2")
        answered[status != Status.OK] = ""
        return Answers(answered, code_array(status, Status), versions)


def _chunks(data: bytes, width: int, chunk_size: int) -> list[bytes]:
    step = chunk_size * width
    return [data[start : start + step] for start in range(0, len(data), step)]


def _packed_requests(ipv4: bytes, ipv6: bytes, chunk_size: int) -> list[pb.PackedLookupRequest]:
    """Cut packed addresses into requests of at most ``chunk_size`` addresses.

    A batch that fits goes in one request (both families); a larger one in chunks of IPv4,
    then chunks of IPv6. An empty batch is still one (empty) request: it returns the data
    version.
    """
    if len(ipv4) // 4 + len(ipv6) // 16 <= chunk_size:
        return [pb.PackedLookupRequest(ipv4=ipv4, ipv6=ipv6)]
    return [pb.PackedLookupRequest(ipv4=chunk) for chunk in _chunks(ipv4, 4, chunk_size)] + [
        pb.PackedLookupRequest(ipv6=chunk) for chunk in _chunks(ipv6, 16, chunk_size)
    ]


def _pack(
    addresses: Addresses, version: int | None, *, text_ok: bool = True
) -> tuple[bytes, bytes, _Plan] | None:
    """Pack arrays and buffers (always) or text (with the C parser, or when ``not text_ok``).

    Returns:
        IPv4 bytes, IPv6 bytes and the plan (without requests); None to send text.

    Raises:
        ValueError, TypeError: for input ``lookupd.Database.lookup`` would refuse too.
    """
    if isinstance(addresses, (bytes, bytearray, memoryview)):
        data = bytes(addresses)
        count = packed_count(len(data), version)
        plan = _Plan(count, "packed", v4_count=count if version == 4 else 0)
        return (data, b"", plan) if version == 4 else (b"", data, plan)
    if version is not None:
        msg = "version= applies only to packed bytes input"
        raise ValueError(msg)
    if isinstance(addresses, np.ndarray):
        if addresses.dtype.kind == "u" and addresses.dtype.itemsize == 4 and addresses.ndim == 1:
            count = addresses.shape[0]
            return addresses.astype(">u4").tobytes(), b"", _Plan(count, "packed", v4_count=count)
        if (
            addresses.dtype.kind == "u"
            and addresses.dtype.itemsize == 8
            and addresses.ndim == 2
            and addresses.shape[1] == 2
        ):
            return b"", addresses.astype(">u8").tobytes(), _Plan(addresses.shape[0], "packed")
        msg = (
            "lookup() takes a uint32 array (IPv4) or a uint64 array of shape (n, 2) (IPv6), "
            f"not {addresses.dtype} of shape {addresses.shape}"
        )
        raise TypeError(msg)
    if isinstance(addresses, str):
        msg = "lookup() takes a batch: a list of addresses, not one str"
        raise TypeError(msg)
    if _parse.CORE != "c" and text_ok:
        return None  # parsing in pure Python costs more than the text RPC saves
    items = addresses if isinstance(addresses, (list, tuple)) else list(addresses)
    keys = np.empty((len(items), 2), dtype=np.uint64)
    status = np.empty(len(items), dtype=np.uint8)
    _parse.parse_many(items, keys, status)
    valid = status != Status.INVALID_ADDRESS
    mapped = valid & (keys[:, 0] == 0) & ((keys[:, 1] >> np.uint64(32)) == _IPV4_MAPPED_HIGH)
    v4_index = np.flatnonzero(mapped)
    v6_index = np.flatnonzero(valid & ~mapped)
    ipv4 = keys[v4_index, 1].astype(">u4").tobytes()
    ipv6 = keys[v6_index].astype(">u8").tobytes()
    plan = _Plan(len(items), "packed", status=status, v4_index=v4_index, v6_index=v6_index)
    return ipv4, ipv6, plan


def _plan(
    addresses: Addresses,
    version: int | None,
    chunk_size: int,
    text: bool | None,
    subdivisions: bool,
) -> _Plan:
    """Cut a batch into requests: packed where possible (see the module docstring)."""
    packed = None if (text or subdivisions) else _pack(addresses, version)
    if packed is not None:
        ipv4, ipv6, plan = packed
        plan.requests = _packed_requests(ipv4, ipv6, chunk_size)
        return plan
    if isinstance(addresses, (bytes, bytearray, memoryview, np.ndarray, str)):
        msg = "text=True and subdivisions=True take a list of str addresses"
        raise TypeError(msg)
    items = list(addresses)
    requests = [
        pb.LookupRequest(
            addresses=items[start : start + chunk_size], include_subdivisions=subdivisions
        )
        for start in range(0, len(items), chunk_size)
    ] or [pb.LookupRequest()]
    return _Plan(len(items), "text", requests)


def _check_request(policy: str, addresses: Addresses, version: int | None) -> pb.CheckRegionRequest:
    if isinstance(addresses, (bytes, bytearray, memoryview, np.ndarray)):
        packed = _pack(addresses, version)
        assert packed is not None  # arrays and bytes always pack
        ipv4, ipv6, _ = packed
        return pb.CheckRegionRequest(policy=policy, ipv4=ipv4, ipv6=ipv6)
    if version is not None:
        msg = "version= applies only to packed bytes input"
        raise ValueError(msg)
    if isinstance(addresses, str):
        msg = "check() takes a batch: a list of addresses, not one str"
        raise TypeError(msg)
    # Text stays text: the policy decides what an invalid address gets, on the server.
    return pb.CheckRegionRequest(policy=policy, addresses=list(addresses))


def _checks(response: pb.CheckRegionResponse) -> Checks:
    return Checks(
        code_array(np.array(response.verdicts, dtype=np.uint8), Verdict),
        code_array(np.array(response.reasons, dtype=np.uint8), Reason),
        np.array(list(response.countries), dtype=np.str_).reshape(-1),
        response.data_version.id,
        response.policy_version,
    )


def _channel_options(channels: int, tls: ClientTLS | None = None) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", _MAX_RECEIVE_BYTES),
        ("grpc.service_config", _SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        ("grpc.per_rpc_retry_buffer_size", _RETRY_BUFFER_BYTES),
    ]
    if channels > 1:
        # Channels to one target otherwise share one connection (gRPC pools them).
        options.append(("grpc.use_local_subchannel_pool", 1))
    if tls is not None:
        options.extend(tls.channel_options())
    return options


def _server_error(error: grpc.RpcError) -> ServerError:
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return ServerError(code, details or "")


# ---------------------------------------------------------------------------------------
# The clients


class _Connected:
    """What both clients hold: their settings, channels and stubs."""

    def __init__(
        self,
        target: str,
        channels: int,
        chunk_size: int,
        in_flight: int,
        timeout_s: float | None,
        tls: ClientTLS | None,
        api: Literal["sync", "aio"],
    ) -> None:
        if channels < 1 or chunk_size < 1 or in_flight < 1:
            msg = "channels, chunk_size and in_flight must be at least 1"
            raise ValueError(msg)
        self.target = target
        self.chunk_size = chunk_size
        self.timeout_s = timeout_s
        self._in_flight = in_flight * channels
        self.tls = tls
        # Read the files once, before any channel: a bad one fails here, naming it.
        credentials = tls.credentials() if tls is not None else None
        options = _channel_options(channels, tls)
        module: Any = grpc.aio if api == "aio" else grpc
        self._channels: list[Any] = [
            module.insecure_channel(target, options=options)
            if credentials is None
            else module.secure_channel(target, credentials, options=options)
            for _ in range(channels)
        ]
        # protoc's grpc module is untyped: the stubs' attributes are Any.
        self._stubs: list[Any] = [
            lookup_pb2_grpc.LookupServiceStub(channel)  # type: ignore[no-untyped-call]
            for channel in self._channels
        ]
        self._next = itertools.cycle(range(channels))


class Client(_Connected):
    """A blocking client of a lookupd server. Thread-safe; close it (or use ``with``).

    Args:
        target: ``HOST:PORT`` of the server.
        channels: connections to open (opened on first use); calls are spread over them
            round-robin. Several server processes sharing a port are only all used with
            several connections; against 4 workers, 4 connections reach 2.7 of them on
            average (the kernel picks at random): use more for more workers.
        chunk_size: most addresses per request; at most the server's limit (GetInfo's
            ``max_batch``, 100,000 by default).
        in_flight: chunks of one batch sent before the first answer is awaited, per channel.
        timeout_s: deadline of each call (retries included).
        tls: connect over TLS, verifying the server with its CA and presenting its client
            certificate if it has one (:class:`lookupd.server.tls.ClientTLS`); None: plaintext.

    Raises:
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
    ) -> None:
        super().__init__(target, channels, chunk_size, in_flight, timeout_s, tls, "sync")
        self._lock = threading.Lock()

    def _stub(self) -> Any:
        with self._lock:
            return self._stubs[next(self._next)]

    def lookup(
        self,
        addresses: Addresses,
        *,
        version: Literal[4, 6] | None = None,
        text: bool | None = None,
        subdivisions: bool = False,
    ) -> Answers:
        """Look a batch up on the server.

        Args:
            addresses: a list of ``str`` (IPv4 and IPv6 mixed), a ``uint32`` array (IPv4),
                a ``uint64`` array of shape (n, 2) (IPv6 as high, low), or packed bytes.
            version: for packed bytes: 4 (4 bytes per address) or 6 (16 bytes).
            text: True sends a list of ``str`` over the text RPC as it is (the server then
                parses it); by default it is parsed here and sent packed.
            subdivisions: also return the ISO 3166-2 subdivisions (uses the text RPC).

        Raises:
            ServerError: a call failed (its gRPC status code and message).
            TypeError, ValueError: for input of an unsupported type or shape.
        """
        plan = _plan(addresses, version, self.chunk_size, text, subdivisions)
        method = "Lookup" if plan.kind == "text" else "LookupPacked"
        return plan.assemble(self._call_all(method, plan.requests))

    def _call_all(self, method: str, requests: list[Any]) -> list[Any]:
        """Send requests with up to ``in_flight`` outstanding; return responses in order."""
        pending: collections.deque[Any] = collections.deque()
        responses = []
        try:
            for request in requests:
                if len(pending) >= self._in_flight:
                    responses.append(pending.popleft().result())
                call = getattr(self._stub(), method)
                pending.append(call.future(request, timeout=self.timeout_s))
            while pending:
                responses.append(pending.popleft().result())
        except grpc.RpcError as exc:
            for future in pending:
                future.cancel()
            raise _server_error(exc) from exc
        return responses

    def check(
        self, policy: str, addresses: Addresses, *, version: Literal[4, 6] | None = None
    ) -> Checks:
        """Check a batch against the server's policy ``policy`` (one request).

        Raises:
            ServerError: NOT_FOUND for an unknown policy; INVALID_ARGUMENT for a batch over
                the server's limit; any other failure of the call.
        """
        request = _check_request(policy, addresses, version)
        try:
            return _checks(self._stub().CheckRegion(request, timeout=self.timeout_s))
        except grpc.RpcError as exc:
            raise _server_error(exc) from exc

    def info(self) -> pb.GetInfoResponse:
        """Return the server's description: data version, sources, policies, limits."""
        try:
            response: pb.GetInfoResponse = self._stub().GetInfo(
                pb.GetInfoRequest(), timeout=self.timeout_s
            )
        except grpc.RpcError as exc:
            raise _server_error(exc) from exc
        return response

    def reload(self, *, token: str | None = None) -> pb.ReloadResponse:
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
        stub: Any = lookup_pb2_grpc.AdminServiceStub(self._channels[0])  # type: ignore[no-untyped-call]
        try:
            response: pb.ReloadResponse = stub.Reload(
                pb.ReloadRequest(), timeout=self.timeout_s, metadata=metadata
            )
        except grpc.RpcError as exc:
            raise _server_error(exc) from exc
        return response

    def stream(
        self, batches: Iterable[Addresses], *, version: Literal[4, 6] | None = None
    ) -> Iterator[Answers]:
        """Look batches up over one StreamLookup stream; yield each batch's answers in order.

        Batches are sent as they are read from ``batches`` (which may be a generator), while
        earlier answers are still coming back. Text batches are parsed on the client (streams
        are packed only); each batch holds at most ``chunk_size`` addresses.

        Raises:
            ServerError: the stream failed.
        """
        plans: collections.deque[_Plan] = collections.deque()

        def requests() -> Iterator[pb.PackedLookupRequest]:
            for batch in batches:
                packed = _pack(batch, version, text_ok=False)
                assert packed is not None  # text_ok=False always packs
                ipv4, ipv6, plan = packed
                if plan.size > self.chunk_size:
                    msg = f"a stream batch of {plan.size} addresses is over chunk_size"
                    raise ValueError(msg)
                plans.append(plan)
                yield pb.PackedLookupRequest(ipv4=ipv4, ipv6=ipv6)

        call = self._stub().StreamLookup(requests())
        try:
            for response in call:
                yield plans.popleft().assemble([response])
        except grpc.RpcError as exc:
            raise _server_error(exc) from exc
        finally:
            call.cancel()

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
            raise _server_error(exc) from exc
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


class AsyncClient(_Connected):
    """An asyncio client of a lookupd server (``grpc.aio``); same methods as :class:`Client`.

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
    ) -> None:
        super().__init__(target, channels, chunk_size, in_flight, timeout_s, tls, "aio")

    async def lookup(
        self,
        addresses: Addresses,
        *,
        version: Literal[4, 6] | None = None,
        text: bool | None = None,
        subdivisions: bool = False,
    ) -> Answers:
        """Look a batch up on the server (see :meth:`Client.lookup`)."""
        plan = _plan(addresses, version, self.chunk_size, text, subdivisions)
        method = "Lookup" if plan.kind == "text" else "LookupPacked"
        limit = asyncio.Semaphore(self._in_flight)

        async def call(request: Any, stub: Any) -> Any:
            async with limit:
                return await getattr(stub, method)(request, timeout=self.timeout_s)

        try:
            responses = await asyncio.gather(
                *(call(request, self._stubs[next(self._next)]) for request in plan.requests)
            )
        except grpc.RpcError as exc:
            raise _server_error(exc) from exc
        return plan.assemble(responses)

    async def check(
        self, policy: str, addresses: Addresses, *, version: Literal[4, 6] | None = None
    ) -> Checks:
        """Check a batch against the server's policy ``policy`` (see :meth:`Client.check`)."""
        request = _check_request(policy, addresses, version)
        try:
            response = await self._stubs[next(self._next)].CheckRegion(
                request, timeout=self.timeout_s
            )
        except grpc.RpcError as exc:
            raise _server_error(exc) from exc
        return _checks(response)

    async def info(self) -> pb.GetInfoResponse:
        """Return the server's description."""
        try:
            response: pb.GetInfoResponse = await self._stubs[next(self._next)].GetInfo(
                pb.GetInfoRequest(), timeout=self.timeout_s
            )
        except grpc.RpcError as exc:
            raise _server_error(exc) from exc
        return response

    async def stream(
        self, batches: Iterable[Addresses], *, version: Literal[4, 6] | None = None
    ) -> AsyncIterator[Answers]:
        """Look batches up over one stream; yield each batch's answers in order."""
        plans: collections.deque[_Plan] = collections.deque()
        requests = []
        for batch in batches:
            packed = _pack(batch, version, text_ok=False)
            assert packed is not None  # text_ok=False always packs
            ipv4, ipv6, plan = packed
            plans.append(plan)
            requests.append(pb.PackedLookupRequest(ipv4=ipv4, ipv6=ipv6))
        call = self._stubs[next(self._next)].StreamLookup(iter(requests))
        try:
            async for response in call:
                yield plans.popleft().assemble([response])
        except grpc.RpcError as exc:
            raise _server_error(exc) from exc

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
