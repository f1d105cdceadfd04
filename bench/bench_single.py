"""Single-address calls: the per-call cost a caller pays for one lookup.

``find_index``: the compiled core's scalar search vs ``bisect`` over a Python list of the
same starts (and ``numpy.searchsorted`` on one key). ``lookup_one``: the public call from
text vs ``maxminddb``'s ``reader.get`` and ``iptocc.country_code`` on one address.

pytest-benchmark times these one call per round, so each figure also holds a round's own
cost (two timer reads, its bookkeeping, caches cooled between calls): ~90 ns for a C call,
more for a Python one. ``lookup_one-loop`` times the same calls 10,000 to a round, from a C
loop (``deque(map(f, ...), maxlen=0)``), which leaves the calls alone.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections import deque
from collections.abc import Callable
from itertools import repeat
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import lookupd

ONE = {"ipv4": "1.1.1.1", "ipv6": "2001:4860:4860::8888"}
# Calls per round of the lookup_one-loop group.
N_CALLS = 10_000


def bisect_index(starts: list[int], key: int) -> int:
    """Index of the last start <= key, from the standard library."""
    return bisect.bisect_right(starts, key) - 1


def call_many(target: Callable[[Any], Any], argument: Any, n: int) -> None:
    """Call ``target(argument)`` ``n`` times from a C loop, dropping the results."""
    deque(map(target, repeat(argument, n)), maxlen=0)


def searchsorted_one(starts: npt.NDArray[Any], key: Any) -> int:
    """Index of the last start <= key, from numpy on a single key."""
    return int(np.searchsorted(starts, key, side="right")) - 1


@pytest.fixture(scope="module")
def start_lists(db: lookupd.Database) -> dict[str, list[int]]:
    """Each table's starts as a Python list of ints, for ``bisect``."""
    return {"ipv4": db.v4.start_ints(), "ipv6": db.v6.start_ints()}


@pytest.mark.benchmark(group="find_index")
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_find_index(
    run_call: Callable[..., Any],
    search_c: ModuleType,
    db: lookupd.Database,
    start_lists: dict[str, list[int]],
    family: str,
) -> None:
    key = int(ipaddress.ip_address(ONE[family]))
    if family == "ipv4":
        find, table = search_c.find_index_v4, db.v4
    else:
        find, table = search_c.find_index_v6, db.v6
    assert find(table.starts, table.jump, key) == bisect_index(start_lists[family], key)
    run_call(find, table.starts, table.jump, key, workload=ONE[family])


@pytest.mark.benchmark(group="find_index")
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_bisect(
    run_call: Callable[..., Any], start_lists: dict[str, list[int]], family: str
) -> None:
    key = int(ipaddress.ip_address(ONE[family]))
    run_call(bisect_index, start_lists[family], key, workload=ONE[family], baseline="bisect")


@pytest.mark.benchmark(group="find_index")
def test_searchsorted_one_v4(run_call: Callable[..., Any], db: lookupd.Database) -> None:
    key = np.uint32(int(ipaddress.IPv4Address(ONE["ipv4"])))
    run_call(
        searchsorted_one, db.v4.starts, key, workload=ONE["ipv4"], baseline="numpy.searchsorted"
    )


@pytest.mark.benchmark(group="lookup_one")
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_lookup_one(run_call: Callable[..., Any], db: lookupd.Database, family: str) -> None:
    run_call(db.lookup_one, ONE[family], workload=ONE[family])


@pytest.mark.benchmark(group="lookup_one")
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_maxminddb_get(run_call: Callable[..., Any], mmdb_reader: Any, family: str) -> None:
    run_call(mmdb_reader.get, ONE[family], workload=ONE[family], baseline="maxminddb")


@pytest.mark.benchmark(group="lookup_one")
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_iptocc_one(
    run_call: Callable[..., Any], iptocc_country_code: Callable[[Any], Any], family: str
) -> None:
    run_call(iptocc_country_code, ONE[family], workload=ONE[family], baseline="iptocc")


@pytest.mark.benchmark(group="lookup_one-loop")
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_lookup_one_loop(run_batch: Callable[..., Any], db: lookupd.Database, family: str) -> None:
    run_batch(
        call_many,
        db.lookup_one,
        ONE[family],
        N_CALLS,
        n=N_CALLS,
        workload=ONE[family],
        unit="call",
    )


@pytest.mark.benchmark(group="lookup_one-loop")
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_maxminddb_get_loop(run_batch: Callable[..., Any], mmdb_reader: Any, family: str) -> None:
    run_batch(
        call_many,
        mmdb_reader.get,
        ONE[family],
        N_CALLS,
        n=N_CALLS,
        workload=ONE[family],
        baseline="maxminddb",
        unit="call",
    )


@pytest.mark.benchmark(group="lookup_one-loop")
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_iptocc_one_loop(
    run_batch: Callable[..., Any], iptocc_country_code: Callable[[Any], Any], family: str
) -> None:
    run_batch(
        call_many,
        iptocc_country_code,
        ONE[family],
        N_CALLS,
        n=N_CALLS,
        workload=ONE[family],
        baseline="iptocc",
        unit="call",
    )
