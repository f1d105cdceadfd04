"""Select the MaxMind DB walker: the compiled one, or its pure-Python twin."""

from typing import TYPE_CHECKING

from lookupd.core._cores import NO_EXTENSIONS

if TYPE_CHECKING or NO_EXTENSIONS:
    from lookupd.core._mmdb_py import find_labels, walk_tree

    CORE = "python"
else:
    try:
        from lookupd.core._mmdb_c import find_labels, walk_tree

        CORE = "c"
    except ImportError:  # pragma: no cover - reported by `lookupd version` and the server
        from lookupd.core._mmdb_py import find_labels, walk_tree

        CORE = "python"

__all__ = ["CORE", "find_labels", "walk_tree"]
