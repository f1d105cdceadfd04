"""Reading ip-location-db CSVs: every format variant, and a clear error for every bad row."""

from __future__ import annotations

import gzip
import itertools
import lzma
from pathlib import Path

import pytest

from lookupd.core.constants import IPV4_MAX
from lookupd.datafiles.formats.location_csv import read_location_csv
from lookupd.datafiles.rows import RangeRows
from lookupd.errors import DataFormatError


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    elif path.suffix == ".xz":
        path.write_bytes(lzma.compress(text.encode()))
    else:
        path.write_text(text)
    return path


_DOTTED = "1.0.0.0,1.0.0.255,AU\n1.0.1.0,1.0.3.255,CN\n2001:db8::,2001:db8::ffff,NL\n"


@pytest.mark.parametrize("name", ["ranges.csv", "ranges.csv.gz", "ranges.csv.xz"])
def test_reads_dotted_and_colon_rows(tmp_path: Path, name: str) -> None:
    rows = read_location_csv(_write(tmp_path / name, _DOTTED))
    assert rows.label_names == ["", "AU", "CN", "NL"]
    assert rows.v4 == ([0x01000000, 0x01000100], [0x010000FF, 0x010003FF], [1, 2])
    db8 = 0x20010DB8 << 96
    assert rows.v6 == ([db8], [db8 | 0xFFFF], [3])
    assert len(rows) == 3


def test_reads_numeric_rows(tmp_path: Path) -> None:
    rows = read_location_csv(_write(tmp_path / "x-ipv4-num.csv", "16777216,16777471,AU\n"))
    assert rows.v4 == ([16777216], [16777471], [1])
    v6 = read_location_csv(_write(tmp_path / "x-ipv6-num.csv", f"{1 << 127},{(1 << 128) - 1},ZZ\n"))
    assert v6.v6 == ([1 << 127], [(1 << 128) - 1], [1])


def test_ipv4_mapped_rows_go_to_the_ipv4_table(tmp_path: Path) -> None:
    rows = read_location_csv(_write(tmp_path / "m.csv", "::ffff:1.2.3.0,::ffff:1.2.3.255,DE\n"))
    assert rows.v4 == ([0x01020300], [0x010203FF], [1])
    assert rows.v6 == ([], [], [])


def test_skips_blank_and_comment_lines_and_keeps_line_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", "# comment\n\n1.0.0.0,1.0.0.255,AU\n\n1.0.0.9,1.0.0.1,AU\n")
    with pytest.raises(DataFormatError, match=r"c\.csv:5: start 1\.0\.0\.9 > end 1\.0\.0\.1"):
        read_location_csv(path)


def test_several_files_accumulate(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.csv", "1.0.0.0,1.0.0.255,AU\n")
    second = _write(tmp_path / "b.csv", "2.0.0.0,2.0.0.255,FR\n1.0.0.0,1.0.0.9,AU\n")
    rows = read_location_csv(second, read_location_csv(first))
    assert rows.label_names == ["", "AU", "FR"]
    assert rows.v4[2] == [1, 2, 1]
    v4, _ = rows.tables()
    assert v4.segments()[1] == (0x01000000, 0x010000FF, 1)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1.0.0.0,1.0.0.255\n", r"bad\.csv:1: expected start,end,country_code"),
        (
            "1.0.0.0,1.0.0.255,AU\n1.0.0.256,1.0.1.0,AU\n",
            r"bad\.csv:2: not an IP address: '1\.0\.0\.256'",
        ),
        ("1.0.0.0,nonsense,AU\n", r"bad\.csv:1: not an IP address: 'nonsense'"),
        ("1.0.0.9,1.0.0.1,AU\n", r"bad\.csv:1: start 1\.0\.0\.9 > end 1\.0\.0\.1"),
        ("1.0.0.0,::1,AU\n", r"bad\.csv:1: range mixes IPv4 and IPv6"),
        ("1.0.0.0,1.0.0.255,\n", r"bad\.csv:1: empty country code"),
        ("16777216,16777471,AU\n1,x2,AU\n", r"bad\.csv:2: not a decimal address: 'x2'"),
        (f"0,{IPV4_MAX + 1},AU\n", rf"bad\.csv:1: {IPV4_MAX + 1} is outside the IPv4 space"),
        ("", r"bad\.csv: no ranges in file"),
        ("# only a comment\n\n", r"bad\.csv: no ranges in file"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(DataFormatError, match=problem):
        read_location_csv(_write(tmp_path / "bad.csv", text))


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"missing\.csv: cannot read"):
        read_location_csv(tmp_path / "missing.csv")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataFormatError, match=r"binary\.csv: cannot read"):
        read_location_csv(tmp_path / "binary.csv")
    (tmp_path / "truncated.csv.xz").write_bytes(lzma.compress(_DOTTED.encode())[:20])
    with pytest.raises(DataFormatError, match=r"truncated\.csv\.xz: cannot read"):
        read_location_csv(tmp_path / "truncated.csv.xz")


