"""Properties of the address parsers: agreement with ipaddress and between the two cores.

The model is ``ipaddress.ip_address`` with lookupd's one documented difference in syntax:
a scope ID (``fe80::1%eth0``) is rejected. Items are ``str``, or ``bytes`` read as ASCII
text (never packed addresses); anything else is invalid.
"""

import importlib
import ipaddress
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lookupd.codes import Status
from lookupd.core.constants import IPV4_MAPPED_PREFIX


def _import_or_none(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


_C_CORE = _import_or_none("lookupd.core._parse_c")
_PY_CORE = importlib.import_module("lookupd.core._parse_py")

_BLANKS = " \t\r"

# parse_core only hands out a module, with no state to reset between examples.
_module_fixture = settings(
    suppress_health_check=[
        *settings().suppress_health_check,
        HealthCheck.function_scoped_fixture,
    ]
)


def model_key(item: object) -> int | None:
    """The key ipaddress gives ``item``, after lookupd's deliberate differences."""
    if isinstance(item, bytes):
        try:
            item = item.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(item, str):
        return None
    try:
        address = ipaddress.ip_address(item)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return None  # deliberate: zones are rejected
        return int(address)
    return IPV4_MAPPED_PREFIX | int(address)


def run_many(core: ModuleType, items: list[object]) -> tuple[list[int | None], int]:
    """parse_many on garbage-filled outputs: keys (None for invalid items) and the count."""
    keys = np.full((len(items), 2), 0xAAAA, dtype=np.uint64)
    status = np.full(len(items), 7, dtype=np.uint8)
    invalid: int = core.parse_many(items, keys, status)
    return _decode(keys, status), invalid


def run_lines(core: ModuleType, text: bytes | bytearray) -> tuple[list[int | None], int]:
    n: int = core.count_lines(text)
    keys = np.full((n, 2), 0xAAAA, dtype=np.uint64)
    status = np.full(n, 7, dtype=np.uint8)
    invalid: int = core.parse_lines(text, keys, status)
    return _decode(keys, status), invalid


def _decode(keys: npt.NDArray[np.uint64], status: npt.NDArray[np.uint8]) -> list[int | None]:
    result: list[int | None] = []
    for (hi, lo), code in zip(keys.tolist(), status.tolist(), strict=True):
        if code == Status.OK:
            result.append((hi << 64) | lo)
        else:
            assert code == Status.INVALID_ADDRESS
            assert (hi, lo) == (0, 0)
            result.append(None)
    return result


# ---------------------------------------------------------------------------------------
# Strategies

# Mostly address characters, so that many draws come close to being addresses.
_NEAR_ADDRESS_CHARS = st.one_of(
    st.sampled_from("0123456789abcdefABCDEF:.%"),
    st.sampled_from("0123456789:."),
    st.characters(),
)
near_text = st.text(_NEAR_ADDRESS_CHARS, max_size=48)


@st.composite
def ipv4_text(draw: st.DrawFn) -> tuple[str, int]:
    value = draw(st.integers(0, 2**32 - 1))
    return str(ipaddress.IPv4Address(value)), IPV4_MAPPED_PREFIX | value


@st.composite
def ipv6_text(draw: st.DrawFn) -> tuple[str, int]:
    """Any IPv6 text form of a random address, with its key.

    Groups get random case and random leading zeros; '::' stands for a random run of zero
    groups (not only the longest), and the last 32 bits may be a dotted quad.
    """
    groups = draw(
        st.lists(
            st.one_of(st.just(0), st.integers(0, 0xFFFF), st.sampled_from([0xFFFF, 1])),
            min_size=8,
            max_size=8,
        )
    )
    if draw(st.booleans()):  # IPv4-mapped, the most common embedded form
        groups[:6] = [0, 0, 0, 0, 0, 0xFFFF]
    gap = draw(st.none() | st.tuples(st.integers(0, 7), st.integers(1, 8)))
    if gap is not None:
        start, length = gap[0], min(gap[1], 8 - gap[0])
        groups[start : start + length] = [0] * length
    key = 0
    for group in groups:
        key = (key << 16) | group
    dotted = draw(st.booleans())
    # With a dotted quad the last two groups are one part; '::' may not cover them.
    parts = 6 if dotted else 8

    def hex_group(value: int) -> str:
        digits = f"{value:x}".zfill(draw(st.integers(1, 4)))
        return digits.upper() if draw(st.booleans()) else digits

    words = [hex_group(g) for g in groups[:parts]]
    if dotted:
        words.append(str(ipaddress.IPv4Address(key & 0xFFFF_FFFF)))
    if gap is not None and start < parts:
        end = min(start + length, parts)
        head, tail = ":".join(words[:start]), ":".join(words[end:])
        text = f"{head}::{tail}"
    else:
        text = ":".join(words)
    return text, key


@st.composite
def ipaddress_forms(draw: st.DrawFn) -> tuple[str, int]:
    """The forms ipaddress itself writes: str(), exploded, compressed, in random case."""
    value = draw(st.integers(0, 2**128 - 1) | st.integers(0, 2**48 - 1))
    address = ipaddress.IPv6Address(value)
    text = draw(st.sampled_from([str(address), address.exploded, address.compressed]))
    if draw(st.booleans()):
        text = text.upper()
    return text, value


valid_address = st.one_of(ipv4_text(), ipv6_text(), ipaddress_forms())


@st.composite
def mutated_address(draw: st.DrawFn) -> str:
    """A valid address with one to three characters inserted, deleted or replaced.

    Near misses reach the parser's boundaries (a fifth hex digit, a lost ':', a stray
    '.') far more often than random text does.
    """
    text = list(draw(valid_address)[0])
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        if edit == "insert" or at == len(text):
            text.insert(at, draw(_NEAR_ADDRESS_CHARS))
        elif edit == "delete":
            del text[at]
        else:
            text[at] = draw(_NEAR_ADDRESS_CHARS)
    return "".join(text)


any_item: st.SearchStrategy[object] = st.one_of(
    near_text,
    mutated_address(),
    st.binary(max_size=48),
    valid_address.map(lambda pair: pair[0]),
    valid_address.map(lambda pair: pair[0].encode("ascii")),
    st.none(),
    st.integers(),
    st.binary(max_size=8).map(bytearray),
)


# ---------------------------------------------------------------------------------------
# Properties


@given(
    items=st.lists(
        st.one_of(near_text, mutated_address(), st.binary(max_size=48)),
        max_size=20,
    )
)
@example(items=["fe80::1%eth0", "1::2:3:4:5:6:7:8", "::ffff:01.2.3.4", ":1::2", "1::2:"])
@example(items=["1:2:3:4:5:6:1.2.3.4", "::1.2.3.4", "1.2.3.4::", "\u0661.2.3.4", "0.0.0.0"])
@example(items=[b"1.2.3.4", b"\x01\x02\x03\x04", b"::1\xff", b"::1%1", b""])
@_module_fixture
def test_random_text_agrees_with_ipaddress(
    parse_core: ModuleType, items: list[str | bytes]
) -> None:
    keys, invalid = run_many(parse_core, list(items))
    expected = [model_key(item) for item in items]
    assert keys == expected
    assert invalid == expected.count(None)
    assert [parse_core.parse_one(item) for item in items] == expected


@given(pair=valid_address)
@example(pair=("::", 0))
@example(pair=("1:2:3:4:5:6:7::", 0x0001_0002_0003_0004_0005_0006_0007_0000))
@example(pair=("::FFFF:255.255.255.255", IPV4_MAPPED_PREFIX | 0xFFFF_FFFF))
@_module_fixture
def test_valid_forms_parse_to_their_key(parse_core: ModuleType, pair: tuple[str, int]) -> None:
    text, key = pair
    assert model_key(text) == key, (
        f"the generator wrote an address ipaddress reads otherwise: {text}"
    )
    assert run_many(parse_core, [text, text.encode("ascii")]) == ([key, key], 0)
    assert parse_core.parse_one(text) == key


@pytest.mark.skipif(_C_CORE is None, reason="compiled core not built")
@given(items=st.lists(any_item, max_size=30))
@example(items=[None, 5, bytearray(b"1.2.3.4"), "::1", b"::2", "\x00", "%"])
def test_c_core_agrees_with_pure_twin(items: list[object]) -> None:
    assert _C_CORE is not None
    assert run_many(_C_CORE, items) == run_many(_PY_CORE, items)
    for item in items:
        if isinstance(item, (str, bytes)):
            assert _C_CORE.parse_one(item) == _PY_CORE.parse_one(item)


_line = st.one_of(
    valid_address.map(lambda pair: pair[0].encode("ascii")),
    st.binary(max_size=48).map(lambda b: b.replace(b"\n", b"")),
    near_text.map(lambda t: t.replace("\n", "").encode("utf-8", "surrogatepass")),
    st.just(b""),
)
_padding = st.text(_BLANKS, max_size=3).map(str.encode)


@given(
    lines=st.lists(st.tuples(_padding, _line, _padding), max_size=20),
    final_newline=st.booleans(),
    crlf=st.booleans(),
)
@example(lines=[(b"", b"", b"")], final_newline=False, crlf=False)
@example(lines=[(b" ", b"::1", b"\r")], final_newline=False, crlf=True)
@_module_fixture
def test_parse_lines_agrees_with_parse_many(
    parse_core: ModuleType,
    lines: list[tuple[bytes, bytes, bytes]],
    final_newline: bool,
    crlf: bool,
) -> None:
    end = b"\r\n" if crlf else b"\n"
    text = end.join(before + line + after for before, line, after in lines)
    if final_newline:
        text += end
    # The model of a line: split on "\n", no extra line after a final "\n", then strip.
    raw_lines = text.split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()
    stripped: list[object] = [line.strip(_BLANKS.encode()) for line in raw_lines]
    assert parse_core.count_lines(text) == len(stripped)
    assert run_lines(parse_core, text) == run_many(parse_core, stripped)
    assert run_lines(parse_core, bytearray(text)) == run_lines(parse_core, text)
