"""A policy as Envoy's own filters: geoip on a MaxMind DB export, then RBAC in its order.

Envoy's geoip filter looks the client up in a MaxMind DB file (``lookupd export mmdb``) and
sets a country header (and, for subdivision rules, a region header); the RBAC filter then
decides with a first-match matcher whose rules are lookupd's, in lookupd's precedence
(:mod:`lookupd.policies`), each action named after the lookupd reason it stands for, so a
denied request's ``%RESPONSE_CODE_DETAILS%`` names it:

1. ``NETWORK_ALLOWED`` / ``NETWORK_DENIED``: the overrides, from the painted network table
   (longest prefix, deny winning a tie, already resolved into disjoint ranges);
2. ``RESERVED``: lookupd's special-purpose blocks, with the policy's ``reserved`` verdict;
3. ``UNKNOWN``: no country header, ``ZZ``/``XX``, or an IPv4-compatible ``::a.b.c.d``
   address (lookupd answers those from its IPv6 data, a MaxMind file as IPv4);
4. ``SUBDIVISION_DENIED`` / ``SUBDIVISION_ALLOWED``: country and region headers;
5. ``COUNTRY_ALLOWED`` / ``COUNTRY_DENIED``: the listed countries, and the rest.

IPv4 networks are matched as IPv4 and as IPv4-mapped IPv6, as lookupd reads both alike.
The client's own headers of the same names are removed first: the geoip filter only
replaces a header when it finds a value, so a client could otherwise send its own country.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from lookupd.codes import Reason, Verdict
from lookupd.core import reserved
from lookupd.core.constants import IPV4_MAPPED_PREFIX, IPV4_MAX, IPV6_MAX
from lookupd.core.labels import split_label
from lookupd.core.table import RangeTable
from lookupd.policies.compiled import NET_ALLOW, NET_DENY, network_table
from lookupd.policies.model import UNKNOWN_MARKERS, Policy

COUNTRY_HEADER = "x-geo-country"
"""The header the geoip filter sets to the client's country."""
REGION_HEADER = "x-geo-region"
"""The header it sets to the client's subdivision (ISO 3166-2 without the country)."""

_MAPPED_END = IPV4_MAPPED_PREFIX | IPV4_MAX
_TYPES_ROOT = "type.googleapis.com"
_TYPES = f"{_TYPES_ROOT}/envoy.extensions"


@dataclass(frozen=True, slots=True)
class EnvoyOptions:
    """How the filters find their file and the client."""

    mmdb_path: str
    """The exported MaxMind DB file, as Envoy sees it (Envoy reloads it when a new file is
    renamed over this path)."""
    trusted_hops: int = 0
    """The geoip filter's ``xff_num_trusted_hops``: 0 looks up the downstream address.
    The RBAC filter reads the downstream address the connection manager decided, so its
    ``use_remote_address: true`` and ``xff_num_trusted_hops`` must say the same."""
    country_header: str = COUNTRY_HEADER
    region_header: str = REGION_HEADER


def uses_subdivisions(policy: Policy) -> bool:
    """Whether the policy's rules need the region header (a City-schema file)."""
    return bool(policy.deny_subdivisions or policy.allow_subdivisions)


def http_filters(policy: Policy, options: EnvoyOptions) -> list[dict[str, Any]]:
    """Envoy HTTP filters that decide requests as ``policy`` decides their client address,
    to put before the router: strip the geo headers, geoip, RBAC."""
    headers = [options.country_header]
    if uses_subdivisions(policy):
        headers.append(options.region_header)
    return [
        {
            "name": "envoy.filters.http.header_mutation",
            "typed_config": {
                "@type": f"{_TYPES}.filters.http.header_mutation.v3.HeaderMutation",
                "mutations": {"request_mutations": [{"remove": name} for name in headers]},
            },
        },
        _geoip_filter(policy, options),
        {
            "name": "envoy.filters.http.rbac",
            "typed_config": {
                "@type": f"{_TYPES}.filters.http.rbac.v3.RBAC",
                "matcher": rbac_matcher(policy, options),
            },
        },
    ]


