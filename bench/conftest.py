"""Benchmark fixtures: the real database, 1M-address batches drawn with a fixed seed, the peers.

Workloads (every one drawn once per session, from ``SEED``):

- ``uniform``: IPv4 addresses uniform over the whole 32-bit space.
- ``row-uniform``: pick a segment of the real table uniformly, then an address uniformly
  inside it. Every row is equally likely, whatever its size, which is closer to real
  traffic than uniform IPv6 (almost all of which falls in a few unallocated segments).

The ``db`` fixture checks our answers against the ``.mmdb`` of the same data, read with the
``maxminddb`` C reader, before any benchmark uses it: no benchmark ever times a wrong answer.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import ipaddress
import lzma
import os
import random
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pytest

import lookupd
from lookupd.core import _parse, _search

SEED = 20260617
# Batch size of the main workloads: big enough that per-call overhead vanishes.
N_ADDRESSES = 1_000_000
# Addresses per workload checked against the .mmdb reader before any timing.
N_CHECK = 10_000
# Seconds of timed rounds to aim for per benchmark (rounds are then clamped to 5..50).
_ROUND_BUDGET_S = float(os.environ.get("LOOKUPD_BENCH_BUDGET_S", "1.5"))
_MIN_ROUNDS = 5
_MAX_ROUNDS = 50

DATA_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "geo-whois-asn-country"
MMDB_XZ = DATA_DIR / "geo-whois-asn-country.mmdb.xz"

# Single-address workloads: a well-known IPv4 and IPv6 resolver.
ONE_V4 = "1.1.1.1"
ONE_V6 = "2001:4860:4860::8888"

_LOADAVG_AT_START = pytest.StashKey[tuple[float, float, float]]()


class BatchRunner(Protocol):
    """Time ``target(*args)`` on a batch and record per-address figures in ``extra_info``."""

    def __call__(
        self,
        target: Callable[..., Any],
        *args: Any,
        n: int,
        workload: str,
        baseline: str | None = None,
        unit: str = "address",
    ) -> Any: ...


class CallRunner(Protocol):
    """Time a cheap call (microseconds) with pytest-benchmark's own calibration."""

    def __call__(
        self, target: Callable[..., Any], *args: Any, workload: str, baseline: str | None = None
    ) -> Any: ...


# --- run description -----------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Note the load before the run: the machines are shared, and load skews every figure."""
    config.stash[_LOADAVG_AT_START] = os.getloadavg()


