"""Prometheus multiprocess mode for ``lookupd serve --workers N``: this process's mode, and
the registry a scrape reads.

Two modes, chosen per process tree:

- **Single process** (``lookupd serve --workers 1``): values live in memory and the endpoint
  serves the :class:`~lookupd.server.metrics.Metrics`' own registry (plus process metrics:
  CPU, memory, files).
- **Multiprocess** (``--workers N``): the supervisor calls :func:`enable_multiprocess` on an
  empty directory before it creates any ``Metrics`` and before it forks. Every process
  then writes its values to its own memory-mapped files there (prometheus_client's
  multiprocess mode), and every worker binds the same metrics port with ``SO_REUSEPORT``:
  whichever worker the kernel hands a scrape to merges all the files, so any answer is the
  view of the whole server. The supervisor calls :func:`mark_process_dead` for each worker
  that exits, which drops that worker's "live" gauges (its counters stay in the totals).
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, multiprocess, values

from lookupd.errors import LookupdError

if TYPE_CHECKING:
    from lookupd.server.metrics import Metrics

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The variable prometheus_client reads (and child processes inherit)."""

# enable_multiprocess's directory in this process, or None (single-process mode).
_multiprocess_dir: str | None = None
# (pid, Metrics) of the instance recording in this process, in multiprocess mode.
_recorder: tuple[int, weakref.ref[Metrics]] | None = None
# Whether a Metrics was created in single-process mode in this process.
_created_in_memory = False


def enable_multiprocess(directory: str | os.PathLike[str]) -> None:
    """Switch this process, and the children it forks afterwards, to multiprocess mode.

    Sets ``PROMETHEUS_MULTIPROC_DIR`` (inherited by children) and replaces
    ``prometheus_client.values.ValueClass``, which prometheus_client chose once, when it was
    first imported, from that variable: every metric created afterwards keeps its values in
    memory-mapped files in ``directory`` (one per process and metric type).

    Call it once, in the supervisor, before any :class:`Metrics` exists in the process and
    before forking the workers: metrics created before it keep in-memory values that no
    other process sees. Calling it again with the same directory does nothing.

    Args:
        directory: an existing, empty directory that outlives the workers (the supervisor
            creates it, and removes it after the last worker). Stale files of an earlier
            run would be merged into the totals, so a directory holding any is refused.

    Raises:
        LookupdError: the directory is missing or holds metrics files, multiprocess mode is
            already on with another directory, or a :class:`Metrics` was already created
            in single-process mode.
    """
    global _multiprocess_dir
    path = os.path.abspath(os.fspath(directory))
    if _multiprocess_dir is not None:
        if _multiprocess_dir == path:
            return
        msg = f"metrics: multiprocess mode is already on with {_multiprocess_dir}, not {path}"
        raise LookupdError(msg)
    if not os.path.isdir(path):
        msg = f"metrics: multiprocess directory {path} does not exist"
        raise LookupdError(msg)
    stale = sorted(name for name in os.listdir(path) if name.endswith(".db"))
    if stale:
        msg = (
            f"metrics: multiprocess directory {path} holds metrics files of an earlier run "
            f"({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}); use an empty one"
        )
        raise LookupdError(msg)
    if _created_in_memory:
        msg = "metrics: enable_multiprocess must be called before any Metrics() is created"
        raise LookupdError(msg)
    os.environ[MULTIPROC_ENV] = path
    # prometheus_client reads the variable only at import; metric constructors look
    # ValueClass up on the module at each construction, so replacing it takes effect for
    # every metric created from now on.
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
    _multiprocess_dir = path


def multiprocess_directory() -> str | None:
    """Return :func:`enable_multiprocess`'s directory, or None in single-process mode."""
    return _multiprocess_dir


def mark_process_dead(pid: int) -> None:
    """Forget the live gauges of an exited worker (multiprocess mode; otherwise a no-op).

    The supervisor calls it for every worker that exits (restarted or not): the
    ``lookupd_data_*`` gauges then describe only the workers alive. The worker's counters
    and histograms stay in the directory and in the totals, so totals never go down.
    """
    if _multiprocess_dir is not None:
        multiprocess.mark_process_dead(pid, _multiprocess_dir)  # type: ignore[no-untyped-call]  # untyped in prometheus_client


def claim_process(metrics: Metrics) -> None:
    """Note that ``metrics`` records in this process (:class:`~lookupd.server.metrics.Metrics`
    calls it as it is created).

    In single-process mode, :func:`enable_multiprocess` is then too late for this process.

    Raises:
        LookupdError: multiprocess mode is on, and another ``Metrics`` already records in
            this process (a forked child may make its own).
    """
    global _created_in_memory, _recorder
    if _multiprocess_dir is None:
        _created_in_memory = True
        return
    previous = _recorder[1]() if _recorder and _recorder[0] == os.getpid() else None
    if previous is not None:
        msg = "metrics: only one Metrics per process in multiprocess mode"
        raise LookupdError(msg)
    _recorder = (os.getpid(), weakref.ref(metrics))


def scrape_registry(metrics: Metrics | None) -> CollectorRegistry:
    """Return the registry a metrics endpoint of this process serves.

    Multiprocess mode: a fresh registry merging every process's files, plus the data age of
    ``metrics`` (this process). Single-process mode: ``metrics``' registry (an empty one
    when ``metrics`` is None).
    """
    if _multiprocess_dir is None:
        return metrics.registry if metrics is not None else CollectorRegistry()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=_multiprocess_dir)  # type: ignore[no-untyped-call]  # untyped in prometheus_client
    if metrics is not None:
        registry.register(metrics.data_age)
    return registry
