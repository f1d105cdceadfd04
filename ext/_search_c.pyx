"""Search sorted range tables: a top-bits jump table, then branchless binary searches.

Compiled twin of lookupd.core._search_py: same names, signatures and errors (see _search_c.pyi).
The jump-table builders and the boundary checks are the twin's own functions, so both cores
build the same tables and raise the same messages; only the searches are compiled here.

``find_index_v4`` / ``find_index_v6`` answer one key per call, so their boundary checks are
the call's cost: they borrow plain buffers and check them in C, and hand anything unusual
(another layout, a bad table, a key that is not a plain int in range) to the typed-memoryview
path that calls the twin's checks, which accepts or refuses it exactly as before.

A key's top 16 bits pick a jump-table entry, which narrows the answer to a window of the
table (a few segments for most IPv4 keys). A binary search finishes inside the window; each
step is a compare and a conditional add (setcc), never a branch the CPU must predict. Keys
are searched 8 at a time in lockstep, so that 8 independent loads are in flight instead of one
chain of dependent ones, each waiting for the last (figures in bench/README.md, "Figures
behind design choices in the code").

The ``answer_*`` functions add the reserved check to the same pass: a key's /16 flag answers
it, and only keys in the few /16s partly reserved are searched in the small reserved table,
together. ``gather_names`` builds the lists of country codes that ``countries()`` returns
from a tuple of names: each item a new reference to one of the tuple's few objects, so no
allocation per item.
"""

cimport cython
from cpython.buffer cimport PyBUF_RECORDS_RO, PyBuffer_IsContiguous, PyBuffer_Release
from cpython.exc cimport PyErr_Clear, PyErr_Occurred
from cpython.long cimport PyLong_CheckExact
from cpython.object cimport PyObject
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t

from lookupd.codes import Status

# The jump-table builders are numpy code: the twin's, re-exported (listed in __all__).
from lookupd.core._search_py import (
    JUMP_BITS_V4,
    JUMP_BITS_V6,
    _check_answer_tables,
    _check_answer_v4,
    _check_answer_v6,
    _check_jump,
    _check_label_names,
    _check_lengths,
    _check_reserved_v4,
    _check_rows,
    _check_starts,
    _key_v4,
    _key_v6,
    jump_table_v4,
    jump_table_v6,
)
from lookupd.core.constants import UNKNOWN_LABEL

__all__ = [
    "JUMP_BITS_V4",
    "JUMP_BITS_V6",
    "find_index_v4",
    "find_index_v6",
    "find_many_v4",
    "find_many_v6",
    "jump_table_v4",
    "jump_table_v6",
    "lookup_many",
    "answer_many",
    "answer_many_v4",
    "answer_packed_v4",
    "answer_packed_v6",
    "gather_names",
]

cdef extern from *:
    """
    #ifndef __SIZEOF_INT128__
    #error "lookupd.core._search_c needs unsigned __int128 (gcc or clang on a 64-bit target)"
    #endif
    typedef unsigned __int128 lookupd_u128;

    /* 4 bytes in network order at any alignment: compilers make this one load + bswap. */
    static inline uint32_t lookupd_load_be32(const uint8_t* p) {
        return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    }

    /* 8 bytes in network order at any alignment. */
    static inline uint64_t lookupd_load_be64(const uint8_t* p) {
        return ((uint64_t)lookupd_load_be32(p) << 32) | lookupd_load_be32(p + 4);
    }

    /* Shifts and an or: two plain 64-bit loads, no 16-byte alignment asked of numpy. */
    static inline lookupd_u128 lookupd_u128_from(uint64_t high, uint64_t low) {
        return ((lookupd_u128)high << 64) | low;
    }
    """
    # Cython passes the type through to C untouched; it never becomes a Python object.
    ctypedef unsigned long long _u128 "lookupd_u128"
    _u128 _u128_from "lookupd_u128_from"(uint64_t high, uint64_t low) noexcept nogil
    uint32_t _load_be32 "lookupd_load_be32"(const uint8_t* p) noexcept nogil
    uint64_t _load_be64 "lookupd_load_be64"(const uint8_t* p) noexcept nogil


cdef extern from "Python.h":
    # Declared without an exception value: the fast paths test the result and clear the
    # error themselves, so a refusal costs no Python exception machinery.
    int _get_buffer "PyObject_GetBuffer"(object obj, Py_buffer* view, int flags) noexcept
    unsigned long long _as_u64 "PyLong_AsUnsignedLongLong"(object o) noexcept
    # On borrowed pointers: the name lists are filled without Cython's reference counting,
    # one new reference per item to a name the tuple already holds.
    PyObject* _tuple_item "PyTuple_GET_ITEM"(object tuple, Py_ssize_t i) noexcept
    void _incref "Py_INCREF"(PyObject* o) noexcept
    void _list_set "PyList_SET_ITEM"(object list, Py_ssize_t i, PyObject* o) noexcept
    object _new_list "PyList_New"(Py_ssize_t size)

cdef enum:
    # The twin's JUMP_BITS_V4 / JUMP_BITS_V6 (checked at import below), as C constants.
    _BITS_V4 = 16
    _BITS_V6 = 16
    # Searches run in lockstep. Measured on the real tables: 4 lanes leave loads unissued;
    # 16 or 32 spill x86-64's 16 registers and wait for each group's longest window.
    _LANES = 8
    # lookup_many splits keys by table in chunks of this many (8 KiB of stack buffers).
    _CHUNK = 256
    # lookupd.codes and lookupd.core.constants (checked at import below): Status.OK,
    # Status.NOT_FOUND, Status.RESERVED, UNKNOWN_LABEL.
    _STATUS_OK = 1
    _STATUS_NOT_FOUND = 3
    _STATUS_RESERVED = 4
    _UNKNOWN_LABEL = 0
    # ::ffff:0:0/96: the key (0, 0xFFFF_xxxx_xxxx) is the IPv4 address in its low 32 bits.
    _MAPPED_TAG = 0xFFFF
    # The twin's _MAX_ROWS, 2**31 - 1: indices are returned in int32 arrays.
    _MAX_ROWS = 0x7FFFFFFF
    # 2**32 - 1: last IPv4 address.
    _IPV4_MAX = 0xFFFFFFFF

