"""The ``envoy.service.auth.v3.Authorization`` servicer: Envoy's ``Check``, one request each.

Which policy: the route's ``context_extensions`` key ``lookupd_policy``, else the server's
``--authz-policy``. Which address: ``--authz-ip-source`` (:mod:`.address`). What is
decided: :mod:`.decision`; what Envoy is told: :mod:`.response`. A decision's response
depends only on the data, the policies and the decision, never on the address, so each is
serialized once per loaded answerer and sent as bytes after that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2 as authz_pb

from lookupd.errors import quoted
from lookupd.server.answers import Answerer
from lookupd.server.authz.address import PEER, AddressSource
from lookupd.server.authz.decision import UNKNOWN_POLICY, Decision, decide, place_of
from lookupd.server.authz.response import DEFAULT_DENY_STATUS, check_response, facts
from lookupd.server.guard import GuardedRegistrar
from lookupd.server.logs import log_event

if TYPE_CHECKING:
    from lookupd.server.metrics import Metrics

_LOGGER = logging.getLogger(__name__)

AUTHZ_SERVICE: str = authz_pb.DESCRIPTOR.services_by_name["Authorization"].full_name
"""``envoy.service.auth.v3.Authorization``."""
POLICY_KEY = "lookupd_policy"
"""The ``context_extensions`` key naming the policy of a route or virtual host."""
# Unknown policy names get a metrics label (and a log line) each, up to this many; the rest
# share one label, so a misconfigured gateway cannot grow the metrics without bound.
_MOST_UNKNOWN_NAMES = 32
_OTHER_UNKNOWN = "(other unknown)"
# Serialized responses kept per answerer: (policy, allowed, reason, label) takes a few
# thousand values at most (labels x reasons x policies in use); beyond this, start over.
_MOST_RESPONSES = 1 << 16


@dataclass(frozen=True, slots=True)
class AuthzConfig:
    """How the server answers Envoy; every field has a ``lookupd serve`` flag and variable."""

    policy: str = ""
    """The policy of requests whose route names none ("": such requests are denied)."""
    ip_source: AddressSource = PEER
    """Where the client's address is read."""
    deny_status: int = DEFAULT_DENY_STATUS
    """The HTTP status of a denied request."""


class AuthorizationServicer:
    """Answer Envoy's ``Check`` from the loaded data and policies.

    Until :meth:`load` every call fails with UNAVAILABLE, which Envoy turns into its
    ``status_on_error`` (configure 503: fail closed).
    """

    def __init__(self, config: AuthzConfig, metrics: Metrics | None = None) -> None:
        self._config = config
        self._metrics = metrics
        self._answerer: Answerer | None = None
        self._responses: dict[tuple[str, bool, str, int], bytes] = {}
        self._responses_for: Answerer | None = None
        self._unknown: set[str] = set()

    def load(self, answerer: Answerer) -> None:
        """Answer from ``answerer`` from now on (one assignment: atomic for callers)."""
        self._answerer = answerer

    def check(self, request: authz_pb.CheckRequest, context: grpc.ServicerContext) -> bytes:
        """Answer one ``Check`` with the serialized ``CheckResponse``."""
        started = time.perf_counter()
        answerer = self._answerer
        if answerer is None:
            if self._metrics is not None:
                code = grpc.StatusCode.UNAVAILABLE
                self._metrics.observe_failure("Check", code.name, time.perf_counter() - started)
            context.abort(grpc.StatusCode.UNAVAILABLE, "data not loaded yet")
        attributes = request.attributes
        policy = attributes.context_extensions.get(POLICY_KEY) or self._config.policy
        source = self._config.ip_source
        address = source.pick(
            attributes.source.address.socket_address.address,
            {} if source.kind == "peer" else _headers(attributes.request.http),
        )
        decision = decide(answerer, policy, address)
        response = self._response(answerer, decision)
        if self._metrics is not None or decision.reason == UNKNOWN_POLICY:
            self._observe(decision, time.perf_counter() - started)
        return response

    def _response(self, answerer: Answerer, decision: Decision) -> bytes:
        if answerer is not self._responses_for or len(self._responses) >= _MOST_RESPONSES:
            # A new answerer (a reload): its versions differ; start over. Two threads doing
            # this at once build equal tables, either may win.
            self._responses = {}
            self._responses_for = answerer
        key = (decision.policy, decision.allowed, decision.reason, decision.label)
        known = self._responses.get(key)
        if known is None:
            country, subdivision = place_of(answerer, decision.label)
            said = facts(
                decision, country, subdivision, answerer.version.id, answerer.policy_version
            )
            message = check_response(said, decision.allowed, self._config.deny_status)
            known = self._responses[key] = message.SerializeToString()
        return known

    def _observe(self, decision: Decision, seconds: float) -> None:
        policy = decision.policy
        if decision.reason == UNKNOWN_POLICY:
            policy = self._unknown_label(policy)
        if self._metrics is not None:
            verdict = "allow" if decision.allowed else "deny"
            self._metrics.observe_authz(policy, verdict, decision.reason, seconds)

    def _unknown_label(self, name: str) -> str:
        """The metrics label of an unknown policy name, logging the name the first time."""
        if name in self._unknown:
            return name
        if len(self._unknown) >= _MOST_UNKNOWN_NAMES:
            return _OTHER_UNKNOWN
        self._unknown.add(name)
        what = f"no policy named {quoted(name)}" if name else "no policy named by the route"
        log_event(
            _LOGGER,
            logging.WARNING,
            "authz_unknown_policy",
            f"Check requests are denied: {what} (set {POLICY_KEY} or --authz-policy)",
            policy=name,
        )
        return name


def _headers(http: Any) -> Mapping[str, str]:
    """The request's headers by lower-case name, from ``headers`` or, where Envoy sends
    them raw (``encode_raw_headers``), ``header_map``."""
    headers: Mapping[str, str] = http.headers
    if headers or not http.HasField("header_map"):
        return headers
    return {
        entry.key.lower(): entry.raw_value.decode("utf-8", "replace") or entry.value
        for entry in http.header_map.headers
    }


def _pass_through(data: bytes) -> bytes:
    return data


def add_authorization_service(servicer: AuthorizationServicer, registrar: GuardedRegistrar) -> None:
    """Register ``Check``: requests decoded by the guarded registrar (bytes that do not
    decode are refused with INVALID_ARGUMENT), responses sent as serialized."""
    handler = grpc.unary_unary_rpc_method_handler(
        servicer.check,
        request_deserializer=authz_pb.CheckRequest.FromString,
        response_serializer=_pass_through,
    )
    handlers = {"Check": handler}
    registrar.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(AUTHZ_SERVICE, handlers),)
    )
    registrar.add_registered_method_handlers(AUTHZ_SERVICE, handlers)
