"""``lookupd bench``: the load generator against real servers on 127.0.0.1, bounded by counts."""

from __future__ import annotations

import io
import ipaddress
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from certs import Certs, write_certs

import lookupd
from lookupd import Database
from lookupd.cli import bench as bench_cli
from lookupd.cli import main
from lookupd.client.tls import ClientTLS
from lookupd.codes import Status
from lookupd.datafiles.progress import ProgressLine
from lookupd.errors import LookupdError
from lookupd.loadgen import addresses as loadgen_addresses
from lookupd.loadgen.addresses import FAMILIES, random_public, read_addresses
from lookupd.loadgen.calls import RPCS, Calls, build_calls
from lookupd.loadgen.report import Report
from lookupd.loadgen.run import Plan, process_loads, run_plan, shares
from lookupd.loadgen.worker import Load, Tally, new_histogram
from lookupd.policies import example_policies_path, load_policies
from lookupd.server.answers import Answerer
from lookupd.server.app import LookupServer, ServerConfig
from lookupd.server.tls import ServerTLS
from lookupd.v1 import lookup_pb2 as pb
from lookupd.wire import LOOKUP_SERVICE

_TIMEOUT_S = 10.0
_POLICY = "api-supported"


@pytest.fixture(scope="module")
def db() -> Database:
    return lookupd.open()


@pytest.fixture(scope="module")
def answerer(db: Database) -> Answerer:
    return Answerer.load(db, load_policies(example_policies_path()))


@pytest.fixture(scope="module")
def target(answerer: Answerer) -> Iterator[str]:
    server = LookupServer(ServerConfig(host="127.0.0.1", port=0)).start()
    server.load(answerer)
    yield f"127.0.0.1:{server.port}"
    server.stop(0)


@pytest.fixture(scope="module")
def addresses(db: Database) -> list[str]:
    return random_public(db, "mixed", 400, seed=7)


def _load(**overrides: object) -> Load:
    fields: dict[str, object] = {
        "connections": 1,
        "concurrency": 4,
        "duration_s": None,
        "requests": 120,
        "rate": None,
        "timeout_s": _TIMEOUT_S,
        "warmup_s": 0.0,
    }
    fields.update(overrides)
    return Load(**fields)  # type: ignore[arg-type]


def _run(target: str, calls: Calls, load: Load, processes: int = 1) -> Report:
    plan = Plan(target, None, calls, load, processes)
    return Report(plan, run_plan(plan))


def _histogram_count(report: Report) -> int:
    histogram = new_histogram()
    histogram.decode_and_add(report.tally.histogram)
    return int(histogram.get_total_count())


# ---------------------------------------------------------------------------------------
# What is sent


def test_the_cli_spells_the_rpcs_and_families_as_the_package_does() -> None:
    assert bench_cli.RPCS == RPCS
    assert bench_cli.FAMILIES == FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_random_addresses_are_public_and_of_the_family(db: Database, family: str) -> None:
    drawn = random_public(db, family, 500, seed=3)  # type: ignore[arg-type]
    assert len(drawn) == 500
    assert (db.lookup(drawn).status == Status.OK).all()
    versions = Counter(ipaddress.ip_address(text).version for text in drawn)
    expected = {"ipv4": {4}, "ipv6": {6}, "mixed": {4, 6}}[family]
    assert set(versions) == expected
    if family == "mixed":
        assert min(versions.values()) > 200  # alternating, less the few redrawn
    assert drawn == random_public(db, family, 500, seed=3)  # type: ignore[arg-type]
    assert drawn != random_public(db, family, 500, seed=4)  # type: ignore[arg-type]