if (JUMP_BITS_V4, JUMP_BITS_V6) != (_BITS_V4, _BITS_V6):
    raise ImportError(
        f"lookupd.core._search_c was built for jump bits {(_BITS_V4, _BITS_V6)} but "
        f"lookupd.core._search_py uses {(JUMP_BITS_V4, JUMP_BITS_V6)}: rebuild the extension"
    )
_STATUSES = (Status.OK, Status.NOT_FOUND, Status.RESERVED, UNKNOWN_LABEL)
if _STATUSES != (_STATUS_OK, _STATUS_NOT_FOUND, _STATUS_RESERVED, _UNKNOWN_LABEL):
    raise ImportError(
        f"lookupd.core._search_c was built for (OK, NOT_FOUND, RESERVED, unknown label) "
        f"{(_STATUS_OK, _STATUS_NOT_FOUND, _STATUS_RESERVED, _UNKNOWN_LABEL)} but lookupd "
        f"numbers them {tuple(map(int, _STATUSES))}: rebuild the extension"
    )

cdef struct _TableV4:
    const uint32_t* starts
    const uint32_t* jump
    Py_ssize_t last  # index of the last row


cdef struct _TableV6:
    const uint64_t* starts  # 2 uint64 per row: high, low
    const uint32_t* jump
    Py_ssize_t last


def find_index_v4(starts, jump, key) -> int:
    """Return the index of the last start <= ``key`` (an int) in an IPv4 table.

    Raises:
        ValueError: if the table or jump table is malformed, or ``key`` is not in 0..2**32-1.
        TypeError: if ``key`` is not an integer.
    """
    cdef uint32_t value
    cdef Py_buffer views[2]
    cdef _TableV4 table
    cdef int32_t answer
    if _plain_key_v4(key, &value) and _borrow_v4(starts, jump, views):
        table = _TableV4(<const uint32_t*>views[0].buf, <const uint32_t*>views[1].buf,
                         views[0].shape[0] - 1)
        _find_many_v4(&table, &value, &answer, 1)
        PyBuffer_Release(&views[0])
        PyBuffer_Release(&views[1])
        return answer
    return _find_index_v4_checked(starts, jump, key)


def find_index_v6(starts, jump, key) -> int:
    """Return the index of the last start <= ``key`` (an int) in an IPv6 table.

    Raises:
        ValueError: if the table or jump table is malformed, or ``key`` is not in 0..2**128-1.
        TypeError: if ``key`` is not an integer.
    """
    cdef uint64_t value[2]
    cdef Py_buffer views[2]
    cdef _TableV6 table
    cdef int32_t answer
    if _plain_key_v6(key, value) and _borrow_v6(starts, jump, views):
        table = _TableV6(<const uint64_t*>views[0].buf, <const uint32_t*>views[1].buf,
                         views[0].shape[0] - 1)
        _find_many_v6(&table, value, &answer, 1)
        PyBuffer_Release(&views[0])
        PyBuffer_Release(&views[1])
        return answer
    return _find_index_v6_checked(starts, jump, key)


cdef int32_t _find_index_v4_checked(
    const uint32_t[::1] starts, const uint32_t[::1] jump, key
) except -1:
    """find_index_v4 through typed memoryviews and the twin's checks: the slow, general path."""
    cdef _TableV4 table = _table_v4(starts, jump)
    cdef uint32_t value = _key_v4(key)
    cdef int32_t answer
    _find_many_v4(&table, &value, &answer, 1)
    return answer


cdef int32_t _find_index_v6_checked(
    const uint64_t[:, ::1] starts, const uint32_t[::1] jump, key
) except -1:
    """find_index_v6 through typed memoryviews and the twin's checks: the slow, general path."""
    cdef _TableV6 table = _table_v6(starts, jump)
    cdef uint64_t value[2]
    value[0], value[1] = _key_v6(key)
    cdef int32_t answer
    _find_many_v6(&table, value, &answer, 1)
    return answer


cdef bint _plain_key_v4(object key, uint32_t* value) noexcept:
    """Convert an exact int in 0..2**32-1; return False for anything else, raising nothing."""
    if not PyLong_CheckExact(key):
        return False
    cdef unsigned long long v = _as_u64(key)
    if v > _IPV4_MAX:  # also -1: the OverflowError of a negative key or one above 2**64 - 1
        if PyErr_Occurred():
            PyErr_Clear()
        return False
    value[0] = <uint32_t>v
    return True


cdef bint _plain_key_v6(object key, uint64_t* value) noexcept:
    """Split an exact int in 0..2**128-1 into (high, low); False for anything else."""
    if not PyLong_CheckExact(key):
        return False
    cdef _u128 whole
    try:
        # Cython converts an int to a C integer of any width (_u128 is declared narrower,
        # but its conversion checks the real size) in one step, without a temporary int.
        whole = key
    except OverflowError:  # negative, or 2**128 and above
        return False
    value[0] = <uint64_t>(whole >> 64)
    value[1] = <uint64_t>whole
    return True


cdef bint _borrow_v4(object starts, object jump, Py_buffer* views) noexcept:
    """Borrow an IPv4 table's buffers if they pass every check _table_v4 makes.

    On True the caller releases ``views[0]`` (starts) and ``views[1]`` (jump); on False
    nothing is held and no error is set.
    """
    if not _borrow(starts, &views[0], 1, sizeof(uint32_t)):
        return False
    if not (
        1 <= views[0].shape[0] <= _MAX_ROWS
        and (<const uint32_t*>views[0].buf)[0] == 0
        and _borrow_jump(jump, &views[1], _BITS_V4)
    ):
        PyBuffer_Release(&views[0])
        return False
    return True


