"""Classify special-purpose (reserved) addresses: private, loopback, documentation, multicast.

The blocks come from the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890,
RFC 8190 and the RFCs that added entries since), plus the two multicast blocks, which live in
their own registries. An address is **reserved** when the most specific entry covering it
says it is not globally reachable: such an address never comes from the open Internet, so a
geolocation answer for it means nothing (a data file may still label it).

Registry content: as of the IPv6 registry's update of 2025-10-09 (its newest entries are
``100:0:0:1::/64``, RFC 9780, and ``2001:1::3/128``, RFC 9665; the IPv4 registry's newest is
``192.88.99.2/32``, RFC 6751). It was written down from the registries' published tables, not
downloaded at build time; compare with https://www.iana.org/assignments/iana-ipv4-special-registry/
and https://www.iana.org/assignments/iana-ipv6-special-registry/ when updating.

Decisions per entry, where the "Globally Reachable" column gives no plain answer:

- A globally reachable entry inside a block that is not (``192.0.0.9/32`` inside
  ``192.0.0.0/24``, the anycast and identifier prefixes inside ``2001::/23``) is *not*
  reserved: the most specific entry wins, as the registry's footnotes intend.
- Entries marked N/A are transition space reachable through relays: Teredo ``2001::/32``,
  6to4 ``2002::/16`` and the deprecated 6to4 relay anycast ``192.88.99.0/24`` are *not*
  reserved (real clients appear behind them). The deprecated ORCHID ``2001:10::/28`` (N/A,
  terminated 2014) stays reserved as part of ``2001::/23``: nothing uses it any more.
- The NAT64 well-known prefix ``64:ff9b::/96`` is globally reachable (not reserved); the
  local-use ``64:ff9b:1::/48`` (RFC 8215) is not (reserved).
- Multicast ``224.0.0.0/4`` and ``ff00::/8`` are reserved: a multicast address is never the
  source of a request.
- ``::ffff:0:0/96`` (IPv4-mapped) is answered from the IPv4 list, like every lookup.

Python's ``ipaddress`` (``is_global``) agrees except for multicast (global there), Teredo and
6to4 (not global in recent versions), 100.64.0.0/10's ``is_private`` (False; ``is_global`` is
False too), and entries newer than a given Python release; ``tests/test_reserved.py`` lists
each difference.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lookupd.core import _search
from lookupd.core.constants import IPV4_MAPPED_PREFIX, IPV4_MAX, IPV6_MAX
from lookupd.core.table import RangeTable, build_table

# ::ffff:0.0.0.0 and ::ffff:255.255.255.255: keys in this block are checked as IPv4.
_MAPPED_FIRST = IPV4_MAPPED_PREFIX
_MAPPED_LAST = IPV4_MAPPED_PREFIX | IPV4_MAX
# Label 1 marks a reserved segment; 0 a globally reachable one.
_RESERVED = 1


@dataclass(frozen=True, slots=True)
class SpecialBlock:
    """One entry of a special-purpose address registry."""

    network: str
    """The block in CIDR notation."""
    name: str
    """The registry's name for it."""
    rfc: str
    """The RFC(s) that define it."""
    reserved: bool
    """True when the block is not globally reachable (lookups answer ``RESERVED``)."""


