"""The data's date is its sources' own date, not the build's; the data age counts from it."""

from __future__ import annotations

import datetime
import gzip
import os
import shutil
import urllib.request
from pathlib import Path

import maxminddb
import pytest
from prometheus_client.parser import text_string_to_metric_families
from served import start_serve

from lookupd.client import Client
from lookupd.datafiles.data_version import data_date_of, data_version_of
from lookupd.datafiles.merge import merge_sources
from lookupd.datafiles.open import open_database
from lookupd.datafiles.snapshot import load_snapshot, write_snapshot
from lookupd.datafiles.source_date import (
    FROM_LAST_MODIFIED,
    FROM_MMDB,
    FROM_MTIME,
    FROM_NAME,
    FROM_NPZ,
    source_date,
)
from lookupd.datafiles.sources import SourceDate, oldest, parse_date

_DATA = Path(__file__).parent / "data"
_CITY = _DATA / "maxmind-test" / "test-data" / "GeoIP2-City-Test.mmdb"
_COUNTRY = _DATA / "maxmind-test" / "test-data" / "GeoIP2-Country-Test.mmdb"
_CSV_V4 = _DATA / "geo-whois-asn-country" / "geo-whois-asn-country-ipv4.csv.xz"
_TIMEOUT_S = 30.0
_LONG_AGO = datetime.datetime(2019, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc).timestamp()


def _build_epoch(path: Path) -> str:
    with maxminddb.open_database(str(path)) as reader:
        epoch = reader.metadata().build_epoch
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat()


def _corrections(path: Path, when: float) -> Path:
    path.write_text("1.0.0.0,1.0.0.255,AU\n")
    os.utime(path, (when, when))
    return path


def test_a_maxmind_db_is_dated_by_its_build_epoch(tmp_path: Path) -> None:
    assert source_date(_CITY) == SourceDate(_build_epoch(_CITY), FROM_MMDB)
    # Compressed too (read through to its metadata), whatever the file's own time.
    packed = tmp_path / "City.mmdb.gz"
    packed.write_bytes(gzip.compress(_CITY.read_bytes()))
    assert source_date(packed) == SourceDate(_build_epoch(_CITY), FROM_MMDB)


def test_a_release_is_dated_by_its_name(tmp_path: Path) -> None:
    folder = tmp_path / "GeoLite2-Country-CSV_20261201"
    folder.mkdir()
    blocks = folder / "GeoLite2-Country-Blocks-IPv4.csv"
    blocks.write_text("network,geoname_id\n")
    assert source_date(folder) == SourceDate("2026-12-01", FROM_NAME)
    assert source_date(blocks) == SourceDate("2026-12-01", FROM_NAME)
    dbip = tmp_path / "dbip-country-lite-2026-11.csv.gz"
    dbip.write_bytes(b"")
    assert source_date(dbip) == SourceDate("2026-11-01", FROM_NAME)
    # Not a date: February 30th is no release.
    odd = tmp_path / "GeoLite2-City_20260230.mmdb"
    odd.write_bytes(b"not a database")
    os.utime(odd, (_LONG_AGO, _LONG_AGO))
    assert source_date(odd) == SourceDate("2019-03-04T05:06:07+00:00", FROM_MTIME)


def test_other_files_are_dated_by_their_modification_time(tmp_path: Path) -> None:
    path = _corrections(tmp_path / "fixes.csv", _LONG_AGO)
    assert source_date(path) == SourceDate("2019-03-04T05:06:07+00:00", FROM_MTIME)
    # A directory: its newest file.
    folder = tmp_path / "csvs"
    folder.mkdir()
    _corrections(folder / "a.csv", _LONG_AGO)
    _corrections(folder / "b.csv", _LONG_AGO + 86400)
    assert source_date(folder).date == "2019-03-05T05:06:07+00:00"


def test_the_embedded_data_is_dated_by_its_release() -> None:
    version = data_version_of(open_database())
    assert (version.data_date, version.data_date_from) == ("2026-06-17", FROM_NPZ)