cdef bint _borrow_v6(object starts, object jump, Py_buffer* views) noexcept:
    """As _borrow_v4, for an IPv6 table of (high, low) rows."""
    if not _borrow(starts, &views[0], 2, sizeof(uint64_t)):
        return False
    if not (
        views[0].shape[1] == 2
        and 1 <= views[0].shape[0] <= _MAX_ROWS
        and (<const uint64_t*>views[0].buf)[0] == 0
        and (<const uint64_t*>views[0].buf)[1] == 0
        and _borrow_jump(jump, &views[1], _BITS_V6)
    ):
        PyBuffer_Release(&views[0])
        return False
    return True


cdef inline bint _borrow_jump(object jump, Py_buffer* view, int bits) noexcept:
    """Borrow a jump table of the length _check_jump asks for: 2**bits + 1 entries."""
    if not _borrow(jump, view, 1, sizeof(uint32_t)):
        return False
    if view.shape[0] != (1 << bits) + 1:
        PyBuffer_Release(view)
        return False
    return True


cdef bint _borrow(object array, Py_buffer* view, int ndim, Py_ssize_t itemsize) noexcept:
    """Borrow a C-contiguous buffer of native unsigned ints of ``itemsize`` bytes, or fail.

    Only the one-letter native formats numpy exports ("H", "I", "L", "Q"...) are taken here;
    every other spelling of the same type goes the slow way, which accepts it too.
    """
    if _get_buffer(array, view, PyBUF_RECORDS_RO) == -1:
        PyErr_Clear()
        return False
    cdef const char* code = view.format
    if (
        view.ndim == ndim
        and view.itemsize == itemsize
        and code != NULL
        and code[0] in b"BHILQ"
        and code[1] == 0
        and PyBuffer_IsContiguous(view, b"C")
    ):
        return True
    PyBuffer_Release(view)
    return False


@cython.boundscheck(False)
@cython.wraparound(False)
def find_many_v4(
    const uint32_t[::1] starts,
    const uint32_t[::1] jump,
    const uint32_t[::1] keys,
    int32_t[::1] out,
) -> None:
    """Write, for each IPv4 key, the index of the last start <= key into ``out``.

    Raises:
        ValueError: if an array has the wrong dtype, shape or layout, ``out`` is read-only,
            or ``keys`` and ``out`` differ in length.
    """
    cdef _TableV4 table = _table_v4(starts, jump)
    _check_lengths(keys=keys.shape[0], out=out.shape[0])
    if keys.shape[0] == 0:
        return
    with nogil:
        _find_many_v4(&table, &keys[0], &out[0], keys.shape[0])


@cython.boundscheck(False)
@cython.wraparound(False)
def find_many_v6(
    const uint64_t[:, ::1] starts,
    const uint32_t[::1] jump,
    const uint64_t[:, ::1] keys,
    int32_t[::1] out,
) -> None:
    """Write, for each IPv6 key row, the index of the last start <= key into ``out``.

    Raises:
        ValueError: if an array has the wrong dtype, shape or layout, ``out`` is read-only,
            or ``keys`` and ``out`` differ in length.
    """
    cdef _TableV6 table = _table_v6(starts, jump)
    _check_rows("keys", (keys.shape[0], keys.shape[1]))
    _check_lengths(keys=keys.shape[0], out=out.shape[0])
    if keys.shape[0] == 0:
        return
    with nogil:
        _find_many_v6(&table, &keys[0, 0], &out[0], keys.shape[0])


@cython.boundscheck(False)
@cython.wraparound(False)
def lookup_many(
    const uint32_t[::1] v4_starts,
    const uint32_t[::1] v4_jump,
    const uint16_t[::1] v4_labels,
    const uint64_t[:, ::1] v6_starts,
    const uint32_t[::1] v6_jump,
    const uint16_t[::1] v6_labels,
    const uint64_t[:, ::1] keys,
    uint8_t[::1] status,
    uint16_t[::1] out,
) -> None:
    """Write the label of each 128-bit key into ``out`` and update ``status``.

    An item whose status is not OK on entry (the parser marked it invalid) gets label 0 and
    keeps its status. An IPv4-mapped key (``::ffff:a.b.c.d``) is looked up in the IPv4 table,
    any other in the IPv6 table. An item whose label is 0 (unknown) gets ``NOT_FOUND``.

    Raises:
        ValueError: if an array has the wrong dtype, shape or layout, an output is read-only,
            or the lengths disagree.
    """
    cdef _TableV4 table_v4 = _table_v4(v4_starts, v4_jump)
    cdef _TableV6 table_v6 = _table_v6(v6_starts, v6_jump)
    _check_lengths(v4_starts=v4_starts.shape[0], v4_labels=v4_labels.shape[0])
    _check_lengths(v6_starts=v6_starts.shape[0], v6_labels=v6_labels.shape[0])
    _check_rows("keys", (keys.shape[0], keys.shape[1]))
    _check_lengths(keys=keys.shape[0], status=status.shape[0], out=out.shape[0])
    cdef Py_ssize_t total = keys.shape[0]
    cdef Py_ssize_t done = 0
    with nogil:
        while done < total:
            _lookup_chunk(
                &table_v4, &v4_labels[0], &table_v6, &v6_labels[0],
                &keys[done, 0], &status[done], &out[done], min(<Py_ssize_t>_CHUNK, total - done),
            )
            done += _CHUNK


