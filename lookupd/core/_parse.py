"""Select the address parser: the compiled one, or its pure-Python twin."""

from typing import TYPE_CHECKING

from lookupd.core._cores import NO_EXTENSIONS

if TYPE_CHECKING or NO_EXTENSIONS:
    from lookupd.core._parse_py import (
        count_lines,
        parse_fields,
        parse_lines,
        parse_many,
        parse_one,
        scan_fields,
    )

    CORE = "python"
else:
    try:
        from lookupd.core._parse_c import (
            count_lines,
            parse_fields,
            parse_lines,
            parse_many,
            parse_one,
            scan_fields,
        )

        CORE = "c"
    except ImportError:  # pragma: no cover - reported by `lookupd version` and the server
        from lookupd.core._parse_py import (
            count_lines,
            parse_fields,
            parse_lines,
            parse_many,
            parse_one,
            scan_fields,
        )

        CORE = "python"

__all__ = [
    "CORE",
    "count_lines",
    "parse_fields",
    "parse_lines",
    "parse_many",
    "parse_one",
    "scan_fields",
]
