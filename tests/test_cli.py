"""The ``lookupd`` command line, in-process and as a real ``python -m lookupd`` process."""

from __future__ import annotations

import argparse
import dataclasses
import io
import ipaddress
import json
import logging
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import lookupd
import lookupd.cli
import lookupd.cli.serve
from lookupd import Database
from lookupd.cli import main
from lookupd.cli.settings import SERVE_SETTINGS, read_settings, setting_for
from lookupd.errors import LookupdError

_TIMEOUT_S = 60.0
# Waiting for a streamed answer: generous for a cold start, short enough to fail fast.
_STREAM_TIMEOUT_S = 20.0
_MIB = 1 << 20
_SEED = 7301

_ONE_V4 = "1.1.1.1"
_ONE_V6 = "2001:4860:4860::8888"
# Valid addresses the embedded data has no country for.
_NOT_FOUND = ("0.0.0.1", "::1")

_INVALID_LINES = [b"not-an-ip", b"1.2.3.256", b"::g", b"1.2.3", b"\xff\xfe", b"1.1.1.1 x", b"-"]
_BLANK_LINES = [b"", b"   ", b"\t", b" \t "]


@pytest.fixture(scope="module")
def db() -> Database:
    """The embedded data, which the CLI uses without ``--db``."""
    return lookupd.open()


def _code(db: Database, address: str | bytes) -> bytes:
    country = db.lookup_one(address)
    return b"--" if country is None else country.encode()


# ---------------------------------------------------------------------------------------
# Running the CLI


@dataclass(frozen=True, slots=True)
class _Run:
    """What one CLI run produced."""

    status: int
    """Exit status."""
    out: bytes
    """Everything written to stdout."""
    err: bytes
    """Everything written to stderr."""


def _main(
    args: list[str],
    capsysbinary: pytest.CaptureFixture[bytes],
) -> _Run:
    """Run ``lookupd.cli.main`` in-process; a ``SystemExit`` becomes the status."""
    try:
        status = lookupd.cli.main(args)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    captured = capsysbinary.readouterr()
    return _Run(status, captured.out, captured.err)


class _TrickleReader(io.BytesIO):
    """A stdin whose every read returns at most ``step`` bytes, like a slow pipe."""

    def __init__(self, data: bytes, step: int) -> None:
        super().__init__(data)
        self._step = step

    def _limit(self, size: int | None) -> int:
        return self._step if size is None or size < 0 else min(size, self._step)

    def read1(self, size: int | None = -1, /) -> bytes:
        return super().read1(self._limit(size))

    def read(self, size: int | None = -1, /) -> bytes:
        return super().read(self._limit(size))


def _set_stdin(monkeypatch: pytest.MonkeyPatch, buffer: io.BytesIO) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(buffer))