# The IANA IPv4 Special-Purpose Address Registry, in registry order, plus multicast.
#
# | block              | name                                 | RFC            | reserved |
# |--------------------|--------------------------------------|----------------|----------|
# | 0.0.0.0/8          | "This network"                       | RFC 791        | yes      |
# | 0.0.0.0/32         | "This host on this network"          | RFC 1122       | yes      |
# | 10.0.0.0/8         | Private-Use                          | RFC 1918       | yes      |
# | 100.64.0.0/10      | Shared Address Space (CGNAT)         | RFC 6598       | yes      |
# | 127.0.0.0/8        | Loopback                             | RFC 1122       | yes      |
# | 169.254.0.0/16     | Link Local                           | RFC 3927       | yes      |
# | 172.16.0.0/12      | Private-Use                          | RFC 1918       | yes      |
# | 192.0.0.0/24       | IETF Protocol Assignments            | RFC 6890       | yes      |
# | 192.0.0.0/29       | IPv4 Service Continuity Prefix       | RFC 7335       | yes      |
# | 192.0.0.8/32       | IPv4 dummy address                   | RFC 7600       | yes      |
# | 192.0.0.9/32       | Port Control Protocol Anycast        | RFC 7723       | no       |
# | 192.0.0.10/32      | TURN Anycast                         | RFC 8155       | no       |
# | 192.0.0.170/32     | NAT64/DNS64 Discovery                | RFC 8880       | yes      |
# | 192.0.0.171/32     | NAT64/DNS64 Discovery                | RFC 8880       | yes      |
# | 192.0.2.0/24       | Documentation (TEST-NET-1)           | RFC 5737       | yes      |
# | 192.31.196.0/24    | AS112-v4                             | RFC 7535       | no       |
# | 192.52.193.0/24    | AMT                                  | RFC 7450       | no       |
# | 192.88.99.0/24     | Deprecated (6to4 Relay Anycast)      | RFC 7526       | no (N/A) |
# | 192.88.99.2/32     | 6a44-relay anycast address           | RFC 6751       | yes      |
# | 192.168.0.0/16     | Private-Use                          | RFC 1918       | yes      |
# | 192.175.48.0/24    | Direct Delegation AS112 Service      | RFC 7534       | no       |
# | 198.18.0.0/15      | Benchmarking                         | RFC 2544       | yes      |
# | 198.51.100.0/24    | Documentation (TEST-NET-2)           | RFC 5737       | yes      |
# | 203.0.113.0/24     | Documentation (TEST-NET-3)           | RFC 5737       | yes      |
# | 224.0.0.0/4        | Multicast (multicast registry)       | RFC 5771       | yes      |
# | 240.0.0.0/4        | Reserved                             | RFC 1112       | yes      |
# | 255.255.255.255/32 | Limited Broadcast                    | RFC 8190, 919  | yes      |
IPV4_BLOCKS: tuple[SpecialBlock, ...] = (
    SpecialBlock("0.0.0.0/8", '"This network"', "RFC 791", True),
    SpecialBlock("0.0.0.0/32", '"This host on this network"', "RFC 1122", True),
    SpecialBlock("10.0.0.0/8", "Private-Use", "RFC 1918", True),
    SpecialBlock("100.64.0.0/10", "Shared Address Space", "RFC 6598", True),
    SpecialBlock("127.0.0.0/8", "Loopback", "RFC 1122", True),
    SpecialBlock("169.254.0.0/16", "Link Local", "RFC 3927", True),
    SpecialBlock("172.16.0.0/12", "Private-Use", "RFC 1918", True),
    SpecialBlock("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890", True),
    SpecialBlock("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", True),
    SpecialBlock("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", True),
    SpecialBlock("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", False),
    SpecialBlock("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", False),
    SpecialBlock("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050", True),
    SpecialBlock("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050", True),
    SpecialBlock("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", True),
    SpecialBlock("192.31.196.0/24", "AS112-v4", "RFC 7535", False),
    SpecialBlock("192.52.193.0/24", "AMT", "RFC 7450", False),
    SpecialBlock("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", False),
    SpecialBlock("192.88.99.2/32", "6a44-relay anycast address", "RFC 6751", True),
    SpecialBlock("192.168.0.0/16", "Private-Use", "RFC 1918", True),
    SpecialBlock("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", False),
    SpecialBlock("198.18.0.0/15", "Benchmarking", "RFC 2544", True),
    SpecialBlock("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", True),
    SpecialBlock("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", True),
    SpecialBlock("224.0.0.0/4", "Multicast", "RFC 5771", True),
    SpecialBlock("240.0.0.0/4", "Reserved", "RFC 1112", True),
    SpecialBlock("255.255.255.255/32", "Limited Broadcast", "RFC 8190, RFC 919", True),
)

