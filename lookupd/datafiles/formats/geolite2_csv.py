"""Read MaxMind GeoLite2/GeoIP2 Country and City CSVs: Blocks files joined with Locations.

A database comes as ``PREFIX-Blocks-IPv4.csv`` and ``PREFIX-Blocks-IPv6.csv`` (one CIDR
``network`` per row, with ``geoname_id``, ``registered_country_geoname_id``, ... and, in
newer releases, columns such as ``is_anycast``) and ``PREFIX-Locations-en.csv`` (one row per
``geoname_id``: ``country_iso_code``, and in City databases ``subdivision_1_iso_code``).
Either Blocks file, or the directory holding them (the release zip, extracted), is a source;
the Locations file is found beside each Blocks file by its prefix (``-en`` preferred, any
other locale accepted: ISO codes do not depend on the locale). Any of them may be ``.gz`` or
``.xz`` compressed. Columns are found by header name; unknown columns are ignored.

Decisions:

- The label of a network is the ``country_iso_code`` of its ``geoname_id``, with the
  location's ``subdivision_1_iso_code`` appended in City databases (``UA-43``). Where the
  network has no ``geoname_id``, or that location has no country (a continent), the
  ``registered_country_geoname_id``'s country is used instead (country only), and
  ``rows.notes`` counts it. A network with neither stays unknown, also counted.
- A network with host bits set (``1.2.3.4/24``) is refused, not masked: MaxMind never
  writes one, so it means a damaged or hand-edited file, and guessing which half of the
  row is wrong could silently move addresses to another country.
- An IPv6 network inside ``::ffff:0:0/96`` goes to the IPv4 table, where lookupd answers
  IPv4-mapped addresses from.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from lookupd.codes import Status
from lookupd.core import _parse
from lookupd.core.constants import IPV4_MAX
from lookupd.datafiles.formats._csv import Batch, csv_batches, csv_header, fail
from lookupd.datafiles.formats._open import READ_ERRORS, cannot_read, open_text
from lookupd.datafiles.formats._text import (
    MAPPED_LAST,
    add_ipv6_range,
    csv_column,
    file_size,
    mapped_mask,
    shown,
)
from lookupd.datafiles.formats.geolite2_locations import (
    BLOCKS,
    Location,
    locations_file,
    read_locations,
)
from lookupd.datafiles.rows import RangeRows
from lookupd.errors import DataFormatError, quoted

if TYPE_CHECKING:
    from lookupd.datafiles.formats import Progress

NOTE_REGISTERED = "geolite2-csv: registered_country_geoname_id used (no country)"
"""``rows.notes`` key: networks labelled by their registered country."""
NOTE_NO_COUNTRY = "geolite2-csv: networks without a country (left unknown)"
"""``rows.notes`` key: networks with neither a country nor a registered country."""

_COMPRESSED = ("", ".gz", ".xz")
# Records come from the csv module a batch of lines (16 KiB, a few hundred records) at a
# time, while they are still in the CPU cache (bench/README.md, "Figures behind design
# choices in the code"), and are handed to numpy in batches large enough that its per-call
# overhead vanishes.
_BATCH_RECORDS = 1 << 12
_ALL_ONES = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
# A dotted IPv4 network /n is the IPv4-mapped network /(96 + n).
_MAPPED_PREFIX_BITS = 96


def read(path: Path, rows: RangeRows, progress: Progress | None = None) -> RangeRows:
    """Read a GeoLite2/GeoIP2 CSV database: one Blocks file, or a directory with both.

    Args:
        path: a ``*-Blocks-IPv4.csv`` / ``*-Blocks-IPv6.csv`` file, or a directory holding
            one database's Blocks files.
        rows: rows to append to.
        progress: called with (bytes read, bytes of all files involved) about every MiB.

    Raises:
        DataFormatError: no Blocks file, no Locations file beside it, a missing column, a
            malformed or host-bits-set network, an unknown ``geoname_id``, an empty file;
            the message names the file (and line).
    """
    blocks = _blocks_files(path)
    locations_of = {block: locations_file(block) for block in blocks}
    total = sum(file_size(f) for f in {*blocks, *locations_of.values()})
    done = 0
    locations_read: dict[Path, dict[str, Location]] = {}
    for block in blocks:
        locations_path = locations_of[block]
        if locations_path not in locations_read:
            locations_read[locations_path] = read_locations(locations_path, progress, done, total)
            done += file_size(locations_path)
        _read_blocks(block, locations_read[locations_path], rows, progress, done, total)
        done += file_size(block)
    return rows


def _blocks_files(path: Path) -> list[Path]:
    """Return the Blocks files to read: ``path`` itself, or those in the directory."""
    if not path.is_dir():
        return [path]
    found: dict[str, list[Path]] = {}
    for entry in sorted(path.iterdir()):
        name = entry.name.lower()
        for family in ("ipv4", "ipv6"):
            if any(name.endswith(f"{BLOCKS}{family}.csv{z}") for z in _COMPRESSED):
                found.setdefault(family, []).append(entry)
    if not found:
        msg = f"{path}: a directory, but no *-Blocks-IPv4.csv / *-Blocks-IPv6.csv in it"
        raise DataFormatError(msg)
    for family, files in found.items():
        if len(files) > 1:
            names = ", ".join(f.name for f in files)
            msg = f"{path}: several {family} Blocks files ({names}); pass the one to read"
            raise DataFormatError(msg)
    return [found[family][0] for family in sorted(found)]


def _read_blocks(
    path: Path,
    locations: dict[str, Location],
    rows: RangeRows,
    progress: Progress | None,
    done_before: int,
    total: int,
) -> None:
    """Read one Blocks file and append its networks to ``rows``, a chunk at a time.

    Batches keep memory flat (a City file has millions of rows) and let the C csv reader,
    list comprehensions and numpy do the per-row work.
    """
    labeller = _Labeller(path, locations, rows)
    networks_seen = 0
    try:
        with open_text(path, progress, done_before=done_before, total=total) as handle:
            batches = csv_batches(handle, path, strict=True)
            header_line, columns, first = _header(path, batches)
            network_at = csv_column(path, header_line, columns, "network")
            id_at = csv_column(path, header_line, columns, "geoname_id")
            # Optional: without it, networks with no geoname_id country stay unknown.
            registered_at = columns.get("registered_country_geoname_id", id_at)
            width = 1 + max(network_at, id_at, registered_at)
            batch = _Batch()
            for numbers, records in _chain(first, batches):
                try:
                    networks = [fields[network_at] for fields in records]
                    geoname_ids = [fields[id_at] for fields in records]
                    registered_ids = [fields[registered_at] for fields in records]
                    batch.origins.extend(numbers)
                except IndexError:
                    # Blank lines read as empty records; anything else short is an error.
                    kept = [i for i, fields in enumerate(records) if fields]
                    for i in kept:
                        if len(records[i]) < width:
                            got = quoted(",".join(records[i]))
                            fail(path, numbers[i], f"expected {len(columns)} fields, got {got}")
                    networks = [records[i][network_at] for i in kept]
                    geoname_ids = [records[i][id_at] for i in kept]
                    registered_ids = [records[i][registered_at] for i in kept]
                    batch.origins.extend(numbers[i] for i in kept)
                batch.networks += networks
                batch.geoname_ids += geoname_ids
                batch.registered_ids += registered_ids
                if len(batch.networks) >= _BATCH_RECORDS:
                    networks_seen += _add_batch(path, batch, labeller, rows)
                    batch = _Batch()
            networks_seen += _add_batch(path, batch, labeller, rows)
    except READ_ERRORS as exc:
        raise cannot_read(path, exc) from exc
    if not networks_seen:
        msg = f"{path}: no networks in file"
        raise DataFormatError(msg)
    labeller.note()


def _header(path: Path, batches: Iterator[Batch]) -> tuple[int, dict[str, int], Batch]:
    """Read the header: its line, name -> column, and the rest of its batch."""
    for numbers, records in batches:
        for i, names in enumerate(records):
            if names:
                line, columns = csv_header(path, iter([(numbers[i], names)]))
                return line, columns, (numbers[i + 1 :], records[i + 1 :])
    msg = f"{path}: empty file (expected a header line)"
    raise DataFormatError(msg)


def _chain(first: Batch, rest: Iterator[Batch]) -> Iterator[Batch]:
    yield first
    yield from rest


@dataclass(slots=True)
class _Batch:
    """Columns of Blocks records gathered for one round of array work."""

    networks: list[str] = field(default_factory=list)
    """The ``network`` column."""
    geoname_ids: list[str] = field(default_factory=list)
    """The ``geoname_id`` column."""
    registered_ids: list[str] = field(default_factory=list)
    """The ``registered_country_geoname_id`` column (``geoname_id`` again if none)."""
    origins: list[int] = field(default_factory=list)
    """Each row's line in the file, for error messages."""


