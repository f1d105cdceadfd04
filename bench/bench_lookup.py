"""End-to-end ``Database.lookup`` on 1M addresses: text, ``uint32`` and packed input.

Text input is compared with the peers on the same data: ``iptocc`` (one batch call, a list
of codes out, as ``lookup(strs).countries()`` gives) and the ``maxminddb`` C reader (one
``get`` per address, on a 100k subset: it is the slow one; the report compares per-address
figures). ``uint32`` and packed input are compared with the
numpy equivalent of the whole lookup (search, then labels) and with the raw core alone, so
the API's own cost shows.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import lookupd

WORKLOADS_V4 = ("uniform", "row-uniform")
# Text workloads add the uniform strs in shuffled list order: the same str objects, but
# scattered in memory, so reading each one is a cache miss. The other workloads, like a list
# built line by line from a file, hold their strs in allocation order, which the hardware
# prefetcher follows.
STR_WORKLOADS_V4 = (*WORKLOADS_V4, "uniform-scattered")
N_SLOW = 100_000
SHUFFLE_SEED = 20260617


def lookup_countries(db: lookupd.Database, strs: Sequence[str]) -> list[str | None]:
    """A list of codes out, ``None`` where none: what iptocc returns."""
    return db.lookup(strs).countries()


def maxminddb_get_all(reader: Any, strs: Sequence[str]) -> list[Any]:
    """One ``reader.get`` per address: the reader has no batch call."""
    return [reader.get(s) for s in strs]


def searchsorted_labels(
    starts: npt.NDArray[Any], labels: npt.NDArray[np.uint16], keys: npt.NDArray[Any]
) -> npt.NDArray[np.uint16]:
    """The numpy equivalent of a lookup: search, then gather the labels."""
    return labels[np.searchsorted(starts, keys, side="right") - 1]


def packed_v4_numpy(
    starts: npt.NDArray[np.uint32], labels: npt.NDArray[np.uint16], packed: bytes
) -> npt.NDArray[np.uint16]:
    """The numpy equivalent of a packed IPv4 lookup: decode, search, gather."""
    keys = np.frombuffer(packed, dtype=">u4").astype(np.uint32)
    return searchsorted_labels(starts, labels, keys)


def packed_v6_numpy(
    starts_s16: npt.NDArray[np.bytes_], labels: npt.NDArray[np.uint16], packed: bytes
) -> npt.NDArray[np.uint16]:
    """The numpy equivalent of a packed IPv6 lookup: the bytes are already ``S16`` keys."""
    return searchsorted_labels(starts_s16, labels, np.frombuffer(packed, dtype="S16"))


def core_find_many_v4(
    search_c: ModuleType, db: lookupd.Database, keys: npt.NDArray[np.uint32]
) -> npt.NDArray[np.int32]:
    """The raw core alone, output array included: what ``lookup(uint32)`` builds on."""
    out = np.empty(keys.shape[0], dtype=np.int32)
    search_c.find_many_v4(db.v4.starts, db.v4.jump, keys, out)
    return out


@pytest.fixture(scope="module")
def str_workloads_v4(ipv4_strs: dict[str, list[str]]) -> dict[str, list[str]]:
    """The IPv4 text workloads, plus the uniform one in shuffled order (``uniform-scattered``)."""
    scattered = list(ipv4_strs["uniform"])
    random.Random(SHUFFLE_SEED).shuffle(scattered)
    return {**ipv4_strs, "uniform-scattered": scattered}


@pytest.fixture(scope="module")
def ipv6_strs_scattered(ipv6_strs: list[str]) -> list[str]:
    """The IPv6 text workload in shuffled order (``row-uniform-scattered``)."""
    scattered = list(ipv6_strs)
    random.Random(SHUFFLE_SEED).shuffle(scattered)
    return scattered


@pytest.fixture(scope="module")
def ipv4_lines(ipv4_strs: dict[str, list[str]]) -> dict[str, bytes]:
    """Each IPv4 workload as one newline-separated ``bytes`` text."""
    return {name: "\n".join(strs).encode() for name, strs in ipv4_strs.items()}


@pytest.fixture(scope="module")
def ipv6_lines(ipv6_strs: list[str]) -> bytes:
    """The IPv6 workload as one newline-separated ``bytes`` text."""
    return "\n".join(ipv6_strs).encode()


# --- lookup-ipv4-str ------------------------------------------------------------------------


@pytest.mark.benchmark(group="lookup-ipv4-str")
@pytest.mark.parametrize("workload", STR_WORKLOADS_V4)
def test_lookup_v4_str(
    run_batch: Callable[..., Any],
    db: lookupd.Database,
    str_workloads_v4: dict[str, list[str]],
    workload: str,
) -> None:
    strs = str_workloads_v4[workload]
    run_batch(db.lookup, strs, n=len(strs), workload=f"ipv4 {workload}")


@pytest.mark.benchmark(group="lookup-ipv4-str")
@pytest.mark.parametrize("workload", STR_WORKLOADS_V4)
def test_lookup_v4_str_countries(
    run_batch: Callable[..., Any],
    db: lookupd.Database,
    str_workloads_v4: dict[str, list[str]],
    workload: str,
) -> None:
    strs = str_workloads_v4[workload]
    run_batch(lookup_countries, db, strs, n=len(strs), workload=f"ipv4 {workload}")


@pytest.mark.benchmark(group="lookup-ipv4-str")
@pytest.mark.parametrize("workload", WORKLOADS_V4)
def test_lookup_lines_v4(
    run_batch: Callable[..., Any],
    db: lookupd.Database,
    ipv4_lines: dict[str, bytes],
    ipv4_strs: dict[str, list[str]],
    workload: str,
) -> None:
    n = len(ipv4_strs[workload])
    run_batch(db.lookup_lines, ipv4_lines[workload], n=n, workload=f"ipv4 {workload}")


@pytest.mark.benchmark(group="lookup-ipv4-str")
@pytest.mark.parametrize("workload", STR_WORKLOADS_V4)
def test_iptocc_v4(
    run_batch: Callable[..., Any],
    iptocc_country_code: Callable[[Any], Any],
    str_workloads_v4: dict[str, list[str]],
    workload: str,
) -> None:
    strs = str_workloads_v4[workload]
    run_batch(
        iptocc_country_code, strs, n=len(strs), workload=f"ipv4 {workload}", baseline="iptocc"
    )


@pytest.mark.benchmark(group="lookup-ipv4-str")
@pytest.mark.parametrize("workload", STR_WORKLOADS_V4)
def test_maxminddb_v4(
    run_batch: Callable[..., Any],
    mmdb_reader: Any,
    str_workloads_v4: dict[str, list[str]],
    workload: str,
) -> None:
    strs = str_workloads_v4[workload][:N_SLOW]
    run_batch(
        maxminddb_get_all,
        mmdb_reader,
        strs,
        n=len(strs),
        workload=f"ipv4 {workload}",
        baseline="maxminddb",
    )


# --- lookup-ipv6-str ------------------------------------------------------------------------


@pytest.mark.benchmark(group="lookup-ipv6-str")
def test_lookup_v6_str(
    run_batch: Callable[..., Any], db: lookupd.Database, ipv6_strs: list[str]
) -> None:
    run_batch(db.lookup, ipv6_strs, n=len(ipv6_strs), workload="ipv6 row-uniform")


@pytest.mark.benchmark(group="lookup-ipv6-str")
def test_lookup_v6_str_countries(
    run_batch: Callable[..., Any], db: lookupd.Database, ipv6_strs: list[str]
) -> None:
    run_batch(lookup_countries, db, ipv6_strs, n=len(ipv6_strs), workload="ipv6 row-uniform")


@pytest.mark.benchmark(group="lookup-ipv6-str")
def test_lookup_lines_v6(
    run_batch: Callable[..., Any], db: lookupd.Database, ipv6_lines: bytes, ipv6_strs: list[str]
) -> None:
    run_batch(db.lookup_lines, ipv6_lines, n=len(ipv6_strs), workload="ipv6 row-uniform")


@pytest.mark.benchmark(group="lookup-ipv6-str")
def test_iptocc_v6(
    run_batch: Callable[..., Any],
    iptocc_country_code: Callable[[Any], Any],
    ipv6_strs: list[str],
) -> None:
    run_batch(
        iptocc_country_code,
        ipv6_strs,
        n=len(ipv6_strs),
        workload="ipv6 row-uniform",
        baseline="iptocc",
    )


@pytest.mark.benchmark(group="lookup-ipv6-str")
def test_maxminddb_v6(
    run_batch: Callable[..., Any], mmdb_reader: Any, ipv6_strs: list[str]
) -> None:
    strs = ipv6_strs[:N_SLOW]
    run_batch(
        maxminddb_get_all,
        mmdb_reader,
        strs,
        n=len(strs),
        workload="ipv6 row-uniform",
        baseline="maxminddb",
    )


@pytest.mark.benchmark(group="lookup-ipv6-str")
def test_lookup_v6_str_scattered(
    run_batch: Callable[..., Any], db: lookupd.Database, ipv6_strs_scattered: list[str]
) -> None:
    strs = ipv6_strs_scattered
    run_batch(db.lookup, strs, n=len(strs), workload="ipv6 row-uniform-scattered")


@pytest.mark.benchmark(group="lookup-ipv6-str")
def test_iptocc_v6_scattered(
    run_batch: Callable[..., Any],
    iptocc_country_code: Callable[[Any], Any],
    ipv6_strs_scattered: list[str],
) -> None:
    strs = ipv6_strs_scattered
    run_batch(
        iptocc_country_code,
        strs,
        n=len(strs),
        workload="ipv6 row-uniform-scattered",
        baseline="iptocc",
    )


@pytest.mark.benchmark(group="lookup-ipv6-str")
def test_maxminddb_v6_scattered(
    run_batch: Callable[..., Any], mmdb_reader: Any, ipv6_strs_scattered: list[str]
) -> None:
    strs = ipv6_strs_scattered[:N_SLOW]
    run_batch(
        maxminddb_get_all,
        mmdb_reader,
        strs,
        n=len(strs),
        workload="ipv6 row-uniform-scattered",
        baseline="maxminddb",
    )


# --- lookup-uint32 --------------------------------------------------------------------------


@pytest.mark.benchmark(group="lookup-uint32")
@pytest.mark.parametrize("workload", WORKLOADS_V4)
def test_lookup_uint32(
    run_batch: Callable[..., Any],
    db: lookupd.Database,
    ipv4_keys: dict[str, npt.NDArray[np.uint32]],
    workload: str,
) -> None:
    keys = ipv4_keys[workload]
    run_batch(db.lookup, keys, n=keys.shape[0], workload=f"ipv4 {workload}")


@pytest.mark.benchmark(group="lookup-uint32")
@pytest.mark.parametrize("workload", WORKLOADS_V4)
def test_core_find_many_v4(
    run_batch: Callable[..., Any],
    search_c: ModuleType,
    db: lookupd.Database,
    ipv4_keys: dict[str, npt.NDArray[np.uint32]],
    workload: str,
) -> None:
    keys = ipv4_keys[workload]
    run_batch(
        core_find_many_v4,
        search_c,
        db,
        keys,
        n=keys.shape[0],
        workload=f"ipv4 {workload}",
        baseline="core find_many_v4",
    )


@pytest.mark.benchmark(group="lookup-uint32")
@pytest.mark.parametrize("workload", WORKLOADS_V4)
def test_searchsorted_labels_v4(
    run_batch: Callable[..., Any],
    db: lookupd.Database,
    ipv4_keys: dict[str, npt.NDArray[np.uint32]],
    workload: str,
) -> None:
    keys = ipv4_keys[workload]
    run_batch(
        searchsorted_labels,
        db.v4.starts,
        db.v4.labels,
        keys,
        n=keys.shape[0],
        workload=f"ipv4 {workload}",
        baseline="numpy.searchsorted",
    )


# --- lookup-packed --------------------------------------------------------------------------


@pytest.mark.benchmark(group="lookup-packed")
@pytest.mark.parametrize("workload", WORKLOADS_V4)
def test_lookup_packed_v4(
    run_batch: Callable[..., Any],
    db: lookupd.Database,
    ipv4_packed: dict[str, bytes],
    workload: str,
) -> None:
    packed = ipv4_packed[workload]

    def lookup_packed() -> lookupd.LookupResult:
        return db.lookup(packed, version=4)

    run_batch(lookup_packed, n=len(packed) // 4, workload=f"ipv4 {workload}")


@pytest.mark.benchmark(group="lookup-packed")
@pytest.mark.parametrize("workload", WORKLOADS_V4)
def test_packed_v4_numpy(
    run_batch: Callable[..., Any],
    db: lookupd.Database,
    ipv4_packed: dict[str, bytes],
    workload: str,
) -> None:
    packed = ipv4_packed[workload]
    run_batch(
        packed_v4_numpy,
        db.v4.starts,
        db.v4.labels,
        packed,
        n=len(packed) // 4,
        workload=f"ipv4 {workload}",
        baseline="numpy.searchsorted",
    )


@pytest.mark.benchmark(group="lookup-packed")
def test_lookup_packed_v6(
    run_batch: Callable[..., Any], db: lookupd.Database, ipv6_packed: bytes
) -> None:
    def lookup_packed() -> lookupd.LookupResult:
        return db.lookup(ipv6_packed, version=6)

    run_batch(lookup_packed, n=len(ipv6_packed) // 16, workload="ipv6 row-uniform")


@pytest.mark.benchmark(group="lookup-packed")
def test_packed_v6_numpy(
    run_batch: Callable[..., Any],
    db: lookupd.Database,
    starts_s16: npt.NDArray[np.bytes_],
    ipv6_packed: bytes,
) -> None:
    run_batch(
        packed_v6_numpy,
        starts_s16,
        db.v6.labels,
        ipv6_packed,
        n=len(ipv6_packed) // 16,
        workload="ipv6 row-uniform",
        baseline="numpy.searchsorted",
    )


# --- lookup_many: the core of lookup(str) once the text is parsed -----------------------------


def core_lookup_many(
    search_c: ModuleType, db: lookupd.Database, keys: npt.NDArray[np.uint64]
) -> npt.NDArray[np.uint16]:
    """``lookup_many`` over parsed keys, with the buffers ``Database.lookup`` allocates."""
    status = np.full(keys.shape[0], lookupd.Status.OK, dtype=np.uint8)
    labels = np.empty(keys.shape[0], dtype=np.uint16)
    search_c.lookup_many(
        db.v4.starts, db.v4.jump, db.v4.labels,
        db.v6.starts, db.v6.jump, db.v6.labels,
        keys, status, labels,
    )  # fmt: skip
    return labels


@pytest.fixture(scope="module")
def mapped_keys(ipv4_keys: dict[str, npt.NDArray[np.uint32]]) -> dict[str, npt.NDArray[np.uint64]]:
    """The IPv4 workloads as parsed keys: IPv4-mapped IPv6 rows ``(0, 0xFFFF_a.b.c.d)``."""
    out = {}
    for name, keys in ipv4_keys.items():
        rows = np.zeros((keys.shape[0], 2), dtype=np.uint64)
        rows[:, 1] = keys.astype(np.uint64) | np.uint64(0xFFFF_0000_0000)  # ::ffff:0:0/96
        out[name] = rows
    return out


@pytest.mark.benchmark(group="lookup_many")
@pytest.mark.parametrize("workload", WORKLOADS_V4)
def test_lookup_many_v4(
    run_batch: Callable[..., Any],
    search_c: ModuleType,
    db: lookupd.Database,
    mapped_keys: dict[str, npt.NDArray[np.uint64]],
    ipv4_keys: dict[str, npt.NDArray[np.uint32]],
    workload: str,
) -> None:
    keys = mapped_keys[workload]
    expected = searchsorted_labels(db.v4.starts, db.v4.labels, ipv4_keys[workload])
    np.testing.assert_array_equal(core_lookup_many(search_c, db, keys), expected)
    run_batch(core_lookup_many, search_c, db, keys, n=keys.shape[0], workload=f"ipv4 {workload}")


@pytest.mark.benchmark(group="lookup_many")
@pytest.mark.parametrize("workload", WORKLOADS_V4)
def test_searchsorted_labels_mapped_v4(
    run_batch: Callable[..., Any],
    db: lookupd.Database,
    ipv4_keys: dict[str, npt.NDArray[np.uint32]],
    workload: str,
) -> None:
    keys = ipv4_keys[workload]
    run_batch(
        searchsorted_labels,
        db.v4.starts,
        db.v4.labels,
        keys,
        n=keys.shape[0],
        workload=f"ipv4 {workload}",
        baseline="numpy.searchsorted",
    )


@pytest.mark.benchmark(group="lookup_many")
def test_lookup_many_v6(
    run_batch: Callable[..., Any],
    search_c: ModuleType,
    db: lookupd.Database,
    ipv6_keys: npt.NDArray[np.uint64],
    starts_s16: npt.NDArray[np.bytes_],
    keys_s16: npt.NDArray[np.bytes_],
) -> None:
    expected = searchsorted_labels(starts_s16, db.v6.labels, keys_s16)
    np.testing.assert_array_equal(core_lookup_many(search_c, db, ipv6_keys), expected)
    run_batch(
        core_lookup_many, search_c, db, ipv6_keys, n=ipv6_keys.shape[0], workload="ipv6 row-uniform"
    )


@pytest.mark.benchmark(group="lookup_many")
def test_searchsorted_labels_v6(
    run_batch: Callable[..., Any],
    db: lookupd.Database,
    starts_s16: npt.NDArray[np.bytes_],
    keys_s16: npt.NDArray[np.bytes_],
) -> None:
    run_batch(
        searchsorted_labels,
        starts_s16,
        db.v6.labels,
        keys_s16,
        n=keys_s16.shape[0],
        workload="ipv6 row-uniform",
        baseline="numpy.searchsorted",
    )
