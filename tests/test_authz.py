"""Envoy's ``Check`` answered by lookupd: the pure parts, then the servicer in-process on
127.0.0.1 (real sockets, Envoy's own messages from xds-protos). A real Envoy in front of
``lookupd serve``: tests/test_envoy.py."""

from __future__ import annotations

import ipaddress
import json
import logging
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.service.auth.v3 import attribute_context_pb2 as attributes_pb
from envoy.service.auth.v3 import external_auth_pb2 as authz_pb
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from google.protobuf import json_format

import lookupd
from lookupd import Database
from lookupd.codes import Reason
from lookupd.errors import LookupdError
from lookupd.policies import PolicySet, parse_policies
from lookupd.server.answers import Answerer
from lookupd.server.app import LookupServer, ServerConfig
from lookupd.server.authz.address import AddressSource
from lookupd.server.authz.decision import UNKNOWN_POLICY, decide, place_of
from lookupd.server.authz.response import UPSTREAM_HEADERS
from lookupd.server.authz.servicer import AUTHZ_SERVICE, AuthzConfig
from lookupd.server.metrics import Metrics

TIMEOUT_S = 20.0
AU = "1.1.1.1"
US = "8.8.8.8"
RU = "77.88.8.8"
RU_V6 = "2a02:6b8::1"
OVERRIDDEN = "203.0.113.7"  # documentation range: reserved, allowed by a network override
PRIVATE = "10.1.2.3"
NOT_FOUND = "5.249.168.0"  # public, no country in the embedded data

POLICIES = textwrap.dedent(
    """\
    policies:
      deny-ru:
        description: everyone but RU
        deny_countries: [RU]
        unknown: deny
        reserved: deny
        networks: {allow: [203.0.113.0/24]}
      only-au:
        description: AU only
        allow_countries: [AU]
      uk-but-england:
        description: GB except England (city-level data)
        allow_countries: [GB]
        deny_subdivisions: [GB-ENG]
    """
)


def _policies(text: str = POLICIES) -> PolicySet:
    return parse_policies(text, source="authz-test.yaml")


@pytest.fixture(scope="module")
def db() -> Database:
    return lookupd.open()


@pytest.fixture(scope="module")
def answerer(db: Database) -> Answerer:
    return Answerer.load(db, _policies())


# ---------------------------------------------------------------------------------------
# Where the address comes from


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("peer", AddressSource("peer")),
        (" peer ", AddressSource("peer")),
        ("header:X-Client-IP", AddressSource("header", header="x-client-ip")),
        ("xff:1", AddressSource("xff", hops=1)),
        ("xff:16", AddressSource("xff", hops=16)),
    ],
)
def test_address_source_settings(text: str, expected: AddressSource) -> None:
    parsed = AddressSource.parse(text)
    assert parsed == expected
    assert AddressSource.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "peer, header:NAME or xff:N"),
        ("remote", "peer, header:NAME or xff:N"),
        ("peer:1", "peer, header:NAME or xff:N"),
        ("header:", "peer, header:NAME or xff:N"),
        ("header:bad name", "not a header name"),
        ("header:x-forwarded-for", "use xff:N"),
        ("xff:0", "from 1"),
        ("xff:17", "from 1"),
        ("xff:-1", "from 1"),
        ("xff:two", "from 1"),
    ],
)
def test_bad_address_source_settings_are_refused(text: str, problem: str) -> None:
    with pytest.raises(LookupdError, match=problem):
        AddressSource.parse(text)


def test_pick_reads_only_the_configured_source() -> None:
    headers = {"x-forwarded-for": "9.9.9.9, 1.1.1.1 ,8.8.8.8", "x-client-ip": " 77.88.8.8 "}
    assert AddressSource.parse("peer").pick(" 2001:db8::1 ", headers) == "2001:db8::1"
    assert AddressSource.parse("header:x-client-ip").pick(AU, headers) == RU
    assert AddressSource.parse("header:x-other").pick(AU, headers) == ""
    assert AddressSource.parse("xff:1").pick(AU, headers) == "8.8.8.8"
    assert AddressSource.parse("xff:2").pick(AU, headers) == "1.1.1.1"
    assert AddressSource.parse("xff:3").pick(AU, headers) == "9.9.9.9"
    assert AddressSource.parse("xff:4").pick(AU, headers) == ""  # fewer hops than trusted
    assert AddressSource.parse("xff:1").pick(AU, {}) == ""


