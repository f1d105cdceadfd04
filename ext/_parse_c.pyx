"""Parse IPv4 and IPv6 text into 128-bit keys: the compiled twin of lookupd.core._parse_py.

The accepted syntax, the key layout and every deliberate difference from
``ipaddress.ip_address`` are described in lookupd/core/_parse_py.py; both modules must agree
on every input. The parser is hand-rolled (no ``inet_pton``): it reads at most 45 bytes
of an item, so any bytes, of any length, are safe to give it.
"""

cimport cython
from cpython.sequence cimport (
    PySequence_Check,
    PySequence_Fast,
    PySequence_Fast_GET_SIZE,
    PySequence_Fast_ITEMS,
)
from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memchr

from lookupd.codes import Status


cdef extern from *:
    """
    #ifndef __SIZEOF_INT128__
    #error "lookupd.core._parse_c needs unsigned __int128 (gcc or clang on a 64-bit target)"
    #endif
    typedef unsigned __int128 lookupd_u128;
    """
    # Declared as a narrower type, which Cython allows for an external typedef: its
    # conversion to a Python int checks the real size and builds a 128-bit int in one step.
    ctypedef unsigned long long _u128 "lookupd_u128"


# The parser itself (shared with _search_c): _parse_objects, _text_of, _parse_address.
include "_address.pxi"

cdef enum:
    # 2**29 - 1: the largest protobuf field number.
    _MAX_FIELD_NUMBER = 0x1FFFFFFF

if (Status.OK, Status.INVALID_ADDRESS) != (_OK, _INVALID):
    raise ImportError(
        f"lookupd.core._parse_c was built for statuses {(_OK, _INVALID)} but lookupd.codes "
        f"numbers them {(int(Status.OK), int(Status.INVALID_ADDRESS))}: rebuild the extension"
    )


def parse_many(items, keys, status) -> int:
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
    if isinstance(items, (str, bytes, bytearray)):
        msg = f"items must be a sequence of addresses, not a single {type(items).__name__}"
        raise TypeError(msg)
    if not PySequence_Check(items):
        msg = f"items must be a sequence of str or bytes, not {type(items).__name__}"
        raise TypeError(msg)
    seq = PySequence_Fast(items, b"items must be a sequence of str or bytes")
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(seq)
    cdef uint64_t[:, ::1] rows = _key_rows(keys)
    cdef uint8_t[::1] codes = _status_bytes(status)
    _check_outputs(n, "items", rows, codes)
    if n == 0:
        return 0
    # The items are borrowed: on a free-threaded build, lock the list so no other thread
    # can drop one while it is read (a no-op under the GIL).
    with cython.critical_section(seq):
        return _parse_objects(<PyObject**>PySequence_Fast_ITEMS(seq), n, n, &rows[0, 0],
                              &codes[0])


def parse_one(item) -> int | None:
    """Return the 128-bit key of one address, or None if ``item`` is not one.

    The syntax is that of :func:`parse_many` (no whitespace is stripped).

    Raises:
        TypeError: if ``item`` is neither ``str`` nor ``bytes``.
    """
    cdef const char* s
    cdef Py_ssize_t n
    cdef uint64_t hi, lo
    cdef PyObject* o = <PyObject*>item
    if not _text_of(o, &s, &n):
        if PyUnicode_Check(o):
            return None  # non-ASCII text is never an address
        msg = f"item must be str or bytes, not {type(item).__name__}"
        raise TypeError(msg)
    if not _parse_address(s, n, &hi, &lo):
        return None
    if hi == 0:  # a key that fits 64 bits, as every IPv4 address does
        return lo
    # One int built from 128 bits, not four from shifts and ors. The typed variable makes
    # Cython convert the 128-bit type, not the 64-bit one it is declared as.
    cdef _u128 whole = (<_u128>hi << 64) | lo
    return whole


def count_lines(text) -> int:
    """Return the number of lines in ``text``, as :func:`parse_lines` splits it.

    Lines end at ``b"\\n"``; a last line without one counts, and text ending in
    ``b"\\n"`` has no extra empty line after it. Blank lines count.

    Raises:
        TypeError: if ``text`` is not a bytes-like object.
        ValueError: if ``text`` is not a C-contiguous 1-D buffer of bytes.
    """
    cdef const unsigned char[::1] data = _text_bytes(text)
    cdef Py_ssize_t count
    with nogil:
        count = _count_lines(&data[0] if data.shape[0] else NULL, data.shape[0])
    return count


