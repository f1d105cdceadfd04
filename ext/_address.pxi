# Address text to 128-bit keys: the parser both compiled cores share (included, not built).
#
# ``_parse_c.pyx`` parses with it; ``_search_c.pyx`` includes it too, so that ``answer_names``
# parses, searches and names a batch of ``str`` in one pass without a call between modules.
# One text, so both modules accept and refuse exactly the same addresses. The accepted syntax
# and every deliberate difference from ``ipaddress.ip_address`` are described in
# lookupd/core/_parse_py.py.

from cpython.object cimport PyObject
from libc.stdint cimport uint8_t, uint32_t, uint64_t


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
    # Status codes, as lookupd.codes.Status (each including module checks them at import):
    # OK, INVALID_ADDRESS.
    _OK = 1
    _INVALID = 2
    # "255.255.255.255": the longest dotted quad.
    _MAX_V4_CHARS = 15
    # "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255": the longest IPv6 text (no zone).
    _MAX_V6_CHARS = 45
    # _parse_objects prefetches the item this many places ahead, so that the cache misses
    # of scattered str objects overlap; further ahead gained nothing, and lists in
    # allocation order are unaffected (chosen by measurement: see bench/README.md, "Before
    # and after").
    _PREFETCH_AHEAD = 16

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


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _parse_objects(PyObject** objs, Py_ssize_t n, Py_ssize_t limit,
                               uint64_t* keys, uint8_t* status) noexcept:
    """Parse n borrowed objects; runs with the GIL held, since it reads Python objects.

    ``limit`` (>= n) is how many objects from ``objs`` on may be prefetched: a caller that
    parses a long sequence a part at a time lets each part look into the next.
    """
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
        ahead = <const char*>objs[min(i + _PREFETCH_AHEAD, limit - 1)]
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
