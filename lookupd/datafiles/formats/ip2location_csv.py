"""Read IP2Location LITE DB1 CSVs: ``"ip_from","ip_to","country_code","country_name"``.

The files have no header; every field is quoted, addresses are decimal integers and ranges
are inclusive. There are two files:

- the IPv4 file (``IP2LOCATION-LITE-DB1.CSV``): 32-bit decimals;
- the IPv6 file (``IP2LOCATION-LITE-DB1.IPV6.CSV``): 128-bit decimals covering the whole
  IPv6 space, the IPv4 space included as IPv4-mapped ranges (``::ffff:0:0/96``).

A file is read as IPv6 when its name says ``ipv6`` or any of its values does not fit in 32
bits, as IPv4 otherwise. Decisions:

- ``-`` (IP2Location's "unassigned") rows are skipped, so those addresses stay unknown;
  ``rows.notes`` counts them.
- IPv4-mapped ranges of the IPv6 file go to the IPv4 table (that is where lookupd answers
  ``::ffff:a.b.c.d`` and ``a.b.c.d`` from); a row crossing that block's edge is split.
- Other IPv6 prefixes that embed IPv4 addresses (6to4 ``2002::/16``, Teredo
  ``2001::/32``, the deprecated IPv4-compatible ``::/96``) are kept as ordinary IPv6 rows:
  lookupd does not translate those addresses to IPv4 at lookup time, so what the file says
  about those prefixes is the honest answer for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lookupd.core.constants import IPV4_MAX
from lookupd.datafiles.formats._csv import fail
from lookupd.datafiles.formats._text import (
    add_ipv6_range,
    check_label,
    numeric_addresses,
    read_range_columns,
    shown,
)
from lookupd.datafiles.rows import RangeRows
from lookupd.errors import DataFormatError, quoted

if TYPE_CHECKING:
    from lookupd.datafiles.formats import Progress

UNASSIGNED = "-"
"""IP2Location's country code for ranges with no country."""
NOTE_UNASSIGNED = "ip2location-csv: unassigned ('-') rows skipped"
"""``rows.notes`` key: rows with the country code ``-``, left unknown."""


def read(path: Path, rows: RangeRows, progress: Progress | None = None) -> RangeRows:
    """Read one IP2Location LITE DB1 CSV (IPv4 or IPv6 file, optionally compressed).

    Raises:
        DataFormatError: a row with fewer than three fields, a value that is not a decimal
            address or lies outside the IPv6 space, ``ip_from > ip_to``, an empty or
            malformed country code, bad CSV quoting, a file with no rows, or one whose
            rows are all unassigned.
    """
    line_numbers, from_texts, to_texts, codes = read_range_columns(
        path, progress, "ip_from,ip_to,country_code", strict=True
    )
    starts = numeric_addresses(path, from_texts, line_numbers, 6)
    ends = numeric_addresses(path, to_texts, line_numbers, 6)
    ipv6 = "ipv6" in path.name.lower() or max(ends) > IPV4_MAX or max(starts) > IPV4_MAX

    unassigned = 0
    added = len(rows)
    for i, (start, end, code) in enumerate(zip(starts, ends, codes, strict=True)):
        if start > end:
            problem = f"ip_from {shown(from_texts[i])} > ip_to {shown(to_texts[i])}"
            fail(path, line_numbers[i], problem)
        if code == UNASSIGNED:
            unassigned += 1
            continue
        if not code.isalnum():
            fail(path, line_numbers[i], f"malformed country code {quoted(code)}")
        check_label(path, line_numbers[i], code)
        if ipv6:
            add_ipv6_range(rows, start, end, code)
        else:
            rows.add(4, start, end, code)
    if unassigned:
        rows.notes[NOTE_UNASSIGNED] += unassigned
    if len(rows) == added:
        msg = f"{path}: no assigned ranges in file (every row is '{UNASSIGNED}')"
        raise DataFormatError(msg)
    return rows
