"""One update: fetch every source, decide, build, and rename the new snapshot into place.

The decision, in order: a source that fails (download, checksum, archive) fails the whole
update; sources all unchanged (304, or the same bytes) with the snapshot in place: nothing
is built (``unchanged``); a build whose data equals the snapshot's: nothing is written
(``unchanged``); a build that changes more than ``max_change`` of either family's known
address space: refused unless forced (``refused``); else the snapshot is written through
:func:`~lookupd.datafiles.snapshot.write_snapshot` (``updated``). Only then are the new
downloads moved into the source cache and the state file written, so a failed or refused
update leaves the snapshot, the cache and the state as they were.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lookupd.core.table import Tables
from lookupd.datafiles.data_version import data_version_of
from lookupd.datafiles.merge import merge_sources
from lookupd.datafiles.open import open_database
from lookupd.datafiles.progress import Reporter
from lookupd.datafiles.snapshot import is_snapshot, load_snapshot, payload_sha256, write_snapshot
from lookupd.datafiles.source_date import FROM_LAST_MODIFIED
from lookupd.datafiles.sources import SourceDate, fingerprint, iso_from_timestamp
from lookupd.errors import LookupdError
from lookupd.update.archives import Limits
from lookupd.update.change import change_shares
from lookupd.update.errors import DownloadError, LockedError, UpdateError
from lookupd.update.fetching import unpack_download, verify
from lookupd.update.http import Fetched, Policy, fetch, http_date_s
from lookupd.update.lock import locked
from lookupd.update.secrets import Redactor
from lookupd.update.sources import Source
from lookupd.update.state import SourceState, State, cache_path, load_state, save_state

_LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_CHANGE = 0.05
"""Default largest share of a family's known address space a release may relabel."""


class Outcome(enum.Enum):
    """How an update ended."""

    UPDATED = "updated"
    """A new snapshot was written."""
    UNCHANGED = "unchanged"
    """The sources (or the data built from them) are those of the current snapshot."""
    REFUSED = "refused"
    """The release changes too much (``--max-change``); the snapshot is untouched."""
    FAILED = "failed"
    """A download, check or build failed; the snapshot is untouched."""
    LOCKED = "locked"
    """Another update holds the output's lock; nothing was done."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Where to write and how careful to be."""

    output: Path
    """The snapshot to keep fresh."""
    max_change: float = DEFAULT_MAX_CHANGE
    """Refuse a release relabelling more than this share of either family's known space."""
    force: bool = False
    """Write even a release that changes more than ``max_change``."""
    policy: Policy = field(default_factory=Policy)
    """Timeouts, retries and the download size limit."""
    limits: Limits = field(default_factory=Limits)
    """Archive limits."""
    lock_wait_s: float = 0.0
    """How long to wait for another update of the same output."""
    mmdb_output: Path | None = None
    """Also keep a MaxMind DB export of the snapshot here (``lookupd export mmdb``), for
    Envoy's geoip filter: rewritten whenever it is not of the snapshot's data version."""


@dataclass(frozen=True, slots=True)
class SourceResult:
    """One source in one update: whether it changed and what was read."""

    name: str
    """The source's short name."""
    url: str | None
    """Its URL, redacted (None for a local file)."""
    changed: bool
    """New bytes since the last update (False for a 304 or the same bytes)."""
    size: int
    """Bytes of the download (or of the local file)."""
    sha256: str
    """Its SHA-256."""
    last_modified: float | None
    """Its release date: ``Last-Modified`` (or the local file's mtime), Unix seconds. The
    data's age is that of the oldest source: this is the one place to read it from."""
    files: tuple[Path, ...] = ()
    """What the build read."""
    seconds: float = 0.0
    """Time spent fetching and unpacking it."""


