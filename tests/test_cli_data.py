"""``lookupd build``, ``info`` and ``diff``, and ``lookup --db`` on a snapshot."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import lookupd
import lookupd.cli
from lookupd import Database
from lookupd.datafiles.snapshot import MAGIC, load_snapshot

_DATA = Path(__file__).parent / "data" / "geo-whois-asn-country"
_CSV_V4 = _DATA / "geo-whois-asn-country-ipv4.csv.xz"
_CSV_V6 = _DATA / "geo-whois-asn-country-ipv6.csv.xz"
_TIMEOUT_S = 120.0

_SAMPLES = [
    "1.1.1.1",
    "8.8.8.8",
    "0.0.0.0",
    "255.255.255.255",
    "10.0.0.1",
    "209.170.81.40",  # inside the narrower of two rows with the same start
    "2001:4860:4860::8888",
    "2a00:1450::1",
    "::1",
    "::ffff:1.1.1.1",
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
]

# IPv6 rows in 2600::/12, not the documentation prefix 2001:db8::/32: lookups answer that
# RESERVED, whatever a data file says.
_BASE_CSV = (
    "1.0.0.0,1.0.0.255,AU\n"
    "1.0.1.0,1.0.1.255,CN\n"
    "2.0.0.0,2.0.0.255,EU\n"
    "2600:db8::,2600:db8::ffff,US\n"
)
_FIXES_CSV = "1.0.0.128,1.0.0.255,NZ\n2.0.0.0,2.0.0.9,FR\n2600:db8::8000,2600:db8::8000,ZZ\n"


@dataclass(frozen=True, slots=True)
class _Run:
    status: int
    out: str
    err: str


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> _Run:
    try:
        status = lookupd.cli.main(args)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return _Run(status, captured.out, captured.err)


def _one_line_error(run: _Run, *names: object) -> str:
    assert run.status == 2
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("lookupd: error:")
    assert "Traceback" not in run.err
    for name in names:
        assert str(name) in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def embedded() -> Database:
    return lookupd.open()


@pytest.fixture(scope="module")
def real_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vendored CSVs built into a snapshot, once for the module."""
    path = tmp_path_factory.mktemp("build") / "real.lkd"
    assert lookupd.cli.main(["build", str(_CSV_V4), str(_CSV_V6), "-o", str(path), "-q"]) == 0
    return path


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path]:
    base = tmp_path / "base.csv"
    base.write_text(_BASE_CSV)
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(_FIXES_CSV)
    return base, fixes


