"""lookupd.server.metrics, metrics_http and metrics_process: exact values after known
observations, scraped over HTTP on 127.0.0.1.

Multiprocess mode changes process-global state (an environment variable, prometheus_client's
value class), so it is tested only in a child interpreter that forks workers of its own:
this pytest process always stays in single-process mode.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

import lookupd
from lookupd.codes import Status
from lookupd.datafiles.data_version import parse_built_at
from lookupd.errors import LookupdError
from lookupd.server import metrics as lm
from lookupd.server import metrics_http, metrics_process

_TIMEOUT_S = 10.0
_SUBPROCESS_TIMEOUT_S = 120.0
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _all_ok(count: int) -> np.ndarray[tuple[int], np.dtype[np.uint8]]:
    """The statuses of a batch of ``count`` addresses answered OK."""
    return np.full(count, Status.OK, dtype=np.uint8)


@pytest.fixture(autouse=True)
def _single_process_mode() -> Iterator[None]:
    """Every test starts and ends with this process in single-process mode."""
    assert metrics_process.MULTIPROC_ENV not in os.environ, (
        "unset PROMETHEUS_MULTIPROC_DIR to run the tests"
    )
    yield
    assert metrics_process.MULTIPROC_ENV not in os.environ
    assert metrics_process.multiprocess_directory() is None
    assert values.ValueClass is values.MutexValue


# "Now" for the metrics under test: load times and data ages come out exact.
_NOW = 1_800_000_000.0


@pytest.fixture
def metrics() -> lm.Metrics:
    return lm.Metrics(clock=lambda: _NOW)


@pytest.fixture
def server(metrics: lm.Metrics) -> Iterator[metrics_http.MetricsServer]:
    with metrics_http.serve_metrics("127.0.0.1", 0, metrics) as running:
        yield running


def _get(port: int, path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=_TIMEOUT_S) as answer:
        body: bytes = answer.read()
    return body.decode()


def _parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _scrape(port: int) -> Samples:
    return _parse(_get(port))


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def _verdicts(samples: Samples, policy: str, verdict: str, reason: str) -> float:
    return _value(samples, "lookupd_verdicts_total", policy=policy, verdict=verdict, reason=reason)


def _has(samples: Samples, name: str, **labels: str) -> bool:
    return (name, frozenset(labels.items())) in samples


# ------------------------------------------------------------------------------------------
# Single-process mode


def test_lookup_counts_addresses_by_status(
    metrics: lm.Metrics, server: metrics_http.MetricsServer
) -> None:
    statuses = [Status.OK, Status.OK, Status.NOT_FOUND, Status.INVALID_ADDRESS, Status.RESERVED]
    metrics.observe_lookup("Lookup", np.array(statuses, dtype=np.uint8), 0.0002)
    metrics.observe_lookup("LookupPacked", _all_ok(2_000), 0.003)
    samples = _scrape(server.port)
    expected = {"ok": 2, "not_found": 1, "invalid_address": 1, "reserved": 1}
    for status, count in expected.items():
        assert _value(samples, "lookupd_addresses_total", rpc="Lookup", status=status) == count
    assert _value(samples, "lookupd_addresses_total", rpc="LookupPacked", status="ok") == 2_000
    assert _value(samples, "lookupd_addresses_total", rpc="LookupPacked", status="reserved") == 0
    assert _value(samples, "lookupd_requests_total", rpc="Lookup", code="OK") == 1
    assert _value(samples, "lookupd_requests_total", rpc="LookupPacked", code="OK") == 1
    # Histograms: cumulative buckets, count and sum.
    duration = "lookupd_request_duration_seconds"
    assert _value(samples, f"{duration}_bucket", rpc="Lookup", le="0.0001") == 0
    assert _value(samples, f"{duration}_bucket", rpc="Lookup", le="0.00025") == 1
    assert _value(samples, f"{duration}_bucket", rpc="Lookup", le="+Inf") == 1
    assert _value(samples, f"{duration}_count", rpc="LookupPacked") == 1
    assert _value(samples, f"{duration}_sum", rpc="LookupPacked") == pytest.approx(0.003)
    assert _value(samples, "lookupd_batch_size_bucket", rpc="Lookup", le="3.0") == 0
    assert _value(samples, "lookupd_batch_size_bucket", rpc="Lookup", le="10.0") == 1
    assert _value(samples, "lookupd_batch_size_sum", rpc="Lookup") == 5
    assert _value(samples, "lookupd_batch_size_bucket", rpc="LookupPacked", le="1000.0") == 0
    assert _value(samples, "lookupd_batch_size_bucket", rpc="LookupPacked", le="3000.0") == 1


def test_lookup_of_an_empty_batch(metrics: lm.Metrics, server: metrics_http.MetricsServer) -> None:
    metrics.observe_lookup("LookupPacked", _all_ok(0), 0.0001)
    samples = _scrape(server.port)
    assert _value(samples, "lookupd_requests_total", rpc="LookupPacked", code="OK") == 1
    assert _value(samples, "lookupd_batch_size_count", rpc="LookupPacked") == 1
    assert _value(samples, "lookupd_batch_size_sum", rpc="LookupPacked") == 0
    for status in ("ok", "not_found", "invalid_address", "reserved"):
        assert _value(samples, "lookupd_addresses_total", rpc="LookupPacked", status=status) == 0


def test_lookup_counts_numbers_that_are_no_status(
    metrics: lm.Metrics, server: metrics_http.MetricsServer
) -> None:
    # 0 is the proto's STATUS_UNSPECIFIED, never answered; 9 no status at all.
    metrics.observe_lookup("Lookup", np.array([0, Status.OK, 9, 9], dtype=np.uint8), 0.0001)
    samples = _scrape(server.port)
    assert _value(samples, "lookupd_addresses_total", rpc="Lookup", status="ok") == 1
    assert _value(samples, "lookupd_addresses_total", rpc="Lookup", status="0") == 1
    assert _value(samples, "lookupd_addresses_total", rpc="Lookup", status="9") == 2


def test_lookup_of_an_all_ok_batch_past_the_default_limit(
    metrics: lm.Metrics, server: metrics_http.MetricsServer
) -> None:
    metrics.observe_lookup("LookupPacked", _all_ok(300_000), 0.01)
    metrics.observe_lookup("LookupPacked", _all_ok(10)[::2], 0.01)  # not contiguous
    samples = _scrape(server.port)
    assert _value(samples, "lookupd_addresses_total", rpc="LookupPacked", status="ok") == 300_005


def test_check_counts_verdicts_by_policy_and_reason(
    metrics: lm.Metrics, server: metrics_http.MetricsServer
) -> None:
    # lookupd.v1 numbers: ALLOW 1, DENY 2; COUNTRY_ALLOWED 1, COUNTRY_DENIED 2, INVALID 8.
    metrics.observe_check("api-supported", [1, 1, 2, 2, 2], [1, 1, 2, 8, 8], 0.001)
    metrics.observe_check(
        "api-supported", np.array([1], dtype=np.uint8), np.array([1], dtype=np.uint8), 0.001
    )
    metrics.observe_check("eu-only", [2], [2], 0.0005)
    samples = _scrape(server.port)
    verdicts = "lookupd_verdicts_total"
    assert _verdicts(samples, "api-supported", "allow", "country_allowed") == 3
    assert _verdicts(samples, "api-supported", "deny", "country_denied") == 1
    assert _verdicts(samples, "api-supported", "deny", "invalid") == 2
    assert _verdicts(samples, "eu-only", "deny", "country_denied") == 1
    assert sum(value for (name, _), value in samples.items() if name == verdicts) == 7
    assert _value(samples, "lookupd_requests_total", rpc="CheckRegion", code="OK") == 3
    assert _value(samples, "lookupd_batch_size_sum", rpc="CheckRegion") == 7
    # CheckRegion answers are counted as verdicts, not as addresses.
    assert not any(
        name == "lookupd_addresses_total" and ("rpc", "CheckRegion") in labels
        for name, labels in samples
    )


def test_check_names_every_proto_verdict_and_reason(
    metrics: lm.Metrics, server: metrics_http.MetricsServer
) -> None:
    from lookupd.v1 import lookup_pb2 as pb

    reasons = [number for _, number in pb.Reason.items()]
    metrics.observe_check("p", [pb.VERDICT_DENY] * len(reasons), reasons, 0.001)
    samples = _scrape(server.port)
    names = {
        dict(labels)["reason"]
        for name, labels in samples
        if name == "lookupd_verdicts_total" and dict(labels)["verdict"] == "deny"
    }
    assert names == {name.removeprefix("REASON_").lower() for name, _ in pb.Reason.items()}
    assert "subdivision_allowed" in names


def test_check_refuses_mismatched_arrays(metrics: lm.Metrics) -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.observe_check("p", [1, 1], [1], 0.001)


def test_failures_count_by_code(metrics: lm.Metrics, server: metrics_http.MetricsServer) -> None:
    metrics.observe_failure("Lookup", "INVALID_ARGUMENT", 0.0001)
    metrics.observe_failure("Lookup", "INVALID_ARGUMENT", 0.0001)
    metrics.observe_failure("CheckRegion", "NOT_FOUND", 0.0001)
    metrics.observe_lookup("Lookup", _all_ok(1), 0.0001)
    samples = _scrape(server.port)
    requests = "lookupd_requests_total"
    assert _value(samples, requests, rpc="Lookup", code="INVALID_ARGUMENT") == 2
    assert _value(samples, requests, rpc="Lookup", code="OK") == 1
    assert _value(samples, requests, rpc="CheckRegion", code="NOT_FOUND") == 1
    assert _value(samples, requests, rpc="CheckRegion", code="OK") == 0
    # Failed calls are timed too, but have no batch size.
    assert _value(samples, "lookupd_request_duration_seconds_count", rpc="Lookup") == 3
    assert _value(samples, "lookupd_batch_size_count", rpc="Lookup") == 1


def test_calls_without_addresses(metrics: lm.Metrics, server: metrics_http.MetricsServer) -> None:
    metrics.observe_call("GetInfo", 0.0001)
    metrics.observe_call("GetInfo", 0.0001)
    metrics.observe_call("Reload", 0.2)
    metrics.observe_lookup("NewRpc", np.array([Status.NOT_FOUND] * 2, dtype=np.uint8), 0.0001)
    samples = _scrape(server.port)
    assert _value(samples, "lookupd_requests_total", rpc="GetInfo", code="OK") == 2
    assert _value(samples, "lookupd_request_duration_seconds_count", rpc="GetInfo") == 2
    assert _value(samples, "lookupd_requests_total", rpc="Reload", code="OK") == 1
    for rpc in ("GetInfo", "Reload"):
        assert not _has(samples, "lookupd_batch_size_count", rpc=rpc)
        assert not _has(samples, "lookupd_addresses_total", rpc=rpc, status="ok")
    assert _value(samples, "lookupd_addresses_total", rpc="NewRpc", status="not_found") == 2
    assert _value(samples, "lookupd_batch_size_sum", rpc="NewRpc") == 2


def test_known_series_exist_before_any_call(server: metrics_http.MetricsServer) -> None:
    samples = _scrape(server.port)
    for rpc in ("Lookup", "LookupPacked", "StreamLookup", "CheckRegion", "GetInfo"):
        assert _value(samples, "lookupd_requests_total", rpc=rpc, code="OK") == 0
        assert _value(samples, "lookupd_request_duration_seconds_count", rpc=rpc) == 0
    for rpc in ("Lookup", "LookupPacked", "StreamLookup"):
        assert _value(samples, "lookupd_addresses_total", rpc=rpc, status="ok") == 0
    assert _value(samples, "lookupd_reloads_total", result="success") == 0
    assert _value(samples, "lookupd_reloads_total", result="failure") == 0
    assert _value(samples, "lookupd_worker_restarts_total") == 0
    assert not any(name == "lookupd_data_age_seconds" for name, _ in samples)
    # Single-process mode adds the process's own metrics.
    assert any(name == "process_cpu_seconds_total" for name, _ in samples) == (
        sys.platform == "linux"
    )


def test_set_data_flips_info_and_gives_the_age(
    metrics: lm.Metrics, server: metrics_http.MetricsServer
) -> None:
    first_built = _NOW - 7200
    metrics.set_data("v1", first_built, "p1")
    samples = _scrape(server.port)
    assert _value(samples, "lookupd_data_info", version="v1", policy_version="p1") == 1
    assert _value(samples, "lookupd_data_build_timestamp_seconds") == pytest.approx(first_built)

    built = _NOW - 3600
    metrics.set_data("v2", built, "p1")
    metrics.set_data("v2", built, "p1")  # the same again: no change
    samples = _scrape(server.port)
    assert _value(samples, "lookupd_data_info", version="v1", policy_version="p1") == 0
    assert _value(samples, "lookupd_data_info", version="v2", policy_version="p1") == 1
    assert _value(samples, "lookupd_data_build_timestamp_seconds") == pytest.approx(built)
    assert _value(samples, "lookupd_data_loaded_timestamp_seconds") == _NOW
    assert _value(samples, "lookupd_data_age_seconds") == 3600
    assert metrics.built_at == built

    metrics.set_data("v2", built, "p2")  # new policies, same data
    samples = _scrape(server.port)
    info = {
        (dict(labels)["version"], dict(labels)["policy_version"]): value
        for (name, labels), value in samples.items()
        if name == "lookupd_data_info"
    }
    assert info == {("v1", "p1"): 0, ("v2", "p1"): 0, ("v2", "p2"): 1}


def test_unknown_build_time(metrics: lm.Metrics, server: metrics_http.MetricsServer) -> None:
    metrics.set_data("v1", _NOW - 60, "p1")
    metrics.set_data("v2", None, "p1")
    samples = _scrape(server.port)
    assert math.isnan(_value(samples, "lookupd_data_build_timestamp_seconds"))
    assert not any(name == "lookupd_data_age_seconds" for name, _ in samples)
    assert _value(samples, "lookupd_data_info", version="v2", policy_version="p1") == 1


def test_reloads_and_restarts(metrics: lm.Metrics, server: metrics_http.MetricsServer) -> None:
    metrics.reload_finished(True, 0.2)
    metrics.reload_finished(True, 0.3)
    metrics.reload_finished(False, 40.0)
    metrics.worker_restarted()
    samples = _scrape(server.port)
    assert _value(samples, "lookupd_reloads_total", result="success") == 2
    assert _value(samples, "lookupd_reloads_total", result="failure") == 1
    assert _value(samples, "lookupd_reload_duration_seconds_count") == 3
    assert _value(samples, "lookupd_reload_duration_seconds_bucket", le="0.25") == 1
    assert _value(samples, "lookupd_reload_duration_seconds_bucket", le="30.0") == 2
    assert _value(samples, "lookupd_reload_duration_seconds_sum") == pytest.approx(40.5)
    assert _value(samples, "lookupd_worker_restarts_total") == 1


def test_two_servers_in_one_process_do_not_collide() -> None:
    first, second = lm.Metrics(), lm.Metrics()
    with (
        metrics_http.serve_metrics("127.0.0.1", 0, first) as one,
        metrics_http.serve_metrics("127.0.0.1", 0, second) as two,
    ):
        first.observe_lookup("Lookup", _all_ok(3), 0.001)
        assert _value(_scrape(one.port), "lookupd_addresses_total", rpc="Lookup", status="ok") == 3
        assert _value(_scrape(two.port), "lookupd_addresses_total", rpc="Lookup", status="ok") == 0


def test_only_the_metrics_path(server: metrics_http.MetricsServer) -> None:
    for path in ("/", "/metrics/", "/healthz"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            _get(server.port, path)
        assert caught.value.code == 404
        caught.value.close()
    text = _get(server.port, "/metrics?name[]=lookupd_worker_restarts_total")
    assert "lookupd_worker_restarts_total 0.0" in text


def test_content_type_is_prometheus_text(server: metrics_http.MetricsServer) -> None:
    url = f"http://127.0.0.1:{server.port}/metrics"
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")


def test_serving_without_metrics() -> None:
    with metrics_http.serve_metrics("127.0.0.1", 0, None) as running:
        assert _parse(_get(running.port)) == {}


def test_port_in_use_is_a_lookupd_error() -> None:
    # A socket without SO_REUSEPORT holds the port: the metrics server cannot share it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(LookupdError, match=rf"cannot serve metrics on 127\.0\.0\.1:{port}: "):
            metrics_http.serve_metrics("127.0.0.1", port, None)


def test_unresolvable_host_is_a_lookupd_error() -> None:
    with pytest.raises(LookupdError, match=r"cannot serve metrics on no such host\.invalid:0"):
        metrics_http.serve_metrics("no such host.invalid", 0, None)


def test_the_same_port_twice_with_reuseport(metrics: lm.Metrics) -> None:
    with metrics_http.serve_metrics("127.0.0.1", 0, metrics) as one:
        with metrics_http.serve_metrics("127.0.0.1", one.port, metrics) as two:
            assert two.port == one.port
            assert "lookupd_requests_total" in _get(one.port)
        assert "lookupd_requests_total" in _get(one.port)


def test_close_is_idempotent_and_frees_the_port(metrics: lm.Metrics) -> None:
    running = metrics_http.serve_metrics("127.0.0.1", 0, metrics)
    port = running.port
    running.close()
    running.close()
    with pytest.raises(urllib.error.URLError):
        _get(port)
    # Bound again at once (SO_REUSEADDR).
    with metrics_http.serve_metrics("127.0.0.1", port, metrics) as again:
        assert again.port == port


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("[::]", [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]),
        ("::", [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]),
        ("", [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]),
        ("0.0.0.0", [(socket.AF_INET, "0.0.0.0")]),
        ("127.0.0.1", [(socket.AF_INET, "127.0.0.1")]),
        ("[::1]", [(socket.AF_INET6, "::1")]),
        ("::1", [(socket.AF_INET6, "::1")]),
    ],
)
def test_hosts_read_as_the_grpc_side_reads_them(host: str, expected: list[tuple[int, str]]) -> None:
    if not socket.has_ipv6:
        expected = [pair for pair in expected if pair[0] != socket.AF_INET6]
    got = [(family, address[0]) for family, address in metrics_http._bind_candidates(host, 9)]
    assert got == expected
    assert all(address[1] == 9 for _, address in metrics_http._bind_candidates(host, 9))


def test_ipv6_loopback(metrics: lm.Metrics) -> None:
    try:
        running = metrics_http.serve_metrics("[::1]", 0, metrics)
    except LookupdError:
        pytest.skip("no IPv6 loopback here")
    with (
        running,
        urllib.request.urlopen(
            f"http://[::1]:{running.port}/metrics", timeout=_TIMEOUT_S
        ) as answer,
    ):
        assert b"lookupd_requests_total" in answer.read()
    assert running.host == "::1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-17", 1_781_654_400.0),
        ("2026-06-17T12:00:00+00:00", 1_781_697_600.0),
        ("2026-06-17T12:00:00Z", 1_781_697_600.0),
        ("2026-06-17T14:00:00+02:00", 1_781_697_600.0),
        ("2026-06-17T12:00:00", 1_781_697_600.0),
        ("", None),
        ("last tuesday", None),
    ],
)
def test_parse_built_at(text: str, expected: float | None) -> None:
    assert parse_built_at(text) == expected


def test_mark_process_dead_is_a_no_op_in_single_process_mode() -> None:
    metrics_process.mark_process_dead(os.getpid())


def test_enable_multiprocess_refusals_change_nothing(tmp_path: Path) -> None:
    with pytest.raises(LookupdError, match="does not exist"):
        metrics_process.enable_multiprocess(tmp_path / "missing")
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "counter_123.db").write_bytes(b"")
    with pytest.raises(LookupdError, match=r"metrics files of an earlier run \(counter_123\.db\)"):
        metrics_process.enable_multiprocess(stale)
    lm.Metrics()  # this process has a Metrics in memory now: too late to switch
    with pytest.raises(LookupdError, match=r"before any Metrics\(\) is created"):
        metrics_process.enable_multiprocess(tmp_path)
    # (the autouse fixture checks that nothing changed)


# ------------------------------------------------------------------------------------------
# Multiprocess mode, in a child interpreter


def _run_python(code: str, *args: str) -> str:
    """Run ``code`` in a fresh interpreter that imports this lookupd; return its stdout."""
    env = {key: value for key, value in os.environ.items() if key != metrics_process.MULTIPROC_ENV}
    package_root = str(Path(lookupd.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    # No BLAS thread pool: the child forks, and forking a threaded process is deprecated.
    env["OPENBLAS_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=_SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# A supervisor in miniature: multiprocess mode, then two forked workers that both serve the
# same metrics port and record different things, scraped while they run, after they exit,
# and after mark_process_dead. Prints what it saw as JSON; the test asserts.
_WORKERS_SCRIPT = r"""
import json, os, sys, time, traceback, urllib.request
import numpy as np
from lookupd.server import metrics as lm
from lookupd.server import metrics_http, metrics_process