def test_label_table_is_bounded() -> None:
    rows = RangeRows()
    for i in range(1, 1 << 16):
        assert rows.label(f"L{i}") == i
    assert rows.label("L7") == 7
    with pytest.raises(DataFormatError, match="more than 65535 distinct labels"):
        rows.label("one too many")


def test_ipv6_range_across_the_ipv4_mapped_block_is_split(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "s.csv", "::1:0:0,::ffff:1.2.3.4,NL\n::ffff:255.255.255.0,::2:0:0:0,DE\n"
    )
    rows = read_location_csv(path)
    assert rows.v6 == (
        [0x1_0000_0000, 0x1_0000_0000_0000],
        [0xFFFE_FFFF_FFFF, 0x2_0000_0000_0000],
        [1, 2],
    )
    assert rows.v4 == ([0, 0xFFFFFF00], [0x01020304, IPV4_MAX], [1, 2])


@pytest.mark.parametrize("name", ["big.csv", "big.csv.gz", "big.csv.xz"])
def test_progress_reports_bytes_of_the_file_itself(tmp_path: Path, name: str) -> None:
    text = "".join(
        f"{i >> 8}.{i & 255}.0.0,{i >> 8}.{i & 255}.255.255,AU\n" for i in range(1, 1 << 16)
    )
    path = _write(tmp_path / name, text * 2)
    if name.endswith(".gz"):  # stored, not deflated: several MiB of compressed stream
        path.write_bytes(gzip.compress((text * 2).encode(), compresslevel=0))
    calls: list[tuple[int, int]] = []
    rows = read_location_csv(path, progress=lambda done, total: calls.append((done, total)))
    assert len(rows) == 2 * ((1 << 16) - 1)
    size = path.stat().st_size  # compressed bytes for .gz/.xz
    assert calls[-1] == (size, size)
    assert all(total == size for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    steps = [b - a for (a, _), (b, _) in itertools.pairwise(calls[:-1])]
    assert all(step >= 1 << 20 for step in steps)
    assert len(calls) == size // (1 << 20) + 1


def test_no_progress_callback_reads_the_same(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv.gz", _DOTTED)
    called: list[int] = []
    with_progress = read_location_csv(path, progress=lambda done, _: called.append(done))
    assert read_location_csv(path).v4 == with_progress.v4
    assert called == [path.stat().st_size]


@pytest.mark.parametrize(
    "header",
    ["start,end,country_code", "\ufeffstart,end,country_code", "ip_start,ip_end,country",
     "Start_IP, End_IP ,Country"],
)  # fmt: skip
def test_a_first_row_of_column_names_is_skipped(tmp_path: Path, header: str) -> None:
    path = tmp_path / "corrections.csv"
    path.write_text(f"# corrections\n{header}\n1.0.0.0,1.0.0.255,AU\n2001:db8::,2001:db8::ff,NL\n")
    rows = read_location_csv(path)
    assert rows.label_names == ["", "AU", "NL"]


def test_only_the_first_row_may_be_a_header(tmp_path: Path) -> None:
    path = tmp_path / "twice.csv"
    path.write_text("start,end,country_code\n1.0.0.0,1.0.0.255,AU\nstart,end,country_code\n")
    with pytest.raises(DataFormatError, match=r"twice\.csv:3: .*'start'"):
        read_location_csv(path)


def test_a_header_alone_is_no_ranges(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("start,end,country_code\n")
    with pytest.raises(DataFormatError, match=r"header\.csv: no ranges in file"):
        read_location_csv(path)
