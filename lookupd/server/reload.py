"""Load the data and the policies, and load them again when they change.

A :class:`Loader` builds an :class:`~lookupd.server.answers.Answerer` from the data file and the
policy file, off the serving path, and hands each good one to ``publish`` (the server's
atomic swap: one attribute assignment, so a call that read the old one finishes on it). A
load that fails keeps the last good one serving: the error is logged once and counted, and
the same broken file is not tried again until it changes.

What starts a reload: :meth:`Loader.watch` polls the two files (inode, size, mtime and
ctime), a SIGHUP, or the admin ``Reload`` RPC. A reload never waits for another: one asked
for while another runs is done once after it (a burst of SIGHUPs is one reload), the
watcher looks again at its next poll, and the admin RPC is told one is in progress; so a
reload that takes long can hold up neither serving nor stopping. Only regular files are
read, and opening one never blocks (a FIFO put in a file's place is refused, once).

The server serves a snapshot from its own verified copy in the run directory
(:mod:`lookupd.datafiles.private_copy`), so whatever then happens to the operator's file
(rewritten in place, truncated, deleted) changes no answer. Writers should still replace
files by renaming a complete new file over the old one (``lookupd build`` does): a file
rewritten in place can be read half written. A half-written snapshot fails its checksum and
is refused rather than served; a source file or policy file has no checksum, so the watcher
waits until a changed file has kept the same state for one poll interval.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lookupd.core import _parse, _search
from lookupd.core.database import Database
from lookupd.datafiles.open import open_database
from lookupd.datafiles.private_copy import PrivateCopies
from lookupd.errors import LookupdError
from lookupd.policies import PolicySet, example_policies_path, load_policies
from lookupd.server.answers import Answerer
from lookupd.server.batches import DEFAULT_MAX_BATCH
from lookupd.server.logs import log_event

if TYPE_CHECKING:
    from lookupd.server.metrics import Metrics

_LOGGER = logging.getLogger(__name__)

DEFAULT_WATCH_INTERVAL_S = 2.0
# A burst of SIGHUPs (a script, a config manager sending one per changed file) is one
# reload: it starts once the requests have stopped for this long...
_QUIET_S = 0.05
# ...or this long after the first, if they never stop.
_MOST_WAIT_S = 1.0


@dataclass(frozen=True, slots=True)
class FileState:
    """What tells one version of a file from the next without reading it."""

    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    """Changed also by ``chmod`` and ``chown``: a file made readable is read again."""


def file_state(path: Path | None) -> FileState | None:
    """Return the state of ``path``; None when there is no path or no file."""
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return FileState(stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@dataclass(frozen=True, slots=True)
class Preloaded:
    """Data and policies loaded ahead of the server, and their files' states then.

    A supervisor loads them before it forks its workers: the workers share the data's
    pages, and a worker restarted later starts from them even if a file has since been
    broken (then it catches up with :meth:`Loader.refresh`).
    """

    db: Database
    policies: PolicySet
    states: tuple[FileState | None, FileState | None]


def preload(
    db_path: str | os.PathLike[str] | None,
    policies_path: str | os.PathLike[str] | None,
    *,
    copies: PrivateCopies | None = None,
) -> Preloaded:
    """Load the data and the policies for :class:`Loader` ``preloaded`` (a snapshot from a
    private copy in ``copies``, if given).

    Raises:
        LookupdError: the data or the policies cannot be loaded.
    """
    data = Path(db_path) if db_path is not None else None
    policies = Path(policies_path) if policies_path else example_policies_path()
    states = (file_state(data), file_state(policies))
    return Preloaded(open_database(data, copies=copies), load_policies(policies), states)


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What one reload did."""

    ok: bool
    """Whether a new answerer was swapped in."""
    answerer: Answerer
    """The answerer serving after the reload (the old one if it failed)."""
    error: str = ""
    """Why it failed."""
    data_changed: bool = False
    """Whether the data version changed."""
    policies_changed: bool = False
    """Whether the policy file's version changed."""
    seconds: float = 0.0
    """How long loading took."""
    busy: bool = False
    """Whether it was not done because another reload was in progress (one more then
    follows that one)."""


IN_PROGRESS = "a reload is already in progress; another one follows it"


