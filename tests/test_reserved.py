"""Reserved (special-purpose) addresses: the registry table, its search, and Status.RESERVED.

The model here scans the registry list with ``ipaddress`` (the most specific covering block
decides), without the range tables or the search cores. Known answers pin the registry's
content; Python's ``ipaddress`` is a second opinion where it agrees with the registry.
"""

from __future__ import annotations

import copy
import ipaddress
import pickle

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import lookupd
from lookupd import Database, Status
from lookupd.core import reserved
from lookupd.core.table import build_table

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# 2**32 - 1: last IPv4 address; 2**128 - 1: last IPv6 address.
_IPV4_MAX = 0xFFFF_FFFF
_IPV6_MAX = (1 << 128) - 1
_U64_MASK = (1 << 64) - 1
# ::ffff:0:0/96: IPv4 addresses as 128-bit keys.
_MAPPED = 0xFFFF_0000_0000
_SEED = 20260701


def _key(address: IPAddress) -> int:
    """The 128-bit key lookupd uses: IPv4 a.b.c.d is ::ffff:a.b.c.d."""
    return _MAPPED | int(address) if address.version == 4 else int(address)


def _address(key: int) -> IPAddress:
    if _MAPPED <= key <= _MAPPED | _IPV4_MAX:
        return ipaddress.IPv4Address(key - _MAPPED)
    return ipaddress.IPv6Address(key)


_NETWORKS = {
    block.network: ipaddress.ip_network(block.network)
    for block in (*reserved.IPV4_BLOCKS, *reserved.IPV6_BLOCKS)
}


def _model(address: IPAddress) -> bool:
    """Reserved per the most specific registry block covering ``address``; False if none."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    blocks = reserved.IPV4_BLOCKS if address.version == 4 else reserved.IPV6_BLOCKS
    best: reserved.SpecialBlock | None = None
    for block in blocks:
        network = _NETWORKS[block.network]
        if address in network and (
            best is None or network.prefixlen > _NETWORKS[best.network].prefixlen
        ):
            best = block
    return best is not None and best.reserved


def _edge_points() -> list[IPAddress]:
    """Every block's first and last address and their outside neighbours, both families."""
    points: set[IPAddress] = set()
    for network in _NETWORKS.values():
        first, last = int(network.network_address), int(network.broadcast_address)
        top = _IPV4_MAX if network.version == 4 else _IPV6_MAX
        make = ipaddress.IPv4Address if network.version == 4 else ipaddress.IPv6Address
        points.update(make(p) for p in (first - 1, first, last, last + 1) if 0 <= p <= top)
    # The IPv4-mapped block itself is not an IPv6 block here: IPv4 answers for it.
    return sorted(points, key=lambda a: (a.version, int(a)))


_EDGES = _edge_points()


# ---------------------------------------------------------------------------------------
# The registry list itself.


@pytest.mark.parametrize(
    ("blocks", "version"), [(reserved.IPV4_BLOCKS, 4), (reserved.IPV6_BLOCKS, 6)], ids=["v4", "v6"]
)
def test_blocks_are_well_formed(blocks: tuple[reserved.SpecialBlock, ...], version: int) -> None:
    networks = [block.network for block in blocks]
    assert len(set(networks)) == len(networks)
    for block in blocks:
        network = ipaddress.ip_network(block.network)  # strict: no host bits
        assert network.version == version
        assert str(network) == block.network  # canonical spelling
        assert block.name
        assert block.rfc.startswith("RFC ")


