"""Policies compiled against one database: per-label tables and network ranges, decided in bulk.

Compiling turns each policy into a verdict and a reason per (status, label) pair and a
small range table of its networks; evaluation is then a few numpy gathers and one
search-core pass, with no Python loop per address.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from lookupd.codes import Reason, Status, Verdict, code_array
from lookupd.core import _search
from lookupd.core.constants import IPV4_MAPPED_PREFIX
from lookupd.core.database import Database, bind_search
from lookupd.core.labels import split_label
from lookupd.core.result import LookupResult
from lookupd.core.table import RangeTable, build_table
from lookupd.policies.iso3166 import DATA_CONVENTIONS, is_country
from lookupd.policies.model import Decisions, Policy

if TYPE_CHECKING:
    # Only the annotation: PolicySet.compile is what builds CompiledPolicies.
    from lookupd.policies.policy_set import PolicySet

# Rows of a compiled policy's tables, indexed by Status number (row 0, no status, unused).
_STATUSES = max(Status) + 1
# Network table labels: 0 no override, then these.
NET_ALLOW = 1
NET_DENY = 2


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
    one: _One
    """The same tables in the form one decision at a time reads fastest."""


@dataclass(frozen=True, slots=True)
class _One:
    """A compiled policy for :meth:`CompiledPolicies.decide_one`: bytes, whose items are
    Python ints (a numpy array's are numpy scalars), and the network search bound."""

    verdicts: bytes
    reasons: bytes
    find_network: Callable[[int], int] | None
    network_verdicts: bytes
    network_reasons: bytes

    @classmethod
    def of(
        cls,
        verdicts: npt.NDArray[np.uint8],
        reasons: npt.NDArray[np.uint8],
        networks: RangeTable | None,
        network_verdicts: npt.NDArray[np.uint8],
        network_reasons: npt.NDArray[np.uint8],
    ) -> _One:
        find = (
            None
            if networks is None
            else bind_search(_search.find_index_v6, networks.starts, networks.jump)
        )
        return cls(
            verdicts.tobytes(),
            reasons.tobytes(),
            find,
            network_verdicts.tobytes(),
            network_reasons.tobytes(),
        )


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

    def decide_one(self, name: str, label: int, status: int, key: int) -> tuple[int, int]:
        """Decide one address under policy ``name`` from its label, status and 128-bit key
        (as :meth:`Database.locate_one` gives them): its verdict and reason numbers, the
        same as :meth:`evaluate` gives that address in a batch.

        Raises:
            KeyError: no policy is named ``name``.
        """
        one = self._compiled[name].one
        index = status * self._n_labels + label
        if one.find_network is not None and status != Status.INVALID_ADDRESS:
            found = one.find_network(key)
            override = one.network_verdicts[found]
            if override:
                return override, one.network_reasons[found]
        return one.verdicts[index], one.reasons[index]

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
    networks = network_table(policy)
    if networks is None:
        network_verdicts = network_reasons = np.zeros(1, dtype=np.uint8)
    else:
        by_label = np.array([0, Verdict.ALLOW, Verdict.DENY], dtype=np.uint8)
        reason_by_label = np.array(
            [0, Reason.NETWORK_ALLOWED, Reason.NETWORK_DENIED], dtype=np.uint8
        )
        network_verdicts = by_label[networks.labels]
        network_reasons = reason_by_label[networks.labels]
    tables = (verdicts.ravel(), reasons.ravel(), networks, network_verdicts, network_reasons)
    return _Compiled(*tables, _One.of(*tables))


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


def network_table(policy: Policy) -> RangeTable | None:
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
    for label, networks in ((NET_ALLOW, policy.allow_networks), (NET_DENY, policy.deny_networks)):
        for network in networks:
            offset = IPV4_MAPPED_PREFIX if network.version == 4 else 0
            starts.append(offset | int(network.network_address))
            ends.append(offset | int(network.broadcast_address))
            labels.append(label)
    return build_table(6, starts, ends, labels)
