"""Search sorted range tables with numpy.searchsorted: fallback, type source and test oracle.

This module is the pure-Python twin of the compiled core ``lookupd.core._search_c``: same names,
signatures and errors. The compiled core imports the jump-table builders and the boundary
checks from here, so both cores build the same tables and raise the same messages. It is
as long as the compiled core's Python surface, which it mirrors function for function.

Tables: IPv4 ``starts`` is a C-contiguous ``uint32`` array; IPv6 ``starts`` is a C-contiguous
``uint64`` array of shape (n, 2), each row the (high 64 bits, low 64 bits) of a 128-bit start.
Starts strictly increase and ``starts[0] == 0``: segment ``i`` covers
``starts[i] .. starts[i + 1] - 1``, so every key falls in exactly one segment.
"""

import bisect
import operator
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from lookupd.codes import Status
from lookupd.core.constants import IPV4_MAPPED_PREFIX, IPV4_MAX, IPV6_MAX, UNKNOWN_LABEL

# Top 16 bits: 65,537 entries (256 KiB) leave a few segments per window for most keys, and
# fit in L2 next to the 1.3 MB real IPv4 table. 18 bits gained little on row-uniform keys
# for 4x the memory (bench/README.md, "Figures behind design choices in the code").
JUMP_BITS_V4 = 16
# Also the top 16. The real IPv6 starts crowd into a few /16s (2a01::/16 alone holds 43k of
# 275k rows), so a wider table barely helps: 18 and 20 bits measured no faster, and skipping
# the always-001 top 3 bits (2000::/3) leaves windows between those of 16 and 20 bits.
JUMP_BITS_V6 = 16

_Family = Literal["IPv4", "IPv6"]
# What a names tuple holds: country codes or subdivisions, None for "none".
_Name = TypeVar("_Name")

_U64_MAX = (1 << 64) - 1
# 2**31 - 1: indices are returned in int32 arrays.
_MAX_ROWS = 0x7FFF_FFFF


