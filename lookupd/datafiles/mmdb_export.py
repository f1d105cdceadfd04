"""Write a database's answers as a MaxMind DB file (GeoIP2 Country or City schema).

The file answers what :meth:`Database.lookup` answers: a network is written for every
address range the database labels, with ``country.iso_code`` (and, for a subdivision label
such as ``UA-43``, ``subdivisions[0].iso_code`` = ``43``, as GeoIP2 City files write it);
reserved addresses and addresses the data has no country for are left out, so a reader
finds no record for them. Readers that only know MaxMind's formats (Envoy's geoip filter,
nginx, HAProxy, a WAF) then answer as lookupd does.

The tree is IPv6 with IPv4 at ``::/96``, where MaxMind readers look IPv4 addresses up, and
``::ffff:0:0/96`` (IPv4-mapped) aliased to it, as lookupd answers mapped addresses from its
IPv4 data. Three consequences, each on purpose:

- IPv4-compatible addresses (``::a.b.c.d``, deprecated by RFC 4291) answer as IPv4 here,
  as in every MaxMind IPv6 file; lookupd answers them from its IPv6 data (which has none).
- 6to4 ``2002::/16`` and Teredo ``2001::/32`` are not aliased to IPv4, unlike MaxMind's own
  files: lookupd answers them from its IPv6 data, and the file keeps its answers.
- IPv6 data inside ``::/96`` cannot be written (IPv4 lives there); it is counted in
  :attr:`MmdbExport.shadowed` (real data has none).

The encoding is mmdb-writer's; this module only decides which networks carry which record.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import maxminddb
import numpy as np
import numpy.typing as npt
from mmdb_writer import MMDBWriter, SearchTreeNode, TreeWriter
from netaddr import IPNetwork, IPSet

from lookupd.codes import Status
from lookupd.core import reserved
from lookupd.core.constants import IPV4_MAPPED_PREFIX, IPV4_MAX, IPV6_MAX
from lookupd.core.database import Database
from lookupd.core.labels import split_label
from lookupd.datafiles.atomic import replace_atomically
from lookupd.datafiles.data_version import data_version_of
from lookupd.datafiles.sources import parse_date
from lookupd.errors import LookupdError
from lookupd.version import __version__

COUNTRY_TYPE = "GeoIP2-Country"
"""The database type written for country-level data."""
CITY_TYPE = "GeoIP2-City"
"""The database type written for data with subdivisions (the City schema's fields)."""

# Where MaxMind readers look IPv4 up in an IPv6 tree (::a.b.c.d), and its mapped alias.
_IPV4_ROOT = (0, 96)
_IPV4_MAPPED = (IPV4_MAPPED_PREFIX, 96)
_IPV4_COMPATIBLE_END = IPV4_MAX  # the last key of ::/96
_MAPPED_END = IPV4_MAPPED_PREFIX | IPV4_MAX
_VERSION_IN_DESCRIPTION = re.compile(r"export of data version ([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class MmdbExport:
    """What :func:`export_mmdb` wrote."""

    path: Path
    """The file written."""
    database_type: str
    """The metadata's ``database_type``."""
    networks: int
    """Networks (CIDR blocks) written, IPv4 and IPv6."""
    records: int
    """Distinct records (one per label the data uses)."""
    build_epoch: int
    """The metadata's ``build_epoch``: the data's own date, or the time of writing."""
    build_epoch_from: str
    """Where :attr:`build_epoch` came from: the data date's origin, or ``time of export``."""
    data_version: str
    """The data version id (named in the file's description)."""
    shadowed: int
    """IPv6 segments inside ``::/96`` that could not be written (IPv4 lives there)."""
    file_size: int
    """Bytes written."""


def export_mmdb(path: str | Path, db: Database, *, database_type: str | None = None) -> MmdbExport:
    """Write ``db``'s answers to ``path`` as a MaxMind DB file, atomically.

    Args:
        database_type: the metadata's type; default :data:`CITY_TYPE` when the data carries
            subdivisions, else :data:`COUNTRY_TYPE`.

    Raises:
        LookupdError: the file cannot be written (the message names it).
    """
    path = Path(path)
    city = db.has_subdivisions
    kind = database_type or (CITY_TYPE if city else COUNTRY_TYPE)
    version = data_version_of(db)
    epoch = parse_date(version.data_date) if version.data_date else None
    epoch_from = version.data_date_from if epoch is not None else "time of export"
    build_epoch = int(epoch if epoch is not None else time.time())

    # IPv4 goes into a tree of its own, grafted at ::/96: inserted into the IPv6 tree, each
    # IPv4 network would walk the 96 zero bits above it again.
    ipv4, networks_v4, labels_v4 = _tree(4, _segments_v4(db), db.label_names, kind, city=city)
    segments_v6 = list(_segments_v6(db))
    outside = [segment for segment in segments_v6 if not _in_ipv4_blocks(segment[0])]
    writer, networks_v6, labels_v6 = _tree(6, outside, db.label_names, kind, city=city)
    _graft(writer.tree, _IPV4_ROOT, ipv4.tree)
    _graft(writer.tree, _IPV4_MAPPED, ipv4.tree)
    networks = networks_v4 + networks_v6
    records = labels_v4 | labels_v6
    shadowed = len(segments_v6) - len(outside)

    description = f"lookupd {__version__} export of data version {version.id}" + (
        f", data of {version.data_date}" if version.data_date else ""
    )
    meta: dict[str, Any] = {
        "ip_version": 6,
        "database_type": kind,
        "languages": ["en"],
        "binary_format_major_version": 2,
        "binary_format_minor_version": 0,
        "description": {"en": description},
        "build_epoch": build_epoch,
    }

    def fill(tmp: Path) -> None:
        # The writer's own metadata would carry the time of writing as build_epoch.
        TreeWriter(writer.tree, meta, writer.int_type, writer.float_type).write(str(tmp))

    try:
        replace_atomically(path, fill)
        size = path.stat().st_size
    except OSError as exc:
        msg = f"{path}: cannot write the MaxMind DB file: {exc}"
        raise LookupdError(msg) from exc
    return MmdbExport(
        path, kind, networks, len(records), build_epoch, epoch_from, version.id, shadowed, size
    )


def exported_data_version(path: str | Path) -> str | None:
    """The data version id an export's description names; None if ``path`` is missing,
    unreadable or not written by :func:`export_mmdb`."""
    try:
        with maxminddb.open_database(str(path)) as reader:
            description = reader.metadata().description
    except (OSError, ValueError, maxminddb.InvalidDatabaseError):
        return None
    found = _VERSION_IN_DESCRIPTION.search(str(description.get("en", "")))
    return found[1] if found else None


def _record(label: str, *, city: bool) -> dict[str, Any]:
    """The GeoIP2 record for a label: its country, and with ``city`` its subdivision."""
    country, subdivision = split_label(label)
    record: dict[str, Any] = {"country": {"iso_code": country}}
    if city and subdivision is not None:
        # GeoIP2 writes the ISO 3166-2 code without its country: UA-43 is "43" in UA.
        record["subdivisions"] = [{"iso_code": subdivision.partition("-")[2]}]
    return record


def _segments_v4(db: Database) -> Iterator[tuple[int, int, int]]:
    """(first, last, label) for each IPv4 range ``db`` answers with a label."""
    bounds = np.union1d(db.v4.starts, reserved.TABLE_V4.starts).astype(np.uint32)
    result = db.lookup(bounds)
    yield from _labelled(bounds.tolist(), IPV4_MAX, result.labels, result.status)


def _segments_v6(db: Database) -> Iterator[tuple[int, int, int]]:
    """(first, last, label) for each IPv6 range ``db`` answers with a label, split where
    ``::/96`` and ``::ffff:0:0/96`` begin and end."""
    keys = {(int(high) << 64) | int(low) for high, low in db.v6.starts.tolist()}
    keys.update((int(high) << 64) | int(low) for high, low in reserved.TABLE_V6.starts.tolist())
    keys.update(
        (0, _IPV4_COMPATIBLE_END + 1, IPV4_MAPPED_PREFIX, (IPV4_MAPPED_PREFIX | IPV4_MAX) + 1)
    )
    bounds = sorted(keys)
    halves = np.array([(key >> 64, key & 0xFFFF_FFFF_FFFF_FFFF) for key in bounds], dtype=np.uint64)
    result = db.lookup(halves)
    yield from _labelled(bounds, IPV6_MAX, result.labels, result.status)


def _labelled(
    bounds: list[int],
    top: int,
    labels: npt.NDArray[np.uint16],
    status: npt.NDArray[np.uint8],
) -> Iterator[tuple[int, int, int]]:
    """Join the answers at ``bounds`` into (first, last, label) ranges with a label; an
    answer holds from its bound to the next."""
    answers = np.where(status == Status.OK, labels, 0).tolist()
    current, start = 0, 0
    for key, label in zip(bounds, answers, strict=True):
        if label != current:
            if current:
                yield start, key - 1, current
            current, start = label, key
    if current:
        yield start, top, current


def _cidrs(first: int, last: int, bits: int) -> Iterator[tuple[int, int]]:
    """The fewest CIDR blocks (value, prefix length) covering ``first..last`` exactly."""
    while first <= last:
        # The largest aligned block starting at first that does not run past last.
        size = (first & -first).bit_length() - 1 if first else bits
        size = min(size, (last - first + 1).bit_length() - 1)
        yield first, bits - size
        first += 1 << size


def _tree(
    version: Literal[4, 6],
    segments: Iterable[tuple[int, int, int]],
    names: tuple[str, ...],
    kind: str,
    *,
    city: bool,
) -> tuple[MMDBWriter, int, set[int]]:
    """One family's labelled ranges in a writer of its own: the writer, the networks (CIDR
    blocks) inserted and the labels used."""
    bits = 32 if version == 4 else 128
    by_label: dict[int, list[IPNetwork]] = defaultdict(list)
    for first, last, label in segments:
        by_label[label] += (IPNetwork(cidr, version=version) for cidr in _cidrs(first, last, bits))
    writer = MMDBWriter(ip_version=version, database_type=kind)
    for label in sorted(by_label):
        writer.insert_network(IPSet(by_label[label]), _record(names[label], city=city))
    return writer, sum(map(len, by_label.values())), set(by_label)


def _in_ipv4_blocks(key: int) -> bool:
    """Whether an IPv6 key lies in ``::/96`` or ``::ffff:0:0/96``, where IPv4 is written."""
    return key <= _IPV4_COMPATIBLE_END or IPV4_MAPPED_PREFIX <= key <= _MAPPED_END


def _graft(tree: SearchTreeNode, at: tuple[int, int], subtree: SearchTreeNode) -> None:
    """Make the IPv6 tree's path to the block ``at`` lead to ``subtree`` (the IPv4 tree).

    The writer encodes a node reached by two paths once, so both IPv4 blocks share it.
    """
    if subtree.left is None and subtree.right is None:
        return  # no IPv4 data
    value, length = at
    parent = tree
    for depth in range(length - 1):
        child = parent.get_or_create((value >> (127 - depth)) & 1)
        if not isinstance(child, SearchTreeNode):
            msg = "an IPv6 network covers an IPv4 block: the IPv4 tree cannot be placed"
            raise LookupdError(msg)
        parent = child
    parent[(value >> (128 - length)) & 1] = subtree