@cython.boundscheck(False)
@cython.wraparound(False)
def answer_packed_v4(
    const uint32_t[::1] starts,
    const uint32_t[::1] jump,
    const uint16_t[::1] labels,
    const uint32_t[::1] reserved_starts,
    const uint32_t[::1] reserved_jump,
    const uint8_t[::1] reserved_flags,
    const uint8_t[::1] reserved_prefixes,
    const uint16_t[::1] codes,
    const uint8_t[::1] packed,
    uint16_t[::1] out_codes,
    uint8_t[::1] out_status,
) -> None:
    """Answer packed IPv4 addresses (4 bytes each, network order) in one pass.

    Per address: its label from the table, or 0 where it is reserved; ``out_codes`` gets
    ``codes[label]`` and ``out_status`` gets its :class:`~lookupd.codes.Status` number
    (``OK``, ``NOT_FOUND`` or ``RESERVED``), which is also the packed answer's byte.
    Reserved: ``reserved_prefixes[key >> 16]`` says 0 (none of the /16), 1 (all of it) or 2
    (some: then ``reserved_flags`` of the key's segment of the reserved table decides, which
    5 of the 65,536 /16s need).

    Raises:
        ValueError: as the other functions, and for ``packed`` not a multiple of 4 bytes,
            ``reserved_flags`` not one per reserved segment, ``reserved_prefixes`` or
            ``codes`` with fewer than 65,536 entries, or outputs of another length than the
            addresses.
    """
    cdef _TableV4 table = _table_v4(starts, jump)
    cdef _TableV4 reserved = _table_v4(reserved_starts, reserved_jump)
    _check_answer_v4(
        starts.shape[0], labels.shape[0], reserved_starts.shape[0], reserved_flags.shape[0],
        reserved_prefixes.shape[0], codes.shape[0], packed.shape[0], out_codes.shape[0],
        out_status.shape[0],
    )
    cdef Py_ssize_t total = packed.shape[0] // 4
    cdef Py_ssize_t done = 0
    if total == 0:
        return
    with nogil:
        while done < total:
            _answer_chunk_v4(
                &table, &labels[0], &reserved, &reserved_flags[0], &reserved_prefixes[0],
                &codes[0],
                &packed[4 * done], &out_codes[done], &out_status[done],
                min(<Py_ssize_t>_CHUNK, total - done),
            )
            done += _CHUNK


cdef void _answer_chunk_v4(
    const _TableV4* table,
    const uint16_t* labels,
    const _TableV4* reserved,
    const uint8_t* reserved_flags,
    const uint8_t* reserved_prefixes,
    const uint16_t* codes,
    const uint8_t* packed,
    uint16_t* out_codes,
    uint8_t* out_status,
    Py_ssize_t count,
) noexcept nogil:
    """Answer ``count`` <= _CHUNK packed addresses: decode them, then _answer_keys_v4."""
    cdef uint32_t keys[_CHUNK]
    cdef Py_ssize_t i
    for i in range(count):
        keys[i] = _load_be32(packed + 4 * i)
    _answer_keys_v4(table, labels, reserved, reserved_flags, reserved_prefixes, codes, keys,
                    out_codes, out_status, count)


cdef void _answer_keys_v4(
    const _TableV4* table,
    const uint16_t* labels,
    const _TableV4* reserved,
    const uint8_t* reserved_flags,
    const uint8_t* reserved_prefixes,
    const uint16_t* codes,
    const uint32_t* keys,
    uint16_t* out,
    uint8_t* out_status,
    Py_ssize_t count,
) noexcept nogil:
    """Answer ``count`` <= _CHUNK IPv4 keys: a lockstep search, then gathers.

    ``out`` gets ``codes[label]``, or the label itself where ``codes`` is NULL.
    """
    cdef int32_t rows[_CHUNK]
    cdef int32_t reserved_row
    cdef Py_ssize_t i
    cdef uint16_t label
    cdef uint8_t flag
    _find_many_v4(table, keys, rows, count)
    for i in range(count):
        flag = reserved_prefixes[keys[i] >> 16]
        if flag > 1:  # a /16 only partly reserved: rare, so the branch predicts well
            _find_many_v4(reserved, &keys[i], &reserved_row, 1)
            flag = reserved_flags[reserved_row] != 0
        label = _settle(labels[rows[i]], flag, &out_status[i])
        # The same for every item of a call, so the branch always predicts.
        out[i] = codes[label] if codes != NULL else label


cdef inline uint16_t _settle(uint16_t label, uint8_t flag, uint8_t* status) noexcept nogil:
    """Return the label an item answers (0 where reserved: ``flag`` 1) and set its status.

    Arithmetic, not branches: reserved addresses are scattered through a batch.
    """
    label = label * (1 - flag)
    # OK, plus the step to NOT_FOUND where unlabelled, plus the one on to RESERVED where
    # reserved (whose label is 0, so both steps add up to RESERVED).
    status[0] = (
        _STATUS_OK
        + (label == _UNKNOWN_LABEL) * (_STATUS_NOT_FOUND - _STATUS_OK)
        + flag * (_STATUS_RESERVED - _STATUS_NOT_FOUND)
    )
    return label


cdef struct _Answerer:
    # Everything answer_many and its relatives read: the data's two tables and their labels,
    # and per family the reserved table, a 0/1 flag per reserved segment and a flag per /16
    # (0 none reserved, 1 all, 2 some: search the reserved table).
    _TableV4 v4
    const uint16_t* labels_v4
    _TableV6 v6
    const uint16_t* labels_v6
    _TableV4 reserved_v4
    const uint8_t* flags_v4
    const uint8_t* prefixes_v4
    _TableV6 reserved_v6
    const uint8_t* flags_v6
    const uint8_t* prefixes_v6


