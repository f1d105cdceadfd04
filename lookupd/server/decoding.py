"""Decode requests from the bytes gRPC received: malformed bytes are a refusal, not a fault.

Every service's handlers receive the request's bytes and decode them here (the lookup
service in its frame, the others through :mod:`lookupd.server.guard`), so bytes that are not
the message end the call with INVALID_ARGUMENT and a short message, counted like any other
refusal, where gRPC's own deserializer would end it INTERNAL and log a traceback.

A text batch is counted on the wire (:func:`scan`) before it is decoded, so a request over
the batch limit is refused before protobuf makes a ``str`` per address. The scanner is a
little stricter than protobuf: it also refuses groups (deprecated; no lookupd message has
one) and the addresses field sent with another wire type, which protobuf would keep as an
unknown field. No protobuf client sends either.

Invalid UTF-8 in a ``string`` field (an address, a policy name) refuses the whole request
wherever it is sent (INVALID_ARGUMENT, "… is not valid UTF-8"): protobuf refuses to decode
such a proto3 message, and the paths that read addresses straight from the bytes check it
too, so every RPC and batch size answers alike.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from lookupd.core import _parse
from lookupd.server.errors import BadRequestError

_M = TypeVar("_M", bound=Message)
# No field has number 0: scanning for it checks the wire format and counts nothing.
_NO_FIELD = 0


def decode(message_type: type[_M], data: bytes) -> _M:
    """Decode ``data`` as a ``message_type``.

    Raises:
        BadRequestError: it is not one (the message says why, in a few words).
    """
    try:
        return message_type.FromString(data)
    except DecodeError:
        raise BadRequestError(_why(message_type, data)) from None


def scan(message_type: type[Message], data: bytes, field: int) -> tuple[int, int]:
    """Count, without decoding ``data``, the length-delimited fields number ``field`` and the
    other fields of a serialized ``message_type`` (:func:`lookupd.core._parse.scan_fields`).

    Raises:
        BadRequestError: ``data`` is not protobuf wire format (or holds a group, which no
            lookupd message has, or ``field`` with another wire type).
    """
    count, others = _parse.scan_fields(data, field)
    if count < 0:
        msg = f"malformed {message_type.DESCRIPTOR.name}: not protobuf wire format"
        raise BadRequestError(msg)
    return count, others


def _why(message_type: type[Message], data: bytes) -> str:
    """Why protobuf could not decode ``data`` as a ``message_type``, in a few words."""
    descriptor = message_type.DESCRIPTOR
    name = descriptor.name
    if _parse.scan_fields(data, _NO_FIELD)[0] < 0:
        return f"malformed {name}: not protobuf wire format"
    # Well-formed at the top: what protobuf refused is inside a field.
    if any(field.message_type is not None for field in descriptor.fields):
        return f"malformed {name}: invalid UTF-8 in a string field, or a malformed nested message"
    return f"malformed {name}: a string field is not valid UTF-8"
