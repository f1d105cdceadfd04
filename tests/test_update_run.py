"""One update end to end against a local origin: the decision, and what it leaves on disk."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from origin import Origin, Reply, running_origin
from update_data import ROWS, country, csv, small_change, version

from lookupd.datafiles.snapshot import load_snapshot
from lookupd.update.change import change_shares
from lookupd.update.http import Policy
from lookupd.update.lock import locked
from lookupd.update.run import Outcome, Settings, update_once
from lookupd.update.secrets import Redactor
from lookupd.update.sources import Source, url_source
from lookupd.update.state import cache_path, state_path

_POLICY = Policy(timeout_s=5, attempts=2, backoff_s=0.01, max_delay_s=0.02)


@pytest.fixture
def origin() -> Iterator[Origin]:
    with running_origin() as server:
        yield server


def _settings(tmp_path: Path, **changes: object) -> Settings:
    base = Settings(tmp_path / "countries.lkd", policy=_POLICY)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _source(origin: Origin, path: str = "/countries.csv", **options: object) -> Source:
    return url_source(origin.url(path), Redactor(), format="location-csv", **options)  # type: ignore[arg-type]


def _snapshot_bytes(settings: Settings) -> tuple[bytes, bytes | None]:
    state = state_path(settings.output)
    return settings.output.read_bytes(), state.read_bytes() if state.exists() else None


def test_first_update_writes_then_an_unchanged_source_downloads_and_builds_nothing(
    origin: Origin, tmp_path: Path
) -> None:
    origin.file("/countries.csv", csv(), stamp=1_750_000_000)
    settings = _settings(tmp_path)
    first = update_once([_source(origin)], settings)
    assert first.outcome is Outcome.UPDATED, first.error
    assert first.new_version == version(settings.output)
    assert first.old_version is None
    assert first.size == settings.output.stat().st_size
    assert country(settings.output, "2.1.1.1") == "FR"
    # The release date travels with the source's result, and on the cached file.
    (source,) = first.sources
    assert source.changed
    assert source.last_modified == 1_750_000_000
    assert [os.stat(f).st_mtime for f in source.files] == [1_750_000_000]
    assert all(f.parent.parent == cache_path(settings.output) for f in source.files)
    # ... and dates the data: a CSV records no date of its own.
    header = load_snapshot(settings.output).header
    assert (header["data_date"], header["data_date_from"]) == (
        "2025-06-15T15:06:40+00:00",
        "Last-Modified",
    )
    assert header["sources"][0]["date_from"] == "Last-Modified"
    written = settings.output.stat().st_mtime_ns

    again = update_once([_source(origin)], settings)
    assert again.outcome is Outcome.UNCHANGED
    assert again.old_version == again.new_version == first.new_version
    assert not again.sources[0].changed
    assert again.sources[0].last_modified == 1_750_000_000
    assert origin.hits("/countries.csv")[-1].headers["If-None-Match"]
    assert settings.output.stat().st_mtime_ns == written


def test_same_bytes_from_a_server_without_validators_build_nothing(
    origin: Origin, tmp_path: Path
) -> None:
    origin.serve("/countries.csv", Reply(body=csv()))
    settings = _settings(tmp_path)
    assert update_once([_source(origin)], settings).outcome is Outcome.UPDATED
    written = settings.output.stat().st_mtime_ns
    again = update_once([_source(origin)], settings)
    assert again.outcome is Outcome.UNCHANGED
    assert len(origin.hits("/countries.csv")) == 2
    assert settings.output.stat().st_mtime_ns == written


def test_a_new_release_is_written_and_the_server_side_file_replaced(
    origin: Origin, tmp_path: Path
) -> None:
    origin.file("/countries.csv", csv())
    settings = _settings(tmp_path)
    first = update_once([_source(origin)], settings)
    origin.file("/countries.csv", small_change(), stamp=1_800_000_000)
    second = update_once([_source(origin)], settings)
    assert second.outcome is Outcome.UPDATED, second.error
    assert second.old_version == first.new_version
    assert second.new_version == version(settings.output) != first.new_version
    assert country(settings.output, "1.0.0.1") == "NZ"
    assert 0 < second.change["ipv4"] < 0.0001
    assert second.change["ipv6"] == 0


def _unchanged_after(settings: Settings, before: tuple[bytes, bytes | None]) -> None:
    assert _snapshot_bytes(settings) == before
    leftovers = [p.name for p in settings.output.parent.iterdir() if "staging" in p.name]
    assert leftovers == []


def test_a_wrong_checksum_fails_and_leaves_everything_as_it_was(
    origin: Origin, tmp_path: Path
) -> None:
    origin.file("/countries.csv", csv())
    settings = _settings(tmp_path)
    update_once([_source(origin)], settings)
    before = _snapshot_bytes(settings)
    origin.file("/countries.csv", small_change(), stamp=1_800_000_000)
    result = update_once([_source(origin, sha256="0" * 64)], settings)
    assert result.outcome is Outcome.FAILED
    assert result.reason == "checksum"
    assert "is not the expected" in (result.error or "")
    _unchanged_after(settings, before)


def test_a_checksum_file_is_fetched_and_checked(origin: Origin, tmp_path: Path) -> None:
    body = csv()
    origin.file("/countries.csv", body)
    digest = hashlib.sha256(body).hexdigest()
    origin.serve("/countries.csv.sha256", Reply(body=f"{digest}  countries.csv\n".encode()))
    settings = _settings(tmp_path)
    checked = _source(origin, checksum_url=origin.url("/countries.csv.sha256"))
    assert update_once([checked], settings).outcome is Outcome.UPDATED
    origin.file("/countries.csv", small_change(), stamp=1_800_000_000)
    before = _snapshot_bytes(settings)
    failed = update_once([checked], settings)
    assert failed.outcome is Outcome.FAILED
    assert failed.reason == "checksum"
    _unchanged_after(settings, before)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(404), "download"),
        (Reply(500), "download"),
        (Reply(body=b"\x00\x01 not a data file at all \xff" * 10), "build"),
        (Reply(body=b"# only a comment\n"), "build"),
    ],
    ids=["404", "500", "binary", "empty"],
)
def test_failures_leave_the_snapshot_and_state_untouched(
    origin: Origin, tmp_path: Path, reply: Reply, reason: str
) -> None:
    origin.file("/countries.csv", csv())
    settings = _settings(tmp_path)
    good = update_once([_source(origin)], settings)
    before = _snapshot_bytes(settings)
    origin.serve("/countries.csv", reply)
    result = update_once([_source(origin)], settings)
    assert result.outcome is Outcome.FAILED
    assert result.reason == reason, result.error
    _unchanged_after(settings, before)
    # The next good release still builds.
    origin.file("/countries.csv", small_change(), stamp=1_800_000_000)
    fixed = update_once([_source(origin)], settings)
    assert fixed.outcome is Outcome.UPDATED
    assert fixed.old_version == good.new_version


def test_a_release_that_changes_too_much_is_refused_then_forced(
    origin: Origin, tmp_path: Path
) -> None:
    origin.file("/countries.csv", csv())
    settings = _settings(tmp_path)
    first = update_once([_source(origin)], settings)
    before = _snapshot_bytes(settings)
    origin.file("/countries.csv", csv(FR="DE"), stamp=1_800_000_000)  # half of IPv4
    refused = update_once([_source(origin)], settings)
    assert refused.outcome is Outcome.REFUSED
    assert refused.change["ipv4"] == pytest.approx(0.5, abs=0.001)
    assert "more than --max-change 5.00%" in (refused.error or "")
    _unchanged_after(settings, before)
    # Refused again next time (the state did not move on), then accepted with force.
    assert update_once([_source(origin)], settings).outcome is Outcome.REFUSED
    forced = update_once([_source(origin)], dataclasses.replace(settings, force=True))
    assert forced.outcome is Outcome.UPDATED
    assert forced.old_version == first.new_version
    assert country(settings.output, "2.1.1.1") == "DE"
    # A higher --max-change lets such a release through too.
    origin.file("/countries.csv", csv(), stamp=1_900_000_000)
    loose = dataclasses.replace(settings, max_change=0.6)
    assert update_once([_source(origin)], loose).outcome is Outcome.UPDATED


def test_losing_a_family_counts_as_a_change_of_all_of_it(origin: Origin, tmp_path: Path) -> None:
    origin.file("/countries.csv", csv())
    settings = _settings(tmp_path)
    update_once([_source(origin)], settings)
    v4_only = b"".join(line + b"\n" for line in csv().splitlines() if b":" not in line)
    origin.file("/countries.csv", v4_only, stamp=1_800_000_000)
    refused = update_once([_source(origin)], settings)
    assert refused.outcome is Outcome.REFUSED
    assert refused.change == {"ipv4": 0.0, "ipv6": 1.0}


def test_change_shares_is_zero_for_equal_tables(origin: Origin, tmp_path: Path) -> None:
    from lookupd.datafiles.snapshot import load_snapshot

    origin.file("/countries.csv", csv())
    settings = _settings(tmp_path)
    update_once([_source(origin)], settings)
    tables = load_snapshot(settings.output).tables
    assert change_shares(tables, tables) == {"ipv4": 0.0, "ipv6": 0.0}


def test_a_held_lock_is_reported_and_nothing_done(origin: Origin, tmp_path: Path) -> None:
    origin.file("/countries.csv", csv())
    settings = _settings(tmp_path)
    with locked(settings.output):
        result = update_once([_source(origin)], settings)
    assert result.outcome is Outcome.LOCKED
    assert origin.hits("/countries.csv") == []
    assert not settings.output.exists()
    assert update_once([_source(origin)], settings).outcome is Outcome.UPDATED


def test_a_local_corrections_file_is_laid_over_the_download(origin: Origin, tmp_path: Path) -> None:
    origin.file("/countries.csv", csv())
    corrections = tmp_path / "corrections.csv"
    corrections.write_text("start,end,country_code\n3.0.0.0,3.0.0.255,CA\n")
    sources = [_source(origin), Source("corrections.csv", path=corrections)]
    settings = _settings(tmp_path)
    assert update_once(sources, settings).outcome is Outcome.UPDATED
    assert country(settings.output, "3.0.0.1") == "CA"
    assert country(settings.output, "3.0.1.1") == "US"
    assert update_once(sources, settings).outcome is Outcome.UNCHANGED
    corrections.write_text("start,end,country_code\n3.0.0.0,3.0.0.255,MX\n")
    changed = update_once(sources, settings)
    assert changed.outcome is Outcome.UPDATED
    assert [s.changed for s in changed.sources] == [False, True]
    assert country(settings.output, "3.0.0.1") == "MX"


def test_a_malicious_archive_fails_the_update(origin: Origin, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        evil = tarfile.TarInfo("../../escaped.csv")
        data = csv()
        evil.size = len(data)
        tar.addfile(evil, io.BytesIO(data))
    origin.serve("/data.tar.gz", Reply(body=buffer.getvalue()))
    settings = _settings(tmp_path)
    result = update_once([_source(origin, "/data.tar.gz")], settings)
    assert result.outcome is Outcome.FAILED
    assert result.reason == "archive"
    assert not settings.output.exists()
    assert not (tmp_path.parent / "escaped.csv").exists()


def test_a_gzip_source_keeps_its_compression_for_the_reader(origin: Origin, tmp_path: Path) -> None:
    origin.serve("/download", Reply(body=gzip.compress(csv())))
    settings = _settings(tmp_path)
    result = update_once([_source(origin, "/download")], settings)
    assert result.outcome is Outcome.UPDATED, result.error
    assert [f.name for f in result.sources[0].files] == ["download.gz"]
    assert country(settings.output, "2.1.1.1") == "FR"


def test_a_corrupt_current_snapshot_is_replaced(origin: Origin, tmp_path: Path) -> None:
    origin.file("/countries.csv", csv())
    settings = _settings(tmp_path)
    settings.output.write_bytes(b"LKDSNAP garbage")
    result = update_once([_source(origin)], settings)
    assert result.outcome is Outcome.UPDATED
    assert result.old_version is None
    assert len(ROWS) == 4


def test_a_killed_runs_staging_directory_is_removed(origin: Origin, tmp_path: Path) -> None:
    origin.file("/countries.csv", csv())
    settings = _settings(tmp_path)
    stale = tmp_path / ".countries.lkd.staging-abc123"
    (stale / "key").mkdir(parents=True)
    (stale / "key" / "download-x.part").write_bytes(b"half")
    assert update_once([_source(origin)], settings).outcome is Outcome.UPDATED
    assert not stale.exists()


def test_progress_is_reported_while_downloading_and_building(
    origin: Origin, tmp_path: Path
) -> None:
    class Recorder:
        def __init__(self) -> None:
            self.phases: list[str] = []
            self.updates: list[tuple[int, int]] = []

        def phase(self, text: str) -> None:
            self.phases.append(text)

        def update(self, done: int, total: int) -> None:
            self.updates.append((done, total))

    origin.file("/countries.csv", csv())
    recorder = Recorder()
    result = update_once([_source(origin)], _settings(tmp_path), report=recorder)
    assert result.outcome is Outcome.UPDATED
    assert recorder.phases[0] == "downloading countries.csv"
    assert recorder.phases[-1] == "writing countries.lkd"
    assert (len(csv()), len(csv())) in recorder.updates


def test_the_mmdb_export_follows_the_snapshot(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an export path, each update keeps a MaxMind DB export of the snapshot: written
    with a new release, left alone while the data is the same, rewritten when it lags (a
    failed export fails the update and is retried by the next)."""
    import maxminddb

    from lookupd.datafiles.mmdb_export import exported_data_version

    mmdb = tmp_path / "countries.mmdb"
    settings = _settings(tmp_path, mmdb_output=mmdb)
    origin.file("/countries.csv", csv())
    first = update_once([_source(origin)], settings)
    assert first.outcome is Outcome.UPDATED, first.error
    assert first.exported == mmdb
    assert exported_data_version(mmdb) == first.new_version
    with maxminddb.open_database(str(mmdb)) as reader:
        assert reader.get("2.1.1.1") == {"country": {"iso_code": "FR"}}
    written = mmdb.stat().st_mtime_ns

    again = update_once([_source(origin)], settings)
    assert again.outcome is Outcome.UNCHANGED
    assert again.exported is None
    assert mmdb.stat().st_mtime_ns == written

    origin.file("/countries.csv", small_change(), stamp=1_800_000_000)

    def no_space(path: object, db: object, **options: object) -> None:
        from lookupd.errors import LookupdError

        raise LookupdError(f"{path}: cannot write the MaxMind DB file: no space left")

    monkeypatch.setattr("lookupd.datafiles.mmdb_export.export_mmdb", no_space)
    failed = update_once([_source(origin)], settings)
    assert failed.outcome is Outcome.FAILED
    assert failed.reason == "export"
    assert failed.error is not None
    assert "the snapshot was written" in failed.error
    assert country(settings.output, "1.0.0.1") == "NZ"
    assert exported_data_version(mmdb) == first.new_version  # the old export, whole
    monkeypatch.undo()

    retried = update_once([_source(origin)], settings)
    assert retried.outcome is Outcome.UNCHANGED
    assert retried.exported == mmdb
    assert exported_data_version(mmdb) == version(settings.output)
    with maxminddb.open_database(str(mmdb)) as reader:
        assert reader.get("1.0.0.1") == {"country": {"iso_code": "NZ"}}
