"""Text to 128-bit keys: the compiled parser vs ``socket.inet_pton`` in a Python loop.

``parse_many`` takes a list of ``str`` (1M); ``parse_lines`` takes one newline-separated
``bytes`` text. The baseline loop runs on a 100k subset (it costs ~0.2 µs per address);
the report compares per-address figures.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from lookupd.codes import Status

WORKLOADS_V4 = ("uniform", "row-uniform")
N_SLOW = 100_000
# ::ffff:0:0/96: the parser stores a.b.c.d as the IPv4-mapped IPv6 address.
IPV4_MAPPED_PREFIX = 0xFFFF_0000_0000


def inet_pton_v4(strs: Sequence[str]) -> list[int]:
    """The baseline: one ``inet_pton`` and one ``int.from_bytes`` per address."""
    return [int.from_bytes(socket.inet_pton(socket.AF_INET, s), "big") for s in strs]


def inet_pton_v6(strs: Sequence[str]) -> list[int]:
    """The baseline for IPv6 text."""
    return [int.from_bytes(socket.inet_pton(socket.AF_INET6, s), "big") for s in strs]


def _buffers(n: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8]]:
    return np.empty((n, 2), dtype=np.uint64), np.empty(n, dtype=np.uint8)


def _mapped(keys: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint64]:
    expected = np.zeros((keys.shape[0], 2), dtype=np.uint64)
    expected[:, 1] = keys.astype(np.uint64) | np.uint64(IPV4_MAPPED_PREFIX)
    return expected


@pytest.mark.benchmark(group="parse")
@pytest.mark.parametrize("workload", WORKLOADS_V4)
def test_parse_many_v4(
    run_batch: Callable[..., Any],
    parse_c: ModuleType,
    ipv4_strs: dict[str, list[str]],
    ipv4_keys: dict[str, npt.NDArray[np.uint32]],
    workload: str,
) -> None:
    strs = ipv4_strs[workload]
    keys, status = _buffers(len(strs))
    parse_c.parse_many(strs, keys, status)
    assert (status == Status.OK).all()
    np.testing.assert_array_equal(keys, _mapped(ipv4_keys[workload]))
    run_batch(parse_c.parse_many, strs, keys, status, n=len(strs), workload=f"ipv4 {workload}")


@pytest.mark.benchmark(group="parse")
@pytest.mark.parametrize("workload", WORKLOADS_V4)
def test_parse_lines_v4(
    run_batch: Callable[..., Any],
    parse_c: ModuleType,
    ipv4_strs: dict[str, list[str]],
    ipv4_keys: dict[str, npt.NDArray[np.uint32]],
    workload: str,
) -> None:
    text = "\n".join(ipv4_strs[workload]).encode()
    n = parse_c.count_lines(text)
    keys, status = _buffers(n)
    parse_c.parse_lines(text, keys, status)
    assert (status == Status.OK).all()
    np.testing.assert_array_equal(keys, _mapped(ipv4_keys[workload]))
    run_batch(parse_c.parse_lines, text, keys, status, n=n, workload=f"ipv4 {workload}")


@pytest.mark.benchmark(group="parse")
@pytest.mark.parametrize("workload", WORKLOADS_V4)
def test_inet_pton_v4(
    run_batch: Callable[..., Any], ipv4_strs: dict[str, list[str]], workload: str
) -> None:
    strs = ipv4_strs[workload][:N_SLOW]
    run_batch(
        inet_pton_v4,
        strs,
        n=len(strs),
        workload=f"ipv4 {workload}",
        baseline="socket.inet_pton",
    )


@pytest.mark.benchmark(group="parse")
def test_parse_many_v6(
    run_batch: Callable[..., Any],
    parse_c: ModuleType,
    ipv6_strs: list[str],
    ipv6_keys: npt.NDArray[np.uint64],
) -> None:
    keys, status = _buffers(len(ipv6_strs))
    parse_c.parse_many(ipv6_strs, keys, status)
    assert (status == Status.OK).all()
    np.testing.assert_array_equal(keys, ipv6_keys)
    run_batch(
        parse_c.parse_many, ipv6_strs, keys, status, n=len(ipv6_strs), workload="ipv6 row-uniform"
    )


@pytest.mark.benchmark(group="parse")
def test_parse_lines_v6(
    run_batch: Callable[..., Any],
    parse_c: ModuleType,
    ipv6_strs: list[str],
    ipv6_keys: npt.NDArray[np.uint64],
) -> None:
    text = "\n".join(ipv6_strs).encode()
    n = parse_c.count_lines(text)
    keys, status = _buffers(n)
    parse_c.parse_lines(text, keys, status)
    assert (status == Status.OK).all()
    np.testing.assert_array_equal(keys, ipv6_keys)
    run_batch(parse_c.parse_lines, text, keys, status, n=n, workload="ipv6 row-uniform")


@pytest.mark.benchmark(group="parse")
def test_inet_pton_v6(run_batch: Callable[..., Any], ipv6_strs: list[str]) -> None:
    strs = ipv6_strs[:N_SLOW]
    run_batch(
        inet_pton_v6,
        strs,
        n=len(strs),
        workload="ipv6 row-uniform",
        baseline="socket.inet_pton",
    )