def _geoip_filter(policy: Policy, options: EnvoyOptions) -> dict[str, Any]:
    keys = {"country": options.country_header}
    provider: dict[str, Any] = {"@type": f"{_TYPES}.geoip_providers.maxmind.v3.MaxMindConfig"}
    if uses_subdivisions(policy):
        # The provider reads regions from its city database only.
        keys["region"] = options.region_header
        provider["city_db_path"] = options.mmdb_path
    else:
        provider["country_db_path"] = options.mmdb_path
    provider["common_provider_config"] = {"geo_field_keys": keys}
    config: dict[str, Any] = {"@type": f"{_TYPES}.filters.http.geoip.v3.Geoip"}
    if options.trusted_hops:
        config["xff_config"] = {"xff_num_trusted_hops": options.trusted_hops}
    config["provider"] = {"name": "envoy.geoip_providers.maxmind", "typed_config": provider}
    return {"name": "envoy.filters.http.geoip", "typed_config": config}


def rbac_matcher(policy: Policy, options: EnvoyOptions) -> dict[str, Any]:
    """The RBAC filter's matcher: lookupd's rules in lookupd's order, first match wins,
    each action named after the :class:`Reason` it stands for."""
    table = network_table(policy)
    rules: list[tuple[dict[str, Any] | None, Reason, Verdict]] = [
        (
            _source_ip(_ranges_labelled(table, NET_ALLOW), Reason.NETWORK_ALLOWED),
            Reason.NETWORK_ALLOWED,
            Verdict.ALLOW,
        ),
        (
            _source_ip(_ranges_labelled(table, NET_DENY), Reason.NETWORK_DENIED),
            Reason.NETWORK_DENIED,
            Verdict.DENY,
        ),
        (_source_ip(_reserved_ranges(), Reason.RESERVED), Reason.RESERVED, policy.reserved),
        (
            _any_of(
                [
                    _not(_header(options.country_header, regex=".*")),
                    _header(options.country_header, regex=_alternatives(UNKNOWN_MARKERS)),
                    # IPv4-compatible ::a.b.c.d (::/128 and ::1 are reserved, above).
                    _source_ip([(0, IPV4_MAX)], Reason.UNKNOWN),
                ]
            ),
            Reason.UNKNOWN,
            policy.unknown,
        ),
    ]
    for codes, reason, verdict in (
        (policy.deny_subdivisions, Reason.SUBDIVISION_DENIED, Verdict.DENY),
        (policy.allow_subdivisions, Reason.SUBDIVISION_ALLOWED, Verdict.ALLOW),
    ):
        rules.append((_any_of(_subdivisions(codes, options)), reason, verdict))
    listed = (
        _header(options.country_header, regex=_alternatives(policy.countries))
        if policy.countries
        else None  # an empty list: the rule's "otherwise" decides every country
    )
    if policy.mode == "allow":
        rules.append((listed, Reason.COUNTRY_ALLOWED, Verdict.ALLOW))
        otherwise = _action(Reason.COUNTRY_DENIED, Verdict.DENY)
    else:
        rules.append((listed, Reason.COUNTRY_DENIED, Verdict.DENY))
        otherwise = _action(Reason.COUNTRY_ALLOWED, Verdict.ALLOW)
    matchers = [
        {"predicate": predicate, "on_match": _action(reason, verdict)}
        for predicate, reason, verdict in rules
        if predicate is not None
    ]
    return {"matcher_list": {"matchers": matchers}, "on_no_match": otherwise}


def _action(reason: Reason, verdict: Verdict) -> dict[str, Any]:
    return {
        "action": {
            "name": reason.name,
            "typed_config": {
                "@type": f"{_TYPES_ROOT}/envoy.config.rbac.v3.Action",
                "name": reason.name,
                "action": verdict.name,
            },
        }
    }


def _not(predicate: dict[str, Any]) -> dict[str, Any]:
    return {"not_matcher": predicate}


