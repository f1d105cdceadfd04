"""`lookupd export mmdb`: the reference reader (maxminddb) on the exported file answers as
`lookupd lookup` does, on every segment boundary and a million random addresses."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import maxminddb
import numpy as np
import pytest
from exported import COUNTRY_TEST, SLICE_DATE, Exported, make_exported

from lookupd.cli import main
from lookupd.codes import Status
from lookupd.core.constants import IPV4_MAPPED_PREFIX, IPV4_MAX, IPV6_MAX
from lookupd.core.database import Database
from lookupd.core.labels import split_label
from lookupd.datafiles.data_version import data_version_of
from lookupd.datafiles.mmdb_export import CITY_TYPE, COUNTRY_TYPE, export_mmdb
from lookupd.datafiles.open import open_database, open_sources
from lookupd.errors import LookupdError

RANDOM = 1_000_000


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return make_exported(tmp_path_factory.mktemp("export"))


def _expected(db: Database, labels: np.ndarray, status: np.ndarray) -> list[Any]:
    """What a MaxMind reader should find for each answer: None, or the GeoIP2 record."""
    records: list[Any] = [None]
    for name in db.label_names[1:]:
        country, subdivision = split_label(name)
        record: dict[str, Any] = {"country": {"iso_code": country}}
        if subdivision is not None:
            record["subdivisions"] = [{"iso_code": subdivision.partition("-")[2]}]
        records.append(record)
    return [
        records[label] if code == Status.OK else None
        for label, code in zip(labels, status, strict=True)
    ]


def _check(db: Database, reader: Any, texts: list[str]) -> None:
    result = db.lookup(texts)
    expected = _expected(db, result.labels.tolist(), result.status.tolist())
    found = [reader.get(text) for text in texts]
    wrong = [(t, f, e) for t, f, e in zip(texts, found, expected, strict=True) if f != e]
    assert not wrong, f"{len(wrong)} of {len(texts)} differ, e.g. {wrong[:5]}"


def _in_ipv4_space(key: int) -> bool:
    # ::/96 and ::ffff:0:0/96 hold IPv4 in the file (see lookupd.datafiles.mmdb_export).
    return key <= IPV4_MAX or IPV4_MAPPED_PREFIX <= key <= IPV4_MAPPED_PREFIX | IPV4_MAX


def _boundaries(db: Database) -> Iterator[str]:
    for key in db.v4.starts.tolist():
        for near in (key - 1, key, key + 1):
            if 0 <= near <= IPV4_MAX:
                yield str(ipaddress.IPv4Address(near))
    for high, low in db.v6.starts.tolist():
        key = (int(high) << 64) | int(low)
        for near in (key - 1, key, key + 1):
            if 0 <= near <= IPV6_MAX and not _in_ipv4_space(near):
                yield str(ipaddress.IPv6Address(near))


def test_every_segment_boundary_answers_as_lookupd(exported: Exported) -> None:
    texts = list(_boundaries(exported.db))
    assert len(texts) > 300_000
    with maxminddb.open_database(str(exported.mmdb)) as reader:
        _check(exported.db, reader, texts)


def _random_addresses(db: Database, seed: int) -> list[str]:
    """About a million addresses: half drawn inside the data's segments (a segment, then an
    address in it), half uniform over each family (mostly unknown space in IPv6)."""
    rng = np.random.default_rng(seed)
    quarter = RANDOM // 4
    v4 = rng.integers(0, IPV4_MAX + 1, size=quarter, dtype=np.uint64).tolist()
    starts = db.v4.starts.astype(np.uint64)
    pick = rng.integers(0, len(starts) - 1, size=quarter)
    widths = starts[pick + 1] - starts[pick]
    v4 += (starts[pick] + (rng.random(quarter) * widths).astype(np.uint64)).tolist()
    texts = [str(ipaddress.IPv4Address(int(key))) for key in v4]
    highs = db.v6.starts[:, 0]
    pick6 = rng.integers(0, len(highs), size=quarter)
    v6 = [(int(highs[i]) << 64) | int(rng.integers(0, 1 << 63)) for i in pick6.tolist()]
    v6 += [int.from_bytes(rng.bytes(16), "big") for _ in range(quarter)]
    texts += [str(ipaddress.IPv6Address(key)) for key in v6 if not _in_ipv4_space(key)]
    return texts


def test_a_million_random_addresses_answer_as_lookupd(exported: Exported) -> None:
    texts = _random_addresses(exported.db, 15)
    assert len(texts) >= RANDOM - 10
    with maxminddb.open_database(str(exported.mmdb)) as reader:
        _check(exported.db, reader, texts)


def test_edge_addresses(exported: Exported) -> None:
    """Reserved and unknown addresses have no record; IPv4-mapped addresses answer as
    IPv4; IPv4-compatible ones answer as IPv4 too (the MaxMind convention, where lookupd
    answers from IPv6 data); 6to4 and Teredo are not aliased to IPv4."""
    db = exported.db
    texts = ["0.0.0.0", "255.255.255.255", "10.1.2.3", "127.0.0.1", "::", "::1", "fe80::1"]
    texts += ["81.2.69.160", "::ffff:81.2.69.160", "2002:5102:45a0::1", "2001:0:5102:45a0::1"]
    with maxminddb.open_database(str(exported.mmdb)) as reader:
        _check(db, reader, texts)
        assert reader.get("81.2.69.160") == {
            "country": {"iso_code": "GB"},
            "subdivisions": [{"iso_code": "ENG"}],
        }
        assert reader.get("::81.2.69.160") == reader.get("81.2.69.160")
    assert db.lookup_one("::81.2.69.160") is None


def test_metadata_names_the_data(exported: Exported) -> None:
    version = data_version_of(exported.db)
    with maxminddb.open_database(str(exported.mmdb)) as reader:
        meta = reader.metadata()
    assert meta.database_type == CITY_TYPE
    assert meta.ip_version == 6
    assert meta.binary_format_major_version == 2
    when = datetime.datetime.fromtimestamp(meta.build_epoch, datetime.timezone.utc)
    assert when.date().isoformat() == SLICE_DATE == version.data_date
    assert version.id in meta.description["en"]
    assert "lookupd" in meta.description["en"]


def test_country_level_data_writes_the_country_schema(tmp_path: Path) -> None:
    """A merge with a corrections CSV over MaxMind's Country test file: country records
    only, the corrections included."""
    corrections = tmp_path / "corrections.csv"
    corrections.write_text("81.2.69.0,81.2.69.255,FR\n2001:db8:aa::,2001:db8:aa::ffff,DE\n")
    db = open_sources([COUNTRY_TEST, corrections])
    out = tmp_path / "country.mmdb"
    written = export_mmdb(out, db)
    assert written.database_type == COUNTRY_TYPE
    assert written.shadowed == 0
    with maxminddb.open_database(str(out)) as reader:
        assert reader.metadata().database_type == COUNTRY_TYPE
        assert reader.get("81.2.69.1") == {"country": {"iso_code": "FR"}}
        # Documentation space: reserved, so no record, whatever the correction says.
        assert reader.get("2001:db8:aa::1") is None
        _check(db, reader, [*_boundaries(db)])


def test_written_atomically_and_failures_keep_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = open_database(COUNTRY_TEST)
    out = tmp_path / "data.mmdb"
    export_mmdb(out, db)
    first = out.read_bytes()
    export_mmdb(out, db)
    assert out.read_bytes() == first  # same data, same bytes (the epoch is the data's)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data.mmdb"]

    def fail_halfway(self: Any, name: str) -> None:
        Path(name).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("lookupd.datafiles.mmdb_export.TreeWriter.write", fail_halfway)
    with pytest.raises(LookupdError, match=r"data.mmdb: cannot write the MaxMind DB file"):
        export_mmdb(out, db)
    assert out.read_bytes() == first
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data.mmdb"]
    with pytest.raises(LookupdError, match="cannot write"):
        export_mmdb(out / "below-a-file.mmdb", db)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.mmdb"
    assert main(["export", "mmdb", str(COUNTRY_TEST), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    assert "GeoIP2-Country" in printed
    assert "data version id: " in printed
    assert "build epoch: " in printed
    assert main(["export", "mmdb", str(COUNTRY_TEST), "--database-type", "Test-Country",
                 "-o", str(out), "-q"]) == 0  # fmt: skip
    with maxminddb.open_database(str(out)) as reader:
        assert reader.metadata().database_type == "Test-Country"
    status = main(["export", "mmdb", "a", "b", "--format", "mmdb", "--format", "mmdb",
                   "--format", "mmdb", "-o", str(out)])  # fmt: skip
    assert status == 2
    assert main(["export", "mmdb", str(tmp_path / "missing"), "-o", str(out)]) == 2


@pytest.mark.skipif(
    os.environ.get("LOOKUPD_EXPORT_EMBEDDED") != "1",
    reason="the embedded data's export takes about a minute: make export-check runs it",
)
def test_embedded_data_in_a_subprocess(tmp_path: Path) -> None:
    """`lookupd export mmdb -o FILE` on the embedded data, as the README shows it, checked
    on every segment boundary and a million random addresses."""
    out = tmp_path / "embedded.mmdb"
    done = subprocess.run(
        [sys.executable, "-m", "lookupd", "export", "mmdb", "-o", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    db = open_database()
    texts = _random_addresses(db, 4)
    with maxminddb.open_database(str(out)) as reader:
        assert reader.metadata().database_type == COUNTRY_TYPE
        _check(db, reader, list(_boundaries(db)))
        _check(db, reader, texts)