def parse_lines(text, keys, status) -> int:
    """Parse newline-separated addresses in ``text``, one row of ``keys`` per line.

    Lines are split as by :func:`count_lines`. Unlike :func:`parse_many`, each line is
    stripped of surrounding spaces, tabs and ``\\r`` first: files carry ``\\r\\n`` line
    ends and stray spaces. A blank line is an invalid item, so row i is always line i + 1.
    Runs without the GIL.

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
    cdef const unsigned char[::1] data = _text_bytes(text)
    cdef uint64_t[:, ::1] rows = _key_rows(keys)
    cdef uint8_t[::1] codes = _status_bytes(status)
    cdef Py_ssize_t size = data.shape[0]
    cdef const char* chars = <const char*>&data[0] if size else NULL
    cdef Py_ssize_t n
    with nogil:
        n = _count_lines(<const unsigned char*>chars, size)
    _check_outputs(n, "lines", rows, codes)
    if n == 0:
        return 0
    cdef Py_ssize_t invalid
    with nogil:
        invalid = _parse_text(chars, size, &rows[0, 0], &codes[0])
    return invalid


def scan_fields(message, field) -> tuple[int, int]:
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
    cdef const unsigned char[::1] data = _text_bytes(message)
    cdef Py_ssize_t size = data.shape[0]
    cdef Py_ssize_t others = 0
    cdef Py_ssize_t invalid = 0
    cdef Py_ssize_t count
    cdef uint64_t number = field
    with nogil:
        count = _scan_fields(&data[0] if size else NULL, size, number, &others, NULL, NULL,
                             &invalid)
    if count < 0:
        return (-1, -1)
    return (count, others)


def parse_fields(message, field, keys, status) -> int:
    """Parse each length-delimited field ``field`` of a protobuf message as an address.

    Each field's bytes are parsed as :func:`parse_many` parses a ``bytes`` item: exactly,
    nothing stripped. Other fields are skipped. Runs without the GIL.

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
    cdef const unsigned char[::1] data = _text_bytes(message)
    cdef uint64_t[:, ::1] rows = _key_rows(keys)
    cdef uint8_t[::1] codes = _status_bytes(status)
    cdef Py_ssize_t size = data.shape[0]
    cdef const unsigned char* start = &data[0] if size else NULL
    cdef Py_ssize_t others = 0
    cdef Py_ssize_t invalid = 0
    cdef Py_ssize_t n
    cdef uint64_t number = field
    with nogil:
        n = _scan_fields(start, size, number, &others, NULL, NULL, &invalid)
    if n < 0:
        raise ValueError("message is not well-formed protobuf wire format")
    _check_outputs(n, "fields", rows, codes)
    if n == 0:
        return 0
    with nogil:
        _scan_fields(start, size, number, &others, &rows[0, 0], &codes[0], &invalid)
    return invalid


cdef inline const unsigned char* _varint(const unsigned char* p, const unsigned char* end,
                                         uint64_t* out) noexcept nogil:
    """Decode a varint at p; return the byte after it, or NULL if it runs past end or 10
    bytes."""
    cdef uint64_t value = 0
    cdef int shift = 0
    while p < end and shift < 64:
        value |= <uint64_t>(p[0] & 0x7F) << shift
        if p[0] < 0x80:
            out[0] = value
            return p + 1
        p += 1
        shift += 7
    return NULL


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _scan_fields(const unsigned char* p, Py_ssize_t size, uint64_t field,
                             Py_ssize_t* others, uint64_t* keys, uint8_t* status,
                             Py_ssize_t* invalid) noexcept nogil:
    """Walk the wire format: count (and with ``keys``, parse) field ``field``; -1 if
    malformed. Every read is bounds-checked against ``size`` first."""
    cdef const unsigned char* end = p + size
    cdef Py_ssize_t count = 0
    cdef uint64_t tag, number, wire, length
    cdef uint64_t value
    cdef uint64_t* row
    cdef bint ok
    while p < end:
        p = _varint(p, end, &tag)
        if p == NULL:
            return -1
        number = tag >> 3
        wire = tag & 7
        if number == 0 or number > _MAX_FIELD_NUMBER:
            return -1
        if wire == 2:
            p = _varint(p, end, &length)
            if p == NULL or length > <uint64_t>(end - p):
                return -1
            if number == field:
                if keys != NULL:
                    row = keys + 2 * count
                    ok = _parse_address(<const char*>p, <Py_ssize_t>length, &row[0], &row[1])
                    if not ok:
                        row[0] = 0
                        row[1] = 0
                        invalid[0] += 1
                    status[count] = _OK if ok else _INVALID
                count += 1
            else:
                others[0] += 1
            p += length
            continue
        if number == field:
            return -1
        if wire == 0:
            p = _varint(p, end, &value)
            if p == NULL:
                return -1
        elif wire == 1:
            if end - p < 8:
                return -1
            p += 8
        elif wire == 5:
            if end - p < 4:
                return -1
            p += 4
        else:  # groups (3, 4) and the unassigned wire types 6 and 7
            return -1
        others[0] += 1
    return count