# (address, reserved?): the registry's content, and the decisions the module documents.
_KNOWN: list[tuple[str, bool]] = [
    ("0.0.0.0", True),  # "this network"
    ("0.255.255.255", True),
    ("1.0.0.0", False),
    ("1.1.1.1", False),
    ("9.255.255.255", False),
    ("10.0.0.0", True),  # private-use
    ("10.255.255.255", True),
    ("11.0.0.0", False),
    ("100.63.255.255", False),
    ("100.64.0.0", True),  # shared address space (CGNAT)
    ("100.127.255.255", True),
    ("100.128.0.0", False),
    ("127.0.0.1", True),  # loopback
    ("169.254.0.1", True),  # link local
    ("172.15.255.255", False),
    ("172.16.0.0", True),  # private-use
    ("172.31.255.255", True),
    ("172.32.0.0", False),
    ("192.0.0.0", True),  # IETF protocol assignments
    ("192.0.0.8", True),  # IPv4 dummy address
    ("192.0.0.9", False),  # PCP anycast: globally reachable
    ("192.0.0.10", False),  # TURN anycast: globally reachable
    ("192.0.0.11", True),
    ("192.0.0.170", True),  # NAT64/DNS64 discovery
    ("192.0.0.255", True),
    ("192.0.1.0", False),
    ("192.0.2.1", True),  # TEST-NET-1
    ("192.31.196.1", False),  # AS112-v4: globally reachable
    ("192.52.193.1", False),  # AMT: globally reachable
    ("192.88.99.1", False),  # deprecated 6to4 relay anycast: transition space
    ("192.88.99.2", True),  # 6a44 relay anycast: not globally reachable
    ("192.168.1.1", True),  # private-use
    ("192.175.48.1", False),  # AS112 direct delegation: globally reachable
    ("198.17.255.255", False),
    ("198.18.0.0", True),  # benchmarking
    ("198.19.255.255", True),
    ("198.20.0.0", False),
    ("198.51.100.1", True),  # TEST-NET-2
    ("203.0.113.1", True),  # TEST-NET-3
    ("223.255.255.255", False),
    ("224.0.0.1", True),  # multicast
    ("239.255.255.255", True),
    ("240.0.0.1", True),  # reserved
    ("255.255.255.255", True),  # limited broadcast
    ("::", True),  # unspecified
    ("::1", True),  # loopback
    ("::2", False),
    ("::1.2.3.4", False),  # IPv4-compatible (deprecated): not a registry entry
    ("::ffff:10.0.0.1", True),  # IPv4-mapped: answered as IPv4
    ("::ffff:8.8.8.8", False),
    ("64:ff9b::8.8.8.8", False),  # NAT64 well-known prefix: globally reachable
    ("64:ff9b:1::1", True),  # local-use NAT64 prefix
    ("100::1", True),  # discard-only
    ("100:0:0:1::1", True),  # dummy IPv6 prefix
    ("100:0:0:2::", False),
    ("2001::1", False),  # Teredo: transition space
    ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", False),
    ("2001:1::", True),  # IETF protocol assignments
    ("2001:1::1", False),  # PCP anycast
    ("2001:1::2", False),  # TURN anycast
    ("2001:1::3", False),  # DNS-SD SRP anycast
    ("2001:1::4", True),
    ("2001:2::1", True),  # benchmarking
    ("2001:3::1", False),  # AMT
    ("2001:4:112::1", False),  # AS112-v6
    ("2001:10::1", True),  # deprecated ORCHID
    ("2001:20::1", False),  # ORCHIDv2
    ("2001:30::1", False),  # drone remote ID
    ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", True),  # last of 2001::/23
    ("2001:200::", False),
    ("2001:db8::1", True),  # documentation
    ("2002::1", False),  # 6to4: transition space
    ("2606:4700::1111", False),
    ("2620:4f:8000::1", False),  # AS112 direct delegation
    ("3fff::1", True),  # documentation (RFC 9637)
    ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", True),
    ("3fff:1000::", False),
    ("5f00::1", True),  # SRv6 SIDs
    ("fc00::1", True),  # unique local
    ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", True),
    ("fe00::", False),
    ("fe80::1", True),  # link-local
    ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", True),
    ("fec0::1", False),  # deprecated site-local: not a special-purpose registry entry
    ("ff02::1", True),  # multicast
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", True),
]


@pytest.mark.parametrize(("text", "expected"), _KNOWN, ids=[t for t, _ in _KNOWN])
def test_known_answers(text: str, expected: bool) -> None:
    address = ipaddress.ip_address(text)
    assert _model(address) is expected  # the list says so
    assert reserved.is_reserved(_key(address)) is expected  # and the table agrees


