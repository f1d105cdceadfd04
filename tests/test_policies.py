"""Supported-region policies: loading and validation, compiling, and vectorised evaluation.

A small hand-made database with subdivision labels (``UA-43``) and one without pin every
rule and reason; a plain-Python model of the precedence (``ipaddress`` + the raw rows)
checks the vectorised evaluation on random policies and addresses.
"""

from __future__ import annotations

import ast
import hashlib
import ipaddress
import textwrap
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from reference import ReferenceRanges

import lookupd
import lookupd.policies
from lookupd import Database, LookupResult
from lookupd.codes import Reason, Verdict
from lookupd.core import reserved
from lookupd.core.labels import split_label
from lookupd.core.table import build_table
from lookupd.policies import (
    CompiledPolicies,
    Decisions,
    Network,
    Policy,
    PolicyError,
    PolicySet,
    example_policies_path,
    load_policies,
    parse_policies,
)
from lookupd.policies.iso3166 import countries

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Row = tuple[str, str, str]

ALLOW, DENY = Verdict.ALLOW, Verdict.DENY
_U64_MASK = (1 << 64) - 1
_MAPPED = 0xFFFF_0000_0000

# ---------------------------------------------------------------------------------------
# Hand-made data: a city-level database (subdivision labels) and a country-level one.

_CITY_LABELS = ("", "US", "RU", "UA", "UA-43", "UA-30", "ZZ", "AN", "XK", "DE")
_CITY_V4: list[Row] = [
    ("1.0.0.0", "1.0.0.255", "US"),
    ("2.0.0.0", "2.0.0.255", "RU"),
    ("3.0.0.0", "3.0.0.255", "UA"),
    ("3.0.1.0", "3.0.1.255", "UA-43"),  # Crimea
    ("3.0.2.0", "3.0.2.255", "UA-30"),  # Kyiv
    ("4.0.0.0", "4.0.0.255", "ZZ"),  # the data's own "unknown"
    ("5.0.0.0", "5.0.0.255", "AN"),  # withdrawn code
    ("6.0.0.0", "6.0.0.255", "XK"),  # user-assigned code
    ("7.0.0.0", "7.0.0.255", "DE"),
    ("10.0.0.0", "10.255.255.255", "US"),  # reserved space the data labels anyway
]
_CITY_V6: list[Row] = [
    ("2600::", "2600:0:ffff:ffff:ffff:ffff:ffff:ffff", "US"),
    ("2a00::", "2a00:0:ffff:ffff:ffff:ffff:ffff:ffff", "RU"),
    ("2a01::", "2a01:0:ffff:ffff:ffff:ffff:ffff:ffff", "UA-43"),
    ("fd00::", "fd00::ffff", "DE"),  # reserved (unique local)
]
_COUNTRY_LABELS = ("", "US", "RU", "UA")
_COUNTRY_V4: list[Row] = [
    ("1.0.0.0", "1.0.0.255", "US"),
    ("2.0.0.0", "2.0.0.255", "RU"),
    ("3.0.0.0", "3.0.2.255", "UA"),
]


def _int_rows(rows: list[Row]) -> list[tuple[int, int, str]]:
    return [
        (int(ipaddress.ip_address(a)), int(ipaddress.ip_address(b)), label) for a, b, label in rows
    ]


def _table(version: int, rows: list[Row], labels: tuple[str, ...]) -> lookupd.RangeTable:
    ints = _int_rows(rows)
    return build_table(
        4 if version == 4 else 6,
        [r[0] for r in ints],
        [r[1] for r in ints],
        [labels.index(r[2]) for r in ints],
    )


def _database(v4: list[Row], v6: list[Row], labels: tuple[str, ...]) -> Database:
    return Database(_table(4, v4, labels), _table(6, v6, labels), labels)


@pytest.fixture(scope="module")
def city_db() -> Database:
    return _database(_CITY_V4, _CITY_V6, _CITY_LABELS)


@pytest.fixture(scope="module")
def country_db() -> Database:
    return _database(_COUNTRY_V4, [], _COUNTRY_LABELS)


def _policies(text: str) -> PolicySet:
    return parse_policies(textwrap.dedent(text), source="test.yaml")


def _one(body: str, name: str = "p") -> PolicySet:
    """A policy set of one policy ``name`` whose fields are ``body`` (YAML, any indent)."""
    fields = textwrap.indent(textwrap.dedent(body).strip(), " " * 4)
    return parse_policies(f"policies:\n  {name}:\n{fields}\n", source="test.yaml")


def _decide(
    policy_set: PolicySet, db: Database, addresses: list[str], name: str = "p"
) -> list[tuple[Verdict, Reason]]:
    decisions = policy_set.compile(db).evaluate(name, db.lookup(addresses))
    return [
        (Verdict(v), Reason(r))
        for v, r in zip(decisions.verdicts.tolist(), decisions.reasons.tolist(), strict=True)
    ]


# ---------------------------------------------------------------------------------------
# Country and subdivision rules.


def test_allow_list(city_db: Database) -> None:
    policies = _one("description: d\nallow_countries: [US, UA]")
    assert _decide(policies, city_db, ["1.0.0.1", "2.0.0.1", "3.0.0.1", "7.0.0.1"]) == [
        (ALLOW, Reason.COUNTRY_ALLOWED),
        (DENY, Reason.COUNTRY_DENIED),
        (ALLOW, Reason.COUNTRY_ALLOWED),
        (DENY, Reason.COUNTRY_DENIED),
    ]


def test_deny_list(city_db: Database) -> None:
    policies = _one("description: d\ndeny_countries: [RU]")
    assert _decide(policies, city_db, ["1.0.0.1", "2.0.0.1", "2a00::1", "7.0.0.1"]) == [
        (ALLOW, Reason.COUNTRY_ALLOWED),
        (DENY, Reason.COUNTRY_DENIED),
        (DENY, Reason.COUNTRY_DENIED),
        (ALLOW, Reason.COUNTRY_ALLOWED),
    ]