def _add_batch(path: Path, batch: _Batch, labeller: _Labeller, rows: RangeRows) -> int:
    """Label and parse a batch of networks, append them to ``rows``; return how many."""
    if not batch.networks:
        return 0
    labels = labeller.labels(batch.geoname_ids, batch.registered_ids, batch.origins)
    hi, lo, end_hi, end_lo = _networks(path, batch.origins, batch.networks)
    _add(rows, hi, lo, end_hi, end_lo, labels)
    return len(batch.networks)


class _Labeller:
    """Turn (geoname_id, registered_country_geoname_id) pairs into label indices."""

    def __init__(self, path: Path, locations: dict[str, Location], rows: RangeRows) -> None:
        self._path = path
        self._locations = locations
        self._rows = rows
        # geoname_id (as written) -> label index, for ids whose location has a country.
        self._by_id: dict[str, int] = {}
        self._by_registered: dict[str, int] = {}
        self._fallbacks = 0
        self._no_country = 0

    def labels(
        self, geoname_ids: list[str], registered_ids: list[str], origins: Sequence[int]
    ) -> npt.NDArray[np.int32]:
        """Return each network's label index in ``rows`` (0: no country, leave unknown)."""
        by_id = self._by_id
        labels = np.array([by_id.get(g, -1) for g in geoname_ids], dtype=np.int32)
        for i in np.flatnonzero(labels < 0).tolist():
            labels[i] = self._resolve(geoname_ids[i], registered_ids[i], origins[i])
        return labels

    def note(self) -> None:
        """Count the fallbacks and the networks left unknown in ``rows.notes``."""
        if self._fallbacks:
            self._rows.notes[NOTE_REGISTERED] += self._fallbacks
        if self._no_country:
            self._rows.notes[NOTE_NO_COUNTRY] += self._no_country

    def _resolve(self, written_id: str, written_registered: str, line: int) -> int:
        geoname_id = written_id.strip()
        if geoname_id:
            location = self._locations.get(geoname_id)
            if location is None:
                fail(self._path, line, f"unknown geoname_id {shown(geoname_id)}")
            if location.label is not None:
                self._by_id[written_id] = self._rows.label(location.label)
                return self._by_id[written_id]
        registered = written_registered.strip()
        fallback = self._by_registered.get(registered)
        # Equal ids (or no registered column, which reads the geoname_id column again):
        # that location was just found to have no country.
        if fallback is None and registered and registered != geoname_id:
            location = self._locations.get(registered)
            if location is None:
                problem = f"unknown registered_country_geoname_id {shown(registered)}"
                fail(self._path, line, problem)
            if location.country is not None:
                fallback = self._rows.label(location.country)
                self._by_registered[registered] = fallback
        if fallback is None:
            self._no_country += 1
            return 0
        self._fallbacks += 1
        return fallback


