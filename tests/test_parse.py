"""Edge cases of the address parsers: every table runs against both cores."""

import ipaddress
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt
import pytest

from lookupd.codes import Status
from lookupd.core.constants import IPV4_MAPPED_PREFIX, IPV6_MAX

_OK = Status.OK
_INVALID = Status.INVALID_ADDRESS
# A value no parser writes: shows whether a row was overwritten.
_GARBAGE = 0xDEAD_BEEF_DEAD_BEEF


class ParseCore(Protocol):
    """The interface both cores implement; mypy checks the modules against it below."""

    def parse_many(
        self,
        items: Sequence[str | bytes],
        keys: npt.NDArray[np.uint64],
        status: npt.NDArray[np.uint8],
    ) -> int: ...
    def parse_one(self, item: str | bytes) -> int | None: ...
    def count_lines(self, text: bytes | bytearray | memoryview) -> int: ...
    def parse_lines(
        self,
        text: bytes | bytearray | memoryview,
        keys: npt.NDArray[np.uint64],
        status: npt.NDArray[np.uint8],
    ) -> int: ...


if TYPE_CHECKING:
    # Keeps _parse_c.pyi and the pure twin honest: both must fit the same protocol.
    from lookupd.core import _parse_c, _parse_py

    _C_CORE: ParseCore = _parse_c
    _PY_CORE: ParseCore = _parse_py


def v4(text: str) -> int:
    """The key of an IPv4 address: ::ffff:a.b.c.d."""
    return IPV4_MAPPED_PREFIX | int(ipaddress.IPv4Address(text))


def groups_key(groups: Sequence[int]) -> int:
    """The 128-bit value of eight 16-bit groups, computed without ipaddress."""
    key = 0
    for group in groups:
        key = (key << 16) | group
    return key


def parse(
    core: ModuleType, items: Sequence[object]
) -> tuple[list[int | None], npt.NDArray[np.uint8], int]:
    """Run parse_many on garbage-filled outputs; return keys (None if invalid), status, count."""
    keys = np.full((len(items), 2), _GARBAGE, dtype=np.uint64)
    status = np.full(len(items), 99, dtype=np.uint8)
    invalid: int = core.parse_many(items, keys, status)
    return _keys_of(keys, status), status, invalid


def parse_text(
    core: ModuleType, text: bytes | bytearray | memoryview
) -> tuple[list[int | None], int]:
    """Run count_lines and parse_lines; return keys (None if invalid) and the count."""
    n: int = core.count_lines(text)
    keys = np.full((n, 2), _GARBAGE, dtype=np.uint64)
    status = np.full(n, 99, dtype=np.uint8)
    invalid: int = core.parse_lines(text, keys, status)
    return _keys_of(keys, status), invalid


def _keys_of(keys: npt.NDArray[np.uint64], status: npt.NDArray[np.uint8]) -> list[int | None]:
    assert set(status.tolist()) <= {_OK, _INVALID}
    result: list[int | None] = []
    for (hi, lo), code in zip(keys.tolist(), status.tolist(), strict=True):
        if code == _OK:
            result.append((hi << 64) | lo)
        else:
            assert (hi, lo) == (0, 0), "an invalid item's key must be (0, 0)"
            result.append(None)
    return result


# ---------------------------------------------------------------------------------------
# Valid addresses and their keys. Every expectation is also checked against ipaddress.

