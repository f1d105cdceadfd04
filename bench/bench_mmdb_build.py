"""Reading a ``.mmdb`` for a build: lookupd's reader (compiled core) vs maxminddb's iteration.

``lookupd build`` of a ``.mmdb`` reads every network with its label: the reader
(``lookupd.datafiles.formats.mmdb.read``) walks the search tree and labels each distinct data
record once in ``lookupd.core._mmdb``. The baseline is what the reader did before: iterate the
file with maxminddb's C reader (``MODE_MMAP_EXT``, ``for network, record in reader``), which
decodes every record in full.

- pytest (``pytest bench/bench_mmdb_build.py``): group ``mmdb-build`` on the vendored
  GeoIP2-City and GeoLite2-Country test databases (a few hundred networks: quick, for the
  CI's untimed run; their figures are mostly per-call overhead).
- script (``python bench/bench_mmdb_build.py``): the real sizes. A City-schema database is
  generated with ``mmdb-writer`` (a dependency: lookupd export mmdb) from the vendored real ranges
  (tests/data/geo-whois-asn-country CSVs, cut into CIDRs) with GeoLite2-City-like records
  (country, registered country, continent and city names in 8 languages, location, postal
  code, a subdivision; about 10 networks per record, a few records with no country) and
  cached outside the tree (``--cache``, default ``$TMPDIR/lookupd-bench``); then the
  reader and maxminddb's iteration are timed on it, and on the vendored real ``.mmdb`` (flat
  ``country_code`` records), alternating, best and median of ``--rounds``. Before timing, the
  reader's rows are checked against maxminddb: every 97th network's first and last address
  must get the label of the record maxminddb decodes.
"""

from __future__ import annotations

import argparse
import heapq
import ipaddress
import lzma
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import maxminddb
import pytest

import lookupd
from lookupd.core import _mmdb
from lookupd.datafiles.formats import mmdb
from lookupd.datafiles.rows import RangeRows

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "tests" / "data" / "maxmind-test" / "test-data"
REAL = ROOT / "tests" / "data" / "geo-whois-asn-country"
SMALL = ("GeoIP2-City-Test.mmdb", "GeoLite2-Country-Test.mmdb")
SEED = 20261204
LANGUAGES = ("de", "en", "es", "fr", "ja", "pt-BR", "ru", "zh-CN")
NETWORKS_PER_RECORD = 10
CHECK_EVERY = 97  # networks between two checked against maxminddb


# --- pytest: the small vendored databases ------------------------------------------------


def iterate_maxminddb(path: Path) -> int:
    """The baseline: maxminddb's C reader decodes every network's record in full."""
    count = 0
    with maxminddb.open_database(os.fspath(path), maxminddb.MODE_MMAP_EXT) as reader:
        for _network, _record in reader:
            count += 1
    return count


def read_lookupd(path: Path) -> RangeRows:
    """Ours: the ``.mmdb`` reader a build runs (its core walks the tree and labels records)."""
    return mmdb.read(path, RangeRows())


@pytest.mark.benchmark(group="mmdb-build")
@pytest.mark.parametrize("name", SMALL)
def test_read_mmdb(run_batch: Callable[..., Any], name: str) -> None:
    if _mmdb.CORE != "c":
        pytest.skip("the compiled mmdb core is not active")
    path = TEST_DATA / name
    networks = iterate_maxminddb(path)
    check_rows(path, read_lookupd(path))
    run_batch(read_lookupd, path, n=networks, workload=name, unit="network")


@pytest.mark.benchmark(group="mmdb-build")
@pytest.mark.parametrize("name", SMALL)
def test_iterate_maxminddb(run_batch: Callable[..., Any], name: str) -> None:
    path = TEST_DATA / name
    networks = iterate_maxminddb(path)
    run_batch(
        iterate_maxminddb,
        path,
        n=networks,
        workload=name,
        baseline="maxminddb iteration",
        unit="network",
    )


# --- the check ---------------------------------------------------------------------------


def label(record: Any) -> str | None:
    """The label rule of lookupd.datafiles.formats.mmdb, on a record maxminddb decoded."""
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("country_code"), str) and record["country_code"]:
        return str(record["country_code"])
    for key in ("country", "registered_country"):
        code = (record.get(key) or {}).get("iso_code")
        if isinstance(code, str) and code:
            if key == "country":
                first = (record.get("subdivisions") or [{}])[0].get("iso_code")
                if isinstance(first, str) and first:
                    return f"{code}-{first}"
            return code
    return None


