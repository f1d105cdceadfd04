"""Walk a MaxMind DB search tree and label its data records: the compiled twin of _mmdb_py.

Same names, signatures, answers and errors as lookupd.core._mmdb_py (see _mmdb_c.pyi); the
argument checks and the messages are the twin's own. The search tree is walked depth first
with a fixed stack (a path is at most 128 nodes long) and a byte per node marking it reached;
each data record is walked once, in place, without building a Python object: a record is
checked in full (as maxminddb would decode it) and only the spans of the few strings a
label needs come out.
"""

cimport cython
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp

import numpy as np

from lookupd.core._mmdb_py import (
    ALIAS_DEPTH,
    BAD_DATA,
    KEY_NOT_A_STRING,
    KIND_COUNTRY,
    KIND_COUNTRY_CODE,
    KIND_NONE,
    KIND_REGISTERED_COUNTRY,
    NOT_UTF8,
    REACHED_TWICE,
    TOO_DEEP_DATA,
    TOO_DEEP_TREE,
    TOO_LARGE,
    TOO_MANY_VALUES,
    UNEXPECTED_TYPE,
    _check_outputs,
    _check_shape,
)

__all__ = ["find_labels", "walk_tree"]

cdef enum:
    # Error codes of the nogil helpers; _raise turns them into the twin's messages.
    _OK = 0
    _BAD = 1
    _TOO_MANY = 2
    _TOO_DEEP = 3
    _TOO_LARGE = 4
    _UNEXPECTED = 5
    _KEY = 6
    _UTF8 = 7
    # maxminddb's per-record limits (its decoder.py): values, depth, string/bytes payload.
    _MAX_VALUES = 65536
    _MAX_DEPTH = 512
    _MAX_PAYLOAD = 2097152  # 2 MiB
    # Data types of the format.
    _POINTER = 1
    _STRING = 2
    _DOUBLE = 3
    _BYTES = 4
    _MAP = 7
    _INT32 = 8
    _ARRAY = 11
    _BOOLEAN = 14
    _FLOAT = 15
    # The twin's KIND_* numbers (checked at import below).
    _KIND_NONE = 0
    _KIND_COUNTRY_CODE = 1
    _KIND_COUNTRY = 2
    _KIND_REGISTERED_COUNTRY = 3
    # The top map's keys a label reads, by index.
    _COUNTRY_CODE = 0
    _COUNTRY = 1
    _REGISTERED_COUNTRY = 2
    _SUBDIVISIONS = 3
    _WANTED = 4
    # The walk's stack: a path pushes at most 2 entries per level below the popped one.
    _STACK = 320
    # ::/96 in an IPv6 tree holds IPv4.
    _ALIAS_DEPTH = 96

if (KIND_NONE, KIND_COUNTRY_CODE, KIND_COUNTRY, KIND_REGISTERED_COUNTRY, ALIAS_DEPTH) != (
    _KIND_NONE, _KIND_COUNTRY_CODE, _KIND_COUNTRY, _KIND_REGISTERED_COUNTRY, _ALIAS_DEPTH
):
    raise ImportError("lookupd.core._mmdb_c disagrees with _mmdb_py: rebuild the extension")


cdef struct _Data:
    const uint8_t* buf
    int64_t size
    int64_t values_left
    int64_t payload_left
    int64_t top[4]  # where each wanted key's value starts in the top map, or -1
    int bad_type  # the type number of an _UNEXPECTED error


cdef struct _Entry:
    uint32_t value  # a record value: a node, the empty record, or data
    int depth
    uint64_t high
    uint64_t low


