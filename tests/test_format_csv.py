"""GeoLite2, IP2Location and DB-IP CSVs: files generated from the real data build the real
tables, and every edge of each format reads right or fails naming the file and line."""

from __future__ import annotations

import csv
import gzip
import io
import ipaddress
import lzma
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lookupd.core.constants import IPV4_MAPPED_PREFIX, IPV4_MAX, IPV6_MAX
from lookupd.core.table import RangeTable
from lookupd.datafiles.formats import geolite2_csv, ip2location_csv, read_source
from lookupd.datafiles.rows import RangeRows
from lookupd.errors import DataFormatError

_DATA = Path(__file__).parent / "data" / "geo-whois-asn-country"
_MAPPED_LAST = IPV4_MAPPED_PREFIX | IPV4_MAX
_BLOCKS_HEADER = (
    "network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,"
    "is_anonymous_proxy,is_satellite_provider,is_anycast\n"
)
_LOCATIONS_HEADER = (
    "geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,"
    "is_in_european_union\n"
)
_CITY_LOCATIONS_HEADER = (
    "geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,"
    "subdivision_1_iso_code,subdivision_1_name,subdivision_2_iso_code,subdivision_2_name,"
    "city_name,metro_code,time_zone,is_in_european_union\n"
)
_EUROPE = "6255148"  # a continent's geoname_id: a Locations row with no country


def _write(path: Path, text: str) -> Path:
    data = text.encode()
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=1)
    elif path.suffix == ".xz":
        data = lzma.compress(data)
    path.write_bytes(data)
    return path


def _names(rows: RangeRows, table: RangeTable) -> list[str]:
    return [rows.label_names[i] for i in table.labels.tolist()]


def _assert_same_tables(got: RangeRows, want: RangeRows) -> None:
    """Same segment starts, same label names segment by segment (indices may differ)."""
    for got_table, want_table in zip(got.tables(), _tables(want), strict=True):
        np.testing.assert_array_equal(got_table.starts, want_table.starts)
        assert _names(got, got_table) == _names(want, want_table)


_TABLES: dict[int, tuple[RangeTable, RangeTable]] = {}


def _tables(rows: RangeRows) -> tuple[RangeTable, RangeTable]:
    """``rows.tables()``, built once per rows object (the real data's take a second)."""
    if id(rows) not in _TABLES:
        _TABLES[id(rows)] = rows.tables()
    return _TABLES[id(rows)]


def _v4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def _v6(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


# ---------------------------------------------------------------------------------------
# Synthetic files of the full real data.


@pytest.fixture(scope="module")
def real() -> RangeRows:
    """The vendored ip-location-db CSVs, as read by the reader they are known to work with."""
    rows = read_source(_DATA / "geo-whois-asn-country-ipv4.csv.xz")
    return read_source(_DATA / "geo-whois-asn-country-ipv6.csv.xz", rows)


@pytest.fixture(scope="module")
def real_segments(real: RangeRows) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]]:
    """Every (IPv4, IPv6) segment of the real tables, unknown ones labelled ``""``."""
    v4, v6 = _tables(real)
    return (
        [(s, e, real.label_names[label]) for s, e, label in v4.segments()],
        [(s, e, real.label_names[label]) for s, e, label in v6.segments()],
    )


def _geoname_ids(names: list[str]) -> dict[str, str]:
    return {name: str(100_000 + i) for i, name in enumerate(names) if name}


def _locations_text(ids: dict[str, str]) -> str:
    lines = [_LOCATIONS_HEADER, f"{_EUROPE},en,EU,Europe,,,0\n"]
    lines += [f'{gid},en,EU,Europe,{name},"Land of {name}, the",0\n' for name, gid in ids.items()]
    return "".join(lines)


def _blocks_text(
    segments: list[tuple[int, int, str]], version: int, ids: dict[str, str], fallbacks: list[int]
) -> str:
    """CIDR rows for the labelled segments; some use the registered-country fallback."""
    address = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    other = list(ids.values())
    lines = [_BLOCKS_HEADER]
    k = 0
    for start, end, name in segments:
        if not name:
            continue
        gid = ids[name]
        for network in ipaddress.summarize_address_range(address(start), address(end)):
            k += 1
            if k % 50 == 0:  # no geoname_id: the registered country labels it
                lines.append(f"{network},,{gid},,0,0,\n")
                fallbacks[0] += 1
            elif k % 50 == 1:  # a continent: no country, so the registered country again
                lines.append(f"{network},{_EUROPE},{gid},,0,0,0\n")
                fallbacks[0] += 1
            else:  # geoname_id wins over a different registered country
                lines.append(f"{network},{gid},{other[k % len(other)]},,0,0,\n")
    return "".join(lines)