# ---------------------------------------------------------------------------------------
# The decision


@pytest.mark.parametrize(
    ("policy", "address", "allowed", "reason", "country"),
    [
        ("deny-ru", US, True, "country_allowed", "US"),
        ("deny-ru", RU, False, "country_denied", "RU"),
        ("deny-ru", RU_V6, False, "country_denied", "RU"),
        ("deny-ru", PRIVATE, False, "reserved", ""),
        ("deny-ru", OVERRIDDEN, True, "network_allowed", ""),
        ("deny-ru", NOT_FOUND, False, "unknown", ""),
        ("deny-ru", "not-an-ip", False, "invalid", ""),
        ("deny-ru", "", False, "invalid", ""),
        ("deny-ru", "1.1.1.1:443", False, "invalid", ""),
        ("only-au", AU, True, "country_allowed", "AU"),
        ("only-au", US, False, "country_denied", "US"),
        ("nope", AU, False, UNKNOWN_POLICY, ""),
        ("", AU, False, UNKNOWN_POLICY, ""),
    ],
)
def test_decide(
    answerer: Answerer, policy: str, address: str, allowed: bool, reason: str, country: str
) -> None:
    decision = decide(answerer, policy, address)
    assert (decision.policy, decision.allowed, decision.reason) == (policy, allowed, reason)
    assert place_of(answerer, decision.label) == (country, "")


def test_decide_agrees_with_check_region(answerer: Answerer, db: Database) -> None:
    """The same verdict and reason as CheckRegion's function for a sample of addresses."""
    from lookupd.server.checks import check

    addresses = [AU, US, RU, RU_V6, PRIVATE, OVERRIDDEN, NOT_FOUND, "bad", "", "::1"]
    addresses += [f"{a}.{b}.7.9" for a in (2, 31, 46, 77, 95, 151, 185, 212) for b in (0, 99)]
    for policy in answerer.policies.names if answerer.policies else ():
        checked = check(answerer, policy, addresses)
        for index, address in enumerate(addresses):
            decision = decide(answerer, policy, address)
            assert decision.allowed == (checked.verdicts[index] == 1), (policy, address)
            reason = int(checked.reasons[index])
            assert decision.reason == Reason(reason).name.lower()


def test_subdivisions_on_city_level_data() -> None:
    city = lookupd.open("tests/data/maxmind-test/test-data/GeoIP2-City-Test.mmdb")
    answerer = Answerer.load(city, _policies())
    london = decide(answerer, "uk-but-england", "81.2.69.142")
    assert (london.allowed, london.reason) == (False, "subdivision_denied")
    assert place_of(answerer, london.label) == ("GB", "GB-ENG")
    assert decide(answerer, "deny-ru", "89.160.20.112").allowed  # SE-E
    assert place_of(answerer, decide(answerer, "deny-ru", "89.160.20.112").label) == (
        "SE",
        "SE-E",
    )


# ---------------------------------------------------------------------------------------
# The servicer over gRPC


def check_request(
    peer: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    policy: str | None = None,
    raw_headers: list[tuple[str, bytes]] | None = None,
) -> authz_pb.CheckRequest:
    """A CheckRequest as Envoy sends one."""
    http = attributes_pb.AttributeContext.HttpRequest(
        method="GET", path="/v1/thing", host="api.example", headers=headers or {}
    )
    if raw_headers is not None:
        http.header_map.CopyFrom(
            base_pb2.HeaderMap(
                headers=[base_pb2.HeaderValue(key=k, raw_value=v) for k, v in raw_headers]
            )
        )
    request = authz_pb.CheckRequest(
        attributes=attributes_pb.AttributeContext(
            source=attributes_pb.AttributeContext.Peer(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address=peer, port_value=40000)
                )
            ),
            request=attributes_pb.AttributeContext.Request(http=http),
        )
    )
    if policy is not None:
        request.attributes.context_extensions["lookupd_policy"] = policy
    return request


@dataclass
class Said:
    """What a CheckResponse tells Envoy, read back."""

    code: int
    allowed: bool
    headers: dict[str, str]
    removed: list[str]
    body: dict[str, str]
    http_status: int
    metadata: dict[str, Any]