@dataclass(frozen=True, slots=True)
class _Child:
    """How to start ``python -m lookupd`` so that it imports the lookupd under test."""

    env: dict[str, str]
    """Environment of the child."""
    cwd: Path
    """An empty directory, so the current directory never shadows the lookupd under test."""

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "lookupd", *args]

    def run(self, *args: str, stdin: bytes | None = None) -> _Run:
        done = subprocess.run(
            self.command(*args),
            input=stdin,
            capture_output=True,
            env=self.env,
            cwd=self.cwd,
            timeout=_TIMEOUT_S,
            check=False,
        )
        return _Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def child(tmp_path_factory: pytest.TempPathFactory) -> _Child:
    """Start children in an empty directory; add lookupd's root to PYTHONPATH only if needed.

    An installed lookupd (CI) is used as is; a source-tree run gets the tree on the path.
    """
    cwd = tmp_path_factory.mktemp("cli-cwd")
    # Buffered stdout, as in a user's shell: the streaming test must see the CLI flush.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    here = Path(lookupd.__file__).resolve()
    probe = subprocess.run(
        [sys.executable, "-c", "import lookupd; print(lookupd.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=_TIMEOUT_S,
        check=False,
    )
    if probe.returncode != 0 or Path(probe.stdout.strip()).resolve() != here:
        root = str(here.parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return _Child(env, cwd)


def _read_lines(fd: int, n_lines: int, timeout_s: float = _STREAM_TIMEOUT_S) -> bytes:
    """Read from a pipe until it holds ``n_lines`` newlines or ends; fail after a timeout."""
    deadline = time.monotonic() + timeout_s
    data = b""
    while data.count(b"\n") < n_lines:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"timed out waiting for {n_lines} lines; got {data!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data


# ---------------------------------------------------------------------------------------
# lookup IP...


def test_lookup_arguments_readme_example(child: _Child, db: Database) -> None:
    # The README's example, run the way it says; its answers checked against the data.
    assert db.lookup_one(_ONE_V4) == "AU"
    assert db.lookup_one(_ONE_V6) == "US"
    assert db.lookup_one("10.0.0.1") is None
    run = child.run("lookup", _ONE_V4, _ONE_V6, "10.0.0.1")
    assert run.err == b""
    assert run.out == b"1.1.1.1\tAU\n2001:4860:4860::8888\tUS\n10.0.0.1\t--\n"
    assert run.status == 0


def test_lookup_arguments_in_process(
    capsysbinary: pytest.CaptureFixture[bytes], db: Database
) -> None:
    addresses = [_ONE_V4, _ONE_V6, "8.8.8.8", "::ffff:1.1.1.1", "2a00:1450:4001::1"]
    run = _main(["lookup", *addresses], capsysbinary)
    expected = b"".join(a.encode() + b"\t" + _code(db, a) + b"\n" for a in addresses)
    assert run.out == expected
    assert run.err == b""
    assert run.status == 0


def test_lookup_not_found_prints_dashes(
    capsysbinary: pytest.CaptureFixture[bytes], db: Database
) -> None:
    for address in _NOT_FOUND:
        assert db.lookup_one(address) is None
    run = _main(["lookup", _NOT_FOUND[0], _ONE_V4, _NOT_FOUND[1]], capsysbinary)
    assert run.out == b"0.0.0.1\t--\n1.1.1.1\tAU\n::1\t--\n"
    assert run.err == b""
    assert run.status == 0


def test_lookup_invalid_argument(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    run = _main(["lookup", _ONE_V4, "bogus", _ONE_V6, "1.2.3.256"], capsysbinary)
    assert run.out == b"1.1.1.1\tAU\n2001:4860:4860::8888\tUS\n"
    err = run.err.decode()
    assert re.search(r"argument 2\b.*'bogus'", err)
    assert re.search(r"argument 4\b.*'1\.2\.3\.256'", err)
    assert "argument 1" not in err
    assert "argument 3" not in err
    assert "Traceback" not in err
    assert run.status == 1


def test_lookup_invalid_argument_subprocess(child: _Child) -> None:
    run = child.run("lookup", "bogus", _ONE_V4)
    assert run.out == b"1.1.1.1\tAU\n"
    assert re.search(rb"argument 1\b.*'bogus'", run.err)
    assert b"Traceback" not in run.err
    assert run.status == 1


def test_lookup_without_addresses_is_a_usage_error(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    run = _main(["lookup"], capsysbinary)
    assert run.status == 2
    assert run.out == b""
    assert b"usage" in run.err


# ---------------------------------------------------------------------------------------
# lookup - (stdin)


@dataclass(slots=True)
class _StdinInput:
    """Generated stdin and what the CLI must make of it."""

    chunks: list[bytes] = field(default_factory=list)
    """The input, line by line, each with its ending."""
    size: int = 0
    """Bytes so far."""
    valid: list[bytes] = field(default_factory=list)
    """Valid addresses as the CLI prints them (stripped), in order."""
    invalid: list[tuple[int, bytes]] = field(default_factory=list)
    """(line number, stripped text) of each non-blank invalid line."""
    lines: int = 0
    """Lines so far."""

    def add(self, content: bytes, ending: bytes = b"\n", *, kind: str) -> None:
        self.lines += 1
        if kind == "valid":
            self.valid.append(content.strip())
        elif kind == "invalid":
            self.invalid.append((self.lines, content.strip()))
        line = content + ending
        self.chunks.append(line)
        self.size += len(line)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


def _v4_text(value: int) -> bytes:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}".encode()


def _random_lines(rng: np.random.Generator, n: int) -> Iterator[tuple[bytes, bytes, str]]:
    """Yield (content, ending, kind) for ``n`` lines: mostly IPv4 and IPv6 (some
    IPv4-mapped, some padded with whitespace), ~1% invalid, ~1% blank, ~10% CRLF."""
    kinds = rng.random(n)
    families = rng.random(n)
    crlf = rng.random(n) < 0.1
    v4 = rng.integers(0, 1 << 32, n, dtype=np.uint64).tolist()
    highs = rng.integers(0x2000 << 48, 0x3000 << 48, n, dtype=np.uint64).tolist()
    lows = rng.integers(0, 1 << 64, n, dtype=np.uint64).tolist()
    picks = rng.integers(0, 1 << 16, n).tolist()
    for i in range(n):
        ending = b"\r\n" if crlf[i] else b"\n"
        if kinds[i] < 0.01:
            yield _INVALID_LINES[picks[i] % len(_INVALID_LINES)], ending, "invalid"
            continue
        if kinds[i] < 0.02:
            yield _BLANK_LINES[picks[i] % len(_BLANK_LINES)], ending, "blank"
            continue
        if families[i] < 0.6:
            address = _v4_text(v4[i])
        elif families[i] < 0.95:
            address = str(ipaddress.IPv6Address((highs[i] << 64) | lows[i])).encode()
        else:
            address = b"::ffff:" + _v4_text(v4[i])
        if kinds[i] < 0.03:
            address = b"  " + address + b"\t"
        yield address, ending, "valid"


def _fill_to(stdin: _StdinInput, offset: int) -> None:
    """Add valid (space-padded) or blank lines so that the next line starts at ``offset``."""
    gap = offset - stdin.size
    assert gap >= 0
    while gap > 0:
        if gap >= 9:
            # "1.1.1.1" padded with leading spaces to fill the gap exactly.
            stdin.add(b" " * (gap - 8) + b"1.1.1.1", kind="valid")
        else:
            stdin.add(b"", kind="blank")
        gap = offset - stdin.size


def _build_stdin(n_lines: int, seed: int, boundaries: list[tuple[int, str]]) -> _StdinInput:
    """Random lines, with invalid lines placed exactly at the given byte offsets.

    ``"at"``: an invalid line starts exactly at the offset (the line before ends on the
    byte before it). ``"straddle"``: an invalid line runs across the offset.
    """
    rng = np.random.default_rng(seed)
    stdin = _StdinInput()
    pending = sorted(boundaries)
    lines = _random_lines(rng, n_lines)
    while True:
        if pending and stdin.size + 64 > pending[0][0]:
            offset, mode = pending.pop(0)
            if mode == "at":
                _fill_to(stdin, offset - 1)
                stdin.add(b"", kind="blank")  # its newline is the byte before the offset
                stdin.add(b"bogus-at-boundary", kind="invalid")
                stdin.add(b"also-bogus\r", b"\n", kind="invalid")
                stdin.add(b"8.8.8.8", kind="valid")
            else:
                _fill_to(stdin, offset - 5)
                stdin.add(b"straddling-bogus", kind="invalid")
                stdin.add(b"9.9.9.9", kind="valid")
            continue
        line = next(lines, None)
        if line is None:
            if not pending:
                return stdin
            lines = _random_lines(rng, 1000)
            continue
        content, ending, kind = line
        stdin.add(content, ending, kind=kind)


@pytest.fixture(scope="module")
def big_stdin() -> _StdinInput:
    """About 200k lines (> 3 MiB), invalid lines placed at the 1 MiB read boundaries."""
    stdin = _build_stdin(200_000, _SEED, [(_MIB, "at"), (2 * _MIB, "straddle"), (3 * _MIB, "at")])
    data = stdin.data
    assert stdin.size > 3 * _MIB
    for offset in (_MIB, 3 * _MIB):
        assert data[offset - 1 : offset + 17] == b"\nbogus-at-boundary"
    assert data[2 * _MIB - 5 : 2 * _MIB + 12] == b"straddling-bogus\n"
    return stdin


def _expected_out(db: Database, stdin: _StdinInput) -> bytes:
    result = db.lookup(stdin.valid)
    assert not result.invalid.any(), "the generator made an invalid 'valid' line"
    codes = [b"--" if c is None else c.encode() for c in result.countries()]
    return b"".join(a + b"\t" + c + b"\n" for a, c in zip(stdin.valid, codes, strict=True))


def _check_stdin_run(run: _Run, db: Database, stdin: _StdinInput) -> None:
    assert run.out == _expected_out(db, stdin)
    reported = [int(m.group(1)) for m in re.finditer(rb"line (\d+): not an IP address", run.err)]
    assert reported == [n for n, _ in stdin.invalid]
    lines = run.err.splitlines()
    for (number, text), message in zip(stdin.invalid, lines, strict=False):
        assert f"line {number}:".encode() in message
        shown = text.decode("utf-8", "backslashreplace")
        assert repr(shown).encode() in message
    assert lines[-1].startswith(b"lookupd:")
    assert str(len(stdin.invalid)).encode() in lines[-1]
    assert b"Traceback" not in run.err
    assert run.status == (1 if stdin.invalid else 0)


def test_stdin_big_in_process(
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
    db: Database,
    big_stdin: _StdinInput,
) -> None:
    # A BytesIO answers every read with exactly the size asked for, so the CLI's blocks
    # end exactly on the 1 MiB boundaries the generator put invalid lines around.
    _set_stdin(monkeypatch, io.BytesIO(big_stdin.data))
    run = _main(["lookup", "-"], capsysbinary)
    _check_stdin_run(run, db, big_stdin)


@pytest.mark.parametrize("step", [1, 7, 4093])
def test_stdin_trickle_in_process(
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
    db: Database,
    step: int,
) -> None:
    stdin = _build_stdin(3000 if step > 1 else 300, _SEED + step, [])
    stdin.add(b"trailing-bogus", b"", kind="invalid")
    _set_stdin(monkeypatch, _TrickleReader(stdin.data, step))
    run = _main(["lookup", "-"], capsysbinary)
    _check_stdin_run(run, db, stdin)


def test_stdin_big_subprocess(child: _Child, db: Database, big_stdin: _StdinInput) -> None:
    run = child.run("lookup", "-", stdin=big_stdin.data)
    _check_stdin_run(run, db, big_stdin)


@pytest.mark.parametrize(
    ("data", "out"),
    [
        (b"", b""),
        (b"\n\n \r\n", b""),
        (b"1.1.1.1", b"1.1.1.1\tAU\n"),
        (b"1.1.1.1\r\n", b"1.1.1.1\tAU\n"),
        (b"\r\n\r\n  1.1.1.1  \r\n\r\n0.0.0.1", b"1.1.1.1\tAU\n0.0.0.1\t--\n"),
    ],
    ids=["empty", "only-blank", "no-final-newline", "crlf", "blank-and-padded"],
)
def test_stdin_small_cases(
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
    data: bytes,
    out: bytes,
) -> None:
    _set_stdin(monkeypatch, io.BytesIO(data))
    run = _main(["lookup", "-"], capsysbinary)
    assert run.out == out
    assert run.err == b""
    assert run.status == 0


def test_stdin_invalid_last_line_without_newline(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    _set_stdin(monkeypatch, io.BytesIO(b"1.1.1.1\n\n\r\nbad one"))
    run = _main(["lookup", "-"], capsysbinary)
    assert run.out == b"1.1.1.1\tAU\n"
    assert re.search(rb"line 4: not an IP address: 'bad one'", run.err)
    assert run.status == 1


def test_stdin_line_across_a_read(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was a 1.5 MiB line (longer than a read); lines that long are now refused (see
    # test_long_lines.py), so a long invalid line straddles the first read's end instead.
    padding = b"1.1.1.1\n" * ((_MIB - 1000) // 8)
    long_line = b"a" * 40_000
    data = b"1.1.1.1\n" + padding + long_line + b"\n\n0.0.0.1\nbad\n"
    _set_stdin(monkeypatch, io.BytesIO(data))
    run = _main(["lookup", "-"], capsysbinary)
    assert run.out == b"1.1.1.1\tAU\n" * (1 + len(padding) // 8) + b"0.0.0.1\t--\n"
    reported = re.findall(rb"line (\d+): not an IP address", run.err)
    first = 2 + len(padding) // 8
    assert reported == [str(first).encode(), str(first + 3).encode()]
    assert run.status == 1


@pytest.mark.skipif(sys.platform == "win32", reason="select() on pipes is POSIX")
def test_stdin_is_streamed(child: _Child, db: Database) -> None:
    """Answers come out before stdin is closed."""
    with subprocess.Popen(
        child.command("lookup", "-"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child.env,
        cwd=child.cwd,
    ) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            proc.stdin.write(f"{_ONE_V4}\n{_ONE_V6}\n".encode())
            proc.stdin.flush()
            first = _read_lines(proc.stdout.fileno(), 2)
            assert first == b"1.1.1.1\tAU\n2001:4860:4860::8888\tUS\n"
            assert proc.poll() is None, "the CLI exited before its stdin was closed"

            proc.stdin.write(b"bogus\n0.0.0.1\n")
            proc.stdin.flush()
            second = _read_lines(proc.stdout.fileno(), 1)
            assert second == b"0.0.0.1\t" + _code(db, "0.0.0.1") + b"\n"

            proc.stdin.write(b"8.8.8.8")
            proc.stdin.close()
            rest = _read_lines(proc.stdout.fileno(), 1)
            assert rest == b"8.8.8.8\t" + _code(db, "8.8.8.8") + b"\n"
            assert proc.wait(timeout=_TIMEOUT_S) == 1
            assert proc.stderr is not None
            err = proc.stderr.read()
            assert re.search(rb"line 3: not an IP address: 'bogus'", err)
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGPIPE/EPIPE semantics are POSIX")
@pytest.mark.parametrize("mode", ["stdin", "arguments"])
def test_broken_pipe_is_quiet(child: _Child, tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(_SEED)
    addresses = [str(ipaddress.IPv4Address(int(x))) for x in rng.integers(0, 1 << 32, 20_000)]
    # Far more output than a pipe buffers (64 KiB), so the CLI is still writing.
    source = tmp_path / "addresses.txt"
    source.write_text("\n".join(addresses * (10 if mode == "stdin" else 1)) + "\n")
    args = ["lookup", "-"] if mode == "stdin" else ["lookup", *addresses]
    with (
        source.open("rb") as stdin,
        subprocess.Popen(
            child.command(*args),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child.env,
            cwd=child.cwd,
        ) as proc,
    ):
        assert proc.stdout is not None
        try:
            head = _read_lines(proc.stdout.fileno(), 1)
            assert head.startswith(addresses[0].encode() + b"\t")
            proc.stdout.close()  # like `| head -1`
            _, err = proc.communicate(timeout=_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert b"Traceback" not in err
    assert b"Exception ignored" not in err
    assert b"BrokenPipeError" not in err
    assert proc.returncode == 0


# ---------------------------------------------------------------------------------------
# --db


def _write_csv(path: Path) -> None:
    # 2600:db8::, not the documentation prefix 2001:db8::, which lookups answer RESERVED.
    path.write_text("1.0.0.0,1.0.0.255,AA\n1.0.1.0,1.0.1.255,BB\n2600:db8::,2600:db8::ffff,CC\n")


def test_db_csv(capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path) -> None:
    path = tmp_path / "ranges.csv"
    _write_csv(path)
    args = ["lookup", "--db", str(path), "1.0.0.7", "1.0.1.0", "1.1.1.1", "2600:db8::5"]
    run = _main(args, capsysbinary)
    assert run.out == b"1.0.0.7\tAA\n1.0.1.0\tBB\n1.1.1.1\t--\n2600:db8::5\tCC\n"
    assert run.err == b""
    assert run.status == 0


def test_db_csv_subprocess_stdin(child: _Child, tmp_path: Path) -> None:
    path = tmp_path / "ranges.csv"
    _write_csv(path)
    run = child.run("lookup", "--db", str(path), "-", stdin=b"1.0.1.9\r\n::ffff:1.0.0.1\n")
    assert run.out == b"1.0.1.9\tBB\n::ffff:1.0.0.1\tAA\n"
    assert run.status == 0


def test_db_missing_file(child: _Child, tmp_path: Path) -> None:
    path = tmp_path / "missing.npz"
    run = child.run("lookup", "--db", str(path), _ONE_V4)
    assert run.status == 2
    assert run.out == b""
    lines = run.err.decode().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("lookupd: error:")
    assert str(path) in lines[0]


@pytest.mark.parametrize("command", ["lookup", "version"])
def test_db_corrupt_file_in_process(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path, command: str
) -> None:
    path = tmp_path / "broken.csv"
    path.write_text("this is not,a range file\n")
    args = [command, "--db", str(path)] + ([_ONE_V4] if command == "lookup" else [])
    run = _main(args, capsysbinary)
    assert run.status == 2
    assert run.out == b""
    lines = run.err.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("lookupd: error:")
    assert str(path) in lines[0]


# ---------------------------------------------------------------------------------------
# version, --version


def _check_version_output(out: str, source: str) -> None:
    from lookupd.core import _mmdb, _parse, _search

    lines = out.splitlines()
    assert lines[0] == f"lookupd {lookupd.__version__}"
    assert f"search core: {_search.CORE}" in lines
    assert f"parse core: {_parse.CORE}" in lines
    assert f"mmdb core: {_mmdb.CORE}" in lines
    assert f"data: {source}" in lines


def test_version_in_process(capsysbinary: pytest.CaptureFixture[bytes], db: Database) -> None:
    run = _main(["version"], capsysbinary)
    assert run.status == 0
    out = run.out.decode()
    _check_version_output(out, db.info.source)
    assert f"data name: {db.info.metadata['name']}" in out.splitlines()
    assert f"{len(db.v4)} IPv4" in out
    assert f"{len(db.v6)} IPv6" in out


def test_version_subprocess(child: _Child, db: Database) -> None:
    run = child.run("version")
    assert run.status == 0
    assert run.err == b""
    _check_version_output(run.out.decode(), db.info.source)


def test_version_with_db(capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path) -> None:
    path = tmp_path / "ranges.csv"
    _write_csv(path)
    run = _main(["version", "--db", str(path)], capsysbinary)
    assert run.status == 0
    _check_version_output(run.out.decode(), str(path))


def test_version_flag(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    run = _main(["--version"], capsysbinary)
    assert run.status == 0
    assert run.out.decode() == f"lookupd {lookupd.__version__}\n"


def test_version_flag_subprocess(child: _Child) -> None:
    run = child.run("--version")
    assert run.status == 0
    assert run.out.decode().strip() == f"lookupd {lookupd.__version__}"


def test_no_command_is_a_usage_error(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    run = _main([], capsysbinary)
    assert run.status == 2
    assert b"usage" in run.err


def test_subdivisions_column_from_city_data(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    city = Path(__file__).parent / "data" / "maxmind-test" / "test-data" / "GeoIP2-City-Test.mmdb"
    args = ["lookup", "--db", str(city), "--subdivisions", "81.2.69.160", "1.1.1.1"]
    assert main(args) == 0
    assert capsysbinary.readouterr().out == b"81.2.69.160\tGB\tGB-ENG\n1.1.1.1\t--\t--\n"
    assert main(["lookup", "--db", str(city), "81.2.69.160"]) == 0
    assert capsysbinary.readouterr().out == b"81.2.69.160\tGB\n"


# ---------------------------------------------------------------------------------------
# serve settings (read and checked; no server started), and what each command loads


def test_serve_help_shows_each_default_from_the_code(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    from lookupd.server.app import ServerConfig

    run = _main(["serve", "--help"], capsysbinary)
    assert run.status == 0
    text = " ".join(run.out.decode().split())  # argparse wraps lines at any space
    for setting in SERVE_SETTINGS:
        assert f"(default: {setting.default}) [{setting.variable}]" in text, setting.flag
    config = ServerConfig()
    assert f"(default: {config.port}) [LOOKUPD_PORT]" in text
    assert f"(default: {config.max_message_bytes}) [LOOKUPD_MAX_MESSAGE_BYTES]" in text


def test_every_server_config_field_has_a_serve_setting() -> None:
    from lookupd.server.app import ServerConfig

    # tls, admin and authz are built from several settings; reuse_port is for workers.
    built_otherwise = {"tls", "admin", "authz", "reuse_port"}
    fields = {item.name for item in dataclasses.fields(ServerConfig)}
    named = {s.config_field for s in SERVE_SETTINGS if s.config_field is not None}
    assert named <= fields
    assert named == fields - built_otherwise


def test_the_envoy_authorizer_settings_reach_its_config() -> None:
    from lookupd.cli.serve import _server_config
    from lookupd.server.authz.address import AddressSource
    from lookupd.server.authz.servicer import AuthzConfig

    default = _server_config(read_settings(_serve_args(), {})).authz
    assert default == AuthzConfig()
    assert (default.policy, str(default.ip_source), default.deny_status) == ("", "peer", 403)
    assert {field.name for field in dataclasses.fields(AuthzConfig)} == {
        "policy",
        "ip_source",
        "deny_status",
    }  # each has its setting, below
    environ = {"LOOKUPD_AUTHZ_POLICY": "eu-only", "LOOKUPD_AUTHZ_DENY_STATUS": "451"}
    args = _serve_args("--authz-ip-source", "xff:2")
    config = _server_config(read_settings(args, environ)).authz
    assert config == AuthzConfig("eu-only", AddressSource("xff", hops=2), 451)


def test_each_serve_setting_has_one_source_of_default() -> None:
    for setting in SERVE_SETTINGS:
        assert (setting.config_field is None) != (setting.default_from is None), setting.flag
        assert (setting.kind == "choice") == (setting.choices is not None), setting.flag


@pytest.mark.parametrize(
    ("flag", "default"),
    [
        ("--port", 50051),
        ("--grace", 5.0),
        ("--drain", 0.0),
        ("--watch-interval", 2.0),
        ("--metrics-host", "[::]"),
        ("--log-format", "kv"),
        ("--log-level", "info"),
        ("--db", None),
        ("--admin-mtls", None),
    ],
)
def test_serve_setting_defaults(flag: str, default: object) -> None:
    setting = setting_for(flag)
    assert setting.default_value() == default
    if isinstance(default, float):
        assert setting.default == f"{default:g}"  # 5.0 seconds reads as 5


def _serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    lookupd.cli.serve.add_parser(commands)
    return parser.parse_args(["serve", *argv])


def test_serve_flag_wins_over_variable_which_wins_over_default() -> None:
    environ = {"LOOKUPD_PORT": "7000", "LOOKUPD_THREADS": "3", "LOOKUPD_ADMIN_MTLS": "no"}
    settings = read_settings(_serve_args("--port", "8000"), environ)
    assert settings.given["--port"] == 8000
    assert settings.given["--threads"] == 3
    assert settings.given["--grace"] is None
    assert settings.given["--admin-mtls"] is None
    assert settings.config_fields() == {"port": 8000, "threads": 3}
    assert settings.value("--grace") == setting_for("--grace").default_value()
    assert settings.log_level() == logging.INFO


def test_serve_empty_host_keeps_the_default() -> None:
    settings = read_settings(_serve_args("--host", "", "--metrics-host", ""), {})
    assert "host" not in settings.config_fields()
    assert settings.value("--metrics-host") == setting_for("--host").default_value()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LOOKUPD_PORT": "65536"}, "LOOKUPD_PORT: not a valid port: '65536'"),
        ({"LOOKUPD_GRACE_S": "nan"}, "LOOKUPD_GRACE_S: not a valid value: 'nan'"),
        ({"LOOKUPD_LOG_LEVEL": "loud"}, "expected one of debug, info, warning, error"),
        ({"LOOKUPD_ADMIN_MTLS": "maybe"}, "LOOKUPD_ADMIN_MTLS: expected one of 1, true"),
        ({"LOOKUPD_TLS_KEY": "k.pem"}, "--tls-cert and --tls-key go together"),
        ({"LOOKUPD_AUTHZ_IP_SOURCE": "xff:0"}, "--authz-ip-source (LOOKUPD_AUTHZ_IP_SOURCE): xff"),
        ({"LOOKUPD_AUTHZ_IP_SOURCE": "client"}, "peer, header:NAME or xff:N, not 'client'"),
        ({"LOOKUPD_AUTHZ_DENY_STATUS": "500"}, "expected one of 400, 401, 403, 404, 429, 451"),
    ],
)
def test_serve_settings_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(LookupdError) as caught:
        read_settings(_serve_args(), environ)
    assert message in str(caught.value)


# Prints the modules a statement loads, in a fresh interpreter.
_PROBE = """
import json, sys
{statement}
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize(
    "statement",
    [
        "import lookupd.cli",
        "import lookupd.cli; lookupd.cli.main(['lookup', '1.1.1.1'])",
    ],
)
def test_lookup_command_loads_no_grpc_server_or_policies(statement: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(statement=statement)],
        capture_output=True,
        text=True,
        check=True,
        timeout=_TIMEOUT_S,
    )
    last = done.stdout.strip().splitlines()[-1]
    loaded = set(json.loads(last))
    heavy = ("grpc", "google", "lookupd.server", "lookupd.client", "lookupd.policies", "yaml")
    assert {m for m in loaded if m.split(".")[0] in heavy or m.startswith(heavy)} == set()
