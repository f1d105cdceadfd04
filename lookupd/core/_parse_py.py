"""Parse IPv4 and IPv6 text into 128-bit keys: the pure-Python twin of lookupd.core._parse_c.

This module is the fallback core and the test oracle: it defers to ``ipaddress``, and the
compiled core (ext/_parse_c.pyx) must agree with it on every input.

Keys: every address becomes a 128-bit integer, stored as a row (high 64 bits, low 64
bits) of a ``uint64`` array of shape (n, 2). An IPv4 address a.b.c.d becomes the
IPv4-mapped ``::ffff:a.b.c.d``, so ``1.2.3.4`` and ``::ffff:1.2.3.4`` have the same key.
Each item gets a status byte, ``Status.OK`` or ``Status.INVALID_ADDRESS``; an invalid
item's key is (0, 0). No item content raises: only a bad call does.

Accepted syntax, the same as ``ipaddress.ip_address(text)`` except as listed below:

* IPv4: a strict dotted quad, ``0.0.0.0`` to ``255.255.255.255``. Exactly four parts of
  one to three ASCII digits, no leading zeros (``01.2.3.4`` is invalid, like
  ``inet_pton``), no sign, no whitespace.
* IPv6 (RFC 4291 section 2.2): eight groups of one to four hex digits in either case
  (leading zeros inside a group allowed), separated by ``:``. One ``::`` may stand for
  one or more groups of zeros anywhere (``::``, ``::1``, ``1::``, ``1:2:3:4:5:6:7::``),
  but not for zero groups (``1::2:3:4:5:6:7:8`` is invalid) and not twice. A single
  leading or trailing ``:`` is invalid (``:1::2``, ``1::2:``). The last 32 bits may be a
  strict dotted quad (``::ffff:1.2.3.4``, ``::1.2.3.4``, ``1:2:3:4:5:6:1.2.3.4``).
* Never longer than 45 characters (``ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255``).
  CPython added the same limit to ``ipaddress`` in 2025 (gh-128840, backported to the
  security releases); it rejects nothing that older versions accept, so every version
  agrees with this module on validity.

Deliberate differences from ``ipaddress.ip_address``:

* Scope IDs are rejected: ``fe80::1%eth0`` is invalid (``ipaddress`` accepts a zone since
  Python 3.9). A zone names a local interface; a country lookup has no use for it.
* Items must be ``str`` or ``bytes``. ``bytes`` are ASCII text (``b"1.2.3.4"``), never a
  packed 4- or 16-byte address; integers are not addresses; any other object (``None``,
  ``bytearray``, ...) is an invalid item rather than something to call ``str()`` on.
  A ``str`` subclass is read as the text it holds, not through its ``__str__``.
* :func:`parse_lines` strips spaces, tabs and ``\\r`` around each line; :func:`parse_many`
  and :func:`parse_one` strip nothing.
"""

import ipaddress
from collections.abc import Iterable, Sequence
from typing import cast

import numpy as np
import numpy.typing as npt

from lookupd.codes import Status
from lookupd.core.constants import IPV4_MAPPED_PREFIX

# "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255": the longest IPv6 text (no zone).
_MAX_ADDRESS_CHARS = 45
# 2**64 - 1: the low half of a key.
_LOW_64 = 0xFFFF_FFFF_FFFF_FFFF
# What parse_lines strips around each line: files carry \r\n line ends and stray blanks.
_LINE_BLANKS = b" \t\r"