@pytest.fixture(scope="module")
def geolite2_dir(
    tmp_path_factory: pytest.TempPathFactory,
    real: RangeRows,
    real_segments: tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]],
) -> tuple[Path, int]:
    """A GeoLite2-Country-CSV directory of the real data, and its number of fallbacks."""
    directory = tmp_path_factory.mktemp("GeoLite2-Country-CSV_20260617")
    ids = _geoname_ids(real.label_names)
    fallbacks = [0]
    _write(directory / "GeoLite2-Country-Locations-en.csv", _locations_text(ids))
    for version, segments in zip((4, 6), real_segments, strict=True):
        text = _blocks_text(segments, version, ids, fallbacks)
        _write(directory / f"GeoLite2-Country-Blocks-IPv{version}.csv", text)
    return directory, fallbacks[0]


@pytest.mark.slow
def test_geolite2_csv_of_the_real_data_builds_the_real_tables(
    real: RangeRows, geolite2_dir: tuple[Path, int]
) -> None:
    directory, fallbacks = geolite2_dir
    started = time.perf_counter()
    rows = read_source(directory)
    elapsed = time.perf_counter() - started
    _assert_same_tables(rows, real)
    assert dict(rows.notes) == {geolite2_csv.NOTE_REGISTERED: fallbacks}
    assert len(rows) > 1_000_000  # every CIDR block of both families
    print(f"GeoLite2 CSV, {len(rows)} networks: read in {elapsed:.2f} s")


@pytest.mark.slow
def test_geolite2_blocks_files_one_at_a_time(
    real: RangeRows, geolite2_dir: tuple[Path, int]
) -> None:
    directory, _ = geolite2_dir
    rows = read_source(directory / "GeoLite2-Country-Blocks-IPv4.csv")
    rows = read_source(directory / "GeoLite2-Country-Blocks-IPv6.csv", rows)
    _assert_same_tables(rows, real)


def _quoted(*rows: tuple[object, ...]) -> str:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL).writerows(rows)  # "\r\n", as IP2Location writes
    return out.getvalue()


def _country_name(code: str) -> str:
    return "-" if not code else f"Republic of {code}, the"


@pytest.fixture(scope="module")
def ip2location_dir(
    tmp_path_factory: pytest.TempPathFactory,
    real_segments: tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]],
) -> Path:
    """IP2LOCATION-LITE-DB1.CSV and .IPV6.CSV of the real data (every segment, '-' gaps)."""
    directory = tmp_path_factory.mktemp("ip2location")
    v4, v6 = real_segments

    def row(start: int, end: int, code: str) -> tuple[str, str, str, str]:
        return str(start), str(end), code or "-", _country_name(code)

    _write(directory / "IP2LOCATION-LITE-DB1.CSV", _quoted(*(row(*s) for s in v4)))
    rows: list[tuple[str, str, str, str]] = []
    for start, end, code in v6:
        # The IPv6 file spells the IPv4 space as ::ffff:0:0/96, as IP2Location does.
        assert not code or end < IPV4_MAPPED_PREFIX or start > _MAPPED_LAST
        if start < IPV4_MAPPED_PREFIX <= end:
            rows.append(row(start, IPV4_MAPPED_PREFIX - 1, code))
            rows += [row(s + IPV4_MAPPED_PREFIX, e + IPV4_MAPPED_PREFIX, c) for s, e, c in v4]
            start = _MAPPED_LAST + 1
        rows.append(row(start, end, code))
    _write(directory / "IP2LOCATION-LITE-DB1.IPV6.CSV", _quoted(*rows))
    return directory


@pytest.mark.slow
def test_ip2location_ipv6_file_of_the_real_data_builds_both_real_tables(
    real: RangeRows, ip2location_dir: Path
) -> None:
    rows = read_source(ip2location_dir / "IP2LOCATION-LITE-DB1.IPV6.CSV")
    _assert_same_tables(rows, real)
    assert rows.notes[ip2location_csv.NOTE_UNASSIGNED] > 7_000  # the real gaps


