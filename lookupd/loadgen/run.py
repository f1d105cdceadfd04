"""Run a load test over several client processes and add up what they saw.

One Python client process tops out below what a multi-core server answers, so the load is
split over processes (each with its share of connections, callers, calls and rate), and
their histograms and counts are merged.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from lookupd.errors import LookupdError
from lookupd.loadgen.calls import Calls
from lookupd.loadgen.worker import Load, Tally, run_process

if TYPE_CHECKING:
    from lookupd.client.tls import ClientTLS
    from lookupd.datafiles.progress import ProgressLine

_GRACE_S = 60.0  # past the test's own end (warm-up, duration, a deadline) before giving up


@dataclass(frozen=True, slots=True)
class Plan:
    """A whole load test: where, what and how hard, over how many processes."""

    target: str
    tls: ClientTLS | None
    calls: Calls
    load: Load
    """The whole test's load (connections, concurrency, requests and rate in all)."""
    processes: int


def shares(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` near-equal whole shares, larger ones first."""
    base, extra = divmod(total, parts)
    return [base + (1 if part < extra else 0) for part in range(parts)]


def process_loads(load: Load, processes: int) -> list[Load]:
    """Each process's share of ``load``: connections, callers, calls and rate split."""
    if processes < 1 or load.connections < processes or load.concurrency < processes:
        msg = "each process needs a connection and a caller of its own"
        raise ValueError(msg)
    requests = shares(load.requests, processes) if load.requests is not None else None
    return [
        replace(
            load,
            connections=connections,
            concurrency=concurrency,
            requests=None if requests is None else requests[index],
            rate=None if load.rate is None else load.rate / processes,
        )
        for index, (connections, concurrency) in enumerate(
            zip(
                shares(load.connections, processes),
                shares(load.concurrency, processes),
                strict=True,
            )
        )
    ]


def run_plan(plan: Plan, display: ProgressLine | None = None) -> Tally:
    """Run the test; return the merged tally of every process.

    One process runs here; more run as child processes (spawned: no inherited gRPC state).

    Raises:
        LookupdError: a client process failed or did not finish in time.
    """
    loads = process_loads(plan.load, plan.processes)
    if plan.processes == 1 and display is None:
        return run_process(0, plan.target, plan.tls, plan.calls, loads[0])
    context = multiprocessing.get_context("spawn")
    progress: Any = context.Queue()
    results: Any = context.Queue()
    children = [
        context.Process(
            target=_child,
            args=(index, plan.target, plan.tls, plan.calls, load, progress, results),
            daemon=True,
        )
        for index, load in enumerate(loads)
    ]
    for child in children:
        child.start()
    try:
        return _collect(plan, children, progress, results, display)
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
            child.join(5)


def _child(
    index: int,
    target: str,
    tls: ClientTLS | None,
    calls: Calls,
    load: Load,
    progress: Any,
    results: Any,
) -> None:
    try:
        results.put((index, run_process(index, target, tls, calls, load, progress), ""))
    except Exception as exc:  # reported by the parent, which fails the test with it
        results.put((index, None, f"{type(exc).__name__}: {exc}"))


def _collect(
    plan: Plan,
    children: list[Any],
    progress: Any,
    results: Any,
    display: ProgressLine | None,
) -> Tally:
    load = plan.load
    limit = load.warmup_s + (load.duration_s or 0.0) + load.timeout_s + _GRACE_S
    if load.requests is not None and load.rate is not None:
        limit += load.requests / load.rate
    deadline = time.monotonic() + limit
    done: dict[int, Tally] = {}
    seen = [(0, 0)] * len(children)
    started = time.monotonic()
    while len(done) < len(children):
        if time.monotonic() > deadline and load.requests is None:
            msg = f"client processes did not finish within {limit:.0f} s"
            raise LookupdError(msg)
        try:
            index, tally, error = results.get(timeout=0.05)
        except queue.Empty:
            pass
        else:
            if tally is None:
                msg = f"client process {index} failed: {error}"
                raise LookupdError(msg)
            done[index] = tally
        while True:
            try:
                index, calls, errors = progress.get_nowait()
            except queue.Empty:
                break
            seen[index] = (calls, errors)
        if display is not None:
            calls = sum(c for c, _ in seen)
            errors = sum(e for _, e in seen)
            elapsed = max(time.monotonic() - started - load.warmup_s, 1e-9)
            display.phase(f"bench: {calls:,} calls, {calls / elapsed:,.0f}/s, {errors:,} errors")
        if any(not child.is_alive() and child.exitcode for child in children):
            msg = "a client process died"
            raise LookupdError(msg)
    total = Tally()
    for index in sorted(done):
        total.merge(done[index])
    return total