cdef _Answerer _answerer(
    const uint32_t[::1] v4_starts,
    const uint32_t[::1] v4_jump,
    const uint16_t[::1] v4_labels,
    const uint64_t[:, ::1] v6_starts,
    const uint32_t[::1] v6_jump,
    const uint16_t[::1] v6_labels,
    const uint32_t[::1] reserved_v4_starts,
    const uint32_t[::1] reserved_v4_jump,
    const uint8_t[::1] reserved_v4_flags,
    const uint8_t[::1] reserved_v4_prefixes,
    const uint64_t[:, ::1] reserved_v6_starts,
    const uint32_t[::1] reserved_v6_jump,
    const uint8_t[::1] reserved_v6_flags,
    const uint8_t[::1] reserved_v6_prefixes,
) except *:
    """Check the tables the answer_* functions share and return their raw pointers.

    The pointers stay valid while the caller's memoryviews hold the buffers.
    """
    cdef _Answerer answerer
    answerer.v4 = _table_v4(v4_starts, v4_jump)
    answerer.v6 = _table_v6(v6_starts, v6_jump)
    answerer.reserved_v4 = _table_v4(reserved_v4_starts, reserved_v4_jump)
    answerer.reserved_v6 = _table_v6(reserved_v6_starts, reserved_v6_jump)
    _check_answer_tables(
        v4_starts.shape[0], v4_labels.shape[0], v6_starts.shape[0], v6_labels.shape[0],
        reserved_v4_starts.shape[0], reserved_v4_flags.shape[0], reserved_v4_prefixes.shape[0],
        reserved_v6_starts.shape[0], reserved_v6_flags.shape[0], reserved_v6_prefixes.shape[0],
    )
    # Every array is now known to be non-empty: tables have a row, prefixes 65,536 entries.
    answerer.labels_v4 = &v4_labels[0]
    answerer.labels_v6 = &v6_labels[0]
    answerer.flags_v4 = &reserved_v4_flags[0]
    answerer.prefixes_v4 = &reserved_v4_prefixes[0]
    answerer.flags_v6 = &reserved_v6_flags[0]
    answerer.prefixes_v6 = &reserved_v6_prefixes[0]
    return answerer


@cython.boundscheck(False)
@cython.wraparound(False)
def answer_many(
    const uint32_t[::1] v4_starts,
    const uint32_t[::1] v4_jump,
    const uint16_t[::1] v4_labels,
    const uint64_t[:, ::1] v6_starts,
    const uint32_t[::1] v6_jump,
    const uint16_t[::1] v6_labels,
    const uint32_t[::1] reserved_v4_starts,
    const uint32_t[::1] reserved_v4_jump,
    const uint8_t[::1] reserved_v4_flags,
    const uint8_t[::1] reserved_v4_prefixes,
    const uint64_t[:, ::1] reserved_v6_starts,
    const uint32_t[::1] reserved_v6_jump,
    const uint8_t[::1] reserved_v6_flags,
    const uint8_t[::1] reserved_v6_prefixes,
    const uint64_t[:, ::1] keys,
    uint8_t[::1] status,
    uint16_t[::1] out,
) -> None:
    """As :func:`lookup_many`, and mark reserved keys in the same pass.

    A valid key that is reserved gets label 0 and ``RESERVED``: IPv4-mapped keys by the
    IPv4 reserved table, others by the IPv6 one. Per family, ``reserved_*_prefixes[p]``
    for the key's top 16 bits ``p`` (of the IPv4 address, or of the 128-bit key) says 0
    (none of the /16 is reserved), 1 (all of it) or 2 (some: then ``reserved_*_flags`` of
    the key's segment of the reserved table decides). All-zero prefixes mark nothing.

    Raises:
        ValueError: if an array has the wrong dtype, shape or layout, an output is read-only,
            a table's labels or flags are not one per segment, prefixes have fewer than
            65,536 entries, or the lengths of keys and outputs disagree.
    """
    cdef _Answerer answerer = _answerer(
        v4_starts, v4_jump, v4_labels, v6_starts, v6_jump, v6_labels,
        reserved_v4_starts, reserved_v4_jump, reserved_v4_flags, reserved_v4_prefixes,
        reserved_v6_starts, reserved_v6_jump, reserved_v6_flags, reserved_v6_prefixes,
    )
    _check_rows("keys", (keys.shape[0], keys.shape[1]))
    _check_lengths(keys=keys.shape[0], status=status.shape[0], out=out.shape[0])
    cdef Py_ssize_t total = keys.shape[0]
    cdef Py_ssize_t done = 0
    with nogil:
        while done < total:
            _answer_chunk(&answerer, &keys[done, 0], &status[done], &out[done],
                          min(<Py_ssize_t>_CHUNK, total - done))
            done += _CHUNK


@cython.boundscheck(False)
@cython.wraparound(False)
def answer_many_v4(
    const uint32_t[::1] starts,
    const uint32_t[::1] jump,
    const uint16_t[::1] labels,
    const uint32_t[::1] reserved_starts,
    const uint32_t[::1] reserved_jump,
    const uint8_t[::1] reserved_flags,
    const uint8_t[::1] reserved_prefixes,
    const uint32_t[::1] keys,
    uint16_t[::1] out,
    uint8_t[::1] out_status,
) -> None:
    """Label IPv4 keys (``uint32``) and set their status, reserved ones marked, in one pass.

    As :func:`answer_packed_v4`, with native ``uint32`` keys in and labels (not country
    codes) out: ``out`` gets the label, 0 where reserved, and ``out_status`` ``OK``,
    ``NOT_FOUND`` or ``RESERVED``.

    Raises:
        ValueError: as :func:`answer_packed_v4`, and for outputs of another length than
            ``keys``.
    """
    cdef _TableV4 table = _table_v4(starts, jump)
    cdef _TableV4 reserved = _table_v4(reserved_starts, reserved_jump)
    _check_reserved_v4(
        starts.shape[0], labels.shape[0], reserved_starts.shape[0], reserved_flags.shape[0],
        reserved_prefixes.shape[0],
    )
    _check_lengths(keys=keys.shape[0], out=out.shape[0], out_status=out_status.shape[0])
    cdef Py_ssize_t total = keys.shape[0]
    cdef Py_ssize_t done = 0
    with nogil:
        while done < total:
            _answer_keys_v4(
                &table, &labels[0], &reserved, &reserved_flags[0], &reserved_prefixes[0],
                NULL, &keys[done], &out[done], &out_status[done],
                min(<Py_ssize_t>_CHUNK, total - done),
            )
            done += _CHUNK


