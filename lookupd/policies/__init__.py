"""Supported-region policies: named allow/deny rules loaded from YAML, decided in bulk.

A policy file is a YAML mapping with one key, ``policies``, naming each policy::

    policies:
      api-supported:
        description: Countries and territories the API is offered in.
        allow_countries: [US, GB, UA, ...]      # or deny_countries: exactly one of the two
        deny_subdivisions: [UA-43, UA-14]       # ISO 3166-2 exceptions in allowed countries
        allow_subdivisions: []                  # ISO 3166-2 exceptions in denied countries
        networks:                               # overrides, by CIDR
          allow: [203.0.113.0/24]
          deny: [2001:db8:bad::/48]
        unknown: deny                           # default deny
        reserved: allow                         # default allow

Fields:

- ``description`` (required): free text.
- ``allow_countries`` *or* ``deny_countries`` (exactly one): ISO 3166-1 alpha-2 codes. An
  allow-list allows only its countries; a deny-list denies its countries and allows the
  rest. The codes geolocation data uses on purpose (``XK`` Kosovo, ``EU``, ``AP``, ``A1``,
  ``A2``, ``O1``, ``T1``) may be listed too; ``ZZ``/``XX`` (the data's "unknown") may not:
  ``unknown`` decides those.
- ``deny_subdivisions``: ISO 3166-2 codes (``UA-43``) denied inside countries the country
  rule allows. ``allow_subdivisions``: codes allowed inside countries it denies. A code
  whose country the rule already treats that way is an error (it would change nothing).
  Subdivisions only act on data that carries them (city-level data with ``UA-43`` labels);
  :meth:`PolicySet.compile` warns when the data has none.
- ``networks``: ``allow`` and ``deny`` lists of CIDR networks (IPv4 or IPv6, no host bits
  set). IPv6 networks cover IPv4 addresses only when written IPv4-mapped
  (``::ffff:192.0.2.0/120`` is ``192.0.2.0/24``): ``::/0`` means all IPv6, not IPv4 too.
- ``unknown``: ``allow`` or ``deny`` (default ``deny``) for valid addresses the data has no
  country for. Default deny: a supported-region check should fail closed.
- ``reserved``: ``allow`` or ``deny`` (default ``allow``) for private, loopback, link-local,
  documentation, multicast and other special-purpose addresses (``Status.RESERVED``). Such
  an address never comes from the open Internet: it is the operator's own infrastructure
  (health checks, internal clients, a proxy), which must usually pass.

Precedence, first match wins:

1. an invalid address: ``DENY`` (reason ``INVALID``), always;
2. a network override: the most specific network (longest prefix) covering the address
   decides, ``deny`` winning over ``allow`` at equal prefix. An explicit override beats
   every rule below, reserved included: allowing ``10.0.0.0/8`` outright allows it even
   with ``reserved: deny``;
3. a reserved address: the ``reserved`` verdict;
4. no country (``Status.NOT_FOUND``, or a ``ZZ``/``XX`` label): the ``unknown`` verdict;
5. a subdivision exception (``UA-43``);
6. the country rule.

Loading validates everything and refuses the file with one clear message naming the file,
the policy and the field (:class:`PolicyError`): unknown fields (with a did-you-mean),
unknown ISO codes (``MI``: did you mean UM, ...?), networks with host bits set (suggesting
the network), wrong types, duplicate keys. YAML is read with PyYAML's safe loader, except
that only ``true``/``false`` are booleans (YAML 1.2), so ``NO`` stays Norway.

Compiling against a :class:`~lookupd.Database` turns each policy into a verdict and a reason
per (status, label) pair and a small range table of its networks; evaluation is then a few
numpy gathers and one search-core pass, with no Python loop per address.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import os
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml

from lookupd.codes import CodeArray, Reason, Status, Verdict, code_array
from lookupd.core import _search
from lookupd.core.constants import IPV4_MAPPED_PREFIX
from lookupd.core.database import Database, LookupResult
from lookupd.core.labels import split_label
from lookupd.core.table import RangeTable, build_table
from lookupd.errors import LookupdError
from lookupd.policies.iso3166 import (
    DATA_CONVENTIONS,
    is_country,
    is_subdivision,
    subdivisions,
    suggest_country,
)

EXAMPLE_POLICIES = "example-policies.yaml"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PolicyError(LookupdError):
    """A policy file is unreadable or invalid; the message names the file, policy and field."""


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
# Labels that mean "no country": decided by ``unknown``, never listed.
_UNKNOWN_MARKERS = frozenset({"ZZ", "XX"})
_NAMEABLE_CONVENTIONS = DATA_CONVENTIONS - _UNKNOWN_MARKERS
_VERDICTS = {"allow": Verdict.ALLOW, "deny": Verdict.DENY}
# Rows of a compiled policy's tables, indexed by Status number (row 0, no status, unused).
_STATUSES = max(Status) + 1
# Network table labels: 0 no override, then these.
_NET_ALLOW = 1
_NET_DENY = 2


@dataclass(frozen=True, slots=True)
class Policy:
    """One named policy, parsed and validated."""

    name: str
    """The policy's name, as requests give it."""
    description: str
    """Free text from the file."""
    mode: Literal["allow", "deny"]
    """``allow``: only ``countries`` are allowed; ``deny``: ``countries`` are denied."""
    countries: frozenset[str]
    """The ``allow_countries`` or ``deny_countries`` codes."""
    deny_subdivisions: frozenset[str] = frozenset()
    """ISO 3166-2 codes denied inside allowed countries."""
    allow_subdivisions: frozenset[str] = frozenset()
    """ISO 3166-2 codes allowed inside denied countries."""
    allow_networks: tuple[Network, ...] = ()
    """Networks allowed whatever their country or status (except invalid)."""
    deny_networks: tuple[Network, ...] = ()
    """Networks denied whatever their country or status."""
    unknown: Verdict = Verdict.DENY
    """Verdict for valid addresses with no country."""
    reserved: Verdict = Verdict.ALLOW
    """Verdict for special-purpose addresses (``Status.RESERVED``)."""

    def country_allowed(self, country: str) -> bool:
        """Tell whether the country rule alone allows ``country``."""
        listed = country in self.countries
        return listed if self.mode == "allow" else not listed

    def decide_label(self, label: str) -> tuple[Verdict, Reason]:
        """Decide a valid, non-reserved address labelled ``label`` (``""``: no country).

        Network overrides are not considered: they depend on the address, not its label.
        """
        if not label:
            return self.unknown, Reason.UNKNOWN
        country, subdivision = split_label(label)
        if country in _UNKNOWN_MARKERS:
            return self.unknown, Reason.UNKNOWN
        if subdivision is not None:
            if subdivision in self.deny_subdivisions:
                return Verdict.DENY, Reason.SUBDIVISION_DENIED
            if subdivision in self.allow_subdivisions:
                return Verdict.ALLOW, Reason.SUBDIVISION_ALLOWED
        if self.country_allowed(country):
            return Verdict.ALLOW, Reason.COUNTRY_ALLOWED
        return Verdict.DENY, Reason.COUNTRY_DENIED