def said(response: authz_pb.CheckResponse) -> Said:
    allowed = response.WhichOneof("http_response") == "ok_response"
    part = response.ok_response if allowed else response.denied_response
    headers = {}
    for option in part.headers:
        assert option.append_action == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
        headers[option.header.key] = option.header.value
    return Said(
        response.status.code,
        allowed,
        headers,
        list(response.ok_response.headers_to_remove),
        {} if allowed else json.loads(response.denied_response.body),
        0 if allowed else response.denied_response.status.code,
        json_format.MessageToDict(response.dynamic_metadata),
    )


@dataclass
class Served:
    server: LookupServer
    stub: Any
    metrics: Metrics

    def check(self, request: authz_pb.CheckRequest) -> Said:
        return said(self.stub.Check(request, timeout=TIMEOUT_S))

    def decisions(self, policy: str, verdict: str, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "lookupd_authz_decisions_total",
            {"policy": policy, "verdict": verdict, "reason": reason},
        )
        return value or 0.0


def _serve(config: AuthzConfig, answerer: Answerer | None) -> Iterator[Served]:
    metrics = Metrics()
    server_config = ServerConfig(host="127.0.0.1", port=0, authz=config)
    with LookupServer(server_config, metrics=metrics) as server:
        server.start()
        if answerer is not None:
            server.load(answerer)
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub: Any = authz_grpc.AuthorizationStub(channel)
            yield Served(server, stub, metrics)


@pytest.fixture
def served(answerer: Answerer) -> Iterator[Served]:
    yield from _serve(AuthzConfig(policy="deny-ru"), answerer)


@pytest.fixture
def served_xff(answerer: Answerer) -> Iterator[Served]:
    config = AuthzConfig(ip_source=AddressSource.parse("xff:2"), deny_status=451)
    yield from _serve(config, answerer)


def test_allowed_request_goes_upstream_with_headers_set_by_overwrite(
    served: Served, answerer: Answerer
) -> None:
    result = served.check(check_request(peer=US))
    assert (result.code, result.allowed) == (0, True)
    assert result.headers == {
        "x-lookupd-verdict": "allow",
        "x-lookupd-reason": "country_allowed",
        "x-lookupd-policy": "deny-ru",
        "x-lookupd-country": "US",
        "x-lookupd-data-version": answerer.version.id,
        "x-lookupd-policy-version": answerer.policy_version,
    }
    # The one it does not set is removed: a client cannot pre-set any of them.
    assert result.removed == ["x-lookupd-subdivision"]
    assert set(result.headers) | set(result.removed) == set(UPSTREAM_HEADERS)
    assert result.metadata == {
        "lookupd_verdict": "allow",
        "lookupd_reason": "country_allowed",
        "lookupd_policy": "deny-ru",
        "lookupd_country": "US",
        "lookupd_subdivision": "",
        "lookupd_data_version": answerer.version.id,
        "lookupd_policy_version": answerer.policy_version,
    }


def test_an_allowed_request_without_a_country_has_the_country_header_removed(
    served: Served,
) -> None:
    result = served.check(check_request(peer=OVERRIDDEN))
    assert result.allowed
    assert result.headers["x-lookupd-reason"] == "network_allowed"
    assert "x-lookupd-country" not in result.headers
    assert {"x-lookupd-country", "x-lookupd-subdivision"} <= set(result.removed)


def test_denied_request_gets_the_status_headers_and_a_json_body(
    served: Served, answerer: Answerer
) -> None:
    result = served.check(check_request(peer=RU))
    assert (result.code, result.allowed, result.http_status) == (7, False, 403)
    assert result.headers == {
        "content-type": "application/json",
        "x-lookupd-verdict": "deny",
        "x-lookupd-reason": "country_denied",
        "x-lookupd-data-version": answerer.version.id,
        "x-lookupd-policy-version": answerer.policy_version,
    }
    assert result.body == {
        "verdict": "deny",
        "reason": "country_denied",
        "policy": "deny-ru",
        "country": "RU",
        "subdivision": "",
        "data_version": answerer.version.id,
        "policy_version": answerer.policy_version,
    }
    assert result.metadata["lookupd_verdict"] == "deny"


