"""What a text source may start with (a byte order mark), and what is not one (binary data)."""

from __future__ import annotations

import gzip
import io
import lzma
import subprocess
import sys
from pathlib import Path

import pytest

from lookupd.cli import main
from lookupd.datafiles.formats import detect_format, read_source
from lookupd.datafiles.merge import merge_sources
from lookupd.datafiles.open import open_database
from lookupd.datafiles.snapshot import MAGIC
from lookupd.errors import DataFormatError

_BOM = "\ufeff"
_TIMEOUT_S = 120.0
_LOCATIONS = (
    "geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,"
    "is_in_european_union\n2077456,en,OC,Oceania,AU,Australia,0\n"
)
_BLOCKS = "network,geoname_id,registered_country_geoname_id\n1.0.0.0/24,2077456,\n"
# name -> (content, format detected)
_SOURCES = {
    "ranges.csv": ("1.0.0.0,1.0.0.255,AU\n", "location-csv"),
    "decimal-ipv4.csv": ("16777216,16777471,AU\n", "location-csv"),
    "dbip-country-lite.csv": ("1.0.0.0,1.0.0.255,AU\n", "dbip-csv"),
    "IP2LOCATION-LITE-DB1.CSV": ('"16777216","16777471","AU","Australia"\r\n', "ip2location-csv"),
    "G-Blocks-IPv4.csv": (_BLOCKS, "geolite2-csv"),
}


def _write(path: Path, text: str) -> Path:
    data = text.encode()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    elif path.suffix == ".xz":
        data = lzma.compress(data)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("suffix", ["", ".gz", ".xz"])
@pytest.mark.parametrize("name", sorted(_SOURCES))
def test_every_text_format_accepts_a_byte_order_mark(
    tmp_path: Path, name: str, suffix: str
) -> None:
    content, format_name = _SOURCES[name]
    path = _write(tmp_path / (name + suffix), _BOM + content)
    _write(tmp_path / "G-Locations-en.csv", _BOM + _LOCATIONS)
    assert detect_format(path) == format_name
    rows = read_source(path)
    assert rows.label_names == ["", "AU"]
    assert rows.v4[:2] == ([16777216], [16777471])


def test_a_byte_order_mark_is_dropped_at_the_start_only(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "ranges.csv", f"{_BOM}1.0.0.0,1.0.0.255,AU\n{_BOM}2.0.0.0,2.0.0.1,FR\n"
    )
    with pytest.raises(DataFormatError, match=r"ranges\.csv:2: not an IP address"):
        read_source(path)


def test_lookup_stdin_accepts_a_byte_order_mark(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = io.BytesIO(_BOM.encode() + b"1.1.1.1\n8.8.8.8\n")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin))
    assert main(["lookup", "-"]) == 0
    assert capsysbinary.readouterr().out == b"1.1.1.1\tAU\n8.8.8.8\tUS\n"


def _random_bytes(size: int) -> bytes:
    # Fixed "random" junk: binary, not UTF-8, no MaxMind marker.
    return bytes((i * 7919 + 13) % 256 for i in range(size))


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("countries.lkd", _random_bytes(4096), r"not a lookupd snapshot \(wrong magic bytes\)"),
        ("countries.lkd", b"1.0.0.0,1.0.0.255,AU\n", r"not a lookupd snapshot"),
        ("countries.lkd", b"", r"not a lookupd snapshot"),
        ("countries.lkd.gz", gzip.compress(MAGIC + b"\0" * 64), "a compressed lookupd snapshot"),
        ("data.bin", MAGIC[:5], r"not a lookupd snapshot \(truncated: 5 bytes\)"),
        ("data.bin", _random_bytes(4096), r"cannot read: not a text file .*no format lookupd"),
        ("data.csv.gz", gzip.compress(_random_bytes(4096)), r"cannot read: not a text file"),
    ],
)
def test_binary_files_are_named_for_what_they_are_not(
    tmp_path: Path, name: str, content: bytes, problem: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    for reader in (detect_format, open_database, lambda p: merge_sources([p])):
        with pytest.raises(DataFormatError, match=rf"{name.replace('.', '.')}: {problem}"):
            reader(path)


def test_a_snapshot_is_not_a_source_format(tmp_path: Path) -> None:
    source = _write(tmp_path / "ranges.csv", "1.0.0.0,1.0.0.255,AU\n")
    snapshot = tmp_path / "countries.lkd"
    assert main(["build", str(source), "-o", str(snapshot), "-q"]) == 0
    with pytest.raises(DataFormatError, match=r"a lookupd snapshot, not a source file"):
        detect_format(snapshot)
    assert open_database(snapshot).lookup_one("1.0.0.1") == "AU"


def test_not_utf8_text_names_its_line(tmp_path: Path) -> None:
    # Past the first 8 KiB, which detection reads: the reader finds it.
    lines = "".join(f"1.{i >> 8}.{i & 255}.0,1.{i >> 8}.{i & 255}.255,AU\n" for i in range(999))
    path = tmp_path / "ranges.csv"
    path.write_bytes(lines.encode() + b"2.0.0.0,2.0.0.255,\xff\xfe\n")
    with pytest.raises(DataFormatError, match=r"ranges\.csv: cannot read line 1000: not UTF-8"):
        read_source(path)


def test_cli_refuses_a_random_lkd_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "countries.lkd"
    path.write_bytes(_random_bytes(100_000))
    for args in (["lookup", "--db", str(path), "1.1.1.1"], ["build", str(path), "-o", "x.lkd"]):
        done = subprocess.run(
            [sys.executable, "-m", "lookupd", *args],
            capture_output=True,
            cwd=tmp_path,
            timeout=_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 2
        assert done.stderr.decode() == (
            f"lookupd: error: {path}: not a lookupd snapshot (wrong magic bytes)\n"
        )
