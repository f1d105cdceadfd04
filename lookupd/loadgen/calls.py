"""The RPCs a load test sends, as request bytes built before the clock starts.

Serializing a request of 10,000 addresses costs the client more than the server spends
answering it, so every request is serialized once and sent as bytes (the stubs take a
serializer of None as "already bytes"); responses are parsed only as far as telling which
data answered them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from lookupd.v1 import lookup_pb2 as pb
from lookupd.wire import LOOKUP_SERVICE

Rpc = Literal["text", "packed", "stream", "check"]
RPCS: tuple[Rpc, ...] = ("text", "packed", "stream", "check")
_METHODS: dict[Rpc, str] = {
    "text": "Lookup",
    "packed": "LookupPacked",
    "stream": "StreamLookup",
    "check": "CheckRegion",
}
_RESPONSES: dict[Rpc, Any] = {
    "text": pb.LookupResponse,
    "packed": pb.PackedLookupResponse,
    "stream": pb.PackedLookupResponse,
    "check": pb.CheckRegionResponse,
}
DISTINCT_REQUESTS = 64
"""Distinct requests cycled through: enough that no cache of one request's answer helps."""


@dataclass(frozen=True, slots=True)
class Calls:
    """What one RPC sends: its method, its requests (bytes), how to read an answer's data."""

    rpc: Rpc
    method: str
    """Full method path, ``/lookupd.v1.LookupService/Lookup``."""
    requests: tuple[bytes, ...]
    """Serialized requests, sent in turn."""
    batch: int
    """Addresses per request."""
    streaming: bool
    """Whether the RPC is a bidirectional stream (one stream per concurrent caller)."""

    def data_version(self, response: bytes) -> str:
        """Return the data version id a serialized response carries."""
        message = _VERSION_ONLY[self.rpc].FromString(response)
        version: str = message.data_version.id
        return version


def _version_only_messages() -> dict[Rpc, Any]:
    """Per RPC, a message type that declares only its response's ``data_version`` field.

    Parsing a response as one skips the answers (unknown fields, kept as bytes) instead
    of making an object per address: a tenth of the cost for a large text batch, which is
    what lets one client process load a server harder than itself.
    """
    message = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    package = "lookupd.loadgen"
    file = descriptor_pb2.FileDescriptorProto(
        name="lookupd/loadgen/version_only.proto", package=package, syntax="proto3"
    )
    version = file.message_type.add(name="DataVersion")
    version.field.add(
        name="id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=optional
    )
    names = {}
    for rpc, response in _RESPONSES.items():
        number = response.DESCRIPTOR.fields_by_name["data_version"].number
        names[rpc] = f"{response.DESCRIPTOR.name}VersionOnly"
        if names[rpc] not in [m.name for m in file.message_type]:
            file.message_type.add(name=names[rpc]).field.add(
                name="data_version",
                number=number,
                type=message,
                type_name=f".{package}.DataVersion",
                label=optional,
            )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        rpc: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
        for rpc, name in names.items()
    }


_VERSION_ONLY = _version_only_messages()


def build_calls(rpc: Rpc, addresses: Sequence[str], batch: int, *, policy: str = "") -> Calls:
    """Cut ``addresses`` into up to :data:`DISTINCT_REQUESTS` requests of ``batch`` each
    (reusing addresses from the start when there are too few) and serialize them.

    Raises:
        ValueError: ``batch`` under 1, no addresses, or ``check`` without a policy; for the
            packed RPCs, an address that is not valid (packed bytes cannot carry it).
    """
    if batch < 1 or not addresses:
        msg = "a load test needs a batch of at least 1 and some addresses"
        raise ValueError(msg)
    if rpc == "check" and not policy:
        msg = "the check RPC needs a policy name"
        raise ValueError(msg)
    build = _BUILDERS[rpc]
    requests = []
    offset = 0
    for _ in range(min(DISTINCT_REQUESTS, max(1, -(-len(addresses) // batch)))):
        chunk = [addresses[(offset + i) % len(addresses)] for i in range(batch)]
        offset = (offset + batch) % len(addresses)
        requests.append(build(chunk, policy))
    return Calls(rpc, f"/{LOOKUP_SERVICE}/{_METHODS[rpc]}", tuple(requests), batch, rpc == "stream")


def _text(chunk: list[str], _: str) -> bytes:
    return pb.LookupRequest(addresses=chunk).SerializeToString()


def _packed(chunk: list[str], _: str) -> bytes:
    ipv4, ipv6 = _pack(chunk)
    return pb.PackedLookupRequest(ipv4=ipv4, ipv6=ipv6).SerializeToString()


def _check(chunk: list[str], policy: str) -> bytes:
    return pb.CheckRegionRequest(policy=policy, addresses=chunk).SerializeToString()


def _pack(chunk: list[str]) -> tuple[bytes, bytes]:
    """The addresses as packed IPv4 and IPv6 bytes (network order), in their order."""
    ipv4, ipv6 = bytearray(), bytearray()
    for text in chunk:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            msg = f"{text!r} is not an IP address: the packed RPCs cannot send it"
            raise ValueError(msg) from None
        (ipv4 if address.version == 4 else ipv6).extend(address.packed)
    return bytes(ipv4), bytes(ipv6)


_BUILDERS: dict[Rpc, Callable[[list[str], str], bytes]] = {
    "text": _text,
    "packed": _packed,
    "stream": _packed,
    "check": _check,
}