def test_deny_subdivision_inside_an_allowed_country(city_db: Database) -> None:
    policies = _one("description: d\nallow_countries: [UA]\ndeny_subdivisions: [UA-43]")
    addresses = ["3.0.0.1", "3.0.1.1", "3.0.2.1", "2a01::1"]
    assert _decide(policies, city_db, addresses) == [
        (ALLOW, Reason.COUNTRY_ALLOWED),  # UA without a subdivision
        (DENY, Reason.SUBDIVISION_DENIED),  # UA-43
        (ALLOW, Reason.COUNTRY_ALLOWED),  # UA-30 follows UA
        (DENY, Reason.SUBDIVISION_DENIED),
    ]


def test_deny_subdivision_in_a_deny_list(city_db: Database) -> None:
    policies = _one("description: d\ndeny_countries: [RU]\ndeny_subdivisions: [UA-43]")
    assert _decide(policies, city_db, ["3.0.0.1", "3.0.1.1", "2.0.0.1"]) == [
        (ALLOW, Reason.COUNTRY_ALLOWED),
        (DENY, Reason.SUBDIVISION_DENIED),
        (DENY, Reason.COUNTRY_DENIED),
    ]


def test_allow_subdivision_inside_a_denied_country(city_db: Database) -> None:
    policies = _one("description: d\ndeny_countries: [UA]\nallow_subdivisions: [UA-30]")
    assert _decide(policies, city_db, ["3.0.0.1", "3.0.1.1", "3.0.2.1", "1.0.0.1"]) == [
        (DENY, Reason.COUNTRY_DENIED),
        (DENY, Reason.COUNTRY_DENIED),
        (ALLOW, Reason.SUBDIVISION_ALLOWED),
        (ALLOW, Reason.COUNTRY_ALLOWED),
    ]


def test_data_convention_codes_can_be_listed(city_db: Database) -> None:
    policies = _one("description: d\nallow_countries: [XK]")
    assert _decide(policies, city_db, ["6.0.0.1", "5.0.0.1"]) == [
        (ALLOW, Reason.COUNTRY_ALLOWED),
        (DENY, Reason.COUNTRY_DENIED),  # AN cannot be listed: the allow-list denies it
    ]


# ---------------------------------------------------------------------------------------
# Unknown, reserved, invalid.


@pytest.mark.parametrize("verdict", ["allow", "deny"])
def test_unknown(city_db: Database, verdict: str) -> None:
    policies = _one(f"description: d\ndeny_countries: []\nunknown: {verdict}")
    expected = (Verdict[verdict.upper()], Reason.UNKNOWN)
    # A gap in the data, a gap in IPv6, and the data's own ZZ label.
    assert _decide(policies, city_db, ["8.0.0.1", "2a02::1", "4.0.0.1"]) == [expected] * 3


def test_defaults(city_db: Database) -> None:
    policy = _one("description: d\nallow_countries: [US]").policies["p"]
    assert policy.unknown is DENY
    assert policy.reserved is ALLOW
    assert policy.deny_subdivisions == frozenset()
    assert policy.allow_networks == policy.deny_networks == ()
    assert _decide(_one("description: d\nallow_countries: [US]"), city_db, ["8.0.0.1"]) == [
        (DENY, Reason.UNKNOWN)
    ]


@pytest.mark.parametrize("verdict", ["allow", "deny"])
def test_reserved(city_db: Database, verdict: str) -> None:
    policies = _one(f"description: d\nallow_countries: [US, DE]\nreserved: {verdict}")
    expected = (Verdict[verdict.upper()], Reason.RESERVED)
    # 10.0.0.1 and fd00::1 are labelled US and DE by the data: reserved wins over that.
    addresses = ["10.0.0.1", "127.0.0.1", "::1", "fd00::1", "::ffff:192.168.0.1", "ff02::1"]
    assert _decide(policies, city_db, addresses) == [expected] * len(addresses)


def test_invalid_is_always_denied(city_db: Database) -> None:
    policies = _one(
        """
        description: d
        deny_countries: []
        unknown: allow
        reserved: allow
        networks: {allow: ["::/0", "::/128", 0.0.0.0/0]}
        """
    )
    decided = _decide(policies, city_db, ["nope", "", "1.2.3", "fe80::1%eth0", "1.0.0.1"])
    assert decided == [(DENY, Reason.INVALID)] * 4 + [(ALLOW, Reason.NETWORK_ALLOWED)]


# ---------------------------------------------------------------------------------------
# Network overrides and precedence.


def test_network_overrides_beat_countries(city_db: Database) -> None:
    policies = _one(
        """
        description: d
        allow_countries: [US]
        networks:
          allow: [2.0.0.0/25, 2a00::/48]
          deny: [1.0.0.128/25]
        """
    )
    addresses = ["2.0.0.1", "2.0.0.128", "2a00::1", "2a00:0:1::1", "1.0.0.1", "1.0.0.129"]
    assert _decide(policies, city_db, addresses) == [
        (ALLOW, Reason.NETWORK_ALLOWED),
        (DENY, Reason.COUNTRY_DENIED),
        (ALLOW, Reason.NETWORK_ALLOWED),
        (DENY, Reason.COUNTRY_DENIED),
        (ALLOW, Reason.COUNTRY_ALLOWED),
        (DENY, Reason.NETWORK_DENIED),
    ]


def test_network_override_beats_subdivision_reserved_and_unknown(city_db: Database) -> None:
    policies = _one(
        """
        description: d
        allow_countries: [UA]
        deny_subdivisions: [UA-43]
        reserved: deny
        unknown: deny
        networks: {allow: [3.0.1.0/28, 10.0.0.0/8, 8.0.0.0/24, "fd00::/8"]}
        """
    )
    addresses = ["3.0.1.1", "3.0.1.200", "10.1.2.3", "8.0.0.1", "fd00::1", "192.168.0.1"]
    assert _decide(policies, city_db, addresses) == [
        (ALLOW, Reason.NETWORK_ALLOWED),  # beats the subdivision rule
        (DENY, Reason.SUBDIVISION_DENIED),
        (ALLOW, Reason.NETWORK_ALLOWED),  # beats reserved: deny
        (ALLOW, Reason.NETWORK_ALLOWED),  # beats unknown: deny
        (ALLOW, Reason.NETWORK_ALLOWED),
        (DENY, Reason.RESERVED),
    ]