def jump_table_v4(starts: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """Build the top-bits jump table of an IPv4 table.

    ``jump[p]`` is the index of the last start <= ``p << (32 - JUMP_BITS_V4)`` and the last
    entry is ``len(starts) - 1``, so a key with top bits ``p`` has its answer in
    ``jump[p] .. jump[p + 1]``.

    Raises:
        ValueError: if ``starts`` is not a valid IPv4 table.
    """
    _check_array("starts", starts, np.uint32, 1)
    _check_starts("IPv4", starts.shape, _first_v4(starts))
    shift = 32 - JUMP_BITS_V4
    low_bits_zero = (starts & np.uint32((1 << shift) - 1)) == 0
    return _jump_table(starts >> np.uint32(shift), low_bits_zero, JUMP_BITS_V4)


def jump_table_v6(starts: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint32]:
    """Build the top-bits jump table of an IPv6 table.

    ``jump[p]`` is the index of the last start <= ``p << (128 - JUMP_BITS_V6)`` and the last
    entry is ``len(starts) - 1``, so a key with top bits ``p`` has its answer in
    ``jump[p] .. jump[p + 1]``.

    Raises:
        ValueError: if ``starts`` is not a valid IPv6 table.
    """
    _check_array("starts", starts, np.uint64, 2)
    _check_starts("IPv6", starts.shape, _first_v6(starts))
    shift = 64 - JUMP_BITS_V6
    high = starts[:, 0]
    low_bits_zero = ((high & np.uint64((1 << shift) - 1)) == 0) & (starts[:, 1] == 0)
    return _jump_table(high >> np.uint64(shift), low_bits_zero, JUMP_BITS_V6)


def _jump_table(
    prefixes: npt.NDArray[np.unsignedinteger],
    low_bits_zero: npt.NDArray[np.bool_],
    bits: int,
) -> npt.NDArray[np.uint32]:
    """Build a jump table from each start's top bits and whether all its other bits are 0.

    The starts <= prefix p's first address are those with smaller top bits, plus the start
    exactly at that address if there is one; ``jump[p]`` is their count minus one.
    """
    per_prefix = np.bincount(prefixes.astype(np.intp), minlength=1 << bits)
    below = np.cumsum(per_prefix) - per_prefix
    exactly_at = np.zeros(1 << bits, dtype=np.intp)
    exactly_at[prefixes[low_bits_zero].astype(np.intp)] = 1
    jump = np.empty((1 << bits) + 1, dtype=np.uint32)
    jump[:-1] = below + exactly_at - 1  # >= 0: starts[0] == 0 sits exactly at prefix 0
    jump[-1] = prefixes.shape[0] - 1
    return jump


def find_index_v4(starts: npt.NDArray[np.uint32], jump: npt.NDArray[np.uint32], key: int) -> int:
    """Return the index of the last start <= ``key`` in an IPv4 table.

    Raises:
        ValueError: if the table or jump table is malformed, or ``key`` is not in 0..2**32-1.
        TypeError: if ``key`` is not an integer.
    """
    _check_table_v4(starts, jump)
    # A uint32 key: with a Python int, numpy first converts the whole table to int64.
    value = np.uint32(_key_v4(key))
    return int(np.searchsorted(starts, value, side="right")) - 1


def find_index_v6(starts: npt.NDArray[np.uint64], jump: npt.NDArray[np.uint32], key: int) -> int:
    """Return the index of the last start <= ``key`` in an IPv6 table.

    Raises:
        ValueError: if the table or jump table is malformed, or ``key`` is not in 0..2**128-1.
        TypeError: if ``key`` is not an integer.
    """
    _check_table_v6(starts, jump)
    high, low = _key_v6(key)
    # bisect reads only the ~log2(n) rows it needs; numpy would first copy the whole table.
    return (
        bisect.bisect_right(
            range(starts.shape[0]),
            (high << 64) | low,
            key=lambda i: (int(starts[i, 0]) << 64) | int(starts[i, 1]),
        )
        - 1
    )


def find_many_v4(
    starts: npt.NDArray[np.uint32],
    jump: npt.NDArray[np.uint32],
    keys: npt.NDArray[np.uint32],
    out: npt.NDArray[np.int32],
) -> None:
    """Write, for each IPv4 key, the index of the last start <= key into ``out``.

    Raises:
        ValueError: if an array has the wrong dtype, shape or layout, ``out`` is read-only,
            or ``keys`` and ``out`` differ in length.
    """
    _check_table_v4(starts, jump)
    _check_array("keys", keys, np.uint32, 1)
    _check_array("out", out, np.int32, 1, writable=True)
    _check_lengths(keys=keys.shape[0], out=out.shape[0])
    out[:] = np.searchsorted(starts, keys, side="right") - 1


def find_many_v6(
    starts: npt.NDArray[np.uint64],
    jump: npt.NDArray[np.uint32],
    keys: npt.NDArray[np.uint64],
    out: npt.NDArray[np.int32],
) -> None:
    """Write, for each IPv6 key row, the index of the last start <= key into ``out``.

    Raises:
        ValueError: if an array has the wrong dtype, shape or layout, ``out`` is read-only,
            or ``keys`` and ``out`` differ in length.
    """
    _check_table_v6(starts, jump)
    _check_array("keys", keys, np.uint64, 2)
    _check_array("out", out, np.int32, 1, writable=True)
    _check_rows("keys", keys.shape)
    _check_lengths(keys=keys.shape[0], out=out.shape[0])
    out[:] = _search_v6(starts, keys)


def lookup_many(
    v4_starts: npt.NDArray[np.uint32],
    v4_jump: npt.NDArray[np.uint32],
    v4_labels: npt.NDArray[np.uint16],
    v6_starts: npt.NDArray[np.uint64],
    v6_jump: npt.NDArray[np.uint32],
    v6_labels: npt.NDArray[np.uint16],
    keys: npt.NDArray[np.uint64],
    status: npt.NDArray[np.uint8],
    out: npt.NDArray[np.uint16],
) -> None:
    """Write the label of each 128-bit key into ``out`` and update ``status``.

    An item whose status is not OK on entry (the parser marked it invalid) gets label 0 and
    keeps its status. An IPv4-mapped key (``::ffff:a.b.c.d``) is looked up in the IPv4 table,
    any other in the IPv6 table. An item whose label is 0 (unknown) gets ``NOT_FOUND``.

    Raises:
        ValueError: if an array has the wrong dtype, shape or layout, an output is read-only,
            or the lengths disagree.
    """
    _check_table_v4(v4_starts, v4_jump)
    _check_table_v6(v6_starts, v6_jump)
    _check_array("v4_labels", v4_labels, np.uint16, 1)
    _check_array("v6_labels", v6_labels, np.uint16, 1)
    _check_array("keys", keys, np.uint64, 2)
    _check_array("status", status, np.uint8, 1, writable=True)
    _check_array("out", out, np.uint16, 1, writable=True)
    _check_lengths(v4_starts=v4_starts.shape[0], v4_labels=v4_labels.shape[0])
    _check_lengths(v6_starts=v6_starts.shape[0], v6_labels=v6_labels.shape[0])
    _check_rows("keys", keys.shape)
    _check_lengths(keys=keys.shape[0], status=status.shape[0], out=out.shape[0])

    ok = status == Status.OK
    mapped = (keys[:, 0] == 0) & ((keys[:, 1] >> np.uint64(32)) == IPV4_MAPPED_PREFIX >> 32)
    in_v4 = ok & mapped
    in_v6 = ok & ~mapped
    labels = np.full(keys.shape[0], UNKNOWN_LABEL, dtype=np.uint16)
    v4_keys = (keys[in_v4, 1] & np.uint64(IPV4_MAX)).astype(np.uint32)
    labels[in_v4] = v4_labels[np.searchsorted(v4_starts, v4_keys, side="right") - 1]
    labels[in_v6] = v6_labels[_search_v6(v6_starts, keys[in_v6])]
    out[:] = labels
    status[ok & (labels == UNKNOWN_LABEL)] = Status.NOT_FOUND


def answer_packed_v4(
    starts: npt.NDArray[np.uint32],
    jump: npt.NDArray[np.uint32],
    labels: npt.NDArray[np.uint16],
    reserved_starts: npt.NDArray[np.uint32],
    reserved_jump: npt.NDArray[np.uint32],
    reserved_flags: npt.NDArray[np.uint8],
    reserved_prefixes: npt.NDArray[np.uint8],
    codes: npt.NDArray[np.uint16],
    packed: bytes | memoryview | npt.NDArray[np.uint8],
    out_codes: npt.NDArray[np.uint16],
    out_status: npt.NDArray[np.uint8],
) -> None:
    """Answer packed IPv4 addresses (4 bytes each, network order) in one pass.

    Per address: its label from the table, or 0 where it is reserved; ``out_codes`` gets
    ``codes[label]`` and ``out_status`` gets its :class:`~lookupd.codes.Status` number
    (``OK``, ``NOT_FOUND`` or ``RESERVED``), which is also the packed answer's byte.
    Reserved: ``reserved_prefixes[key >> 16]`` says 0 (none of the /16), 1 (all of it) or 2
    (some: then ``reserved_flags`` of the key's segment of the reserved table decides).

    Raises:
        ValueError: as the other functions, and for ``packed`` not a multiple of 4 bytes,
            ``reserved_flags`` not one per reserved segment, ``reserved_prefixes`` or
            ``codes`` with fewer than 65,536 entries, or outputs of another length than the
            addresses.
    """
    _check_table_v4(starts, jump)
    _check_table_v4(reserved_starts, reserved_jump)
    for name, array, dtype in (
        ("labels", labels, np.uint16),
        ("reserved_flags", reserved_flags, np.uint8),
        ("reserved_prefixes", reserved_prefixes, np.uint8),
        ("codes", codes, np.uint16),
    ):
        _check_array(name, array, dtype, 1)
    _check_array("out_codes", out_codes, np.uint16, 1, writable=True)
    _check_array("out_status", out_status, np.uint8, 1, writable=True)
    _check_answer_v4(
        starts.shape[0],
        labels.shape[0],
        reserved_starts.shape[0],
        reserved_flags.shape[0],
        reserved_prefixes.shape[0],
        codes.shape[0],
        np.frombuffer(packed, dtype=np.uint8).shape[0],
        out_codes.shape[0],
        out_status.shape[0],
    )
    keys = np.frombuffer(packed, dtype=">u4").astype(np.uint32)
    rows = np.searchsorted(starts, keys, side="right") - 1
    flags = reserved_prefixes[keys >> 16]  # a copy (fancy index): written below
    mixed = flags > 1
    segments = np.searchsorted(reserved_starts, keys[mixed], side="right") - 1
    flags[mixed] = reserved_flags[segments] != 0
    found = np.where(flags, UNKNOWN_LABEL, labels[rows])
    status = np.where(
        flags, Status.RESERVED, np.where(found == UNKNOWN_LABEL, Status.NOT_FOUND, Status.OK)
    )
    out_codes[:] = codes[found]
    out_status[:] = status


def _check_answer_v4(
    starts: int,
    labels: int,
    reserved_starts: int,
    reserved_flags: int,
    reserved_prefixes: int,
    codes: int,
    packed_bytes: int,
    out_codes: int,
    out_status: int,
) -> None:
    """answer_packed_v4's checks beyond the tables' own, on lengths only (the compiled core
    calls these too, so both cores refuse alike)."""
    if packed_bytes % 4:
        msg = f"packed IPv4 input of {packed_bytes} bytes is not a multiple of 4"
        raise ValueError(msg)
    _check_lengths(starts=starts, labels=labels)
    _check_lengths(reserved_starts=reserved_starts, reserved_flags=reserved_flags)
    _check_lengths(addresses=packed_bytes // 4, out_codes=out_codes, out_status=out_status)
    _check_prefixes("reserved_prefixes", reserved_prefixes)
    _check_codes(codes)


def answer_many(
    v4_starts: npt.NDArray[np.uint32],
    v4_jump: npt.NDArray[np.uint32],
    v4_labels: npt.NDArray[np.uint16],
    v6_starts: npt.NDArray[np.uint64],
    v6_jump: npt.NDArray[np.uint32],
    v6_labels: npt.NDArray[np.uint16],
    reserved_v4_starts: npt.NDArray[np.uint32],
    reserved_v4_jump: npt.NDArray[np.uint32],
    reserved_v4_flags: npt.NDArray[np.uint8],
    reserved_v4_prefixes: npt.NDArray[np.uint8],
    reserved_v6_starts: npt.NDArray[np.uint64],
    reserved_v6_jump: npt.NDArray[np.uint32],
    reserved_v6_flags: npt.NDArray[np.uint8],
    reserved_v6_prefixes: npt.NDArray[np.uint8],
    keys: npt.NDArray[np.uint64],
    status: npt.NDArray[np.uint8],
    out: npt.NDArray[np.uint16],
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
    _check_answerer(
        v4_starts, v4_jump, v4_labels, v6_starts, v6_jump, v6_labels,
        reserved_v4_starts, reserved_v4_jump, reserved_v4_flags, reserved_v4_prefixes,
        reserved_v6_starts, reserved_v6_jump, reserved_v6_flags, reserved_v6_prefixes,
    )  # fmt: skip
    _check_array("keys", keys, np.uint64, 2)
    _check_array("status", status, np.uint8, 1, writable=True)
    _check_array("out", out, np.uint16, 1, writable=True)
    _check_rows("keys", keys.shape)
    _check_lengths(keys=keys.shape[0], status=status.shape[0], out=out.shape[0])
    lookup_many(v4_starts, v4_jump, v4_labels, v6_starts, v6_jump, v6_labels, keys, status, out)
    valid = status != Status.INVALID_ADDRESS
    mapped = (keys[:, 0] == 0) & ((keys[:, 1] >> np.uint64(32)) == IPV4_MAPPED_PREFIX >> 32)
    flags = np.zeros(keys.shape[0], dtype=np.uint8)
    in_v4 = valid & mapped
    in_v6 = valid & ~mapped
    flags[in_v4] = _reserved_v4(
        (keys[in_v4, 1] & np.uint64(IPV4_MAX)).astype(np.uint32),
        reserved_v4_starts,
        reserved_v4_flags,
        reserved_v4_prefixes,
    )
    rows = np.ascontiguousarray(keys[in_v6])
    prefix_flags = reserved_v6_prefixes[(rows[:, 0] >> np.uint64(48)).astype(np.intp)]
    mixed = prefix_flags > 1
    segments = _search_v6(reserved_v6_starts, rows[mixed])
    prefix_flags[mixed] = reserved_v6_flags[segments] != 0
    flags[in_v6] = prefix_flags
    _mark(flags, status, out)


def answer_many_v4(
    starts: npt.NDArray[np.uint32],
    jump: npt.NDArray[np.uint32],
    labels: npt.NDArray[np.uint16],
    reserved_starts: npt.NDArray[np.uint32],
    reserved_jump: npt.NDArray[np.uint32],
    reserved_flags: npt.NDArray[np.uint8],
    reserved_prefixes: npt.NDArray[np.uint8],
    keys: npt.NDArray[np.uint32],
    out: npt.NDArray[np.uint16],
    out_status: npt.NDArray[np.uint8],
) -> None:
    """Label IPv4 keys (``uint32``) and set their status, reserved ones marked, in one pass.

    As :func:`answer_packed_v4`, with native ``uint32`` keys in and labels (not country
    codes) out: ``out`` gets the label, 0 where reserved, and ``out_status`` ``OK``,
    ``NOT_FOUND`` or ``RESERVED``.

    Raises:
        ValueError: as :func:`answer_packed_v4`, and for outputs of another length than
            ``keys``.
    """
    _check_table_v4(starts, jump)
    _check_table_v4(reserved_starts, reserved_jump)
    for name, array, dtype in (
        ("labels", labels, np.uint16),
        ("reserved_flags", reserved_flags, np.uint8),
        ("reserved_prefixes", reserved_prefixes, np.uint8),
        ("keys", keys, np.uint32),
    ):
        _check_array(name, array, dtype, 1)
    _check_array("out", out, np.uint16, 1, writable=True)
    _check_array("out_status", out_status, np.uint8, 1, writable=True)
    _check_reserved_v4(
        starts.shape[0],
        labels.shape[0],
        reserved_starts.shape[0],
        reserved_flags.shape[0],
        reserved_prefixes.shape[0],
    )
    _check_lengths(keys=keys.shape[0], out=out.shape[0], out_status=out_status.shape[0])
    found = labels[np.searchsorted(starts, keys, side="right") - 1]
    status = np.where(found == UNKNOWN_LABEL, Status.NOT_FOUND, Status.OK).astype(np.uint8)
    flags = _reserved_v4(keys, reserved_starts, reserved_flags, reserved_prefixes)
    _mark(flags, status, found)
    out[:] = found
    out_status[:] = status


def answer_packed_v6(
    v4_starts: npt.NDArray[np.uint32],
    v4_jump: npt.NDArray[np.uint32],
    v4_labels: npt.NDArray[np.uint16],
    v6_starts: npt.NDArray[np.uint64],
    v6_jump: npt.NDArray[np.uint32],
    v6_labels: npt.NDArray[np.uint16],
    reserved_v4_starts: npt.NDArray[np.uint32],
    reserved_v4_jump: npt.NDArray[np.uint32],
    reserved_v4_flags: npt.NDArray[np.uint8],
    reserved_v4_prefixes: npt.NDArray[np.uint8],
    reserved_v6_starts: npt.NDArray[np.uint64],
    reserved_v6_jump: npt.NDArray[np.uint32],
    reserved_v6_flags: npt.NDArray[np.uint8],
    reserved_v6_prefixes: npt.NDArray[np.uint8],
    codes: npt.NDArray[np.uint16],
    packed: bytes | memoryview | npt.NDArray[np.uint8],
    out_codes: npt.NDArray[np.uint16],
    out_status: npt.NDArray[np.uint8],
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
    tables = (
        v4_starts, v4_jump, v4_labels, v6_starts, v6_jump, v6_labels,
        reserved_v4_starts, reserved_v4_jump, reserved_v4_flags, reserved_v4_prefixes,
        reserved_v6_starts, reserved_v6_jump, reserved_v6_flags, reserved_v6_prefixes,
    )  # fmt: skip
    _check_answerer(*tables)
    _check_array("codes", codes, np.uint16, 1)
    _check_array("out_codes", out_codes, np.uint16, 1, writable=True)
    _check_array("out_status", out_status, np.uint8, 1, writable=True)
    data = np.frombuffer(packed, dtype=np.uint8)
    _check_answer_v6(codes.shape[0], data.shape[0], out_codes.shape[0], out_status.shape[0])
    keys = data.view(">u8").astype(np.uint64).reshape(-1, 2)
    status = np.full(keys.shape[0], Status.OK, dtype=np.uint8)
    labels = np.empty(keys.shape[0], dtype=np.uint16)
    answer_many(*tables, keys, status, labels)
    out_codes[:] = codes[labels]
    out_status[:] = status


def gather_names(names: tuple[_Name, ...], labels: npt.NDArray[np.uint16]) -> list[_Name]:
    """Return the list of ``names[label]`` for each label: new references, no copies.

    ``names`` is a tuple (``Database`` keeps one of interned country codes, ``None`` at 0),
    so a batch's list holds the same few objects many times over.

    Raises:
        TypeError: if ``names`` is not a tuple.
        ValueError: if ``labels`` is not a 1-D ``uint16`` array, or a label is not below
            ``len(names)`` (the message names the first such label).
    """
    _check_label_names(names)
    _check_array("labels", labels, np.uint16, 1)
    beyond = np.flatnonzero(labels >= len(names))
    if beyond.shape[0]:
        _check_label_names(names, int(labels[beyond[0]]))
    return list(map(names.__getitem__, labels.tolist()))


def _reserved_v4(
    keys: npt.NDArray[np.uint32],
    reserved_starts: npt.NDArray[np.uint32],
    reserved_flags: npt.NDArray[np.uint8],
    reserved_prefixes: npt.NDArray[np.uint8],
) -> npt.NDArray[np.uint8]:
    """Return 1 for each reserved IPv4 key, 0 for the others: its /16's flag, or a search."""
    flags: npt.NDArray[np.uint8] = reserved_prefixes[keys >> 16]  # a copy: written below
    mixed = flags > 1
    segments = np.searchsorted(reserved_starts, keys[mixed], side="right") - 1
    flags[mixed] = reserved_flags[segments] != 0
    return flags


def _mark(
    flags: npt.NDArray[np.uint8], status: npt.NDArray[np.uint8], labels: npt.NDArray[np.uint16]
) -> None:
    """Give the items flagged 1 ``RESERVED`` and label 0, in place (0 for invalid items)."""
    reserved = flags.astype(bool)
    status[reserved] = Status.RESERVED
    labels[reserved] = UNKNOWN_LABEL


def _check_answerer(
    v4_starts: npt.NDArray[np.uint32],
    v4_jump: npt.NDArray[np.uint32],
    v4_labels: npt.NDArray[np.uint16],
    v6_starts: npt.NDArray[np.uint64],
    v6_jump: npt.NDArray[np.uint32],
    v6_labels: npt.NDArray[np.uint16],
    reserved_v4_starts: npt.NDArray[np.uint32],
    reserved_v4_jump: npt.NDArray[np.uint32],
    reserved_v4_flags: npt.NDArray[np.uint8],
    reserved_v4_prefixes: npt.NDArray[np.uint8],
    reserved_v6_starts: npt.NDArray[np.uint64],
    reserved_v6_jump: npt.NDArray[np.uint32],
    reserved_v6_flags: npt.NDArray[np.uint8],
    reserved_v6_prefixes: npt.NDArray[np.uint8],
) -> None:
    """Check the tables the answer_* functions share, as the compiled core does."""
    for name, array, dtype in (
        ("v4_labels", v4_labels, np.uint16),
        ("v6_labels", v6_labels, np.uint16),
        ("reserved_v4_flags", reserved_v4_flags, np.uint8),
        ("reserved_v4_prefixes", reserved_v4_prefixes, np.uint8),
        ("reserved_v6_flags", reserved_v6_flags, np.uint8),
        ("reserved_v6_prefixes", reserved_v6_prefixes, np.uint8),
    ):
        _check_array(name, array, dtype, 1)
    _check_table_v4(v4_starts, v4_jump)
    _check_table_v6(v6_starts, v6_jump)
    _check_table_v4(reserved_v4_starts, reserved_v4_jump)
    _check_table_v6(reserved_v6_starts, reserved_v6_jump)
    _check_answer_tables(
        v4_starts.shape[0],
        v4_labels.shape[0],
        v6_starts.shape[0],
        v6_labels.shape[0],
        reserved_v4_starts.shape[0],
        reserved_v4_flags.shape[0],
        reserved_v4_prefixes.shape[0],
        reserved_v6_starts.shape[0],
        reserved_v6_flags.shape[0],
        reserved_v6_prefixes.shape[0],
    )


def _check_answer_tables(
    v4_starts: int,
    v4_labels: int,
    v6_starts: int,
    v6_labels: int,
    reserved_v4_starts: int,
    reserved_v4_flags: int,
    reserved_v4_prefixes: int,
    reserved_v6_starts: int,
    reserved_v6_flags: int,
    reserved_v6_prefixes: int,
) -> None:
    """The answer_* functions' checks beyond the tables' own, on lengths only (the compiled
    core calls these too, so both cores refuse alike)."""
    _check_lengths(v4_starts=v4_starts, v4_labels=v4_labels)
    _check_lengths(v6_starts=v6_starts, v6_labels=v6_labels)
    _check_lengths(reserved_v4_starts=reserved_v4_starts, reserved_v4_flags=reserved_v4_flags)
    _check_lengths(reserved_v6_starts=reserved_v6_starts, reserved_v6_flags=reserved_v6_flags)
    _check_prefixes("reserved_v4_prefixes", reserved_v4_prefixes)
    _check_prefixes("reserved_v6_prefixes", reserved_v6_prefixes)


def _check_reserved_v4(
    starts: int, labels: int, reserved_starts: int, reserved_flags: int, reserved_prefixes: int
) -> None:
    """Check the lengths of an IPv4 table's labels and of the reserved arrays."""
    _check_lengths(starts=starts, labels=labels)
    _check_lengths(reserved_starts=reserved_starts, reserved_flags=reserved_flags)
    _check_prefixes("reserved_prefixes", reserved_prefixes)


def _check_prefixes(name: str, length: int) -> None:
    """Check that a table of /16 flags has one entry per /16."""
    if length < _LABEL_CODES:
        msg = f"{name} needs {_LABEL_CODES:,} entries (one per /16), not {length:,}"
        raise ValueError(msg)


def _check_codes(length: int) -> None:
    """Check that a code table has a code for every uint16 label."""
    # Every uint16 label has a code, so no label can index past the table.
    if length < _LABEL_CODES:
        msg = f"codes needs {_LABEL_CODES:,} entries (one per uint16 label), not {length:,}"
        raise ValueError(msg)


def _check_answer_v6(codes: int, packed_bytes: int, out_codes: int, out_status: int) -> None:
    """answer_packed_v6's checks beyond answer_many's, on lengths only."""
    if packed_bytes % 16:
        msg = f"packed IPv6 input of {packed_bytes} bytes is not a multiple of 16"
        raise ValueError(msg)
    _check_lengths(addresses=packed_bytes // 16, out_codes=out_codes, out_status=out_status)
    _check_codes(codes)


def _check_label_names(names: object, label: int | None = None) -> None:
    """Check that ``names`` is a tuple; with ``label``, raise for that label without a name."""
    if not isinstance(names, tuple):
        msg = f"names must be a tuple, not {type(names).__name__}"
        raise TypeError(msg)
    if label is not None:
        msg = f"label {label} has no name: there are {len(names)} names"
        raise ValueError(msg)


_LABEL_CODES = 1 << 16


def _search_v6(
    starts: npt.NDArray[np.uint64], keys: npt.NDArray[np.uint64]
) -> npt.NDArray[np.intp]:
    """Return, for each key row, the index of the last start row <= it."""
    # Big-endian 16-byte strings compare like the 128-bit numbers they hold.
    return np.searchsorted(_as_bytes(starts), _as_bytes(keys), side="right") - 1


def _as_bytes(rows: npt.NDArray[np.uint64]) -> npt.NDArray[np.bytes_]:
    """View (high, low) uint64 rows as big-endian ``S16`` strings (a copy)."""
    return rows.astype(">u8").view("S16").reshape(-1)


def _key_v4(key: int) -> int:
    """Return ``key`` as an int, checking it is an IPv4 address (0..2**32-1)."""
    value = operator.index(key)
    if not 0 <= value <= IPV4_MAX:
        msg = f"IPv4 key out of range 0..2**32-1: {value}"
        raise ValueError(msg)
    return value


def _key_v6(key: int) -> tuple[int, int]:
    """Split an IPv6 key (0..2**128-1) into its high and low 64 bits."""
    value = operator.index(key)
    if not 0 <= value <= IPV6_MAX:
        msg = f"IPv6 key out of range 0..2**128-1: {value}"
        raise ValueError(msg)
    return value >> 64, value & _U64_MAX


def _check_table_v4(starts: npt.NDArray[np.uint32], jump: npt.NDArray[np.uint32]) -> None:
    """Check the arrays of an IPv4 table (dtype, layout, sizes)."""
    _check_array("starts", starts, np.uint32, 1)
    _check_array("jump", jump, np.uint32, 1)
    _check_starts("IPv4", starts.shape, _first_v4(starts))
    _check_jump("IPv4", jump.shape[0])


def _check_table_v6(starts: npt.NDArray[np.uint64], jump: npt.NDArray[np.uint32]) -> None:
    """Check the arrays of an IPv6 table (dtype, layout, sizes)."""
    _check_array("starts", starts, np.uint64, 2)
    _check_array("jump", jump, np.uint32, 1)
    _check_starts("IPv6", starts.shape, _first_v6(starts))
    _check_jump("IPv6", jump.shape[0])


def _first_v4(starts: npt.NDArray[np.uint32]) -> int:
    return int(starts[0]) if starts.shape[0] else 0


def _first_v6(starts: npt.NDArray[np.uint64]) -> int:
    if starts.shape[0] == 0 or starts.shape[1] != 2:
        return 0
    return (int(starts[0, 0]) << 64) | int(starts[0, 1])


def _check_array(
    name: str,
    array: npt.NDArray[np.generic],
    dtype: type[np.generic],
    ndim: int,
    *,
    writable: bool = False,
) -> None:
    """Refuse what the compiled core's typed memoryviews refuse, with the same exceptions."""
    if not isinstance(array, np.ndarray):
        msg = f"{name} must be a numpy array, not {type(array).__name__}"
        raise TypeError(msg)
    if array.dtype != np.dtype(dtype):
        msg = f"{name} must have dtype {np.dtype(dtype)}, not {array.dtype}"
        raise ValueError(msg)
    if array.ndim != ndim:
        msg = f"{name} must have {ndim} dimension(s), not {array.ndim}"
        raise ValueError(msg)
    if not array.flags.c_contiguous:
        msg = f"{name} must be C-contiguous"
        raise ValueError(msg)
    if writable and not array.flags.writeable:
        msg = f"{name} is read-only"
        raise ValueError(msg)


def _check_starts(family: _Family, shape: tuple[int, ...], first: int) -> None:
    """Check the shape of a table's starts and that it begins at address 0.

    The compiled core calls this at its boundary too, so the two cores raise alike.
    """
    if family == "IPv6" and shape[1:] != (2,):
        msg = f"IPv6 starts must have shape (n, 2), got {shape}"
        raise ValueError(msg)
    if shape[0] == 0:
        msg = f"{family} table is empty: starts needs at least the segment at address 0"
        raise ValueError(msg)
    if shape[0] > _MAX_ROWS:
        msg = f"{family} table has {shape[0]} segments, more than int32 indices allow"
        raise ValueError(msg)
    if first != 0:
        msg = f"{family} starts[0] must be 0 (the table covers the whole space), got {first}"
        raise ValueError(msg)


def _check_jump(family: _Family, length: int) -> None:
    """Check the length of a jump table; the compiled core calls this at its boundary too."""
    bits = JUMP_BITS_V4 if family == "IPv4" else JUMP_BITS_V6
    expected = (1 << bits) + 1
    if length != expected:
        suffix = "v4" if family == "IPv4" else "v6"
        msg = (
            f"{family} jump table has {length} entries, expected {expected} (2**{bits} + 1); "
            f"build it with jump_table_{suffix}()"
        )
        raise ValueError(msg)


def _check_rows(name: str, shape: tuple[int, ...]) -> None:
    """Check that 128-bit keys come as (n, 2) rows of uint64."""
    if shape[1:] != (2,):
        msg = f"{name} must have shape (n, 2), got {shape}"
        raise ValueError(msg)


def _check_lengths(**lengths: int) -> None:
    """Check that the named arrays all have the same length."""
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{name}={n}" for name, n in lengths.items())
        msg = f"arrays differ in length: {sizes}"
        raise ValueError(msg)
