"""Parse IPv4 and IPv6 text into 128-bit keys: the compiled twin of lookupd.core._parse_py.

The accepted syntax, the key layout and every deliberate difference from
``ipaddress.ip_address`` are described in lookupd/core/_parse_py.py; both modules must agree
on every input. The parser is hand-rolled (no ``inet_pton``): it reads at most 45 bytes
of an item, so any bytes, of any length, are safe to give it.
"""

cimport cython
from cpython.object cimport PyObject
from cpython.sequence cimport (
    PySequence_Check,
    PySequence_Fast,
    PySequence_Fast_GET_SIZE,
    PySequence_Fast_ITEMS,
)
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memchr

from lookupd.codes import Status


cdef extern from "Python.h":
    # Declared on borrowed PyObject* so the hot loop does no reference counting.
    bint PyUnicode_Check(PyObject* o) noexcept nogil
    bint PyUnicode_IS_COMPACT_ASCII(PyObject* o) noexcept nogil
    bint PyUnicode_IS_ASCII(PyObject* o) noexcept nogil
    void* PyUnicode_DATA(PyObject* o) noexcept nogil
    Py_ssize_t PyUnicode_GET_LENGTH(PyObject* o) noexcept nogil
    bint PyBytes_Check(PyObject* o) noexcept nogil
    char* PyBytes_AS_STRING(PyObject* o) noexcept nogil
    Py_ssize_t PyBytes_GET_SIZE(PyObject* o) noexcept nogil
    # The header of a compact ASCII str, whose characters follow it in the same block.
    ctypedef struct PyASCIIObject:
        pass


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


cdef extern from *:
    """
    /* Start loading the cache line that holds p; only a hint, so a no-op is a valid fallback. */
    #if defined(__GNUC__) || defined(__clang__)
    #define lookupd_prefetch(p) __builtin_prefetch((const void *)(p), 0, 3)
    #else
    #define lookupd_prefetch(p) ((void)(p))
    #endif
    """
    void _prefetch "lookupd_prefetch"(const void* p) noexcept nogil


# Compile-time constants (an enum, not module globals, so the C compiler folds them).
cdef enum:
    # Status codes, as lookupd.codes.Status (checked at import below): OK, INVALID_ADDRESS.
    _OK = 1
    _INVALID = 2
    # "255.255.255.255": the longest dotted quad.
    _MAX_V4_CHARS = 15
    # "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255": the longest IPv6 text (no zone).
    _MAX_V6_CHARS = 45
    # parse_many prefetches the item this many places ahead, so that the cache misses of
    # scattered str objects overlap; further ahead gained nothing, and lists in allocation
    # order are unaffected (chosen by measurement: see bench/README.md, "Before and after").
    _PREFETCH_AHEAD = 16
    # 2**29 - 1: the largest protobuf field number.
    _MAX_FIELD_NUMBER = 0x1FFFFFFF

if (Status.OK, Status.INVALID_ADDRESS) != (_OK, _INVALID):
    raise ImportError(
        f"lookupd.core._parse_c was built for statuses {(_OK, _INVALID)} but lookupd.codes "
        f"numbers them {(int(Status.OK), int(Status.INVALID_ADDRESS))}: rebuild the extension"
    )

# Value of each byte as a hex digit; 16 for every byte that is not one.
cdef uint8_t _HEX_VALUE[256]


cdef void _fill_hex_table() noexcept:
    cdef int c
    for c in range(256):
        _HEX_VALUE[c] = 16
    for c in range(10):
        _HEX_VALUE[ord("0") + c] = c
    for c in range(6):
        _HEX_VALUE[ord("a") + c] = 10 + c
        _HEX_VALUE[ord("A") + c] = 10 + c


_fill_hex_table()


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
        return _parse_objects(<PyObject**>PySequence_Fast_ITEMS(seq), n, &rows[0, 0], &codes[0])


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


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _parse_objects(PyObject** objs, Py_ssize_t n, uint64_t* keys,
                               uint8_t* status) noexcept:
    """Parse n borrowed objects; runs with the GIL held, since it reads Python objects."""
    cdef Py_ssize_t i
    cdef Py_ssize_t invalid = 0
    cdef const char* s
    cdef Py_ssize_t size
    cdef uint64_t* row
    cdef bint ok
    cdef const char* ahead
    for i in range(n):
        # A list built out of order (shuffled, sorted by another key, gathered from a dict)
        # holds strs scattered over the heap, and each read of one misses the cache. Ask
        # for a later item's lines now, so that many misses overlap instead of one at a
        # time: the header, and the last byte of the longest IPv4 (15) and IPv6 (45) text,
        # which follows the header of a compact ASCII str (bytes keep theirs closer).
        ahead = <const char*>objs[min(i + _PREFETCH_AHEAD, n - 1)]
        _prefetch(ahead)
        _prefetch(ahead + sizeof(PyASCIIObject) + _MAX_V4_CHARS - 1)
        _prefetch(ahead + sizeof(PyASCIIObject) + _MAX_V6_CHARS - 1)
        row = keys + 2 * i
        ok = _text_of(objs[i], &s, &size) and _parse_address(s, size, &row[0], &row[1])
        if not ok:
            row[0] = 0
            row[1] = 0
            invalid += 1
        status[i] = _OK if ok else _INVALID
    return invalid


