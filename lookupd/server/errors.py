"""Requests the service refuses as a whole; the servicer maps each kind to a gRPC status."""

from __future__ import annotations

from lookupd.errors import LookupdError


class RequestError(LookupdError):
    """A request the service refuses as a whole: the gRPC layer maps each kind to a status."""


class BadRequestError(RequestError):
    """Malformed request or over a limit (gRPC ``INVALID_ARGUMENT``)."""


class UnknownPolicyError(RequestError):
    """No policy of that name is loaded (gRPC ``NOT_FOUND``)."""


class CallAbandonedError(RequestError):
    """The caller stopped waiting (deadline passed or cancelled) before the work finished."""