def test_most_specific_network_wins(city_db: Database) -> None:
    policies = _one(
        """
        description: d
        allow_countries: [US]
        networks:
          deny: [1.0.0.0/8, 1.0.0.0/24, "2600::/16"]
          allow: [1.0.0.0/16, 1.0.0.64/26, "2600::/32"]
        """
    )
    addresses = ["1.1.0.1", "1.0.1.1", "1.0.0.1", "1.0.0.65", "2600::1", "2600:1::1"]
    assert _decide(policies, city_db, addresses) == [
        (DENY, Reason.NETWORK_DENIED),  # /8
        (ALLOW, Reason.NETWORK_ALLOWED),  # /16
        (DENY, Reason.NETWORK_DENIED),  # /24
        (ALLOW, Reason.NETWORK_ALLOWED),  # /26
        (ALLOW, Reason.NETWORK_ALLOWED),  # 2600::/32
        (DENY, Reason.NETWORK_DENIED),  # 2600::/16
    ]


def test_equal_prefix_deny_wins(city_db: Database) -> None:
    policies = _one(
        """
        description: d
        deny_countries: []
        networks:
          allow: [1.0.0.0/24, "::ffff:2.0.0.0/120"]
          deny: [1.0.0.0/24, 2.0.0.0/24]
        """
    )
    assert _decide(policies, city_db, ["1.0.0.1", "2.0.0.1"]) == [(DENY, Reason.NETWORK_DENIED)] * 2


def test_ipv6_networks_cover_ipv4_only_in_mapped_form(city_db: Database) -> None:
    policies = _one(
        """
        description: d
        allow_countries: []
        unknown: deny
        networks:
          allow: ["::/0", "::ffff:3.0.0.0/120"]
        """
    )
    addresses = ["1.0.0.1", "::ffff:1.0.0.1", "3.0.0.1", "::ffff:3.0.0.1", "2600::1", "::2"]
    assert _decide(policies, city_db, addresses) == [
        (DENY, Reason.COUNTRY_DENIED),  # ::/0 means all IPv6, not IPv4 too
        (DENY, Reason.COUNTRY_DENIED),
        (ALLOW, Reason.NETWORK_ALLOWED),  # written IPv4-mapped: covers 3.0.0.0/24
        (ALLOW, Reason.NETWORK_ALLOWED),
        (ALLOW, Reason.NETWORK_ALLOWED),
        (ALLOW, Reason.NETWORK_ALLOWED),
    ]
    all_ipv4 = _one("description: d\nallow_countries: []\nnetworks: {deny: ['::ffff:0:0/96']}")
    assert _decide(all_ipv4, city_db, ["1.0.0.1", "2600::1"]) == [
        (DENY, Reason.NETWORK_DENIED),
        (DENY, Reason.COUNTRY_DENIED),
    ]


# (address, expected) under one policy that has a rule at every level.
_PRECEDENCE_POLICY = """
description: every rule at once
allow_countries: [US, UA]
deny_subdivisions: [UA-43]
unknown: allow
reserved: deny
networks:
  allow: [2.0.0.0/24, 10.0.0.0/16]
  deny: [1.0.0.0/24, 3.0.0.0/25, "::/0"]
"""
_PRECEDENCE: list[tuple[str, tuple[Verdict, Reason]]] = [
    ("not-an-ip", (DENY, Reason.INVALID)),
    ("2.0.0.1", (ALLOW, Reason.NETWORK_ALLOWED)),  # beats RU denied
    ("1.0.0.1", (DENY, Reason.NETWORK_DENIED)),  # beats US allowed
    ("10.0.0.1", (ALLOW, Reason.NETWORK_ALLOWED)),  # beats reserved: deny
    ("10.1.0.1", (DENY, Reason.RESERVED)),  # reserved beats the data's US
    ("::1", (DENY, Reason.NETWORK_DENIED)),  # ::/0 beats reserved
    ("8.0.0.1", (ALLOW, Reason.UNKNOWN)),
    ("4.0.0.1", (ALLOW, Reason.UNKNOWN)),  # ZZ
    ("3.0.0.1", (DENY, Reason.NETWORK_DENIED)),
    ("3.0.0.200", (ALLOW, Reason.COUNTRY_ALLOWED)),
    ("3.0.1.1", (DENY, Reason.SUBDIVISION_DENIED)),
    ("3.0.2.1", (ALLOW, Reason.COUNTRY_ALLOWED)),
    ("7.0.0.1", (DENY, Reason.COUNTRY_DENIED)),
]


def test_precedence(city_db: Database) -> None:
    policies = _one(_PRECEDENCE_POLICY)
    addresses = [a for a, _ in _PRECEDENCE]
    assert _decide(policies, city_db, addresses) == [e for _, e in _PRECEDENCE]


def test_every_input_kind_gives_the_same_decisions(city_db: Database) -> None:
    compiled = _one(_PRECEDENCE_POLICY).compile(city_db)
    v4 = [
        ipaddress.IPv4Address(a) for a in ("2.0.0.1", "1.0.0.1", "10.0.0.1", "10.1.0.1", "8.0.0.1")
    ]
    v6 = [ipaddress.IPv6Address(a) for a in ("::1", "2600::1", "fd00::1")]
    texts = [str(a) for a in (*v4, *v6)]
    by_text = compiled.evaluate("p", city_db.lookup(texts))
    results: list[tuple[LookupResult, slice]] = [
        (city_db.lookup(np.array([int(a) for a in v4], dtype=np.uint32)), slice(0, len(v4))),
        (city_db.lookup(b"".join(a.packed for a in v4), version=4), slice(0, len(v4))),
        (city_db.lookup([f"::ffff:{a}" for a in v4]), slice(0, len(v4))),
        (city_db.lookup_lines("\n".join(texts).encode()), slice(None)),
        (
            city_db.lookup(np.array([(int(a) >> 64, int(a) & _U64_MASK) for a in v6], np.uint64)),
            slice(len(v4), None),
        ),
        (city_db.lookup(b"".join(a.packed for a in v6), version=6), slice(len(v4), None)),
    ]
    for result, part in results:
        decisions = compiled.evaluate("p", result)
        assert decisions.verdicts.tolist() == by_text.verdicts[part].tolist()
        assert decisions.reasons.tolist() == by_text.reasons[part].tolist()