# The IANA IPv6 Special-Purpose Address Registry, in registry order, plus multicast.
#
# | block              | name                                 | RFC            | reserved |
# |--------------------|--------------------------------------|----------------|----------|
# | ::1/128            | Loopback Address                     | RFC 4291       | yes      |
# | ::/128             | Unspecified Address                  | RFC 4291       | yes      |
# | ::ffff:0:0/96      | IPv4-mapped Address                  | RFC 4291       | (IPv4)   |
# | 64:ff9b::/96       | IPv4-IPv6 Translat. (NAT64 WKP)      | RFC 6052       | no       |
# | 64:ff9b:1::/48     | IPv4-IPv6 Translat. (local use)      | RFC 8215       | yes      |
# | 100::/64           | Discard-Only Address Block           | RFC 6666       | yes      |
# | 100:0:0:1::/64     | Dummy IPv6 Prefix                    | RFC 9780       | yes      |
# | 2001::/23          | IETF Protocol Assignments            | RFC 2928       | yes      |
# | 2001::/32          | TEREDO                               | RFC 4380, 8190 | no (N/A) |
# | 2001:1::1/128      | Port Control Protocol Anycast        | RFC 7723       | no       |
# | 2001:1::2/128      | TURN Anycast                         | RFC 8155       | no       |
# | 2001:1::3/128      | DNS-SD Service Registration Anycast  | RFC 9665       | no       |
# | 2001:2::/48        | Benchmarking                         | RFC 5180       | yes      |
# | 2001:3::/32        | AMT                                  | RFC 7450       | no       |
# | 2001:4:112::/48    | AS112-v6                             | RFC 7535       | no       |
# | 2001:10::/28       | Deprecated (previously ORCHID)       | RFC 4843       | yes (N/A)|
# | 2001:20::/28       | ORCHIDv2                             | RFC 7343       | no       |
# | 2001:30::/28       | Drone Remote ID (DETs) Prefix        | RFC 9374       | no       |
# | 2001:db8::/32      | Documentation                        | RFC 3849       | yes      |
# | 2002::/16          | 6to4                                 | RFC 3056       | no (N/A) |
# | 2620:4f:8000::/48  | Direct Delegation AS112 Service      | RFC 7534       | no       |
# | 3fff::/20          | Documentation                        | RFC 9637       | yes      |
# | 5f00::/16          | Segment Routing (SRv6) SIDs          | RFC 9602       | yes      |
# | fc00::/7           | Unique-Local                         | RFC 4193, 8190 | yes      |
# | fe80::/10          | Link-Local Unicast                   | RFC 4291       | yes      |
# | ff00::/8           | Multicast (IPv6 address space)       | RFC 4291       | yes      |
IPV6_BLOCKS: tuple[SpecialBlock, ...] = (
    SpecialBlock("::1/128", "Loopback Address", "RFC 4291", True),
    SpecialBlock("::/128", "Unspecified Address", "RFC 4291", True),
    SpecialBlock("64:ff9b::/96", "IPv4-IPv6 Translat.", "RFC 6052", False),
    SpecialBlock("64:ff9b:1::/48", "IPv4-IPv6 Translat.", "RFC 8215", True),
    SpecialBlock("100::/64", "Discard-Only Address Block", "RFC 6666", True),
    SpecialBlock("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", True),
    SpecialBlock("2001::/23", "IETF Protocol Assignments", "RFC 2928", True),
    SpecialBlock("2001::/32", "TEREDO", "RFC 4380, RFC 8190", False),
    SpecialBlock("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", False),
    SpecialBlock("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", False),
    SpecialBlock(
        "2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC 9665", False
    ),
    SpecialBlock("2001:2::/48", "Benchmarking", "RFC 5180", True),
    SpecialBlock("2001:3::/32", "AMT", "RFC 7450", False),
    SpecialBlock("2001:4:112::/48", "AS112-v6", "RFC 7535", False),
    SpecialBlock("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", True),
    SpecialBlock("2001:20::/28", "ORCHIDv2", "RFC 7343", False),
    SpecialBlock("2001:30::/28", "Drone Remote ID Protocol Entity Tags", "RFC 9374", False),
    SpecialBlock("2001:db8::/32", "Documentation", "RFC 3849", True),
    SpecialBlock("2002::/16", "6to4", "RFC 3056", False),
    SpecialBlock("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", False),
    SpecialBlock("3fff::/20", "Documentation", "RFC 9637", True),
    SpecialBlock("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", True),
    SpecialBlock("fc00::/7", "Unique-Local", "RFC 4193, RFC 8190", True),
    SpecialBlock("fe80::/10", "Link-Local Unicast", "RFC 4291", True),
    SpecialBlock("ff00::/8", "Multicast", "RFC 4291", True),
)