directory = sys.argv[1]
metrics_process.enable_multiprocess(directory)
metrics_process.enable_multiprocess(directory)  # again, the same: nothing happens
now = 1_800_000_000.0  # every process's clock: the data ages come out exact
supervisor = lm.Metrics(clock=lambda: now)
supervisor.worker_restarted()
# per worker: statuses (1 OK, 2 INVALID_ADDRESS, 3 NOT_FOUND, 4 RESERVED), verdicts, reasons,
# data version, build time
WORK = [
    ([1, 1, 3, 2, 4], [1, 2], [1, 2], "v-a", now - 1000),
    ([1, 4, 4], [1], [6], "v-b", now - 2000),
]

def scrape(port):
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()

def worker(index, port, up, go):
    # Worker 0 keeps the Metrics it inherited; worker 1 makes its own.
    metrics = supervisor if index == 0 else lm.Metrics(clock=lambda: now)
    server = metrics_http.serve_metrics("127.0.0.1", port, metrics)
    statuses, verdicts, reasons, version, built_at = WORK[index]
    metrics.observe_lookup("Lookup", np.array(statuses, dtype=np.uint8), 0.001)
    metrics.observe_check("api-supported", verdicts, reasons, 0.002)
    metrics.observe_failure("Lookup", "INVALID_ARGUMENT", 0.0001)
    metrics.set_data("v-old", now - 5000, "p1")
    metrics.set_data(version, built_at, "p1")
    metrics.reload_finished(index == 0, 0.5)
    os.write(up, f"{server.port}\n".encode())
    os.read(go, 1)  # returns when the parent closes its end
    server.close()