def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any]
) -> None:
    """Add what the figures depend on to the JSON's ``machine_info`` (read by report.py)."""
    versions = {"lookupd": lookupd.__version__}
    for name in ("numpy", "maxminddb", "iptocc", "pytest-benchmark"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    builds = {}
    for module in (_search, _parse):
        compiled = sys.modules.get(module.__name__ + "_c")
        path = getattr(compiled, "__file__", None)
        if path:  # which build was timed: the cores change under the benchmarks
            builds[Path(path).name] = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    machine_info["lookupd_bench"] = {
        "search_core": _search.CORE,
        "parse_core": _parse.CORE,
        "core_builds": builds,
        "versions": versions,
        "loadavg_start": config.stash.get(_LOADAVG_AT_START, None),
        "loadavg_end": os.getloadavg(),
    }


# --- the compiled cores ---------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def compiled_cores() -> tuple[ModuleType, ModuleType]:
    """Skip the whole suite unless both compiled cores are the active ones."""
    if _search.CORE != "c" or _parse.CORE != "c":
        reason = (
            f"compiled cores not active (search core: {_search.CORE}, parse core: "
            f"{_parse.CORE}): build the extensions (pip install -e '.[bench]') and unset "
            "LOOKUPD_NO_EXTENSIONS; the benchmarks time the compiled core only"
        )
        pytest.skip(reason)
    from lookupd.core import _parse_c, _search_c

    return _search_c, _parse_c


@pytest.fixture(scope="session")
def search_c(compiled_cores: tuple[ModuleType, ModuleType]) -> ModuleType:
    """The compiled search core, ``lookupd.core._search_c``."""
    return compiled_cores[0]


@pytest.fixture(scope="session")
def parse_c(compiled_cores: tuple[ModuleType, ModuleType]) -> ModuleType:
    """The compiled address parser, ``lookupd.core._parse_c``."""
    return compiled_cores[1]


# --- the database and the peers ------------------------------------------------------------


@pytest.fixture(scope="session")
def raw_db() -> lookupd.Database:
    """The embedded default database, not yet checked (the workloads are drawn from it)."""
    return lookupd.open()


@pytest.fixture(scope="session")
def mmdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vendored ``.mmdb`` of the same data, decompressed into a temporary directory."""
    path = tmp_path_factory.mktemp("mmdb") / MMDB_XZ.name.removesuffix(".xz")
    path.write_bytes(lzma.decompress(MMDB_XZ.read_bytes()))
    return path


@pytest.fixture(scope="session")
def mmdb_reader(mmdb_path: Path) -> Iterator[Any]:
    """The ``maxminddb`` C-extension reader (memory-mapped) over the vendored ``.mmdb``."""
    maxminddb = pytest.importorskip(
        "maxminddb", reason="the bench extra: pip install -e '.[bench]'"
    )
    try:
        reader = maxminddb.open_database(str(mmdb_path), maxminddb.MODE_MMAP_EXT)
    except ValueError as exc:  # the C extension was not built: a pure-Python reader is no peer
        pytest.skip(f"maxminddb C extension unavailable: {exc}")
    yield reader
    reader.close()


@pytest.fixture(scope="session")
def iptocc_country_code() -> Callable[[Any], Any]:
    """``iptocc.country_code``: takes one address or a list, returns codes (``None`` if none)."""
    iptocc = pytest.importorskip("iptocc", reason="the bench extra: pip install -e '.[bench]'")
    country_code: Callable[[Any], Any] = iptocc.country_code
    country_code(ONE_V4)  # loads its embedded data outside any timing
    return country_code


@pytest.fixture(scope="session")
def db(
    raw_db: lookupd.Database,
    mmdb_reader: Any,
    ipv4_strs: dict[str, list[str]],
    ipv4_keys: dict[str, npt.NDArray[np.uint32]],
    ipv6_strs: list[str],
    ipv6_packed: bytes,
) -> lookupd.Database:
    """The embedded database, its answers checked against the ``.mmdb`` reader.

    The ``.mmdb`` labels the reserved blocks the data labels (a private range inside a
    country's allocation, say), which lookupd answers as ``RESERVED`` with no country: the
    data itself is compared with marking off, and the marking may only blank answers.
    """
    unmarked = lookupd.open(mark_reserved=False)
    samples = {f"ipv4 {name}": strs[:N_CHECK] for name, strs in ipv4_strs.items()}
    samples["ipv6 row-uniform"] = ipv6_strs[:N_CHECK]
    samples["single"] = [ONE_V4, ONE_V6]
    for name, strs in samples.items():
        plain = unmarked.lookup(strs)
        ours = plain.countries()
        theirs = [(record or {}).get("country_code") for record in map(mmdb_reader.get, strs)]
        wrong = [(s, a, b) for s, a, b in zip(strs, ours, theirs, strict=True) if a != b]
        assert not wrong, f"{name}: {len(wrong)} answers differ from the .mmdb: {wrong[:5]}"
        marked = raw_db.lookup(strs)
        blanked = np.where(marked.status == lookupd.Status.RESERVED, 0, plain.labels)
        np.testing.assert_array_equal(marked.labels, blanked)
    for ip in samples["single"]:
        assert raw_db.lookup_one(ip) == (mmdb_reader.get(ip) or {}).get("country_code")
    # The other input forms must give the same labels as text.
    for name, keys in ipv4_keys.items():
        expected = raw_db.lookup(ipv4_strs[name][:N_CHECK]).labels
        np.testing.assert_array_equal(raw_db.lookup(keys[:N_CHECK]).labels, expected)
        packed = keys[:N_CHECK].astype(">u4").tobytes()
        np.testing.assert_array_equal(raw_db.lookup(packed, version=4).labels, expected)
    expected = raw_db.lookup(ipv6_strs[:N_CHECK]).labels
    packed = ipv6_packed[: 16 * N_CHECK]
    np.testing.assert_array_equal(raw_db.lookup(packed, version=6).labels, expected)
    return raw_db


# --- workloads ------------------------------------------------------------------------------


def _row_uniform_v4(
    db: lookupd.Database, n: int, rng: np.random.Generator
) -> npt.NDArray[np.uint32]:
    starts = db.v4.starts.astype(np.int64)
    sizes = np.diff(starts, append=np.int64(1) << 32)  # segment i: starts[i] .. starts[i+1]-1
    rows = rng.integers(0, starts.shape[0], n)
    return (starts[rows] + rng.integers(0, sizes[rows])).astype(np.uint32)


def _format_v4(keys: npt.NDArray[np.uint32]) -> list[str]:
    packed = keys.astype(">u4").tobytes()
    return [socket.inet_ntoa(packed[i : i + 4]) for i in range(0, len(packed), 4)]


@pytest.fixture(scope="session")
def ipv4_keys(raw_db: lookupd.Database) -> dict[str, npt.NDArray[np.uint32]]:
    """1M IPv4 addresses as ``uint32`` per workload: ``uniform`` and ``row-uniform``."""
    rng = np.random.default_rng(SEED)
    return {
        "uniform": rng.integers(0, 1 << 32, N_ADDRESSES, dtype=np.uint32),
        "row-uniform": _row_uniform_v4(raw_db, N_ADDRESSES, rng),
    }


@pytest.fixture(scope="session")
def ipv4_strs(ipv4_keys: dict[str, npt.NDArray[np.uint32]]) -> dict[str, list[str]]:
    """The same addresses as dotted-quad ``str``, per workload."""
    return {name: _format_v4(keys) for name, keys in ipv4_keys.items()}


@pytest.fixture(scope="session")
def ipv4_packed(ipv4_keys: dict[str, npt.NDArray[np.uint32]]) -> dict[str, bytes]:
    """The same addresses packed in network order, 4 bytes each, per workload."""
    return {name: keys.astype(">u4").tobytes() for name, keys in ipv4_keys.items()}


@pytest.fixture(scope="session")
def ipv6_ints(raw_db: lookupd.Database) -> list[int]:
    """1M row-uniform IPv6 addresses of the real table, as Python ints."""
    rng = random.Random(SEED)
    segments = raw_db.v6.segments()
    picks = rng.choices(segments, k=N_ADDRESSES)
    return [rng.randint(start, end) for start, end, _label in picks]


@pytest.fixture(scope="session")
def ipv6_strs(ipv6_ints: list[int]) -> list[str]:
    """The same addresses as RFC 5952 text (``str(ipaddress.IPv6Address(x))``)."""
    return [str(ipaddress.IPv6Address(x)) for x in ipv6_ints]


@pytest.fixture(scope="session")
def ipv6_packed(ipv6_ints: list[int]) -> bytes:
    """The same addresses packed in network order, 16 bytes each."""
    return b"".join(x.to_bytes(16, "big") for x in ipv6_ints)


@pytest.fixture(scope="session")
def ipv6_keys(ipv6_packed: bytes) -> npt.NDArray[np.uint64]:
    """The same addresses as the cores' ``uint64`` rows (high 64 bits, low 64 bits)."""
    return np.frombuffer(ipv6_packed, dtype=">u8").astype(np.uint64).reshape(-1, 2)


@pytest.fixture(scope="session")
def starts_s16(db: lookupd.Database) -> npt.NDArray[np.bytes_]:
    """IPv6 starts as 16-byte big-endian strings, which numpy orders as 128-bit numbers."""
    return np.ascontiguousarray(db.v6.starts.astype(">u8")).view("S16").ravel()


@pytest.fixture(scope="session")
def keys_s16(ipv6_packed: bytes) -> npt.NDArray[np.bytes_]:
    """The IPv6 workload as 16-byte big-endian strings (the packed bytes, reinterpreted)."""
    return np.frombuffer(ipv6_packed, dtype="S16")


# --- timing ----------------------------------------------------------------------------------


def record(
    benchmark: Any, *, n: int, workload: str, baseline: str | None, unit: str = "address"
) -> None:
    """Store per-item figures (from the median round) in the benchmark's ``extra_info``."""
    benchmark.extra_info.update(
        n_addresses=n, workload=workload, baseline=baseline or "", unit=unit
    )
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable: nothing was timed
        return
    median_s = stats.stats.median
    benchmark.extra_info["ns_per_address"] = median_s * 1e9 / n
    benchmark.extra_info["addresses_per_s"] = n / median_s if median_s else float("inf")


@pytest.fixture
def run_batch(benchmark: Any) -> BatchRunner:
    """Time a call over a whole batch: one call per round, rounds sized to the call's cost.

    ``baseline`` names the peer a benchmark stands for (``numpy.searchsorted``, ``iptocc``,
    ...); ``bench/report.py`` prints every other row of the group as a ratio to it.
    """

    def run(
        target: Callable[..., Any],
        *args: Any,
        n: int,
        workload: str,
        baseline: str | None = None,
        unit: str = "address",
    ) -> Any:
        started = time.perf_counter()
        target(*args)
        once_s = time.perf_counter() - started
        rounds = int(min(_MAX_ROUNDS, max(_MIN_ROUNDS, _ROUND_BUDGET_S / max(once_s, 1e-9))))
        result = benchmark.pedantic(target, args=args, rounds=rounds, iterations=1, warmup_rounds=1)
        record(benchmark, n=n, workload=workload, baseline=baseline, unit=unit)
        return result

    return run


@pytest.fixture
def run_call(benchmark: Any) -> CallRunner:
    """Time a single-address call; pytest-benchmark loops it enough to measure it."""

    def run(
        target: Callable[..., Any], *args: Any, workload: str, baseline: str | None = None
    ) -> Any:
        result = benchmark(target, *args)
        record(benchmark, n=1, workload=workload, baseline=baseline, unit="call")
        return result

    return run
