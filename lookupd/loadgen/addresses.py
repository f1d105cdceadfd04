"""Addresses to send: a file's, or random public addresses from the data lookupd has."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lookupd.codes import Status
from lookupd.core.database import Database
from lookupd.core.table import RangeTable
from lookupd.errors import LookupdError

Family = Literal["ipv4", "ipv6", "mixed"]
FAMILIES: tuple[Family, ...] = ("ipv4", "ipv6", "mixed")
MAX_FILE_ADDRESSES = 10_000_000
"""Most addresses read from a file: they are all held in memory, as prebuilt requests."""
_ATTEMPTS = 20  # draws per address wanted before giving up on a family with no public space


def read_addresses(path: Path) -> list[str]:
    """Return the addresses of a file, one per line (blank lines and ``#`` comments skipped).

    The server judges them: invalid ones are sent as they are (and answered as invalid).

    Raises:
        LookupdError: the file cannot be read, holds no address, or holds too many.
    """
    addresses: list[str] = []
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                if len(addresses) == MAX_FILE_ADDRESSES:
                    msg = f"{path}: more than {MAX_FILE_ADDRESSES:,} addresses"
                    raise LookupdError(msg)
                addresses.append(text)
    except OSError as exc:
        msg = f"{path}: cannot read: {exc}"
        raise LookupdError(msg) from exc
    if not addresses:
        msg = f"{path}: no addresses"
        raise LookupdError(msg)
    return addresses


def random_public(db: Database, family: Family, count: int, seed: int = 0) -> list[str]:
    """Return ``count`` random addresses that ``db`` places in a country (so not reserved).

    Each is drawn from a segment chosen uniformly among those with a country (row-uniform,
    as a vendor's rows are), at a uniform position inside it; ``mixed`` alternates families.

    Raises:
        LookupdError: the data has no such address in a family asked for.
    """
    rng = random.Random(seed)
    tables = {"ipv4": [db.v4], "ipv6": [db.v6], "mixed": [db.v4, db.v6]}[family]
    pools = [_Pool.of(table) for table in tables]
    for pool in pools:
        if not pool.starts:
            msg = f"the data has no IPv{pool.version} address in a country"
            raise LookupdError(msg)
    out: list[str] = []
    drawn_in_all = 0
    while len(out) < count:
        wanted = count - len(out)
        drawn = [pools[(len(out) + i) % len(pools)].draw(rng) for i in range(wanted)]
        # A segment with a country can still hold reserved space the data does not know of.
        status = db.lookup(drawn).status
        out.extend(address for address, ok in zip(drawn, status == Status.OK, strict=True) if ok)
        drawn_in_all += wanted
        if drawn_in_all > _ATTEMPTS * count and len(out) < count:
            msg = f"could not draw {count:,} public {family} addresses from the data"
            raise LookupdError(msg)
    return out


@dataclass(frozen=True, slots=True)
class _Pool:
    """The segments of one family that have a country: first and last address of each."""

    version: Literal[4, 6]
    starts: list[int]
    ends: list[int]

    @classmethod
    def of(cls, table: RangeTable) -> _Pool:
        starts = table.start_ints()
        last = (1 << (32 if table.version == 4 else 128)) - 1
        ends = [start - 1 for start in starts[1:]] + [last]
        known = np.flatnonzero(table.labels != 0).tolist()
        return cls(table.version, [starts[i] for i in known], [ends[i] for i in known])

    def draw(self, rng: random.Random) -> str:
        index = rng.randrange(len(self.starts))
        value = rng.randint(self.starts[index], self.ends[index])
        if self.version == 4:
            return str(ipaddress.IPv4Address(value))
        return str(ipaddress.IPv6Address(value))
