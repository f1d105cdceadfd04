"""Write the seed corpus, fuzz/corpus/<target>/: small valid inputs of each kind.

Run from the repository root after a change to a target's input layout or to the data
formats (``python fuzz/make_corpus.py``); the files are committed. Findings (inputs that
once failed, minimized) live beside the seeds as ``finding-*`` and are never rewritten.
"""

from __future__ import annotations

import hashlib
import lzma
import sys
from collections.abc import Iterable
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
DATA = ROOT / "tests" / "data"
sys.path.insert(0, str(ROOT / "fuzz"))

from fuzz_formats import _BLOCKS_V4, _BLOCKS_V6, _LOCATIONS, CASES  # noqa: E402
from fuzz_snapshot import GOOD, HEADER_LENGTH  # noqa: E402

from lookupd.v1 import lookup_pb2 as pb  # noqa: E402

ADDRESSES = ["1.0.0.1", "::ffff:8.8.8.8", "2001:db8::1", "fe80::1%eth0", "01.2.3.4", "", "::"]


def parse_seeds() -> Iterable[bytes]:
    yield from (address.encode() for address in ADDRESSES)
    yield b"1:2:3:4:5:6:7:8"
    yield b"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
    yield b"1.2.3.4\r\n ::1 \n\n\tnot an address\n::ffff:1.2.3.4"


def wire_seeds() -> Iterable[bytes]:
    many = [f"1.0.{i}.1" for i in range(12)] + ["2001:db8::1", "bad", "::1"]
    yield pb.LookupRequest(addresses=ADDRESSES[:3]).SerializeToString()
    yield pb.LookupRequest(addresses=many).SerializeToString()  # the raw-bytes fast path
    yield pb.LookupRequest(addresses=many[:4], include_subdivisions=True).SerializeToString()
    v4 = bytes([1, 0, 0, 1, 8, 8, 8, 8, 10, 0, 0, 1])
    v6 = bytes.fromhex("20010db8000000000000000000000001") + bytes(16)
    yield pb.PackedLookupRequest(ipv4=v4, ipv6=v6, tag=7).SerializeToString()
    yield pb.PackedLookupRequest(ipv4=v4[:5]).SerializeToString()
    yield pb.CheckRegionRequest(
        policy="eu-only", addresses=ADDRESSES[:3], ipv4=v4, ipv6=v6
    ).SerializeToString()
    yield pb.CheckRegionRequest(policy="api-supported", addresses=["8.8.8.8"]).SerializeToString()
    yield b""


def _case(name: str, given: str | None = None) -> int:
    return next(i for i, case in enumerate(CASES) if case[1] == name and case[0] == given)


def formats_seeds() -> Iterable[bytes]:
    v4 = lzma.decompress(
        (DATA / "geo-whois-asn-country/geo-whois-asn-country-ipv4.csv.xz").read_bytes()
    )
    v6 = lzma.decompress(
        (DATA / "geo-whois-asn-country/geo-whois-asn-country-ipv6.csv.xz").read_bytes()
    )
    location = b"".join(v4.splitlines(keepends=True)[:12] + v6.splitlines(keepends=True)[:6])
    ip2location_v4 = b'"16777216","16777471","AU","Australia"\n"16777472","16778239","-","-"\n'
    ip2location_v6 = (
        b'"0","281470681743359","-","-"\n'
        b'"281470698520576","281470698520831","AU","Australia"\n'
        b'"42540766411282592856903984951653826560","42540766490510755371168322545197776895",'
        b'"JP","Japan"\n'
    )
    for storage in (0, 1, 2):
        yield bytes([_case("geo-whois-asn-country-ipv4.csv", "location-csv"), storage]) + location
    yield bytes([_case("dbip-country-lite.csv", "dbip-csv"), 0]) + location
    yield bytes([_case("IP2LOCATION-LITE-DB1.CSV", "ip2location-csv"), 0]) + ip2location_v4
    yield bytes([_case("IP2LOCATION-LITE-DB1.IPV6.CSV", "ip2location-csv"), 0]) + ip2location_v6
    for name in ("MaxMind-DB-test-ipv4-24.mmdb", "MaxMind-DB-test-mixed-24.mmdb"):
        mmdb = (DATA / "maxmind-test/test-data" / name).read_bytes()
        yield bytes([_case("Country.mmdb", "mmdb"), 0]) + mmdb
    country = (DATA / "maxmind-test/test-data/GeoIP2-Country-Test.mmdb").read_bytes()
    yield bytes([_case("Country.mmdb", "mmdb"), 1]) + country
    yield bytes([_case("GeoLite2-Country-Blocks-IPv4.csv", "geolite2-csv"), 0]) + _BLOCKS_V4
    yield bytes([_case("GeoLite2-Country-Blocks-IPv6.csv", "geolite2-csv"), 2]) + _BLOCKS_V6
    yield bytes([_case("GeoLite2-Country-Locations-en.csv", "geolite2-csv"), 0]) + _LOCATIONS
    yield bytes([_case("data.csv"), 0]) + location
    yield bytes([_case("data.csv"), 0]) + ip2location_v4
    yield bytes([_case("data.lkd"), 0]) + GOOD[:4096]  # a truncated snapshot


def _mode_byte(mode: int) -> int:
    """A first byte that fuzz_snapshot's FuzzedDataProvider reads as ``mode``."""
    for byte in range(256):
        if atheris.FuzzedDataProvider(bytes([byte])).ConsumeIntInRange(0, 2) == mode:
            return byte
    raise AssertionError(mode)


def snapshot_seeds() -> Iterable[bytes]:
    header = GOOD[52 : 52 + HEADER_LENGTH]
    yield bytes([_mode_byte(0)])
    yield bytes([_mode_byte(1)]) + header
    yield bytes([_mode_byte(2)])


def main() -> None:
    for target, seeds in (
        ("parse", parse_seeds()),
        ("wire", wire_seeds()),
        ("formats", formats_seeds()),
        ("snapshot", snapshot_seeds()),
    ):
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("seed-*"):
            old.unlink()
        for seed in seeds:
            (directory / f"seed-{hashlib.sha1(seed).hexdigest()[:12]}").write_bytes(seed)


if __name__ == "__main__":
    main()