def fork(index, port):
    up_r, up_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(up_r)
            os.close(go_w)
            worker(index, port, up_w, go_r)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(up_w)
    os.close(go_r)
    with os.fdopen(up_r) as up:
        line = up.readline()
    return pid, int(line), go_w

# Worker 0 picks the port; worker 1 binds the same one while worker 0 serves it.
pid0, port, go0 = fork(0, 0)
pid1, port1, go1 = fork(1, port)
out = {"ports": [port, port1], "alive": None}
seen = set()
for _ in range(200):  # until both workers have answered a scrape (the kernel picks one)
    text = scrape(port)
    out["alive"] = out["alive"] or text
    for line in text.splitlines():
        if line.startswith("lookupd_data_age_seconds "):
            seen.add(float(line.split()[1]))
    if len(seen) >= 2:
        break
out["ages"] = sorted(seen)
for go in (go0, go1):
    os.close(go)
out["exit"] = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in (pid0, pid1)]
# The supervisor scrapes once the workers are gone: their counters stay, their live gauges
# stay too until mark_process_dead.
with metrics_http.serve_metrics("127.0.0.1", port, supervisor) as server:
    out["exited"] = scrape(server.port)
    metrics_process.mark_process_dead(pid0)
    metrics_process.mark_process_dead(pid1)
    out["dead"] = scrape(server.port)
