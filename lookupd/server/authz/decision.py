"""Decide one HTTP request: the client's address checked against a named policy; no gRPC."""

from __future__ import annotations

from dataclasses import dataclass

from lookupd.codes import Reason, Verdict
from lookupd.core.labels import split_label
from lookupd.server.answers import Answerer

UNKNOWN_POLICY = "unknown_policy"
"""The reason of a request whose policy is missing or not loaded (denied: fail closed)."""

# Reason words, as the metrics and CheckRegion's enum name them: Reason.INVALID -> "invalid".
_REASON_WORDS: dict[int, str] = {int(member): member.name.lower() for member in Reason}


@dataclass(frozen=True, slots=True)
class Decision:
    """What was decided for one request, and from what."""

    policy: str
    """The policy asked for ("" when none was named)."""
    allowed: bool
    """Whether the request may go on."""
    reason: str
    """The deciding rule in one word: a :class:`~lookupd.codes.Reason` name in lower case
    (``country_denied``, ``invalid``, ...), or :data:`UNKNOWN_POLICY`."""
    label: int
    """The address's label in the data (0: no country: invalid, reserved, not found, or
    not looked up)."""


def decide(answerer: Answerer, policy: str, address: str) -> Decision:
    """Check ``address`` (text, as the request gave it; "" for none) against ``policy``.

    Never raises for what a request holds: a missing or unknown policy is denied with
    :data:`UNKNOWN_POLICY`, an address that is missing or does not parse with ``invalid``.
    """
    policies = answerer.policies
    if policies is None or policy not in policies.names:
        return Decision(policy, False, UNKNOWN_POLICY, 0)
    label, status, key = answerer.db.locate_one(address)
    verdict, reason = policies.decide_one(policy, label, status, key)
    return Decision(policy, verdict == Verdict.ALLOW, _REASON_WORDS[reason], label)


def place_of(answerer: Answerer, label: int) -> tuple[str, str]:
    """Return the country and subdivision ("" where none) of a label of the answerer's data."""
    if label == 0:
        return "", ""
    country, subdivision = split_label(answerer.db.label_names[label])
    return country, subdivision or ""
