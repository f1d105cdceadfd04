"""Answer ``Lookup`` (text) and ``LookupPacked``/``StreamLookup`` (packed): pure work, no gRPC.

Text answers are the serialized ``LookupResponse`` (:mod:`lookupd.server.encoding`); the
servicer hands those bytes to gRPC as they are. Every answer comes with the per-address
``lookupd.Status`` array, for the metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from lookupd.codes import Status
from lookupd.core import _parse, _search, reserved
from lookupd.errors import InvalidAddressError
from lookupd.server.answers import Answerer
from lookupd.server.batches import (
    V4_BYTES,
    V6_BYTES,
    KeepGoing,
    check_batch,
    chunks,
    packed_count,
)
from lookupd.server.decoding import decode, scan
from lookupd.v1 import lookup_pb2 as pb

TextAnswer = tuple[bytes, npt.NDArray[np.uint8]]
"""A serialized ``LookupResponse``, and the ``lookupd.Status`` of each address."""

# Text requests of at most this many addresses (without subdivisions) are answered with
# Database.lookup_one per address instead of one Database.lookup: for a handful of
# addresses a per-address loop beats the batch path's fixed numpy and argument costs
# (chosen by measurement: see bench/README.md, "Figures behind design choices in the code").
SCALAR_MOST = 8
# LookupRequest.addresses: the field lookup_request_answer reads from the raw message.
_FIELD_ADDRESSES: int = pb.LookupRequest.DESCRIPTOR.fields_by_name["addresses"].number
# What answer_packed_v4 reads to mark reserved IPv4 addresses: a flag per /16 (0 none, 1
# all, 2 some), then one per segment of the reserved table; none set for a database that
# does not mark them.
_RESERVED_PREFIXES_V4 = np.frombuffer(reserved.PREFIX_FLAGS_V4, dtype=np.uint8)
_NO_RESERVED_PREFIXES_V4 = np.zeros(1 << 16, dtype=np.uint8)
# The statuses of a small all-OK batch (read-only: shared by every call).
_ALL_OK = np.full(SCALAR_MOST, Status.OK, dtype=np.uint8)
_ALL_OK.flags.writeable = False


def answer_lookup(
    answerer: Answerer, request: pb.LookupRequest | bytes, keep_going: KeepGoing | None
) -> TextAnswer:
    """Answer a ``Lookup`` request, serialized (as gRPC received it) or decoded.

    A serialized request's addresses are counted on the wire first, so a batch over the
    limit is refused before any is decoded. A large request of addresses only is read
    straight from its bytes (:func:`lookup_request_answer`); others are decoded, then
    answered as text.

    Raises:
        BadRequestError: the message is malformed (invalid UTF-8 in an address included),
            or the batch is over the limit.
        CallAbandonedError: ``keep_going`` said stop between chunks.
    """
    if isinstance(request, bytes):
        count, others = scan(pb.LookupRequest, request, _FIELD_ADDRESSES)
        check_batch(count, answerer.max_batch)
        if count > SCALAR_MOST and not others:
            return _answer_in_place(answerer, request, count, keep_going)
        request = decode(pb.LookupRequest, request)
    return lookup_text_answer(
        answerer,
        request.addresses,
        subdivisions=request.include_subdivisions,
        keep_going=keep_going,
    )


def lookup_text_answer(
    answerer: Answerer,
    addresses: Sequence[str],
    *,
    subdivisions: bool = False,
    keep_going: KeepGoing | None = None,
) -> TextAnswer:
    """Answer addresses given as text: the serialized ``LookupResponse``, and the statuses.

    Raises:
        BadRequestError: the batch is over the limit.
        CallAbandonedError: ``keep_going`` said stop between chunks.
    """
    check_batch(len(addresses), answerer.max_batch)
    items = addresses if isinstance(addresses, (list, tuple)) else list(addresses)
    if len(items) <= SCALAR_MOST and not subdivisions:
        encoded = _scalar_encoded(answerer, items)
        if encoded is not None:
            return encoded, _ALL_OK[: len(items)]
    labels_parts = []
    status_parts = []
    for part in chunks(len(items), keep_going):
        result = answerer.db.lookup(items[part])
        labels_parts.append(result.labels)
        status_parts.append(result.status)
    return _encode(answerer, labels_parts, status_parts, subdivisions)


def lookup_request_answer(
    answerer: Answerer, message: bytes, *, keep_going: KeepGoing | None = None
) -> TextAnswer | None:
    """Answer a serialized ``LookupRequest`` straight from its bytes, or return None.

    The addresses are parsed in place from the message (:func:`lookupd.core._parse.
    parse_fields`): protobuf would first make a ``str`` of each, which costs more than
    the rest of the answer (bench/README.md, "Two fast paths"). None, for the caller to
    decode the message as usual, when it holds anything but addresses
    (``include_subdivisions``, unknown fields), is malformed (protobuf then says what is
    wrong), or is small (:func:`lookup_text_answer` answers a few addresses one by one,
    without the batch path's fixed costs).

    Raises:
        BadRequestError: the batch is over the limit, or an address is not valid UTF-8.
        CallAbandonedError: ``keep_going`` said stop between chunks.
    """
    count, others = _parse.scan_fields(message, _FIELD_ADDRESSES)
    if count <= SCALAR_MOST or others:
        return None
    check_batch(count, answerer.max_batch)
    return _answer_in_place(answerer, message, count, keep_going)


def _answer_in_place(
    answerer: Answerer, message: bytes, count: int, keep_going: KeepGoing | None
) -> TextAnswer:
    """Answer the ``count`` addresses of a request of addresses only, parsed in place."""
    keys = np.empty((count, 2), dtype=np.uint64)
    status = np.empty(count, dtype=np.uint8)
    invalid = _parse.parse_fields(message, _FIELD_ADDRESSES, keys, status)
    if invalid and not message.isascii():
        # Only an invalid address can hold bytes that are not UTF-8 (a valid one is ASCII):
        # such a request is refused as protobuf refuses it on the other paths.
        decode(pb.LookupRequest, message)
    labels_parts = []
    status_parts = []
    for part in chunks(count, keep_going):
        result = answerer.db.lookup_parsed(keys[part], status[part])
        labels_parts.append(result.labels)
        status_parts.append(result.status)
    return _encode(answerer, labels_parts, status_parts, subdivisions=False)


def _encode(
    answerer: Answerer,
    labels_parts: Sequence[npt.NDArray[np.uint16]],
    status_parts: Sequence[npt.NDArray[np.uint8]],
    subdivisions: bool,
) -> TextAnswer:
    """The serialized ``LookupResponse`` of the labels and statuses, and the statuses."""
    if not labels_parts:
        return answerer.text.version_bytes, _ALL_OK[:0]
    labels = labels_parts[0] if len(labels_parts) == 1 else np.concatenate(labels_parts)
    status = status_parts[0] if len(status_parts) == 1 else np.concatenate(status_parts)
    return answerer.text.encode(labels, status, subdivisions=subdivisions), status


def _scalar_encoded(answerer: Answerer, items: Sequence[str]) -> bytes | None:
    """Encode a small all-OK answer with one ``lookup_one`` per address; None otherwise.

    Any address without a country (invalid, reserved, not found) returns None, and the
    caller answers the batch the ordinary way, which tells those statuses apart.
    """
    lookup_one = answerer.db.lookup_one
    by_country = answerer.text.by_country
    fields = []
    for item in items:
        if type(item) is not str:
            return None
        try:
            country = lookup_one(item)
        except (InvalidAddressError, ValueError):
            return None
        encoded = by_country.get(country) if country else None
        if encoded is None:
            return None
        fields.append(encoded)
    return answerer.text.encode_all_ok(fields)


def answer_packed(
    answerer: Answerer, request: pb.PackedLookupRequest | bytes, keep_going: KeepGoing | None
) -> tuple[pb.PackedLookupResponse, tuple[bytes, bytes]]:
    """Answer a ``LookupPacked`` request (or one ``StreamLookup`` message), serialized or
    decoded, with the status bytes of its IPv4 and of its IPv6 addresses.

    Raises:
        BadRequestError: the message is malformed, or see :func:`lookup_packed`.
        CallAbandonedError: ``keep_going`` said stop between chunks.
    """
    if isinstance(request, bytes):
        request = decode(pb.PackedLookupRequest, request)
    v4_codes, v6_codes, v4_status, v6_status = lookup_packed(
        answerer, request.ipv4, request.ipv6, keep_going=keep_going
    )
    response = pb.PackedLookupResponse(
        ipv4_countries=v4_codes,
        ipv6_countries=v6_codes,
        ipv4_status=v4_status,
        ipv6_status=v6_status,
        data_version=answerer.version_message(),
        tag=request.tag,
    )
    return response, (v4_status, v6_status)


def lookup_packed(
    answerer: Answerer, ipv4: bytes, ipv6: bytes, *, keep_going: KeepGoing | None = None
) -> tuple[bytes, bytes, bytes, bytes]:
    """Answer packed addresses (network order; 4 bytes per IPv4, 16 per IPv6).

    Returns:
        IPv4 countries (2 bytes each), IPv6 countries, IPv4 statuses (1 byte each,
        ``lookupd.v1.Status`` numbers), IPv6 statuses.

    Raises:
        BadRequestError: a length is not a multiple of 4 or 16, or the batch is over the
            limit.
        CallAbandonedError: ``keep_going`` said stop between chunks.
    """
    check_batch(packed_count(ipv4, ipv6), answerer.max_batch)
    v4_codes, v4_status = _packed_v4(answerer, ipv4, keep_going) if ipv4 else (b"", b"")
    v6_codes, v6_status = _packed_v6(answerer, ipv6, keep_going) if ipv6 else (b"", b"")
    return v4_codes, v6_codes, v4_status, v6_status


def _packed_v6(
    answerer: Answerer, data: bytes, keep_going: KeepGoing | None
) -> tuple[bytes, bytes]:
    """Packed IPv6 answered in one pass of the search core, as :func:`_packed_v4`:
    IPv4-mapped addresses from the IPv4 tables, reserved ones marked, codes and statuses
    written straight into the answer's arrays."""
    count = len(data) // V6_BYTES
    codes = np.empty(count, dtype=np.uint16)
    status = np.empty(count, dtype=np.uint8)
    tables = answerer.db.answer_tables
    view = memoryview(data)
    for part in chunks(count, keep_going):
        _search.answer_packed_v6(
            *tables,
            answerer.codes_by_label,
            view[part.start * V6_BYTES : part.stop * V6_BYTES],
            codes[part],
            status[part],
        )
    return codes.tobytes(), status.tobytes()


def _packed_v4(
    answerer: Answerer, data: bytes, keep_going: KeepGoing | None
) -> tuple[bytes, bytes]:
    """Packed IPv4 answered in one pass of the search core (search, reserved check,
    country code and status bytes) instead of composing numpy steps: one pass over the
    addresses, with no intermediate arrays (``bench/bench_answer.py``)."""
    count = len(data) // V4_BYTES
    codes = np.empty(count, dtype=np.uint16)
    status = np.empty(count, dtype=np.uint8)
    db = answerer.db
    prefixes = _RESERVED_PREFIXES_V4 if db.mark_reserved else _NO_RESERVED_PREFIXES_V4
    view = memoryview(data)
    for part in chunks(count, keep_going):
        _search.answer_packed_v4(
            db.v4.starts,  # type: ignore[arg-type]
            db.v4.jump,
            db.v4.labels,
            reserved.TABLE_V4.starts,  # type: ignore[arg-type]
            reserved.TABLE_V4.jump,
            reserved.SEGMENT_FLAGS_V4,
            prefixes,
            answerer.codes_by_label,
            view[part.start * V4_BYTES : part.stop * V4_BYTES],
            codes[part],
            status[part],
        )
    return codes.tobytes(), status.tobytes()