@cython.boundscheck(False)
@cython.wraparound(False)
def answer_packed_v6(
    const uint32_t[::1] v4_starts,
    const uint32_t[::1] v4_jump,
    const uint16_t[::1] v4_labels,
    const uint64_t[:, ::1] v6_starts,
    const uint32_t[::1] v6_jump,
    const uint16_t[::1] v6_labels,
    const uint32_t[::1] reserved_v4_starts,
    const uint32_t[::1] reserved_v4_jump,
    const uint8_t[::1] reserved_v4_flags,
    const uint8_t[::1] reserved_v4_prefixes,
    const uint64_t[:, ::1] reserved_v6_starts,
    const uint32_t[::1] reserved_v6_jump,
    const uint8_t[::1] reserved_v6_flags,
    const uint8_t[::1] reserved_v6_prefixes,
    const uint16_t[::1] codes,
    const uint8_t[::1] packed,
    uint16_t[::1] out_codes,
    uint8_t[::1] out_status,
) -> None:
    """Answer packed IPv6 addresses (16 bytes each, network order) in one pass.

    Per address, as :func:`answer_many` answers its key (IPv4-mapped ones from the IPv4
    tables): ``out_codes`` gets ``codes[label]`` and ``out_status`` its status number,
    the packed answer's byte.

    Raises:
        ValueError: as :func:`answer_many`, and for ``packed`` not a multiple of 16 bytes,
            ``codes`` with fewer than 65,536 entries, or outputs of another length than the
            addresses.
    """
    cdef _Answerer answerer = _answerer(
        v4_starts, v4_jump, v4_labels, v6_starts, v6_jump, v6_labels,
        reserved_v4_starts, reserved_v4_jump, reserved_v4_flags, reserved_v4_prefixes,
        reserved_v6_starts, reserved_v6_jump, reserved_v6_flags, reserved_v6_prefixes,
    )
    _check_answer_v6(codes.shape[0], packed.shape[0], out_codes.shape[0], out_status.shape[0])
    cdef Py_ssize_t total = packed.shape[0] // 16
    cdef Py_ssize_t done = 0
    with nogil:
        while done < total:
            _answer_chunk_v6(&answerer, &codes[0], &packed[16 * done], &out_codes[done],
                             &out_status[done], min(<Py_ssize_t>_CHUNK, total - done))
            done += _CHUNK


cdef void _answer_chunk_v6(
    const _Answerer* answerer,
    const uint16_t* codes,
    const uint8_t* packed,
    uint16_t* out_codes,
    uint8_t* out_status,
    Py_ssize_t count,
) noexcept nogil:
    """Answer ``count`` <= _CHUNK packed IPv6 addresses: decode, _answer_chunk, codes."""
    cdef uint64_t keys[2 * _CHUNK]
    cdef uint16_t labels[_CHUNK]
    cdef Py_ssize_t i
    for i in range(count):
        keys[2 * i] = _load_be64(packed + 16 * i)
        keys[2 * i + 1] = _load_be64(packed + 16 * i + 8)
        out_status[i] = _STATUS_OK
    _answer_chunk(answerer, keys, out_status, labels, count)
    for i in range(count):
        out_codes[i] = codes[labels[i]]


@cython.boundscheck(False)
@cython.wraparound(False)
def gather_names(names, const uint16_t[::1] labels) -> list:
    """Return the list of ``names[label]`` for each label: new references, no copies.

    ``names`` is a tuple (``Database`` keeps one of interned country codes, ``None`` at 0),
    so a batch's list holds the same few objects many times over.

    Raises:
        TypeError: if ``names`` is not a tuple.
        ValueError: if ``labels`` is not a 1-D ``uint16`` array, or a label is not below
            ``len(names)`` (the message names the first such label).
    """
    _check_label_names(names)
    cdef Py_ssize_t total = labels.shape[0]
    cdef object result = _new_list(total)
    cdef Py_ssize_t done = 0
    cdef Py_ssize_t count
    cdef Py_ssize_t bad = -1
    while done < total:
        count = min(<Py_ssize_t>_CHUNK, total - done)
        bad = _fill_names(result, done, names, &labels[done], count)
        if bad >= 0:
            _check_label_names(names, bad)  # raises, naming the label
        done += count
    return result


