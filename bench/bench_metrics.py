"""What the Prometheus metrics cost a call (single-process mode, as ``--workers 1``).

``observe_lookup`` counts a batch's statuses and times the call; ``observe_check`` counts
verdicts and reasons per policy. Baseline: one ``Counter.inc()`` of prometheus_client, the
cheapest thing a metric can do. Multiprocess mode (``--workers N``) writes to memory-mapped
files instead and costs about twice as much; it needs a fresh process, so it is not here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter

from lookupd.codes import Status
from lookupd.server.metrics import Metrics

_MIXED = np.random.default_rng(7).choice(
    np.array(
        [*[Status.OK] * 6, Status.NOT_FOUND, Status.INVALID_ADDRESS, Status.RESERVED],
        dtype=np.uint8,
    ),
    1_000,
)
_ALL_OK = np.full(1_000, Status.OK, dtype=np.uint8)
_VERDICTS = np.random.default_rng(8).integers(1, 3, 1_000, dtype=np.uint8)
_REASONS = np.random.default_rng(9).integers(1, 10, 1_000, dtype=np.uint8)


@pytest.fixture(scope="module")
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.mark.benchmark(group="metrics")
def test_counter_inc(run_call: Any) -> None:
    counter = Counter("bench_total", "a counter", registry=CollectorRegistry())
    run_call(counter.inc, workload="one call", baseline="Counter.inc")


@pytest.mark.benchmark(group="metrics")
def test_observe_lookup_all_ok(run_call: Any, metrics: Metrics) -> None:
    run_call(metrics.observe_lookup, "LookupPacked", _ALL_OK, 0.0001, workload="one call")


@pytest.mark.benchmark(group="metrics")
def test_observe_lookup_mixed(run_call: Any, metrics: Metrics) -> None:
    run_call(metrics.observe_lookup, "LookupPacked", _MIXED, 0.0001, workload="one call")


@pytest.mark.benchmark(group="metrics")
def test_observe_check(run_call: Any, metrics: Metrics) -> None:
    run_call(
        metrics.observe_check, "api-supported", _VERDICTS, _REASONS, 0.0001, workload="one call"
    )