def _any_of(predicates: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    present = [predicate for predicate in predicates if predicate is not None]
    if len(present) <= 1:
        return present[0] if present else None
    return {"or_matcher": {"predicate": present}}


def _header(name: str, *, exact: str | None = None, regex: str | None = None) -> dict[str, Any]:
    match: dict[str, Any] = {"exact": exact}
    if exact is None:
        # xds matchers name the regex engine; RE2 matches the whole value.
        match = {"safe_regex": {"google_re2": {}, "regex": regex}}
    return {
        "single_predicate": {
            "input": {
                "name": "envoy.matching.inputs.request_headers",
                "typed_config": {
                    "@type": f"{_TYPES_ROOT}/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
                    "header_name": name,
                },
            },
            "value_match": match,
        }
    }


def _alternatives(codes: Iterable[str]) -> str:
    # Envoy's safe_regex must match the whole value; codes are [A-Z0-9] only.
    return "|".join(sorted(codes))


def _subdivisions(codes: Iterable[str], options: EnvoyOptions) -> list[dict[str, Any] | None]:
    pairs: list[dict[str, Any] | None] = []
    for code in sorted(codes):
        country, _ = split_label(code)
        region = code.partition("-")[2]
        both = [
            _header(options.country_header, exact=country),
            _header(options.region_header, exact=region),
        ]
        pairs.append({"and_matcher": {"predicate": both}})
    return pairs


def _ranges_labelled(table: RangeTable | None, label: int) -> list[tuple[int, int]]:
    """The 128-bit key ranges of ``table``'s segments labelled ``label``."""
    if table is None:
        return []
    return [(first, last) for first, last, seg in _segments(table) if seg == label]


def _reserved_ranges() -> list[tuple[int, int]]:
    """lookupd's reserved space over 128-bit keys (IPv4 at ``::ffff:a.b.c.d``)."""
    return _ranges_labelled(reserved.TABLE_KEYS, 1)


def _segments(table: RangeTable) -> Iterator[tuple[int, int, int]]:
    """(first, last, label) of each segment of a table over 128-bit keys."""
    starts = [(int(high) << 64) | int(low) for high, low in table.starts.tolist()]
    labels = table.labels.tolist()
    for index, first in enumerate(starts):
        last = starts[index + 1] - 1 if index + 1 < len(starts) else IPV6_MAX
        yield first, last, labels[index]


def _source_ip(ranges: Iterable[tuple[int, int]], reason: Reason) -> dict[str, Any] | None:
    """A predicate on the client address covering 128-bit key ranges (None for none).
    IPv4 (``::ffff:a.b.c.d``) is written both as IPv4 and IPv4-mapped, so a client seen
    either way matches."""
    cidrs = []
    for first, last in ranges:
        if first >= IPV4_MAPPED_PREFIX and last <= _MAPPED_END:
            v4 = ipaddress.summarize_address_range(
                ipaddress.IPv4Address(first - IPV4_MAPPED_PREFIX),
                ipaddress.IPv4Address(last - IPV4_MAPPED_PREFIX),
            )
            cidrs += [_cidr(str(net.network_address), net.prefixlen) for net in v4]
        v6 = ipaddress.summarize_address_range(
            ipaddress.IPv6Address(first), ipaddress.IPv6Address(last)
        )
        cidrs += [_cidr(str(net.network_address), net.prefixlen) for net in v6]
    if not cidrs:
        return None
    return {
        "single_predicate": {
            "input": {
                "name": "envoy.matching.inputs.source_ip",
                "typed_config": {
                    "@type": f"{_TYPES}.matching.common_inputs.network.v3.SourceIPInput"
                },
            },
            "custom_match": {
                "name": "envoy.matching.matchers.ip",
                "typed_config": {
                    "@type": f"{_TYPES}.matching.input_matchers.ip.v3.Ip",
                    "cidr_ranges": cidrs,
                    "stat_prefix": f"lookupd_{reason.name.lower()}",
                },
            },
        }
    }


def _cidr(address: str, length: int) -> dict[str, Any]:
    return {"address_prefix": address, "prefix_len": length}
