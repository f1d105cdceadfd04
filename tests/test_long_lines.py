"""Unbounded input lines: every text input is refused past MAX_LINE_BYTES, memory stays flat."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from lookupd.datafiles.formats import read_source
from lookupd.datafiles.formats._csv import csv_batches
from lookupd.datafiles.formats.lines import MAX_LINE_BYTES, LineGuard, LineTooLongError
from lookupd.errors import DataFormatError, quoted

_TIMEOUT_S = 120.0
_MIB = 1 << 20
# Generous: a bounded reader needs a few MiB over the baseline; an unbounded one needs the
# line (200 MiB) several times over.
_RSS_SLACK_KIB = 100 * 1024
_LOCATIONS = (
    "geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,"
    "is_in_european_union\n2077456,en,OC,Oceania,AU,Australia,0\n"
)
_BLOCKS_HEADER = "network,geoname_id,registered_country_geoname_id\n"

# Runs argv[1:] and prints its status, stderr and the peak RSS (KiB) of it alone.
_MEASURE = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdin=sys.stdin, capture_output=True, check=False)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"status": done.returncode, "err": done.stderr.decode(), "peak_kib": peak}))
"""

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is KiB on Linux")


def _measure(cwd: Path, *args: str, stdin: Path | None = None) -> dict[str, object]:
    """Run ``python -m lookupd ARGS`` under a fresh parent; return status, stderr, peak RSS."""
    with open(stdin or os.devnull, "rb") as source:
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, sys.executable, "-m", "lookupd", *args],
            stdin=source,
            capture_output=True,
            cwd=cwd,
            timeout=_TIMEOUT_S,
            check=True,
        )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _write_gzip_bomb(path: Path, head: bytes, line_mib: int, tail: bytes) -> None:
    """Write ``head``, a line of ``line_mib`` MiB of ``a``, then ``tail``, gzipped, streaming."""
    chunk = b"a" * _MIB
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip container
    with path.open("wb") as out:
        out.write(compressor.compress(head))
        for _ in range(line_mib):
            out.write(compressor.compress(chunk))
        out.write(compressor.compress(tail))
        out.write(compressor.flush())


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few hundred KB of gzip holding a 200 MiB second line."""
    path = tmp_path_factory.mktemp("bomb") / "ranges.csv.gz"
    _write_gzip_bomb(path, b"1.0.0.0,1.0.0.255,AU\n", 200, b"\n2.0.0.0,2.0.0.255,FR\n")
    assert path.stat().st_size < 2 * _MIB
    return path


def test_build_refuses_a_gzip_bomb_line_with_bounded_memory(bomb: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.csv"
    small.write_text("1.0.0.0,1.0.0.255,AU\n2.0.0.0,2.0.0.255,FR\n")
    baseline = _measure(tmp_path, "build", str(small), "-o", str(tmp_path / "ok.lkd"), "-q")
    assert baseline["status"] == 0, baseline["err"]

    refused = _measure(tmp_path, "build", str(bomb), "-o", str(tmp_path / "no.lkd"), "-q")

    assert refused["status"] == 2
    err = str(refused["err"])
    assert err.count("\n") == 1
    assert f"ranges.csv.gz:2: a line longer than {MAX_LINE_BYTES:,} bytes" in err
    assert len(err) < 300
    assert not (tmp_path / "no.lkd").exists()
    assert int(str(refused["peak_kib"])) < int(str(baseline["peak_kib"])) + _RSS_SLACK_KIB


def test_open_database_refuses_the_bomb_with_bounded_memory(bomb: Path, tmp_path: Path) -> None:
    """What a server loading ``--db`` does with the file renamed over its data."""
    small = tmp_path / "small.csv"
    small.write_text("1.0.0.0,1.0.0.255,AU\n")
    baseline = _measure(tmp_path, "lookup", "--db", str(small), "1.0.0.1")
    assert baseline["status"] == 0, baseline["err"]

    refused = _measure(tmp_path, "lookup", "--db", str(bomb), "1.0.0.1")

    assert refused["status"] == 2
    assert "ranges.csv.gz:2: a line longer than" in str(refused["err"])
    assert int(str(refused["peak_kib"])) < int(str(baseline["peak_kib"])) + _RSS_SLACK_KIB


def test_lookup_stdin_refuses_a_64_mib_line(tmp_path: Path) -> None:
    stdin = tmp_path / "stdin"
    with stdin.open("wb") as out:
        out.write(b"1.1.1.1\n")
        for _ in range(64):
            out.write(b"a" * _MIB)
    baseline = _measure(tmp_path, "lookup", "-", stdin=None)

    refused = _measure(tmp_path, "lookup", "-", stdin=stdin)

    assert refused["status"] == 2
    err = str(refused["err"])
    assert err == f"lookupd: error: stdin:2: a line longer than {MAX_LINE_BYTES:,} bytes" + (
        " (the longest line lookupd reads)\n"
    )
    assert int(str(refused["peak_kib"])) < int(str(baseline["peak_kib"])) + _RSS_SLACK_KIB


def test_lookup_stdin_line_at_the_limit_is_read(tmp_path: Path) -> None:
    stdin = tmp_path / "stdin"
    stdin.write_bytes(b"a" * MAX_LINE_BYTES + b"\n1.1.1.1\n")
    result = _measure(tmp_path, "lookup", "-", stdin=stdin)
    assert result["status"] == 1  # the long line is an invalid address, reported short
    err = str(result["err"])
    assert err.startswith("lookupd: line 1: not an IP address: 'aaaa")
    assert f"... ({MAX_LINE_BYTES:,} characters)" in err
    assert len(err.splitlines()[0]) < 200


def _long(n: int = MAX_LINE_BYTES + 1) -> str:
    return "x" * n


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("ranges.csv", f"1.0.0.0,1.0.0.255,AU\n{_long()}\n", 2),
        ("ranges.csv", f"1.0.0.0,1.0.0.255,AU\r\n2.0.0.0,2.0.0.1,{_long()}\r\n", 2),
        ("ranges.csv", f"1.0.0.0,1.0.0.255,AU\n2.0.0.0,2.0.0.255,FR\n{_long()}", 3),
        ("dbip-country-lite.csv", f"1.0.0.0,1.0.0.255,AU\n{_long()}\n", 2),
        ("IP2LOCATION-LITE-DB1.CSV", f'"16777216","16777471","AU","A"\n"{_long()}"\n', 2),
        ("G-Blocks-IPv4.csv", f"{_BLOCKS_HEADER}1.0.0.0/24,2077456,\n{_long()}\n", 3),
        ("G-Blocks-IPv4.csv.gz", f"{_BLOCKS_HEADER}{_long()}\n", 2),
        ("ranges.csv.xz", f"1.0.0.0,1.0.0.255,AU\n{_long()}\n", 2),
    ],
)
def test_every_text_format_refuses_a_long_line(
    tmp_path: Path, name: str, content: str, line: int
) -> None:
    path = _write(tmp_path / name, content)
    (tmp_path / "G-Locations-en.csv").write_text(_LOCATIONS)
    with pytest.raises(LineTooLongError, match=rf"{name.replace('.', '.')}:{line}: a line longer"):
        read_source(path)


def test_a_long_first_line_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "ranges.csv", f"{_long()}\n1.0.0.0,1.0.0.255,AU\n")
    with pytest.raises(DataFormatError, match=r"cannot tell the format from its first line 'xx"):
        read_source(path)
    with pytest.raises(LineTooLongError, match=r"ranges\.csv:1: a line longer"):
        read_source(path, format="location-csv")


def test_geolite2_locations_refuses_a_long_line(tmp_path: Path) -> None:
    blocks = _write(tmp_path / "G-Blocks-IPv4.csv", f"{_BLOCKS_HEADER}1.0.0.0/24,2077456,\n")
    _write(tmp_path / "G-Locations-en.csv", _LOCATIONS + _long() + "\n")
    with pytest.raises(LineTooLongError, match=r"G-Locations-en\.csv:3: a line longer"):
        read_source(blocks)


def test_a_line_at_the_limit_is_read_and_reported_short(tmp_path: Path) -> None:
    bad = "1" * (MAX_LINE_BYTES - len(",1.0.0.255,AU"))
    path = _write(tmp_path / "ranges.csv", f"1.0.0.0,1.0.0.255,AU\n{bad},1.0.0.255,AU\n")
    with pytest.raises(DataFormatError) as caught:
        read_source(path, format="location-csv")
    message = str(caught.value)
    assert ":2: " in message
    assert len(message) < 300


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        # An unclosed quote used to swallow the rest of the file into one field.
        ('1.0.0.0,1.0.0.255,AU\n1.0.1.0,"' + ("a" * 1000 + "\n") * 200, "runs on over more"),
        # Short lines, each ending inside a quoted field: one record of the whole file.
        ('1.0.0.0,1.0.0.255,AU\n1.0.1.0,"\n' + ('",' + "," * 500 + '"\n') * 300, "runs on"),
    ],
)
def test_a_record_running_over_many_lines_is_refused(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = _write(tmp_path / "ranges.csv.gz", content)
    with pytest.raises(DataFormatError, match=rf"ranges\.csv\.gz:2: a record {problem}"):
        read_source(path, format="location-csv")


def test_quoted_fields_across_lines_still_read_like_the_csv_module(tmp_path: Path) -> None:
    """Records spanning lines, anywhere, around batch ends too: the csv module's records."""
    rows = []
    for i in range(6000):
        note = f'"line {i}\nand ""more""\n"' if i % 7 == 3 else f"n{i}"
        rows.append(f"{i},{note},x\n" if i % 11 else "\n")
    text = "".join(rows)
    path = _write(tmp_path / "records.csv", text)
    expected = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    expected_lines = []
    start = 1
    for _ in reader:
        expected_lines.append(start)
        start = reader.line_num + 1
    with path.open(newline="", encoding="utf-8") as handle:
        got = [
            (n, r)
            for numbers, batch in csv_batches(handle, path, strict=True)
            for n, r in zip(numbers, batch, strict=True)
        ]
    assert [r for _, r in got] == expected
    assert [n for n, _ in got] == expected_lines


