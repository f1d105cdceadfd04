"""Write small MaxMind DB files, and read any as lookupd read them before its own core did.

``write_mmdb`` builds a database from (network, record) pairs (MaxMind DB File Format
Specification 2.0), ``write_raw_tree`` one from raw node records (crafted trees).
``reference_rows`` is lookupd's ``.mmdb`` reader as it was before the tree walk and the
labels moved into ``lookupd.core._mmdb``: ``maxminddb`` iterates the file network by network
and each record is labelled in Python. It is the oracle the new reader must match exactly
(rows, label order, notes) on files maxminddb reads safely.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import maxminddb

from lookupd.core.constants import IPV4_MAPPED_PREFIX, IPV4_MAX, IPV6_MAX
from lookupd.datafiles.formats import mmdb
from lookupd.datafiles.rows import RangeRows

_MARKER = b"\xab\xcd\xefMaxMind.com"


@dataclass(frozen=True)
class Uint:
    """An unsigned integer of an explicit MaxMind DB type (the metadata needs exact types)."""

    type_number: int
    value: int


def uint16(value: int) -> Uint:
    return Uint(5, value)


def uint32(value: int) -> Uint:
    return Uint(6, value)


def uint64(value: int) -> Uint:
    return Uint(9, value)


def control(type_number: int, size: int) -> bytes:
    first, extended = (type_number << 5, b"") if type_number <= 7 else (0, bytes([type_number - 7]))
    if size < 29:
        return bytes([first | size]) + extended
    if size < 29 + 256:
        return bytes([first | 29]) + extended + bytes([size - 29])
    return bytes([first | 30]) + extended + (size - 285).to_bytes(2, "big")


def encode(value: object) -> bytes:
    if isinstance(value, Uint):
        payload = value.value.to_bytes((value.value.bit_length() + 7) // 8, "big")
        return control(value.type_number, len(payload)) + payload
    if isinstance(value, str):
        payload = value.encode()
        return control(2, len(payload)) + payload
    if isinstance(value, dict):
        items = b"".join(encode(k) + encode(v) for k, v in value.items())
        return control(7, len(value)) + items
    if isinstance(value, list):
        return control(11, len(value)) + b"".join(encode(v) for v in value)
    raise TypeError(f"cannot encode {value!r}")


def assemble(
    nodes: list[tuple[int, int]], data: bytes, ip_version: int, record_size: int = 24
) -> bytes:
    """A database file from raw node records (24, 28 or 32 bits) and an encoded data section."""
    tree = b"".join(_node(a, b, record_size) for a, b in nodes)
    metadata = {
        "binary_format_major_version": uint16(2),
        "binary_format_minor_version": uint16(0),
        "build_epoch": uint64(1_700_000_000),
        "database_type": "lookupd-test",
        "description": {"en": "written by tests/test_format_mmdb.py"},
        "ip_version": uint16(ip_version),
        "languages": ["en"],
        "node_count": uint32(len(nodes)),
        "record_size": uint16(record_size),
    }
    return tree + bytes(16) + data + _MARKER + encode(metadata)


def _node(left: int, right: int, record_size: int) -> bytes:
    if record_size == 28:
        # The middle byte's high nibble tops the left record, its low nibble the right.
        middle = bytes([(left >> 24) << 4 | (right >> 24)])
        return (left & 0xFFFFFF).to_bytes(3, "big") + middle + (right & 0xFFFFFF).to_bytes(3, "big")
    size = record_size // 8
    return left.to_bytes(size, "big") + right.to_bytes(size, "big")


def write_mmdb(
    path: Path,
    networks: list[tuple[str, dict[str, Any]]],
    *,
    ip_version: int = 6,
    aliases: tuple[str, ...] = (),
    record_size: int = 24,
) -> Path:
    """Write ``networks`` (CIDR text, record) as a database; ``aliases`` point at ::/96."""
    bits = 128 if ip_version == 6 else 32
    root: list[Any] = [None, None]  # a node: [left, right]; a child: None, record index, node

    def node_at(value: int, length: int) -> list[Any]:
        node = root
        for depth in range(length):
            bit = (value >> (bits - 1 - depth)) & 1
            if node[bit] is None:
                node[bit] = [None, None]
            node = node[bit]
        return node

    records: list[bytes] = []
    for text, record in networks:
        network = ipaddress.ip_network(text)
        length = network.prefixlen + (96 if bits == 128 and network.version == 4 else 0)
        value = int(network.network_address)
        parent = node_at(value, length - 1)
        parent[(value >> (bits - length)) & 1] = len(records)
        records.append(encode(record))
    for text in aliases:
        network = ipaddress.ip_network(text)
        value, length = int(network.network_address), network.prefixlen
        parent = node_at(value, length - 1)
        parent[(value >> (bits - length)) & 1] = node_at(0, 96)

    numbers: dict[int, int] = {}
    order: list[list[Any]] = []
    queue = [root]
    while queue:
        node = queue.pop(0)
        if id(node) not in numbers:
            numbers[id(node)] = len(order)
            order.append(node)
            queue.extend(child for child in node if isinstance(child, list))
    offsets = [sum(len(r) for r in records[:i]) for i in range(len(records))]

    def record_value(child: Any) -> int:
        if child is None:
            return len(order)
        if isinstance(child, int):
            return len(order) + 16 + offsets[child]
        return numbers[id(child)]

    nodes = [(record_value(left), record_value(right)) for left, right in order]
    path.write_bytes(assemble(nodes, b"".join(records), ip_version, record_size))
    return path


def write_raw_tree(
    path: Path,
    nodes: Sequence[tuple[int | None, int | None]],
    ip_version: int,
    record: bytes = encode({"country_code": "US"}),
) -> Path:
    """Write raw node records: an int is a node number, None the one data record."""
    data_value = len(nodes) + 16
    raw = [(data_value if a is None else a, data_value if b is None else b) for a, b in nodes]
    path.write_bytes(assemble(raw, record, ip_version))
    return path


# --- the reader before lookupd.core._mmdb --------------------------------------------------

_MIRROR_SKIP = (IPV4_MAPPED_PREFIX, 96)


def label(record: Any) -> tuple[str | None, bool]:
    """The label of a decoded record, and whether it came from ``registered_country``."""
    if not isinstance(record, dict):
        return None, False
    code = record.get("country_code")
    if isinstance(code, str) and code:
        return code, False
    code = _iso_code(record.get("country"))
    if code is not None:
        subdivisions = record.get("subdivisions")
        if isinstance(subdivisions, list) and subdivisions:
            subdivision = _iso_code(subdivisions[0])
            if subdivision is not None:
                return f"{code}-{subdivision}", False
        return code, False
    code = _iso_code(record.get("registered_country"))
    return code, code is not None


def _iso_code(place: Any) -> str | None:
    code = place.get("iso_code") if isinstance(place, dict) else None
    return code if isinstance(code, str) and code else None


def reference_rows(path: Path, aliases: list[tuple[int, int]]) -> RangeRows:
    """Read ``path`` as lookupd did with ``maxminddb``'s iteration (``aliases``: the
    (first address, prefix length) the tree aliases to IPv4, which that reader took from its
    own tree check).

    Raises:
        ValueError: no network has a country (the reader's "no country data" error).
    """
    rows = RangeRows()
    notes = rows.notes
    mirror: list[tuple[int, int, str]] = []
    labelled = unlabelled = mapped = 0
    with maxminddb.open_database(os.fspath(path), maxminddb.MODE_MMAP_EXT) as reader:
        for network, record in reader:
            code, registered = label(record)
            if code is None:
                unlabelled += 1
                continue
            labelled += 1
            if registered:
                notes[mmdb.NOTE_REGISTERED_COUNTRY] += 1
            start, prefix = int(network.network_address), network.prefixlen
            if network.version == 4:
                end = start | (IPV4_MAX >> prefix)
                rows.add(4, start, end, code)
                mirror.append((start, end, code))
            elif start >> 32 == IPV4_MAPPED_PREFIX >> 32 and prefix >= 96:
                mapped += 1
                rows.add(4, start & IPV4_MAX, (start | (IPV6_MAX >> prefix)) & IPV4_MAX, code)
            else:
                rows.add(6, start, start | (IPV6_MAX >> prefix), code)
    if unlabelled:
        notes[mmdb.NOTE_NO_COUNTRY] += unlabelled
    if mapped:
        notes[mmdb.NOTE_MAPPED] += mapped
    if not labelled:
        msg = "no country data"
        raise ValueError(msg)
    for first, length in aliases:
        if length > 96 or (first, length) == _MIRROR_SKIP or not mirror:
            continue
        shift = 128 - length - 32
        for start, end, code in mirror:
            rows.add(6, first | (start << shift), first | (end << shift) | ((1 << shift) - 1), code)
        notes[mmdb.NOTE_MIRRORED.format(prefix=f"{ipaddress.IPv6Address(first)}/{length}")] += len(
            mirror
        )
    return rows