def test_decisions(city_db: Database) -> None:
    compiled = _one(_PRECEDENCE_POLICY).compile(city_db)
    decisions = compiled.evaluate("p", city_db.lookup(["2.0.0.1", "1.0.0.1"]))
    assert isinstance(decisions, Decisions)
    assert len(decisions) == 2
    assert decisions.verdicts.dtype == decisions.reasons.dtype == np.uint8
    assert decisions.allowed.tolist() == [True, False]
    empty = compiled.evaluate("p", city_db.lookup([]))
    assert empty.verdicts.shape == empty.reasons.shape == (0,)


def test_unknown_policy_is_a_key_error(city_db: Database) -> None:
    compiled = _one("description: d\nallow_countries: [US]").compile(city_db)
    with pytest.raises(KeyError):
        compiled.evaluate("nope", city_db.lookup(["1.0.0.1"]))


def test_result_of_another_database_is_refused(city_db: Database, country_db: Database) -> None:
    compiled = _one("description: d\nallow_countries: [US]").compile(city_db)
    with pytest.raises(ValueError, match="not compiled for"):
        compiled.evaluate("p", country_db.lookup(["1.0.0.1"]))
    # Another database with the same label table is fine.
    twin = _database(_CITY_V4, [], _CITY_LABELS)
    assert compiled.evaluate("p", twin.lookup(["1.0.0.1"])).verdicts.tolist() == [ALLOW]


def test_compiled_attributes(city_db: Database) -> None:
    text = (
        "policies:\n"
        "  b: {description: d, allow_countries: [US]}\n"
        "  a: {description: e, deny_countries: [RU]}\n"
    )
    policy_set = parse_policies(text, source="x.yaml")
    compiled = policy_set.compile(city_db)
    assert isinstance(compiled, CompiledPolicies)
    assert compiled.names == ("b", "a")  # file order
    assert compiled.policy_set is policy_set
    assert policy_set.source == "x.yaml"
    assert policy_set.version == hashlib.sha256(text.encode()).hexdigest()
    assert policy_set.policies["a"].description == "e"
    assert "b" in repr(compiled)


# ---------------------------------------------------------------------------------------
# Compile warnings.


def test_warns_when_the_data_has_no_subdivisions(country_db: Database, city_db: Database) -> None:
    policies = _one("description: d\nallow_countries: [UA]\ndeny_subdivisions: [UA-43, UA-14]")
    warnings = policies.compile(country_db).warnings
    assert warnings == (
        "policy p: deny_subdivisions has no effect: the data carries no subdivisions",
    )
    # The rule is still compiled: on country-level data UA simply stays allowed.
    assert _decide(policies, country_db, ["3.0.1.1"]) == [(ALLOW, Reason.COUNTRY_ALLOWED)]
    both = _one(
        "description: d\ndeny_countries: [RU, UA]\nallow_subdivisions: [UA-30]\n"
        "deny_subdivisions: [US-CA]"
    )
    assert both.compile(country_db).warnings == (
        "policy p: deny_subdivisions and allow_subdivisions have no effect: the data carries "
        "no subdivisions",
    )
    # With city data, only the subdivisions the data lacks are named.
    assert policies.compile(city_db).warnings[0] == (
        "policy p: subdivisions UA-14 do not occur in the data: their addresses follow the "
        "country rule"
    )


def test_warns_about_labels_no_policy_can_list(city_db: Database) -> None:
    allow = _one("description: d\nallow_countries: [US]").compile(city_db).warnings
    assert allow == (
        "policy p: the data's labels AN are not ISO 3166-1 codes, so no policy can list "
        "them: the allow-list denies them",
    )
    deny = _one("description: d\ndeny_countries: [US]").compile(city_db).warnings
    assert deny[0].endswith("the deny-list allows them")


def test_warns_when_the_database_does_not_mark_reserved(city_db: Database) -> None:
    raw = Database(city_db.v4, city_db.v6, city_db.label_names, mark_reserved=False)
    policies = _one("description: d\ndeny_countries: []\nreserved: deny")
    assert any("mark_reserved=False" in w for w in policies.compile(raw).warnings)
    # The data's own label then decides.
    assert _decide(policies, raw, ["10.0.0.1"]) == [(ALLOW, Reason.COUNTRY_ALLOWED)]


def test_no_warnings_when_everything_applies(country_db: Database) -> None:
    assert _one("description: d\nallow_countries: [US]").compile(country_db).warnings == ()


# ---------------------------------------------------------------------------------------
# Validation: every error names the file, the policy and the field.


def _flow(fields: str) -> str:
    """A file with one policy 'p' written as a YAML flow mapping of ``fields``."""
    return f"policies:\n  p: {{{fields}}}\n"


