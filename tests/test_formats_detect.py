"""Format detection: every format from its content or name, compressed or not; clear errors."""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

import pytest

from lookupd.datafiles.formats import FORMATS, detect_format, read_source
from lookupd.errors import DataFormatError

_BLOCKS = (
    "network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,"
    "is_anonymous_proxy,is_satellite_provider,is_anycast\n1.0.0.0/24,2077456,2077456,,0,0,\n"
)
_LOCATIONS = (
    "geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,"
    "is_in_european_union\n2077456,en,OC,Oceania,AU,Australia,0\n"
)
_IP2LOCATION = '"0","16777215","-","-"\r\n"16777216","16777471","AU","Australia"\r\n'


def _write(path: Path, text: str | bytes) -> Path:
    data = text.encode() if isinstance(text, str) else text
    if path.suffix == ".gz":
        data = gzip.compress(data)
    elif path.suffix == ".xz":
        data = lzma.compress(data)
    path.write_bytes(data)
    return path


# (file name, content, expected format)
_BY_CONTENT = [
    ("ranges.csv", "1.0.0.0,1.0.0.255,AU\n", "location-csv"),
    ("ranges.csv", "# from ip-location-db\n\n2001:db8::,2001:db8::ff,NL\n", "location-csv"),
    ("geo-whois-asn-country-ipv4-num.csv", "16777216,16777471,AU\n", "location-csv"),
    ("ranges.csv", "::ffff:1.0.0.0,::ffff:1.0.0.255,AU\n", "location-csv"),
    ("dbip-country-lite-2026-06.csv", "1.0.0.0,1.0.0.255,AU\n::,::ff,ZZ\n", "dbip-csv"),
    ("IP2LOCATION-LITE-DB1.CSV", _IP2LOCATION, "ip2location-csv"),
    ("IP2LOCATION-LITE-DB1.IPV6.CSV", '"0","281470681743359","-","-"\n', "ip2location-csv"),
    ("db1.csv", "16777216,16777471,AU,Australia\n", "ip2location-csv"),  # unquoted, 4 fields
    ("GeoLite2-Country-Blocks-IPv4.csv", _BLOCKS, "geolite2-csv"),
    ("GeoIP2-City-Blocks-IPv6.csv", "network,geoname_id\n::/0,1\n", "geolite2-csv"),
    ("networks.csv", _BLOCKS, "geolite2-csv"),  # by its header
    ("networks.csv", "\ufeff" + _BLOCKS, "geolite2-csv"),
    # A header row of column names (a corrections file written by hand, DB-IP's columns).
    ("corrections.csv", "start,end,country_code\n1.0.0.0,1.0.0.255,AU\n", "location-csv"),
    ("corrections.csv", "\ufeffStart, End ,Country\n1.0.0.0,1.0.0.255,AU\n", "location-csv"),
    ("dbip-country.csv", "ip_start,ip_end,country\n1.0.0.0,1.0.0.255,AU\n", "dbip-csv"),
]


@pytest.mark.parametrize("suffix", ["", ".gz", ".xz"])
@pytest.mark.parametrize(("name", "text", "expected"), _BY_CONTENT)
def test_detects_csv_formats(
    tmp_path: Path, name: str, text: str, expected: str, suffix: str
) -> None:
    assert detect_format(_write(tmp_path / f"{name}{suffix}", text)) == expected


def test_detects_mmdb_by_name_or_metadata_marker(tmp_path: Path) -> None:
    assert detect_format(_write(tmp_path / "x.mmdb", b"anything")) == "mmdb"
    assert detect_format(_write(tmp_path / "x.mmdb.xz", b"anything")) == "mmdb"
    tree = bytes(range(256)) * 10 + b"\xab\xcd\xefMaxMind.com" + b"\xe0metadata"
    assert detect_format(_write(tmp_path / "country.dat", tree)) == "mmdb"


def test_detects_a_geolite2_directory(tmp_path: Path) -> None:
    _write(tmp_path / "GeoLite2-Country-Blocks-IPv4.csv", _BLOCKS)
    _write(tmp_path / "GeoLite2-Country-Locations-en.csv", _LOCATIONS)
    assert detect_format(tmp_path) == "geolite2-csv"
    assert read_source(tmp_path).label_names == ["", "AU"]
    compressed = tmp_path / "zipped"
    compressed.mkdir()
    _write(compressed / "GeoLite2-Country-Blocks-IPv6.csv.gz", _BLOCKS)
    assert detect_format(compressed) == "geolite2-csv"


def test_a_directory_without_blocks_files(tmp_path: Path) -> None:
    _write(tmp_path / "GeoLite2-Country-Locations-en.csv", _LOCATIONS)
    with pytest.raises(DataFormatError, match=r"a directory, but no \*-Blocks-IPv4\.csv"):
        detect_format(tmp_path)


