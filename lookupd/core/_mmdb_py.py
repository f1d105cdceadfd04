"""Walk a MaxMind DB search tree and label its data records: the pure-Python twin of _mmdb_c.

This module knows the MaxMind DB binary layout (MaxMind DB File Format Specification 2.0)
and nothing else: bytes in, numpy arrays out. Opening files, metadata and the label rules'
wording belong to ``lookupd.datafiles.formats.mmdb``. The compiled twin (ext/_mmdb_c.pyx)
gives the same answers and raises the same errors with the same messages; both raise
``ValueError`` naming the problem, for the caller to word with the file's name.

:func:`walk_tree` yields the networks in the order the ``maxminddb`` readers iterate them
(depth first, left before right: ascending addresses) and refuses a tree those readers
would walk forever or past their address buffer: every node must be reached once, and no
node may sit as deep as the address has bits. A node equal to the IPv4 subtree's start
reached outside ``::/96`` is an alias, as the readers treat it: reported, not followed.
The first problem met in that order is the one reported.

:func:`find_labels` validates each data record as maxminddb's pure-Python decoder and
libmaxminddb would decode it in full (types, sizes, bounds, no pointer to a pointer, the
values, depth and payload limits, UTF-8 strings) and also requires every map key to be a
string (maxminddb's C extension crashed on other keys), but builds nothing: it only finds
where the few values a label needs are.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

TOO_DEEP_TREE = "search tree deeper than {bits} bits"
"""Problem: a search node as deep as the address has bits (``bits`` is 32 or 128)."""
REACHED_TWICE = "search tree reaches a node twice (a cycle or a shared subtree)"
"""Problem: a node reached by two paths (only the IPv4 aliases may share a subtree)."""
BAD_DATA = (
    "The MaxMind DB file's data section contains bad data (unknown data type or corrupt data)"
)
"""Problem: a malformed value (the wording of maxminddb and libmaxminddb)."""
TOO_MANY_VALUES = "The MaxMind DB file's data section exceeds the maximum number of values"
"""Problem: a record of more than 65,536 values (maxminddb's limit)."""
TOO_DEEP_DATA = "The MaxMind DB file's data section exceeds the maximum depth"
"""Problem: a record nested deeper than 512 levels, pointers included (maxminddb's limit)."""
TOO_LARGE = "The MaxMind DB file's data section exceeds the maximum payload size"
"""Problem: a record of more than 2 MiB of strings and bytes (maxminddb's limit)."""
UNEXPECTED_TYPE = "Unexpected type number ({type}) encountered"
"""Problem: a type number the format does not define (12, 13, or above 15)."""
KEY_NOT_A_STRING = "a map key in its data is not a string"
"""Problem: a map key of another type (maxminddb's C extension crashed on them)."""
NOT_UTF8 = "a string in its data is not valid UTF-8"
"""Problem: a string value or key that is not UTF-8."""

KIND_NONE = 0
"""find_labels: the record has no usable country code."""
KIND_COUNTRY_CODE = 1
"""find_labels: a flat ``country_code`` (span 0)."""
KIND_COUNTRY = 2
"""find_labels: ``country.iso_code`` (span 0), with ``subdivisions[0].iso_code`` (span 1)
where it has one (else span 1 is empty)."""
KIND_REGISTERED_COUNTRY = 3
"""find_labels: ``registered_country.iso_code`` (span 0), the record having no country."""

ALIAS_DEPTH = 96
"""An IPv6 tree's IPv4 subtree starts at ``::/96``."""
_RECORD_SIZES = (24, 28, 32)
_MAX_VALUES = 1 << 16
_MAX_DATA_DEPTH = 512
_MAX_PAYLOAD_BYTES = 1 << 21
# Added to a pointer value, by pointer size in bytes (1-4).
_POINTER_BIAS = (0, 0, 2048, 526336, 0)
# The widest value each integer type may declare, in bytes (libmaxminddb's checks).
_INT_BYTES = {5: 2, 6: 4, 8: 4, 9: 8, 10: 16}
_STRING, _POINTER, _MAP, _ARRAY = 2, 1, 7, 11
_KEYS = (b"country_code", b"country", b"registered_country", b"subdivisions")
_ISO_CODE = b"iso_code"

Buffer = bytes | bytearray | memoryview
"""What the functions read: a file's bytes, or a view of a mapped file."""

Networks = tuple[
    npt.NDArray[np.uint64],
    npt.NDArray[np.uint8],
    npt.NDArray[np.uint32],
    npt.NDArray[np.uint64],
    npt.NDArray[np.uint8],
]


def walk_tree(tree: Buffer, node_count: int, record_size: int, ip_version: int) -> Networks:
    """Walk the search tree at the start of ``tree`` as the ``maxminddb`` readers iterate it.

    Args:
        tree: the file's bytes (any buffer), the search tree first.
        node_count: search nodes, from the metadata.
        record_size: 24, 28 or 32 bits per record.
        ip_version: 4 or 6: the tree is 32 or 128 levels deep.

    Returns:
        ``(starts, depths, records, alias_starts, alias_depths)``: per network, its first
        address as (high, low) 64-bit halves (an IPv4 tree's addresses in ``low``), its
        depth in the tree (the prefix length in the tree's own bits) and its record value
        (above ``node_count``); per alias, the same address and depth.

    Raises:
        ValueError: arguments the tree cannot have, or a tree the readers cannot walk.
    """
    _check_shape(len(memoryview(tree)), node_count, record_size, ip_version)
    left, right = _node_records(tree, node_count, record_size)
    bits = 32 if ip_version == 4 else 128
    ipv4_start = _ipv4_start(left, node_count, ip_version)
    starts: list[tuple[int, int]] = []
    depths: list[int] = []
    records: list[int] = []
    aliases: list[tuple[int, int]] = []
    alias_depths: list[int] = []
    visited = bytearray(node_count)
    visited[0] = 1
    stack = [(0, 0, 0)]  # (record value, depth, first address)
    while stack:
        value, depth, address = stack.pop()
        if value > node_count:
            starts.append((address >> 64, address & 0xFFFF_FFFF_FFFF_FFFF))
            depths.append(depth)
            records.append(value)
            continue
        if value == node_count:  # an empty record
            continue
        if depth == bits:
            raise ValueError(TOO_DEEP_TREE.format(bits=bits))
        bit = 1 << (bits - 1 - depth)
        # Right first: the stack pops the left child, the lower addresses, first.
        for child, child_address in ((right[value], address | bit), (left[value], address)):
            if child >= node_count:
                stack.append((child, depth + 1, child_address))
            elif child == ipv4_start and child_address >> 32 != 0:
                aliases.append((child_address >> 64, child_address & 0xFFFF_FFFF_FFFF_FFFF))
                alias_depths.append(depth + 1)
            elif visited[child]:
                raise ValueError(REACHED_TWICE)
            else:
                visited[child] = 1
                stack.append((child, depth + 1, child_address))
    return (
        np.array(starts, dtype=np.uint64).reshape(-1, 2),
        np.array(depths, dtype=np.uint8),
        np.array(records, dtype=np.uint32),
        np.array(aliases, dtype=np.uint64).reshape(-1, 2),
        np.array(alias_depths, dtype=np.uint8),
    )


def _check_shape(size: int, node_count: int, record_size: int, ip_version: int) -> None:
    if record_size not in _RECORD_SIZES:
        msg = f"unsupported record size {record_size}"
        raise ValueError(msg)
    if ip_version not in (4, 6):
        msg = f"unsupported ip_version {ip_version}"
        raise ValueError(msg)
    if not 0 < node_count < 1 << 32:
        msg = f"search tree has {node_count} nodes"
        raise ValueError(msg)
    if node_count * (record_size // 4) > size:
        msg = f"search tree of {node_count} nodes extends past the end of the file"
        raise ValueError(msg)


def _node_records(tree: Buffer, node_count: int, record_size: int) -> tuple[list[int], list[int]]:
    """Decode every node's (left, right) record: 24, 28 or 32 bits each, big-endian."""
    node_bytes = record_size // 4
    # A copy: no view of the caller's buffer outlives the call.
    raw = np.frombuffer(tree, dtype=np.uint8, count=node_count * node_bytes).copy()
    nodes = raw.reshape(node_count, node_bytes).astype(np.uint32)
    if node_bytes == 6:
        left = (nodes[:, 0] << 16) | (nodes[:, 1] << 8) | nodes[:, 2]
        right = (nodes[:, 3] << 16) | (nodes[:, 4] << 8) | nodes[:, 5]
    elif node_bytes == 7:
        # The middle byte's high nibble tops the left record, its low nibble the right.
        middle = nodes[:, 3]
        left = ((middle & 0xF0) << 20) | (nodes[:, 0] << 16) | (nodes[:, 1] << 8) | nodes[:, 2]
        right = ((middle & 0x0F) << 24) | (nodes[:, 4] << 16) | (nodes[:, 5] << 8) | nodes[:, 6]
    else:
        left = (nodes[:, 0] << 24) | (nodes[:, 1] << 16) | (nodes[:, 2] << 8) | nodes[:, 3]
        right = (nodes[:, 4] << 24) | (nodes[:, 5] << 16) | (nodes[:, 6] << 8) | nodes[:, 7]
    return left.tolist(), right.tolist()


def _ipv4_start(left: list[int], node_count: int, ip_version: int) -> int:
    """The node the IPv4 subtree starts at, as the readers find it: 96 left turns from the
    root unless a record ends them; ``node_count`` (never a node) for an IPv4 tree."""
    if ip_version != 6:
        return node_count
    node = 0
    for _ in range(ALIAS_DEPTH):
        if node >= node_count:
            break
        node = left[node]
    return node


def find_labels(
    data: Buffer,
    offsets: npt.NDArray[np.uint32],
    kinds: npt.NDArray[np.uint8],
    spans: npt.NDArray[np.uint32],
) -> None:
    """Validate each data record and find the values its label needs.

    Args:
        data: the data section (from its first byte to the end of the file).
        offsets: where each record starts in ``data``.
        kinds: out, one ``KIND_*`` per record.
        spans: out, shape (len(offsets), 4): (start, length) in ``data`` of the country
            code (``country_code`` or an ``iso_code``) and of the subdivision's ``iso_code``
            (0, 0 where there is none). The bytes are valid UTF-8.

    Raises:
        ValueError: if the outputs do not fit ``offsets``, or a record is malformed or past
            the end of ``data`` (the message names the problem).
    """
    _check_outputs(len(offsets), kinds.shape, spans.shape)
    # Released on the way out, also on an error: the caller may close a mapped file.
    with memoryview(data) as raw, raw.cast("B") as view:
        for i, offset in enumerate(offsets.tolist()):
            try:
                top = _Decoder(view).record(offset)
            except RecursionError:  # only under a recursion limit below the 512 levels
                raise ValueError(TOO_DEEP_DATA) from None
            kind, code, subdivision = _label(view, top)
            kinds[i] = kind
            spans[i] = (*code, *subdivision)


def _check_outputs(n: int, kinds: tuple[int, ...], spans: tuple[int, ...]) -> None:
    if kinds != (n,) or spans != (n, 4):
        msg = f"outputs of shapes {kinds} and {spans} do not fit {n} records"
        raise ValueError(msg)


class _Decoder:
    """One record's validating walk, with its budget (maxminddb's limits)."""

    def __init__(self, data: memoryview) -> None:
        self._data = data
        self._values_left = _MAX_VALUES - 1  # the root costs one value
        self._payload_left = _MAX_PAYLOAD_BYTES
        self.top: dict[bytes, int] = {}

    def record(self, offset: int) -> dict[bytes, int]:
        """Validate the record at ``offset``; return its top map's wanted keys' values."""
        self._typed(offset, 0, pointer_target=False, top=True)
        return self.top

    def _typed(
        self, offset: int, depth: int, *, pointer_target: bool, top: bool
    ) -> tuple[int, int]:
        """Validate one value; return the offset after it and its type after pointers."""
        data = self._data
        kind, size, offset = _control(data, offset)
        if kind == _STRING:
            self._charge(size)
            end = _span_end(data, offset, size)
            try:
                bytes(data[offset:end]).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(NOT_UTF8) from None
            return end, kind
        if kind == _POINTER:
            if pointer_target:
                raise ValueError(BAD_DATA)
            target, end = _pointer(data, offset, size)
            if depth + 1 > _MAX_DATA_DEPTH:
                raise ValueError(TOO_DEEP_DATA)
            _, target_kind = self._typed(target, depth + 1, pointer_target=True, top=top)
            return end, target_kind
        if kind == _MAP:
            self._count(2 * size)
            if depth + 1 > _MAX_DATA_DEPTH:
                raise ValueError(TOO_DEEP_DATA)
            for _ in range(size):
                key_at = offset
                offset, key_kind = self._typed(offset, depth + 1, pointer_target=False, top=False)
                if key_kind != _STRING:
                    raise ValueError(KEY_NOT_A_STRING)
                value_at = offset
                offset, _ = self._typed(offset, depth + 1, pointer_target=False, top=False)
                if top:
                    key = _string_at(data, key_at)
                    if key in _KEYS:
                        self.top[key] = value_at  # the last of equal keys wins, as in a dict
            return offset, kind
        if kind == _ARRAY:
            self._count(size)
            if depth + 1 > _MAX_DATA_DEPTH:
                raise ValueError(TOO_DEEP_DATA)
            for _ in range(size):
                offset, _ = self._typed(offset, depth + 1, pointer_target=False, top=False)
            return offset, kind
        if kind in _INT_BYTES:
            if size > _INT_BYTES[kind]:
                raise ValueError(BAD_DATA)
            return _span_end(data, offset, size), kind
        if kind == 3 or kind == 15:  # double, float
            if size != (8 if kind == 3 else 4):
                raise ValueError(BAD_DATA)
            return _span_end(data, offset, size), kind
        if kind == 4:  # bytes
            self._charge(size)
            return _span_end(data, offset, size), kind
        if kind == 14:  # boolean: the size is the value
            return offset, kind
        raise ValueError(UNEXPECTED_TYPE.format(type=kind))

    def _count(self, values: int) -> None:
        self._values_left -= values
        if self._values_left < 0:
            raise ValueError(TOO_MANY_VALUES)

    def _charge(self, size: int) -> None:
        self._payload_left -= size
        if self._payload_left < 0:
            raise ValueError(TOO_LARGE)


def _control(data: memoryview, offset: int) -> tuple[int, int, int]:
    """Read a control byte (and extended type, size bytes): (type, size, offset after)."""
    end = len(data)
    if offset >= end:
        raise ValueError(BAD_DATA)
    ctrl = data[offset]
    offset += 1
    kind = ctrl >> 5
    if kind == 0:  # extended: the next byte is the type minus 7
        if offset >= end:
            raise ValueError(BAD_DATA)
        kind = 7 + data[offset]
        offset += 1
    size = ctrl & 0x1F
    if kind != _POINTER and size >= 29:
        extra = size - 28  # 1, 2 or 3 size bytes follow
        if offset + extra > end:
            raise ValueError(BAD_DATA)
        value = int.from_bytes(data[offset : offset + extra], "big")
        size = (29, 285, 65821)[extra - 1] + value
        offset += extra
    return kind, size, offset


def _pointer(data: memoryview, offset: int, size: int) -> tuple[int, int]:
    """A pointer's target and the offset after it (``size`` is the control byte's low bits)."""
    length = ((size >> 3) & 3) + 1
    if offset + length > len(data):
        raise ValueError(BAD_DATA)
    value = int.from_bytes(data[offset : offset + length], "big")
    if length < 4:
        value |= (size & 7) << (8 * length)
    return value + _POINTER_BIAS[length], offset + length


def _span_end(data: memoryview, offset: int, size: int) -> int:
    end = offset + size
    if end > len(data):
        raise ValueError(BAD_DATA)
    return end


def _resolve(data: memoryview, offset: int) -> tuple[int, int, int]:
    """(type, size, payload offset) of the value at ``offset``, a pointer followed once."""
    kind, size, after = _control(data, offset)
    if kind == _POINTER:
        target, _ = _pointer(data, after, size)
        kind, size, after = _control(data, target)
    return kind, size, after


def _string_at(data: memoryview, offset: int) -> bytes:
    _, size, start = _resolve(data, offset)
    return bytes(data[start : start + size])


def _skip(data: memoryview, offset: int) -> int:
    """The offset after an already validated value."""
    kind, size, offset = _control(data, offset)
    if kind == _POINTER:
        return offset + ((size >> 3) & 3) + 1
    if kind == _MAP:
        for _ in range(2 * size):
            offset = _skip(data, offset)
        return offset
    if kind == _ARRAY:
        for _ in range(size):
            offset = _skip(data, offset)
        return offset
    return offset if kind == 14 else offset + size


def _iso_code(data: memoryview, offset: int) -> tuple[int, int] | None:
    """The span of a non-empty string ``iso_code`` of the map at ``offset``, if any."""
    kind, size, offset = _resolve(data, offset)
    if kind != _MAP:
        return None
    found = None
    for _ in range(size):
        key = _string_at(data, offset)
        offset = _skip(data, offset)
        if key == _ISO_CODE:
            found = offset  # the last of equal keys wins
        offset = _skip(data, offset)
    return None if found is None else _nonempty_string(data, found)


def _nonempty_string(data: memoryview, offset: int) -> tuple[int, int] | None:
    kind, size, start = _resolve(data, offset)
    return (start, size) if kind == _STRING and size else None


def _label(data: memoryview, top: dict[bytes, int]) -> tuple[int, tuple[int, int], tuple[int, int]]:
    """The label rule of lookupd.datafiles.formats.mmdb, on a validated record's top map."""
    none = (0, 0)
    at = top.get(b"country_code")
    code = None if at is None else _nonempty_string(data, at)
    if code is not None:
        return KIND_COUNTRY_CODE, code, none
    at = top.get(b"country")
    code = None if at is None else _iso_code(data, at)
    if code is not None:
        return KIND_COUNTRY, code, _first_subdivision(data, top.get(b"subdivisions")) or none
    at = top.get(b"registered_country")
    code = None if at is None else _iso_code(data, at)
    if code is not None:
        return KIND_REGISTERED_COUNTRY, code, none
    return KIND_NONE, none, none


def _first_subdivision(data: memoryview, offset: int | None) -> tuple[int, int] | None:
    if offset is None:
        return None
    kind, size, first = _resolve(data, offset)
    return _iso_code(data, first) if kind == _ARRAY and size else None
