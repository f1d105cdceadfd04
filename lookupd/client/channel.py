"""The connections both clients hold: channel options, gRPC retries, and call errors."""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any, Literal

import grpc
import grpc.aio

from lookupd.client.tls import ClientTLS
from lookupd.errors import LookupdError
from lookupd.v1 import lookup_pb2_grpc
from lookupd.wire import LOOKUP_SERVICE

# Chunks of one batch in flight at once, per channel.
DEFAULT_IN_FLIGHT = 2
# Connections per client. The kernel spreads connections, not calls, over the worker
# processes of `lookupd serve --workers N`, so one connection would use one worker.
DEFAULT_CHANNELS = 4
DEFAULT_TIMEOUT_S = 30.0
# Each connection is pinged after this long without activity (calls in flight or not), and
# given up if the ping is not answered within half of it: a server that stopped or vanished
# is noticed within 15 s (the calls on it fail with UNAVAILABLE and the retried ones move to
# a new connection) instead of at each call's deadline. lookupd serve accepts a ping a second.
DEFAULT_KEEPALIVE_S = 10.0
# Answers are smaller than requests, but subdivisions and the text RPC can be large.
_MAX_RECEIVE_BYTES = 64 << 20
# Calls gRPC retries: those that change nothing on the server, so that running one twice
# is harmless. Not StreamLookup: a stream that failed part way has already delivered answers.
RETRIED_METHODS = ("Lookup", "LookupPacked", "CheckRegion", "GetInfo")
# When one of several server processes sharing a port is stopped or killed, the calls in
# flight on its connection fail with UNAVAILABLE; gRPC retries them (after 0-50 ms, then
# 0-100 ms, 0-200 ms: random up to the backoff) on a new connection, which lands on a
# live process. Retries count against the call's deadline. gRPC's JSON service config
# format (gRFC A6); maxAttempts includes the first attempt.
_METHOD_CONFIG = [
    {
        "name": [{"service": LOOKUP_SERVICE, "method": method} for method in RETRIED_METHODS],
        "retryPolicy": {
            "maxAttempts": 4,
            "initialBackoff": "0.05s",
            "maxBackoff": "1s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }
]
_SERVICE_CONFIG = json.dumps({"methodConfig": _METHOD_CONFIG})
# A dns: target names servers by a name with several addresses (a Kubernetes headless
# Service): calls are spread over all of them (round_robin), where gRPC's default
# (pick_first) would send every call to the first that answers. Not for host:port targets:
# there round_robin's reconnect backoff would fail calls for up to a second after a worker
# process dies, where pick_first reconnects on the next call.
_BALANCED_SERVICE_CONFIG = json.dumps(
    {"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": _METHOD_CONFIG}
)
BALANCED_SCHEME = "dns:"
"""Targets starting with this are balanced call by call over every address of the name."""
# gRPC keeps a call's request to resend it, but by default only up to 256 KiB: a larger
# request (50,000 IPv6 addresses packed are 800 kB) would not be retried. 16 MiB covers any
# request the server accepts by default (8 MiB); the copy lives only while the call does.
_RETRY_BUFFER_BYTES = 16 << 20


class ServerError(LookupdError):
    """A call to the server failed; ``code`` and ``details`` are the gRPC status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"server: {code.name}: {details}")
        self.code = code
        """The gRPC status code."""
        self.details = details
        """The server's message (or gRPC's, for transport errors)."""


def server_error(error: grpc.RpcError) -> ServerError:
    """Return the :class:`ServerError` for a failed call (sync or asyncio)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return ServerError(code, details or "")


def channel_options(
    channels: int,
    tls: ClientTLS | None = None,
    keepalive_s: float = DEFAULT_KEEPALIVE_S,
    *,
    balanced: bool = False,
) -> list[tuple[str, Any]]:
    """Return the options of each of a client's ``channels`` channels: limits, retries,
    keepalive (``keepalive_s``; 0: none), TLS, and round_robin over the target's addresses
    if ``balanced``."""
    config = _BALANCED_SERVICE_CONFIG if balanced else _SERVICE_CONFIG
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", _MAX_RECEIVE_BYTES),
        ("grpc.service_config", config),
        ("grpc.enable_retries", 1),
        ("grpc.per_rpc_retry_buffer_size", _RETRY_BUFFER_BYTES),
    ]
    if keepalive_s > 0:
        # gRPC core waits for a ping's answer for the ping timeout (60 s by default),
        # whatever the keepalive timeout says: both are set.
        timeout_ms = max(1, round(keepalive_s * 500))
        options += [
            ("grpc.keepalive_time_ms", max(1, round(keepalive_s * 1000))),
            ("grpc.keepalive_timeout_ms", timeout_ms),
            ("grpc.http2.ping_timeout_ms", timeout_ms),
            # Idle connections too, so that a call never starts on a dead one; and as
            # many pings as it takes (gRPC stops after 2 without data otherwise).
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]
    if channels > 1:
        # Channels to one target otherwise share one connection (gRPC pools them).
        options.append(("grpc.use_local_subchannel_pool", 1))
    if tls is not None:
        options.extend(tls.channel_options())
    return options


class Connected:
    """What both clients hold: their settings, channels and stubs, used round-robin.

    Raises:
        ValueError: ``channels``, ``chunk_size`` or ``in_flight`` is under 1.
        LookupdError: a file of ``tls`` cannot be read or is not a usable PEM file.
    """

    def __init__(
        self,
        target: str,
        channels: int,
        chunk_size: int,
        in_flight: int,
        timeout_s: float | None,
        tls: ClientTLS | None,
        api: Literal["sync", "aio"],
        keepalive_s: float = DEFAULT_KEEPALIVE_S,
    ) -> None:
        if channels < 1 or chunk_size < 1 or in_flight < 1:
            msg = "channels, chunk_size and in_flight must be at least 1"
            raise ValueError(msg)
        if not keepalive_s >= 0:  # NaN too
            msg = f"keepalive_s must be 0 (no keepalive) or more, not {keepalive_s!r}"
            raise ValueError(msg)
        self.target = target
        """``HOST:PORT`` of the server."""
        self.chunk_size = chunk_size
        """Most addresses per request (and per stream batch)."""
        self.timeout_s = timeout_s
        """Deadline of each call, retries included."""
        self.tls = tls
        """The TLS settings; None: plaintext."""
        self._in_flight = in_flight * channels
        # Read the files once, before any channel: a bad one fails here, naming it.
        credentials = tls.credentials() if tls is not None else None
        balanced = target.startswith(BALANCED_SCHEME)
        options = channel_options(channels, tls, keepalive_s, balanced=balanced)
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
        self._admin: Any = lookup_pb2_grpc.AdminServiceStub(self._channels[0])  # type: ignore[no-untyped-call]
        self._next = itertools.cycle(range(channels))
        # The sync client is shared between threads; uncontended in the asyncio one.
        self._lock = threading.Lock()

    def _stub(self) -> Any:
        """Return the LookupService stub of the next channel."""
        with self._lock:
            return self._stubs[next(self._next)]