def _lookup(db: Path | str, addresses: list[str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    run = _main(["lookup", "--db", str(db), *addresses], capsys)
    assert run.status == 0, run.err
    return [line.split("\t")[1] for line in run.out.splitlines()]


# ---------------------------------------------------------------------------------------
# build


def test_build_real_data_agrees_with_embedded(
    real_snapshot: Path, embedded: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = [country or "--" for country in embedded.lookup(_SAMPLES).countries()]
    assert _lookup(real_snapshot, _SAMPLES, capsys) == expected
    snapshot = load_snapshot(real_snapshot)
    assert len(snapshot.v4) == len(embedded.v4)
    assert len(snapshot.v6) == len(embedded.v6)
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 1 << 32, 200_000, dtype=np.uint32)
    db = Database(snapshot.v4, snapshot.v6, snapshot.label_names)
    assert db.lookup(keys).countries() == embedded.lookup(keys).countries()
    header = snapshot.header
    assert [source["name"] for source in header["sources"]] == [str(_CSV_V4), str(_CSV_V6)]
    assert header["counts"]["ipv4"] == {"rows": 334_373, "segments": 341_577}
    assert header["counts"]["ipv6"] == {"rows": 216_295, "segments": 275_357}


def test_lookup_db_snapshot_subprocess(real_snapshot: Path, embedded: Database) -> None:
    env = dict(os.environ)
    root = str(Path(lookupd.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "lookupd", "lookup", "--db", str(real_snapshot), "-"],
        input="\n".join(_SAMPLES).encode(),
        capture_output=True,
        env=env,
        timeout=_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    expected = [country or "--" for country in embedded.lookup(_SAMPLES).countries()]
    answers = [line.split(b"\t")[1].decode() for line in done.stdout.splitlines()]
    assert answers == expected


def test_version_db_snapshot_reports_data_version(
    real_snapshot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _main(["version", "--db", str(real_snapshot)], capsys)
    assert run.status == 0
    version = load_snapshot(real_snapshot).data_version
    assert f"data version id: {version}" in run.out.splitlines()
    assert f"data: {real_snapshot}" in run.out.splitlines()


def test_build_summary(
    tmp_path: Path, small: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, fixes = small
    out = tmp_path / "out.lkd"
    run = _main(["build", str(base), str(fixes), "-o", str(out)], capsys)
    assert run.status == 0, run.err
    assert run.err == ""  # stderr is no terminal here: no progress
    lines = run.out.splitlines()
    version = load_snapshot(out).data_version
    assert lines[0] == f"wrote {out} ({out.stat().st_size:,} bytes)"
    assert f"data version id: {version}" in lines
    assert f"source 1: {base} (location-csv, 3 IPv4 and 1 IPv6 rows)" in lines
    assert f"source 2: {fixes} (location-csv, 2 IPv4 and 1 IPv6 rows)" in lines
    assert "rows: 5 IPv4, 2 IPv6" in lines
    assert "labels: 7" in lines  # AU CN EU FR NZ US ZZ
    non_iso = next(line for line in lines if line.startswith("non-ISO labels: "))
    assert set(non_iso.removeprefix("non-ISO labels: ").split(", ")) == {"EU", "ZZ"}
    assert re.fullmatch(r"time: \d+\.\d\d s", lines[-1])


def test_build_merges_corrections_over_a_base(
    tmp_path: Path, small: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, fixes = small
    out = tmp_path / "merged.lkd"
    assert _main(["build", str(base), str(fixes), "-o", str(out), "-q"], capsys).status == 0
    addresses = [
        "1.0.0.1",  # base only
        "1.0.0.200",  # overridden
        "1.0.1.1",  # not in the fixes: kept
        "2.0.0.5",  # overridden
        "2.0.0.10",  # base again
        "3.0.0.0",  # in neither
        "2600:db8::7fff",
        "2600:db8::8000",  # overridden, a non-ISO label
        "2600:db8::8001",
    ]
    expected = ["AU", "NZ", "CN", "FR", "EU", "--", "US", "ZZ", "US"]
    assert _lookup(out, addresses, capsys) == expected
    # Swapped, the base wins everywhere it has data.
    swapped = tmp_path / "swapped.lkd"
    assert _main(["build", str(fixes), str(base), "-o", str(swapped), "-q"], capsys).status == 0
    swapped_expected = ["AU", "AU", "CN", "EU", "EU", "--", "US", "US", "US"]
    assert _lookup(swapped, addresses, capsys) == swapped_expected


def test_build_corrections_over_the_real_snapshot(
    tmp_path: Path, real_snapshot: Path, embedded: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    fixes = tmp_path / "fixes.csv"
    fixes.write_text("1.1.1.0,1.1.1.255,NZ\n")
    out = tmp_path / "fixed.lkd"
    run = _main(["build", str(real_snapshot), str(fixes), "-o", str(out)], capsys)
    assert run.status == 0, run.err
    assert f"source 1: {real_snapshot} (lookupd-snapshot," in run.out
    answers = _lookup(out, ["1.1.1.1", "1.1.0.255", "1.1.2.0", "8.8.8.8"], capsys)
    expected = [embedded.lookup_one(a) or "--" for a in ("1.1.0.255", "1.1.2.0", "8.8.8.8")]
    assert answers == ["NZ", *expected]


def test_build_quiet_prints_nothing(
    tmp_path: Path,
    small: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    run = _main(["build", str(small[0]), "-o", str(tmp_path / "q.lkd"), "--quiet"], capsys)
    assert run.status == 0
    assert run.out == ""
    assert terminal.getvalue() == ""
    assert (tmp_path / "q.lkd").exists()


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_build_shows_progress_on_a_terminal(
    tmp_path: Path,
    small: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    base, fixes = small
    run = _main(["build", str(base), str(fixes), "-o", str(tmp_path / "p.lkd")], capsys)
    assert run.status == 0
    shown = terminal.getvalue()
    assert "\r" in shown
    assert "reading base.csv (1/2)" in shown
    assert "reading fixes.csv (2/2)" in shown
    assert "writing p.lkd" in shown
    assert shown.endswith("\r")  # the line is erased before the summary
    assert "\n" not in shown


def test_build_error_writes_nothing(
    tmp_path: Path, small: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, _ = small
    out = tmp_path / "out.lkd"
    assert _main(["build", str(base), "-o", str(out), "-q"], capsys).status == 0
    before = out.read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text("1.0.0.0,1.0.0.255,AU\n1.0.1.0,nonsense,CN\n")
    run = _main(["build", str(base), str(bad), "-o", str(out)], capsys)
    line = _one_line_error(run, bad)
    assert ":2:" in line  # the line of the file
    assert run.out == ""
    assert out.read_bytes() == before
    missing = tmp_path / "missing.csv"
    _one_line_error(_main(["build", str(missing), "-o", str(out)], capsys), missing)
    assert out.read_bytes() == before
    fresh = tmp_path / "fresh.lkd"
    _one_line_error(_main(["build", str(bad), "-o", str(fresh)], capsys), bad)
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.csv",
        "base.csv",
        "fixes.csv",
        "out.lkd",
    ]


def test_build_into_a_missing_directory(
    tmp_path: Path, small: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nowhere" / "out.lkd"
    _one_line_error(_main(["build", str(small[0]), "-o", str(out)], capsys), out)


def test_build_leaves_no_temporary_files(
    tmp_path: Path, small: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "data.lkd"
    for _ in range(2):  # create, then replace
        assert _main(["build", str(small[0]), "-o", str(out), "-q"], capsys).status == 0
        assert [p.name for p in out_dir.iterdir()] == ["data.lkd"]


def test_build_format_option(
    tmp_path: Path, small: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, fixes = small
    out = tmp_path / "f.lkd"
    args = ["build", str(base), str(fixes), "-o", str(out), "-q"]
    assert _main([*args, "--format", "location-csv"], capsys).status == 0
    both = ["--format", "location-csv", "--format", "location-csv"]
    assert _main([*args, *both], capsys).status == 0
    three = [*both, "--format", "location-csv"]
    run = _main([*args, *three], capsys)
    assert run.status == 2
    assert "3 --format options for 2 sources" in run.err
    run = _main([*args, "--format", "no-such-format"], capsys)
    assert run.status == 2
    assert "invalid choice" in run.err


def test_build_needs_an_output(
    small: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run = _main(["build", str(small[0])], capsys)
    assert run.status == 2
    assert "-o/--output" in run.err


# ---------------------------------------------------------------------------------------
# info


@pytest.fixture
def small_snapshot(
    tmp_path: Path, small: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> Path:
    out = tmp_path / "small.lkd"
    assert _main(["build", str(small[0]), str(small[1]), "-o", str(out), "-q"], capsys).status == 0
    return out


def _per_label(out: str) -> dict[str, tuple[int, int]]:
    lines = out.splitlines()
    start = lines.index("addresses per label:")
    table = {}
    for line in lines[start + 2 :]:
        label, v4, v6 = line.split()
        table[label] = (int(v4), int(v6))
    return table


def test_info_snapshot(small_snapshot: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _main(["info", str(small_snapshot)], capsys)
    assert run.status == 0, run.err
    lines = run.out.splitlines()
    snapshot = load_snapshot(small_snapshot)
    assert f"file: {small_snapshot}" in lines
    assert "kind: snapshot" in lines
    assert f"data version id: {snapshot.data_version}" in lines
    assert f"built: {snapshot.header['created']}" in lines
    assert any(line.startswith("source 2: ") and "fixes.csv" in line for line in lines)
    assert f"segments: {len(snapshot.v4)} IPv4, {len(snapshot.v6)} IPv6" in lines
    assert "labels: 7" in lines
    assert "non-ISO labels: EU, ZZ" in lines
    assert _per_label(run.out) == {
        "--": ((1 << 32) - 512 - 256, (1 << 128) - 65536),
        "AU": (128, 0),
        "CN": (256, 0),
        "EU": (246, 0),
        "FR": (10, 0),
        "NZ": (128, 0),
        "US": (0, 65535),
        "ZZ": (0, 1),
    }


def test_info_json(small_snapshot: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _main(["info", "--json", str(small_snapshot)], capsys)
    assert run.status == 0
    record = json.loads(run.out)
    assert record["kind"] == "snapshot"
    assert record["labels"] == ["AU", "CN", "EU", "FR", "NZ", "US", "ZZ"]
    assert record["non_iso_labels"] == ["EU", "ZZ"]
    assert record["addresses"]["ipv6"] == {"": (1 << 128) - 65536, "US": 65535, "ZZ": 1}
    assert sum(record["addresses"]["ipv4"].values()) == 1 << 32
    assert record["metadata"]["data_version"] == load_snapshot(small_snapshot).data_version


def test_info_source_file(small: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    base, _ = small
    run = _main(["info", str(base)], capsys)
    assert run.status == 0, run.err
    assert "kind: source (location-csv)" in run.out.splitlines()
    assert f"source 1: {base} (format location-csv, {base.stat().st_size:,} bytes" in run.out
    assert _per_label(run.out)["AU"] == (256, 0)


def test_info_embedded(embedded: Database, capsys: pytest.CaptureFixture[str]) -> None:
    run = _main(["info"], capsys)
    assert run.status == 0
    lines = run.out.splitlines()
    assert f"file: {embedded.info.source}" in lines
    assert "kind: embedded" in lines
    assert f"name: {embedded.info.metadata['name']}" in lines
    table = _per_label(run.out)
    assert sum(v4 for v4, _ in table.values()) == 1 << 32
    assert sum(v6 for _, v6 in table.values()) == 1 << 128
    # 1.1.1.0/24 is AU: AU has at least those addresses.
    assert table["AU"][0] >= 256


# ---------------------------------------------------------------------------------------
# diff


def test_diff_known_tables(
    tmp_path: Path,
    small: tuple[Path, Path],
    small_snapshot: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, _ = small
    run = _main(["diff", str(base), str(small_snapshot)], capsys)
    assert run.status == 1, run.err
    lines = run.out.splitlines()
    assert lines[0].startswith(f"--- {base} (source (location-csv)")
    assert lines[1].startswith(f"+++ {small_snapshot} (snapshot, data version id ")
    assert lines[2:] == [
        "IPv4: 2 ranges changed, 138 addresses",
        "  1.0.0.128-1.0.0.255  AU -> NZ  128",
        "  2.0.0.0-2.0.0.9  EU -> FR  10",
        "IPv4 totals (old -> new: addresses):",
        "  AU -> NZ: 128",
        "  EU -> FR: 10",
        "IPv6: 1 ranges changed, 1 addresses",
        "  2600:db8::8000-2600:db8::8000  US -> ZZ  1",
        "IPv6 totals (old -> new: addresses):",
        "  US -> ZZ: 1",
    ]


def test_diff_summary_limit_and_json(
    small: tuple[Path, Path], small_snapshot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, _ = small
    run = _main(["diff", "--summary", str(base), str(small_snapshot)], capsys)
    assert run.status == 1
    assert "  1.0.0.128-1.0.0.255  AU -> NZ  128" not in run.out
    assert "  AU -> NZ: 128" in run.out
    run = _main(["diff", "--limit", "1", str(base), str(small_snapshot)], capsys)
    assert "  1.0.0.128-1.0.0.255  AU -> NZ  128" in run.out
    assert "2.0.0.0-2.0.0.9" not in run.out
    assert "  ... 1 more ranges" in run.out
    run = _main(["diff", "--json", str(base), str(small_snapshot)], capsys)
    assert run.status == 1
    record = json.loads(run.out)
    assert record["identical"] is False
    assert record["ipv4"]["addresses_changed"] == 138
    assert record["ipv4"]["totals"] == [
        {"old": "AU", "new": "NZ", "addresses": 128},
        {"old": "EU", "new": "FR", "addresses": 10},
    ]
    assert record["ipv6"]["ranges"] == [
        {
            "first": "2600:db8::8000",
            "last": "2600:db8::8000",
            "old": "US",
            "new": "ZZ",
            "addresses": 1,
        }
    ]
    run = _main(["diff", "--limit", "-1", str(base), str(small_snapshot)], capsys)
    assert run.status == 2


def test_diff_gaps_and_edges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old.csv"
    old.write_text("0.0.0.0,0.0.0.255,AA\n::,::ff,AA\n")
    new = tmp_path / "new.csv"
    new.write_text(
        "0.0.0.0,0.0.0.127,AA\n255.255.255.255,255.255.255.255,BB\n"
        "::,::ff,AA\nffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0,ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,CC\n"
    )
    run = _main(["diff", str(old), str(new)], capsys)
    assert run.status == 1
    lines = run.out.splitlines()[2:]
    assert lines == [
        "IPv4: 2 ranges changed, 129 addresses",
        "  0.0.0.128-0.0.0.255  AA -> --  128",
        "  255.255.255.255-255.255.255.255  -- -> BB  1",
        "IPv4 totals (old -> new: addresses):",
        "  AA -> --: 128",
        "  -- -> BB: 1",
        "IPv6: 1 ranges changed, 16 addresses",
        "  ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        "  -- -> CC  16",
        "IPv6 totals (old -> new: addresses):",
        "  -- -> CC: 16",
    ]


def test_diff_identical(real_snapshot: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The snapshot built from the CSVs against the embedded .npz compiled from them.
    from lookupd.datafiles.open import EMBEDDED_DATA

    embedded_path = Path(lookupd.__file__).parent / "data" / EMBEDDED_DATA
    run = _main(["diff", str(embedded_path), str(real_snapshot)], capsys)
    assert run.status == 0, run.out
    assert run.out.splitlines()[2:] == ["IPv4: no changes", "IPv6: no changes"]
    run = _main(["diff", "--json", str(real_snapshot), str(real_snapshot)], capsys)
    assert run.status == 0
    assert json.loads(run.out)["identical"] is True


# ---------------------------------------------------------------------------------------
# bad snapshots


def _variants(snapshot: Path, tmp_path: Path) -> dict[str, Path]:
    data = snapshot.read_bytes()
    truncated = tmp_path / "truncated.lkd"
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = tmp_path / "corrupt.lkd"
    damaged = bytearray(data)
    damaged[-3] ^= 0xFF
    corrupt.write_bytes(bytes(damaged))
    version = tmp_path / "version.lkd"
    newer = bytearray(data)
    struct.pack_into("<I", newer, len(MAGIC), 99)
    version.write_bytes(bytes(newer))
    header = tmp_path / "header.lkd"
    broken = bytearray(data)
    broken[60] ^= 0x01
    header.write_bytes(bytes(broken))
    return {"truncated": truncated, "corrupt": corrupt, "version": version, "header": header}


_EXPECTED_PROBLEMS = {
    "truncated": "truncated snapshot",
    "corrupt": "payload checksum mismatch",
    "version": "unsupported snapshot format version 99",
    "header": "header checksum mismatch",
}


@pytest.mark.parametrize("kind", sorted(_EXPECTED_PROBLEMS))
@pytest.mark.parametrize("command", ["lookup", "info", "diff-old", "diff-new", "build", "version"])
def test_bad_snapshots_exit_2_with_one_line(
    tmp_path: Path,
    small_snapshot: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    command: str,
) -> None:
    bad = _variants(small_snapshot, tmp_path)[kind]
    args = {
        "lookup": ["lookup", "--db", str(bad), "1.1.1.1"],
        "version": ["version", "--db", str(bad)],
        "info": ["info", str(bad)],
        "diff-old": ["diff", str(bad), str(small_snapshot)],
        "diff-new": ["diff", str(small_snapshot), str(bad)],
        "build": ["build", str(bad), "-o", str(tmp_path / "out.lkd")],
    }[command]
    run = _main(args, capsys)
    line = _one_line_error(run, bad)
    assert _EXPECTED_PROBLEMS[kind] in line
    assert run.out == ""
    assert not (tmp_path / "out.lkd").exists()