def test_the_route_names_the_policy(served: Served) -> None:
    assert not served.check(check_request(peer=US, policy="only-au")).allowed
    assert served.check(check_request(peer=AU, policy="only-au")).allowed
    assert served.check(check_request(peer=US)).allowed  # the --authz-policy default
    # An empty extension is no name: the default applies.
    assert served.check(check_request(peer=US, policy="")).allowed


def test_unknown_or_missing_policy_fails_closed_counted_and_logged_once(
    answerer: Answerer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="lookupd.server.authz.servicer")
    for served in _serve(AuthzConfig(), answerer):  # no --authz-policy
        for _ in range(3):
            missing = served.check(check_request(peer=AU))
            unknown = served.check(check_request(peer=AU, policy="no-such-policy"))
        for result in (missing, unknown):
            assert (result.allowed, result.http_status) == (False, 403)
            assert result.headers["x-lookupd-reason"] == UNKNOWN_POLICY
            assert result.body["reason"] == UNKNOWN_POLICY
        assert unknown.body["policy"] == "no-such-policy"
        assert served.decisions("", "deny", UNKNOWN_POLICY) == 3
        assert served.decisions("no-such-policy", "deny", UNKNOWN_POLICY) == 3
    lines = [r.getMessage() for r in caplog.records if "no policy named" in r.getMessage()]
    assert len(lines) == 2, lines  # once per name
    assert any("'no-such-policy'" in line for line in lines)


def test_unknown_policy_names_share_one_label_beyond_a_bound(answerer: Answerer) -> None:
    for served in _serve(AuthzConfig(), answerer):
        for number in range(40):
            served.check(check_request(peer=AU, policy=f"typo-{number}"))
        assert served.decisions("typo-0", "deny", UNKNOWN_POLICY) == 1
        assert served.decisions("typo-31", "deny", UNKNOWN_POLICY) == 1
        assert served.decisions("typo-32", "deny", UNKNOWN_POLICY) == 0
        assert served.decisions("(other unknown)", "deny", UNKNOWN_POLICY) == 8


def test_metrics_count_checks_by_policy_verdict_and_reason(served: Served) -> None:
    for peer in (US, US, RU, "garbage"):
        served.check(check_request(peer=peer))
    assert served.decisions("deny-ru", "allow", "country_allowed") == 2
    assert served.decisions("deny-ru", "deny", "country_denied") == 1
    assert served.decisions("deny-ru", "deny", "invalid") == 1
    registry = served.metrics.registry
    labels = {"rpc": "Check", "code": "OK"}
    assert registry.get_sample_value("lookupd_requests_total", labels) == 4
    count = registry.get_sample_value("lookupd_request_duration_seconds_count", {"rpc": "Check"})
    assert count == 4


def test_xff_source_and_deny_status(served_xff: Served) -> None:
    """xff:2 (one trusted proxy before Envoy): the address left of the last one."""
    forged = f"{RU}, {AU}, {US}"  # a client wrote RU; the proxy appended AU; Envoy US
    result = served_xff.check(check_request(peer=RU, headers={"x-forwarded-for": forged}))
    assert result.allowed is False  # no default policy here: the route must name one
    result = served_xff.check(
        check_request(peer=RU, headers={"x-forwarded-for": forged}, policy="only-au")
    )
    assert result.allowed
    denied = served_xff.check(
        check_request(peer=AU, headers={"x-forwarded-for": f"{RU}, {US}"}, policy="only-au")
    )
    assert (denied.allowed, denied.http_status, denied.body["reason"]) == (
        False,
        451,
        "country_denied",
    )
    short = served_xff.check(
        check_request(peer=AU, headers={"x-forwarded-for": US}, policy="only-au")
    )
    assert (short.allowed, short.body["reason"]) == (False, "invalid")


def test_header_source_reads_raw_headers_too(answerer: Answerer) -> None:
    config = AuthzConfig(policy="only-au", ip_source=AddressSource.parse("header:x-client-ip"))
    for served in _serve(config, answerer):
        assert served.check(check_request(peer=RU, headers={"x-client-ip": AU})).allowed
        assert not served.check(check_request(peer=AU, headers={"x-client-ip": US})).allowed
        assert not served.check(check_request(peer=AU)).allowed  # missing: invalid
        # Envoy with encode_raw_headers sends header_map (raw bytes) instead.
        raw = check_request(peer=RU, raw_headers=[("X-Client-IP", AU.encode())])
        assert served.check(raw).allowed