# Where Python's ipaddress (3.10 to 3.14) and the registry as used here part ways; the
# comparison below skips addresses inside these. Each is pinned in _KNOWN instead.
_IPADDRESS_DIFFERS = [
    ipaddress.ip_network(n)
    for n in (
        # Multicast: is_global is True in ipaddress; a multicast source is never a client.
        "224.0.0.0/4",
        "ff00::/8",
        # 192.0.0.0/24: older releases mark only /29 and .170/31 private, newer ones all but
        # .9 and .10, as the registry.
        "192.0.0.0/24",
        # Not in ipaddress's lists (global there); the registry says not globally reachable.
        "192.88.99.2/32",
        # ipaddress marks all of 2001::/23 private (Teredo included), newer releases with
        # the anycast/AMT/AS112/ORCHIDv2/DET exceptions, not all of them 2001:1::3.
        "2001::/23",
        # Newer releases mark 6to4 not global "to be safe"; it is transition space here.
        "2002::/16",
        # Entries newer than some releases: global there, reserved here.
        "64:ff9b:1::/48",
        "100:0:0:1::/64",
        "3fff::/20",
        "5f00::/16",
    )
]


def _ipaddress_differs(address: IPAddress) -> bool:
    return any(
        address.version == network.version and address in network for network in _IPADDRESS_DIFFERS
    )


def test_agrees_with_ipaddress_where_it_follows_the_registry() -> None:
    compared = 0
    for address in _EDGES:
        if _ipaddress_differs(address):
            continue
        assert reserved.is_reserved(_key(address)) is (not address.is_global), address
        compared += 1
    assert compared > 80


@pytest.mark.parametrize("text", ["224.0.0.1", "ff02::1", "192.88.99.2", "2001::1", "2002::1"])
def test_documented_differences_from_ipaddress(text: str) -> None:
    """These differ from ipaddress.is_global in every Python release."""
    address = ipaddress.ip_address(text)
    assert _ipaddress_differs(address)
    ours = reserved.is_reserved(_key(address))
    if text in ("2001::1", "2002::1"):
        assert not ours  # transition space, reachable through relays
    else:
        assert ours


def test_is_private_agrees_for_private_use_blocks() -> None:
    for text in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fe80::/10"):
        network = ipaddress.ip_network(text)
        for address in (network.network_address, network.broadcast_address):
            assert address.is_private
            assert reserved.is_reserved(_key(address))


# ---------------------------------------------------------------------------------------
# The tables and the vectorised check agree with the model.


def test_edges_match_the_model() -> None:
    keys = [_key(a) for a in _EDGES]
    expected = [_model(a) for a in _EDGES]
    assert [reserved.is_reserved(k) for k in keys] == expected
    pairs = np.array([(k >> 64, k & _U64_MASK) for k in keys], dtype=np.uint64)
    assert reserved.reserved_mask(pairs).tolist() == expected
    assert sum(expected) > 40
    assert len(expected) - sum(expected) > 40


def test_ipv4_mapped_keys_use_the_ipv4_list() -> None:
    for address in _EDGES:
        if address.version == 4:
            mapped = ipaddress.IPv6Address(f"::ffff:{address}")
            assert reserved.is_reserved(int(mapped)) is _model(address), address


def test_mixed_prefixes_are_searched() -> None:
    """A /16 with a block boundary inside is marked 2 (search), the others 0 or 1."""
    for blocks, flags, bits in (
        (reserved.IPV4_BLOCKS, reserved.PREFIX_FLAGS_V4, 32),
        (reserved.IPV6_BLOCKS, reserved.PREFIX_FLAGS_V6, 128),
    ):
        shift = bits - 16
        for block in blocks:
            network = ipaddress.ip_network(block.network)
            for edge in (int(network.network_address), int(network.broadcast_address) + 1):
                if edge >> bits or edge % (1 << shift) == 0:
                    continue
                make = ipaddress.IPv4Address if bits == 32 else ipaddress.IPv6Address
                if _model(make(edge)) != _model(make(edge - 1)):
                    assert flags[edge >> shift] == 2, block
        for prefix in range(1 << 16):
            if flags[prefix] != 2:
                make = ipaddress.IPv4Address if bits == 32 else ipaddress.IPv6Address
                first = make(prefix << shift)
                last = make(((prefix + 1) << shift) - 1)
                assert _model(first) is _model(last) is (flags[prefix] == 1)