def test_error_messages_quote_at_most_a_hundred_characters(tmp_path: Path) -> None:
    cases = {
        "text.csv": f"1.0.0.0,1.0.0.255,AU\n{'9' * 5000}x,1.0.0.255,AU\n",
        "digits-ipv4.csv": f"0,255,AU\n{'9' * 5000},9{'9' * 5000},AU\n",
        "code.csv": f"1.0.0.0,1.0.0.255,{'Z' * 5000}\n",
        "short.csv": f"1.0.0.0,1.0.0.255,AU\n{'1' * 3000}\n",
    }
    for name, content in cases.items():
        path = _write(tmp_path / name, content)
        with pytest.raises(DataFormatError) as caught:
            read_source(path, format="location-csv")
        assert len(str(caught.value)) < 300, name


def test_quoted_cuts_long_input() -> None:
    assert quoted("abc") == "'abc'"
    assert quoted("a" * 1000) == repr("a" * 100) + "... (1,000 characters)"
    assert quoted(b"\xff" * 200, limit=2) == repr(b"\xff\xff") + "... (200 bytes)"


def test_line_guard_counts_lines_across_reads() -> None:
    data = b"".join(b"%d\n" % i for i in range(10_000)) + b"y" * (MAX_LINE_BYTES + 1)
    guard = LineGuard(io.BufferedReader(io.BytesIO(data), 1000), "memory")
    with pytest.raises(LineTooLongError, match="memory:10001: a line longer"):
        guard.read()


def _write(path: Path, text: str) -> Path:
    data = text.encode()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    elif path.suffix == ".xz":
        import lzma

        data = lzma.compress(data)
    path.write_bytes(data)
    return path
