"""Fuzz every data-file reader: whatever a file holds, only a DataFormatError may come out.

The input's first byte picks the reader and the file's name, its second how the file is
stored (plain; validly gzip- or xz-compressed; or the raw bytes under a ``.gz``/``.xz``
name, for the decompressors' own errors); the rest is the file. GeoLite2 CSVs are a pair of
files: one is the input, the other a small valid one. Invariants: ``read_source`` (with the
format given, and detected) and ``open_database`` raise nothing but ``LookupdError``
(DataFormatError is one), and rows a reader accepts build tables.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import lzma
import sys

from _harness import check, instrument_lookupd, main, scratch_directory

from lookupd.datafiles.formats import FORMATS, read_source
from lookupd.datafiles.open import open_database
from lookupd.errors import LookupdError

# read_source imports each reader on first use: import them all before instrumenting.
for _module, _ in FORMATS.values():
    importlib.import_module(f"lookupd.datafiles.formats.{_module}")
instrument_lookupd(
    dataflow=("lookupd.datafiles.formats", "lookupd.datafiles.formats.geolite2_locations")
)

_BLOCKS_V4 = b"network,geoname_id,registered_country_geoname_id\n1.0.0.0/24,1,2\n"
_BLOCKS_V6 = b"network,geoname_id,registered_country_geoname_id\n2001:db8::/32,1,\n"
_LOCATIONS = (
    b"geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name\n"
    b"1,en,OC,Oceania,AU,Australia\n2,en,AS,Asia,CN,China\n"
)
_LOCATIONS_NAME = "GeoLite2-Country-Locations-en.csv"
# (format given to read_source or None to detect it, the fuzzed file's name, the other
# files of the directory with their contents).
CASES: tuple[tuple[str | None, str, dict[str, bytes]], ...] = (
    ("location-csv", "geo-whois-asn-country-ipv4.csv", {}),
    ("dbip-csv", "dbip-country-lite.csv", {}),
    ("ip2location-csv", "IP2LOCATION-LITE-DB1.CSV", {}),
    ("ip2location-csv", "IP2LOCATION-LITE-DB1.IPV6.CSV", {}),
    ("mmdb", "Country.mmdb", {}),
    (
        "geolite2-csv",
        "GeoLite2-Country-Blocks-IPv4.csv",
        {"GeoLite2-Country-Locations-en.csv": _LOCATIONS},
    ),
    (
        "geolite2-csv",
        "GeoLite2-Country-Blocks-IPv6.csv",
        {"GeoLite2-Country-Locations-en.csv": _LOCATIONS},
    ),
    (
        "geolite2-csv",
        "GeoLite2-Country-Locations-en.csv",
        {"GeoLite2-Country-Blocks-IPv4.csv": _BLOCKS_V4},
    ),
    (None, "data.csv", {}),
    (None, "data.lkd", {}),
)
STORAGE = ("", ".gz", ".xz", ".gz", ".xz")  # plain, compressed, raw bytes under the name
_TMP = scratch_directory()


def _store(data: bytes, storage: int) -> bytes:
    if storage == 1:
        return gzip.compress(data, compresslevel=1)
    if storage == 2:
        return lzma.compress(data, preset=0)
    return data


def test_one(data: bytes) -> None:
    if len(data) < 2:
        return
    format, name, others = CASES[data[0] % len(CASES)]
    storage = data[1] % len(STORAGE)
    directory = _TMP / "d"
    directory.mkdir(exist_ok=True)
    for entry in directory.iterdir():
        entry.unlink()
    for other, content in others.items():
        (directory / other).write_bytes(content)
    path = directory / (name + STORAGE[storage])
    path.write_bytes(_store(data[2:], storage))
    source = path
    if "Locations" in name:  # the Locations file is read through its Blocks file
        source = directory / "GeoLite2-Country-Blocks-IPv4.csv"
    for given in dict.fromkeys((format, None)):
        try:
            rows = read_source(source, format=given)
        except LookupdError:
            continue
        v4, v6 = rows.tables()
        check(len(v4) > 0 and len(v6) > 0, "a table without its first segment")
    with contextlib.suppress(LookupdError):
        open_database(source)


if __name__ == "__main__":
    sys.exit(main(test_one))