def walk_tree(const uint8_t[::1] tree, node_count, record_size, ip_version):
    """Walk the search tree at the start of ``tree`` as the ``maxminddb`` readers iterate it.

    See lookupd.core._mmdb_py.walk_tree.
    """
    _check_shape(tree.shape[0], node_count, record_size, ip_version)
    cdef uint32_t nodes = node_count
    cdef int node_bytes = record_size // 4
    cdef int bits = 32 if ip_version == 4 else 128
    starts = np.empty((nodes + 1, 2), dtype=np.uint64)
    depths = np.empty(nodes + 1, dtype=np.uint8)
    records = np.empty(nodes + 1, dtype=np.uint32)
    visited = np.zeros(nodes, dtype=np.uint8)
    cdef uint64_t[:, ::1] out_starts = starts
    cdef uint8_t[::1] out_depths = depths
    cdef uint32_t[::1] out_records = records
    cdef uint8_t[::1] seen = visited
    alias_list = []
    cdef _Entry stack[_STACK]
    cdef _Entry entry, child
    cdef Py_ssize_t top = 0, found = 0
    cdef uint32_t ipv4_start = _ipv4_start(&tree[0], nodes, node_bytes, bits)
    cdef uint32_t children[2]
    cdef int side, shift
    seen[0] = 1
    stack[0] = _Entry(0, 0, 0, 0)
    top = 1
    while top:
        top -= 1
        entry = stack[top]
        if entry.value > nodes:
            out_starts[found, 0] = entry.high
            out_starts[found, 1] = entry.low
            out_depths[found] = entry.depth
            out_records[found] = entry.value
            found += 1
            continue
        if entry.value == nodes:  # an empty record
            continue
        if entry.depth == bits:
            raise ValueError(TOO_DEEP_TREE.format(bits=bits))
        _read_node(&tree[<Py_ssize_t>entry.value * node_bytes], node_bytes, children)
        # Right first: the stack pops the left child, the lower addresses, first.
        for side in range(1, -1, -1):
            child = _Entry(children[side], entry.depth + 1, entry.high, entry.low)
            if side:
                shift = bits - 1 - entry.depth
                if shift >= 64:
                    child.high |= (<uint64_t>1) << (shift - 64)
                else:
                    child.low |= (<uint64_t>1) << shift
            if child.value < nodes:
                if child.value == ipv4_start and (child.high != 0 or child.low >> 32 != 0):
                    alias_list.append((child.high, child.low, child.depth))
                    continue
                if seen[child.value]:
                    raise ValueError(REACHED_TWICE)
                seen[child.value] = 1
            stack[top] = child
            top += 1
    aliases = np.array([a[:2] for a in alias_list], dtype=np.uint64).reshape(-1, 2)
    alias_depths = np.array([a[2] for a in alias_list], dtype=np.uint8)
    return starts[:found], depths[:found], records[:found], aliases, alias_depths


cdef inline void _read_node(const uint8_t* p, int node_bytes, uint32_t* out) noexcept nogil:
    """Decode one node's (left, right) records: 24, 28 or 32 bits each, big-endian."""
    if node_bytes == 6:
        out[0] = (<uint32_t>p[0] << 16) | (<uint32_t>p[1] << 8) | p[2]
        out[1] = (<uint32_t>p[3] << 16) | (<uint32_t>p[4] << 8) | p[5]
    elif node_bytes == 7:
        # The middle byte's high nibble tops the left record, its low nibble the right.
        out[0] = ((<uint32_t>p[3] & 0xF0) << 20) | (<uint32_t>p[0] << 16) | (
            <uint32_t>p[1] << 8) | p[2]
        out[1] = ((<uint32_t>p[3] & 0x0F) << 24) | (<uint32_t>p[4] << 16) | (
            <uint32_t>p[5] << 8) | p[6]
    else:
        out[0] = (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]
        out[1] = (<uint32_t>p[4] << 24) | (<uint32_t>p[5] << 16) | (<uint32_t>p[6] << 8) | p[7]


cdef uint32_t _ipv4_start(
    const uint8_t* tree, uint32_t nodes, int node_bytes, int bits
) noexcept nogil:
    """The node the IPv4 subtree starts at, as the readers find it (see the twin)."""
    if bits != 128:
        return nodes
    cdef uint32_t node = 0
    cdef uint32_t children[2]
    cdef int _turn
    for _turn in range(_ALIAS_DEPTH):
        if node >= nodes:
            break
        _read_node(&tree[<uint64_t>node * node_bytes], node_bytes, children)
        node = children[0]
    return node