cdef inline bint _text_of(PyObject* o, const char** s, Py_ssize_t* n) noexcept:
    """Point ``s``/``n`` at the text of an ASCII str or a bytes object; else return False."""
    if PyUnicode_Check(o):
        # Compact ASCII is every exact str of ASCII text; subclasses take the slower
        # macro. The ascii flag is only ever set on ready strings, so the data exists.
        if PyUnicode_IS_COMPACT_ASCII(o) or PyUnicode_IS_ASCII(o):
            s[0] = <const char*>PyUnicode_DATA(o)
            n[0] = PyUnicode_GET_LENGTH(o)
            return True
        return False
    if PyBytes_Check(o):
        s[0] = PyBytes_AS_STRING(o)
        n[0] = PyBytes_GET_SIZE(o)
        return True
    return False


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


cdef inline bint _parse_address(const char* s, Py_ssize_t n, uint64_t* hi,
                                uint64_t* lo) noexcept nogil:
    """Parse IPv4 or IPv6 text into a 128-bit key; on failure hi/lo hold garbage."""
    cdef uint32_t v4
    if _parse_v4(s, n, &v4):
        hi[0] = 0
        lo[0] = 0xFFFF00000000ULL | v4  # ::ffff:0:0/96, IPv4-mapped: ::ffff:a.b.c.d
        return True
    return _parse_v6(s, n, hi, lo)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline bint _parse_v4(const char* s, Py_ssize_t n, uint32_t* out) noexcept nogil:
    """Parse a strict dotted quad: four parts 0-255, ASCII digits, no leading zeros."""
    if n < 7 or n > _MAX_V4_CHARS:  # 7: "0.0.0.0"
        return False
    cdef const unsigned char* p = <const unsigned char*>s
    cdef Py_ssize_t i = 0
    cdef uint32_t result = 0
    cdef uint32_t value, digit
    cdef int part
    for part in range(4):
        if part:
            if i >= n or p[i] != ord("."):
                return False
            i += 1
        # Unsigned wrap-around turns every non-digit into a value above 9.
        if i >= n:
            return False
        value = p[i] - ord("0")
        if value > 9:
            return False
        i += 1
        if i < n:
            digit = p[i] - ord("0")
            if digit <= 9:
                if value == 0:  # a leading zero, as inet_pton and ipaddress reject
                    return False
                value = value * 10 + digit
                i += 1
                if i < n:
                    digit = p[i] - ord("0")
                    if digit <= 9:
                        value = value * 10 + digit
                        i += 1
                        if value > 255:
                            return False
        result = (result << 8) | value
    if i != n:  # a fourth digit, a fifth part, or any other trailing byte
        return False
    out[0] = result
    return True


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline bint _parse_v6(const char* s, Py_ssize_t n, uint64_t* hi,
                           uint64_t* lo) noexcept nogil:
    """Parse RFC 4291 IPv6 text: 1-4 hex digits per group, one '::', a dotted-quad tail."""
    if n < 2 or n > _MAX_V6_CHARS:  # 2: "::"
        return False
    cdef const unsigned char* p = <const unsigned char*>s
    cdef uint32_t groups[8]
    cdef int count = 0  # groups written so far
    cdef int gap = -1  # number of groups before the '::', if there is one
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t start
    cdef uint32_t value, digit, v4
    if p[0] == ord(":"):
        if p[1] != ord(":"):  # a leading ':' is only allowed as part of '::'
            return False
        gap = 0
        i = 2
    while i < n:
        if count == 8:
            return False
        start = i
        value = 0
        while i < n and i - start < 5:
            digit = _HEX_VALUE[p[i]]
            if digit > 15:
                break
            value = (value << 4) | digit
            i += 1
        if i < n and p[i] == ord("."):
            # A dotted quad is the last 32 bits: it must end the text and fit.
            if count > 6 or not _parse_v4(s + start, n - start, &v4):
                return False
            groups[count] = v4 >> 16
            groups[count + 1] = v4 & 0xFFFF
            count += 2
            break
        if i == start or i - start > 4:
            return False
        groups[count] = value
        count += 1
        if i == n:
            break
        if p[i] != ord(":"):
            return False
        i += 1
        if i == n:  # a trailing ':' is only allowed as part of '::'
            return False
        if p[i] == ord(":"):
            if gap >= 0:  # at most one '::'
                return False
            gap = count
            i += 1
    if gap < 0:
        if count != 8:
            return False
    elif count == 8:  # '::' must stand for at least one group of zeros
        return False
    else:
        _expand_gap(groups, count, gap)
    hi[0] = (<uint64_t>groups[0] << 48) | (<uint64_t>groups[1] << 32) \
        | (<uint64_t>groups[2] << 16) | groups[3]
    lo[0] = (<uint64_t>groups[4] << 48) | (<uint64_t>groups[5] << 32) \
        | (<uint64_t>groups[6] << 16) | groups[7]
    return True


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline void _expand_gap(uint32_t* groups, int count, int gap) noexcept nogil:
    """Move the groups after '::' to the end of the 8 and fill the gap with zeros."""
    cdef int shift = 8 - count
    cdef int j
    for j in range(count - 1, gap - 1, -1):
        groups[j + shift] = groups[j]
    for j in range(gap, gap + shift):
        groups[j] = 0
