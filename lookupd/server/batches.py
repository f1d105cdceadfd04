"""The limits a request's batch meets: its size, whole packed addresses, and the chunks
between which an abandoned call stops."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from lookupd.core.packed import ADDRESS_BYTES
from lookupd.server.errors import BadRequestError, CallAbandonedError

KeepGoing = Callable[[], bool]
"""Asked between chunks whether the call is still wanted (``grpc.ServicerContext.is_active``)."""
DEFAULT_MAX_BATCH = 100_000
"""Default most addresses per request (text and packed together)."""
# Addresses answered between two checks that the call is still wanted (deadline, cancel):
# few enough that an expired call stops soon, enough that the checks cost little beside
# the work (see bench/README.md, "Figures behind design choices in the code").
CHUNK_ADDRESSES = 32_768
V4_BYTES = ADDRESS_BYTES[4]
V6_BYTES = ADDRESS_BYTES[6]


def check_batch(count: int, max_batch: int) -> None:
    """Refuse a request of more than ``max_batch`` addresses.

    Raises:
        BadRequestError: with the limit in the message.
    """
    if count > max_batch:
        msg = (
            f"batch of {count:,} addresses is over the limit of {max_batch:,} "
            "per request: split it into chunks"
        )
        raise BadRequestError(msg)


def packed_count(ipv4: bytes, ipv6: bytes) -> int:
    """Return how many addresses packed fields hold.

    Raises:
        BadRequestError: a length is not a multiple of the family's width.
    """
    if len(ipv4) % V4_BYTES:
        msg = f"ipv4 holds {len(ipv4)} bytes, not a multiple of {V4_BYTES}"
        raise BadRequestError(msg)
    if len(ipv6) % V6_BYTES:
        msg = f"ipv6 holds {len(ipv6)} bytes, not a multiple of {V6_BYTES}"
        raise BadRequestError(msg)
    return len(ipv4) // V4_BYTES + len(ipv6) // V6_BYTES


def chunks(count: int, keep_going: KeepGoing | None) -> Iterator[slice]:
    """Slices of at most ``CHUNK_ADDRESSES`` over ``count`` items; between two, ask
    ``keep_going`` (the call still wanted?), so a caller that gave up stops the work.

    Raises:
        CallAbandonedError: ``keep_going`` said stop.
    """
    for start in range(0, count, CHUNK_ADDRESSES):
        if start and keep_going is not None and not keep_going():
            raise CallAbandonedError("the caller stopped waiting")
        yield slice(start, min(start + CHUNK_ADDRESSES, count))