_ERRORS: list[tuple[str, str, list[str]]] = [
    # (id, file text, fragments the message must contain)
    ("syntax", "policies: [\n", ["test.yaml: line 2", "not valid YAML"]),
    ("tab-indent", "policies:\n\tp: 1\n", ["test.yaml: line 2", "not valid YAML"]),
    ("empty", "", ["test.yaml: expected a mapping with a 'policies' key", "nothing (null)"]),
    ("top-list", "- a\n- b\n", ["expected a mapping", "got a list"]),
    ("top-typo", "policy: {}\n", ["unknown the top level 'policy'", "did you mean policies?"]),
    ("no-policies", "policies: {}\n", ["'policies' must map policy names", "a mapping"]),
    ("policies-list", "policies: [a]\n", ["'policies' must map policy names", "a list"]),
    ("bad-name", "policies:\n  'a b': {}\n", ["policy name 'a b'", "letters, digits"]),
    ("numeric-name", "policies:\n  12: {}\n", ["policy name 12"]),
    ("body-list", "policies:\n  p: [US]\n", ["policy 'p': expected a mapping of fields"]),
    (
        "field-typo",
        _flow("description: d, countires: [US]"),
        ["policy 'p': unknown field 'countires'", "did you mean", "allow_countries"],
    ),
    (
        "field-countries",
        _flow("description: d, countries: [US]"),
        ["unknown field 'countries'", "allow_countries or deny_countries"],
    ),
    (
        "field-unrelated",
        _flow("description: d, allow_countries: [US], colour: red"),
        ["unknown field 'colour'", "known: description, allow_countries"],
    ),
    (
        "no-description",
        _flow("allow_countries: [US]"),
        ["policy 'p': description: a non-empty text is required, got nothing"],
    ),
    (
        "blank-description",
        _flow("description: '  ', allow_countries: [US]"),
        ["description: a non-empty text is required, got '  '"],
    ),
    (
        "number-description",
        _flow("description: 3, allow_countries: [US]"),
        ["description: a non-empty text is required, got the number 3"],
    ),
    (
        "both-lists",
        _flow("description: d, allow_countries: [US], deny_countries: [RU]"),
        ["policy 'p': give exactly one of allow_countries", "not both"],
    ),
    (
        "neither-list",
        _flow("description: d"),
        ["policy 'p': give exactly one of allow_countries", "not neither"],
    ),
    (
        "countries-string",
        _flow("description: d, allow_countries: US"),
        ["allow_countries: expected a list of ISO 3166-1 codes, got 'US' (write [US] for one)"],
    ),
    (
        "countries-null",
        _flow("description: d, deny_countries: "),
        ["deny_countries: expected a list of ISO 3166-1 codes, got nothing (null)"],
    ),
    (
        "country-typo-mi",
        _flow("description: d, allow_countries: [US, MI]"),
        ["policy 'p': allow_countries[1]: unknown ISO 3166-1 code 'MI' (did you mean UM, "],
    ),
    (
        "country-lower",
        _flow("description: d, allow_countries: [us]"),
        ["allow_countries[0]: unknown ISO 3166-1 code 'us' (did you mean US?)"],
    ),
    (
        "country-alpha3",
        _flow("description: d, deny_countries: [RUS]"),
        ["deny_countries[0]: unknown ISO 3166-1 code 'RUS' (did you mean RU?)"],
    ),
    (
        "country-withdrawn",
        _flow("description: d, allow_countries: [AN]"),
        ["unknown ISO 3166-1 code 'AN' (did you mean CW, SX, BQ"],
    ),
    (
        "country-nothing-close",
        _flow("description: d, allow_countries: [QQ]"),
        ["allow_countries[0]: unknown ISO 3166-1 code 'QQ'"],
    ),
    (
        "country-number",
        _flow("description: d, allow_countries: [840]"),
        ["allow_countries[0]: expected a two-letter ISO 3166-1 code, got the number 840"],
    ),
    (
        "country-yes",
        _flow("description: d, allow_countries: [true]"),
        ["allow_countries[0]: expected a two-letter ISO 3166-1 code, got a boolean (true)"],
    ),
    (
        "country-zz",
        _flow("description: d, deny_countries: [ZZ]"),
        ["deny_countries[0]: ZZ is the data's 'unknown country' marker", "unknown: allow"],
    ),
    (
        "country-is-subdivision",
        _flow("description: d, deny_countries: [UA-43]"),
        ["deny_countries[0]: UA-43 is an ISO 3166-2 subdivision", "deny_subdivisions"],
    ),
    (
        "subdivision-typo",
        _flow("description: d, allow_countries: [UA], deny_subdivisions: [UA-99]"),
        ["deny_subdivisions[0]: unknown ISO 3166-2 code 'UA-99' (did you mean UA-09, UA-59?)"],
    ),
    (
        "subdivision-lower",
        _flow("description: d, allow_countries: [UA], deny_subdivisions: [ua-43]"),
        ["deny_subdivisions[0]: unknown ISO 3166-2 code 'ua-43' (did you mean UA-43?)"],
    ),
    (
        "subdivision-country-typo",
        _flow("description: d, allow_countries: [UA], deny_subdivisions: [AU-43]"),
        ["unknown ISO 3166-2 code 'AU-43' (did you mean UA-43?)"],
    ),
    (
        "subdivision-no-country",
        _flow("description: d, allow_countries: [UA], deny_subdivisions: [QQ-1]"),
        ["unknown ISO 3166-2 code 'QQ-1': no country 'QQ'"],
    ),
    (
        "subdivision-is-country",
        _flow("description: d, allow_countries: [UA], deny_subdivisions: [UA]"),
        ["deny_subdivisions[0]: UA is a country, not a subdivision"],
    ),
    (
        "subdivision-garbage",
        _flow("description: d, allow_countries: [UA], deny_subdivisions: [x]"),
        ["deny_subdivisions[0]: expected an ISO 3166-2 code such as UA-43, got 'x'"],
    ),
    (
        "subdivision-number",
        _flow("description: d, allow_countries: [UA], deny_subdivisions: [43]"),
        ["deny_subdivisions[0]: expected an ISO 3166-2 code such as UA-43, got the number 43"],
    ),
    (
        "deny-subdivision-of-denied-country",
        _flow("description: d, allow_countries: [US], deny_subdivisions: [UA-43]"),
        ["deny_subdivisions[0]: UA-43: the country rule already has UA denied"],
    ),
    (
        "deny-subdivision-of-deny-listed-country",
        _flow("description: d, deny_countries: [UA], deny_subdivisions: [UA-43]"),
        ["deny_subdivisions[0]: UA-43: the country rule already has UA denied"],
    ),
    (
        "allow-subdivision-of-allowed-country",
        _flow("description: d, allow_countries: [UA], allow_subdivisions: [UA-30]"),
        ["allow_subdivisions[0]: UA-30: the country rule already has UA allowed"],
    ),
    (
        "networks-list",
        _flow("description: d, allow_countries: [US], networks: [10.0.0.0/8]"),
        ["networks: expected a mapping with allow and/or deny lists, got a list"],
    ),
    (
        "networks-typo",
        _flow("description: d, allow_countries: [US], networks: {alow: []}"),
        ["policy 'p': networks: unknown key 'alow' (did you mean allow?)"],
    ),
    (
        "networks-string",
        _flow("description: d, allow_countries: [US], networks: {deny: 10.0.0.0/8}"),
        ["networks.deny: expected a list of CIDR networks, got '10.0.0.0/8'"],
    ),
    (
        "host-bits-v4",
        _flow("description: d, allow_countries: [US], networks: {allow: [10.0.0.1/8]}"),
        ["policy 'p': networks.allow[0]: 10.0.0.1/8 has host bits set: did you mean 10.0.0.0/8?"],
    ),
    (
        "host-bits-v6",
        _flow("description: d, allow_countries: [US], networks: {deny: ['2001:db8::1/32']}"),
        ["networks.deny[0]: 2001:db8::1/32 has host bits set: did you mean 2001:db8::/32?"],
    ),
    (
        "not-a-network",
        _flow("description: d, allow_countries: [US], networks: {deny: [banana]}"),
        ["networks.deny[0]: not a network: 'banana'"],
    ),
    (
        "bad-prefix",
        _flow("description: d, allow_countries: [US], networks: {deny: [10.0.0.0/33]}"),
        ["networks.deny[0]: not a network: '10.0.0.0/33'"],
    ),
    (
        "zone-id",
        _flow("description: d, allow_countries: [US], networks: {deny: ['fe80::%1/64']}"),
        ["networks.deny[0]: 'fe80::%1/64': zone indices"],
    ),
    (
        "network-number",
        _flow("description: d, allow_countries: [US], networks: {deny: [10]}"),
        ["networks.deny[0]: expected a network such as 192.0.2.0/24", "got the number 10"],
    ),
    (
        "unknown-value",
        _flow("description: d, allow_countries: [US], unknown: maybe"),
        ["policy 'p': unknown: expected allow or deny, got 'maybe'"],
    ),
    (
        "reserved-bool",
        _flow("description: d, allow_countries: [US], reserved: true"),
        ["policy 'p': reserved: expected allow or deny, got a boolean (true)"],
    ),
    (
        "duplicate-policy",
        "policies:\n  p: {description: d, allow_countries: [US]}\n"
        "  p: {description: e, deny_countries: [RU]}\n",
        ["test.yaml: line 3", "found the key 'p' twice"],
    ),
    (
        "duplicate-field",
        "policies:\n  p:\n    description: d\n"
        "    allow_countries: [US]\n    allow_countries: [RU]\n",
        ["line 5", "found the key 'allow_countries' twice"],
    ),
]