def _build(version: int, blocks: tuple[SpecialBlock, ...]) -> RangeTable:
    """Paint the blocks into a table: label 1 where reserved, the most specific block winning.

    Nested CIDR blocks never partly overlap, so the table's overlap rule (greatest start,
    then narrowest) is exactly "most specific entry wins".
    """
    networks = [ipaddress.ip_network(block.network) for block in blocks]
    if any(network.version != version for network in networks):
        msg = f"IPv{version} special-purpose list holds a block of the other family"
        raise ValueError(msg)
    return build_table(
        4 if version == 4 else 6,
        [int(network.network_address) for network in networks],
        [int(network.broadcast_address) for network in networks],
        [_RESERVED if block.reserved else 0 for block in blocks],
    )


TABLE_V4 = _build(4, IPV4_BLOCKS)
"""Reserved IPv4 space as a range table: label 1 reserved, 0 not."""
TABLE_V6 = _build(6, IPV6_BLOCKS)
"""Reserved IPv6 space (IPv4-mapped keys are checked against ``TABLE_V4`` instead)."""
# The starts with their family's dtype, for the type checker.
_STARTS_V4: npt.NDArray[np.uint32] = TABLE_V4.starts  # type: ignore[assignment]
_STARTS_V6: npt.NDArray[np.uint64] = TABLE_V6.starts  # type: ignore[assignment]
# Per segment: whether it is reserved, to turn search indices into a mask with one gather.
SEGMENT_RESERVED_V4: npt.NDArray[np.bool_] = TABLE_V4.labels == _RESERVED
SEGMENT_RESERVED_V6: npt.NDArray[np.bool_] = TABLE_V6.labels == _RESERVED
# The same as 0/1 bytes, for arithmetic on a batch's status and labels, and for the search
# core's answer_* functions.
SEGMENT_FLAGS_V4: npt.NDArray[np.uint8] = SEGMENT_RESERVED_V4.astype(np.uint8)
SEGMENT_FLAGS_V6: npt.NDArray[np.uint8] = SEGMENT_RESERVED_V6.astype(np.uint8)


def _build_keys() -> RangeTable:
    """Paint both lists into one table over 128-bit keys, IPv4 at ``::ffff:a.b.c.d``.

    No IPv6 block overlaps ``::ffff:0:0/96`` (the registry's own entry for it is left out:
    IPv4 answers there), so a single ``find_many_v6`` pass classifies any batch of keys,
    IPv4-mapped or not, without splitting it by family.
    """
    starts, ends, labels = [], [], []
    for blocks, offset in ((IPV4_BLOCKS, IPV4_MAPPED_PREFIX), (IPV6_BLOCKS, 0)):
        for block in blocks:
            network = ipaddress.ip_network(block.network)
            starts.append(offset | int(network.network_address))
            ends.append(offset | int(network.broadcast_address))
            labels.append(_RESERVED if block.reserved else 0)
    return build_table(6, starts, ends, labels)


TABLE_KEYS = _build_keys()
"""Reserved space over 128-bit keys (IPv4-mapped and IPv6 together): label 1 reserved."""
_STARTS_KEYS: npt.NDArray[np.uint64] = TABLE_KEYS.starts  # type: ignore[assignment]
# Per segment of TABLE_KEYS: 1 if reserved, else 0.
SEGMENT_FLAGS_KEYS: npt.NDArray[np.uint8] = (TABLE_KEYS.labels == _RESERVED).astype(np.uint8)


