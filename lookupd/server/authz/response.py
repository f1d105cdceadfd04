"""The ``CheckResponse`` for a decision: what Envoy does with the request, and what it tells.

Allowed: the request goes upstream with ``x-lookupd-*`` headers set by overwriting (a
client can never pre-set them; those that do not apply are removed). Denied: Envoy answers
the client itself with the deny status, the ``x-lookupd-verdict`` and
``x-lookupd-reason`` headers and a small JSON body. Both carry the data and policy
versions, and the same facts as dynamic metadata for access logs (namespace
``envoy.filters.http.ext_authz``).
"""

from __future__ import annotations

import json

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3 import external_auth_pb2 as authz_pb
from envoy.type.v3.http_status_pb2 import HttpStatus
from google.protobuf.struct_pb2 import Struct
from google.rpc import code_pb2, status_pb2

from lookupd.server.authz.decision import Decision

HEADER_PREFIX = "x-lookupd-"
COUNTRY_HEADER = "x-lookupd-country"
SUBDIVISION_HEADER = "x-lookupd-subdivision"
VERDICT_HEADER = "x-lookupd-verdict"
REASON_HEADER = "x-lookupd-reason"
POLICY_HEADER = "x-lookupd-policy"
DATA_VERSION_HEADER = "x-lookupd-data-version"
POLICY_VERSION_HEADER = "x-lookupd-policy-version"
# Every header lookupd sets upstream: each is either set or removed on every allowed request.
UPSTREAM_HEADERS = (
    COUNTRY_HEADER,
    SUBDIVISION_HEADER,
    VERDICT_HEADER,
    REASON_HEADER,
    POLICY_HEADER,
    DATA_VERSION_HEADER,
    POLICY_VERSION_HEADER,
)
_OVERWRITE = HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD
DEFAULT_DENY_STATUS = 403
# 4xx codes a denial may use: Envoy answers the client with it as given.
DENY_STATUSES = (400, 401, 403, 404, 429, 451)


def facts(
    decision: Decision, country: str, subdivision: str, data_version: str, policy_version: str
) -> dict[str, str]:
    """The facts of a decision, by the names the JSON body gives them (the headers' names
    are these with ``x-lookupd-`` before and ``-`` for ``_``; the metadata's ``lookupd_``
    before)."""
    return {
        "verdict": "allow" if decision.allowed else "deny",
        "reason": decision.reason,
        "policy": decision.policy,
        "country": country,
        "subdivision": subdivision,
        "data_version": data_version,
        "policy_version": policy_version,
    }


def check_response(said: dict[str, str], allowed: bool, deny_status: int) -> authz_pb.CheckResponse:
    """Return the ``CheckResponse`` telling Envoy ``said`` (from :func:`facts`)."""
    metadata = Struct()
    metadata.update({f"lookupd_{key}": value for key, value in said.items()})
    if allowed:
        present = {
            HEADER_PREFIX + key.replace("_", "-"): value for key, value in said.items() if value
        }
        return authz_pb.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            ok_response=authz_pb.OkHttpResponse(
                headers=[_header(name, value) for name, value in present.items()],
                headers_to_remove=[name for name in UPSTREAM_HEADERS if name not in present],
            ),
            dynamic_metadata=metadata,
        )
    body = json.dumps(said, separators=(",", ":"), sort_keys=True)
    return authz_pb.CheckResponse(
        status=status_pb2.Status(code=code_pb2.PERMISSION_DENIED),
        denied_response=authz_pb.DeniedHttpResponse(
            # A plain int: 451 is not in Envoy's StatusCode enum, and Envoy sends the number.
            status=HttpStatus(code=deny_status),
            headers=[
                _header("content-type", "application/json"),
                _header(VERDICT_HEADER, said["verdict"]),
                _header(REASON_HEADER, said["reason"]),
                _header(DATA_VERSION_HEADER, said["data_version"]),
                _header(POLICY_VERSION_HEADER, said["policy_version"]),
            ],
            body=body + "\n",
        ),
        dynamic_metadata=metadata,
    )


def _header(name: str, value: str) -> HeaderValueOption:
    return HeaderValueOption(header=HeaderValue(key=name, value=value), append_action=_OVERWRITE)
