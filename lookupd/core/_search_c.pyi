"""Stub for the compiled search core (ext/_search_c.pyx); lookupd.core._search_py is its twin.

Tables: IPv4 starts are a sorted ``uint32`` array; IPv6 starts are a ``uint64`` array of
shape (n, 2) holding each 128-bit start as (high 64 bits, low 64 bits), rows sorted.
``starts[0] == 0`` always: the table covers the whole address space. ``jump`` is the
top-bits jump table built by :func:`jump_table_v4` / :func:`jump_table_v6` (a jump table
built for another table gives wrong answers, but never reads outside ``starts``).
Query keys use the same layouts. Every function validates shapes at the boundary and
raises ``ValueError`` on a mismatch (wrong dtype, shape, layout or length, read-only output,
empty table, ``starts[0] != 0``, out-of-range key), then runs without the GIL.

``find_index_v4`` / ``find_index_v6`` answer one key per call, so their checks are done in C
on native, C-contiguous buffers and exact ``int`` keys; anything else takes a slower path
with the same answers and errors. Like every function here they take any buffer of the right
layout, and a ``memoryview`` of an array (``array.data``) costs them less than the array.
"""

from typing import TypeVar

import numpy as np
import numpy.typing as npt

_Name = TypeVar("_Name")

JUMP_BITS_V4: int
JUMP_BITS_V6: int

def jump_table_v4(starts: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]: ...
def jump_table_v6(starts: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint32]: ...
def find_index_v4(
    starts: npt.NDArray[np.uint32], jump: npt.NDArray[np.uint32], key: int
) -> int: ...
def find_index_v6(
    starts: npt.NDArray[np.uint64], jump: npt.NDArray[np.uint32], key: int
) -> int: ...
def find_many_v4(
    starts: npt.NDArray[np.uint32],
    jump: npt.NDArray[np.uint32],
    keys: npt.NDArray[np.uint32],
    out: npt.NDArray[np.int32],
) -> None: ...
def find_many_v6(
    starts: npt.NDArray[np.uint64],
    jump: npt.NDArray[np.uint32],
    keys: npt.NDArray[np.uint64],
    out: npt.NDArray[np.int32],
) -> None: ...
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
) -> None: ...
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
) -> None: ...
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
) -> None: ...
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
) -> None: ...
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
) -> None: ...
def gather_names(names: tuple[_Name, ...], labels: npt.NDArray[np.uint16]) -> list[_Name]: ...