def test_an_address_file_is_read_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "addresses.txt"
    path.write_text("# from the access log\n1.1.1.1\n\n  ::1  \nnot-an-ip\n")
    assert read_addresses(path) == ["1.1.1.1", "::1", "not-an-ip"]
    path.write_text("# nothing\n\n")
    with pytest.raises(LookupdError, match="no addresses"):
        read_addresses(path)
    monkeypatch.setattr(loadgen_addresses, "MAX_FILE_ADDRESSES", 2)
    path.write_text("1.1.1.1\n1.1.1.2\n1.1.1.3\n")
    with pytest.raises(LookupdError, match="more than 2 addresses"):
        read_addresses(path)
    with pytest.raises(LookupdError, match="cannot read"):
        read_addresses(tmp_path / "missing.txt")


def test_requests_are_built_once_and_carry_the_batches() -> None:
    given = ["1.1.1.1", "2001:db8::1", "8.8.8.8"]
    text = build_calls("text", given, 2)
    assert text.method == f"/{LOOKUP_SERVICE}/Lookup"
    # Cycled through the addresses: each request a batch of 2.
    assert [list(pb.LookupRequest.FromString(r).addresses) for r in text.requests] == [
        ["1.1.1.1", "2001:db8::1"],
        ["8.8.8.8", "1.1.1.1"],
    ]
    packed = pb.PackedLookupRequest.FromString(build_calls("packed", given, 3).requests[0])
    assert packed.ipv4 == bytes([1, 1, 1, 1, 8, 8, 8, 8])
    assert packed.ipv6 == ipaddress.ip_address("2001:db8::1").packed
    check = pb.CheckRegionRequest.FromString(build_calls("check", given, 1, policy="p").requests[0])
    assert (check.policy, list(check.addresses)) == ("p", ["1.1.1.1"])
    assert build_calls("stream", given, 1).streaming
    with pytest.raises(ValueError, match="cannot send it"):
        build_calls("packed", ["1.1.1.1", "bad"], 2)
    with pytest.raises(ValueError, match="needs a policy"):
        build_calls("check", given, 1)
    with pytest.raises(ValueError, match="batch of at least 1"):
        build_calls("text", given, 0)


@pytest.mark.parametrize("rpc", RPCS)
def test_the_data_version_is_read_without_the_answers(rpc: str) -> None:
    calls = build_calls(rpc, ["1.1.1.1"], 1, policy="p")  # type: ignore[arg-type]
    version = pb.DataVersion(id="ab" * 32, built_at="2026-06-17")
    response = {
        "text": pb.LookupResponse(countries=["AU"], status=[pb.STATUS_OK], data_version=version),
        "packed": pb.PackedLookupResponse(ipv4_countries=b"AU", data_version=version),
        "stream": pb.PackedLookupResponse(ipv4_countries=b"AU", data_version=version),
        "check": pb.CheckRegionResponse(
            verdicts=[pb.VERDICT_ALLOW], reasons=[pb.REASON_COUNTRY_ALLOWED], data_version=version
        ),
    }[rpc]
    assert calls.data_version(response.SerializeToString()) == "ab" * 32


def test_the_load_is_split_over_the_processes() -> None:
    assert shares(10, 3) == [4, 3, 3]
    loads = process_loads(_load(connections=3, concurrency=7, requests=10, rate=90.0), 3)
    assert [(x.connections, x.concurrency, x.requests) for x in loads] == [
        (1, 3, 4),
        (1, 2, 3),
        (1, 2, 3),
    ]
    assert [x.rate for x in loads] == [30.0, 30.0, 30.0]
    with pytest.raises(ValueError, match="connection and a caller"):
        process_loads(_load(connections=1), 2)


# ---------------------------------------------------------------------------------------
# Against a real server


@pytest.mark.parametrize("rpc", RPCS)
def test_every_rpc_is_answered_and_counted(
    target: str, answerer: Answerer, addresses: list[str], rpc: str
) -> None:
    calls = build_calls(rpc, addresses, 50, policy=_POLICY)  # type: ignore[arg-type]
    report = _run(target, calls, _load(connections=2, concurrency=4, requests=120))
    tally = report.tally
    assert (tally.calls, tally.ok, dict(tally.errors)) == (120, 120, {})
    assert tally.addresses == 120 * 50
    assert tally.versions == {answerer.version.id: 120}
    assert _histogram_count(report) == 120
    latency = list(report.latency_us().values())[:-1]  # the mean last
    assert latency == sorted(latency)
    assert latency[0] >= 1