def find_labels(const uint8_t[::1] data, const uint32_t[::1] offsets,
                uint8_t[::1] kinds, uint32_t[:, ::1] spans):
    """Validate each data record and find the values its label needs.

    See lookupd.core._mmdb_py.find_labels.
    """
    _check_outputs(offsets.shape[0], (kinds.shape[0],), (spans.shape[0], spans.shape[1]))
    cdef _Data d
    d.buf = &data[0] if data.shape[0] else NULL
    d.size = data.shape[0]
    cdef Py_ssize_t i
    cdef int status = _OK
    cdef int64_t end
    cdef int kind
    with nogil:
        for i in range(offsets.shape[0]):
            d.values_left = _MAX_VALUES - 1  # the root costs one value
            d.payload_left = _MAX_PAYLOAD
            d.top[0] = d.top[1] = d.top[2] = d.top[3] = -1
            status = _typed(&d, offsets[i], 0, False, True, &end, &kind)
            if status != _OK:
                break
            kinds[i] = _label(&d, &spans[i, 0])
    if status != _OK:
        _raise(status, d.bad_type)


cdef void _raise(int status, int bad_type) except *:
    if status == _TOO_MANY:
        raise ValueError(TOO_MANY_VALUES)
    if status == _TOO_DEEP:
        raise ValueError(TOO_DEEP_DATA)
    if status == _TOO_LARGE:
        raise ValueError(TOO_LARGE)
    if status == _UNEXPECTED:
        raise ValueError(UNEXPECTED_TYPE.format(type=bad_type))
    if status == _KEY:
        raise ValueError(KEY_NOT_A_STRING)
    if status == _UTF8:
        raise ValueError(NOT_UTF8)
    raise ValueError(BAD_DATA)


cdef int _control(const _Data* d, int64_t offset, int* kind, int64_t* size,
                  int64_t* after) noexcept nogil:
    """Read a control byte (and extended type, size bytes) at ``offset``."""
    if offset < 0 or offset >= d.size:
        return _BAD
    cdef uint8_t ctrl = d.buf[offset]
    offset += 1
    kind[0] = ctrl >> 5
    if kind[0] == 0:  # extended: the next byte is the type minus 7
        if offset >= d.size:
            return _BAD
        kind[0] = 7 + d.buf[offset]
        offset += 1
    cdef int64_t n = ctrl & 0x1F
    cdef int extra, j
    cdef int64_t value = 0
    if kind[0] != _POINTER and n >= 29:
        extra = <int>n - 28  # 1, 2 or 3 size bytes follow
        if offset + extra > d.size:
            return _BAD
        for j in range(extra):
            value = (value << 8) | d.buf[offset + j]
        n = value + (29 if extra == 1 else 285 if extra == 2 else 65821)
        offset += extra
    size[0] = n
    after[0] = offset
    return _OK


cdef int _pointer(const _Data* d, int64_t offset, int64_t size, int64_t* target,
                  int64_t* after) noexcept nogil:
    """A pointer's target and the offset after it (``size``: the control byte's low bits)."""
    cdef int length = <int>((size >> 3) & 3) + 1
    if offset + length > d.size:
        return _BAD
    cdef int64_t value = 0
    cdef int j
    for j in range(length):
        value = (value << 8) | d.buf[offset + j]
    if length < 4:
        value |= (size & 7) << (8 * length)
    # Sizes 2 and 3 add a fixed bias: 2048, and 2048 + 2**19.
    value += 0 if length < 2 or length == 4 else 2048 if length == 2 else 526336
    target[0] = value
    after[0] = offset + length
    return _OK