@pytest.mark.parametrize(
    "name", ["GeoLite2-Country-Locations-en.csv", "GeoIP2-City-Locations-de.csv.gz", "loc.csv"]
)
def test_a_locations_file_says_to_pass_the_blocks_files(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, _LOCATIONS)
    with pytest.raises(DataFormatError, match=r"a GeoLite2 Locations file; pass the \*-Blocks"):
        detect_format(path)
    with pytest.raises(DataFormatError, match="Locations file"):
        read_source(path)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("notes.txt", "hello world\n", r"cannot tell the format from its first line 'hello"),
        ("three.csv", "a,b,c\n", r"cannot tell the format from its first line 'a,b,c'"),
        ("half.csv", "start,stop,country_code\n1.0.0.0,1.0.0.255,AU\n", "cannot tell"),
        ("two.csv", "1.0.0.0,1.0.0.255\n", r"first line '1\.0\.0\.0,1\.0\.0\.255'; pass --format"),
        ("empty.csv", "", r"empty\.csv: empty file"),
        ("blank.csv", "\n\n# only comments\n", r"blank\.csv: empty file"),
        ("binary.csv", b"\xff\xfe\x00\x01garbage", r"binary\.csv: cannot read"),
        ("nul.csv", b"1.0.0.0\x00,1.0.0.255,AU\n", r"nul\.csv: cannot tell"),
        ("broken.csv.xz", lzma.compress(b"1.0.0.0,1.0.0.255,AU\n")[:20], "cannot read"),
        ("notgzip.csv.gz", b"plain text, not gzip\n", r"notgzip\.csv\.gz: cannot read"),
    ],
)
def test_unknown_content_is_a_clear_error(
    tmp_path: Path, name: str, content: str | bytes, problem: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(DataFormatError, match=problem):
        detect_format(path)


def test_a_long_binary_file_is_not_read_whole(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.bin", b"x" * (8 << 20))  # no line break anywhere
    with pytest.raises(DataFormatError, match=r"cannot tell the format from its first line 'xxx"):
        detect_format(path)


def test_a_long_comment_block_is_not_read_whole(tmp_path: Path) -> None:
    path = _write(tmp_path / "comments.csv", "# note\n" * 5000 + "1.0.0.0,1.0.0.255,AU\n")
    with pytest.raises(DataFormatError, match="only blank or comment lines in its first 1000"):
        detect_format(path)
    assert read_source(path, format="location-csv").label_names == ["", "AU"]


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"missing\.csv: no such file"):
        detect_format(tmp_path / "missing.csv")


def test_format_overrides_detection(tmp_path: Path) -> None:
    # Three unquoted decimal fields: detected as ip-location-db, where '-' would be a label.
    path = _write(tmp_path / "db1.csv", "0,16777215,-\n16777216,16777471,AU\n")
    assert detect_format(path) == "location-csv"
    assert read_source(path).label_names == ["", "-", "AU"]
    rows = read_source(path, format="ip2location-csv")
    assert rows.label_names == ["", "AU"]
    assert rows.v4 == ([16777216], [16777471], [1])
    # A name detection would refuse is fine when the format is given.
    odd = _write(tmp_path / "export.txt", "start,end\n")
    with pytest.raises(DataFormatError, match="cannot tell"):
        read_source(odd)
    _write(odd, "1.0.0.0,1.0.0.255,AU\n")
    assert read_source(odd, format="dbip-csv").label_names == ["", "AU"]


def test_unknown_format_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.csv", "1.0.0.0,1.0.0.255,AU\n")
    with pytest.raises(DataFormatError, match=r"unknown format 'csv'; known: location-csv, "):
        read_source(path, format="csv")


def test_every_format_has_a_reader() -> None:
    assert set(FORMATS) == {"location-csv", "dbip-csv", "mmdb", "geolite2-csv", "ip2location-csv"}


def test_the_whole_unpacked_download_builds_like_its_directory(tmp_path: Path) -> None:
    """``lookupd build GeoLite2-Country-CSV_*/*.csv``: the Locations files come along with
    the Blocks files and are read with them, not as sources of their own."""
    from lookupd.datafiles.merge import merge_sources

    download = tmp_path / "GeoLite2-Country-CSV_20261201"
    download.mkdir()
    _write(download / "GeoLite2-Country-Blocks-IPv4.csv", _BLOCKS)
    _write(
        download / "GeoLite2-Country-Blocks-IPv6.csv", "network,geoname_id\n2001:db8::/32,2077456\n"
    )
    _write(download / "GeoLite2-Country-Locations-en.csv", _LOCATIONS)
    _write(download / "GeoLite2-Country-Locations-de.csv", _LOCATIONS)
    files = sorted(download.glob("*.csv"))
    merged = merge_sources(files)
    by_directory = merge_sources([download])
    assert merged.tables.label_names == by_directory.tables.label_names == ("", "AU")
    assert [Path(s.name).name for s in merged.sources] == [
        "GeoLite2-Country-Blocks-IPv4.csv",
        "GeoLite2-Country-Blocks-IPv6.csv",
    ]
    # Alone, a Locations file is still an error saying what to pass.
    with pytest.raises(DataFormatError, match="Locations file"):
        merge_sources([download / "GeoLite2-Country-Locations-en.csv"])