@pytest.mark.slow
def test_ip2location_ipv4_file_of_the_real_data_builds_the_real_ipv4_table(
    real: RangeRows, ip2location_dir: Path
) -> None:
    rows = read_source(ip2location_dir / "IP2LOCATION-LITE-DB1.CSV")
    got_v4, got_v6 = rows.tables()
    want_v4, _ = _tables(real)
    np.testing.assert_array_equal(got_v4.starts, want_v4.starts)
    assert _names(rows, got_v4) == _names(real, want_v4)
    assert len(got_v6) == 1
    assert rows.v6 == ([], [], [])


def _interleaved(
    v4: list[tuple[int, int, str]], v6: list[tuple[int, int, str]]
) -> Iterator[tuple[int, int, str, int]]:
    """Labelled segments of both families, alternating in runs of 1000, as (s, e, label, v)."""
    runs4 = [v4[i : i + 1000] for i in range(0, len(v4), 1000)]
    runs6 = [v6[i : i + 1000] for i in range(0, len(v6), 1000)]
    for i in range(max(len(runs4), len(runs6))):
        for version, runs in ((4, runs4), (6, runs6)):
            if i < len(runs):
                yield from ((s, e, label, version) for s, e, label in runs[i] if label)


@pytest.mark.slow
def test_dbip_csv_of_the_real_data_builds_the_real_tables(
    tmp_path: Path,
    real: RangeRows,
    real_segments: tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]],
) -> None:
    def text(address: int, version: int) -> str:
        if version == 4:
            return socket.inet_ntoa(address.to_bytes(4, "big"))
        return socket.inet_ntop(socket.AF_INET6, address.to_bytes(16, "big"))

    lines = []
    for start, end, label, version in _interleaved(*real_segments):
        lines.append(f"{text(start, version)},{text(end, version)},{label}\n")
    path = _write(tmp_path / "dbip-country-lite-2026-06.csv.gz", "".join(lines))
    rows = read_source(path)
    _assert_same_tables(rows, real)


# ---------------------------------------------------------------------------------------
# GeoLite2 CSV: small files for every edge.

_LOCATIONS = _LOCATIONS_HEADER + (
    "2077456,en,OC,Oceania,AU,Australia,0\n"
    "2921044,en,EU,Europe,DE,Germany,1\n"
    '6252001,en,NA,"North America",US,"United States",0\n'
    f"{_EUROPE},en,EU,Europe,,,0\n"
)