@pytest.mark.parametrize(
    ("text", "fragments"), [e[1:] for e in _ERRORS], ids=[e[0] for e in _ERRORS]
)
def test_validation_errors(text: str, fragments: list[str]) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policies(text, source="test.yaml")
    message = str(caught.value)
    assert message.startswith("test.yaml: ")
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_policy_error_is_a_lookupd_error() -> None:
    assert issubclass(PolicyError, lookupd.LookupdError)


def test_mi_suggests_what_suggest_country_does() -> None:
    with pytest.raises(PolicyError, match=r"did you mean UM, IM, MO, MU, NI\?"):
        _one("description: d\nallow_countries: [MI]")


def test_norway_is_not_a_boolean(city_db: Database) -> None:
    policy = _one("description: d\nallow_countries: [NO, SE, DK, FI, IS]").policies["p"]
    assert policy.countries == frozenset({"NO", "SE", "DK", "FI", "IS"})
    # yes/no/on/off are plain strings, so they are not verdicts either.
    with pytest.raises(PolicyError, match="expected allow or deny, got 'no'"):
        _one("description: d\nallow_countries: [NO]\nunknown: no")


def test_yaml_anchors_and_merge_keys_work() -> None:
    policy_set = _policies(
        """
        policies:
          base: &base
            description: base
            allow_countries: &nordics [NO, SE, DK]
            reserved: deny
          derived:
            <<: *base
            description: derived
            networks: {allow: [10.0.0.0/8]}
        """
    )
    derived = policy_set.policies["derived"]
    assert derived.countries == frozenset({"NO", "SE", "DK"})
    assert derived.reserved is DENY
    assert derived.description == "derived"


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"missing\.yaml: cannot read the policy file"):
        load_policies(tmp_path / "missing.yaml")
    with pytest.raises(PolicyError, match=r"cannot read the policy file"):
        load_policies(tmp_path)  # a directory
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"policies:\n  p: {description: \xff\xfe}\n")
    with pytest.raises(PolicyError, match=r"binary\.yaml: .*not valid YAML"):
        load_policies(binary)


def test_load_from_a_file(tmp_path: Path, city_db: Database) -> None:
    path = tmp_path / "policies.yaml"
    data = b"policies:\n  only-us:\n    description: US\n    allow_countries: [US]\n"
    path.write_bytes(data)
    policy_set = load_policies(path)
    assert policy_set.source == str(path)
    assert policy_set.version == hashlib.sha256(data).hexdigest()
    assert list(policy_set.policies) == ["only-us"]
    assert isinstance(policy_set.policies, MappingProxyType)
    path.write_text("policies:\n  bad: {description: d, allow_countries: [MI]}\n")
    with pytest.raises(PolicyError, match=r"policies\.yaml: policy 'bad': allow_countries\[0\]"):
        load_policies(str(path))


def test_policy_decide_label() -> None:
    policy = Policy("p", "d", "allow", frozenset({"UA"}), deny_subdivisions=frozenset({"UA-43"}))
    assert policy.decide_label("") == (DENY, Reason.UNKNOWN)
    assert policy.decide_label("ZZ") == (DENY, Reason.UNKNOWN)
    assert policy.decide_label("UA") == (ALLOW, Reason.COUNTRY_ALLOWED)
    assert policy.decide_label("UA-43") == (DENY, Reason.SUBDIVISION_DENIED)
    assert policy.decide_label("UA-30") == (ALLOW, Reason.COUNTRY_ALLOWED)
    assert policy.decide_label("RU") == (DENY, Reason.COUNTRY_DENIED)