def check_rows(path: Path, rows: RangeRows) -> int:
    """Check sampled networks' labels in the reader's tables against maxminddb; return the
    number of networks checked."""
    v4, v6 = rows.tables()
    db = lookupd.Database(v4, v6, rows.label_names, mark_reserved=False)
    texts: list[str] = []
    expected: list[str | None] = []
    with maxminddb.open_database(os.fspath(path), maxminddb.MODE_MMAP_EXT) as reader:
        for i, (network, record) in enumerate(reader):
            if i % CHECK_EVERY:
                continue
            for address in (network.network_address, network.broadcast_address):
                texts.append(str(address))
                expected.append(label(record))
    result = db.lookup(texts)
    answers = [s or c for c, s in zip(result.countries(), result.subdivisions(), strict=True)]
    wrong = [(t, a, e) for t, a, e in zip(texts, answers, expected, strict=True) if a != e]
    if wrong:
        msg = f"{path}: {len(wrong)} of {len(texts)} sampled addresses differ: {wrong[:5]}"
        raise AssertionError(msg)
    return len(texts) // 2


# --- script: a City-schema database of realistic size -------------------------------------


def real_cidrs() -> Iterator[tuple[int, int, int, str]]:
    """(version, first address, prefix length, country) of every CIDR of the real ranges."""
    for version, name in ((4, "ipv4"), (6, "ipv6")):
        text = lzma.decompress((REAL / f"geo-whois-asn-country-{name}.csv.xz").read_bytes())
        for line in text.decode().splitlines():
            first, last, country = line.split(",")[:3]
            start, end = ipaddress.ip_address(first), ipaddress.ip_address(last)
            for network in ipaddress.summarize_address_range(start, end):  # type: ignore[misc]
                yield version, int(network.network_address), network.prefixlen, country


def split_cidrs(
    cidrs: list[tuple[int, int, int, str]], networks: int
) -> list[tuple[int, int, int, str]]:
    """Halve the widest CIDRs (IPv4 to /32, IPv6 to /64) until there are ``networks``: a
    City database cuts a country's ranges by city, so it has several times the networks of
    a country database of the same ranges."""
    if len(cidrs) >= networks:
        return cidrs
    heap = [(length, version, first, country) for version, first, length, country in cidrs]
    heapq.heapify(heap)
    kept: list[tuple[int, int, int, str]] = []
    while heap and len(heap) + len(kept) < networks:
        length, version, first, country = heapq.heappop(heap)
        if length >= (32 if version == 4 else 64):
            kept.append((version, first, length, country))
            continue
        half = 1 << ((32 if version == 4 else 128) - length - 1)
        heapq.heappush(heap, (length + 1, version, first, country))
        heapq.heappush(heap, (length + 1, version, first | half, country))
    kept += [(version, first, length, country) for length, version, first, country in heap]
    return sorted(kept)


def _names(rng: random.Random, base: str) -> dict[str, str]:
    return {language: f"{base} ({language}) {rng.randrange(10**6)}" for language in LANGUAGES}


def city_records(rng: random.Random, country: str, count: int) -> list[dict[str, Any]]:
    """``count`` GeoLite2-City-like records of one country (shared maps become pointers)."""
    from mmdb_writer import MmdbU16, MmdbU32

    continent = {"code": "EU", "geoname_id": MmdbU32(6255148), "names": _names(rng, "Europe")}
    place = {"geoname_id": MmdbU32(rng.randrange(10**7)), "iso_code": country}
    place["names"] = _names(rng, country)
    subdivisions = [
        {
            "geoname_id": MmdbU32(rng.randrange(10**7)),
            "iso_code": f"{i:02d}",
            "names": _names(rng, "S"),
        }
        for i in range(1, 1 + rng.randint(1, 12))
    ]
    records: list[dict[str, Any]] = []
    for i in range(count):
        record: dict[str, Any] = {
            "city": {"geoname_id": MmdbU32(rng.randrange(10**7)), "names": _names(rng, "City")},
            "continent": continent,
            "country": place,
            "location": {
                "accuracy_radius": MmdbU16(rng.choice((1, 5, 20, 50, 100, 200, 500, 1000))),
                "latitude": rng.uniform(-60, 70),
                "longitude": rng.uniform(-180, 180),
                "time_zone": f"Zone/{country}{i % 7}",
            },
            "postal": {"code": f"{rng.randrange(10**5):05d}"},
            "registered_country": place,
            "subdivisions": [rng.choice(subdivisions)],
        }
        if i % 211 == 0:  # an anonymous proxy, say: no country, only where it is registered
            del record["country"], record["city"], record["subdivisions"]
        records.append(record)
    return records