@dataclass(frozen=True, slots=True)
class Result:
    """What one update did, for its log line, metrics and exit status."""

    outcome: Outcome
    """How it ended."""
    sources: tuple[SourceResult, ...] = ()
    """Each source, in order (those fetched before a failure)."""
    old_version: str | None = None
    """Data version of the snapshot before."""
    new_version: str | None = None
    """Data version built (written only if ``updated``)."""
    size: int = 0
    """Bytes of the snapshot written."""
    change: dict[str, float] = field(default_factory=dict)
    """Share of each family's known address space relabelled (``ipv4``, ``ipv6``)."""
    seconds: float = 0.0
    """Time the whole update took."""
    reason: str | None = None
    """Why it failed (``download``, ``checksum``, ``archive``, ``build``, ...)."""
    error: str | None = None
    """The error, redacted."""
    exported: Path | None = None
    """The MaxMind DB export written by this update (None: none needed or asked for)."""


def update_once(
    sources: Sequence[Source],
    settings: Settings,
    *,
    redactor: Redactor | None = None,
    report: Reporter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Result:
    """Run one update of ``settings.output`` from ``sources``; never raises for a failure
    of the update itself: the :class:`Result` says what happened."""
    redact = redactor or Redactor()
    started = time.monotonic()
    done: list[SourceResult] = []
    try:
        with locked(settings.output, wait_s=settings.lock_wait_s):
            result = _update(sources, settings, redact, report, sleep, done)
            if settings.mmdb_output is not None and result.outcome in (
                Outcome.UPDATED,
                Outcome.UNCHANGED,
            ):
                result = _keep_export(settings.output, settings.mmdb_output, result, redact)
    except LockedError as exc:
        result = Result(Outcome.LOCKED, reason=exc.reason, error=redact(str(exc)))
    except UpdateError as exc:
        result = Result(Outcome.FAILED, tuple(done), reason=exc.reason, error=redact(str(exc)))
    except LookupdError as exc:  # a source the readers refuse, a snapshot not writable
        result = Result(Outcome.FAILED, tuple(done), reason="build", error=redact(str(exc)))
    except OSError as exc:
        result = Result(Outcome.FAILED, tuple(done), reason="io", error=redact(str(exc)))
    if result.outcome in (Outcome.FAILED, Outcome.LOCKED):
        # The version still serving, for the log line (as the state file last recorded it).
        result = dataclasses.replace(result, old_version=load_state(settings.output).data_version)
    return dataclasses.replace(result, seconds=time.monotonic() - started)


def _update(
    sources: Sequence[Source],
    settings: Settings,
    redact: Redactor,
    report: Reporter | None,
    sleep: Callable[[float], None],
    done: list[SourceResult],
) -> Result:
    output = settings.output
    state = load_state(output)
    cache = cache_path(output)
    cache.mkdir(mode=0o700, exist_ok=True)
    # Under the lock, any staging directory is a killed run's (SIGKILL, a pod's grace
    # period out mid-download): nobody else writes there.
    for stale in output.parent.glob(f".{output.name}.staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.staging-"))
    try:
        new_states: dict[str, SourceState] = {}
        staged: dict[str, Path] = {}
        for source in sources:
            begun = time.monotonic()
            key = source.key()
            if source.path is not None:
                one, new_states[key] = _local(source, state.sources.get(key))
            else:
                one, new_states[key], fresh = _remote(
                    source,
                    state.sources.get(key),
                    cache / key,
                    staging / key,
                    settings,
                    redact,
                    report,
                    sleep,
                )
                if fresh:
                    staged[key] = staging / key
            done.append(dataclasses.replace(one, seconds=time.monotonic() - begun))
        results = tuple(done)
        in_place = is_snapshot(output)
        same_sources = set(new_states) == set(state.sources)
        if in_place and same_sources and not any(r.changed for r in results):
            save_state(output, State(new_states, state.data_version))
            return Result(Outcome.UNCHANGED, results, state.data_version, state.data_version)
        return _build(sources, results, settings, state, new_states, staged, staging, report)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _keep_export(output: Path, mmdb: Path, result: Result, redact: Redactor) -> Result:
    """Export the snapshot to ``mmdb`` unless that file is already of its data version.

    The snapshot is written first: a failed export fails the update (the next one retries
    it, since the file's version then differs) and leaves the old export in place.
    """
    # mmdb-writer and netaddr: loaded only by updates that export.
    from lookupd.datafiles.mmdb_export import export_mmdb, exported_data_version

    db = open_database(output)
    version = data_version_of(db).id
    if exported_data_version(mmdb) == version:
        return result
    try:
        export_mmdb(mmdb, db)
    except LookupdError as exc:
        error = redact(f"the snapshot was written, its MaxMind DB export was not: {exc}")
        return dataclasses.replace(result, outcome=Outcome.FAILED, reason="export", error=error)
    return dataclasses.replace(result, exported=mmdb)


