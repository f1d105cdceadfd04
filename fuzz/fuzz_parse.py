"""Fuzz the text address parser: the compiled core, its pure twin and ``ipaddress`` must agree.

Invariants, for any bytes: neither core raises on an item's content (only a bad call
raises); both give every item the same key; that key is ``ipaddress.ip_address``'s (scope
IDs rejected, bytes read as ASCII: the documented differences in lookupd.core._parse_py);
``parse_lines`` is ``parse_many`` of the stripped lines. The input is read as one item (as
bytes, as Latin-1 text, as UTF-8 text with lone surrogates) and as lines.
"""

from __future__ import annotations

import ipaddress
import sys

import numpy as np
from _harness import check, instrument_lookupd, instrument_module, main

from lookupd.codes import Status
from lookupd.core import _parse_py
from lookupd.core.constants import IPV4_MAPPED_PREFIX

try:
    from lookupd.core import _parse_c as compiled
except ImportError:  # no compiled core: the twin is checked against ipaddress alone
    compiled = _parse_py

instrument_module(ipaddress)
instrument_lookupd(dataflow=("lookupd.core._parse_py",))

CORES = (compiled, _parse_py)
_BLANKS = b" \t\r"


def model_key(item: str | bytes) -> int | None:
    """The key ``ipaddress`` gives ``item``, after lookupd's documented differences."""
    if isinstance(item, bytes):
        try:
            item = item.decode("ascii")
        except UnicodeDecodeError:
            return None
    try:
        address = ipaddress.ip_address(item)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        return None if address.scope_id is not None else int(address)
    return IPV4_MAPPED_PREFIX | int(address)


def run_many(core: object, items: list[object]) -> tuple[list[int | None], int]:
    """Keys (None for invalid items) and the invalid count, from garbage-filled outputs."""
    keys = np.full((len(items), 2), 0xAAAA, dtype=np.uint64)
    status = np.full(len(items), 7, dtype=np.uint8)
    invalid = core.parse_many(items, keys, status)  # type: ignore[attr-defined]
    return _decode(keys, status), invalid


def run_lines(core: object, text: bytes) -> tuple[list[int | None], int]:
    n = core.count_lines(text)  # type: ignore[attr-defined]
    keys = np.full((n, 2), 0xAAAA, dtype=np.uint64)
    status = np.full(n, 7, dtype=np.uint8)
    invalid = core.parse_lines(text, keys, status)  # type: ignore[attr-defined]
    return _decode(keys, status), invalid


def _decode(keys: np.ndarray, status: np.ndarray) -> list[int | None]:
    result: list[int | None] = []
    for (hi, lo), code in zip(keys.tolist(), status.tolist(), strict=True):
        if code == Status.OK:
            result.append((hi << 64) | lo)
        else:
            check(code == Status.INVALID_ADDRESS, f"status {code} is neither OK nor INVALID")
            check((hi, lo) == (0, 0), "an invalid item's key is not (0, 0)")
            result.append(None)
    return result


def test_one(data: bytes) -> None:
    items: list[object] = [
        data,
        data.decode("latin-1"),
        data.decode("utf-8", "surrogateescape"),
        bytearray(data),  # not str or bytes: always invalid, never read
    ]
    expected = [model_key(item) for item in items[:3]] + [None]
    for core in CORES:
        got = run_many(core, items)
        check(got == (expected, expected.count(None)), f"{core.__name__}: {got} != {expected}")
        for item, key in zip(items[:3], expected, strict=False):
            check(core.parse_one(item) == key, f"{core.__name__}.parse_one({item!r}) != {key}")
    raw_lines = data.split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()
    stripped: list[object] = [line.strip(_BLANKS) for line in raw_lines]
    by_lines = [run_lines(core, data) for core in CORES]
    check(by_lines[0] == by_lines[1], f"parse_lines: the cores disagree: {by_lines}")
    check(by_lines[0] == run_many(_parse_py, stripped), "parse_lines != parse_many of stripped")
    unstripped: list[object] = list(raw_lines)
    many = [run_many(core, unstripped) for core in CORES]
    check(many[0] == many[1], f"parse_many of the lines: the cores disagree: {many}")


if __name__ == "__main__":
    sys.exit(main(test_one))
