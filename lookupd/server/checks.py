"""Answer ``CheckRegion``: addresses checked against a named policy; pure work, no gRPC."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lookupd.core.result import LookupResult
from lookupd.errors import quoted
from lookupd.server.answers import Answerer
from lookupd.server.batches import KeepGoing, check_batch, packed_count
from lookupd.server.decoding import decode, scan
from lookupd.server.errors import UnknownPolicyError
from lookupd.v1 import lookup_pb2 as pb

# CheckRegionRequest.addresses: counted on the wire before a request is decoded.
_FIELD_ADDRESSES: int = pb.CheckRegionRequest.DESCRIPTOR.fields_by_name["addresses"].number

# The verdicts and reasons of an empty check (read-only: shared by every call).
_NO_DECISIONS = np.zeros(0, dtype=np.uint8)
_NO_DECISIONS.flags.writeable = False


@dataclass(frozen=True, slots=True)
class Checked:
    """A check's answer per address: text addresses, then packed IPv4, then packed IPv6."""

    policy: str
    """The policy checked against."""
    verdicts: npt.NDArray[np.uint8]
    """The ``lookupd.v1.Verdict`` numbers."""
    reasons: npt.NDArray[np.uint8]
    """The ``lookupd.v1.Reason`` numbers."""
    countries: list[str]
    """The countries ("" where none)."""


def answer_check(
    answerer: Answerer,
    request: pb.CheckRegionRequest | bytes,
    keep_going: KeepGoing | None = None,
) -> tuple[pb.CheckRegionResponse, Checked]:
    """Answer a ``CheckRegion`` request, serialized or decoded, with the answer per address
    (see :func:`check`).

    A serialized request's text addresses are counted on the wire first, so a batch over
    the limit is refused before any is decoded. ``keep_going`` is not asked: a check is
    answered in one piece.

    Raises:
        BadRequestError: the message is malformed (invalid UTF-8 in an address or the
            policy name included), or see :func:`check`.
        UnknownPolicyError: see :func:`check`.
    """
    if isinstance(request, bytes):
        count, _ = scan(pb.CheckRegionRequest, request, _FIELD_ADDRESSES)
        check_batch(count, answerer.max_batch)
        request = decode(pb.CheckRegionRequest, request)
    checked = check(answerer, request.policy, request.addresses, request.ipv4, request.ipv6)
    response = pb.CheckRegionResponse(
        verdicts=checked.verdicts.tolist(),
        reasons=checked.reasons.tolist(),
        countries=checked.countries,
        data_version=answerer.version_message(),
        policy_version=answerer.policy_version,
    )
    return response, checked


def check(
    answerer: Answerer,
    policy: str,
    addresses: Sequence[str],
    ipv4: bytes = b"",
    ipv6: bytes = b"",
) -> Checked:
    """Check addresses (text, then packed IPv4, then packed IPv6) against a policy.

    Raises:
        UnknownPolicyError: no policy of that name (the message quotes at most 100
            characters of it, and lists the known ones).
        BadRequestError: malformed packed input or a batch over the limit.
    """
    check_batch(len(addresses) + packed_count(ipv4, ipv6), answerer.max_batch)
    policies = answerer.policies
    if policies is None or policy not in policies.names:
        known = ", ".join(sorted(policies.names)) if policies is not None else ""
        msg = f"no policy named {quoted(policy)}; known policies: {known or 'none loaded'}"
        raise UnknownPolicyError(msg)
    db = answerer.db
    parts: list[LookupResult] = []
    if addresses:
        items = addresses if isinstance(addresses, (list, tuple)) else list(addresses)
        parts.append(db.lookup(items))
    if ipv4:
        parts.append(db.lookup(ipv4, version=4))
    if ipv6:
        parts.append(db.lookup(ipv6, version=6))
    decided = [policies.evaluate(policy, result) for result in parts]
    countries: list[str] = []
    for result in parts:
        countries += answerer.countries[result.labels].tolist()
    if not decided:
        return Checked(policy, _NO_DECISIONS, _NO_DECISIONS, countries)
    if len(decided) == 1:
        return Checked(policy, decided[0].verdicts, decided[0].reasons, countries)
    verdicts = np.concatenate([d.verdicts for d in decided])
    reasons = np.concatenate([d.reasons for d in decided])
    return Checked(policy, verdicts, reasons, countries)
