"""Which addresses to bind for a host: all addresses are IPv6's wildcard, else IPv4's."""

from __future__ import annotations

import socket

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