def _geolite2(
    directory: Path,
    v4: str | None = None,
    v6: str | None = None,
    locations: str | None = _LOCATIONS,
    prefix: str = "GeoLite2-Country",
    suffix: str = "",
) -> Path:
    """Write a GeoLite2 CSV database into ``directory``; return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    if locations is not None:
        _write(directory / f"{prefix}-Locations-en.csv{suffix}", locations)
    if v4 is not None:
        _write(directory / f"{prefix}-Blocks-IPv4.csv{suffix}", v4)
    if v6 is not None:
        _write(directory / f"{prefix}-Blocks-IPv6.csv{suffix}", v6)
    return directory


def _blocks(tmp_path: Path, body: str, header: str = _BLOCKS_HEADER) -> Path:
    return _geolite2(tmp_path, v4=header + body) / "GeoLite2-Country-Blocks-IPv4.csv"


def test_geolite2_reads_both_families_from_a_directory(tmp_path: Path) -> None:
    directory = _geolite2(
        tmp_path,
        v4=_BLOCKS_HEADER + "1.0.0.0/24,2077456,2077456,,0,0,\n2.0.0.0/31,2921044,2921044,,0,0,\n",
        v6=_BLOCKS_HEADER + "2001:db8::/32,6252001,6252001,,0,0,1\n",
    )
    rows = read_source(directory)
    assert rows.label_names == ["", "AU", "DE", "US"]
    assert rows.v4 == ([_v4("1.0.0.0"), _v4("2.0.0.0")], [_v4("1.0.0.255"), _v4("2.0.0.1")], [1, 2])
    assert rows.v6 == ([_v6("2001:db8::")], [_v6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")], [3])
    assert not rows.notes


@pytest.mark.parametrize("suffix", [".gz", ".xz"])
def test_geolite2_compressed_files(tmp_path: Path, suffix: str) -> None:
    directory = _geolite2(
        tmp_path, v4=_BLOCKS_HEADER + "1.0.0.0/24,2077456,,,0,0,\n", suffix=suffix
    )
    assert read_source(directory).v4 == ([_v4("1.0.0.0")], [_v4("1.0.0.255")], [1])
    blocks = directory / f"GeoLite2-Country-Blocks-IPv4.csv{suffix}"
    assert read_source(blocks).v4 == ([_v4("1.0.0.0")], [_v4("1.0.0.255")], [1])


def test_geolite2_finds_columns_by_name_and_ignores_unknown_ones(tmp_path: Path) -> None:
    header = "future_flag,registered_country_geoname_id,network,geoname_id,is_anycast,extra\n"
    path = _blocks(tmp_path, 'x,2077456,1.0.0.0/24,2921044,1,"a, b"\n', header)
    rows = read_source(path)
    assert rows.label_names == ["", "DE"]
    assert rows.v4 == ([_v4("1.0.0.0")], [_v4("1.0.0.255")], [1])


def test_geolite2_optional_columns_may_be_missing(tmp_path: Path) -> None:
    path = _blocks(tmp_path, "1.0.0.0/24,2077456\n1.0.1.0/24,\n", "network,geoname_id\n")
    rows = read_source(path)
    assert rows.v4 == ([_v4("1.0.0.0")], [_v4("1.0.0.255")], [1])
    assert rows.notes == {geolite2_csv.NOTE_NO_COUNTRY: 1}
    # The Locations file needs only geoname_id and country_iso_code.
    locations = "country_iso_code,geoname_id\nAU,2077456\n"
    directory = _geolite2(tmp_path / "minimal", v4=_BLOCKS_HEADER, locations=locations)
    _write(
        directory / "GeoLite2-Country-Blocks-IPv4.csv", "network,geoname_id\n1.0.0.0/8,2077456\n"
    )
    assert read_source(directory).label_names == ["", "AU"]


def test_geolite2_registered_country_fallback_is_counted(tmp_path: Path) -> None:
    path = _blocks(
        tmp_path,
        "1.0.0.0/24,,2077456,,1,0,\n"  # anonymous proxy: no geoname_id
        f"1.0.1.0/24,{_EUROPE},2921044,,0,0,\n"  # a continent: no country
        f"1.0.2.0/24,{_EUROPE},{_EUROPE},,0,0,\n"  # neither has a country: unknown
        "1.0.3.0/24,,,,0,1,\n"  # satellite provider with nothing: unknown
        "1.0.4.0/24,6252001,2077456,,0,0,\n",  # geoname_id wins
    )
    rows = read_source(path)
    assert rows.label_names == ["", "AU", "DE", "US"]
    assert rows.v4[0] == [_v4("1.0.0.0"), _v4("1.0.1.0"), _v4("1.0.4.0")]
    assert rows.v4[2] == [1, 2, 3]
    assert rows.notes == {geolite2_csv.NOTE_REGISTERED: 2, geolite2_csv.NOTE_NO_COUNTRY: 2}


def test_geolite2_city_subdivision_labels(tmp_path: Path) -> None:
    locations = _CITY_LOCATIONS_HEADER + (
        "703448,en,EU,Europe,UA,Ukraine,30,Kyiv,,,Kyiv,,Europe/Kyiv,0\n"
        '694423,en,EU,Europe,UA,Ukraine,43,"Crimea",,,Sevastopol,,Europe/Simferopol,0\n'
        "690791,en,EU,Europe,UA,Ukraine,,,,,,,Europe/Kyiv,0\n"
        '5391959,en,NA,"North America",US,"United States",CA,California,,,'
        '"San Francisco",807,America/Los_Angeles,0\n'
    )
    header = (
        "network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,"
        "is_anonymous_proxy,is_satellite_provider,postal_code,latitude,longitude,"
        "accuracy_radius,is_anycast\n"
    )
    body = (
        "1.0.0.0/24,703448,690791,,0,0,01001,50.45,30.52,100,\n"
        "1.0.1.0/24,694423,690791,,0,0,,44.6,33.5,50,\n"
        "1.0.2.0/24,,703448,,0,0,,,,1000,\n"  # registered fallback: the country only
        "1.0.3.0/24,690791,690791,,0,0,,,,1000,\n"
        "1.0.4.0/24,5391959,5391959,,0,0,94107,37.7,-122.4,5,\n"
    )
    directory = _geolite2(tmp_path, v4=header + body, locations=locations, prefix="GeoLite2-City")
    rows = read_source(directory)
    assert [rows.label_names[i] for i in rows.v4[2]] == ["UA-30", "UA-43", "UA", "UA", "US-CA"]
    assert rows.notes == {geolite2_csv.NOTE_REGISTERED: 1}


def test_geolite2_ipv4_mapped_networks_go_to_the_ipv4_table(tmp_path: Path) -> None:
    directory = _geolite2(
        tmp_path,
        v6=_BLOCKS_HEADER
        + "::ffff:1.0.0.0/120,2077456,,,0,0,\n"
        + "::/64,2921044,,,0,0,\n",  # contains all of ::ffff:0:0/96: split around it
    )
    rows = read_source(directory)
    assert rows.label_names == ["", "AU", "DE"]
    assert rows.v4 == ([_v4("1.0.0.0"), 0], [_v4("1.0.0.255"), IPV4_MAX], [1, 2])
    assert rows.v6 == (
        [0, _MAPPED_LAST + 1],
        [IPV4_MAPPED_PREFIX - 1, (1 << 64) - 1],
        [2, 2],
    )


def test_geolite2_edges_of_the_address_space(tmp_path: Path) -> None:
    directory = _geolite2(
        tmp_path,
        v4=_BLOCKS_HEADER + "0.0.0.0/0,2077456,,,0,0,\n255.255.255.255/32,2921044,,,0,0,\n",
        v6=_BLOCKS_HEADER + "8000::/1,6252001,,,0,0,\n::1/128,2077456,,,0,0,\n",
    )
    rows = read_source(directory)
    assert rows.v4 == ([0, IPV4_MAX], [IPV4_MAX, IPV4_MAX], [1, 2])
    assert rows.v6 == ([1 << 127, 1], [IPV6_MAX, 1], [3, 1])


@pytest.mark.parametrize(
    ("network", "problem"),
    [
        ("1.0.0.0", r"not a CIDR network: '1\.0\.0\.0'"),
        ("1.0.0.0/33", r"not a CIDR network: '1\.0\.0\.0/33'"),
        ("1.0.0.0/x", r"not a CIDR network: '1\.0\.0\.0/x'"),
        ("1.0.0.0/", r"not a CIDR network: '1\.0\.0\.0/'"),
        ("1.0.0.0/-1", r"not a CIDR network"),
        ("1.0.0/24", r"not a CIDR network: '1\.0\.0/24'"),
        ("1.0.0.0/24/8", r"not a CIDR network"),
        ("::/129", r"not a CIDR network: '::/129'"),
        ("", r"not a CIDR network: ''"),
        ("1.0.0.1/24", r"network 1\.0\.0\.1/24 has host bits set \(.* be 1\.0\.0\.0/24\)"),
        (
            "2001:db8::1/64",
            r"network 2001:db8::1/64 has host bits set \(the network would be 2001:db8::/64\)",
        ),
    ],
)
def test_geolite2_bad_networks_name_file_and_line(
    tmp_path: Path, network: str, problem: str
) -> None:
    path = _blocks(tmp_path, f"2.0.0.0/8,2077456,,,0,0,\n{network},2077456,,,0,0,\n")
    with pytest.raises(DataFormatError, match=rf"Blocks-IPv4\.csv:3: {problem}"):
        read_source(path)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("1.0.0.0/24,999,,,0,0,\n", r":2: unknown geoname_id 999"),
        ("1.0.0.0/24,,999,,0,0,\n", r":2: unknown registered_country_geoname_id 999"),
        ("1.0.0.0/24\n", r":2: expected 7 fields, got '1\.0\.0\.0/24'"),
        ('1.0.0.0/24,"2077456,,,0,0,\n', r":2: malformed CSV record"),
        ('1.0.0.0/24,"20"77456,,,0,0,\n', r":2: malformed CSV record"),
        ("", r"Blocks-IPv4\.csv: no networks in file"),
        ("\n\n", r"Blocks-IPv4\.csv: no networks in file"),
    ],
)
def test_geolite2_bad_rows_name_file_and_line(tmp_path: Path, body: str, problem: str) -> None:
    with pytest.raises(DataFormatError, match=problem):
        read_source(_blocks(tmp_path, body))


def test_geolite2_line_numbers_count_blank_lines_and_multiline_fields(tmp_path: Path) -> None:
    header = "network,geoname_id,note\n"
    body = '1.0.0.0/24,2077456,"two\nlines"\n\n1.0.1.0/24,2077456,x\n1.0.2.1/24,2077456,x\n'
    with pytest.raises(DataFormatError, match=r"Blocks-IPv4\.csv:6: network 1\.0\.2\.1/24"):
        read_source(_blocks(tmp_path, body, header))


def test_geolite2_errors_deep_in_a_big_file_name_the_line(tmp_path: Path) -> None:
    body = "".join(f"{i >> 8}.{i & 255}.0.0/16,2077456,,,0,0,\n" for i in range(1, 20_000))
    path = _blocks(tmp_path, body + "9.9.9.9/8,2077456,,,0,0,\n" + body)
    with pytest.raises(DataFormatError, match=r"Blocks-IPv4\.csv:20001: network 9\.9\.9\.9/8"):
        read_source(path)


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("", r"Blocks-IPv4\.csv: empty file \(expected a header line\)"),
        ("geoname_id,registered_country_geoname_id\n", r"\.csv:1: no 'network' column"),
        ("network,registered_country_geoname_id\n", r"\.csv:1: no 'geoname_id' column"),
        ("1.0.0.0/24,2077456\n", r"\.csv:1: no 'network' column in the header"),
    ],
)
def test_geolite2_bad_headers(tmp_path: Path, header: str, problem: str) -> None:
    with pytest.raises(DataFormatError, match=problem):
        read_source(_blocks(tmp_path, "", header), format="geolite2-csv")


def test_geolite2_header_may_start_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = _blocks(tmp_path, "1.0.0.0/24,2077456,,,0,0,\n", "\ufeff" + _BLOCKS_HEADER)
    assert read_source(path).label_names == ["", "AU"]


@pytest.mark.parametrize(
    ("locations", "problem"),
    [
        ("", r"Locations-en\.csv: empty file"),
        (_LOCATIONS_HEADER, r"Locations-en\.csv: no locations in file"),
        ("geoname_id,country_name\n1,Australia\n", r"en\.csv:1: no 'country_iso_code' column"),
        (_LOCATIONS_HEADER + "2077456,en,OC\n", r"en\.csv:2: expected 7 fields"),
        (_LOCATIONS_HEADER + ",en,OC,Oceania,AU,Australia,0\n", r"en\.csv:2: empty geoname_id"),
        (
            _LOCATIONS + "2077456,en,OC,Oceania,AU,Australia,0\n",
            r"en\.csv:6: geoname_id 2077456 listed twice",
        ),
        (_LOCATIONS_HEADER + '1,en,"OC,Oceania,AU,Australia,0\n', r"en\.csv:2: malformed CSV"),
    ],
)
def test_geolite2_bad_locations_files(tmp_path: Path, locations: str, problem: str) -> None:
    directory = _geolite2(
        tmp_path, v4=_BLOCKS_HEADER + "1.0.0.0/24,1,,,0,0,\n", locations=locations
    )
    with pytest.raises(DataFormatError, match=problem):
        read_source(directory)


def test_geolite2_missing_locations_file(tmp_path: Path) -> None:
    directory = _geolite2(
        tmp_path, v4=_BLOCKS_HEADER + "1.0.0.0/24,2077456,,,0,0,\n", locations=None
    )
    with pytest.raises(
        DataFormatError,
        match=r"Blocks-IPv4\.csv: no GeoLite2-Country-Locations-en\.csv beside it",
    ):
        read_source(directory)
    # A Locations file of another database does not count.
    _write(directory / "GeoLite2-City-Locations-en.csv", _LOCATIONS)
    with pytest.raises(DataFormatError, match=r"no GeoLite2-Country-Locations-en\.csv beside"):
        read_source(directory / "GeoLite2-Country-Blocks-IPv4.csv")


def test_geolite2_other_locales_and_compressed_locations_are_found(tmp_path: Path) -> None:
    directory = _geolite2(
        tmp_path, v4=_BLOCKS_HEADER + "1.0.0.0/24,2077456,,,0,0,\n", locations=None
    )
    _write(directory / "GeoLite2-Country-Locations-de.csv.xz", _LOCATIONS)
    assert read_source(directory).label_names == ["", "AU"]
    # English is preferred when there are several.
    _write(directory / "GeoLite2-Country-Locations-en.csv.gz", _LOCATIONS.replace(",AU,", ",NZ,"))
    assert read_source(directory).label_names == ["", "NZ"]


def test_geolite2_blocks_file_with_an_unusual_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "networks.csv", _BLOCKS_HEADER + "1.0.0.0/24,2077456,,,0,0,\n")
    with pytest.raises(DataFormatError, match=r"networks\.csv: cannot find its Locations file"):
        read_source(path)


def test_geolite2_directory_with_two_databases_is_refused(tmp_path: Path) -> None:
    _geolite2(tmp_path, v4=_BLOCKS_HEADER)
    _geolite2(tmp_path, v4=_BLOCKS_HEADER, prefix="GeoLite2-City")
    with pytest.raises(DataFormatError, match=r"several ipv4 Blocks files \(GeoLite2-City-Block"):
        read_source(tmp_path)


def test_geolite2_directory_with_only_one_family(tmp_path: Path) -> None:
    directory = _geolite2(tmp_path, v6=_BLOCKS_HEADER + "2001:db8::/32,2077456,,,0,0,\n")
    rows = read_source(directory)
    assert rows.v4 == ([], [], [])
    assert rows.v6[2] == [1]


def test_geolite2_progress_covers_every_file(tmp_path: Path) -> None:
    body = "".join(f"{i >> 8}.{i & 255}.0.0/16,2077456,,,0,0,\n" for i in range(1, 65_536))
    v6 = _BLOCKS_HEADER + "2001:db8::/32,2077456,,,0,0,\n"
    directory = _geolite2(tmp_path, v4=_BLOCKS_HEADER + body, v6=v6)
    total = sum(p.stat().st_size for p in directory.iterdir())
    calls: list[tuple[int, int]] = []
    read_source(directory, progress=lambda done, of: calls.append((done, of)))
    assert {of for _, of in calls} == {total}
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert calls[-1] == (total, total)
    assert len(calls) >= total // (1 << 20)


# ---------------------------------------------------------------------------------------
# IP2Location LITE DB1: small files for every edge.


def test_ip2location_ipv4_file(tmp_path: Path) -> None:
    text = (
        '"0","16777215","-","-"\r\n'
        '"16777216","16777471","US","United States of America"\r\n'
        '"16777472","16778239","CN","China"\r\n'
        '"16778240","16779263","KR","Korea (Republic of)"\r\n'
        '"16779264","16781311","BQ","Bonaire, Sint Eustatius and Saba"\r\n'
        f'"16781312","{IPV4_MAX}","-","-"\r\n'
    )
    rows = read_source(_write(tmp_path / "IP2LOCATION-LITE-DB1.CSV", text))
    assert rows.label_names == ["", "US", "CN", "KR", "BQ"]
    assert rows.v4 == (
        [16777216, 16777472, 16778240, 16779264],
        [16777471, 16778239, 16779263, 16781311],
        [1, 2, 3, 4],
    )
    assert rows.notes == {ip2location_csv.NOTE_UNASSIGNED: 2}


def test_ip2location_ipv6_file_puts_mapped_ranges_in_the_ipv4_table(tmp_path: Path) -> None:
    six_to_four = _v6("2002::")
    teredo = _v6("2001::")
    text = _quoted(
        ("0", str(IPV4_MAPPED_PREFIX - 1), "-", "-"),
        (str(IPV4_MAPPED_PREFIX), str(IPV4_MAPPED_PREFIX + 16777215), "-", "-"),
        (str(IPV4_MAPPED_PREFIX + 16777216), str(IPV4_MAPPED_PREFIX + 16777471), "AU", "Australia"),
        (str(_MAPPED_LAST - 255), str(_MAPPED_LAST + 256), "DE", "Germany"),  # straddles the end
        (str(teredo), str(teredo + (1 << 96) - 1), "US", "United States of America"),
        (str(six_to_four), str(six_to_four + (1 << 112) - 1), "JP", "Japan"),
        (str(six_to_four + (1 << 112)), str(IPV6_MAX), "-", "-"),
    )
    rows = read_source(_write(tmp_path / "IP2LOCATION-LITE-DB1.IPV6.CSV", text))
    assert rows.label_names == ["", "AU", "DE", "US", "JP"]
    assert rows.v4 == ([16777216, IPV4_MAX - 255], [16777471, IPV4_MAX], [1, 2])
    # 6to4 and Teredo stay IPv6 rows: lookupd does not translate those addresses to IPv4.
    assert rows.v6 == (
        [_MAPPED_LAST + 1, teredo, six_to_four],
        [_MAPPED_LAST + 256, teredo + (1 << 96) - 1, six_to_four + (1 << 112) - 1],
        [2, 3, 4],
    )
    assert rows.notes == {ip2location_csv.NOTE_UNASSIGNED: 3}


def test_ip2location_family_by_name_or_by_value(tmp_path: Path) -> None:
    small = '"16777216","16777471","AU","Australia"\n'
    by_name = read_source(_write(tmp_path / "db1.ipv6.csv", small), format="ip2location-csv")
    assert by_name.v6 == ([16777216], [16777471], [1])
    by_value = read_source(
        _write(tmp_path / "db1.csv", small + f'"{1 << 100}","{1 << 101}","JP","Japan"\n')
    )
    assert by_value.v6[0] == [16777216, 1 << 100]
    plain = read_source(_write(tmp_path / "db1-v4.csv.gz", small))
    assert plain.v4 == ([16777216], [16777471], [1])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('"1","2"\n', r":1: expected ip_from,ip_to,country_code"),
        ('"1","2","US","United States"\n"1","2,"US"\n', r":2: malformed CSV record"),
        ('"1","2","US\n"3","4","FR","France"\n', r":2: malformed CSV record"),
        ('"1" ,"2","US","x"\n', r":1: malformed CSV record"),
        ('"1","x2","US","x"\n', r":1: not a decimal address: 'x2'"),
        ('"-1","2","US","x"\n', r":1: not a decimal address: '-1'"),
        ('"1","٢","US","x"\n', r":1: not a decimal address: '٢'"),
        (f'"1","{IPV6_MAX + 1}","US","x"\n', r":1: \d+ is outside the IPv6 space"),
        ('"9","2","US","x"\n', r":1: ip_from 9 > ip_to 2"),
        ('"1","2","","x"\n', r":1: malformed country code ''"),
        ('"1","2","U S","x"\n', r":1: malformed country code 'U S'"),
        ("", r"DB1\.CSV: no ranges in file"),
        ('"0","16777215","-","-"\n', r"DB1\.CSV: no assigned ranges in file \(every row is '-'\)"),
    ],
)
def test_ip2location_bad_rows_name_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(DataFormatError, match=problem):
        read_source(_write(tmp_path / "DB1.CSV", text), format="ip2location-csv")


def test_ip2location_progress(tmp_path: Path) -> None:
    text = "".join(f'"{i * 256}","{i * 256 + 255}","AU","Australia"\n' for i in range(80_000))
    path = _write(tmp_path / "IP2LOCATION-LITE-DB1.CSV", text)
    calls: list[tuple[int, int]] = []
    read_source(path, progress=lambda done, of: calls.append((done, of)))
    size = path.stat().st_size
    assert calls[-1] == (size, size)
    assert len(calls) == size // (1 << 20) + 1


# ---------------------------------------------------------------------------------------
# DB-IP lite country CSV (read by location_csv).


def test_dbip_mixed_families_and_zz(tmp_path: Path) -> None:
    text = (
        "0.0.0.0,0.255.255.255,ZZ\n"
        "1.0.0.0,1.0.0.255,AU\n"
        "2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,JP\n"
        "1.0.1.0,1.0.3.255,CN\n"
        "2001:db8::,2001:db8::ffff,ZZ\n"
    )
    rows = read_source(_write(tmp_path / "dbip-country-lite-2026-06.csv", text))
    # ZZ (DB-IP's "reserved/unknown") is kept as what the file says: a label.
    assert rows.label_names == ["", "ZZ", "AU", "JP", "CN"]
    assert rows.v4 == (
        [0, _v4("1.0.0.0"), _v4("1.0.1.0")],
        [_v4("0.255.255.255"), _v4("1.0.0.255"), _v4("1.0.3.255")],
        [1, 2, 4],
    )
    assert rows.v6[2] == [3, 1]