def parse_many(
    items: Sequence[str | bytes],
    keys: npt.NDArray[np.uint64],
    status: npt.NDArray[np.uint8],
) -> int:
    """Parse each address of ``items`` into one row of ``keys`` and one ``status`` byte.

    Items are ``str`` or ``bytes`` (ASCII text, not packed addresses), taken exactly as
    they are: no whitespace is stripped. Anything else, or text that is not an address,
    is an invalid item: its status is 2 (``Status.INVALID_ADDRESS``), its key (0, 0).

    Args:
        items: a sequence (a list or tuple is read without a copy) of ``str`` or ``bytes``.
        keys: C-contiguous, writable ``uint64`` array of shape (len(items), 2).
        status: C-contiguous, writable ``uint8`` array of length len(items).

    Returns:
        The number of invalid items.

    Raises:
        TypeError: if ``items`` is not a sequence, or is a single ``str``/``bytes``, or
            ``keys``/``status`` is not a buffer.
        ValueError: if ``keys`` or ``status`` has the wrong length, shape, dtype or
            layout, or is read-only.
    """
    sequence = _sequence_of(items)
    rows = _key_rows(keys)
    codes = _status_bytes(status)
    _check_outputs(len(sequence), "items", rows, codes)
    return _fill(map(_key_of_item, sequence), rows, codes)


def parse_one(item: str | bytes) -> int | None:
    """Return the 128-bit key of one address, or None if ``item`` is not one.

    The syntax is that of :func:`parse_many` (no whitespace is stripped).

    Raises:
        TypeError: if ``item`` is neither ``str`` nor ``bytes``.
    """
    if not isinstance(item, (str, bytes)):
        msg = f"item must be str or bytes, not {type(item).__name__}"
        raise TypeError(msg)
    return _key_of_item(item)


def count_lines(text: bytes | bytearray | memoryview) -> int:
    """Return the number of lines in ``text``, as :func:`parse_lines` splits it.

    Lines end at ``b"\\n"``; a last line without one counts, and text ending in
    ``b"\\n"`` has no extra empty line after it. Blank lines count.

    Raises:
        TypeError: if ``text`` is not a bytes-like object.
        ValueError: if ``text`` is not a C-contiguous 1-D buffer of bytes.
    """
    data = _text_bytes(text)
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def parse_lines(
    text: bytes | bytearray | memoryview,
    keys: npt.NDArray[np.uint64],
    status: npt.NDArray[np.uint8],
) -> int:
    """Parse newline-separated addresses in ``text``, one row of ``keys`` per line.

    Lines are split as by :func:`count_lines`. Unlike :func:`parse_many`, each line is
    stripped of surrounding spaces, tabs and ``\\r`` first: files carry ``\\r\\n`` line
    ends and stray spaces. A blank line is an invalid item, so row i is always line i + 1.
    (The compiled core runs this without the GIL; this twin holds it.)

    Args:
        text: a C-contiguous bytes-like object (``bytes``, ``bytearray``, ``memoryview``).
        keys: C-contiguous, writable ``uint64`` array of shape (count_lines(text), 2).
        status: C-contiguous, writable ``uint8`` array of length count_lines(text).

    Returns:
        The number of invalid lines.

    Raises:
        TypeError: if ``text``, ``keys`` or ``status`` is not a buffer.
        ValueError: if ``keys`` or ``status`` does not have one row per line, or has the
            wrong shape, dtype or layout, or is read-only; or ``text`` is not 1-D bytes.
    """
    data = _text_bytes(text)
    rows = _key_rows(keys)
    codes = _status_bytes(status)
    lines = data.split(b"\n")
    if lines[-1] == b"":  # text ending in "\n", or no text at all
        lines.pop()
    _check_outputs(len(lines), "lines", rows, codes)
    return _fill((_key_of_item(line.strip(_LINE_BLANKS)) for line in lines), rows, codes)


def scan_fields(message: bytes | bytearray | memoryview, field: int) -> tuple[int, int]:
    """Count the fields of a serialized protobuf message without decoding it.

    Returns:
        (occurrences of field number ``field`` as a length-delimited field, occurrences of
        every other field), or (-1, -1) if ``message`` is not well-formed wire format: a
        truncated varint or field, a length past the end, a group, field number 0, or
        ``field`` with another wire type.

    Raises:
        TypeError: if ``message`` is not a buffer.
        ValueError: if ``message`` is not a C-contiguous 1-D buffer of bytes.
    """
    fields = _fields(_text_bytes(message), field)
    if fields is None:
        return -1, -1
    return len(fields[0]), fields[1]