def test_answers_follow_a_reload(answerer: Answerer, db: Database) -> None:
    """Responses are kept per loaded data and policies: a reload changes them at once."""
    stricter = Answerer.load(db, _policies(POLICIES.replace("[RU]", "[RU, US]")))
    assert stricter.policy_version != answerer.policy_version
    for served in _serve(AuthzConfig(policy="deny-ru"), answerer):
        before = served.check(check_request(peer=US))
        served.server.load(stricter)
        after = served.check(check_request(peer=US))
    assert before.allowed
    assert before.headers["x-lookupd-policy-version"] == answerer.policy_version
    assert not after.allowed
    assert after.body["policy_version"] == stricter.policy_version


def test_unavailable_until_loaded(answerer: Answerer) -> None:
    for served in _serve(AuthzConfig(policy="deny-ru"), None):
        with pytest.raises(grpc.RpcError) as failure:
            served.check(check_request(peer=US))
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        labels = {"rpc": "Check", "code": "UNAVAILABLE"}
        assert served.metrics.registry.get_sample_value("lookupd_requests_total", labels) == 1


def test_malformed_bytes_are_invalid_argument(served: Served) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{served.server.port}")
    with channel:
        call: Any = channel.unary_unary(f"/{AUTHZ_SERVICE}/Check")
        with pytest.raises(grpc.RpcError) as failure:
            call(b"\x0a\x05\xff\xff", timeout=TIMEOUT_S)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ---------------------------------------------------------------------------------------
# One address at a time (the Check path) agrees with the batch path (CheckRegion's)


def _edge_addresses(db: Database, count: int) -> list[str]:
    """Segment starts and the addresses before them (IPv4 and IPv6), reserved ranges,
    random addresses, IPv4-mapped forms and text that does not parse."""
    rng = np.random.default_rng(20261204)
    out: list[str] = []
    v4 = db.v4.starts.astype(np.int64)
    for start in rng.choice(v4, count // 4):
        for value in (int(start), max(int(start) - 1, 0)):
            out.append(str(ipaddress.IPv4Address(value)))
            out.append(f"::ffff:{ipaddress.IPv4Address(value)}")
    v6 = db.v6.starts
    for row in rng.choice(len(v6), count // 8):
        high, low = (int(part) for part in v6[row])
        value = high << 64 | low
        out += [str(ipaddress.IPv6Address(value)), str(ipaddress.IPv6Address(max(value - 1, 0)))]
    out += [str(ipaddress.IPv4Address(int(v))) for v in rng.integers(0, 1 << 32, count // 8)]
    out += ["10.0.0.1", "127.0.0.1", "192.168.7.7", "100.64.0.1", "224.0.0.1", "0.0.0.0"]
    out += ["::1", "::", "fe80::1", "2001:db8::1", "ff02::1", "64:ff9b::808:808"]
    out += ["203.0.113.7", "203.0.113.200", "198.51.100.1", "192.0.2.1"]
    out += ["", " ", "1.1.1.1 ", "1.2.3.256", "01.2.3.4", "fe80::1%eth0", "x" * 60, "::ffff:1"]
    return out


@pytest.mark.parametrize("policies", ["test", "example"])
def test_one_at_a_time_agrees_with_the_batch(db: Database, policies: str) -> None:
    from lookupd.policies import example_policies_path, load_policies

    policy_set = _policies() if policies == "test" else load_policies(example_policies_path())
    answerer = Answerer.load(db, policy_set)
    compiled = answerer.policies
    assert compiled is not None
    addresses = _edge_addresses(db, 4000)
    batch = db.lookup(addresses)
    for index, address in enumerate(addresses):
        label, status, _ = db.locate_one(address)
        assert (label, status) == (batch.labels[index], batch.status[index]), address
    for name in compiled.names:
        decided = compiled.evaluate(name, batch)
        for index, address in enumerate(addresses):
            label, status, key = db.locate_one(address)
            one = compiled.decide_one(name, label, status, key)
            assert one == (decided.verdicts[index], decided.reasons[index]), (name, address)
