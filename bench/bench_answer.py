"""What the gRPC server computes per call, in-process (no transport): the two fast paths.

``answer-packed``: a packed IPv4 or IPv6 batch answered by the search core in one pass
(``lookups.lookup_packed``, which calls ``answer_packed_v4`` / ``answer_packed_v6``) against
the composition it replaced (``Database.lookup`` on the packed bytes, then the country-code
and status gathers), for batches of 1,000 and 10,000 random public IPv4 addresses, and of
IPv6 addresses drawn from the real table's rows (row-uniform).

``answer-text``: a serialized ``LookupRequest`` of text addresses answered from its bytes
(``lookups.lookup_request_answer``: ``scan_fields``/``parse_fields``) against decoding it
with protobuf first, as gRPC would (``LookupRequest.FromString``, then
``lookup_text_answer`` on its ``addresses``).

Figures are per call; the report's ratio column is the speed-up over the baseline.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import numpy as np
import pytest

import lookupd
from lookupd.server.answers import Answerer
from lookupd.server.lookups import lookup_packed, lookup_request_answer, lookup_text_answer
from lookupd.v1 import lookup_pb2 as pb

BATCHES = (1_000, 10_000)
_SEED = 20261125


@pytest.fixture(scope="module")
def answerer(db: lookupd.Database) -> Answerer:
    return Answerer.load(db)


def _public_v4(n: int) -> np.ndarray[Any, np.dtype[np.uint32]]:
    rng = np.random.default_rng(_SEED + n)
    return rng.integers(1 << 24, 223 << 24, n, dtype=np.uint64).astype(np.uint32)


def composed_packed_v4(answerer: Answerer, packed: bytes) -> tuple[bytes, bytes]:
    """The packed IPv4 answer as the service built it before ``answer_packed_v4``."""
    result = answerer.db.lookup(packed, version=4)
    return answerer.codes[result.labels].tobytes(), result.status.tobytes()


def composed_packed_v6(answerer: Answerer, packed: bytes) -> tuple[bytes, bytes]:
    """The packed IPv6 answer as the service built it before ``answer_packed_v6``."""
    result = answerer.db.lookup(packed, version=6)
    return answerer.codes[result.labels].tobytes(), result.status.tobytes()


def _row_uniform_v6(db: lookupd.Database, n: int) -> bytes:
    rng = np.random.default_rng(_SEED + n)
    segments = db.v6.segments()
    rows = rng.integers(0, len(segments), n)
    values = []
    for row in rows.tolist():
        start, end, _ = segments[row]
        values.append(start + int(rng.integers(0, min(end - start, 2**62) + 1)))
    return b"".join(value.to_bytes(16, "big") for value in values)


def decoded_text(answerer: Answerer, message: bytes) -> Any:
    """The text answer as gRPC's own deserializer would have it: decode, then answer."""
    return lookup_text_answer(answerer, pb.LookupRequest.FromString(message).addresses)


@pytest.mark.benchmark(group="answer-packed")
@pytest.mark.parametrize("batch", BATCHES)
def test_answer_packed_v4(run_call: Any, answerer: Answerer, batch: int) -> None:
    packed = _public_v4(batch).astype(">u4").tobytes()
    codes, _, status, _ = lookup_packed(answerer, packed, b"")
    assert (codes, status) == composed_packed_v4(answerer, packed)
    run_call(lookup_packed, answerer, packed, b"", workload=f"ipv4 {batch:,}")


@pytest.mark.benchmark(group="answer-packed")
@pytest.mark.parametrize("batch", BATCHES)
def test_composed_packed_v4(run_call: Any, answerer: Answerer, batch: int) -> None:
    packed = _public_v4(batch).astype(">u4").tobytes()
    run_call(
        composed_packed_v4,
        answerer,
        packed,
        workload=f"ipv4 {batch:,}",
        baseline="numpy composition",
    )


@pytest.mark.benchmark(group="answer-packed")
@pytest.mark.parametrize("batch", BATCHES)
def test_answer_packed_v6(run_call: Any, answerer: Answerer, batch: int) -> None:
    packed = _row_uniform_v6(answerer.db, batch)
    _, codes, _, status = lookup_packed(answerer, b"", packed)
    assert (codes, status) == composed_packed_v6(answerer, packed)
    run_call(lookup_packed, answerer, b"", packed, workload=f"ipv6 {batch:,}")


@pytest.mark.benchmark(group="answer-packed")
@pytest.mark.parametrize("batch", BATCHES)
def test_composed_packed_v6(run_call: Any, answerer: Answerer, batch: int) -> None:
    run_call(
        composed_packed_v6,
        answerer,
        _row_uniform_v6(answerer.db, batch),
        workload=f"ipv6 {batch:,}",
        baseline="numpy composition",
    )


def _request(batch: int) -> bytes:
    texts = [str(ipaddress.IPv4Address(int(k))) for k in _public_v4(batch)]
    return pb.LookupRequest(addresses=texts).SerializeToString()


@pytest.mark.benchmark(group="answer-text")
@pytest.mark.parametrize("batch", BATCHES)
def test_answer_request_bytes(run_call: Any, answerer: Answerer, batch: int) -> None:
    message = _request(batch)
    answer = lookup_request_answer(answerer, message)
    assert answer is not None
    assert answer[0] == decoded_text(answerer, message)[0]
    run_call(lookup_request_answer, answerer, message, workload=f"text {batch:,}")


@pytest.mark.benchmark(group="answer-text")
@pytest.mark.parametrize("batch", BATCHES)
def test_decoded_text(run_call: Any, answerer: Answerer, batch: int) -> None:
    run_call(
        decoded_text,
        answerer,
        _request(batch),
        workload=f"text {batch:,}",
        baseline="protobuf decode",
    )