cdef int _typed(_Data* d, int64_t offset, int depth, bint pointer_target, bint top,
                int64_t* end, int* kind_out) noexcept nogil:
    """Validate one value; set the offset after it and its type after pointers."""
    cdef int kind, key_kind, status, w
    cdef int64_t size, target, after, key_at, value_at, ignored
    status = _control(d, offset, &kind, &size, &offset)
    if status != _OK:
        return status
    kind_out[0] = kind
    if kind == _STRING:
        d.payload_left -= size
        if d.payload_left < 0:
            return _TOO_LARGE
        if offset + size > d.size:
            return _BAD
        if not _utf8(&d.buf[offset], size):
            return _UTF8
        end[0] = offset + size
        return _OK
    if kind == _POINTER:
        if pointer_target:
            return _BAD
        status = _pointer(d, offset, size, &target, &after)
        if status != _OK:
            return status
        if depth + 1 > _MAX_DEPTH:
            return _TOO_DEEP
        status = _typed(d, target, depth + 1, True, top, &ignored, kind_out)
        end[0] = after
        return status
    if kind == _MAP:
        d.values_left -= 2 * size
        if d.values_left < 0:
            return _TOO_MANY
        if depth + 1 > _MAX_DEPTH:
            return _TOO_DEEP
        while size:
            size -= 1
            key_at = offset
            status = _typed(d, offset, depth + 1, False, False, &offset, &key_kind)
            if status != _OK:
                return status
            if key_kind != _STRING:
                return _KEY
            value_at = offset
            status = _typed(d, offset, depth + 1, False, False, &offset, &key_kind)
            if status != _OK:
                return status
            if top:
                w = _wanted(d, key_at)
                if w >= 0:
                    d.top[w] = value_at  # the last of equal keys wins, as in a dict
        end[0] = offset
        return _OK
    if kind == _ARRAY:
        d.values_left -= size
        if d.values_left < 0:
            return _TOO_MANY
        if depth + 1 > _MAX_DEPTH:
            return _TOO_DEEP
        while size:
            size -= 1
            status = _typed(d, offset, depth + 1, False, False, &offset, &key_kind)
            if status != _OK:
                return status
        end[0] = offset
        return _OK
    if kind == 5 or kind == 6 or kind == _INT32 or kind == 9 or kind == 10:
        # uint16, uint32, int32, uint64, uint128: at most 2, 4, 4, 8, 16 bytes.
        if size > (2 if kind == 5 else 4 if kind <= _INT32 else 8 if kind == 9 else 16):
            return _BAD
    elif kind == _DOUBLE or kind == _FLOAT:
        if size != (8 if kind == _DOUBLE else 4):
            return _BAD
    elif kind == _BYTES:
        d.payload_left -= size
        if d.payload_left < 0:
            return _TOO_LARGE
    elif kind == _BOOLEAN:  # the size is the value
        end[0] = offset
        return _OK
    else:
        d.bad_type = kind
        return _UNEXPECTED
    if offset + size > d.size:
        return _BAD
    end[0] = offset + size
    return _OK


@cython.boundscheck(False)
@cython.wraparound(False)
cdef bint _utf8(const uint8_t* s, int64_t n) noexcept nogil:
    """Whether ``s`` is strict UTF-8 as Python decodes it: no overlong forms, no
    surrogates, nothing above U+10FFFF."""
    cdef int64_t i = 0
    cdef uint8_t c, lo, hi
    cdef int more, j
    while i < n:
        c = s[i]
        if c < 0x80:
            i += 1
            continue
        lo, hi = 0x80, 0xBF
        if 0xC2 <= c <= 0xDF:
            more = 1
        elif 0xE0 <= c <= 0xEF:
            more = 2
            if c == 0xE0:
                lo = 0xA0
            elif c == 0xED:
                hi = 0x9F
        elif 0xF0 <= c <= 0xF4:
            more = 3
            if c == 0xF0:
                lo = 0x90
            elif c == 0xF4:
                hi = 0x8F
        else:
            return False
        if i + more >= n:  # the sequence runs past the end
            return False
        if not lo <= s[i + 1] <= hi:
            return False
        for j in range(2, more + 1):
            if not 0x80 <= s[i + j] <= 0xBF:
                return False
        i += more + 1
    return True


