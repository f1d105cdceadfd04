"""Which addresses to bind for a host: all addresses are IPv6's wildcard, else IPv4's."""

from __future__ import annotations

import errno
import socket
import sys

from lookupd.errors import LookupdError

ALL_IPV6 = "::"
"""The IPv6 wildcard; bound dual stack, it takes IPv4 connections too."""
ALL_IPV4 = "0.0.0.0"
"""The IPv4 wildcard: where IPv6 is unavailable."""
_ALL = ("", "::")


def bind_hosts(host: str) -> tuple[str, ...]:
    """Return the hosts to try binding for ``host`` as lookupd's settings take it, in order.

    ``[::]``, ``::`` and ``""`` mean all addresses: the IPv6 wildcard, then ``0.0.0.0``
    for a system without IPv6. Any other host is tried alone, without the brackets of an
    IPv6 literal (``[::1]`` is ``::1``).
    """
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return (ALL_IPV6, ALL_IPV4) if name in _ALL else (name,)


def family_of(host: str) -> socket.AddressFamily:
    """Return the address family of a host :func:`bind_hosts` gave: IPv6 for a literal with
    colons, else IPv4 (an IPv4 literal or a name)."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def host_port(host: str, port: int) -> str:
    """Return ``host:port``, an IPv6 literal bracketed (``[::1]:50051``), as gRPC reads it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def in_use(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port`` (a bound literal from
    :func:`bind_hosts`): a bind without ``SO_REUSEPORT`` then fails with EADDRINUSE, where
    one with it (as workers bind) would join the other server and split its connections.

    ``SO_REUSEADDR`` is set, as a server sets it: connections of a server stopped a moment
    ago (TIME_WAIT) do not count. A socket bound but not listening does not count either.
    """
    if port == 0:
        return False
    try:
        probe = socket.socket(family_of(host), socket.SOCK_STREAM)
    except OSError:  # no IPv6 here: the caller moves on to the next host
        return False
    with probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if host == ALL_IPV6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def refuse_in_use(host: str, port: int) -> None:
    """Refuse ``host:port`` (as lookupd's settings take it) if another server listens there.

    Raises:
        LookupdError: one does; the message names the port.
    """
    if any(in_use(candidate, port) for candidate in bind_hosts(host)):
        msg = f"cannot listen on {host}:{port}: the port is in use (another server listens there)"
        raise LookupdError(msg)


def claim_port(host: str, port: int) -> socket.socket | None:
    """Take the name of lookupd on ``host:port`` (an abstract Unix socket, per network
    namespace, which the kernel frees when its last holder exits), so that two servers
    starting at once cannot both pass :func:`in_use` before either listens. None where
    there are no abstract sockets (not Linux).

    Raises:
        LookupdError: another lookupd holds it.
    """
    if not sys.platform.startswith("linux"):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(f"\0lookupd-port:{host}:{port}")
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            return None
        msg = f"cannot listen on {host}:{port}: the port is in use (another lookupd holds it)"
        raise LookupdError(msg) from exc
    return sock