@dataclass(frozen=True, slots=True)
class Decisions:
    """A policy's answers for a batch, in input order."""

    verdicts: CodeArray
    """A :class:`Verdict` per address, printed by name (:class:`~lookupd.codes.VerdictArray`)."""
    reasons: CodeArray
    """A :class:`Reason` per address, printed by name (:class:`~lookupd.codes.ReasonArray`)."""

    def __len__(self) -> int:
        return int(self.verdicts.shape[0])

    @property
    def allowed(self) -> npt.NDArray[np.bool_]:
        """Mask of the allowed addresses."""
        mask: npt.NDArray[np.bool_] = self.verdicts == Verdict.ALLOW
        return mask


@dataclass(frozen=True, slots=True)
class PolicySet:
    """The policies of one file."""

    policies: Mapping[str, Policy]
    """Policies by name, in file order."""
    source: str
    """Where they came from (a path, or ``<string>``)."""
    version: str
    """SHA-256 (hex) of the file's bytes."""

    def compile(self, db: Database) -> CompiledPolicies:
        """Bind the policies to ``db``'s label table for evaluation."""
        return CompiledPolicies(self, db)


@dataclass(frozen=True, slots=True)
class _Compiled:
    """One policy's lookup tables."""

    verdicts: npt.NDArray[np.uint8]
    """Verdict per ``status * n_labels + label``."""
    reasons: npt.NDArray[np.uint8]
    """Reason per ``status * n_labels + label``."""
    networks: RangeTable | None
    """The network overrides over 128-bit keys (IPv4-mapped), or None without any."""
    network_verdicts: npt.NDArray[np.uint8]
    """Per network segment: 0 (no override) or the override's verdict."""
    network_reasons: npt.NDArray[np.uint8]
    """Per network segment: 0 or the override's reason."""