cdef int _wanted(const _Data* d, int64_t key_at) noexcept nogil:
    """Which wanted key the (validated) key at ``key_at`` is, or -1."""
    cdef int64_t start, size
    _string_span(d, key_at, &start, &size)
    cdef const char* text = <const char*>&d.buf[start]
    if size == 12 and memcmp(text, b"country_code", 12) == 0:
        return _COUNTRY_CODE
    if size == 7 and memcmp(text, b"country", 7) == 0:
        return _COUNTRY
    if size == 18 and memcmp(text, b"registered_country", 18) == 0:
        return _REGISTERED_COUNTRY
    if size == 12 and memcmp(text, b"subdivisions", 12) == 0:
        return _SUBDIVISIONS
    return -1


cdef void _resolve(const _Data* d, int64_t offset, int* kind, int64_t* size,
                   int64_t* after) noexcept nogil:
    """Type, size and payload offset of a validated value, a pointer followed once."""
    cdef int64_t target
    _control(d, offset, kind, size, after)
    if kind[0] == _POINTER:
        _pointer(d, after[0], size[0], &target, after)
        _control(d, target, kind, size, after)


cdef inline void _string_span(const _Data* d, int64_t offset, int64_t* start,
                              int64_t* size) noexcept nogil:
    cdef int kind
    _resolve(d, offset, &kind, size, start)


cdef int64_t _skip(const _Data* d, int64_t offset) noexcept nogil:
    """The offset after a validated value."""
    cdef int kind
    cdef int64_t size, _item
    _control(d, offset, &kind, &size, &offset)
    if kind == _POINTER:
        return offset + ((size >> 3) & 3) + 1
    if kind == _MAP or kind == _ARRAY:
        if kind == _MAP:
            size *= 2
        for _item in range(size):
            offset = _skip(d, offset)
        return offset
    return offset if kind == _BOOLEAN else offset + size


cdef bint _nonempty_string(const _Data* d, int64_t offset, uint32_t* span) noexcept nogil:
    cdef int kind
    cdef int64_t size, start
    _resolve(d, offset, &kind, &size, &start)
    if kind != _STRING or size == 0:
        return False
    span[0] = <uint32_t>start
    span[1] = <uint32_t>size
    return True


cdef bint _iso_code(const _Data* d, int64_t offset, uint32_t* span) noexcept nogil:
    """The span of a non-empty string ``iso_code`` of the map at ``offset``, if any."""
    cdef int kind
    cdef int64_t size, start, key_size, found = -1
    _resolve(d, offset, &kind, &size, &offset)
    if kind != _MAP:
        return False
    while size:
        size -= 1
        _string_span(d, offset, &start, &key_size)
        offset = _skip(d, offset)
        if key_size == 8 and memcmp(&d.buf[start], b"iso_code", 8) == 0:
            found = offset  # the last of equal keys wins
        offset = _skip(d, offset)
    return found >= 0 and _nonempty_string(d, found, span)


cdef int _label(const _Data* d, uint32_t* span) noexcept nogil:
    """The label rule of lookupd.datafiles.formats.mmdb on a validated record's top map;
    writes the (start, length) spans of the code and the subdivision into ``span``."""
    cdef int kind
    cdef int64_t size, first
    span[0] = span[1] = span[2] = span[3] = 0
    if d.top[_COUNTRY_CODE] >= 0 and _nonempty_string(d, d.top[_COUNTRY_CODE], span):
        return _KIND_COUNTRY_CODE
    if d.top[_COUNTRY] >= 0 and _iso_code(d, d.top[_COUNTRY], span):
        if d.top[_SUBDIVISIONS] >= 0:
            _resolve(d, d.top[_SUBDIVISIONS], &kind, &size, &first)
            if kind == _ARRAY and size and not _iso_code(d, first, &span[2]):
                span[2] = span[3] = 0
        return _KIND_COUNTRY
    span[0] = span[1] = 0
    if d.top[_REGISTERED_COUNTRY] >= 0 and _iso_code(d, d.top[_REGISTERED_COUNTRY], span):
        return _KIND_REGISTERED_COUNTRY
    span[0] = span[1] = 0
    return _KIND_NONE