VALID: list[tuple[str, int]] = [
    ("0.0.0.0", IPV4_MAPPED_PREFIX),
    ("255.255.255.255", IPV4_MAPPED_PREFIX | 0xFFFF_FFFF),
    ("1.2.3.4", IPV4_MAPPED_PREFIX | 0x0102_0304),
    ("10.0.0.1", IPV4_MAPPED_PREFIX | 0x0A00_0001),
    ("9.99.199.249", IPV4_MAPPED_PREFIX | 0x0963_C7F9),
    ("100.200.250.0", IPV4_MAPPED_PREFIX | 0x64C8_FA00),
    ("::", 0),
    ("::1", 1),
    ("1::", 1 << 112),
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", IPV6_MAX),
    ("FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF", IPV6_MAX),
    ("0000:0000:0000:0000:0000:0000:0000:0000", 0),
    ("0:0:0:0:0:0:0:0", 0),
    ("2001:db8:85a3::8a2e:370:7334", 0x2001_0DB8_85A3_0000_0000_8A2E_0370_7334),
    ("2001:DB8:85a3::8A2E:0370:7334", 0x2001_0DB8_85A3_0000_0000_8A2E_0370_7334),
    ("2a02:6b8::2:242", 0x2A02_06B8_0000_0000_0000_0000_0002_0242),
    ("0001:002:03::000a", groups_key([1, 2, 3, 0, 0, 0, 0, 0xA])),
    ("aBcD:EfAb::", groups_key([0xABCD, 0xEFAB, 0, 0, 0, 0, 0, 0])),
    ("1:2:3:4:5:6:7:8", groups_key([1, 2, 3, 4, 5, 6, 7, 8])),
    # IPv4-mapped and other embedded dotted quads: the last 32 bits.
    ("::ffff:1.2.3.4", IPV4_MAPPED_PREFIX | 0x0102_0304),
    ("::FFFF:1.2.3.4", IPV4_MAPPED_PREFIX | 0x0102_0304),
    ("0:0:0:0:0:ffff:1.2.3.4", IPV4_MAPPED_PREFIX | 0x0102_0304),
    ("::ffff:0.0.0.0", IPV4_MAPPED_PREFIX),
    ("::ffff:255.255.255.255", IPV4_MAPPED_PREFIX | 0xFFFF_FFFF),
    ("::1.2.3.4", 0x0102_0304),
    ("::0.0.0.0", 0),
    ("1:2:3:4:5:6:1.2.3.4", groups_key([1, 2, 3, 4, 5, 6, 0x0102, 0x0304])),
    ("1:2:3:4:5::1.2.3.4", groups_key([1, 2, 3, 4, 5, 0, 0x0102, 0x0304])),
    ("1::1.2.3.4", groups_key([1, 0, 0, 0, 0, 0, 0x0102, 0x0304])),
    ("64:ff9b::192.0.2.33", groups_key([0x64, 0xFF9B, 0, 0, 0, 0, 0xC000, 0x0221])),
    # The longest valid text: 45 characters.
    ("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", IPV6_MAX),
    ("0000:0000:0000:0000:0000:ffff:1.2.3.4", IPV4_MAPPED_PREFIX | 0x0102_0304),
]


def _every_gap() -> list[tuple[str, int]]:
    """'::' over every run of zero groups: start 0-7, length 1 to the end of the address."""
    cases = []
    for start in range(8):
        for length in range(1, 9 - start):
            groups = [0 if start <= i < start + length else i + 1 for i in range(8)]
            head = ":".join(f"{g:x}" for g in groups[:start])
            tail = ":".join(f"{g:x}" for g in groups[start + length :])
            cases.append((f"{head}::{tail}", groups_key(groups)))
    return cases


GAPS = _every_gap()


@pytest.mark.parametrize(("text", "key"), VALID + GAPS)
def test_valid_text(parse_core: ModuleType, text: str, key: int) -> None:
    address = ipaddress.ip_address(text)
    oracle = v4(text) if address.version == 4 else int(address)
    assert oracle == key, "the table itself must agree with ipaddress"
    keys, status, invalid = parse(parse_core, [text])
    assert (keys, status.tolist(), invalid) == ([key], [_OK], 0)
    assert parse_core.parse_one(text) == key


@pytest.mark.parametrize(("text", "key"), VALID + GAPS)
def test_valid_bytes(parse_core: ModuleType, text: str, key: int) -> None:
    keys, _, invalid = parse(parse_core, [text.encode("ascii")])
    assert (keys, invalid) == ([key], 0)
    assert parse_core.parse_one(text.encode("ascii")) == key


def test_gap_table_covers_every_position() -> None:
    assert len(GAPS) == 36
    assert "::2:3:4:5:6:7:8" in dict(GAPS)
    assert "1:2:3:4:5:6:7::" in dict(GAPS)
    assert "::" in dict(GAPS)


def test_ipv4_mapped_equals_ipv4(parse_core: ModuleType) -> None:
    keys, _, _ = parse(parse_core, ["1.2.3.4", "::ffff:1.2.3.4", "::ffff:102:304"])
    assert keys[0] == keys[1] == keys[2] == IPV4_MAPPED_PREFIX | 0x0102_0304


# ---------------------------------------------------------------------------------------
# Invalid text: ipaddress rejects all of these too.

_LONG = 1_000_000