cdef Py_ssize_t _fill_names(
    object result, Py_ssize_t at, object names, const uint16_t* labels, Py_ssize_t count
) noexcept:
    """Set ``result[at + i] = names[labels[i]]``; return -1, or the first label without a
    name (then nothing is set: the list's unset items stay NULL, which it frees safely)."""
    cdef Py_ssize_t size = len(<tuple>names)
    cdef Py_ssize_t i
    cdef bint bad = False
    cdef PyObject* name
    for i in range(count):
        bad |= labels[i] >= size
    if bad:
        for i in range(count):
            if labels[i] >= size:
                return labels[i]
    for i in range(count):
        name = _tuple_item(names, labels[i])
        _incref(name)
        _list_set(result, at + i, name)
    return -1


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _answer_chunk(
    const _Answerer* answerer,
    const uint64_t* keys,
    uint8_t* status,
    uint16_t* out,
    Py_ssize_t count,
) noexcept nogil:
    """Label ``count`` <= _CHUNK keys and mark reserved ones: _lookup_chunk, then per family
    the /16 flags, and one lockstep search of the reserved table for the mixed /16s."""
    cdef uint32_t keys_v4[_CHUNK]
    cdef uint64_t keys_v6[2 * _CHUNK]
    cdef int32_t rows_v4[_CHUNK]
    cdef int32_t rows_v6[_CHUNK]
    cdef uint16_t where_v4[_CHUNK]  # position in the chunk of each gathered key
    cdef uint16_t where_v6[_CHUNK]
    cdef uint8_t flags[_CHUNK]
    cdef uint16_t mixed[_CHUNK]  # which gathered keys lie in a partly reserved /16
    cdef uint32_t mixed_v4[_CHUNK]
    cdef uint64_t mixed_v6[2 * _CHUNK]
    cdef int32_t mixed_rows[_CHUNK]
    cdef Py_ssize_t n_v4 = 0, n_v6 = 0, n_mixed
    cdef Py_ssize_t i
    cdef uint64_t high, low
    cdef bint valid, mapped
    cdef uint8_t flag
    # Branch-free, as _lookup_chunk: every key goes into both buffers, and only one
    # count advances.
    for i in range(count):
        out[i] = _UNKNOWN_LABEL
        high = keys[2 * i]
        low = keys[2 * i + 1]
        valid = status[i] == _STATUS_OK
        mapped = (high == 0) & ((low >> 32) == _MAPPED_TAG)
        keys_v4[n_v4] = <uint32_t>low
        where_v4[n_v4] = <uint16_t>i
        n_v4 += valid & mapped
        keys_v6[2 * n_v6] = high
        keys_v6[2 * n_v6 + 1] = low
        where_v6[n_v6] = <uint16_t>i
        n_v6 += valid & (not mapped)
    _find_many_v4(&answerer.v4, keys_v4, rows_v4, n_v4)
    _find_many_v6(&answerer.v6, keys_v6, rows_v6, n_v6)

    # IPv4: the /16's flag, then the mixed ones searched together (few /16s are mixed).
    n_mixed = 0
    for i in range(n_v4):
        flag = answerer.prefixes_v4[keys_v4[i] >> 16]
        flags[i] = flag
        mixed[n_mixed] = <uint16_t>i
        n_mixed += flag > 1
    for i in range(n_mixed):
        mixed_v4[i] = keys_v4[mixed[i]]
    _find_many_v4(&answerer.reserved_v4, mixed_v4, mixed_rows, n_mixed)
    for i in range(n_mixed):
        flags[mixed[i]] = answerer.flags_v4[mixed_rows[i]] != 0
    for i in range(n_v4):
        out[where_v4[i]] = _settle(answerer.labels_v4[rows_v4[i]], flags[i],
                                   &status[where_v4[i]])

    # IPv6: the same, by the top 16 bits of the key.
    n_mixed = 0
    for i in range(n_v6):
        flag = answerer.prefixes_v6[keys_v6[2 * i] >> 48]
        flags[i] = flag
        mixed[n_mixed] = <uint16_t>i
        n_mixed += flag > 1
    for i in range(n_mixed):
        mixed_v6[2 * i] = keys_v6[2 * mixed[i]]
        mixed_v6[2 * i + 1] = keys_v6[2 * mixed[i] + 1]
    _find_many_v6(&answerer.reserved_v6, mixed_v6, mixed_rows, n_mixed)
    for i in range(n_mixed):
        flags[mixed[i]] = answerer.flags_v6[mixed_rows[i]] != 0
    for i in range(n_v6):
        out[where_v6[i]] = _settle(answerer.labels_v6[rows_v6[i]], flags[i],
                                   &status[where_v6[i]])


cdef _TableV4 _table_v4(const uint32_t[::1] starts, const uint32_t[::1] jump) except *:
    """Check an IPv4 table's sizes and return its raw pointers for the unchecked searches."""
    _check_starts("IPv4", (starts.shape[0],), starts[0] if starts.shape[0] else 0)
    _check_jump("IPv4", jump.shape[0])
    return _TableV4(&starts[0], &jump[0], starts.shape[0] - 1)


cdef _TableV6 _table_v6(const uint64_t[:, ::1] starts, const uint32_t[::1] jump) except *:
    """Check an IPv6 table's sizes and return its raw pointers for the unchecked searches."""
    cdef object first = 0
    cdef object high, low
    if starts.shape[0] and starts.shape[1] == 2:
        high = starts[0, 0]
        low = starts[0, 1]
        first = (high << 64) | low
    _check_starts("IPv6", (starts.shape[0], starts.shape[1]), first)
    _check_jump("IPv6", jump.shape[0])
    return _TableV6(&starts[0, 0], &jump[0], starts.shape[0] - 1)


cdef void _lookup_chunk(
    const _TableV4* table_v4,
    const uint16_t* labels_v4,
    const _TableV6* table_v6,
    const uint16_t* labels_v6,
    const uint64_t* keys,
    uint8_t* status,
    uint16_t* out,
    Py_ssize_t count,
) noexcept nogil:
    """Label ``count`` <= _CHUNK keys: split them by table, then search each part in lockstep."""
    cdef uint32_t keys_v4[_CHUNK]
    cdef uint64_t keys_v6[2 * _CHUNK]
    cdef int32_t rows_v4[_CHUNK]
    cdef int32_t rows_v6[_CHUNK]
    cdef uint16_t where_v4[_CHUNK]  # position in the chunk of each gathered key
    cdef uint16_t where_v6[_CHUNK]
    cdef Py_ssize_t n_v4 = 0, n_v6 = 0
    cdef Py_ssize_t i
    cdef uint64_t high, low
    cdef bint valid, mapped
    cdef uint16_t label
    # Branch-free: write every key into both buffers, keep it by advancing only one count.
    # Mixed IPv4/IPv6 batches would mispredict an `if` half the time.
    for i in range(count):
        out[i] = _UNKNOWN_LABEL
        high = keys[2 * i]
        low = keys[2 * i + 1]
        valid = status[i] == _STATUS_OK
        mapped = (high == 0) & ((low >> 32) == _MAPPED_TAG)
        keys_v4[n_v4] = <uint32_t>low
        where_v4[n_v4] = <uint16_t>i
        n_v4 += valid & mapped
        keys_v6[2 * n_v6] = high
        keys_v6[2 * n_v6 + 1] = low
        where_v6[n_v6] = <uint16_t>i
        n_v6 += valid & (not mapped)
    _find_many_v4(table_v4, keys_v4, rows_v4, n_v4)
    _find_many_v6(table_v6, keys_v6, rows_v6, n_v6)
    # Statuses gathered here are OK: unlabelled ones step up to NOT_FOUND, without a branch.
    for i in range(n_v4):
        label = labels_v4[rows_v4[i]]
        out[where_v4[i]] = label
        status[where_v4[i]] = (
            _STATUS_OK + (label == _UNKNOWN_LABEL) * (_STATUS_NOT_FOUND - _STATUS_OK)
        )
    for i in range(n_v6):
        label = labels_v6[rows_v6[i]]
        out[where_v6[i]] = label
        status[where_v6[i]] = (
            _STATUS_OK + (label == _UNKNOWN_LABEL) * (_STATUS_NOT_FOUND - _STATUS_OK)
        )


