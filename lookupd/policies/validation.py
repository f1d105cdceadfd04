"""Validate a parsed policy document field by field, with did-you-mean hints in errors."""

from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Any, Literal

from lookupd.codes import Verdict
from lookupd.core.labels import split_label
from lookupd.policies.iso3166 import (
    DATA_CONVENTIONS,
    is_country,
    is_subdivision,
    subdivisions,
    suggest_country,
)
from lookupd.policies.model import UNKNOWN_MARKERS, Network, Policy, PolicyError

_FIELDS = (
    "description",
    "allow_countries",
    "deny_countries",
    "allow_subdivisions",
    "deny_subdivisions",
    "networks",
    "unknown",
    "reserved",
)
_NETWORK_FIELDS = ("allow", "deny")
_TOP_FIELDS = ("policies",)
# Names travel in gRPC requests and log lines: keep them plain.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# The data conventions a policy may list: all but the "no country" markers.
_NAMEABLE_CONVENTIONS = DATA_CONVENTIONS - UNKNOWN_MARKERS
_VERDICTS = {"allow": Verdict.ALLOW, "deny": Verdict.DENY}


def validate_document(source: str, document: object) -> dict[str, Policy]:
    """Validate a policy file's plain data (``source`` names it in errors): policies by name.

    Raises:
        PolicyError: the first rule of the schema ``document`` breaks; the message names
            ``source``, the policy and the field.
    """
    if not isinstance(document, dict):
        msg = (
            f"{source}: expected a mapping with a 'policies' key at the top, "
            f"got {_describe(document)}"
        )
        raise PolicyError(msg)
    _check_keys(source, "the top level", document, _TOP_FIELDS)
    if "policies" not in document:
        msg = f"{source}: no 'policies' key at the top"
        raise PolicyError(msg)
    bodies = document["policies"]
    if not isinstance(bodies, dict) or not bodies:
        msg = f"{source}: 'policies' must map policy names to policies, got {_describe(bodies)}"
        raise PolicyError(msg)
    policies: dict[str, Policy] = {}
    for name, body in bodies.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            msg = (
                f"{source}: policy name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
            raise PolicyError(msg)
        policies[name] = _parse_policy(f"{source}: policy {name!r}", name, body)
    return policies


def _parse_policy(where: str, name: str, body: object) -> Policy:
    if not isinstance(body, dict):
        msg = f"{where}: expected a mapping of fields, got {_describe(body)}"
        raise PolicyError(msg)
    _check_keys(where, "field", body, _FIELDS)
    description = body.get("description")
    if not isinstance(description, str) or not description.strip():
        got = "nothing" if "description" not in body else _describe(description)
        msg = f"{where}: description: a non-empty text is required, got {got}"
        raise PolicyError(msg)
    has_allow, has_deny = "allow_countries" in body, "deny_countries" in body
    if has_allow == has_deny:
        which = "both" if has_allow else "neither"
        msg = (
            f"{where}: give exactly one of allow_countries (only these are allowed) or "
            f"deny_countries (these are denied, the rest allowed), not {which}"
        )
        raise PolicyError(msg)
    mode: Literal["allow", "deny"] = "allow" if has_allow else "deny"
    field = f"{mode}_countries"
    countries = frozenset(
        _country(f"{where}: {field}[{i}]", item)
        for i, item in enumerate(_list(where, field, body[field], "ISO 3166-1 codes"))
    )
    policy = Policy(name, description.strip(), mode, countries)
    deny_subdivisions = _subdivisions(where, "deny_subdivisions", body, policy, allowed=True)
    allow_subdivisions = _subdivisions(where, "allow_subdivisions", body, policy, allowed=False)
    allow_networks, deny_networks = _networks(where, body.get("networks"), "networks" in body)
    return Policy(
        name,
        policy.description,
        mode,
        countries,
        deny_subdivisions,
        allow_subdivisions,
        allow_networks,
        deny_networks,
        _verdict(where, "unknown", body, Verdict.DENY),
        _verdict(where, "reserved", body, Verdict.ALLOW),
    )


def _country(where: str, value: object) -> str:
    if not isinstance(value, str):
        msg = f"{where}: expected a two-letter ISO 3166-1 code, got {_describe(value)}"
        raise PolicyError(msg)
    if value in UNKNOWN_MARKERS:
        msg = (
            f"{where}: {value} is the data's 'unknown country' marker, not a country: "
            "set 'unknown: allow' or 'unknown: deny' instead"
        )
        raise PolicyError(msg)
    if is_country(value) or value in _NAMEABLE_CONVENTIONS:
        return value
    if split_label(value)[1] is not None and is_subdivision(value):
        msg = (
            f"{where}: {value} is an ISO 3166-2 subdivision, not a country: list it under "
            "deny_subdivisions or allow_subdivisions"
        )
        raise PolicyError(msg)
    msg = f"{where}: unknown ISO 3166-1 code {value!r}{_did_you_mean(suggest_country(value))}"
    raise PolicyError(msg)


def _subdivisions(
    where: str, field: str, body: dict[Any, Any], policy: Policy, *, allowed: bool
) -> frozenset[str]:
    """Parse a subdivision list whose countries the country rule must allow (or deny)."""
    if field not in body:
        return frozenset()
    codes = []
    for i, item in enumerate(_list(where, field, body[field], "ISO 3166-2 codes")):
        code = _subdivision(f"{where}: {field}[{i}]", item)
        country = split_label(code)[0]
        if policy.country_allowed(country) != allowed:
            rule = "allowed" if not allowed else "denied"
            msg = (
                f"{where}: {field}[{i}]: {code}: the country rule already has {country} "
                f"{rule}, so this exception changes nothing"
            )
            raise PolicyError(msg)
        codes.append(code)
    return frozenset(codes)


def _subdivision(where: str, value: object) -> str:
    if not isinstance(value, str):
        msg = f"{where}: expected an ISO 3166-2 code such as UA-43, got {_describe(value)}"
        raise PolicyError(msg)
    if is_subdivision(value):
        return value
    upper = value.strip().upper()
    country, subdivision = split_label(upper)
    if subdivision is None:
        if is_country(upper):
            msg = (
                f"{where}: {value} is a country, not a subdivision: list it under "
                "allow_countries or deny_countries"
            )
        else:
            msg = f"{where}: expected an ISO 3166-2 code such as UA-43, got {value!r}"
        raise PolicyError(msg)
    if is_subdivision(upper):
        hints = [upper]
    else:
        hints = _close_subdivisions(upper)
        if not hints and not is_country(country):
            msg = f"{where}: unknown ISO 3166-2 code {value!r}: no country {country!r}"
            msg += _did_you_mean(suggest_country(country))
            raise PolicyError(msg)
    msg = f"{where}: unknown ISO 3166-2 code {value!r}{_did_you_mean(hints)}"
    raise PolicyError(msg)


def _close_subdivisions(code: str) -> list[str]:
    """Subdivision codes ``code`` may have been meant as, best first.

    The same subdivision under a swapped or suggested country code (``AU-43`` -> ``UA-43``),
    then codes of the same country one character or one swap away (``UA-99`` -> ``UA-09``,
    ``UA-59``), then, if none, similar-looking codes of that country.
    """
    country, _, rest = code.partition("-")
    found = [
        f"{other}-{rest}"
        for other in dict.fromkeys((country[::-1], *suggest_country(country)))
        if is_subdivision(f"{other}-{rest}")
    ]
    known = sorted(s for s in subdivisions() if s.startswith(f"{country}-"))
    near = [
        k
        for k in known
        if len(k) == len(code)
        and (
            sum(a != b for a, b in zip(k, code, strict=True)) == 1
            or (
                sorted(k) == sorted(code) and sum(a != b for a, b in zip(k, code, strict=True)) == 2
            )
        )
    ]
    found += near
    if not found:
        found = difflib.get_close_matches(code, known, n=5, cutoff=0.6)
    return list(dict.fromkeys(found))[:5]


def _networks(
    where: str, value: object, given: bool
) -> tuple[tuple[Network, ...], tuple[Network, ...]]:
    if not given:
        return (), ()
    if not isinstance(value, dict):
        msg = f"{where}: networks: expected a mapping with allow and/or deny lists, got "
        msg += _describe(value)
        raise PolicyError(msg)
    _check_keys(f"{where}: networks", "key", value, _NETWORK_FIELDS)
    found: dict[str, tuple[Network, ...]] = {}
    for field in _NETWORK_FIELDS:
        if field not in value:
            found[field] = ()
            continue
        path = f"networks.{field}"
        items = _list(where, path, value[field], "CIDR networks")
        found[field] = tuple(
            _network(f"{where}: {path}[{i}]", item) for i, item in enumerate(items)
        )
    return found["allow"], found["deny"]


def _network(where: str, value: object) -> Network:
    if not isinstance(value, str):
        msg = (
            f"{where}: expected a network such as 192.0.2.0/24 or 2001:db8::/32, "
            f"got {_describe(value)}"
        )
        raise PolicyError(msg)
    if "%" in value:
        msg = f"{where}: {value!r}: zone indices (%...) have no place in a network"
        raise PolicyError(msg)
    try:
        return ipaddress.ip_network(value)
    except ValueError as exc:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            msg = f"{where}: not a network: {value!r} ({exc})"
            raise PolicyError(msg) from None
        msg = f"{where}: {value} has host bits set: did you mean {network}?"
        raise PolicyError(msg) from None


def _verdict(where: str, field: str, body: dict[Any, Any], default: Verdict) -> Verdict:
    if field not in body:
        return default
    value = body[field]
    if isinstance(value, str) and value in _VERDICTS:
        return _VERDICTS[value]
    msg = f"{where}: {field}: expected allow or deny, got {_describe(value)}"
    raise PolicyError(msg)


def _list(where: str, field: str, value: object, what: str) -> list[object]:
    if isinstance(value, list):
        return value
    hint = f" (write [{value}] for one)" if isinstance(value, str) else ""
    msg = f"{where}: {field}: expected a list of {what}, got {_describe(value)}{hint}"
    raise PolicyError(msg)


def _check_keys(where: str, what: str, mapping: dict[Any, Any], known: tuple[str, ...]) -> None:
    for key in mapping:
        if key in known:
            continue
        hints = difflib.get_close_matches(str(key), known, n=2, cutoff=0.6)
        if key == "countries":
            hints = ["allow_countries", "deny_countries"]
        msg = f"{where}: unknown {what} {key!r}"
        if hints:
            msg += f" (did you mean {' or '.join(hints)}?)"
        else:
            msg += f"; known: {', '.join(known)}"
        raise PolicyError(msg)


def _did_you_mean(hints: list[str]) -> str:
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


def _describe(value: object) -> str:
    """Name a YAML value's kind for a message: ``a list``, ``the number 840``, ``'US'``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