# The three buffer conversions name the argument in their errors and turn the
# BufferError a non-contiguous memoryview raises into the ValueError every other
# layout problem raises.
cdef uint64_t[:, ::1] _key_rows(object keys):
    if keys is None:
        raise TypeError("keys must be a uint64 array, not None")
    cdef uint64_t[:, ::1] rows
    try:
        rows = keys
    except (ValueError, BufferError) as exc:
        msg = f"keys: {exc}"
        raise ValueError(msg) from None
    return rows


cdef uint8_t[::1] _status_bytes(object status):
    if status is None:
        raise TypeError("status must be a uint8 array, not None")
    cdef uint8_t[::1] codes
    try:
        codes = status
    except (ValueError, BufferError) as exc:
        msg = f"status: {exc}"
        raise ValueError(msg) from None
    return codes


cdef const unsigned char[::1] _text_bytes(object text):
    if text is None:
        raise TypeError("text must be a bytes-like object, not None")
    cdef const unsigned char[::1] data
    try:
        data = text
    except (ValueError, BufferError) as exc:
        msg = f"text: {exc}"
        raise ValueError(msg) from None
    return data


cdef int _check_outputs(Py_ssize_t n, str what, uint64_t[:, ::1] rows,
                        uint8_t[::1] codes) except -1:
    if rows.shape[1] != 2:
        msg = f"keys must have shape (n, 2), not ({rows.shape[0]}, {rows.shape[1]})"
        raise ValueError(msg)
    if rows.shape[0] != n:
        msg = f"keys has {rows.shape[0]} rows but there are {n} {what}"
        raise ValueError(msg)
    if codes.shape[0] != n:
        msg = f"status has {codes.shape[0]} entries but there are {n} {what}"
        raise ValueError(msg)
    return 0


cdef Py_ssize_t _count_lines(const unsigned char* text, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t count = 0
    cdef const unsigned char* p = text
    cdef const unsigned char* end = text + size
    cdef const unsigned char* nl
    while p < end:
        nl = <const unsigned char*>memchr(p, ord("\n"), end - p)
        count += 1
        if nl == NULL:
            break
        p = nl + 1
    return count


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _parse_text(const char* text, Py_ssize_t size, uint64_t* keys,
                            uint8_t* status) noexcept nogil:
    """Parse each stripped line of ``text``; the caller sized the outputs by _count_lines."""
    cdef const char* p = text
    cdef const char* end = text + size
    cdef const char* line_end
    cdef const char* first
    cdef const char* last
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t invalid = 0
    cdef uint64_t* row
    cdef bint ok
    while p < end:
        line_end = <const char*>memchr(p, ord("\n"), end - p)
        if line_end == NULL:
            line_end = end
        first = p
        last = line_end
        while first < last and _is_blank(first[0]):
            first += 1
        while last > first and _is_blank((last - 1)[0]):
            last -= 1
        row = keys + 2 * i
        ok = _parse_address(first, last - first, &row[0], &row[1])
        if not ok:
            row[0] = 0
            row[1] = 0
            invalid += 1
        status[i] = _OK if ok else _INVALID
        i += 1
        p = line_end + 1
    return invalid


cdef inline bint _is_blank(char c) noexcept nogil:
    # The whitespace parse_lines strips: space, tab and the \r of \r\n line ends.
    return c == c" " or c == c"\t" or c == c"\r"