def _random_keys(n: int) -> list[int]:
    """Keys near and inside the blocks, plus uniform ones, IPv4-mapped and IPv6."""
    rng = np.random.default_rng(_SEED)
    keys: list[int] = []
    networks = list(_NETWORKS.values())
    for _ in range(n):
        network = networks[int(rng.integers(len(networks)))]
        size = network.num_addresses
        offset = int(rng.integers(0, 1 << 62)) * (1 << 62) + int(rng.integers(0, 1 << 62))
        inside = int(network.network_address) + offset % size
        if network.version == 4:
            keys.append(_MAPPED | inside)
        else:
            keys.append(inside)
        keys.append(int(rng.integers(0, 1 << 32)) | _MAPPED)
        keys.append((int(rng.integers(0, 1 << 63)) << 65) | int(rng.integers(0, 1 << 63)))
    return keys


def test_random_keys_match_the_model() -> None:
    keys = _random_keys(1500)
    expected = [_model(_address(k)) for k in keys]
    pairs = np.array([(k >> 64, k & _U64_MASK) for k in keys], dtype=np.uint64)
    assert reserved.reserved_mask(pairs).tolist() == expected
    assert [reserved.is_reserved(k) for k in keys] == expected


@given(st.integers(min_value=0, max_value=_IPV6_MAX))
@example(0)
@example(_IPV6_MAX)
@example(_MAPPED)
@example(_MAPPED | _IPV4_MAX)
@example(_MAPPED - 1)
@example((_MAPPED | _IPV4_MAX) + 1)
def test_is_reserved_property(key: int) -> None:
    expected = _model(_address(key))
    assert reserved.is_reserved(key) is expected
    pair = np.array([[key >> 64, key & _U64_MASK]], dtype=np.uint64)
    assert reserved.reserved_mask(pair).tolist() == [expected]


def test_reserved_mask_of_nothing_and_bad_shapes() -> None:
    assert reserved.reserved_mask(np.empty((0, 2), dtype=np.uint64)).shape == (0,)
    with pytest.raises(ValueError, match="shape"):
        reserved.reserved_mask(np.zeros(4, dtype=np.uint64))
    with pytest.raises(ValueError, match="shape"):
        reserved.reserved_mask(np.zeros((4, 3), dtype=np.uint64))