def parse_fields(
    message: bytes | bytearray | memoryview,
    field: int,
    keys: npt.NDArray[np.uint64],
    status: npt.NDArray[np.uint8],
) -> int:
    """Parse each length-delimited field ``field`` of a protobuf message as an address.

    Each field's bytes are parsed as :func:`parse_many` parses a ``bytes`` item: exactly,
    nothing stripped. Other fields are skipped. (The compiled core runs this without the
    GIL; this twin holds it.)

    Args:
        message: the serialized message (a C-contiguous bytes-like object).
        keys: C-contiguous, writable ``uint64`` array of shape (count, 2), count being
            the first number :func:`scan_fields` returns.
        status: C-contiguous, writable ``uint8`` array of length count.

    Returns:
        The number of invalid addresses.

    Raises:
        TypeError: if an argument is not a buffer.
        ValueError: if ``message`` is not well-formed (see :func:`scan_fields`), or
            ``keys``/``status`` does not have one row per field or has the wrong shape,
            dtype or layout, or is read-only.
    """
    data = _text_bytes(message)
    rows = _key_rows(keys)
    codes = _status_bytes(status)
    fields = _fields(data, field)
    if fields is None:
        msg = "message is not well-formed protobuf wire format"
        raise ValueError(msg)
    _check_outputs(len(fields[0]), "fields", rows, codes)
    return _fill((_key_of_item(item) for item in fields[0]), rows, codes)


_MAX_FIELD_NUMBER = (1 << 29) - 1


def _fields(data: bytes, field: int) -> tuple[list[bytes], int] | None:
    """The payloads of length-delimited field ``field`` and the count of other fields, or
    None if ``data`` is not well-formed wire format."""
    payloads: list[bytes] = []
    others = 0
    at = 0
    while at < len(data):
        tag, at = _varint(data, at)
        if at < 0:
            return None
        number, wire = tag >> 3, tag & 7
        if number == 0 or number > _MAX_FIELD_NUMBER:
            return None
        if wire == 2:
            length, at = _varint(data, at)
            if at < 0 or length > len(data) - at:
                return None
            if number == field:
                payloads.append(data[at : at + length])
            else:
                others += 1
            at += length
            continue
        if number == field:
            return None
        if wire == 0:
            _, at = _varint(data, at)
            if at < 0:
                return None
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if len(data) - at < width:
                return None
            at += width
        else:  # groups (3, 4) and the unassigned wire types 6 and 7
            return None
        others += 1
    return payloads, others


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """Decode the varint at ``at``: (value, position after it), or (0, -1) if it runs past
    the end or past 10 bytes."""
    value = 0
    for shift in range(0, 64, 7):
        if at >= len(data):
            return 0, -1
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & _LOW_64, at
    return 0, -1