@cython.cdivision(True)  # count >= 0: C's % is Python's
cdef void _find_many_v4(
    const _TableV4* table, const uint32_t* keys, int32_t* out, Py_ssize_t count
) noexcept nogil:
    """Write the index of the last start <= each key; runs _LANES searches at a time."""
    cdef Py_ssize_t full = count - count % _LANES
    cdef Py_ssize_t i = 0
    cdef uint32_t padded_keys[_LANES]
    cdef int32_t padded_out[_LANES]
    while i < full:
        _find_lanes_v4(table, keys + i, out + i)
        i += _LANES
    if full == count:
        return
    # The last few keys, padded with copies of the last one (which search no further).
    for i in range(_LANES):
        padded_keys[i] = keys[min(full + i, count - 1)]
    _find_lanes_v4(table, padded_keys, padded_out)
    for i in range(count - full):
        out[full + i] = padded_out[i]


@cython.cdivision(True)  # count >= 0: C's % is Python's
cdef void _find_many_v6(
    const _TableV6* table, const uint64_t* keys, int32_t* out, Py_ssize_t count
) noexcept nogil:
    """As _find_many_v4, for (high, low) key rows."""
    cdef Py_ssize_t full = count - count % _LANES
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t row
    cdef uint64_t padded_keys[2 * _LANES]
    cdef int32_t padded_out[_LANES]
    while i < full:
        _find_lanes_v6(table, keys + 2 * i, out + i)
        i += _LANES
    if full == count:
        return
    for i in range(_LANES):
        row = min(full + i, count - 1)
        padded_keys[2 * i] = keys[2 * row]
        padded_keys[2 * i + 1] = keys[2 * row + 1]
    _find_lanes_v6(table, padded_keys, padded_out)
    for i in range(count - full):
        out[full + i] = padded_out[i]


cdef inline void _find_lanes_v4(
    const _TableV4* table, const uint32_t* keys, int32_t* out
) noexcept nogil:
    """Search _LANES keys in lockstep: every step advances all of them."""
    cdef const uint32_t* base[_LANES]
    cdef Py_ssize_t size[_LANES]
    cdef Py_ssize_t longest = 1
    cdef Py_ssize_t j, half
    for j in range(_LANES):
        base[j] = table.starts + _window(table.jump, table.last, keys[j] >> (32 - _BITS_V4),
                                         &size[j])
        longest = max(longest, size[j])
    # Invariant: the answer for key j is in base[j][0 .. size[j] - 1]. A lane whose window
    # is down to 1 row has half == 0 and stands still until the longest one is done.
    while longest > 1:
        for j in range(_LANES):
            half = size[j] >> 1
            # A multiply, not an `if` or a ternary: gcc then emits setcc, never a branch.
            base[j] += (base[j][half] <= keys[j]) * half
            size[j] -= half
        longest -= longest >> 1
    for j in range(_LANES):
        out[j] = <int32_t>(base[j] - table.starts)


cdef inline void _find_lanes_v6(
    const _TableV6* table, const uint64_t* keys, int32_t* out
) noexcept nogil:
    """As _find_lanes_v4, comparing 128-bit rows."""
    cdef const uint64_t* base[_LANES]
    cdef _u128 key[_LANES]
    cdef Py_ssize_t size[_LANES]
    cdef Py_ssize_t longest = 1
    cdef Py_ssize_t j, half
    for j in range(_LANES):
        key[j] = _u128_from(keys[2 * j], keys[2 * j + 1])
        base[j] = table.starts + 2 * _window(table.jump, table.last,
                                             keys[2 * j] >> (64 - _BITS_V6), &size[j])
        longest = max(longest, size[j])
    while longest > 1:
        for j in range(_LANES):
            half = size[j] >> 1
            # One 128-bit compare (cmp + sbb): two 64-bit compares would become a branch.
            base[j] += (_u128_from(base[j][2 * half], base[j][2 * half + 1]) <= key[j]) * (
                2 * half
            )
            size[j] -= half
        longest -= longest >> 1
    for j in range(_LANES):
        out[j] = <int32_t>((base[j] - table.starts) >> 1)  # 2 uint64 per row


cdef inline Py_ssize_t _window(
    const uint32_t* jump, Py_ssize_t last, uint64_t prefix, Py_ssize_t* size
) noexcept nogil:
    """Return the first row of the window that holds the answer for ``prefix``, and its size.

    The clamps cost two cmovs and keep a jump table that does not belong to the starts from
    reading outside them: a wrong table gives wrong answers, never a crash.
    """
    cdef Py_ssize_t top = min(<Py_ssize_t>jump[prefix + 1], last)
    cdef Py_ssize_t bottom = min(<Py_ssize_t>jump[prefix], top)
    size[0] = top - bottom + 1
    return bottom