class CompiledPolicies:
    """Policies bound to one database's label table, ready to evaluate lookups.

    Immutable after construction and safe to share between threads.
    """

    __slots__ = ("_compiled", "_label_names", "_n_labels", "names", "policy_set", "warnings")

    def __init__(self, policy_set: PolicySet, db: Database) -> None:
        self.policy_set = policy_set
        self._label_names = db.label_names
        self._n_labels = len(db.label_names)
        self.names: tuple[str, ...] = tuple(policy_set.policies)
        """The policy names, in file order."""
        warnings: list[str] = []
        self._compiled = {
            name: _compile(policy, db, warnings) for name, policy in policy_set.policies.items()
        }
        self.warnings: tuple[str, ...] = tuple(warnings)
        """Rules that cannot act on this data (e.g. subdivisions on country-level data)."""

    def __repr__(self) -> str:
        return f"<CompiledPolicies {', '.join(self.names)} from {self.policy_set.source}>"

    def evaluate(self, name: str, result: LookupResult) -> Decisions:
        """Decide every address of a lookup under policy ``name``.

        Raises:
            KeyError: no policy is named ``name``.
            ValueError: ``result`` comes from a database with another label table.
        """
        compiled = self._compiled[name]
        labels = result.labels
        if result.label_names is not self._label_names and result.label_names != self._label_names:
            msg = "the lookup result comes from a database these policies were not compiled for"
            raise ValueError(msg)
        status = result.status
        index = status.astype(np.intp)
        index *= self._n_labels
        index += labels
        verdicts = compiled.verdicts[index]
        reasons = compiled.reasons[index]
        if compiled.networks is not None and labels.shape[0]:
            found = np.empty(labels.shape[0], dtype=np.int32)
            _search.find_many_v6(
                compiled.networks.starts,  # type: ignore[arg-type]
                compiled.networks.jump,
                result.keys,
                found,
            )
            override = compiled.network_verdicts[found]
            # An invalid item's key is (0, 0), '::': no network may decide it.
            hit = (override != 0) & (status != Status.INVALID_ADDRESS)
            verdicts = np.where(hit, override, verdicts)
            reasons = np.where(hit, compiled.network_reasons[found], reasons)
        return Decisions(code_array(verdicts, Verdict), code_array(reasons, Reason))


def _compile(policy: Policy, db: Database, warnings: list[str]) -> _Compiled:
    """Build one policy's tables for ``db``; add what cannot take effect to ``warnings``."""
    names = db.label_names
    n = len(names)
    verdicts = np.zeros((_STATUSES, n), dtype=np.uint8)
    reasons = np.zeros((_STATUSES, n), dtype=np.uint8)
    for label, name in enumerate(names):
        verdict, reason = policy.decide_label(name)
        verdicts[Status.OK, label], reasons[Status.OK, label] = verdict, reason
    verdicts[Status.NOT_FOUND], reasons[Status.NOT_FOUND] = policy.unknown, Reason.UNKNOWN
    verdicts[Status.INVALID_ADDRESS], reasons[Status.INVALID_ADDRESS] = Verdict.DENY, Reason.INVALID
    verdicts[Status.RESERVED], reasons[Status.RESERVED] = policy.reserved, Reason.RESERVED
    _warn(policy, db, warnings)
    networks = _network_table(policy)
    if networks is None:
        none = np.zeros(1, dtype=np.uint8)
        return _Compiled(verdicts.ravel(), reasons.ravel(), None, none, none)
    by_label = np.array([0, Verdict.ALLOW, Verdict.DENY], dtype=np.uint8)
    reason_by_label = np.array([0, Reason.NETWORK_ALLOWED, Reason.NETWORK_DENIED], dtype=np.uint8)
    return _Compiled(
        verdicts.ravel(),
        reasons.ravel(),
        networks,
        by_label[networks.labels],
        reason_by_label[networks.labels],
    )


