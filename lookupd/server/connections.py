"""The gRPC server's connection limits: handshake timeout, keepalive, idle and age limits,
and calls per connection, as gRPC core channel arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lookupd.server.app import ServerConfig

# A connection must finish its handshake (TCP, TLS, HTTP/2 settings) within this: one that
# sends nothing holds a descriptor, and gRPC's own default (120 s) let a flood of silent
# connections exhaust the descriptor limit. Clients on a bad network still have ample time.
DEFAULT_HANDSHAKE_TIMEOUT_S = 10.0
# The server pings a connection this long without activity, and closes it if the ping is
# not acknowledged within the timeout: a client that vanished (no FIN, a stopped process)
# otherwise holds its connection, and any stream on it, until TCP gives up (hours).
DEFAULT_KEEPALIVE_S = 60.0
DEFAULT_KEEPALIVE_TIMEOUT_S = 10.0
# A connection with no call for this long is closed (GOAWAY; gRPC clients reconnect on
# their next call): connections left open by clients that went quiet cost a descriptor each.
DEFAULT_MAX_CONNECTION_IDLE_S = 300.0
# Every connection is closed after about this long (gRPC adds +-10% jitter), so that behind
# an L4 balancer (a Kubernetes Service) clients spread over new replicas within the hour
# instead of staying on the old ones for ever; calls in flight get the grace to finish, and
# new calls go to a new connection at once, so none fails. Streams longer than age + grace
# are ended: clients should reopen long streams now and then.
DEFAULT_MAX_CONNECTION_AGE_S = 1800.0
DEFAULT_MAX_CONNECTION_AGE_GRACE_S = 300.0
# Calls in flight per connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; more wait in the
# client). Half the default StreamLookup threads: one connection can never hold them all
# with idle streams, and a connection gains nothing from more calls than the 8 unary
# threads run at once. lookupd.client spreads its calls over several connections.
DEFAULT_MAX_CONCURRENT_STREAMS = 8
# How often a client may ping (keepalive) without being told to stop (GOAWAY
# "too_many_pings"); lookupd.client pings every 10 s by default, and tests every 2 s.
MIN_CLIENT_PING_INTERVAL_S = 1.0

# gRPC core's "never" for durations in milliseconds.
_NEVER_MS = 2**31 - 1


def _ms(seconds: float) -> int:
    """``seconds`` as gRPC's whole milliseconds (at least 1; 0 seconds is "never")."""
    if seconds <= 0:
        return _NEVER_MS
    return min(_NEVER_MS, max(1, round(seconds * 1000)))


def connection_options(config: ServerConfig) -> list[tuple[str, Any]]:
    """Return the gRPC server options for the config's connection limits; 0 seconds turns
    a limit off (for the keepalive timeout: gRPC's own; for the grace: calls are cut at
    the age)."""
    options: list[tuple[str, Any]] = [
        ("grpc.server_handshake_timeout_ms", _ms(config.handshake_timeout_s)),
        ("grpc.keepalive_time_ms", _ms(config.keepalive_s)),
        # Accept clients' keepalive pings, with or without calls in flight (lookupd.client
        # pings idle connections too, to notice a dead server before its next call).
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(MIN_CLIENT_PING_INTERVAL_S)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.max_connection_idle_ms", _ms(config.max_connection_idle_s)),
        ("grpc.max_connection_age_ms", _ms(config.max_connection_age_s)),
        ("grpc.max_concurrent_streams", config.max_concurrent_streams),
    ]
    if config.keepalive_timeout_s > 0:
        # gRPC core waits for a ping's acknowledgement for the ping timeout (60 s by
        # default), whatever the keepalive timeout says: both are set.
        timeout = _ms(config.keepalive_timeout_s)
        options += [("grpc.keepalive_timeout_ms", timeout), ("grpc.http2.ping_timeout_ms", timeout)]
    if config.max_connection_age_s > 0:
        grace = min(_NEVER_MS, round(config.max_connection_age_grace_s * 1000))
        options.append(("grpc.max_connection_age_grace_ms", grace))
    return options
