"""How much a release changes: the share of each family's known address space relabelled."""

from __future__ import annotations

from lookupd.core.constants import UNKNOWN_LABEL
from lookupd.core.table import RangeTable, Tables
from lookupd.datafiles.merge import address_totals, diff


def change_shares(old: Tables, new: Tables) -> dict[str, float]:
    """Return, per family, the addresses whose label changed over the known space.

    The known space is the larger of the addresses with a label in ``old`` and in ``new``:
    against the whole family, IPv6 changes would always look tiny (most of it is not
    allocated), and a release that loses its IPv6 data would pass.
    """
    shares = {}
    for family, (old_table, new_table) in zip(
        diff(old, new), ((old.v4, new.v4), (old.v6, new.v6)), strict=True
    ):
        known = max(_known(old_table), _known(new_table))
        name = f"ipv{family.version}"
        shares[name] = family.addresses / known if known else 0.0
    return shares


def _known(table: RangeTable) -> int:
    totals = address_totals(table)
    return sum(count for label, count in totals.items() if label != UNKNOWN_LABEL)
