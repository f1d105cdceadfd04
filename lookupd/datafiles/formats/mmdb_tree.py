"""Check a MaxMind DB search tree before maxminddb iterates it: every node reached once.

maxminddb's iterators trust the tree: a node reached twice (a cycle, or subtrees shared
beyond the IPv4 aliases) makes them walk forever or exponentially long, and the C extension
then writes past a 16-byte address buffer once deeper than 128 bits (a crafted file aborted
the interpreter with heap corruption).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lookupd.errors import DataFormatError

ALIAS_DEPTH = 96
"""An IPv6 tree's IPv4 subtree starts at ``::/96``."""
_DATA_SEPARATOR_BYTES = 16
_MAX_DEPTH = {4: 32, 6: 128}  # address bits: no search node may sit this deep


@dataclass(frozen=True, slots=True)
class Tree:
    """What checking the search tree found out."""

    networks: int
    """Data records the iteration will yield."""
    aliases: list[tuple[int, int]]
    """(first address, prefix length) of each IPv6 subtree aliased to the IPv4 subtree."""
    records: npt.NDArray[np.uint32]
    """The distinct data records the iteration will decode (record values, sorted)."""


def check_tree(
    path: Path, plain: Path, size: int, node_count: int, record_size: int, ip_version: int
) -> Tree:
    """Check that iterating the search tree ends, and say what it will yield.

    maxminddb's iterators trust the tree: a node reached twice (a cycle, or subtrees shared
    beyond the IPv4 aliases) makes them walk forever or exponentially long, and the C
    extension then writes past a 16-byte address buffer once deeper than 128 bits (a crafted
    file aborted the interpreter with heap corruption). So before iterating, walk the tree
    breadth-first over its raw node records (numpy, one step per level) and require every
    node to be reached once, no deeper than the address has bits. Only the search tree's
    node numbers are read here; records and metadata are left to maxminddb.

    Raises:
        DataFormatError: an unusable tree, naming the file and the problem.
    """

    def fail(problem: str) -> DataFormatError:
        return _corrupt(path, problem)

    _check_tree_size(path, size, node_count, record_size, ip_version)
    left, right = _node_records(plain, node_count, record_size // 4)
    ipv4_start = _ipv4_start(left, node_count, ip_version)
    visited = np.zeros(node_count, dtype=np.bool_)
    visited[0] = True
    reached = 1
    nodes = np.zeros(1, dtype=np.uint32)
    # First address of each node's network, as (high, low) 64-bit halves, and whether its
    # first 96 bits are all zero (inside ::/96, where the readers follow the IPv4 subtree).
    high = np.zeros(1, dtype=np.uint64)
    low = np.zeros(1, dtype=np.uint64)
    in_v4 = np.ones(1, dtype=np.bool_)
    networks = 0
    records: list[npt.NDArray[np.uint32]] = []
    aliases: list[tuple[int, int]] = []
    max_depth = _MAX_DEPTH[ip_version]
    for depth in range(max_depth + 1):
        if nodes.size == 0:
            break
        if depth == max_depth:
            raise fail(f"search tree deeper than {max_depth} bits")
        children = np.concatenate((left[nodes], right[nodes]))
        bit = 127 - depth  # the address bit a right turn at this depth sets
        high = np.concatenate((high, high | np.uint64((1 << (bit - 64)) if bit >= 64 else 0)))
        low = np.concatenate((low, low | np.uint64((1 << bit) if bit < 64 else 0)))
        in_v4 = np.concatenate((in_v4, in_v4 & (depth >= ALIAS_DEPTH)))
        is_record = children > node_count
        networks += int(np.count_nonzero(is_record))
        records.append(children[is_record])
        is_node = children < node_count
        # The readers skip a subtree equal to the IPv4 one anywhere outside ::/96.
        alias = is_node & (children == ipv4_start) & ~in_v4
        for i in np.flatnonzero(alias).tolist():
            aliases.append(((int(high[i]) << 64) | int(low[i]), depth + 1))
        follow = is_node & ~alias
        nodes = children[follow]
        if visited[nodes].any():
            raise fail("search tree reaches a node twice (a cycle or a shared subtree)")
        visited[nodes] = True
        reached += nodes.size
        if int(np.count_nonzero(visited)) != reached:
            raise fail("search tree reaches a node twice (a cycle or a shared subtree)")
        high, low, in_v4 = high[follow], low[follow], in_v4[follow]
    distinct = np.unique(np.concatenate(records)) if records else np.zeros(0, np.uint32)
    return Tree(networks, aliases, distinct)


def _corrupt(path: Path, problem: str) -> DataFormatError:
    return DataFormatError(f"{path}: corrupt MaxMind DB file: {problem}")


def _check_tree_size(
    path: Path, size: int, node_count: int, record_size: int, ip_version: int
) -> None:
    """Check the metadata's tree shape: a known record size and IP version, and room for
    the tree in the file."""
    if record_size not in (24, 28, 32):
        raise _corrupt(path, f"unsupported record size {record_size}")
    if ip_version not in _MAX_DEPTH:
        raise _corrupt(path, f"unsupported ip_version {ip_version}")
    if node_count <= 0:
        raise _corrupt(path, f"search tree has {node_count} nodes")
    if node_count * (record_size // 4) + _DATA_SEPARATOR_BYTES > size:
        problem = f"search tree of {node_count} nodes extends past the end of the file"
        raise _corrupt(path, problem)


def _ipv4_start(left: npt.NDArray[np.uint32], node_count: int, ip_version: int) -> int:
    """Return the node the IPv4 subtree starts at, as the readers find it: 96 left turns
    from the root, unless a record ends it. ``node_count`` (an empty record, never a node)
    for an IPv4 tree, which has no aliases."""
    if ip_version != 6:
        return node_count
    node = 0
    for _ in range(ALIAS_DEPTH):
        if node >= node_count:
            break
        node = int(left[node])
    return node


def _node_records(
    plain: Path, node_count: int, node_bytes: int
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    """Decode every node's (left, right) record: 24, 28 or 32 bits each, big-endian."""
    raw = np.fromfile(plain, dtype=np.uint8, count=node_count * node_bytes)
    nodes = raw.reshape(node_count, node_bytes)

    def column(i: int) -> npt.NDArray[np.uint32]:
        return nodes[:, i].astype(np.uint32)

    if node_bytes == 6:
        left = (column(0) << 16) | (column(1) << 8) | column(2)
        right = (column(3) << 16) | (column(4) << 8) | column(5)
    elif node_bytes == 7:
        # The middle byte's high nibble tops the left record, its low nibble the right.
        middle = column(3)
        left = ((middle & 0xF0) << 20) | (column(0) << 16) | (column(1) << 8) | column(2)
        right = ((middle & 0x0F) << 24) | (column(4) << 16) | (column(5) << 8) | column(6)
    else:
        left = (column(0) << 24) | (column(1) << 16) | (column(2) << 8) | column(3)
        right = (column(4) << 24) | (column(5) << 16) | (column(6) << 8) | column(7)
    return left.astype(np.uint32, copy=False), right.astype(np.uint32, copy=False)
