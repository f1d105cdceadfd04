"""Stub for the compiled MaxMind DB walker (ext/_mmdb_c.pyx); lookupd.core._mmdb_py is its twin.

``walk_tree`` returns, per network in the order the ``maxminddb`` readers yield them, its
first address as (high, low) ``uint64`` halves, its depth in the tree and its record value,
and the same address and depth per alias of the IPv4 subtree. ``find_labels`` checks each
data record in full and writes its label kind and the spans of the strings a label needs.
Both raise ``ValueError`` naming the problem (the messages are the twin's constants).
"""

import numpy as np
import numpy.typing as npt

from lookupd.core._mmdb_py import Buffer, Networks

def walk_tree(tree: Buffer, node_count: int, record_size: int, ip_version: int) -> Networks: ...
def find_labels(
    data: Buffer,
    offsets: npt.NDArray[np.uint32],
    kinds: npt.NDArray[np.uint8],
    spans: npt.NDArray[np.uint32],
) -> None: ...