INVALID: list[str] = [
    "",
    " ",
    "\n",
    # IPv4 shape
    "1.2.3",
    "1.2.3.4.5",
    "1.2.3.",
    ".1.2.3",
    "1..2.3",
    "1.2.3.4.",
    "256.0.0.0",
    "1.2.3.256",
    "1.2.3.1000",
    "999.1.1.1",
    "4294967295",
    "127.1",
    "0x7f.0.0.1",
    "1.2.3.0x4",
    "1.2.3.4/32",
    "1e2.1.1.1",
    # IPv4 leading zeros, signs and whitespace
    "01.2.3.4",
    "1.2.3.04",
    "00.0.0.0",
    "1.2.3.000",
    "+1.2.3.4",
    "1.-2.3.4",
    "1.2.3.4 ",
    " 1.2.3.4",
    "1.2.3.4\n",
    "1.2.3.4\r\n",
    "1.2.3.4\t",
    "1. 2.3.4",
    # non-ASCII digits and NULs
    "\u0661.\u0662.\u0663.\u0664",  # Arabic-Indic digits
    "\uff11.\uff12.\uff13.\uff14",  # fullwidth digits
    "1.2.3.\uff14",
    "².2.3.4",
    "1.2.3.4\x00",
    "1.2\x00.3.4",
    "\x00",
    "\x001.2.3.4",
    # IPv6 shape
    ":",
    ":::",
    "::::",
    "1:::2",
    "1::2::3",
    "::1::",
    ":1::2",
    "1::2:",
    ":1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8:9",
    "1::2:3:4:5:6:7:8",
    "::1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8::",
    "1:2:3:4::5:6:7:8",
    "12345::",
    "::12345",
    "00000::",
    "g::",
    "::g",
    "1:2:3:4:5:6:7:8g",
    "0x1::",
    "-1::",
    "::1 ",
    " ::1",
    "::1\n",
    ":: 1",
    "[::1]",
    "::1/128",
    "::\uff41",  # fullwidth a
    "::\x00",
    # embedded dotted quad
    "1:2:3:4:5:6:7:1.2.3.4",
    "1:2:3:4:5:6::1.2.3.4",
    "::1:2:3:4:5:6:1.2.3.4",
    "::1:2:3:4:5:6:7:1.2.3.4",  # seven groups, a '::' and a dotted quad: 144 bits
    "1::3:4:5:6:7:8:1.2.3.4",
    "1:2:3:4:5:6:7::1.2.3.4",
    "::ffff:01.2.3.4",
    "::ffff:1.2.3.04",
    "::ffff:1.2.3",
    "::ffff:1.2.3.4.5",
    "::ffff:256.1.2.3",
    "::ffff:1.2.3.4:5",
    "::1.2.3.4:ffff",
    "1.2.3.4::",
    "1.2.3.4:1::",
    "::ffff:a.b.c.d",
    "::ffff:\u0661.\u0662.\u0663.\u0664",
    "::ffff:1.2.3.4 ",
    "::ffff:.1.2.3",
    "::ffff:1.2.3.4.",
    # 46 characters: one more than the longest address
    "0ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
    # huge items: rejected in constant time by the length check
    "1" * _LONG,
    "1.2.3.4" + " " * _LONG,
    ":" * _LONG,
    "1:" * (_LONG // 2),
    "::" + "f" * _LONG,
    "1." * (_LONG // 2) + "1",
]

# ipaddress accepts these; lookupd rejects them on purpose (see lookupd/_parse_py.py).
DELIBERATE_DIFFERENCES: list[str] = [
    "fe80::1%eth0",  # scope IDs: a zone names a local interface, useless for a lookup
    "fe80::1%1",
    "::1%x",
    "::ffff:1.2.3.4%eth0",
    "fe80::1%\x00",
    "fe80::1%é",
]


def _ipaddress_rejects(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return True
    return False


def _short_id(text: object) -> str:
    shown = repr(text)
    return shown if len(shown) <= 40 else f"{shown[:30]}...({len(shown)} chars)"


@pytest.mark.parametrize("text", INVALID, ids=_short_id)
def test_invalid_text(parse_core: ModuleType, text: str) -> None:
    assert _ipaddress_rejects(text), "the table itself must agree with ipaddress"
    keys, status, invalid = parse(parse_core, [text])
    assert (keys, status.tolist(), invalid) == ([None], [_INVALID], 1)
    assert parse_core.parse_one(text) is None


@pytest.mark.parametrize("text", INVALID, ids=_short_id)
def test_invalid_bytes(parse_core: ModuleType, text: str) -> None:
    item = text.encode("utf-8")
    keys, _, invalid = parse(parse_core, [item])
    assert (keys, invalid) == ([None], 1)
    assert parse_core.parse_one(item) is None


@pytest.mark.parametrize("text", DELIBERATE_DIFFERENCES, ids=_short_id)
def test_scope_ids_are_rejected(parse_core: ModuleType, text: str) -> None:
    assert not _ipaddress_rejects(text), "ipaddress accepts a zone; we do not"
    keys, _, invalid = parse(parse_core, [text])
    assert (keys, invalid) == ([None], 1)
    assert parse_core.parse_one(text) is None


@pytest.mark.parametrize(
    "item",
    [
        b"\xff",
        b"1.2.3.4\xff",
        b"\xd9\xa1.2.3.4",  # UTF-8 Arabic-Indic one: bytes are ASCII text only
        b"\x01\x02\x03\x04",  # packed IPv4: bytes are text, never packed addresses
        bytes(16),  # packed IPv6
        b"\x00" * 45,
    ],
    ids=_short_id,
)
def test_invalid_bytes_only(parse_core: ModuleType, item: bytes) -> None:
    keys, _, invalid = parse(parse_core, [item])
    assert (keys, invalid) == ([None], 1)
    assert parse_core.parse_one(item) is None


_NOT_TEXT: list[object] = [
    None,
    5,
    0x0102_0304,
    1.5,
    object(),
    bytearray(b"1.2.3.4"),
    memoryview(b"1.2.3.4"),
    ipaddress.IPv4Address("1.2.3.4"),
    ["1.2.3.4"],
    ("::1",),
]


@pytest.mark.parametrize("item", _NOT_TEXT, ids=_short_id)
def test_non_text_items_are_invalid(parse_core: ModuleType, item: object) -> None:
    keys, status, invalid = parse(parse_core, ["1.2.3.4", item, "::1"])
    assert keys == [v4("1.2.3.4"), None, 1]
    assert status.tolist() == [_OK, _INVALID, _OK]
    assert invalid == 1


@pytest.mark.parametrize("item", _NOT_TEXT, ids=_short_id)
def test_parse_one_rejects_non_text(parse_core: ModuleType, item: object) -> None:
    with pytest.raises(TypeError, match="item must be str or bytes"):
        parse_core.parse_one(item)


# ---------------------------------------------------------------------------------------
# Batches


def test_mixed_batch(parse_core: ModuleType) -> None:
    items: list[object] = ["1.2.3.4", "", b"::1", None, "01.2.3.4", "2001:db8::", "x" * 10**6]
    keys, status, invalid = parse(parse_core, items)
    assert keys == [v4("1.2.3.4"), None, 1, None, None, 0x2001_0DB8 << 96, None]
    assert status.tolist() == [_OK, _INVALID, _OK, _INVALID, _INVALID, _OK, _INVALID]
    assert invalid == 4


def test_empty_batch(parse_core: ModuleType) -> None:
    keys = np.zeros((0, 2), dtype=np.uint64)
    status = np.zeros(0, dtype=np.uint8)
    assert parse_core.parse_many([], keys, status) == 0
    assert parse_core.parse_many((), keys, status) == 0


class _Addresses(Sequence[str]):
    """A Sequence that is neither a list nor a tuple."""

    def __init__(self, items: list[str]) -> None:
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        return self._items[index]


@pytest.mark.parametrize(
    "make",
    [list, tuple, _Addresses, lambda items: np.array(items, dtype=object), np.array],
    ids=["list", "tuple", "sequence", "object-array", "str-array"],
)
def test_sequence_kinds(parse_core: ModuleType, make: object) -> None:
    texts = ["1.2.3.4", "::1", "nope"]
    items = make(texts)  # type: ignore[operator]
    keys, _, invalid = parse(parse_core, items)
    assert (keys, invalid) == ([v4("1.2.3.4"), 1, None], 1)


class _Text(str):
    """A str subclass whose __str__ lies: the parser must read the text itself."""

    __slots__ = ()

    def __str__(self) -> str:
        return "9.9.9.9"


class _Bytes(bytes):
    """A bytes subclass."""


def test_str_and_bytes_subclasses(parse_core: ModuleType) -> None:
    keys, _, invalid = parse(parse_core, [_Text("1.2.3.4"), _Bytes(b"::1"), _Text("é")])
    assert (keys, invalid) == ([v4("1.2.3.4"), 1, None], 1)
    assert parse_core.parse_one(_Text("::2")) == 2


def test_non_ascii_str_is_none(parse_core: ModuleType) -> None:
    assert parse_core.parse_one("1.2.3.\uff14") is None
    assert parse_core.parse_one("é") is None
    assert parse_core.parse_one("\U0001f600") is None


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("::ffff:ffff:ffff:ffff", (1 << 64) - 1),  # the largest key that fits 64 bits
        ("::1:0:0:0:0", 1 << 64),  # the smallest that does not
        ("::1:0:0:0:1", (1 << 64) + 1),
        ("8000::", 1 << 127),
        ("ffff:ffff:ffff:ffff::", IPV6_MAX - ((1 << 64) - 1)),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", IPV6_MAX),
    ],
)
def test_parse_one_around_64_bits(parse_core: ModuleType, text: str, key: int) -> None:
    """Keys that fit 64 bits and keys that need 128 come back as the same plain ints."""
    assert int(ipaddress.IPv6Address(text)) == key
    result = parse_core.parse_one(text)
    assert type(result) is int
    assert result == key


# Around parse_many's prefetch distance (16 items ahead), and well past it.
@pytest.mark.parametrize("size", [1, 2, 15, 16, 17, 31, 32, 33, 1000])
def test_scattered_batch_parses_as_its_items(parse_core: ModuleType, size: int) -> None:
    """A shuffled batch of fresh objects, text and not, parses as each item does alone."""
    rng = np.random.default_rng(size)
    pool: list[object] = []
    for value in rng.integers(0, 1 << 32, size, dtype=np.uint64).tolist():
        pool.append(str(ipaddress.IPv4Address(value)))
        pool.append(str(ipaddress.IPv6Address(value << 96 | value)).encode())
        pool.append(f"{value:x}::{value % 7}:1.2.3.4")
    pool.extend([None, 7, "é", "", "1.2.3.4" * 30, b"x" * 100, ["1.2.3.4"]])
    items = [pool[i] for i in rng.permutation(len(pool))[:size]]
    expected = [
        parse_core.parse_one(item) if isinstance(item, (str, bytes)) else None for item in items
    ]
    keys, _, invalid = parse(parse_core, items)
    assert keys == expected
    assert invalid == expected.count(None)


def test_parse_many_threads(parse_core: ModuleType) -> None:
    items = ["1.2.3.4", "::1", "bad", "2001:db8::1"] * 2_500
    expected, _, expected_invalid = parse(parse_core, items)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                keys, _, invalid = parse(parse_core, items)
                assert (keys, invalid) == (expected, expected_invalid)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert expected_invalid == 2_500


# ---------------------------------------------------------------------------------------
# Bad calls raise; they are the only things that do.


def test_keys_length_mismatch(parse_core: ModuleType) -> None:
    keys = np.zeros((2, 2), dtype=np.uint64)
    status = np.zeros(3, dtype=np.uint8)
    with pytest.raises(ValueError, match=r"^keys has 2 rows but there are 3 items$"):
        parse_core.parse_many(["1.2.3.4"] * 3, keys, status)


def test_status_length_mismatch(parse_core: ModuleType) -> None:
    keys = np.zeros((3, 2), dtype=np.uint64)
    status = np.zeros(4, dtype=np.uint8)
    with pytest.raises(ValueError, match=r"^status has 4 entries but there are 3 items$"):
        parse_core.parse_many(["1.2.3.4"] * 3, keys, status)


def test_keys_wrong_width(parse_core: ModuleType) -> None:
    keys = np.zeros((3, 3), dtype=np.uint64)
    status = np.zeros(3, dtype=np.uint8)
    with pytest.raises(ValueError, match=r"^keys must have shape \(n, 2\), not \(3, 3\)$"):
        parse_core.parse_many(["1.2.3.4"] * 3, keys, status)


def _read_only(array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    array.flags.writeable = False
    return array


@pytest.mark.parametrize(
    ("keys", "status", "match"),
    [
        (_read_only(np.zeros((2, 2), np.uint64)), np.zeros(2, np.uint8), "keys: .*read-only"),
        (np.zeros((2, 2), np.uint64), _read_only(np.zeros(2, np.uint8)), "status: .*read-only"),
        (np.zeros((2, 2), np.int64), np.zeros(2, np.uint8), "keys: .*dtype mismatch"),
        (np.zeros((2, 2), np.float64), np.zeros(2, np.uint8), "keys: .*dtype mismatch"),
        (np.zeros((2, 2), ">u8"), np.zeros(2, np.uint8), "keys: "),
        (np.zeros((2, 2), np.uint64), np.zeros(2, np.int8), "status: .*dtype mismatch"),
        (np.zeros(4, np.uint64), np.zeros(2, np.uint8), "keys: .*wrong number of dimensions"),
        (np.zeros((2, 2, 1), np.uint64), np.zeros(2, np.uint8), "keys: .*dimensions"),
        (np.zeros((2, 2), np.uint64), np.zeros((2, 1), np.uint8), "status: .*dimensions"),
        (np.zeros((2, 2), np.uint64, order="F"), np.zeros(2, np.uint8), "keys: .*C-contiguous"),
        (np.zeros((2, 4), np.uint64)[:, ::2], np.zeros(2, np.uint8), "keys: .*C-contiguous"),
        (
            np.zeros((2, 2), np.uint64),
            memoryview(bytearray(4))[::2],
            "status: .*C-contiguous",
        ),
    ],
    ids=[
        "keys-read-only",
        "status-read-only",
        "keys-int64",
        "keys-float",
        "keys-big-endian",
        "status-int8",
        "keys-1d",
        "keys-3d",
        "status-2d",
        "keys-fortran",
        "keys-strided",
        "status-strided-memoryview",
    ],
)
def test_bad_outputs(parse_core: ModuleType, keys: object, status: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_core.parse_many(["1.2.3.4", "::1"], keys, status)


@pytest.mark.parametrize(
    ("keys", "status"),
    [
        (None, np.zeros(1, np.uint8)),
        (np.zeros((1, 2), np.uint64), None),
        ([[0, 0]], np.zeros(1, np.uint8)),
        (np.zeros((1, 2), np.uint64), [0]),
    ],
    ids=["keys-none", "status-none", "keys-list", "status-list"],
)
def test_outputs_must_be_buffers(parse_core: ModuleType, keys: object, status: object) -> None:
    with pytest.raises(TypeError):
        parse_core.parse_many(["1.2.3.4"], keys, status)


def test_other_writable_buffers_are_accepted(parse_core: ModuleType) -> None:
    keys = memoryview(bytearray(32)).cast("B").cast("Q", (2, 2))
    status = bytearray(2)
    assert parse_core.parse_many(["::1", "x"], keys, status) == 1
    assert np.asarray(keys).tolist() == [[0, 1], [0, 0]]
    assert list(status) == [_OK, _INVALID]


@pytest.mark.parametrize(
    ("items", "match"),
    [
        ("1.2.3.4", "not a single str"),
        (b"1.2.3.4", "not a single bytes"),
        (bytearray(b"1.2.3.4"), "not a single bytearray"),
        (5, "not int"),
        (None, "not NoneType"),
        ({"1.2.3.4": 1}, "not dict"),
        ({"1.2.3.4"}, "not set"),
        (iter(["1.2.3.4"]), "not list_iterator"),
    ],
    ids=_short_id,
)
def test_items_must_be_a_sequence(parse_core: ModuleType, items: object, match: str) -> None:
    keys = np.zeros((1, 2), dtype=np.uint64)
    status = np.zeros(1, dtype=np.uint8)
    with pytest.raises(TypeError, match=match):
        parse_core.parse_many(items, keys, status)


# ---------------------------------------------------------------------------------------
# Lines of text

LINES: list[tuple[bytes, list[int | None]]] = [
    (b"", []),
    (b"\n", [None]),
    (b"\n\n\n", [None, None, None]),
    (b"1.2.3.4", [v4("1.2.3.4")]),
    (b"1.2.3.4\n", [v4("1.2.3.4")]),
    (b"1.2.3.4\n::1", [v4("1.2.3.4"), 1]),
    (b"1.2.3.4\n::1\n", [v4("1.2.3.4"), 1]),
    (b"1.2.3.4\r\n::1\r\n", [v4("1.2.3.4"), 1]),
    (b"1.2.3.4\r\n\r\n::1\r\n", [v4("1.2.3.4"), None, 1]),
    (b"\n1.2.3.4\n\n::1\n\n", [None, v4("1.2.3.4"), None, 1, None]),
    (b"  1.2.3.4 \t\r\n\t::1  ", [v4("1.2.3.4"), 1]),
    (b" \t\r ", [None]),
    (b"\r", [None]),
    (b"1.2.3.4\n   ", [v4("1.2.3.4"), None]),
    (b"1.2.3.4\n\r", [v4("1.2.3.4"), None]),
    (b"1.2. 3.4\n", [None]),  # only surrounding blanks are stripped
    (b"1.2.3.4\x0b\n", [None]),  # vertical tab is not one of them
    (b"\x0c1.2.3.4\n", [None]),
    (b"1.2.3.4\x00\n", [None]),
    (b"\xff\xfe\n1.2.3.4", [None, v4("1.2.3.4")]),
    (b"fe80::1%eth0\n", [None]),
    (b"::ffff:1.2.3.4\r\n", [v4("1.2.3.4")]),
    (b"x" * _LONG + b"\n::1", [None, 1]),
    (b" " * _LONG + b"::1" + b" " * _LONG, [1]),
]


@pytest.mark.parametrize(("text", "expected"), LINES, ids=_short_id)
def test_parse_lines(parse_core: ModuleType, text: bytes, expected: list[int | None]) -> None:
    keys, invalid = parse_text(parse_core, text)
    assert keys == expected
    assert invalid == expected.count(None)


@pytest.mark.parametrize(
    "convert",
    [bytes, bytearray, memoryview, lambda b: np.frombuffer(b, dtype=np.uint8)],
    ids=["bytes", "bytearray", "memoryview", "uint8-array"],
)
def test_parse_lines_buffer_kinds(parse_core: ModuleType, convert: object) -> None:
    text = convert(b"1.2.3.4\r\nnope\n2001:db8::1\n")  # type: ignore[operator]
    keys, invalid = parse_text(parse_core, text)
    assert keys == [v4("1.2.3.4"), None, (0x2001_0DB8 << 96) | 1]
    assert invalid == 1


def test_parse_lines_memoryview_slice(parse_core: ModuleType) -> None:
    text = memoryview(b"junk::1\n1.2.3.4\njunk")[4:-4]
    assert parse_core.count_lines(text) == 2
    keys, _ = parse_text(parse_core, text)
    assert keys == [1, v4("1.2.3.4")]


def test_parse_lines_length_mismatch(parse_core: ModuleType) -> None:
    keys = np.zeros((3, 2), dtype=np.uint64)
    status = np.zeros(3, dtype=np.uint8)
    with pytest.raises(ValueError, match=r"^keys has 3 rows but there are 2 lines$"):
        parse_core.parse_lines(b"::1\n::2\n", keys, status)
    with pytest.raises(ValueError, match=r"^status has 3 entries but there are 2 lines$"):
        parse_core.parse_lines(b"::1\n::2\n", keys[:2], status)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("1.2.3.4\n", TypeError),
        (None, TypeError),
        (["1.2.3.4"], TypeError),
        (np.zeros(3, dtype=np.uint32), ValueError),
        (np.zeros((2, 2), dtype=np.uint8), ValueError),
        (memoryview(b"1\n2\n3")[::2], ValueError),
    ],
    ids=["str", "none", "list", "uint32-array", "2d-array", "strided-memoryview"],
)
def test_bad_text(parse_core: ModuleType, text: object, error: type[Exception]) -> None:
    keys = np.zeros((1, 2), dtype=np.uint64)
    status = np.zeros(1, dtype=np.uint8)
    with pytest.raises(error):
        parse_core.count_lines(text)
    with pytest.raises(error):
        parse_core.parse_lines(text, keys, status)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        (b"", 0),
        (b"\n", 1),
        (b"a", 1),
        (b"a\n", 1),
        (b"a\nb", 2),
        (b"a\r\nb\r\n", 2),
        (b"\n\n", 2),
        (b"\r", 1),
        (b" ", 1),
        (b"\n" * 1000, 1000),
    ],
    ids=_short_id,
)
def test_count_lines(parse_core: ModuleType, text: bytes, count: int) -> None:
    assert parse_core.count_lines(text) == count
