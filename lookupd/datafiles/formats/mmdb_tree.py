"""Walk a MaxMind DB search tree with the core: every node reached once, as maxminddb iterates.

maxminddb's iterators trust the tree: a node reached twice (a cycle, or subtrees shared
beyond the IPv4 aliases) makes them walk forever or exponentially long, and the C extension
then writes past a 16-byte address buffer once deeper than 128 bits (a crafted file aborted
the interpreter with heap corruption). lookupd no longer iterates with maxminddb, but walks
the tree in its own core (``lookupd.core._mmdb``), which refuses those trees the same way:
every node reached once, none as deep as the address has bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lookupd.core import _mmdb
from lookupd.core._mmdb_py import ALIAS_DEPTH
from lookupd.errors import DataFormatError

__all__ = ["ALIAS_DEPTH", "Tree", "walk_tree"]

_DATA_SEPARATOR_BYTES = 16
_RECORD_SIZES = (24, 28, 32)
_IP_VERSIONS = (4, 6)


@dataclass(frozen=True, slots=True)
class Tree:
    """The networks of a search tree, in the order the ``maxminddb`` readers yield them."""

    starts: npt.NDArray[np.uint64]
    """First address of each network as (high, low) halves; an IPv4 tree's in ``low``."""
    depths: npt.NDArray[np.uint8]
    """Each network's depth in the tree: its prefix length in the tree's own bits."""
    records: npt.NDArray[np.uint32]
    """Each network's record value (above the node count: its data record)."""
    aliases: list[tuple[int, int]]
    """(first address, prefix length) of each IPv6 subtree aliased to the IPv4 subtree."""

    @property
    def networks(self) -> int:
        """How many networks the tree has (what maxminddb's iteration yields)."""
        return len(self.records)


def walk_tree(
    path: Path, data: memoryview, node_count: int, record_size: int, ip_version: int
) -> Tree:
    """Walk the search tree at the start of ``data`` (the whole file).

    Raises:
        DataFormatError: an unusable tree, naming the file and the problem.
    """
    _check_tree_size(path, len(data), node_count, record_size, ip_version)
    try:
        starts, depths, records, alias_starts, alias_depths = _mmdb.walk_tree(
            data, node_count, record_size, ip_version
        )
    except ValueError as exc:
        problem: str | None = str(exc)
    else:
        problem = None
    # Raised here, not in the handler: the core's error, and the views of the mapped file its
    # frames hold, are gone once the handler ends, so the caller can close the map.
    if problem is not None:
        raise _corrupt(path, problem)
    aliases = [
        ((int(high) << 64) | int(low), int(depth))
        for (high, low), depth in zip(alias_starts.tolist(), alias_depths.tolist(), strict=True)
    ]
    return Tree(starts, depths, records, aliases)


def _corrupt(path: Path, problem: str) -> DataFormatError:
    return DataFormatError(f"{path}: corrupt MaxMind DB file: {problem}")


def _check_tree_size(
    path: Path, size: int, node_count: int, record_size: int, ip_version: int
) -> None:
    """Check the metadata's tree shape: a known record size and IP version, and room for
    the tree and the data section separator in the file."""
    if record_size not in _RECORD_SIZES:
        raise _corrupt(path, f"unsupported record size {record_size}")
    if ip_version not in _IP_VERSIONS:
        raise _corrupt(path, f"unsupported ip_version {ip_version}")
    if node_count <= 0:
        raise _corrupt(path, f"search tree has {node_count} nodes")
    if node_count * (record_size // 4) + _DATA_SEPARATOR_BYTES > size:
        problem = f"search tree of {node_count} nodes extends past the end of the file"
        raise _corrupt(path, problem)