def _local(source: Source, old: SourceState | None) -> tuple[SourceResult, SourceState]:
    assert source.path is not None
    size, digest = fingerprint(source.path)
    try:
        mtime: float | None = source.path.stat().st_mtime
    except OSError:
        mtime = None
    changed = old is None or old.sha256 != digest
    result = SourceResult(source.name, None, changed, size, digest, mtime, (source.path,))
    return result, SourceState(sha256=digest, size=size)


def _remote(
    source: Source,
    old: SourceState | None,
    cached: Path,
    staged: Path,
    settings: Settings,
    redact: Redactor,
    report: Reporter | None,
    sleep: Callable[[float], None],
) -> tuple[SourceResult, SourceState, bool]:
    """Fetch one URL source; return its result, its new state, and whether it was staged."""
    assert source.url is not None
    shown = redact(source.url)
    have = old is not None and bool(old.files) and all((cached / f).is_file() for f in old.files)
    staged.mkdir(mode=0o700)

    def get(url: str) -> Fetched:
        return fetch(
            url,
            staged,
            headers=source.headers,
            etag=old.etag if have and old else None,
            last_modified=old.last_modified if have and old else None,
            policy=settings.policy,
            redactor=redact,
            report=report,
            sleep=sleep,
            name=source.name,
        )

    try:
        fetched = get(source.url)
    except DownloadError as exc:
        if exc.status != 404 or source.fallback_url is None:
            raise
        _LOGGER.info("%s: not found, trying %s", shown, redact(source.fallback_url))
        fetched = get(source.fallback_url)
    if fetched.not_modified:
        assert old is not None
        files = tuple(cached / f for f in old.files)
        date = http_date_s(old.last_modified)
        return (
            SourceResult(source.name, shown, False, old.size, old.sha256, date, files),
            old,
            False,
        )
    assert fetched.path is not None
    verify(source, fetched, settings.policy, redact, sleep, directory=staged)
    date = fetched.last_modified_s
    if have and old is not None and fetched.sha256 == old.sha256:
        # Same bytes (a server without validators): nothing to unpack or build.
        fetched.path.unlink()
        kept_files = tuple(cached / f for f in old.files)
        kept = dataclasses.replace(old, etag=fetched.etag, last_modified=fetched.last_modified)
        result = SourceResult(source.name, shown, False, old.size, old.sha256, date, kept_files)
        return result, kept, False
    unpacked = unpack_download(source, fetched, staged, settings.limits)
    new = SourceState(
        fetched.etag,
        fetched.last_modified,
        fetched.sha256,
        fetched.size,
        [f.name for f in unpacked],
    )
    result = SourceResult(source.name, shown, True, fetched.size, fetched.sha256, date)
    return dataclasses.replace(result, files=tuple(unpacked)), new, True