@pytest.mark.parametrize("key", [-1, _IPV6_MAX + 1])
def test_is_reserved_out_of_range(key: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        reserved.is_reserved(key)


def test_block_of_names_the_most_specific_entry() -> None:
    block = reserved.block_of(_key(ipaddress.ip_address("192.0.0.9")))
    assert block is not None
    assert block.network == "192.0.0.9/32"
    assert not block.reserved
    assert reserved.block_of(_key(ipaddress.ip_address("8.8.8.8"))) is None
    teredo = reserved.block_of(int(ipaddress.ip_address("2001::1")))
    assert teredo is not None
    assert teredo.name == "TEREDO"


# ---------------------------------------------------------------------------------------
# Status.RESERVED through the Database, for every input kind.

_LABELS = ("", "US", "DE")


@pytest.fixture(scope="module")
def everywhere_db() -> Database:
    """Data that labels every address: US for IPv4, DE for IPv6."""
    return Database(
        build_table(4, [0], [_IPV4_MAX], [1]),
        build_table(6, [0], [_IPV6_MAX], [2]),
        _LABELS,
    )


def test_status_value_is_stable() -> None:
    assert int(Status.RESERVED) == 4
    assert Status.RESERVED.__doc__


def _expected_statuses(addresses: list[IPAddress]) -> list[int]:
    return [Status.RESERVED if _model(a) else Status.OK for a in addresses]


def _expected_countries(addresses: list[IPAddress]) -> list[str | None]:
    return [None if _model(a) else ("US" if a.version == 4 else "DE") for a in addresses]


def test_lookup_text_marks_reserved(everywhere_db: Database) -> None:
    texts = [str(a) for a in _EDGES]
    expected = _expected_statuses(_EDGES)
    for result in (
        everywhere_db.lookup(texts),
        everywhere_db.lookup([t.encode() for t in texts]),
        everywhere_db.lookup_lines("\n".join(texts).encode()),
    ):
        assert result.status.tolist() == expected
        assert result.countries() == _expected_countries(_EDGES)
        assert result.labels[result.reserved].tolist() == [0] * sum(_model(a) for a in _EDGES)
    assert [everywhere_db.lookup_one(t) for t in texts] == _expected_countries(_EDGES)
    assert [everywhere_db.lookup_one(a) for a in _EDGES] == _expected_countries(_EDGES)
    # An int up to 2**32 - 1 is IPv4, so IPv6 keys that small (::1) are left out.
    wide = [a for a in _EDGES if _key(a) > _IPV4_MAX]
    assert [everywhere_db.lookup_one(_key(a)) for a in wide] == _expected_countries(wide)


def test_lookup_arrays_mark_reserved(everywhere_db: Database) -> None:
    v4 = [a for a in _EDGES if a.version == 4]
    v6 = [a for a in _EDGES if a.version == 6]
    by_uint32 = everywhere_db.lookup(np.array([int(a) for a in v4], dtype=np.uint32))
    by_packed4 = everywhere_db.lookup(b"".join(a.packed for a in v4), version=4)
    for result in (by_uint32, by_packed4):
        assert result.status.tolist() == _expected_statuses(list(v4))
        assert result.countries() == _expected_countries(list(v4))
    pairs = np.array([(int(a) >> 64, int(a) & _U64_MASK) for a in v6], dtype=np.uint64)
    by_pairs = everywhere_db.lookup(pairs)
    by_packed6 = everywhere_db.lookup(b"".join(a.packed for a in v6), version=6)
    for result in (by_pairs, by_packed6):
        assert result.status.tolist() == _expected_statuses(list(v6))
        assert result.countries() == _expected_countries(list(v6))


def test_mapped_text_answers_as_ipv4(everywhere_db: Database) -> None:
    v4 = [a for a in _EDGES if a.version == 4]
    plain = everywhere_db.lookup([str(a) for a in v4])
    mapped = everywhere_db.lookup([f"::ffff:{a}" for a in v4])
    assert mapped.status.tolist() == plain.status.tolist()
    assert mapped.countries() == plain.countries()


def test_invalid_items_stay_invalid(everywhere_db: Database) -> None:
    result = everywhere_db.lookup(["10.0.0.1", "nope", "8.8.8.8", "", "::1"])
    assert result.status.tolist() == [
        Status.RESERVED,
        Status.INVALID_ADDRESS,
        Status.OK,
        Status.INVALID_ADDRESS,
        Status.RESERVED,
    ]
    assert result.invalid.tolist() == [False, True, False, True, False]
    assert result.reserved.tolist() == [True, False, False, False, True]


def test_not_found_in_reserved_space_is_reserved() -> None:
    """With no data there, a reserved address is RESERVED, not NOT_FOUND."""
    db = Database(build_table(4, [], [], []), build_table(6, [], [], []), ("",))
    result = db.lookup(["10.0.0.1", "8.8.8.8", "fe80::1", "2606:4700::1"])
    assert result.status.tolist() == [
        Status.RESERVED,
        Status.NOT_FOUND,
        Status.RESERVED,
        Status.NOT_FOUND,
    ]
    by_uint32 = db.lookup(np.array([0x0A00_0001, 0x0808_0808], dtype=np.uint32))
    assert by_uint32.status.tolist() == [Status.RESERVED, Status.NOT_FOUND]


def test_mark_reserved_false_gives_the_data(everywhere_db: Database) -> None:
    raw = Database(everywhere_db.v4, everywhere_db.v6, _LABELS, mark_reserved=False)
    texts = ["10.0.0.1", "::1", "224.0.0.1"]
    assert raw.lookup(texts).countries() == ["US", "DE", "US"]
    assert raw.lookup(texts).status.tolist() == [Status.OK] * 3
    assert [raw.lookup_one(t) for t in texts] == ["US", "DE", "US"]
    assert raw.lookup(np.array([0x0A00_0001], dtype=np.uint32)).countries() == ["US"]


def test_pickle_keeps_mark_reserved(everywhere_db: Database) -> None:
    raw = Database(everywhere_db.v4, everywhere_db.v6, _LABELS, mark_reserved=False)
    for db, expected in ((everywhere_db, None), (raw, "US")):
        for clone in (pickle.loads(pickle.dumps(db)), copy.deepcopy(db)):
            assert clone.mark_reserved is db.mark_reserved
            assert clone.lookup_one("10.0.0.1") == expected


def test_embedded_data_answers_reserved() -> None:
    db = lookupd.open()
    texts = ["10.0.0.1", "127.0.0.1", "192.168.1.1", "::1", "fe80::1", "1.1.1.1", "2001:db8::"]
    result = db.lookup(texts)
    assert result.status.tolist() == [Status.RESERVED] * 5 + [Status.OK, Status.RESERVED]
    assert result.countries() == [None] * 5 + ["AU", None]
    assert db.lookup_one("10.0.0.1") is None
    assert db.lookup_one("1.1.1.1") == "AU"


# ---------------------------------------------------------------------------------------
# LookupResult.keys


def _pairs(keys: list[int]) -> npt.NDArray[np.uint64]:
    return np.array([(k >> 64, k & _U64_MASK) for k in keys], dtype=np.uint64).reshape(-1, 2)


def test_keys_of_text(everywhere_db: Database) -> None:
    texts = ["1.2.3.4", "bad", "2001:db8::1", "::ffff:5.6.7.8"]
    expected = _pairs([_MAPPED | 0x0102_0304, 0, 0x2001_0DB8 << 96 | 1, _MAPPED | 0x0506_0708])
    for result in (
        everywhere_db.lookup(texts),
        everywhere_db.lookup_lines("\n".join(texts).encode()),
    ):
        assert result.keys.dtype == np.uint64
        assert np.array_equal(result.keys, expected)


def test_keys_of_ipv4_arrays_are_built_on_demand(everywhere_db: Database) -> None:
    ints = np.array([0, 0x0102_0304, _IPV4_MAX], dtype=np.uint32)
    expected = _pairs([_MAPPED, _MAPPED | 0x0102_0304, _MAPPED | _IPV4_MAX])
    for result in (
        everywhere_db.lookup(ints),
        everywhere_db.lookup(ints.astype(">u4").tobytes(), version=4),
        everywhere_db.lookup(ints[::-1][::-1].astype(np.dtype(">u4"))),
    ):
        keys = result.keys
        assert np.array_equal(keys, expected)
        assert result.keys is keys  # built once
        assert keys.flags.c_contiguous


def test_keys_of_ipv6_arrays(everywhere_db: Database) -> None:
    keys = [0, 1, _IPV6_MAX, 0x2001_0DB8 << 96]
    pairs = _pairs(keys)
    assert np.array_equal(everywhere_db.lookup(pairs).keys, pairs)
    packed = b"".join(k.to_bytes(16, "big") for k in keys)
    assert np.array_equal(everywhere_db.lookup(packed, version=6).keys, pairs)


def test_keys_of_an_empty_batch(everywhere_db: Database) -> None:
    assert everywhere_db.lookup([]).keys.shape == (0, 2)
    assert everywhere_db.lookup(np.array([], dtype=np.uint32)).keys.shape == (0, 2)


def test_keys_feed_reserved_mask(everywhere_db: Database) -> None:
    texts = [str(a) for a in _EDGES]
    result = everywhere_db.lookup(texts)
    assert np.array_equal(reserved.reserved_mask(result.keys), result.reserved)