out["files"] = sorted(name.split("_")[0] for name in os.listdir(directory))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def workers_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    directory = tmp_path_factory.mktemp("prometheus-multiproc")
    result: dict[str, object] = json.loads(_run_python(_WORKERS_SCRIPT, str(directory)))
    return result


def test_workers_share_one_port_and_both_answer(workers_run: dict[str, object]) -> None:
    ports = workers_run["ports"]
    assert isinstance(ports, list)
    assert ports[0] == ports[1]
    assert workers_run["exit"] == [0, 0]
    # Each worker answers with its own data age, and both answered at least once.
    assert workers_run["ages"] == [1000.0, 2000.0]


def _check_merged_counters(samples: Samples) -> None:
    """The sums over both workers and the supervisor."""
    addresses = "lookupd_addresses_total"
    expected = {"ok": 3, "not_found": 1, "invalid_address": 1, "reserved": 3}
    for status, count in expected.items():
        assert _value(samples, addresses, rpc="Lookup", status=status) == count
    assert _value(samples, addresses, rpc="LookupPacked", status="ok") == 0
    requests = "lookupd_requests_total"
    assert _value(samples, requests, rpc="Lookup", code="OK") == 2
    assert _value(samples, requests, rpc="Lookup", code="INVALID_ARGUMENT") == 2
    assert _value(samples, requests, rpc="CheckRegion", code="OK") == 2
    assert _verdicts(samples, "api-supported", "allow", "country_allowed") == 1
    assert _verdicts(samples, "api-supported", "deny", "country_denied") == 1
    assert _verdicts(samples, "api-supported", "allow", "reserved") == 1
    duration = "lookupd_request_duration_seconds"
    assert _value(samples, f"{duration}_count", rpc="Lookup") == 4
    assert _value(samples, f"{duration}_bucket", rpc="Lookup", le="0.0001") == 2
    assert _value(samples, f"{duration}_bucket", rpc="Lookup", le="0.001") == 4
    assert _value(samples, f"{duration}_sum", rpc="Lookup") == pytest.approx(0.0022)
    assert _value(samples, "lookupd_batch_size_count", rpc="Lookup") == 2
    assert _value(samples, "lookupd_batch_size_sum", rpc="Lookup") == 8
    assert _value(samples, "lookupd_batch_size_bucket", rpc="Lookup", le="3.0") == 1
    assert _value(samples, "lookupd_batch_size_sum", rpc="CheckRegion") == 3
    assert _value(samples, "lookupd_reloads_total", result="success") == 1
    assert _value(samples, "lookupd_reloads_total", result="failure") == 1
    assert _value(samples, "lookupd_reload_duration_seconds_count") == 2
    assert _value(samples, "lookupd_worker_restarts_total") == 1