def test_the_oldest_source_dates_a_build(tmp_path: Path) -> None:
    fixes = _corrections(tmp_path / "fixes.csv", _LONG_AGO)
    merged = merge_sources([_COUNTRY, fixes])
    assert [source.data_date for source in merged.sources] == [
        SourceDate(_build_epoch(_COUNTRY), FROM_MMDB),
        SourceDate("2019-03-04T05:06:07+00:00", FROM_MTIME),
    ]
    assert merged.data_date == SourceDate("2019-03-04T05:06:07+00:00", FROM_MTIME)
    built = datetime.datetime(2026, 12, 4, tzinfo=datetime.timezone.utc)
    header = write_snapshot(
        tmp_path / "s.lkd", merged.tables, sources=merged.sources, created=built
    )
    assert (header["data_date"], header["data_date_from"]) == (
        "2019-03-04T05:06:07+00:00",
        FROM_MTIME,
    )
    version = data_version_of(open_database(tmp_path / "s.lkd"))
    assert version.built_at == "2026-12-04T00:00:00+00:00"
    assert version.data_date == "2019-03-04T05:06:07+00:00"


def test_a_date_the_caller_knows_comes_before_the_mtime(tmp_path: Path) -> None:
    # lookupd update passes the download's Last-Modified: it dates a file that records no
    # date of its own, and a MaxMind DB keeps its build_epoch.
    modified = SourceDate("2026-11-28T09:00:00+00:00", FROM_LAST_MODIFIED)
    fixes = _corrections(tmp_path / "fixes.csv", _LONG_AGO)
    merged = merge_sources([_COUNTRY, fixes], dates=[modified, modified])
    assert [source.data_date for source in merged.sources] == [
        SourceDate(_build_epoch(_COUNTRY), FROM_MMDB),
        modified,
    ]
    with pytest.raises(ValueError, match="2 dates for 1 sources"):
        merge_sources([_COUNTRY], dates=[modified, modified])


def test_a_snapshot_used_as_a_source_keeps_its_data_date(tmp_path: Path) -> None:
    first = merge_sources([_CITY])
    write_snapshot(tmp_path / "city.lkd", first.tables, sources=first.sources)
    fixes = _corrections(tmp_path / "fixes.csv", parse_date("2030-01-01") or 0.0)
    again = merge_sources([tmp_path / "city.lkd", fixes])
    assert again.sources[0].data_date == SourceDate(_build_epoch(_CITY), FROM_MMDB)
    assert again.data_date == SourceDate(_build_epoch(_CITY), FROM_MMDB)


def test_a_snapshot_without_a_data_date_is_dated_by_its_build(tmp_path: Path) -> None:
    # Written with no sources (as by an older lookupd, which recorded none).
    merged = merge_sources([_CITY])
    write_snapshot(tmp_path / "bare.lkd", merged.tables)
    snapshot = load_snapshot(tmp_path / "bare.lkd")
    assert snapshot.header["data_date"] == ""
    assert snapshot.data_date == SourceDate(snapshot.header["created"], "snapshot build time")


def test_dates_compare_as_times_not_text() -> None:
    dates = [
        SourceDate("2026-06-17", "a"),
        SourceDate("2026-06-16T23:00:00-02:00", "b"),  # 2026-06-17T01:00Z: later
        SourceDate("", ""),
        SourceDate("garbage", "c"),
    ]
    assert oldest(dates) == SourceDate("2026-06-17", "a")
    assert oldest([SourceDate("", "")]) == SourceDate("", "")
    assert data_date_of({}) == SourceDate("", "")


def test_info_metrics_and_getinfo_show_the_data_date_and_the_build(tmp_path: Path) -> None:
    data = tmp_path / "city.lkd"
    merged = merge_sources([_CITY])
    # A fixed build time, long after the vendor's build: which one the age counts from shows.
    built_on = datetime.datetime(2026, 11, 30, tzinfo=datetime.timezone.utc)
    write_snapshot(data, merged.tables, sources=merged.sources, created=built_on)
    epoch = _build_epoch(_CITY)
    server = start_serve(
        tmp_path, "--workers", "1", "--db", str(data), "--metrics-port", "0", "--log-format", "json"
    )
    try:
        with Client(server.target, timeout_s=_TIMEOUT_S) as client:
            client.wait_until_serving(_TIMEOUT_S)
            info = client.info()
        assert (info.data_date, info.data_date_from) == (epoch, FROM_MMDB)
        assert info.data_version.built_at == load_snapshot(data).header["created"]
        assert [(s.date, s.date_from) for s in info.sources] == [(epoch, FROM_MMDB)]
        (load,) = server.events("load")
        assert (load["data_date"], load["data_date_from"]) == (epoch, FROM_MMDB)
        (start,) = server.events("start")
        url = f"http://{start['metrics'].replace('[::]', '127.0.0.1')}/metrics"
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            text = response.read().decode()
    finally:
        assert server.stop() == 0
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    dated = parse_date(epoch)
    built = parse_date(info.data_version.built_at)
    assert dated is not None
    assert built is not None
    assert samples["lookupd_data_date_timestamp_seconds"] == dated
    assert samples["lookupd_data_build_timestamp_seconds"] == built == built_on.timestamp()
    # The age is there; that it counts from the date, not the build, is shown against a
    # fixed clock (test_the_loader_gives_the_metrics_the_data_date).
    assert "lookupd_data_age_seconds" in samples