def test_several_processes_add_up(target: str, answerer: Answerer, addresses: list[str]) -> None:
    calls = build_calls("packed", addresses, 20)
    report = _run(target, calls, _load(connections=2, concurrency=4, requests=301), processes=2)
    assert (report.tally.calls, report.tally.ok) == (301, 301)
    assert report.tally.versions == {answerer.version.id: 301}
    assert _histogram_count(report) == 301
    assert report.tally.cpu_s > 0


def test_a_duration_bounds_a_closed_loop(target: str, addresses: list[str]) -> None:
    calls = build_calls("text", addresses, 10)
    report = _run(target, calls, _load(requests=None, duration_s=0.5, warmup_s=0.2))
    assert report.tally.calls > 0
    assert report.tally.calls == report.tally.ok
    assert 0.5 <= report.tally.wall_s < 0.5 + _TIMEOUT_S


def test_an_open_loop_sends_at_its_rate(target: str, addresses: list[str]) -> None:
    calls = build_calls("packed", addresses, 10)
    report = _run(target, calls, _load(requests=None, duration_s=1.0, rate=100.0))
    tally = report.tally
    # Calls fall due on a fixed schedule: a late client catches up, so about 100 fell due.
    assert 50 <= tally.due <= 101
    assert tally.calls == tally.due == tally.ok
    assert report.as_json()["mode"] == "open"


def test_failures_are_counted_by_status_code(target: str, addresses: list[str]) -> None:
    calls = build_calls("check", addresses, 5, policy="no-such-policy")
    report = _run(target, calls, _load(requests=30))
    assert (report.tally.calls, report.tally.ok) == (30, 0)
    assert report.tally.errors == {"NOT_FOUND": 30}
    assert report.tally.versions == {}
    with socket_closed() as dead:
        down = _run(dead, build_calls("text", addresses, 5), _load(requests=3, timeout_s=2.0))
    assert down.tally.errors == {"UNAVAILABLE": 3}