def _info(samples: Samples) -> dict[str, float]:
    return {
        dict(labels)["version"]: value
        for (name, labels), value in samples.items()
        if name == "lookupd_data_info"
    }


def test_workers_merged_while_running(workers_run: dict[str, object]) -> None:
    text = workers_run["alive"]
    assert isinstance(text, str)
    samples = _parse(text)
    _check_merged_counters(samples)
    # livemax: 1 while some live worker serves a version; v-old is served by none.
    assert _info(samples) == {"v-old": 0, "v-a": 1, "v-b": 1}
    # livemostrecent: the build time worker 1 set last (not the supervisor's unset 0).
    build = _value(samples, "lookupd_data_build_timestamp_seconds")
    loaded = _value(samples, "lookupd_data_loaded_timestamp_seconds")
    assert loaded - build == pytest.approx(2000, abs=60)
    # No pid labels on any series.
    assert not any(dict(labels).get("pid") for _, labels in samples)
    # Custom collectors do not merge: no process_* metrics in multiprocess mode.
    assert not any(name.startswith("process_") for name, _ in samples)


def test_workers_counted_after_they_exit(workers_run: dict[str, object]) -> None:
    exited, dead = workers_run["exited"], workers_run["dead"]
    assert isinstance(exited, str)
    assert isinstance(dead, str)
    _check_merged_counters(_parse(exited))
    assert _info(_parse(exited)) == {"v-old": 0, "v-a": 1, "v-b": 1}
    samples = _parse(dead)
    _check_merged_counters(samples)  # totals never go down when workers die
    assert _info(samples) == {}  # live gauges of dead workers are gone
    assert not _has(samples, "lookupd_data_build_timestamp_seconds")
    assert not _has(samples, "lookupd_data_loaded_timestamp_seconds")
    # The supervisor, answering now, has no data of its own: no age.
    assert not _has(samples, "lookupd_data_age_seconds")