def _warn(policy: Policy, db: Database, warnings: list[str]) -> None:
    where = f"policy {policy.name}"
    fields = [
        field
        for field, codes in (
            ("deny_subdivisions", policy.deny_subdivisions),
            ("allow_subdivisions", policy.allow_subdivisions),
        )
        if codes
    ]
    labels = set(db.label_names)
    if fields and not db.has_subdivisions:
        verb = "has" if len(fields) == 1 else "have"
        warnings.append(
            f"{where}: {' and '.join(fields)} {verb} no effect: the data carries no subdivisions"
        )
    elif fields:
        absent = sorted((policy.deny_subdivisions | policy.allow_subdivisions) - labels)
        if absent:
            warnings.append(
                f"{where}: subdivisions {', '.join(absent)} do not occur in the data: "
                "their addresses follow the country rule"
            )
    if not db.mark_reserved and policy.reserved is Verdict.DENY:
        warnings.append(
            f"{where}: reserved: deny has no effect: the database does not mark reserved "
            "addresses (mark_reserved=False)"
        )
    unnameable = sorted(
        {
            country
            for country, _ in map(split_label, db.label_names[1:])
            if not is_country(country) and country not in DATA_CONVENTIONS
        }
    )
    if unnameable:
        fate = "the allow-list denies" if policy.mode == "allow" else "the deny-list allows"
        warnings.append(
            f"{where}: the data's labels {', '.join(unnameable)} are not ISO 3166-1 codes, "
            f"so no policy can list them: {fate} them"
        )


def _network_table(policy: Policy) -> RangeTable | None:
    """Paint the overrides into one table over 128-bit keys, IPv4 as ``::ffff:a.b.c.d``.

    Rows in priority order for :func:`~lookupd.core.table.build_table` (greatest start wins,
    then the narrowest, then the later row): for CIDR networks, which nest or are disjoint,
    that is the longest prefix; allow rows come before deny rows, so deny wins a tie. A
    first row with no override over ``::ffff:0:0/96`` keeps wider IPv6 networks (``::/0``)
    off IPv4 addresses; networks written inside it (IPv4, or ``::ffff:a.b.c.d/n``) win it.
    """
    if not policy.allow_networks and not policy.deny_networks:
        return None
    starts = [IPV4_MAPPED_PREFIX]
    ends = [IPV4_MAPPED_PREFIX | 0xFFFF_FFFF]
    labels = [0]
    for label, networks in ((_NET_ALLOW, policy.allow_networks), (_NET_DENY, policy.deny_networks)):
        for network in networks:
            offset = IPV4_MAPPED_PREFIX if network.version == 4 else 0
            starts.append(offset | int(network.network_address))
            ends.append(offset | int(network.broadcast_address))
            labels.append(label)
    return build_table(6, starts, ends, labels)


# ---------------------------------------------------------------------------------------
# Loading


def example_policies_path() -> Path:
    """Return the path of the example policy file installed with lookupd."""
    return Path(__file__).parent.parent / "data" / EXAMPLE_POLICIES


def load_policies(path: str | os.PathLike[str]) -> PolicySet:
    """Load and validate a policy file.

    Raises:
        PolicyError: the file cannot be read, is not valid YAML, or breaks a rule of the
            schema (see :mod:`lookupd.policies`); the message names the file, the policy
            and the field.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"{path}: cannot read the policy file: {exc.strerror or exc}"
        raise PolicyError(msg) from exc
    return parse_policies(data, source=str(path))


def parse_policies(text: str | bytes, source: str = "<string>") -> PolicySet:
    """Parse and validate policies from YAML text; ``source`` names it in errors.

    Raises:
        PolicyError: as :func:`load_policies`.
    """
    data = text.encode() if isinstance(text, str) else bytes(text)
    try:
        # _Loader is a SafeLoader: it builds only plain data, never Python objects.
        document = yaml.load(data, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        msg = f"{source}: {at}not valid YAML: {problem}"
        raise PolicyError(msg) from exc
    except yaml.YAMLError as exc:
        msg = f"{source}: not valid YAML: {exc}"
        raise PolicyError(msg) from exc
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
    return PolicySet(MappingProxyType(policies), source, hashlib.sha256(data).hexdigest())


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
    if value in _UNKNOWN_MARKERS:
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


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with YAML 1.2 booleans and duplicate keys refused.

    YAML 1.1 reads ``NO``, ``no``, ``on``, ``off``, ``yes`` as booleans, so
    ``allow_countries: [NO, SE]`` would lose Norway; here only true/false are booleans.
    A repeated key (two policies of the same name) would silently keep the last one.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