class Loader:
    """Loads the data and the policies, now and whenever they change.

    Args:
        db_path: data file (snapshot or any source), or None for the embedded data (which
            never changes, so only the policies reload).
        policies_path: policy file, or None for the example policies shipped with lookupd.
        publish: called with each answerer to serve (the first and every good reload).
        metrics: where reloads are counted, if anywhere.
        preloaded: the data and policies, already loaded (see :func:`preload`), for the
            first load.
        copies: where a snapshot is copied and verified before it is mapped (see
            :mod:`lookupd.datafiles.private_copy`); None maps the data file itself.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None,
        policies_path: str | os.PathLike[str] | None,
        *,
        publish: Callable[[Answerer], None],
        max_batch: int = DEFAULT_MAX_BATCH,
        metrics: Metrics | None = None,
        preloaded: Preloaded | None = None,
        copies: PrivateCopies | None = None,
    ) -> None:
        self._preloaded = preloaded
        self._copies = copies
        self.db_path = Path(db_path) if db_path is not None else None
        self.policies_path = Path(policies_path) if policies_path else example_policies_path()
        self._publish = publish
        self._max_batch = max_batch
        self._metrics = metrics
        # One load at a time: the watcher, SIGHUP and the admin RPC may ask together. Held
        # while loading; _guard (held only for a moment) hands it on and notes one reload
        # asked for while it was held, to run after (see _begin and _end).
        self._lock = threading.Lock()
        self._guard = threading.Lock()
        self._pending: str | None = None
        self._current: Answerer | None = None
        # The files' states when last read (successfully or not): a broken file is not
        # read again until it changes.
        self._read_states: tuple[FileState | None, FileState | None] = (None, None)
        # What the watcher saw on its previous poll (a change must hold for one interval).
        self._seen_states: tuple[FileState | None, FileState | None] = (None, None)
        self._warnings: tuple[str, ...] = ()

    @property
    def current(self) -> Answerer | None:
        """The answerer being served, or None before the first load."""
        return self._current

    def load(self) -> Answerer:
        """Load both files and publish the result.

        Raises:
            LookupdError: the data or the policies cannot be loaded.
        """
        self._lock.acquire()
        try:
            preloaded, self._preloaded = self._preloaded, None
            if preloaded is not None:
                states = preloaded.states
                answerer = Answerer.load(
                    preloaded.db, preloaded.policies, max_batch=self._max_batch
                )
            else:
                states = self._states()
                answerer = self._build(None, data=True, policies=True)
            self._read_states = states
            self._current = answerer
            self._seen_states = states
        finally:
            self._end()
        self._publish(answerer)
        self._record_data(answerer)
        db = answerer.db
        policies = answerer.policy_set
        log_event(
            _LOGGER,
            logging.INFO,
            "load",
            f"loaded data {answerer.version.id[:12]} from {db.info.source}",
            data_source=db.info.source,
            data_version=answerer.version.id,
            built_at=answerer.version.built_at,
            data_date=answerer.version.data_date,
            data_date_from=answerer.version.data_date_from,
            ipv4_segments=len(db.v4),
            ipv6_segments=len(db.v6),
            labels=len(db.label_names) - 1,
            policy_file=str(self.policies_path),
            policy_version=answerer.policy_version,
            policies=",".join(sorted(policies.policies)) if policies is not None else "",
            search_core=_search.CORE,
            parse_core=_parse.CORE,
        )
        self._log_policy_warnings(answerer)
        return answerer

    def reload(self, trigger: str, *, only_changed: bool = False) -> ReloadOutcome:
        """Load the files again and publish the result if it is good; never raises for bad
        files (the outcome says what went wrong, and the last good version keeps serving).

        Args:
            trigger: what asked (``watch``, ``signal``, ``admin``), for the log line.
            only_changed: re-read only the files whose state changed since last read
                (the watcher's way); otherwise both are read.
        """
        self._lock.acquire()
        return self._reload_locked(trigger, only_changed=only_changed)

    def reload_now(self, trigger: str) -> ReloadOutcome:
        """Reload as :meth:`reload` does, unless another reload is in progress: then, without
        waiting for it, note that one more is to follow it and return a ``busy`` outcome.
        What the admin RPC and SIGHUP call: a reload that hangs never holds them up."""
        if not self._begin(trigger):
            old = self._current
            if old is None:
                msg = "reload_now() before load()"
                raise RuntimeError(msg)
            return ReloadOutcome(False, old, error=IN_PROGRESS, busy=True)
        return self._reload_locked(trigger, only_changed=False)

    def _reload_locked(self, trigger: str, *, only_changed: bool) -> ReloadOutcome:
        """Reload, holding the load lock (released here, handing on any reload asked for)."""
        try:
            old = self._current
            if old is None:
                msg = "reload() before load()"
                raise RuntimeError(msg)
            data, policies = self._to_read(only_changed=only_changed)
            started = time.perf_counter()
            try:
                answerer = self._build(old, data=data, policies=policies)
            except Exception as exc:  # a bad file must never stop the server
                return self._failed(old, trigger, exc, time.perf_counter() - started)
            self._current = answerer
        finally:
            self._end()
        self._publish(answerer)
        return self._reloaded(old, answerer, trigger, time.perf_counter() - started)

    def _begin(self, trigger: str) -> bool:
        """Take the load lock if it is free; else note one reload to follow (by ``trigger``)."""
        with self._guard:
            if self._lock.acquire(blocking=False):
                return True
            self._pending = self._pending or trigger
            return False

    def _end(self) -> None:
        """Release the load lock; run the reload asked for meanwhile, if any, in a thread."""
        with self._guard:
            self._lock.release()
            pending, self._pending = self._pending, None
        if pending is not None:
            threading.Thread(
                target=self._catch_up, args=(pending,), name="lookupd-reload", daemon=True
            ).start()

    def _catch_up(self, trigger: str) -> None:
        try:
            self.reload_now(trigger)
        except Exception:  # a thread of its own: nobody else would see it
            _LOGGER.exception("reload: unexpected error")

    def _to_read(self, *, only_changed: bool) -> tuple[bool, bool]:
        """Which of the data and the policy file to read; note their states as read."""
        states = self._states()
        data = not only_changed or states[0] != self._read_states[0]
        policies = not only_changed or states[1] != self._read_states[1]
        self._read_states = states
        return data, policies

    def _failed(self, old: Answerer, trigger: str, exc: Exception, seconds: float) -> ReloadOutcome:
        """Log and count a failed reload; ``old`` keeps serving."""
        error = str(exc) if isinstance(exc, LookupdError) else f"{type(exc).__name__}: {exc}"
        log_event(
            _LOGGER,
            logging.ERROR,
            "reload",
            f"reload failed, still serving data {old.version.id[:12]}: {error}",
            result="failure",
            trigger=trigger,
            error=error,
            data_version=old.version.id,
            policy_version=old.policy_version,
            seconds=round(seconds, 4),
        )
        self._record(old, ok=False, seconds=seconds)
        return ReloadOutcome(False, old, error=error, seconds=seconds)

    def _reloaded(
        self, old: Answerer, answerer: Answerer, trigger: str, seconds: float
    ) -> ReloadOutcome:
        """Log and count a good reload, ``answerer`` now serving in place of ``old``."""
        outcome = ReloadOutcome(
            True,
            answerer,
            data_changed=answerer.version.id != old.version.id,
            policies_changed=answerer.policy_version != old.policy_version,
            seconds=seconds,
        )
        changed = outcome.data_changed or outcome.policies_changed
        log_event(
            _LOGGER,
            logging.INFO,
            "reload",
            "reloaded" if changed else "reloaded, unchanged",
            result="success",
            trigger=trigger,
            data_version=answerer.version.id,
            policy_version=answerer.policy_version,
            data_changed=outcome.data_changed,
            policies_changed=outcome.policies_changed,
            seconds=round(seconds, 4),
        )
        self._record(answerer, ok=True, seconds=seconds)
        self._log_policy_warnings(answerer)
        return outcome

    def refresh(self) -> ReloadOutcome | None:
        """Reload what changed since it was read, at once (no wait for the file to hold
        still); None when nothing did. A worker restarted from preloaded data catches up
        with the files this way."""
        if self._states() == self._read_states:
            return None
        return self.reload("refresh", only_changed=True)

    def poll(self) -> ReloadOutcome | None:
        """One step of the watcher: reload what changed, once its state has held for one
        poll (so a file still being written is left alone); None when nothing is due."""
        states = self._states()
        stable = states == self._seen_states
        self._seen_states = states
        if not stable or states == self._read_states or not self._begin_quietly():
            return None  # unchanged, changing, or another reload runs: look again next poll
        return self._reload_locked("watch", only_changed=True)

    def _begin_quietly(self) -> bool:
        """Take the load lock if it is free (and note nothing to follow if not)."""
        with self._guard:
            return self._lock.acquire(blocking=False)

    def watch(self, interval_s: float, stop: threading.Event) -> threading.Thread:
        """Poll the files every ``interval_s`` in a daemon thread until ``stop`` is set."""

        def run() -> None:
            while not stop.wait(interval_s):
                try:
                    self.poll()
                except Exception:  # the watcher must outlive any surprise
                    _LOGGER.exception("file watcher: unexpected error")

        thread = threading.Thread(target=run, name="lookupd-watch", daemon=True)
        thread.start()
        return thread

    # -----------------------------------------------------------------------------------

    def _states(self) -> tuple[FileState | None, FileState | None]:
        return file_state(self.db_path), file_state(self.policies_path)

    def _build(self, old: Answerer | None, *, data: bool, policies: bool) -> Answerer:
        db: Database
        if old is None or (data and self.db_path is not None):
            db = open_database(self.db_path, copies=self._copies)
        else:
            db = old.db
        policy_set: PolicySet | None
        if old is None or policies or old.policy_set is None:
            policy_set = load_policies(self.policies_path)
        else:
            policy_set = old.policy_set
        return Answerer.load(db, policy_set, max_batch=self._max_batch)

    def _record(self, answerer: Answerer, *, ok: bool, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.reload_finished(ok, seconds)
            if ok:
                self._record_data(answerer)

    def _record_data(self, answerer: Answerer) -> None:
        if self._metrics is not None:
            from lookupd.datafiles.data_version import parse_built_at

            version = answerer.version
            self._metrics.set_data(
                version.id,
                parse_built_at(version.built_at),
                answerer.policy_version,
                parse_built_at(version.data_date),
            )

    def _log_policy_warnings(self, answerer: Answerer) -> None:
        """Log the policies' warnings when they differ from the last ones logged."""
        warnings = tuple(answerer.policies.warnings) if answerer.policies is not None else ()
        if warnings != self._warnings:
            for warning in warnings:
                log_event(_LOGGER, logging.WARNING, "policy_warning", f"policies: {warning}")
        self._warnings = warnings


class ReloadRequests:
    """Reloads asked for by a signal handler, run one at a time by a thread of their own.

    :meth:`request` only writes a byte to a pipe: it takes no lock, so a handler can never
    deadlock with the code it interrupted (or with itself, when signals come in a burst),
    and it starts no thread. The thread waits until the requests stop for 50 ms (1 s at
    most), then reloads once: a burst is one reload, and requests while a reload runs make
    one more after it, not one each.

    Args:
        reload: what one reload does (it should not wait for another reload to end).
    """

    def __init__(self, reload: Callable[[], object]) -> None:
        self._reload = reload
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._thread = threading.Thread(target=self._run, name="lookupd-reloads", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Ask for a reload; safe to call in a signal handler."""
        try:
            os.write(self._write, b"\0")
        except (BlockingIOError, OSError):  # full: a reload is asked for already; or closed
            return

    def close(self) -> None:
        """Stop taking requests; the thread ends after any reload running (never waited for)."""
        fd, self._write = self._write, -1
        if fd >= 0:
            os.close(fd)

    def _run(self) -> None:
        try:
            while os.read(self._read, 4096) and self._quiet():
                try:
                    self._reload()
                except Exception:  # the thread must outlive any surprise
                    _LOGGER.exception("reload on request: unexpected error")
        finally:
            os.close(self._read)

    def _quiet(self) -> bool:
        """Take the requests that follow, until none for ``_QUIET_S`` (or ``_MOST_WAIT_S``
        after the first); False if requests were closed meanwhile."""
        until = time.monotonic() + _MOST_WAIT_S
        while (left := until - time.monotonic()) > 0:
            ready, _, _ = select.select([self._read], [], [], min(_QUIET_S, left))
            if not ready:
                break
            if not os.read(self._read, 4096):
                return False
        return True
