"""MaxMind DB input: every network answers as the ``maxminddb`` reader, corrupt files fail cleanly.

The vendored MaxMind test databases (``tests/data/maxmind-test``) are read into tables and
every network's first and last address is looked up and compared with the label the reader's
own record gives. Cases the vendored files lack (a ``registered_country`` fallback, a flat
schema, IPv4-mapped data stored as IPv6, crafted search trees that loop or run too deep) are
written by a small MaxMind DB writer below. Corrupt files are read in a child process with a
timeout and a memory cap, so a crash or a hang fails the test instead of the test run.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import lzma
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import maxminddb
import numpy as np
import pytest
from mmdb_files import control as _control
from mmdb_files import encode as _encode
from mmdb_files import uint16 as _uint16
from mmdb_files import uint32 as _uint32
from mmdb_files import write_mmdb as _write_mmdb
from mmdb_files import write_raw_tree as _write_raw_tree

import lookupd
from lookupd.core import _mmdb, _mmdb_py
from lookupd.core.table import RangeTable
from lookupd.datafiles.formats import detect_format, mmdb, mmdb_tree, read_source
from lookupd.datafiles.rows import RangeRows
from lookupd.errors import DataFormatError

_DATA = Path(__file__).parent / "data"
_TEST_DATA = _DATA / "maxmind-test" / "test-data"
_BAD_DATA = _DATA / "maxmind-test" / "bad-data"
_REAL = _DATA / "geo-whois-asn-country"
_COUNTRY_DBS = [
    "GeoIP2-City-Test.mmdb",
    "GeoIP2-Country-Test.mmdb",
    "GeoLite2-City-Test.mmdb",
    "GeoLite2-Country-Test.mmdb",
]
# Generic test databases: records like {"ip": "::1.1.1.1"}, no country anywhere.
_NO_COUNTRY_DBS = [
    "MaxMind-DB-test-ipv4-24.mmdb",
    "MaxMind-DB-test-ipv6-32.mmdb",
    "MaxMind-DB-test-mixed-24.mmdb",
    "MaxMind-DB-test-mixed-32.mmdb",
]
_BROKEN_DBS = [
    "GeoIP2-City-Test-Broken-Double-Format.mmdb",
    "GeoIP2-City-Test-Invalid-Node-Count.mmdb",
]
_BAD_FILES = sorted(_BAD_DATA.rglob("*.mmdb"))
# Bad files whose structure both maxminddb readers accept: they fail for want of a country.
_READABLE_BAD_FILES = {
    "libmaxminddb-corrupt-search-tree.mmdb",
    "libmaxminddb-empty-array-last-in-metadata.mmdb",
    "libmaxminddb-empty-map-last-in-metadata.mmdb",
    "libmaxminddb-uint64-max-epoch.mmdb",
}
_ERROR_KINDS = (
    "not a valid MaxMind DB file: ",
    "corrupt MaxMind DB file: ",
    "no country data: ",
)


# --- helpers -----------------------------------------------------------------------------


def _expected(record: Any) -> str | None:
    """The label a record should give (the rule in lookupd.datafiles.formats.mmdb's docstring)."""
    if not isinstance(record, dict):
        return None
    if record.get("country_code"):
        return str(record["country_code"])
    country = record.get("country") or {}
    if country.get("iso_code"):
        subdivisions = record.get("subdivisions") or [{}]
        if subdivisions[0].get("iso_code"):
            return f"{country['iso_code']}-{subdivisions[0]['iso_code']}"
        return str(country["iso_code"])
    registered = record.get("registered_country") or {}
    return str(registered["iso_code"]) if registered.get("iso_code") else None


def _database(rows: RangeRows) -> lookupd.Database:
    v4, v6 = rows.tables()
    # What the file says, also in reserved space (10/8, 2001:db8::/32) that lookups would
    # otherwise answer RESERVED.
    return lookupd.Database(v4, v6, rows.label_names, mark_reserved=False)


@pytest.fixture
def reader_of() -> Iterator[Any]:
    """Open databases with maxminddb, closing them after the test."""
    opened: list[Any] = []

    def open_reader(path: Path) -> Any:
        reader = maxminddb.open_database(os.fspath(path))
        opened.append(reader)
        return reader

    yield open_reader
    for reader in opened:
        reader.close()


def _labels(db: lookupd.Database, texts: list[str]) -> list[str | None]:
    """Each address's full label: ``UA-43`` where there is a subdivision, else the country."""
    result = db.lookup(texts)
    return [
        subdivision or country
        for country, subdivision in zip(result.countries(), result.subdivisions(), strict=True)
    ]


def _last_address(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return str(network.broadcast_address)


# --- the vendored MaxMind test databases --------------------------------------------------


@pytest.mark.parametrize("name", _COUNTRY_DBS)
def test_every_network_answers_as_the_reader(name: str, reader_of: Any) -> None:
    path = _TEST_DATA / name
    assert detect_format(path) == "mmdb"
    db = _database(read_source(path))
    texts: list[str] = []
    expected: list[str | None] = []
    for network, record in reader_of(path):
        # IPv4 networks come as IPv4 text, the rest as IPv6 text.
        for text in (str(network.network_address), _last_address(network)):
            texts.append(text)
            expected.append(_expected(record))
    assert len(texts) > 400
    assert sum(e is not None for e in expected) > 0.95 * len(texts)
    answers = _labels(db, texts)
    wrong = [(t, a, e) for t, a, e in zip(texts, answers, expected, strict=True) if a != e]
    assert not wrong[:20], f"{len(wrong)} of {len(texts)} addresses differ from the reader"


@pytest.mark.parametrize("name", _COUNTRY_DBS)
def test_search_tree_walk_counts_what_the_reader_yields(name: str, reader_of: Any) -> None:
    path = _TEST_DATA / name
    reader = reader_of(path)
    meta = reader.metadata()
    tree = mmdb_tree.walk_tree(
        path, memoryview(path.read_bytes()), meta.node_count, meta.record_size, meta.ip_version
    )
    assert tree.networks == sum(1 for _ in reader)
    assert sorted(tree.aliases) == [
        (int(ipaddress.IPv6Address("::ffff:0:0")), 96),
        (int(ipaddress.IPv6Address("2001::")), 32),
        (int(ipaddress.IPv6Address("2002::")), 16),
    ]


@pytest.mark.parametrize("name", _NO_COUNTRY_DBS)
def test_generic_test_databases_have_no_country_data(name: str, reader_of: Any) -> None:
    path = _TEST_DATA / name
    reader = reader_of(path)
    meta = reader.metadata()
    networks = sum(1 for _ in reader)
    tree = mmdb_tree.walk_tree(
        path, memoryview(path.read_bytes()), meta.node_count, meta.record_size, meta.ip_version
    )
    assert tree.networks == networks  # record sizes 24 and 32 decode right
    with pytest.raises(DataFormatError) as caught:
        read_source(path)
    assert str(caught.value) == (
        f"{path}: no country data: none of its {networks} networks has a country_code, "
        "country.iso_code or registered_country.iso_code"
    )


def test_networks_without_a_country_stay_unknown_and_are_counted() -> None:
    rows = read_source(_TEST_DATA / "GeoIP2-Country-Test.mmdb")
    assert rows.notes[mmdb.NOTE_NO_COUNTRY] == 3
    db = _database(rows)
    # 214.1.1.0/24 has only traits; 2a02:d500::/29 only a continent.
    assert db.lookup(["214.1.1.0", "214.1.1.255", "2a02:d500::1"]).countries() == [None] * 3


def test_city_subdivisions_become_country_dash_subdivision_labels() -> None:
    rows = read_source(_TEST_DATA / "GeoIP2-City-Test.mmdb")
    subdivided = [name for name in rows.label_names if "-" in name]
    assert len(subdivided) >= 5
    assert all(len(name.split("-")[0]) == 2 for name in subdivided)
    db = _database(rows)
    # 2.2.3.0/24 lies in ENG and WBK: the first (largest) subdivision labels it.
    assert db.lookup_one("2.2.3.0") == "GB"  # the country; the label keeps the subdivision
    assert _labels(db, ["2.2.3.0"]) == ["GB-ENG"]
    country_only = _database(read_source(_TEST_DATA / "GeoIP2-Country-Test.mmdb"))
    assert "-" not in "".join(country_only.label_names)


def test_ipv4_subtree_is_read_once(reader_of: Any) -> None:
    path = _TEST_DATA / "GeoIP2-Country-Test.mmdb"
    rows = read_source(path)
    v4_networks = {
        (int(n.network_address), int(n.broadcast_address))
        for n, record in reader_of(path)
        if n.version == 4 and _expected(record) is not None
    }
    starts, ends, _labels = rows.v4
    assert len(starts) == len(v4_networks) == len(set(zip(starts, ends, strict=True)))
    assert set(zip(starts, ends, strict=True)) == v4_networks


def test_aliased_ipv6_prefixes_answer_as_the_reader(reader_of: Any) -> None:
    path = _TEST_DATA / "GeoIP2-Country-Test.mmdb"
    rows = read_source(path)
    db = _database(rows)
    reader = reader_of(path)
    texts = []
    for network, _record in reader_of(path):
        if network.version != 4:
            continue
        for address in (int(network.network_address), int(network.broadcast_address)):
            hex_ = f"{address:08x}"
            texts += [
                f"::ffff:{ipaddress.IPv4Address(address)}",
                f"2002:{hex_[:4]}:{hex_[4:]}::",
                f"2002:{hex_[:4]}:{hex_[4:]}:ffff:ffff:ffff:ffff:ffff",
                f"2001:0:{hex_[:4]}:{hex_[4:]}::",
                f"2001:0:{hex_[:4]}:{hex_[4:]}:ffff:ffff:ffff:ffff",
            ]
    texts += ["2002::", "2002:ffff:ffff::", "2001::", "::ffff:0.0.0.0"]  # no IPv4 data there
    expected = [_expected(reader.get(text)) for text in texts]
    assert _labels(db, texts) == expected
    assert sum(e is not None for e in expected) > 100
    assert rows.notes[mmdb.NOTE_MIRRORED.format(prefix="2002::/16")] == len(rows.v4[0])
    assert rows.notes[mmdb.NOTE_MIRRORED.format(prefix="2001::/32")] == len(rows.v4[0])


def test_ipv4_compatible_addresses_are_not_mirrored(reader_of: Any) -> None:
    # ::/96 is where the tree stores IPv4 itself, not an alias: the reader answers
    # ::2.125.160.216 as 2.125.160.216, lookupd keeps IPv4 in the IPv4 table only (as
    # when the same data comes from a CSV).
    path = _TEST_DATA / "GeoIP2-Country-Test.mmdb"
    db = _database(read_source(path))
    assert _expected(reader_of(path).get("::2.125.160.216")) == "GB"
    assert db.lookup(["2.125.160.216", "::2.125.160.216"]).countries() == ["GB", None]


def test_progress_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(mmdb, "_PROGRESS_EVERY", 16)
    read_source(_TEST_DATA / "GeoIP2-Country-Test.mmdb", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (345, 345)
    assert [d for d, _ in calls[:-1]] == list(range(16, 345, 16))
    assert {t for _, t in calls[:-1]} == {345}


def test_compressed_databases_read_the_same(tmp_path: Path) -> None:
    path = _TEST_DATA / "GeoLite2-City-Test.mmdb"
    plain = read_source(path)
    for suffix, compress in ((".gz", gzip.compress), (".xz", lzma.compress)):
        packed = tmp_path / f"{path.name}{suffix}"
        packed.write_bytes(compress(path.read_bytes()))
        assert detect_format(packed) == "mmdb"
        again = read_source(packed)
        assert (again.v4, again.v6, again.label_names) == (plain.v4, plain.v6, plain.label_names)


def test_a_compression_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _TEST_DATA / "GeoLite2-City-Test.mmdb"
    size = path.stat().st_size
    packed = tmp_path / f"{path.name}.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    monkeypatch.setattr(mmdb, "MAX_DECOMPRESSED_BYTES", size - 1)
    with pytest.raises(DataFormatError, match=r"decompresses to more than .* GiB, the limit"):
        read_source(packed)
    monkeypatch.setattr(mmdb, "MAX_DECOMPRESSED_BYTES", size)
    assert len(read_source(packed)) > 0


def test_no_temporary_directory_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packed = tmp_path / "GeoLite2-City-Test.mmdb.gz"
    packed.write_bytes(gzip.compress((_TEST_DATA / "GeoLite2-City-Test.mmdb").read_bytes()))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with pytest.raises(DataFormatError, match="no temporary directory to decompress it into"):
        read_source(packed)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    for name in ("Country.mmdb", "Country.mmdb.gz"):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        with pytest.raises(DataFormatError, match="is a FIFO, not a regular file"):
            mmdb.read(fifo, RangeRows())


# --- crafted databases --------------------------------------------------------------------


def test_registered_country_fallback_is_used_and_counted(tmp_path: Path, reader_of: Any) -> None:
    path = _write_mmdb(
        tmp_path / "fallback.mmdb",
        [
            (
                "1.0.0.0/24",
                {"country": {"iso_code": "AU"}, "registered_country": {"iso_code": "US"}},
            ),
            ("1.0.1.0/24", {"registered_country": {"iso_code": "JP"}, "traits": {"x": "1"}}),
            ("1.0.2.0/23", {"registered_country": {"iso_code": "JP"}}),
            ("1.0.4.0/22", {"continent": {"code": "EU"}}),
            ("2001:db8::/32", {"registered_country": {"iso_code": "DE"}}),
        ],
    )
    rows = read_source(path)
    assert rows.notes[mmdb.NOTE_REGISTERED_COUNTRY] == 3
    assert rows.notes[mmdb.NOTE_NO_COUNTRY] == 1
    db = _database(rows)
    texts = ["1.0.0.1", "1.0.1.1", "1.0.3.255", "1.0.4.1", "2001:db8::1"]
    assert db.lookup(texts).countries() == ["AU", "JP", "JP", None, "DE"]
    assert [_expected(reader_of(path).get(t)) for t in texts] == ["AU", "JP", "JP", None, "DE"]


def test_flat_and_subdivision_records(tmp_path: Path) -> None:
    path = _write_mmdb(
        tmp_path / "flat.mmdb",
        [
            ("10.0.0.0/8", {"country_code": "US"}),
            ("11.0.0.0/8", {"country": {"iso_code": "UA"}, "subdivisions": [{"iso_code": "43"}]}),
            ("12.0.0.0/8", {"country": {"iso_code": "FR"}, "subdivisions": [{"names": {}}]}),
            ("13.0.0.0/8", {"country_code": ""}),
        ],
        ip_version=4,
    )
    rows = read_source(path)
    db = _database(rows)
    texts = ["10.1.2.3", "11.255.255.255", "12.0.0.0", "13.0.0.1", "::ffff:10.0.0.1"]
    assert _labels(db, texts) == ["US", "UA-43", "FR", None, "US"]
    assert db.lookup(texts).countries() == ["US", "UA", "FR", None, "US"]
    assert db.lookup(texts).subdivisions() == [None, "UA-43", None, None, None]
    assert rows.notes[mmdb.NOTE_NO_COUNTRY] == 1


def test_ipv4_mapped_data_stored_as_ipv6_goes_to_the_ipv4_table(tmp_path: Path) -> None:
    # No aliases here: the tree has its own networks in ::ffff:0:0/96.
    path = _write_mmdb(
        tmp_path / "mapped.mmdb",
        [
            ("::ffff:5.6.7.0/120", {"country_code": "NL"}),
            ("2001:db8::/32", {"country_code": "DE"}),
        ],
    )
    rows = read_source(path)
    assert rows.notes[mmdb.NOTE_MAPPED] == 1
    assert rows.v4[:2] == ([0x05060700], [0x050607FF])
    db = _database(rows)
    assert db.lookup(["5.6.7.8", "::ffff:5.6.7.255", "5.6.8.0"]).countries() == ["NL", "NL", None]


def test_aliases_in_a_written_database(tmp_path: Path, reader_of: Any) -> None:
    path = _write_mmdb(
        tmp_path / "aliased.mmdb",
        [("1.2.3.0/24", {"country_code": "SE"}), ("2a00::/12", {"country_code": "GB"})],
        aliases=("::ffff:0:0/96", "2002::/16"),
    )
    rows = read_source(path)
    assert len(rows.v4[0]) == 1  # aliases not read again
    assert len(rows.v6[0]) == 2  # 2a00::/12, and 1.2.3.0/24 mirrored into 2002::/16
    db = _database(rows)
    texts = [
        "1.2.3.4",
        "::ffff:1.2.3.4",
        "2002:0102:0304::",
        "2002:0102:03ff::1",
        "2002:0102:0404::",
    ]
    expected = [_expected(reader_of(path).get(t)) for t in texts]
    assert expected == ["SE", "SE", "SE", "SE", None]
    assert _labels(db, texts) == expected


def test_empty_and_foreign_files_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mmdb"
    empty.write_bytes(b"")
    with pytest.raises(DataFormatError, match=f"^{empty}: empty file$"):
        read_source(empty)
    foreign = tmp_path / "really-a-csv.mmdb"
    foreign.write_text("1.0.0.0,1.0.0.255,AU\n")
    with pytest.raises(DataFormatError, match=f"^{foreign}: not a MaxMind DB file"):
        read_source(foreign)
    truncated = tmp_path / "truncated.mmdb.xz"
    truncated.write_bytes(
        lzma.compress((_TEST_DATA / "GeoIP2-Country-Test.mmdb").read_bytes())[:500]
    )
    with pytest.raises(DataFormatError, match=f"^{truncated}: cannot decompress: "):
        read_source(truncated)
    with pytest.raises(DataFormatError, match="no such file"):
        read_source(tmp_path / "missing.mmdb")


# --- corrupt files, read in a child process -------------------------------------------------

_CHILD = """
import json, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))  # 2 GiB: no unbounded memory
from lookupd.errors import DataFormatError
from lookupd.datafiles.formats.mmdb import read
from lookupd.datafiles.rows import RangeRows
for name in sys.argv[1:]:
    try:
        result = {"rows": len(read(Path(name), RangeRows()))}
    except DataFormatError as exc:
        result = {"error": str(exc)}
    except BaseException as exc:
        result = {"crash": repr(exc)}
    print(json.dumps({"path": name, **result}), flush=True)
"""
_CHILD_TIMEOUT_S = 30


def _crafted_trees(directory: Path) -> dict[str, tuple[Path, str]]:
    """Search trees that maxminddb iterates forever, or that crash its C extension.

    Checked by hand without lookupd's tree check (maxminddb 3.2, C extension): the shared
    subtrees run for ever (2**38 paths, no data), the self-loop aborts the interpreter
    ("malloc(): invalid next size", its address buffer overrun past 128 levels), the deep
    chains and the loop end in errors of maxminddb or ipaddress.
    """
    twice = "search tree reaches a node twice (a cycle or a shared subtree)"
    empty = 40  # node_count of the 40-node trees: an empty record
    shared: list[tuple[int | None, int | None]] = [(1, None)]
    shared += [(i + 1, i + 1) for i in range(1, 39)] + [(empty, empty)]
    self_loop = [(i + 1, i + 1) for i in range(39)] + [(39, 39)]
    # 130 levels of search nodes, each with an empty right record (130 = node_count).
    deep: list[tuple[int | None, int | None]] = [(i + 1, 130) for i in range(129)]
    deep.append((None, None))
    loop = [(1, None), (0, None)]  # node 1 points back at node 0
    # In the order the child reads them: the one that would hang last.
    trees: dict[str, tuple[Sequence[tuple[int | None, int | None]], int, str]] = {
        "self-loop.mmdb": (self_loop, 4, twice),
        "too-deep.mmdb": (deep, 6, "search tree deeper than 128 bits"),
        "too-deep-ipv4.mmdb": (deep, 4, "search tree deeper than 32 bits"),
        "loop.mmdb": (loop, 6, twice),
        "shared-subtrees.mmdb": (shared, 6, twice),
    }
    crafted = {
        name: (_write_raw_tree(directory / name, nodes, ip_version), problem)
        for name, (nodes, ip_version, problem) in trees.items()
    }
    # Records whose map key is not a string: the C extension reads any key as a string
    # (the map key crashed it with SIGSEGV, found by fuzz/fuzz_formats.py).
    not_a_string = "a map key in its data is not a string"
    one_map = _control(7, 1)
    records = {
        "number-key.mmdb": _encode({_uint32(5): "US"}),
        "map-key.mmdb": one_map + _encode({"country_code": "US"}) + _encode("US"),
        "array-key.mmdb": one_map + _encode(["country_code"]) + _encode("US"),
        "nested-number-key.mmdb": _encode({"country": {_uint16(7): "US"}}),
    }
    for name, record in records.items():
        path = _write_raw_tree(directory / name, [(None, None)], 6, record)
        crafted[name] = (path, not_a_string)
    # A record value between the node count and the data section: the 16-byte separator.
    separator = _write_raw_tree(directory / "separator-record.mmdb", [(2, None)], 6)
    problem = "a search tree record points into the separator before the data section"
    crafted["separator-record.mmdb"] = (separator, problem)
    # Data for ::/64 in an IPv6 tree: maxminddb's iteration named it IPv4 /-32 and failed.
    wide = _write_mmdb(directory / "wider-than-ipv4.mmdb", [("::/64", {"country_code": "US"})])
    problem = "data for ::/64, a network holding all of ::/96 (the IPv4 subtree)"
    crafted["wider-than-ipv4.mmdb"] = (wide, problem)
    return crafted


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    return _crafted_trees(tmp_path_factory.mktemp("crafted"))


@pytest.fixture(scope="module")
def child_results(crafted: dict[str, tuple[Path, str]]) -> dict[str, dict[str, Any]]:
    """Read every corrupt file in one child process; a crash there ends its output early."""
    paths = [*_BAD_FILES, *(_TEST_DATA / n for n in _BROKEN_DBS), *(p for p, _ in crafted.values())]
    env = dict(os.environ, PYTHONPATH=str(Path(lookupd.__file__).parent.parent))
    env["OPENBLAS_NUM_THREADS"] = "1"  # its per-thread buffers count against the memory cap
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, *map(str, paths)],
            capture_output=True,
            text=True,
            timeout=_CHILD_TIMEOUT_S,
            env=env,
            check=False,
        )
        stdout, end = done.stdout, f"exit status {done.returncode}: {done.stderr[-2000:]}"
    except subprocess.TimeoutExpired as exc:  # the first file without a result hung
        stdout = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        end = f"killed after {_CHILD_TIMEOUT_S} s"
    results = {}
    for line in stdout.splitlines():
        result = json.loads(line)
        results[result.pop("path")] = result
    for path in paths:
        results.setdefault(str(path), {"crash": f"no result (this file or an earlier one): {end}"})
    return results


def _assert_one_line_error(result: dict[str, Any], path: Path) -> str:
    assert "error" in result, result
    message: str = result["error"]
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    problem = message.removeprefix(f"{path}: ")
    assert problem.startswith(_ERROR_KINDS), message
    assert len(problem.split(": ", 1)[1]) > 10, message  # it names the problem
    return problem


@pytest.mark.parametrize("path", _BAD_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_bad_data_gives_a_one_line_error(
    path: Path, child_results: dict[str, dict[str, Any]]
) -> None:
    problem = _assert_one_line_error(child_results[str(path)], path)
    if path.name in _READABLE_BAD_FILES:
        assert problem.startswith("no country data: none of its 2 networks")
    else:
        assert not problem.startswith("no country data")


def test_broken_test_databases_are_refused(child_results: dict[str, dict[str, Any]]) -> None:
    # A double of the wrong size inside a City record: refused while iterating.
    broken = _TEST_DATA / "GeoIP2-City-Test-Broken-Double-Format.mmdb"
    problem = _assert_one_line_error(child_results[str(broken)], broken)
    assert problem.startswith("corrupt MaxMind DB file: ")
    assert "data section contains bad data" in problem
    # node_count larger than the file can hold: refused on opening.
    invalid = _TEST_DATA / "GeoIP2-City-Test-Invalid-Node-Count.mmdb"
    problem = _assert_one_line_error(child_results[str(invalid)], invalid)
    assert problem.startswith("not a valid MaxMind DB file: ")
    assert "search tree extends past the end of the file" in problem


@pytest.mark.parametrize(
    "name",
    [
        "shared-subtrees.mmdb",
        "self-loop.mmdb",
        "too-deep.mmdb",
        "too-deep-ipv4.mmdb",
        "loop.mmdb",
        "number-key.mmdb",
        "map-key.mmdb",
        "array-key.mmdb",
        "nested-number-key.mmdb",
        "separator-record.mmdb",
        "wider-than-ipv4.mmdb",
    ],
)
def test_unsafe_trees_and_records_are_refused_before_iterating(
    name: str,
    crafted: dict[str, tuple[Path, str]],
    child_results: dict[str, dict[str, Any]],
) -> None:
    path, problem = crafted[name]
    result = child_results[str(path)]
    assert result == {"error": f"{path}: corrupt MaxMind DB file: {problem}"}


def test_the_pure_twin_refuses_them_as_the_default_core_does(
    crafted: dict[str, tuple[Path, str]],
    child_results: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The child read them with the selected core (compiled where built); the pure twin,
    # which cannot crash, runs here and must give the same one-line errors.
    monkeypatch.setattr(_mmdb, "walk_tree", _mmdb_py.walk_tree)
    monkeypatch.setattr(_mmdb, "find_labels", _mmdb_py.find_labels)
    paths = [*_BAD_FILES, *(_TEST_DATA / n for n in _BROKEN_DBS), *(p for p, _ in crafted.values())]
    for path in paths:
        with pytest.raises(DataFormatError) as caught:
            mmdb.read(path, RangeRows())
        assert child_results[str(path)] == {"error": str(caught.value)}, path


# --- the real data: the .mmdb builds what its CSVs build -----------------------------------

# The two same-start row pairs listed narrow-first (README, tests/test_real_data.py): the
# .mmdb's writer let the later, wider row win there, the overlap rule the narrower one.
_NARROW_FIRST_V4 = [
    (int(ipaddress.IPv4Address("209.170.81.32")), int(ipaddress.IPv4Address("209.170.81.63"))),
    (int(ipaddress.IPv4Address("210.57.31.0")), int(ipaddress.IPv4Address("210.57.31.255"))),
]


def _differences(
    a: RangeTable, a_names: list[str], b: RangeTable, b_names: list[str]
) -> list[tuple[int, int, str, str]]:
    """Every maximal IPv4 range where the two tables' label names differ."""
    starts = np.union1d(a.starts, b.starts)
    last = np.append(starts[1:].astype(np.int64) - 1, 0xFFFF_FFFF)
    names_a = np.asarray(a_names, dtype=object)[
        a.labels[np.searchsorted(a.starts, starts, side="right") - 1]
    ]
    names_b = np.asarray(b_names, dtype=object)[
        b.labels[np.searchsorted(b.starts, starts, side="right") - 1]
    ]
    differ = np.flatnonzero(names_a != names_b)
    return [(int(starts[i]), int(last[i]), names_a[i], names_b[i]) for i in differ]


@pytest.mark.slow
def test_real_mmdb_builds_the_tables_its_csvs_build() -> None:
    from_mmdb = read_source(_REAL / "geo-whois-asn-country.mmdb.xz")
    from_csv = read_source(_REAL / "geo-whois-asn-country-ipv4.csv.xz")
    read_source(_REAL / "geo-whois-asn-country-ipv6.csv.xz", from_csv)
    assert not from_mmdb.notes  # flat country_code records; no aliases, no gaps in labels
    mmdb_v4, mmdb_v6 = from_mmdb.tables()
    csv_v4, csv_v6 = from_csv.tables()
    assert sorted(from_mmdb.label_names) == sorted(from_csv.label_names)

    # IPv6: identical segments and labels.
    np.testing.assert_array_equal(mmdb_v6.starts, csv_v6.starts)
    mmdb_names = np.asarray(from_mmdb.label_names, dtype=object)
    csv_names = np.asarray(from_csv.label_names, dtype=object)
    assert (mmdb_names[mmdb_v6.labels] == csv_names[csv_v6.labels]).all()

    # IPv4: identical except exactly inside the two narrow-first ranges.
    differences = _differences(mmdb_v4, from_mmdb.label_names, csv_v4, from_csv.label_names)
    assert differences == [
        (209 << 24 | 170 << 16 | 81 << 8 | 32, 209 << 24 | 170 << 16 | 81 << 8 | 63, "US", "MX"),
        (210 << 24 | 57 << 16 | 31 << 8 | 0, 210 << 24 | 57 << 16 | 31 << 8 | 255, "VN", "TW"),
    ]
    assert [(s, e) for s, e, _, _ in differences] == _NARROW_FIRST_V4