def test_workers_files(workers_run: dict[str, object]) -> None:
    # Counters and histograms of every process (3), live gauges of the supervisor only.
    assert workers_run["files"] == ["counter"] * 3 + ["gauge"] + ["histogram"] * 3


_GUARDS_SCRIPT = r"""
import os, sys
from lookupd.server import metrics as lm
from lookupd.server import metrics_http, metrics_process
from lookupd.errors import LookupdError

first, second = sys.argv[1:3]
metrics_process.enable_multiprocess(first)
assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == os.path.abspath(first)
assert metrics_process.multiprocess_directory() == os.path.abspath(first)
try:
    metrics_process.enable_multiprocess(second)
except LookupdError as exc:
    print("second directory:", exc)
kept = lm.Metrics()
try:
    lm.Metrics()
except LookupdError as exc:
    print("second Metrics:", exc)
pid = os.fork()
if pid == 0:
    lm.Metrics()  # a forked child may make its own
    os._exit(0)
print("child:", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_multiprocess_guards(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    out = _run_python(_GUARDS_SCRIPT, str(first), str(second))
    assert out.splitlines() == [
        f"second directory: metrics: multiprocess mode is already on with {first}, not {second}",
        "second Metrics: metrics: only one Metrics per process in multiprocess mode",
        "child: 0",
    ]