def _networks(
    path: Path, origins: Sequence[int], networks: list[str]
) -> tuple[
    npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.uint64]
]:
    """Parse CIDR networks into 128-bit first and last addresses (high, low halves)."""
    parts = [network.partition("/") for network in networks]
    addresses = [address for address, _, _ in parts]
    lengths = [length for _, _, length in parts]
    keys = np.empty((len(addresses), 2), dtype=np.uint64)
    status = np.empty(len(addresses), dtype=np.uint8)
    if _parse.parse_many(addresses, keys, status):
        i = int(np.argmax(status != Status.OK))
        fail(path, origins[i], f"not a CIDR network: {quoted(networks[i])}")
    hi, lo = keys[:, 0], keys[:, 1]
    ipv6_text = np.array([":" in address for address in addresses], dtype=np.bool_)
    # One check over all lengths at C speed; the per-row loop only runs to name a bad one.
    joined = "".join(lengths)
    if joined.isascii() and joined.isdigit() and all(lengths):
        bits = np.array(lengths, dtype=np.int64)
    else:
        bits = np.array([int(n) if n.isascii() and n.isdigit() else -1 for n in lengths])
    width = np.where(ipv6_text, 128, 32)
    bad = (bits < 0) | (bits > width)
    if bad.any():
        i = int(np.argmax(bad))
        fail(path, origins[i], f"not a CIDR network: {quoted(networks[i])}")
    bits = np.where(ipv6_text, bits, bits + _MAPPED_PREFIX_BITS).astype(np.uint64)
    # Host masks of the two halves: the bits below the prefix.
    host_hi = np.where(bits >= 64, np.uint64(0), _ALL_ONES >> np.minimum(bits, np.uint64(63)))
    low_shift = np.clip(bits, np.uint64(64), np.uint64(127)) - np.uint64(64)
    host_lo = np.where(bits >= 128, np.uint64(0), _ALL_ONES >> low_shift)
    host_lo = np.where(bits < 64, _ALL_ONES, host_lo)
    host_bits = ((hi & host_hi) | (lo & host_lo)) != 0
    if host_bits.any():
        i = int(np.argmax(host_bits))
        masked = ipaddress.ip_network(networks[i], strict=False)
        problem = f"network {networks[i]} has host bits set (the network would be {masked})"
        fail(path, origins[i], problem)
    return hi, lo, hi | host_hi, lo | host_lo


