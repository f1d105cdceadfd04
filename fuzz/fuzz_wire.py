"""Fuzz what reads request bytes: the protobuf field scanner, the packed checks, the answers.

Invariants, for any bytes:

- ``scan_fields``/``parse_fields``: the compiled core and its twin agree (a count, or -1
  and ValueError for malformed wire format), and where protobuf itself decodes the bytes
  as a ``LookupRequest`` the scanner finds its addresses and parses each as ``parse_many``
  parses the decoded ``str``.
- ``packed_count``: a count or ValueError, never anything else.
- Request handling, over the embedded data and the example policies: each request type's
  ``FromString`` raises nothing but DecodeError; ``Lookup`` answered from the raw bytes
  (as the server does) equals ``Lookup`` answered from the decoded message, or both are
  refused with the same error (or the raw bytes are refused as malformed wire format,
  which protobuf may decode: documented in lookupd.server.decoding); ``LookupPacked``,
  ``StreamLookup`` and ``CheckRegion`` answer or raise a ``RequestError``, and a packed
  answer agrees with ``Database.lookup``.
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np
from _harness import check, instrument_lookupd, main
from google.protobuf.message import DecodeError

from lookupd.core import _parse_py
from lookupd.core.packed import packed_count
from lookupd.datafiles.open import open_database
from lookupd.policies.loading import example_policies_path, load_policies
from lookupd.server.answers import Answerer
from lookupd.server.checks import answer_check
from lookupd.server.errors import RequestError
from lookupd.server.lookups import answer_lookup, answer_packed
from lookupd.v1 import lookup_pb2 as pb

try:
    from lookupd.core import _parse_c as compiled
except ImportError:
    compiled = _parse_py

instrument_lookupd(dataflow=("lookupd.core._parse_py", "lookupd.core.packed"))

CORES = (compiled, _parse_py)
# LookupRequest.addresses and CheckRegionRequest.addresses; 3 and 4 are other fields.
FIELDS = (1, 2, 3)
REQUESTS = (
    pb.LookupRequest,
    pb.PackedLookupRequest,
    pb.CheckRegionRequest,
    pb.GetInfoRequest,
    pb.ReloadRequest,
)
# Small, so that the batch limit is reached by inputs of a few KB.
ANSWERER = Answerer.load(open_database(), load_policies(example_policies_path()), max_batch=64)


def _fields(core: object, data: bytes, field: int) -> object:
    """What a core makes of field ``field``: (count, others, keys, status) or "malformed"."""
    count, others = core.scan_fields(data, field)  # type: ignore[attr-defined]
    keys = np.zeros((max(count, 0), 2), dtype=np.uint64)
    status = np.zeros(max(count, 0), dtype=np.uint8)
    try:
        invalid = core.parse_fields(data, field, keys, status)  # type: ignore[attr-defined]
    except ValueError:
        check(count == -1, f"{core.__name__}: parse_fields refused what scan_fields counted")
        return "malformed"
    check(count >= 0, f"{core.__name__}: parse_fields read what scan_fields called malformed")
    return count, others, invalid, keys.tolist(), status.tolist()


def check_scanner(data: bytes) -> None:
    for field in FIELDS:
        got = [_fields(core, data, field) for core in CORES]
        check(got[0] == got[1], f"scan/parse_fields({field}): the cores disagree: {got}")
    try:
        request = pb.LookupRequest.FromString(data)
    except DecodeError:
        return
    scanned = _fields(_parse_py, data, 1)
    if scanned == "malformed":
        return  # protobuf takes groups and wire-type mismatches as unknown fields
    count, _, _, keys, status = scanned  # type: ignore[misc]
    check(count == len(request.addresses), "the scanner and protobuf count differently")
    want_keys = np.zeros((count, 2), dtype=np.uint64)
    want_status = np.zeros(count, dtype=np.uint8)
    _parse_py.parse_many(list(request.addresses), want_keys, want_status)
    check((keys, status) == (want_keys.tolist(), want_status.tolist()), "keys differ")


def check_packed(data: bytes) -> None:
    for version in (None, 0, 4, 6, len(data) % 256):
        try:
            count = packed_count(len(data), version)
        except ValueError:
            continue
        check(count * (4 if version == 4 else 16) == len(data), "packed_count is wrong")


def _outcome(compute: object, *args: object) -> object:
    try:
        return compute(*args)  # type: ignore[operator]
    except RequestError as exc:
        return type(exc).__name__


def check_requests(data: bytes) -> None:
    decoded = {}
    for request_type in REQUESTS:
        with contextlib.suppress(DecodeError):
            decoded[request_type] = request_type.FromString(data)
    raw = _outcome(answer_lookup, ANSWERER, data, None)
    message = decoded.get(pb.LookupRequest)
    if message is None:
        from_message: object = "BadRequestError"  # what answer_lookup makes of DecodeError
    else:
        from_message = _outcome(answer_lookup, ANSWERER, message, None)
    if isinstance(raw, tuple) and isinstance(from_message, tuple):
        same = raw[0] == from_message[0] and raw[1].tolist() == from_message[1].tolist()
    else:
        same = raw == from_message
        # Documented (lookupd.server.decoding): the server refuses what its scanner calls
        # malformed (a group, the addresses field with another wire type), which protobuf
        # would keep as unknown fields.
        if raw == "BadRequestError" and _parse_py.scan_fields(data, 1)[0] < 0:
            same = True
    check(same, f"Lookup from the raw bytes and from the decoded message differ: {raw!r}")
    packed = decoded.get(pb.PackedLookupRequest)
    if packed is not None:
        answer = _outcome(answer_packed, ANSWERER, packed, None)
        if isinstance(answer, tuple):
            check_packed_answer(packed, answer[0])
    region = decoded.get(pb.CheckRegionRequest)
    if region is not None:
        _outcome(answer_check, ANSWERER, region, None)


def check_packed_answer(request: pb.PackedLookupRequest, response: pb.PackedLookupResponse) -> None:
    for version, ips, countries, status in (
        (4, request.ipv4, response.ipv4_countries, response.ipv4_status),
        (6, request.ipv6, response.ipv6_countries, response.ipv6_status),
    ):
        if not ips:
            continue
        result = ANSWERER.db.lookup(ips, version=version)
        check(status == result.status.tobytes(), f"IPv{version} packed statuses differ")
        check(countries == ANSWERER.codes[result.labels].tobytes(), "packed countries differ")
    check(response.tag == request.tag, "the tag is not echoed")


def test_one(data: bytes) -> None:
    check_scanner(data)
    check_packed(data)
    check_requests(data)


if __name__ == "__main__":
    sys.exit(main(test_one))