def reserved_flags(keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
    """Return 1 for each reserved key, 0 for the others: one search-core pass.

    Args:
        keys: C-contiguous ``uint64`` array of shape (n, 2), 128-bit keys as (high, low),
            IPv4 as ``::ffff:a.b.c.d``.
    """
    index = np.empty(keys.shape[0], dtype=np.int32)
    _search.find_many_v6(_STARTS_KEYS, TABLE_KEYS.jump, keys, index)
    flags: npt.NDArray[np.uint8] = SEGMENT_FLAGS_KEYS[index]
    return flags


def _prefix_flags(version: int) -> bytes:
    """Classify each /16 (the top 16 bits of the family's space) for single-address checks.

    Byte ``p``: 0 if no address under prefix ``p`` is reserved, 1 if all are, 2 if some
    are (search the table). One shift and one index of these bytes answer most addresses
    without a search: only 4 IPv4 /16s (192.0, 192.88, 198.51, 203.0) and a handful of
    IPv6 ones are mixed.
    """
    prefixes = np.arange(1 << 16, dtype=np.uint64)
    first = np.empty(1 << 16, dtype=np.int32)
    last = np.empty(1 << 16, dtype=np.int32)
    if version == 4:
        low = (prefixes << np.uint64(16)).astype(np.uint32)
        _search.find_many_v4(_STARTS_V4, TABLE_V4.jump, low, first)
        _search.find_many_v4(_STARTS_V4, TABLE_V4.jump, low | np.uint32(0xFFFF), last)
        labels = TABLE_V4.labels
    else:
        # (high, low) rows of each /16's first and last address.
        rows = np.zeros((1 << 16, 2), dtype=np.uint64)
        rows[:, 0] = prefixes << np.uint64(48)
        _search.find_many_v6(_STARTS_V6, TABLE_V6.jump, rows, first)
        rows[:, 0] |= np.uint64((1 << 48) - 1)
        rows[:, 1] = np.uint64((1 << 64) - 1)
        _search.find_many_v6(_STARTS_V6, TABLE_V6.jump, rows, last)
        labels = TABLE_V6.labels
    flags = np.where(first == last, labels[first], 2).astype(np.uint8)
    return flags.tobytes()


PREFIX_FLAGS_V4 = _prefix_flags(4)
"""Per IPv4 /16 (``address >> 16``): 0 none reserved, 1 all reserved, 2 mixed."""
PREFIX_FLAGS_V6 = _prefix_flags(6)
"""Per IPv6 /16 (``key >> 112``): 0 none reserved, 1 all reserved, 2 mixed."""
# The same as (read-only) arrays, as the search core's answer_* functions take them, and
# the all-zero table that marks nothing (a Database with mark_reserved=False).
PREFIXES_V4: npt.NDArray[np.uint8] = np.frombuffer(PREFIX_FLAGS_V4, dtype=np.uint8)
PREFIXES_V6: npt.NDArray[np.uint8] = np.frombuffer(PREFIX_FLAGS_V6, dtype=np.uint8)
NO_PREFIXES: npt.NDArray[np.uint8] = np.frombuffer(bytes(1 << 16), dtype=np.uint8)


def reserved_mask(keys: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Return, per 128-bit key, whether it lies in a reserved block.

    Args:
        keys: ``uint64`` array of shape (n, 2), each row a key's (high, low) 64 bits; IPv4
            addresses as IPv4-mapped keys (``::ffff:a.b.c.d``), as ``LookupResult.keys``
            holds them. The key of an invalid item there, (0, 0), is ``::``: reserved.

    Raises:
        ValueError: ``keys`` is not of shape (n, 2).
    """
    array = np.ascontiguousarray(keys, dtype=np.uint64)
    if array.ndim != 2 or array.shape[1] != 2:
        msg = f"keys must have shape (n, 2), not {array.shape}"
        raise ValueError(msg)
    mask: npt.NDArray[np.bool_] = reserved_flags(array).view(np.bool_)
    return mask


def is_reserved(key: int) -> bool:
    """Tell whether one 128-bit key (IPv4 as ``::ffff:a.b.c.d``) lies in a reserved block.

    Raises:
        ValueError: ``key`` is outside 0..2**128-1.
    """
    if not 0 <= key <= IPV6_MAX:
        msg = f"key out of range: {key}"
        raise ValueError(msg)
    if _MAPPED_FIRST <= key <= _MAPPED_LAST:
        key -= IPV4_MAPPED_PREFIX
        flag = PREFIX_FLAGS_V4[key >> 16]
        if flag != 2:
            return flag == 1
        return bool(SEGMENT_RESERVED_V4[_search.find_index_v4(_STARTS_V4, TABLE_V4.jump, key)])
    flag = PREFIX_FLAGS_V6[key >> 112]
    if flag != 2:
        return flag == 1
    return bool(SEGMENT_RESERVED_V6[_search.find_index_v6(_STARTS_V6, TABLE_V6.jump, key)])


def block_of(key: int) -> SpecialBlock | None:
    """Return the most specific registry entry covering a key, or ``None``.

    For messages and tests; the lookups use the tables.
    """
    if _MAPPED_FIRST <= key <= _MAPPED_LAST:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(
            key - IPV4_MAPPED_PREFIX
        )
        blocks = IPV4_BLOCKS
    else:
        address = ipaddress.IPv6Address(key)
        blocks = IPV6_BLOCKS
    best: SpecialBlock | None = None
    best_length = -1
    for block in blocks:
        network = ipaddress.ip_network(block.network)
        if address in network and network.prefixlen > best_length:
            best, best_length = block, network.prefixlen
    return best
