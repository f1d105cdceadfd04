"""Select the search core: the compiled one, or its pure-Python twin."""

from typing import TYPE_CHECKING

from lookupd.core._cores import NO_EXTENSIONS

if TYPE_CHECKING or NO_EXTENSIONS:
    from lookupd.core._search_py import (
        JUMP_BITS_V4,
        JUMP_BITS_V6,
        answer_many,
        answer_many_v4,
        answer_packed_v4,
        answer_packed_v6,
        find_index_v4,
        find_index_v6,
        find_many_v4,
        find_many_v6,
        gather_names,
        jump_table_v4,
        jump_table_v6,
        lookup_many,
    )

    CORE = "python"
else:
    try:
        from lookupd.core._search_c import (
            JUMP_BITS_V4,
            JUMP_BITS_V6,
            answer_many,
            answer_many_v4,
            answer_packed_v4,
            answer_packed_v6,
            find_index_v4,
            find_index_v6,
            find_many_v4,
            find_many_v6,
            gather_names,
            jump_table_v4,
            jump_table_v6,
            lookup_many,
        )

        CORE = "c"
    except ImportError:  # pragma: no cover - reported by `lookupd version` and the server
        from lookupd.core._search_py import (
            JUMP_BITS_V4,
            JUMP_BITS_V6,
            answer_many,
            answer_many_v4,
            answer_packed_v4,
            answer_packed_v6,
            find_index_v4,
            find_index_v6,
            find_many_v4,
            find_many_v6,
            gather_names,
            jump_table_v4,
            jump_table_v6,
            lookup_many,
        )

        CORE = "python"

__all__ = [
    "CORE",
    "JUMP_BITS_V4",
    "JUMP_BITS_V6",
    "answer_many",
    "answer_many_v4",
    "answer_packed_v4",
    "answer_packed_v6",
    "find_index_v4",
    "find_index_v6",
    "find_many_v4",
    "find_many_v6",
    "gather_names",
    "jump_table_v4",
    "jump_table_v6",
    "lookup_many",
]
