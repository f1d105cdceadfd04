"""Batches to requests and back: packing, chunking, the limits, and answers in input order.

Batches go over the packed RPC wherever the client can pack them: numpy arrays and packed
bytes always, and lists of ``str`` too when the compiled parser is present (each address is
parsed here, in C, and invalid ones are answered here without a round trip); the text RPC
makes protobuf build a string per address on each side. Everything here is pure: no
server, no call.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from lookupd.client.results import Answers
from lookupd.codes import Status, code_array
from lookupd.core import _parse
from lookupd.core.constants import IPV4_MAPPED_PREFIX
from lookupd.core.packed import packed_count
from lookupd.v1 import lookup_pb2 as pb
from lookupd.wire import NO_COUNTRY_CODE

# What lookup() and check() take: text addresses, IPv4 as uint32, IPv6 as (n, 2) uint64
# (high, low), or packed bytes in network order with version=4 or 6.
Addresses: TypeAlias = (
    Sequence[str] | npt.NDArray[np.uint32] | npt.NDArray[np.uint64] | bytes | bytearray | memoryview
)

# Within the server's default limit of 100,000 addresses per request; large enough that
# gRPC's fixed cost per call is small beside a packed chunk's work (see bench/README.md,
# "Figures behind design choices in the code").
DEFAULT_CHUNK_SIZE = 50_000
_IPV4_MAPPED_HIGH = IPV4_MAPPED_PREFIX >> 32  # 0xFFFF: the high 32 bits of the low half
_BUFFERS = (bytes, bytearray, memoryview)


@dataclass(slots=True)
class Plan:
    """A batch cut into requests, and where each answer goes in the result."""

    size: int
    """Addresses in the batch."""
    kind: Literal["text", "packed"]
    """Which RPC the requests are for."""
    requests: list[Any] = field(default_factory=list)
    """LookupRequest or PackedLookupRequest messages, in order."""
    status: npt.NDArray[np.uint8] | None = None
    """Packed: statuses known before asking (invalid text); OK elsewhere."""
    v4_index: npt.NDArray[np.intp] | None = None
    """Packed: the positions of the IPv4 addresses in the batch (None: 0..n4-1)."""
    v6_index: npt.NDArray[np.intp] | None = None
    """Packed: the positions of the IPv6 addresses in the batch (None: after the IPv4)."""
    v4_count: int = 0
    """Packed: IPv4 addresses."""

    @property
    def method(self) -> str:
        """The LookupService method the requests are for."""
        return "Lookup" if self.kind == "text" else "LookupPacked"

    def assemble(self, responses: Sequence[Any]) -> Answers:
        """Return the batch's answers from its requests' responses, in order."""
        versions = tuple(dict.fromkeys(response.data_version.id for response in responses))
        if self.kind == "text":
            return self._assemble_text(responses, versions)
        codes = np.full(self.size, NO_COUNTRY_CODE, dtype="S2")
        status = (
            self.status.copy()
            if self.status is not None
            else np.full(self.size, Status.OK, dtype=np.uint8)
        )
        for family in (4, 6):
            raw_codes = b"".join(
                r.ipv4_countries if family == 4 else r.ipv6_countries for r in responses
            )
            raw_status = b"".join(
                r.ipv4_status if family == 4 else r.ipv6_status for r in responses
            )
            if not raw_status:
                continue
            family_status = np.frombuffer(raw_status, dtype=np.uint8)
            family_codes = np.frombuffer(raw_codes, dtype="S2")
            index = self.v4_index if family == 4 else self.v6_index
            if index is None:
                index = (
                    np.arange(len(family_status))
                    if family == 4
                    else np.arange(len(family_status)) + self.v4_count
                )
            status[index] = family_status
            codes[index] = family_codes
        answered = codes.astype("U2")
        answered[status != Status.OK] = ""
        return Answers(answered, code_array(status, Status), versions)

    def _assemble_text(self, responses: Sequence[Any], versions: tuple[str, ...]) -> Answers:
        countries = list(itertools.chain.from_iterable(r.countries for r in responses))
        status = np.fromiter(
            itertools.chain.from_iterable(r.status for r in responses),
            dtype=np.uint8,
            count=self.size,
        )
        subdivisions = list(itertools.chain.from_iterable(r.subdivisions for r in responses))
        return Answers(
            np.array(countries, dtype=np.str_).reshape(self.size),
            code_array(status, Status),
            versions,
            np.array(subdivisions, dtype=np.str_).reshape(-1) if subdivisions else None,
        )


def _chunks(data: bytes, width: int, chunk_size: int) -> list[bytes]:
    step = chunk_size * width
    return [data[start : start + step] for start in range(0, len(data), step)]


def _packed_requests(ipv4: bytes, ipv6: bytes, chunk_size: int) -> list[pb.PackedLookupRequest]:
    """Cut packed addresses into requests of at most ``chunk_size`` addresses.

    A batch that fits goes in one request (both families); a larger one in chunks of IPv4,
    then chunks of IPv6. An empty batch is still one (empty) request: it returns the data
    version.
    """
    if len(ipv4) // 4 + len(ipv6) // 16 <= chunk_size:
        return [pb.PackedLookupRequest(ipv4=ipv4, ipv6=ipv6)]
    return [pb.PackedLookupRequest(ipv4=chunk) for chunk in _chunks(ipv4, 4, chunk_size)] + [
        pb.PackedLookupRequest(ipv6=chunk) for chunk in _chunks(ipv6, 16, chunk_size)
    ]


def _pack_array(addresses: npt.NDArray[Any]) -> tuple[bytes, bytes, Plan]:
    """Pack a ``uint32`` (IPv4) or ``(n, 2)`` ``uint64`` (IPv6) array, any byte order."""
    if addresses.dtype.kind == "u" and addresses.dtype.itemsize == 4 and addresses.ndim == 1:
        count = addresses.shape[0]
        return addresses.astype(">u4").tobytes(), b"", Plan(count, "packed", v4_count=count)
    if (
        addresses.dtype.kind == "u"
        and addresses.dtype.itemsize == 8
        and addresses.ndim == 2
        and addresses.shape[1] == 2
    ):
        return b"", addresses.astype(">u8").tobytes(), Plan(addresses.shape[0], "packed")
    msg = (
        "lookup() takes a uint32 array (IPv4) or a uint64 array of shape (n, 2) (IPv6), "
        f"not {addresses.dtype} of shape {addresses.shape}"
    )
    raise TypeError(msg)


def _pack_text(items: Sequence[str]) -> tuple[bytes, bytes, Plan]:
    """Parse text addresses here; the invalid ones are answered without asking."""
    keys = np.empty((len(items), 2), dtype=np.uint64)
    status = np.empty(len(items), dtype=np.uint8)
    _parse.parse_many(items, keys, status)
    valid = status != Status.INVALID_ADDRESS
    mapped = valid & (keys[:, 0] == 0) & ((keys[:, 1] >> np.uint64(32)) == _IPV4_MAPPED_HIGH)
    v4_index = np.flatnonzero(mapped)
    v6_index = np.flatnonzero(valid & ~mapped)
    ipv4 = keys[v4_index, 1].astype(">u4").tobytes()
    ipv6 = keys[v6_index].astype(">u8").tobytes()
    plan = Plan(len(items), "packed", status=status, v4_index=v4_index, v6_index=v6_index)
    return ipv4, ipv6, plan


def pack(
    addresses: Addresses, version: int | None, *, text_ok: bool = True
) -> tuple[bytes, bytes, Plan] | None:
    """Pack arrays and buffers (always) or text (with the C parser, or when ``not text_ok``).

    Returns:
        IPv4 bytes, IPv6 bytes and the plan (without requests); None to send text.

    Raises:
        ValueError, TypeError: for input ``lookupd.Database.lookup`` would refuse too.
    """
    if isinstance(addresses, _BUFFERS):
        data = bytes(addresses)
        count = packed_count(len(data), version)
        plan = Plan(count, "packed", v4_count=count if version == 4 else 0)
        return (data, b"", plan) if version == 4 else (b"", data, plan)
    if version is not None:
        msg = "version= applies only to packed bytes input"
        raise ValueError(msg)
    if isinstance(addresses, np.ndarray):
        return _pack_array(addresses)
    if isinstance(addresses, str):
        msg = "lookup() takes a batch: a list of addresses, not one str"
        raise TypeError(msg)
    if _parse.CORE != "c" and text_ok:
        return None  # parsing in pure Python costs more than the text RPC saves
    return _pack_text(addresses if isinstance(addresses, (list, tuple)) else list(addresses))


def lookup_plan(
    addresses: Addresses,
    version: int | None,
    chunk_size: int,
    text: bool | None,
    subdivisions: bool,
) -> Plan:
    """Cut a batch into requests of at most ``chunk_size``: packed where possible.

    Raises:
        ValueError, TypeError: for input of an unsupported type or shape.
    """
    packed = None if (text or subdivisions) else pack(addresses, version)
    if packed is not None:
        ipv4, ipv6, plan = packed
        plan.requests = _packed_requests(ipv4, ipv6, chunk_size)
        return plan
    if isinstance(addresses, (*_BUFFERS, np.ndarray, str)):
        msg = "text=True and subdivisions=True take a list of str addresses"
        raise TypeError(msg)
    items = list(addresses)
    requests = [
        pb.LookupRequest(
            addresses=items[start : start + chunk_size], include_subdivisions=subdivisions
        )
        for start in range(0, len(items), chunk_size)
    ] or [pb.LookupRequest()]
    return Plan(len(items), "text", requests)


def stream_request(
    batch: Addresses, version: int | None, chunk_size: int
) -> tuple[pb.PackedLookupRequest, Plan]:
    """Return one stream batch's request (streams are packed only, text parsed here).

    Raises:
        ValueError: the batch holds more than ``chunk_size`` addresses, or as :func:`pack`.
        TypeError: as :func:`pack`.
    """
    packed = pack(batch, version, text_ok=False)
    assert packed is not None  # text_ok=False always packs
    ipv4, ipv6, plan = packed
    if plan.size > chunk_size:
        msg = (
            f"a stream batch of {plan.size} addresses is over chunk_size ({chunk_size}): "
            "the server answers each batch in one message"
        )
        raise ValueError(msg)
    plan.requests = [pb.PackedLookupRequest(ipv4=ipv4, ipv6=ipv6)]
    return plan.requests[0], plan


def next_stream_request(
    source: Iterator[Addresses], version: int | None, chunk_size: int
) -> tuple[pb.PackedLookupRequest, Plan] | None:
    """Read the next batch of ``source``; return its request and plan, None at the end.

    Raises:
        ValueError, TypeError: as :func:`stream_request`; or what ``source`` raises.
    """
    for batch in source:
        return stream_request(batch, version, chunk_size)
    return None


def check_request(policy: str, addresses: Addresses, version: int | None) -> pb.CheckRegionRequest:
    """Return the ``CheckRegion`` request of a batch (one request: no chunking).

    Raises:
        ValueError, TypeError: for input of an unsupported type or shape.
    """
    if isinstance(addresses, (*_BUFFERS, np.ndarray)):
        packed = pack(addresses, version)
        assert packed is not None  # arrays and bytes always pack
        ipv4, ipv6, _ = packed
        return pb.CheckRegionRequest(policy=policy, ipv4=ipv4, ipv6=ipv6)
    if version is not None:
        msg = "version= applies only to packed bytes input"
        raise ValueError(msg)
    if isinstance(addresses, str):
        msg = "check() takes a batch: a list of addresses, not one str"
        raise TypeError(msg)
    # Text stays text: the policy decides what an invalid address gets, on the server.
    return pb.CheckRegionRequest(policy=policy, addresses=list(addresses))