def _key_of_item(item: object) -> int | None:
    """Return the key of an address item, or None for anything that is not one."""
    if isinstance(item, str):
        text = str.__str__(item)  # the text itself, never a subclass's __str__
    elif isinstance(item, bytes):
        try:
            text = bytes.decode(item, "ascii")
        except UnicodeDecodeError:
            return None
    else:
        return None
    # A zone ("%eth0") is refused on purpose; anything longer than 45 characters or not
    # ASCII cannot be an address, and refusing it early keeps huge items cheap.
    if len(text) > _MAX_ADDRESS_CHARS or not text.isascii() or "%" in text:
        return None
    try:
        # ip_address tries IPv4 and then IPv6; text with a ':' can only be IPv6 and text
        # without one only IPv4, so picking the class up front gives the same answers.
        if ":" in text:
            return int(ipaddress.IPv6Address(text))
        return IPV4_MAPPED_PREFIX | int(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def _fill(
    parsed: Iterable[int | None],
    rows: npt.NDArray[np.uint64],
    codes: npt.NDArray[np.uint8],
) -> int:
    invalid = 0
    for i, key in enumerate(parsed):
        if key is None:
            rows[i] = 0
            codes[i] = Status.INVALID_ADDRESS
            invalid += 1
        else:
            rows[i, 0] = key >> 64
            rows[i, 1] = key & _LOW_64
            codes[i] = Status.OK
    return invalid


def _sequence_of(items: object) -> Sequence[object]:
    """Check ``items`` as the compiled core does (``PySequence_Check``) and list it."""
    if isinstance(items, (str, bytes, bytearray)):
        msg = f"items must be a sequence of addresses, not a single {type(items).__name__}"
        raise TypeError(msg)
    if isinstance(items, dict) or not hasattr(type(items), "__getitem__"):
        msg = f"items must be a sequence of str or bytes, not {type(items).__name__}"
        raise TypeError(msg)
    if isinstance(items, (list, tuple)):
        return items
    return list(cast(Iterable[object], items))


def _key_rows(keys: object) -> npt.NDArray[np.uint64]:
    return _writable_buffer(keys, "keys", ndim=2, kinds="u", itemsize=8).view(np.uint64)


def _status_bytes(status: object) -> npt.NDArray[np.uint8]:
    # Like the compiled core's uint8_t[::1], a bool array is accepted as bytes.
    return _writable_buffer(status, "status", ndim=1, kinds="ub", itemsize=1).view(np.uint8)


def _writable_buffer(
    obj: object, name: str, *, ndim: int, kinds: str, itemsize: int
) -> npt.NDArray[np.generic]:
    """View ``obj`` as an ndarray after the checks a Cython typed memoryview makes."""
    if obj is None:
        msg = f"{name} must be a {'uint64' if itemsize == 8 else 'uint8'} array, not None"
        raise TypeError(msg)
    view = memoryview(obj)  # type: ignore[arg-type]  # TypeError for non-buffers
    if view.ndim != ndim:
        msg = f"{name}: Buffer has wrong number of dimensions (expected {ndim}, got {view.ndim})"
        raise ValueError(msg)
    if not (view.format == "c" and itemsize == 1):  # Cython takes "c" as an unsigned byte
        dtype = _dtype_of(view, name)
        if dtype.kind not in kinds or dtype.itemsize != itemsize or not dtype.isnative:
            msg = f"{name}: Buffer dtype mismatch, expected uint{8 * itemsize} but got {dtype}"
            raise ValueError(msg)
    if not view.c_contiguous:
        msg = f"{name}: buffer is not C-contiguous"
        raise ValueError(msg)
    if view.readonly:
        msg = f"{name}: buffer source array is read-only"
        raise ValueError(msg)
    return np.asarray(view)


def _text_bytes(text: object) -> bytes:
    if text is None:
        msg = "text must be a bytes-like object, not None"
        raise TypeError(msg)
    view = memoryview(text)  # type: ignore[arg-type]  # TypeError for non-buffers
    if view.ndim != 1:
        msg = f"text: Buffer has wrong number of dimensions (expected 1, got {view.ndim})"
        raise ValueError(msg)
    if view.format != "c":  # Cython takes "c" as an unsigned byte
        dtype = _dtype_of(view, "text")
        if dtype.kind not in "ub" or dtype.itemsize != 1:
            msg = f"text: Buffer dtype mismatch, expected bytes but got {dtype}"
            raise ValueError(msg)
    if not view.c_contiguous:
        msg = "text: buffer is not C-contiguous"
        raise ValueError(msg)
    return view.tobytes()


def _dtype_of(view: memoryview, name: str) -> np.dtype[np.generic]:
    try:
        return np.dtype(view.format)
    except TypeError:
        msg = f"{name}: Buffer dtype mismatch, unsupported format {view.format!r}"
        raise ValueError(msg) from None


def _check_outputs(
    n: int, what: str, rows: npt.NDArray[np.uint64], codes: npt.NDArray[np.uint8]
) -> None:
    if rows.shape[1] != 2:
        msg = f"keys must have shape (n, 2), not ({rows.shape[0]}, {rows.shape[1]})"
        raise ValueError(msg)
    if rows.shape[0] != n:
        msg = f"keys has {rows.shape[0]} rows but there are {n} {what}"
        raise ValueError(msg)
    if codes.shape[0] != n:
        msg = f"status has {codes.shape[0]} entries but there are {n} {what}"
        raise ValueError(msg)