def test_enum_values_are_stable() -> None:
    assert [int(v) for v in Verdict] == [1, 2]
    assert {r.name: int(r) for r in Reason} == {
        "COUNTRY_ALLOWED": 1,
        "COUNTRY_DENIED": 2,
        "SUBDIVISION_DENIED": 3,
        "NETWORK_ALLOWED": 4,
        "NETWORK_DENIED": 5,
        "RESERVED": 6,
        "UNKNOWN": 7,
        "INVALID": 8,
        "SUBDIVISION_ALLOWED": 9,
    }
    assert all(member.__doc__ for member in (*Verdict, *Reason))


# ---------------------------------------------------------------------------------------
# The example file shipped with the package.

_EXCLUDED = {"CN", "HK", "MO", "RU", "BY", "IR", "KP", "CU", "SY", "VE"}


@pytest.fixture(scope="module")
def example() -> PolicySet:
    return load_policies(example_policies_path())


def test_example_file_is_packaged(example: PolicySet) -> None:
    path = example_policies_path()
    assert path.is_file()
    assert path.parent == Path(lookupd.__file__).parent / "data"
    assert list(example.policies) == ["api-supported", "eu-only", "block-sanctioned"]


def test_example_api_supported(example: PolicySet) -> None:
    policy = example.policies["api-supported"]
    assert policy.mode == "allow"
    assert policy.countries == countries() - _EXCLUDED
    assert policy.deny_subdivisions == {"UA-43", "UA-40", "UA-14", "UA-09"}
    assert policy.unknown is DENY
    assert policy.reserved is ALLOW
    assert not policy.allow_networks
    assert not policy.deny_networks


def test_example_answers_on_the_embedded_data(example: PolicySet) -> None:
    db = lookupd.open()
    compiled = example.compile(db)
    addresses = ["1.1.1.1", "77.88.8.8", "10.0.0.1", "::1", "not an ip", "2a00:1450::1"]
    assert [db.lookup_one(a) for a in ("1.1.1.1", "77.88.8.8")] == ["AU", "RU"]
    decisions = compiled.evaluate("api-supported", db.lookup(addresses))
    assert [
        (Verdict(v), Reason(r)) for v, r in zip(decisions.verdicts, decisions.reasons, strict=True)
    ] == [
        (ALLOW, Reason.COUNTRY_ALLOWED),  # AU
        (DENY, Reason.COUNTRY_DENIED),  # RU
        (ALLOW, Reason.RESERVED),
        (ALLOW, Reason.RESERVED),
        (DENY, Reason.INVALID),
        (ALLOW, Reason.COUNTRY_ALLOWED),  # IE
    ]
    # eu-only: the partner network (documentation space) passes despite reserved: deny.
    eu = compiled.evaluate(
        "eu-only", db.lookup(["1.1.1.1", "198.51.100.7", "198.51.100.200", "10.0.0.1"])
    )
    assert [Reason(r) for r in eu.reasons] == [
        Reason.COUNTRY_DENIED,
        Reason.NETWORK_ALLOWED,
        Reason.NETWORK_DENIED,
        Reason.RESERVED,
    ]
    sanctioned = compiled.evaluate("block-sanctioned", db.lookup(["77.88.8.8", "1.1.1.1"]))
    assert sanctioned.verdicts.tolist() == [DENY, ALLOW]
    # The embedded data is country-level: the subdivision exceptions are reported.
    assert (
        "policy api-supported: deny_subdivisions has no effect: the data carries no subdivisions"
        in compiled.warnings
    )


def test_example_with_city_data(example: PolicySet, city_db: Database) -> None:
    compiled = example.compile(city_db)
    decisions = compiled.evaluate(
        "api-supported", city_db.lookup(["3.0.0.1", "3.0.1.1", "2.0.0.1"])
    )
    assert [Reason(r) for r in decisions.reasons] == [
        Reason.COUNTRY_ALLOWED,
        Reason.SUBDIVISION_DENIED,
        Reason.COUNTRY_DENIED,
    ]


def test_example_file_reads_the_same_with_plain_safe_load() -> None:
    """Nothing in the shipped file depends on the loader's boolean change but NO."""
    document: Any = yaml.safe_load(example_policies_path().read_text())
    listed = document["policies"]["api-supported"]["allow_countries"]
    assert False in listed  # YAML 1.1 reads NO as false: why lookupd's loader differs
    assert len(listed) == len(countries()) - len(_EXCLUDED)


# ---------------------------------------------------------------------------------------
# The package's modules.


