"""Raw search cores over the real tables: ``find_many_v4`` / ``find_many_v6`` vs numpy.

Keys are already integers here: no parsing, no labels, only the search. The baseline is
``numpy.searchsorted(starts, keys, side="right") - 1``, which gives the same indices.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import lookupd

WORKLOADS_V4 = ("uniform", "row-uniform")


def searchsorted_index(starts: npt.NDArray[Any], keys: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """Index of the last start <= each key: the baseline of both groups."""
    return np.searchsorted(starts, keys, side="right") - 1


@pytest.mark.benchmark(group="find_many-ipv4")
@pytest.mark.parametrize("workload", WORKLOADS_V4)
def test_find_many_v4(
    run_batch: Callable[..., Any],
    search_c: ModuleType,
    db: lookupd.Database,
    ipv4_keys: dict[str, npt.NDArray[np.uint32]],
    workload: str,
) -> None:
    keys = ipv4_keys[workload]
    out = np.empty(keys.shape[0], dtype=np.int32)
    search_c.find_many_v4(db.v4.starts, db.v4.jump, keys, out)
    np.testing.assert_array_equal(out, searchsorted_index(db.v4.starts, keys))
    run_batch(
        search_c.find_many_v4,
        db.v4.starts,
        db.v4.jump,
        keys,
        out,
        n=keys.shape[0],
        workload=f"ipv4 {workload}",
    )


@pytest.mark.benchmark(group="find_many-ipv4")
@pytest.mark.parametrize("workload", WORKLOADS_V4)
def test_searchsorted_v4(
    run_batch: Callable[..., Any],
    db: lookupd.Database,
    ipv4_keys: dict[str, npt.NDArray[np.uint32]],
    workload: str,
) -> None:
    keys = ipv4_keys[workload]
    run_batch(
        searchsorted_index,
        db.v4.starts,
        keys,
        n=keys.shape[0],
        workload=f"ipv4 {workload}",
        baseline="numpy.searchsorted",
    )


@pytest.mark.benchmark(group="find_many-ipv6")
def test_find_many_v6(
    run_batch: Callable[..., Any],
    search_c: ModuleType,
    db: lookupd.Database,
    ipv6_keys: npt.NDArray[np.uint64],
    starts_s16: npt.NDArray[np.bytes_],
    keys_s16: npt.NDArray[np.bytes_],
) -> None:
    out = np.empty(ipv6_keys.shape[0], dtype=np.int32)
    search_c.find_many_v6(db.v6.starts, db.v6.jump, ipv6_keys, out)
    # Checked once: the baseline answers the same question (and so do we).
    np.testing.assert_array_equal(out, searchsorted_index(starts_s16, keys_s16))
    run_batch(
        search_c.find_many_v6,
        db.v6.starts,
        db.v6.jump,
        ipv6_keys,
        out,
        n=ipv6_keys.shape[0],
        workload="ipv6 row-uniform",
    )


@pytest.mark.benchmark(group="find_many-ipv6")
def test_searchsorted_v6_s16(
    run_batch: Callable[..., Any],
    starts_s16: npt.NDArray[np.bytes_],
    keys_s16: npt.NDArray[np.bytes_],
) -> None:
    run_batch(
        searchsorted_index,
        starts_s16,
        keys_s16,
        n=keys_s16.shape[0],
        workload="ipv6 row-uniform",
        baseline="numpy.searchsorted",
    )
