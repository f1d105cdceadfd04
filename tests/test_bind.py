"""lookupd.server.bind: the hosts to try for a host setting, as gRPC, workers and metrics bind."""

from __future__ import annotations

import socket

import pytest

from lookupd.server.bind import ALL_IPV4, ALL_IPV6, bind_hosts, family_of, host_port


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("[::]", ("::", "0.0.0.0")),
        ("::", ("::", "0.0.0.0")),
        ("", ("::", "0.0.0.0")),
        ("0.0.0.0", ("0.0.0.0",)),
        ("127.0.0.1", ("127.0.0.1",)),
        ("[::1]", ("::1",)),
        ("::1", ("::1",)),
        ("localhost", ("localhost",)),
        ("[fe80::1%eth0]", ("fe80::1%eth0",)),
    ],
)
def test_bind_hosts(host: str, expected: tuple[str, ...]) -> None:
    assert bind_hosts(host) == expected


def test_all_addresses_try_ipv6_first() -> None:
    assert bind_hosts("[::]") == (ALL_IPV6, ALL_IPV4)


@pytest.mark.parametrize(
    ("host", "family"),
    [
        ("::", socket.AF_INET6),
        ("::1", socket.AF_INET6),
        ("0.0.0.0", socket.AF_INET),
        ("127.0.0.1", socket.AF_INET),
        ("localhost", socket.AF_INET),
    ],
)
def test_family_of(host: str, family: socket.AddressFamily) -> None:
    assert family_of(host) == family


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("::", 50051, "[::]:50051"),
        ("::1", 0, "[::1]:0"),
        ("0.0.0.0", 9, "0.0.0.0:9"),
        ("localhost", 80, "localhost:80"),
    ],
)
def test_host_port_brackets_ipv6(host: str, port: int, expected: str) -> None:
    assert host_port(host, port) == expected