def _imported_roots(module: Path) -> set[str]:
    """Return the top-level packages ``module`` imports, at run time or for types."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_the_loading_module_imports_yaml() -> None:
    package = Path(lookupd.policies.__file__).parent
    importers = {m.stem for m in package.glob("*.py") if "yaml" in _imported_roots(m)}
    assert importers == {"loading"}


def test_the_package_exports_what_it_imports() -> None:
    exported = set(lookupd.policies.__all__)
    assert {"Verdict", "Reason", "PolicySet", "CompiledPolicies", "load_policies"} <= exported
    assert all(hasattr(lookupd.policies, name) for name in exported)
    assert lookupd.policies.Verdict is Verdict
    assert lookupd.policies.Reason is Reason


# ---------------------------------------------------------------------------------------
# The vectorised evaluation equals a per-address model of the rules.

_NETWORK_POOL = [
    "0.0.0.0/0",
    "1.0.0.0/8",
    "1.0.0.0/24",
    "1.0.0.128/25",
    "2.0.0.0/24",
    "3.0.1.0/24",
    "3.0.1.0/30",
    "10.0.0.0/8",
    "10.1.0.0/16",
    "8.0.0.0/23",
    "::/0",
    "::/64",
    "::/128",
    "::ffff:0:0/96",
    "::ffff:1.0.0.0/104",
    "::ffff:3.0.0.0/120",
    "2600::/16",
    "2600::/32",
    "2a01::/32",
    "fd00::/8",
    "fe80::/10",
]
_ADDRESS_POOL = [
    "0.0.0.0",
    "0.255.255.255",
    "1.0.0.0",
    "1.0.0.127",
    "1.0.0.128",
    "1.0.0.255",
    "1.0.1.0",
    "1.255.255.255",
    "2.0.0.1",
    "3.0.0.1",
    "3.0.1.0",
    "3.0.1.3",
    "3.0.1.4",
    "3.0.2.1",
    "4.0.0.1",
    "5.0.0.1",
    "6.0.0.1",
    "7.0.0.1",
    "8.0.0.1",
    "8.0.1.255",
    "8.0.2.0",
    "10.0.0.1",
    "10.1.0.1",
    "127.0.0.1",
    "192.168.1.1",
    "255.255.255.255",
    "::",
    "::1",
    "::2",
    "::fffe:ffff:ffff",
    "::ffff:1.0.0.1",
    "::ffff:3.0.1.1",
    "::1:0:0:0",
    "2600::1",
    "2600:1::1",
    "2601::1",
    "2a00::1",
    "2a01::1",
    "2a01:1::1",
    "fd00::1",
    "fe80::1",
    "ff02::1",
    "not-an-ip",
    "",
    "1.2.3",
]

_DATA_V4 = ReferenceRanges(_int_rows(_CITY_V4))
_DATA_V6 = ReferenceRanges(_int_rows(_CITY_V6))


def _covers(network: Network, address: IPAddress) -> int | None:
    """The network's prefix length in the address's family if it covers it, else None.

    IPv4 addresses are also covered by IPv6 networks written inside ::ffff:0:0/96.
    """
    if network.version == address.version:
        return network.prefixlen if address in network else None
    # A network of prefix >= 96 holding a mapped address lies inside ::ffff:0:0/96.
    if (
        address.version == 4
        and network.prefixlen >= 96
        and ipaddress.IPv6Address(_MAPPED | int(address)) in network
    ):
        return network.prefixlen - 96
    return None


def _model(policy: Policy, text: str) -> tuple[Verdict, Reason]:
    """Decide one address by the documented precedence, in plain Python."""
    try:
        address: IPAddress = ipaddress.ip_address(text)
    except ValueError:
        return DENY, Reason.INVALID
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    best: tuple[int, bool] | None = None  # (prefix length, deny)
    for networks, deny in ((policy.allow_networks, False), (policy.deny_networks, True)):
        for network in networks:
            length = _covers(network, address)
            if length is not None and (best is None or (length, deny) > best):
                best = (length, deny)
    if best is not None:
        return (DENY, Reason.NETWORK_DENIED) if best[1] else (ALLOW, Reason.NETWORK_ALLOWED)
    block = reserved.block_of(_MAPPED | int(address) if address.version == 4 else int(address))
    if block is not None and block.reserved:
        return policy.reserved, Reason.RESERVED
    label = (_DATA_V4 if address.version == 4 else _DATA_V6).label_at(int(address))
    if label is None or label == "ZZ":
        return policy.unknown, Reason.UNKNOWN
    country, subdivision = split_label(label)
    if subdivision in policy.deny_subdivisions:
        return DENY, Reason.SUBDIVISION_DENIED
    if subdivision in policy.allow_subdivisions:
        return ALLOW, Reason.SUBDIVISION_ALLOWED
    listed = country in policy.countries
    allowed = listed if policy.mode == "allow" else not listed
    return (ALLOW, Reason.COUNTRY_ALLOWED) if allowed else (DENY, Reason.COUNTRY_DENIED)


@st.composite
def _random_policies(draw: st.DrawFn) -> Policy:
    mode: Literal["allow", "deny"] = draw(st.sampled_from(["allow", "deny"]))
    listed = frozenset(draw(st.sets(st.sampled_from(["US", "RU", "UA", "DE", "XK", "AN"]))))
    listed -= {"AN"}  # drawn to be left out: a label no policy can list
    allowed_ua = ("UA" in listed) == (mode == "allow")
    subdivisions = draw(st.sets(st.sampled_from(["UA-43", "UA-30"])))
    verdicts = st.sampled_from([ALLOW, DENY])
    networks = st.lists(st.sampled_from(_NETWORK_POOL), max_size=5)
    return Policy(
        "p",
        "random",
        mode,
        listed,
        deny_subdivisions=frozenset(subdivisions) if allowed_ua else frozenset(),
        allow_subdivisions=frozenset() if allowed_ua else frozenset(subdivisions),
        allow_networks=tuple(ipaddress.ip_network(n) for n in draw(networks)),
        deny_networks=tuple(ipaddress.ip_network(n) for n in draw(networks)),
        unknown=draw(verdicts),
        reserved=draw(verdicts),
    )


@given(
    policy=_random_policies(),
    addresses=st.lists(st.sampled_from(_ADDRESS_POOL), min_size=1, max_size=40),
)
def test_evaluation_equals_the_model(policy: Policy, addresses: list[str]) -> None:
    db = _CITY_DB
    compiled = PolicySet(MappingProxyType({"p": policy}), "<test>", "0").compile(db)
    decisions = compiled.evaluate("p", db.lookup(addresses))
    got = [
        (Verdict(v), Reason(r))
        for v, r in zip(decisions.verdicts.tolist(), decisions.reasons.tolist(), strict=True)
    ]
    assert got == [_model(policy, a) for a in addresses]


def test_model_sees_every_reason() -> None:
    """Guard the property's pools: together they reach every reason."""
    seen: set[Reason] = set()
    policies = [
        _one(_PRECEDENCE_POLICY).policies["p"],
        _one("description: d\ndeny_countries: [UA]\nallow_subdivisions: [UA-30]").policies["p"],
    ]
    for policy in policies:
        seen.update(_model(policy, a)[1] for a in _ADDRESS_POOL)
    assert seen == set(Reason)


_CITY_DB = _database(_CITY_V4, _CITY_V6, _CITY_LABELS)