def write_city_mmdb(path: Path, networks: int) -> tuple[int, int]:
    """Write a City-schema database of about ``networks`` networks; return (networks, records)."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPNetwork, IPSet

    rng = random.Random(SEED)
    cidrs = list(real_cidrs())
    if networks < len(cidrs):
        cidrs = sorted(rng.sample(cidrs, networks))
    cidrs = split_cidrs(cidrs, networks)
    by_country: dict[str, int] = {}
    for _, _, _, country in cidrs:
        by_country[country] = by_country.get(country, 0) + 1
    pools = {
        country: city_records(rng, country, max(1, count // NETWORKS_PER_RECORD))
        for country, count in sorted(by_country.items())
    }
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="lookupd-bench-City",
        languages=list(LANGUAGES),
        description="lookupd bench: City schema on geo-whois-asn-country ranges",
    )
    started = time.perf_counter()
    for i, (version, first, length, country) in enumerate(cidrs):
        network = IPNetwork((first, length), version=version)
        writer.insert_network(IPSet([network]), rng.choice(pools[country]))
        if i % 100_000 == 0:
            print(f"  inserted {i:,} networks ({time.perf_counter() - started:.0f} s)", flush=True)
    writer.to_db_file(os.fspath(path))
    return len(cidrs), sum(len(pool) for pool in pools.values())


def timed(call: Callable[[Path], object], path: Path) -> float:
    started = time.perf_counter()
    call(path)
    return time.perf_counter() - started


def compare(path: Path, rounds: int) -> dict[str, list[float]]:
    """Time the reader and maxminddb's iteration alternately, ``rounds`` times each."""
    times: dict[str, list[float]] = {"lookupd": [], "maxminddb": []}
    for i in range(rounds):
        order = ("lookupd", "maxminddb") if i % 2 == 0 else ("maxminddb", "lookupd")
        for who in order:
            call = read_lookupd if who == "lookupd" else iterate_maxminddb
            times[who].append(timed(call, path))
    return times


def report(name: str, path: Path, networks: int, times: dict[str, list[float]]) -> None:
    ours, theirs = times["lookupd"], times["maxminddb"]
    best = min(theirs) / min(ours)
    median = statistics.median(theirs) / statistics.median(ours)
    print(
        f"| {name} | {networks:,} | {path.stat().st_size / 2**20:.1f} MiB "
        f"| {min(ours):.3f} s / {statistics.median(ours):.3f} s "
        f"| {min(theirs):.3f} s / {statistics.median(theirs):.3f} s "
        f"| {best:.1f}x / {median:.1f}x |"
    )


def main(argv: list[str] | None = None) -> int:
    """Generate (or reuse) the City-schema file, then time both readers on it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=1_000_000, help="networks to write")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "lookupd-bench")
    parser.add_argument(
        "--mmdb", type=Path, action="append", default=[], help="also time this file"
    )
    args = parser.parse_args(argv)
    if _mmdb.CORE != "c":
        print("the compiled mmdb core is not active: build it first", file=sys.stderr)
        return 2
    args.cache.mkdir(parents=True, exist_ok=True)
    city = args.cache / f"city-schema-{args.networks}.mmdb"
    if not city.exists():
        print(f"writing {city} with mmdb-writer ...", flush=True)
        started = time.perf_counter()
        partial = city.with_suffix(".partial")
        written, records = write_city_mmdb(partial, args.networks)
        partial.rename(city)
        print(
            f"  {written:,} networks, {records:,} records in {time.perf_counter() - started:.0f} s"
        )
    real = args.cache / "geo-whois-asn-country.mmdb"
    if not real.exists():
        real.write_bytes(lzma.decompress((REAL / "geo-whois-asn-country.mmdb.xz").read_bytes()))
    files = [(f"City schema ({city.name})", city), ("geo-whois-asn-country (flat)", real)]
    files += [(path.name, path) for path in args.mmdb]
    print(f"load average {os.getloadavg()[0]:.2f}; mmdb core {_mmdb.CORE}; rounds {args.rounds}")
    print(
        "| file | networks | size | lookupd reader best / median "
        "| maxminddb iteration best / median | ratio best / median |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, path in files:
        networks = iterate_maxminddb(path)
        check_rows(path, read_lookupd(path))
        report(name, path, networks, compare(path, args.rounds))
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