class socket_closed:
    """A 127.0.0.1 port nothing listens on (bound, then closed)."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return f"127.0.0.1:{port}"

    def __exit__(self, *_: object) -> None:
        return None


# ---------------------------------------------------------------------------------------
# Coordinated omission: a stall shows on every call that fell due during it


def _stalling_server(stall_s: float) -> tuple[grpc.Server, str]:
    """A Lookup that takes ``stall_s`` on its first call, then answers at once."""
    first = threading.Event()
    answer = pb.LookupResponse(data_version=pb.DataVersion(id="v")).SerializeToString()

    def lookup(request: bytes, context: grpc.ServicerContext) -> bytes:
        if not first.is_set():
            first.set()
            time.sleep(stall_s)
        return answer

    handler = grpc.method_handlers_generic_handler(
        LOOKUP_SERVICE, {"Lookup": grpc.unary_unary_rpc_method_handler(lookup)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def _slow_calls(report: Report, at_least_us: int) -> int:
    """How many calls took ``at_least_us`` or longer (to the histogram's precision)."""
    histogram = new_histogram()
    histogram.decode_and_add(report.tally.histogram)
    return sum(
        item.count_at_value_iterated_to
        for item in histogram.get_recorded_iterator()
        if item.value_iterated_to >= at_least_us
    )


def test_an_open_loop_counts_queueing_a_closed_loop_hides() -> None:
    calls = build_calls("text", ["1.1.1.1"], 1)
    server, stalling = _stalling_server(1.0)
    try:
        open_loop = _run(
            stalling, calls, _load(concurrency=1, requests=None, duration_s=2.0, rate=50.0)
        )
    finally:
        server.stop(0)
    server, stalling = _stalling_server(1.0)
    try:
        closed_loop = _run(stalling, calls, _load(concurrency=1, requests=100))
    finally:
        server.stop(0)
    # Due every 20 ms: the ~25 calls due in the stall's first half waited half a second or
    # more for the one caller. The closed loop sent nothing during the stall: one slow call.
    assert _slow_calls(open_loop, 500_000) >= 10
    assert _slow_calls(closed_loop, 500_000) == 1


# ---------------------------------------------------------------------------------------
# The report, TLS, the command


def test_the_verdict_names_a_saturated_client() -> None:
    calls = build_calls("text", ["1.1.1.1"], 1)
    busy = Tally(calls=10, ok=10, wall_s=2.0, cpu_s=1.9)
    plan = Plan("t:1", None, calls, _load(), 1)
    assert Report(plan, busy).verdict().startswith("client saturated: each client process used")
    idle = Tally(calls=10, ok=10, wall_s=2.0, cpu_s=0.2)
    assert Report(plan, idle).verdict().startswith("client not saturated (10%")
    behind = Tally(calls=50, ok=50, wall_s=1.0, cpu_s=0.2, due=50)
    late = Plan("t:1", None, calls, _load(requests=None, duration_s=1.0, rate=100.0), 1)
    assert "50 calls where 100 fell due" in Report(late, behind).verdict()
    assert Report(late, behind).as_json()["client_saturated"] is True


def test_over_tls(answerer: Answerer, tmp_path: Path, addresses: list[str]) -> None:
    certs: Certs = write_certs(tmp_path / "certs")
    server = LookupServer(
        ServerConfig(host="127.0.0.1", port=0, tls=ServerTLS(certs.server_cert, certs.server_key))
    ).start()
    server.load(answerer)
    try:
        target = f"127.0.0.1:{server.port}"
        calls = build_calls("packed", addresses, 10)
        plan = Plan(target, ClientTLS(ca=certs.ca), calls, _load(requests=20), 1)
        tally = run_plan(plan)
        assert (tally.calls, tally.ok) == (20, 20)
        plaintext = run_plan(Plan(target, None, calls, _load(requests=2, timeout_s=2.0), 1))
        assert plaintext.ok == 0
    finally:
        server.stop(0)


def test_progress_is_shown_on_a_terminal(target: str, addresses: list[str]) -> None:
    screen = io.StringIO()
    calls = build_calls("text", addresses, 10)
    plan = Plan(target, None, calls, _load(requests=None, duration_s=1.2), 1)
    tally = run_plan(plan, ProgressLine(screen, clock=time.monotonic))
    assert tally.calls == tally.ok > 0
    assert "bench: " in screen.getvalue()
    assert " calls, " in screen.getvalue()


def test_the_command_prints_a_report_and_json(
    target: str, answerer: Answerer, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["bench", target, "--requests", "40", "--warmup", "0", "--batch", "5"]
    assert main([*common, "--rpc", "check", "--policy", _POLICY]) == 0
    text = capsys.readouterr().out
    assert "calls: 40 in " in text
    assert f"data version {answerer.version.id[:12]}: 40 calls" in text
    assert main([*common, "--rpc", "stream", "--family", "ipv6", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["calls"], record["ok"], record["rpc"]) == (40, 40, "stream")
    assert set(record["latency_us"]) == {"p50", "p90", "p99", "p99.9", "p99.99", "max", "mean"}
    assert record["data_versions"] == {answerer.version.id: 40}
    # A failing call makes the exit status 1; a bad command line 2.
    assert main([*common, "--rpc", "check", "--policy", "nope"]) == 1
    assert main([*common, "--rpc", "check"]) == 2
    assert "--rpc check needs --policy" in capsys.readouterr().err