def _build(
    sources: Sequence[Source],
    results: tuple[SourceResult, ...],
    settings: Settings,
    state: State,
    new_states: dict[str, SourceState],
    staged: dict[str, Path],
    staging: Path,
    report: Reporter | None,
) -> Result:
    # Policies load YAML and pycountry: only a build pays for them.
    from lookupd.policies.iso3166 import non_iso_labels

    output = settings.output
    paths: list[Path] = []
    formats: list[str | None] = []
    dates: list[SourceDate | None] = []
    shown: dict[str, str] = {}
    for source, result in zip(sources, results, strict=True):
        # A download is dated by its Last-Modified where the file records no date itself.
        modified = None
        if result.url is not None and result.last_modified is not None:
            modified = SourceDate(iso_from_timestamp(result.last_modified), FROM_LAST_MODIFIED)
        for file in _build_inputs(source, result):
            paths.append(file)
            formats.append(source.format)
            dates.append(modified)
            shown[str(file)] = result.url or str(file)
    merged = merge_sources(paths, formats=formats, dates=dates, report=report)
    tables = merged.tables
    new_version = payload_sha256(tables)
    old_tables, old_version = _current(output)
    if old_version == new_version:
        _commit(output, staged, new_states, new_version, staging)
        kept = _in_cache(output, sources, results, staged)
        return Result(Outcome.UNCHANGED, kept, old_version, new_version)
    change = change_shares(old_tables, tables) if old_tables is not None else {}
    if change and max(change.values()) > settings.max_change and not settings.force:
        worst = max(change, key=lambda family: change[family])
        error = (
            f"the new data relabels {change[worst]:.2%} of the known {worst} address space, "
            f"more than --max-change {settings.max_change:.2%}: refused (--force to accept)"
        )
        # The downloads are dropped with the staging directory: list no file of theirs.
        dropped = tuple(
            dataclasses.replace(r, files=()) if s.key() in staged else r
            for s, r in zip(sources, results, strict=True)
        )
        return Result(
            Outcome.REFUSED, dropped, old_version, new_version, change=change, error=error
        )
    infos = tuple(dataclasses.replace(s, name=shown.get(s.name, s.name)) for s in merged.sources)
    if report is not None:
        report.phase(f"writing {output.name}")
    header = write_snapshot(
        output,
        tables,
        sources=infos,
        notes=merged.notes,
        non_iso_labels=non_iso_labels(tables.label_names),
    )
    _commit(output, staged, new_states, new_version, staging)
    return Result(
        Outcome.UPDATED,
        _in_cache(output, sources, results, staged),
        old_version,
        new_version,
        size=int(header["file_size"]),
        change=change,
    )


def _in_cache(
    output: Path,
    sources: Sequence[Source],
    results: tuple[SourceResult, ...],
    staged: dict[str, Path],
) -> tuple[SourceResult, ...]:
    """The results with the files of new downloads where :func:`_commit` moved them."""
    cache = cache_path(output)
    return tuple(
        dataclasses.replace(r, files=tuple(cache / s.key() / f.name for f in r.files))
        if s.key() in staged
        else r
        for s, r in zip(sources, results, strict=True)
    )


def _build_inputs(source: Source, result: SourceResult) -> list[Path]:
    """The paths to give the build for one source: a GeoLite2 CSV set as its directory."""
    files = list(result.files)
    if source.format == "geolite2-csv" and files and source.path is None:
        return [files[0].parent]
    return files


def _current(output: Path) -> tuple[Tables | None, str | None]:
    """Return the current snapshot's tables and data version (None, None if there is none
    or it cannot be read: then any good build is better)."""
    if not output.exists():
        return None, None
    try:
        snapshot = load_snapshot(output)
    except LookupdError as exc:
        _LOGGER.warning("current snapshot unreadable, replacing it: %s", exc)
        return None, None
    return snapshot.tables, snapshot.data_version


def _commit(
    output: Path,
    staged: dict[str, Path],
    new_states: dict[str, SourceState],
    version: str | None,
    staging: Path,
) -> None:
    """Move the new downloads into the cache, drop unused cache entries, write the state."""
    cache = cache_path(output)
    for key, directory in staged.items():
        target = cache / key
        if target.exists():
            target.rename(staging / f"old-{key}")
        directory.rename(target)
    for entry in cache.iterdir():
        if entry.name not in new_states:
            shutil.rmtree(entry, ignore_errors=True)
    save_state(output, State(new_states, version))