def test_the_loader_gives_the_metrics_the_data_date(tmp_path: Path) -> None:
    """The server's loader records the data's date, so the age counts from it, not from the
    build (299 days later here): exact, against a fixed clock."""
    from lookupd.server.metrics import Metrics
    from lookupd.server.reload import Loader

    data = tmp_path / "city.lkd"
    merged = merge_sources([_CITY])
    built_on = datetime.datetime(2026, 11, 30, tzinfo=datetime.timezone.utc)
    write_snapshot(data, merged.tables, sources=merged.sources, created=built_on)
    dated = parse_date(_build_epoch(_CITY))
    assert dated is not None
    assert built_on.timestamp() - dated > 8 * 86400
    now = built_on.timestamp() + 3600.0
    metrics = Metrics(clock=lambda: now)
    Loader(data, None, publish=lambda answerer: None, metrics=metrics).load()

    def sample(name: str) -> float | None:
        return metrics.registry.get_sample_value(name)

    assert sample("lookupd_data_date_timestamp_seconds") == dated
    assert sample("lookupd_data_build_timestamp_seconds") == built_on.timestamp()
    assert sample("lookupd_data_loaded_timestamp_seconds") == now
    assert sample("lookupd_data_age_seconds") == now - dated


def test_info_shows_the_data_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lookupd.cli import main

    copy = tmp_path / "Country.mmdb"
    shutil.copyfile(_COUNTRY, copy)
    assert main(["info", str(copy)]) == 0
    out = capsys.readouterr().out
    assert f"data date: {_build_epoch(_COUNTRY)} (from {FROM_MMDB})\n" in out
    assert main(["build", str(_CSV_V4), str(copy), "-o", str(tmp_path / "s.lkd")]) == 0
    out = capsys.readouterr().out
    oldest_date = oldest([source_date(_CSV_V4), source_date(copy)])
    assert f"data date: {oldest_date.date} (from {oldest_date.origin})\n" in out


def test_every_worker_reports_the_age_of_the_data_date(tmp_path: Path) -> None:
    # Multiprocess metrics (--workers 2): the age is a collector in each worker, the date a
    # gauge merged over the workers' files; every scrape must show both.
    data = tmp_path / "city.lkd"
    merged = merge_sources([_CITY])
    write_snapshot(data, merged.tables, sources=merged.sources)
    args = ("--workers", "2", "--db", str(data), "--metrics-port", "0", "--log-format", "json")
    server = start_serve(tmp_path, *args)
    try:
        server.wait_for_event("load", count=2)
        # Each worker logs its start; they share the metrics port.
        metrics = {start["metrics"] for start in server.wait_for_event("start", count=2)}
        (address,) = metrics
        url = f"http://{address.replace('[::]', '127.0.0.1')}/metrics"
        scrapes = []
        for _ in range(4):  # whichever worker takes the scrape answers it
            with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
                scrapes.append(response.read().decode())
    finally:
        assert server.stop() == 0
    dated = parse_date(_build_epoch(_CITY))
    assert dated is not None
    for text in scrapes:
        samples = {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        assert samples["lookupd_data_date_timestamp_seconds"] == dated
        # The worker answering reports an age too (each worker's own collector; from the
        # date, against a fixed clock: test_the_loader_gives_the_metrics_the_data_date and,
        # per worker, tests/test_metrics.py).
        assert "lookupd_data_age_seconds" in samples
