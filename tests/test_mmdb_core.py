"""The MaxMind DB core (``lookupd.core._mmdb``), both twins, against ``maxminddb``.

``maxminddb`` stays the reference: on every readable vendored MaxMind test database and on
the vendored real data, each core's tree walk must give the networks ``maxminddb``'s
iteration yields, in the same order, and its labels the labels of the records ``maxminddb``
decodes; the ``.mmdb`` reader built on it must give exactly the rows, label order and notes
of the reader that iterated with ``maxminddb`` (``mmdb_files.reference_rows``). Hypothesis
builds random small databases (record sizes 24, 28 and 32; IPv4 and IPv6 trees; aliases;
shared records) for the same comparisons, and feeds both twins the same arbitrary and
mutated bytes: they must agree on every answer and every error.
"""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import lzma
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import maxminddb
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mmdb_files import encode, label, reference_rows, uint32, write_mmdb

from lookupd.core import _mmdb, _mmdb_py
from lookupd.datafiles.formats import read_source
from lookupd.datafiles.open import open_database
from lookupd.datafiles.rows import RangeRows
from lookupd.errors import DataFormatError

_DATA = Path(__file__).parent / "data"
_TEST_DATA = _DATA / "maxmind-test" / "test-data"
_REAL_XZ = _DATA / "geo-whois-asn-country" / "geo-whois-asn-country.mmdb.xz"
_BROKEN = {"GeoIP2-City-Test-Broken-Double-Format.mmdb", "GeoIP2-City-Test-Invalid-Node-Count.mmdb"}
_READABLE = sorted(p.name for p in _TEST_DATA.glob("*.mmdb") if p.name not in _BROKEN)
_SEPARATOR_BYTES = 16
MMDB_CORES = [
    importlib.import_module(name)
    for name in ("lookupd.core._mmdb_c", "lookupd.core._mmdb_py")
    if importlib.util.find_spec(name) is not None
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _core_id(module: ModuleType) -> str:
    return module.__name__.rsplit(".", 1)[-1]


@contextmanager
def _using(core: ModuleType) -> Iterator[None]:
    """Make ``core`` the one the ``.mmdb`` reader calls (the selector's names)."""
    saved = _mmdb.walk_tree, _mmdb.find_labels
    _mmdb.walk_tree, _mmdb.find_labels = core.walk_tree, core.find_labels
    try:
        yield
    finally:
        _mmdb.walk_tree, _mmdb.find_labels = saved


def _shape(path: Path) -> tuple[int, int, int]:
    with maxminddb.open_database(os.fspath(path)) as reader:
        meta = reader.metadata()
        return meta.node_count, meta.record_size, meta.ip_version


def _walk(core: ModuleType, path: Path) -> tuple[list[Network], list[str | None], list[bool]]:
    """The networks the core's walk yields, as maxminddb names them, with each one's label
    and whether it came from ``registered_country``."""
    raw = path.read_bytes()
    node_count, record_size, ip_version = _shape(path)
    starts, depths, records, _, _ = core.walk_tree(raw, node_count, record_size, ip_version)
    networks: list[Network] = []
    for (high, low), depth in zip(starts.tolist(), depths.tolist(), strict=True):
        if ip_version == 4:
            networks.append(ipaddress.IPv4Network((low, depth)))
        elif high == 0 and low >> 32 == 0:  # ::/96: maxminddb names it as IPv4
            networks.append(ipaddress.IPv4Network((low, depth - 96)))
        else:
            networks.append(ipaddress.IPv6Network(((high << 64) | low, depth)))
    data = raw[node_count * record_size // 4 + _SEPARATOR_BYTES :]
    offsets = records.astype(np.int64) - node_count - _SEPARATOR_BYTES
    distinct, which = np.unique(offsets, return_inverse=True)
    kinds, names = _labels(core, data, distinct.astype(np.uint32))
    return (
        networks,
        [names[i] for i in which.reshape(-1).tolist()],
        [kinds[i] == _mmdb_py.KIND_REGISTERED_COUNTRY for i in which.reshape(-1).tolist()],
    )


def _labels(
    core: ModuleType, data: bytes, offsets: npt.NDArray[np.uint32]
) -> tuple[list[int], list[str | None]]:
    kinds = np.empty(len(offsets), dtype=np.uint8)
    spans = np.empty((len(offsets), 4), dtype=np.uint32)
    core.find_labels(data, offsets, kinds, spans)
    names: list[str | None] = []
    for kind, (start, size, sub_start, sub_size) in zip(
        kinds.tolist(), spans.tolist(), strict=True
    ):
        if kind == _mmdb_py.KIND_NONE:
            names.append(None)
            continue
        name = data[start : start + size].decode()
        if sub_size:
            name += "-" + data[sub_start : sub_start + sub_size].decode()
        names.append(name)
    return kinds.tolist(), names


def _maxminddb_networks(path: Path) -> tuple[list[Network], list[str | None], list[bool]]:
    networks: list[Network] = []
    labels: list[str | None] = []
    registered: list[bool] = []
    with maxminddb.open_database(os.fspath(path), maxminddb.MODE_MMAP_EXT) as reader:
        for network, record in reader:
            code, from_registered = label(record)
            networks.append(network)
            labels.append(code)
            registered.append(from_registered)
    return networks, labels, registered


def _assert_same_networks(core: ModuleType, path: Path) -> int:
    expected = _maxminddb_networks(path)
    got = _walk(core, path)
    for i, what in enumerate(("networks", "labels", "registered")):
        ours: list[Any] = list(got[i])
        theirs: list[Any] = list(expected[i])
        assert len(ours) == len(theirs), what
        wrong = [(n, a, b) for n, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
        assert not wrong[:10], f"{what}: {len(wrong)} of {len(theirs)} differ from maxminddb"
    return len(expected[0])


def _assert_same_rows(core: ModuleType, path: Path) -> None:
    """The reader on ``core`` builds what the maxminddb-iterating reader built."""
    raw = path.read_bytes()
    node_count, record_size, ip_version = _shape(path)
    alias_starts, alias_depths = core.walk_tree(raw, node_count, record_size, ip_version)[3:]
    aliases = [
        ((high << 64) | low, depth)
        for (high, low), depth in zip(alias_starts.tolist(), alias_depths.tolist(), strict=True)
    ]
    try:
        expected: RangeRows | None = reference_rows(path, aliases)
    except ValueError:
        expected = None
    with _using(core):
        if expected is None:
            with pytest.raises(DataFormatError, match="no country data"):
                read_source(path)
            return
        rows = read_source(path)
    assert rows.label_names == expected.label_names
    assert rows.v4 == expected.v4
    assert rows.v6 == expected.v6
    assert rows.notes == expected.notes


@pytest.fixture(scope="module")
def real_mmdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("real") / "geo-whois-asn-country.mmdb"
    path.write_bytes(lzma.decompress(_REAL_XZ.read_bytes()))
    return path


# --- the vendored databases ---------------------------------------------------------------


@pytest.mark.parametrize("name", _READABLE)
def test_walk_and_labels_match_maxminddb(mmdb_core: ModuleType, name: str) -> None:
    assert _assert_same_networks(mmdb_core, _TEST_DATA / name) > 0


@pytest.mark.parametrize("name", _READABLE)
def test_reader_builds_what_the_maxminddb_reader_built(mmdb_core: ModuleType, name: str) -> None:
    _assert_same_rows(mmdb_core, _TEST_DATA / name)


@pytest.mark.slow
def test_real_mmdb_matches_maxminddb(mmdb_core: ModuleType, real_mmdb: Path) -> None:
    assert _assert_same_networks(mmdb_core, real_mmdb) > 500_000


@pytest.mark.slow
def test_real_mmdb_reader_builds_what_the_maxminddb_reader_built(
    mmdb_core: ModuleType, real_mmdb: Path
) -> None:
    _assert_same_rows(mmdb_core, real_mmdb)


def test_the_selector_picks_a_twin() -> None:
    assert _mmdb.CORE in {"c", "python"}
    assert _mmdb.walk_tree.__module__ == f"lookupd.core._mmdb_{'c' if _mmdb.CORE == 'c' else 'py'}"


# --- random databases ----------------------------------------------------------------------

_CODES = st.sampled_from(["US", "GB", "UA", "", "43", "ÉÉ", "ENG"])
_NAMES = st.dictionaries(st.sampled_from(["en", "de", "ja"]), st.text(max_size=6), max_size=3)
_PLACE = st.fixed_dictionaries({}, optional={"iso_code": _CODES, "names": _NAMES})
_RECORDS = st.one_of(
    st.fixed_dictionaries({"country_code": _CODES}),
    st.fixed_dictionaries(
        {"country": _PLACE},
        optional={
            "subdivisions": st.lists(_PLACE, max_size=2),
            "registered_country": _PLACE,
            "city": st.fixed_dictionaries({"names": _NAMES}),
            "location": st.fixed_dictionaries({"accuracy_radius": st.integers(0, 999).map(uint32)}),
        },
    ),
    st.fixed_dictionaries({"registered_country": _PLACE}),
    st.fixed_dictionaries({}, optional={"continent": _PLACE}),
)
_ALIASES = ("::ffff:0:0/96", "2002::/16", "2001::/32")


@st.composite
def _databases(
    draw: st.DrawFn,
) -> tuple[list[tuple[str, dict[str, Any]]], int, int, tuple[str, ...]]:
    """(network text, record) pairs that do not overlap, ip_version, record size, aliases."""
    ip_version = draw(st.sampled_from([4, 6]))
    record_size = draw(st.sampled_from([24, 28, 32]))
    aliases = (
        tuple(draw(st.lists(st.sampled_from(_ALIASES), unique=True))) if ip_version == 6 else ()
    )
    # Ranges already taken in the 128-bit space: the aliases, and ::/96 for IPv6 networks.
    taken = [_range(ipaddress.ip_network(a)) for a in aliases]
    pool = draw(st.lists(_RECORDS, min_size=1, max_size=4))  # records shared by networks
    networks: list[tuple[str, dict[str, Any]]] = []
    for _ in range(draw(st.integers(1, 12))):
        ipv4 = ip_version == 4 or draw(st.booleans())
        bits = 32 if ipv4 else 128
        length = draw(st.integers(1, bits))
        value = draw(st.integers(0, (1 << bits) - 1)) >> (bits - length) << (bits - length)
        network: Network = (
            ipaddress.IPv4Network((value, length))
            if ipv4
            else ipaddress.IPv6Network((value, length))
        )
        first, last = _range(network)
        if not ipv4 and first <= IPV4_LAST:  # IPv6 networks stay out of ::/96
            continue
        if any(first <= b and a <= last for a, b in taken):
            continue
        taken.append((first, last))
        networks.append((str(network), draw(st.sampled_from(pool))))
    return networks, ip_version, record_size, aliases


IPV4_LAST = (1 << 32) - 1


def _range(network: Network) -> tuple[int, int]:
    """The network's addresses in the tree's 128-bit space (IPv4 inside ::/96)."""
    return int(network.network_address), int(network.broadcast_address)


@given(database=_databases())
def test_random_databases_read_as_maxminddb_reads_them(
    database: tuple[list[tuple[str, dict[str, Any]]], int, int, tuple[str, ...]],
) -> None:
    networks, ip_version, record_size, aliases = database
    with tempfile.TemporaryDirectory() as tmp:
        path = write_mmdb(
            Path(tmp) / "random.mmdb",
            networks,
            ip_version=ip_version,
            aliases=aliases,
            record_size=record_size,
        )
        for core in MMDB_CORES:
            _assert_same_networks(core, path)
            _assert_same_rows(core, path)


# --- both twins, the same answers and errors on any bytes -----------------------------------

_C: Any = MMDB_CORES[0] if _core_id(MMDB_CORES[0]) == "_mmdb_c" else None
_needs_c = pytest.mark.skipif(_C is None, reason="the compiled core is not built")


def _outcome(call: Any, *args: Any) -> Any:
    try:
        return ("ok", call(*args))
    except ValueError as exc:
        return ("error", str(exc))


def _find_labels_outcome(core: ModuleType, data: bytes, offsets: list[int]) -> Any:
    kinds = np.empty(len(offsets), dtype=np.uint8)
    spans = np.empty((len(offsets), 4), dtype=np.uint32)
    result = _outcome(core.find_labels, data, np.array(offsets, dtype=np.uint32), kinds, spans)
    if result[0] == "error":
        return result
    return kinds.tolist(), spans.tolist()


def _walk_outcome(core: ModuleType, tree: bytes, shape: tuple[int, int, int]) -> Any:
    result = _outcome(core.walk_tree, tree, *shape)
    if result[0] == "error":
        return result
    return [array.tolist() for array in result[1]]


_VALUES = st.recursive(
    st.one_of(
        st.text(max_size=4),
        st.sampled_from(["US", "country", "iso_code", "country_code"]),
        st.integers(0, (1 << 32) - 1).map(uint32),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(
                ["country_code", "country", "iso_code", "subdivisions", "registered_country", "x"]
            ),
            children,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


@_needs_c
@given(
    value=_VALUES, flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=3)
)
def test_twins_agree_on_encoded_and_mutated_records(
    value: Any, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(encode(value))
    for at, byte in flips:
        data[at % len(data)] = byte
    offsets = [0, len(data) - 1, len(data) // 2]
    assert _find_labels_outcome(_C, bytes(data), offsets) == _find_labels_outcome(
        _mmdb_py, bytes(data), offsets
    )


@_needs_c
@given(data=st.binary(max_size=64), offsets=st.lists(st.integers(0, 80), max_size=4))
def test_twins_agree_on_arbitrary_record_bytes(data: bytes, offsets: list[int]) -> None:
    assert _find_labels_outcome(_C, data, offsets) == _find_labels_outcome(_mmdb_py, data, offsets)


@_needs_c
@given(
    tree=st.binary(max_size=96),
    node_count=st.integers(-1, 20),
    record_size=st.sampled_from([24, 28, 32, 30]),
    ip_version=st.sampled_from([4, 6, 5]),
)
def test_twins_agree_on_arbitrary_trees(
    tree: bytes, node_count: int, record_size: int, ip_version: int
) -> None:
    shape = (node_count, record_size, ip_version)
    assert _walk_outcome(_C, tree, shape) == _walk_outcome(_mmdb_py, tree, shape)


@pytest.mark.parametrize("core", MMDB_CORES, ids=_core_id)
def test_output_arrays_must_fit(core: ModuleType) -> None:
    data = encode({"country_code": "US"})
    with pytest.raises(ValueError, match="do not fit 1 records"):
        core.find_labels(
            data, np.zeros(1, np.uint32), np.empty(2, np.uint8), np.empty((1, 4), np.uint32)
        )
    kinds, spans = np.empty(1, np.uint8), np.empty((1, 4), np.uint32)
    core.find_labels(data, np.zeros(1, np.uint32), kinds, spans)
    assert kinds.tolist() == [_mmdb_py.KIND_COUNTRY_CODE]
    start, size = spans[0, :2].tolist()
    assert data[start : start + size] == b"US"


def test_a_server_reload_reads_a_mmdb_through_the_core(monkeypatch: pytest.MonkeyPatch) -> None:
    # A reload opens its data with open_database (lookupd.server.reload), which reads a
    # source file with the same format reader as lookupd build: the core labels the records.
    calls: list[int] = []

    def counted(*args: Any) -> None:
        calls.append(len(args[1]))
        original(*args)

    original = _mmdb.find_labels
    monkeypatch.setattr(_mmdb, "find_labels", counted)
    path = _TEST_DATA / "GeoIP2-City-Test.mmdb"
    db = open_database(path, mark_reserved=False)
    assert len(calls) == 1
    assert calls[0] > 10
    texts = ["2.2.3.0", "81.2.69.160", "2001:218::1"]
    with maxminddb.open_database(os.fspath(path)) as reader:
        expected = [label(reader.get(text))[0] for text in texts]
    result = db.lookup(texts)
    answers = [s or c for c, s in zip(result.countries(), result.subdivisions(), strict=True)]
    assert answers == expected
    assert expected[0] == "GB-ENG"