def _add(
    rows: RangeRows,
    hi: npt.NDArray[np.uint64],
    lo: npt.NDArray[np.uint64],
    end_hi: npt.NDArray[np.uint64],
    end_lo: npt.NDArray[np.uint64],
    labels: npt.NDArray[np.int32],
) -> None:
    """Append the labelled networks: IPv4(-mapped) ones to the IPv4 rows, others to IPv6."""
    known = labels != 0
    ipv4 = mapped_mask(hi, lo) & mapped_mask(end_hi, end_lo)
    # A network containing all of ::ffff:0:0/96 starts in the first 2**64 addresses and
    # ends at or after its last address; add_ipv6_range splits those (rare) rows exactly.
    reaches_mapped_end = (end_hi != 0) | (end_lo >= np.uint64(MAPPED_LAST))
    wide = known & ~ipv4 & (hi == 0) & reaches_mapped_end
    v4 = known & ipv4
    v6 = known & ~ipv4 & ~wide
    mask = np.uint64(IPV4_MAX)
    starts, ends, indices = rows.v4
    starts.extend((lo[v4] & mask).tolist())
    ends.extend((end_lo[v4] & mask).tolist())
    indices.extend(labels[v4].tolist())
    starts, ends, indices = rows.v6
    starts.extend(_ints(hi[v6], lo[v6]))
    ends.extend(_ints(end_hi[v6], end_lo[v6]))
    indices.extend(labels[v6].tolist())
    for i in np.flatnonzero(wide).tolist():
        start = (int(hi[i]) << 64) | int(lo[i])
        end = (int(end_hi[i]) << 64) | int(end_lo[i])
        add_ipv6_range(rows, start, end, rows.label_names[int(labels[i])])


def _ints(hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]) -> list[int]:
    """Join (high, low) halves into 128-bit Python ints."""
    return [(h << 64) | low for h, low in zip(hi.tolist(), lo.tolist(), strict=True)]
