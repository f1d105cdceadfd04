"""What clients in other languages rely on: the shipped health proto, and the services, health
names and reflection versions a real server registers, as the README lists them."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lookupd.datafiles.open import open_database
from lookupd.server.answers import Answerer
from lookupd.server.app import LookupServer, ServerConfig

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
HEALTH_PROTO = "grpc/health/v1/health.proto"
LOOKUP_PROTO = "lookupd/v1/lookup.proto"
README_SECTION = "### For integrators in other languages"
_TIMEOUT_S = 20.0

needs_protoc = pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None,
    reason="grpcio-tools is not installed (pip install -e '.[test]'): cannot run protoc",
)


# ---------------------------------------------------------------------------------------
# The shipped proto files


def _compile(out: Path, *protos: str) -> list[descriptor_pb2.FileDescriptorProto]:
    """protoc's descriptors of ``protos`` (under proto/), in the order given."""
    path = out / "protos.desc"
    command = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}"]
    command += [f"--descriptor_set_out={path}", *protos]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    files = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes()).file
    return list(files)


def _without_json_names(proto: descriptor_pb2.FileDescriptorProto) -> None:
    # protoc's descriptor sets spell json_name out; generated _pb2 modules do not.
    messages = list(proto.message_type)
    while messages:
        message = messages.pop()
        messages.extend(message.nested_type)
        for field in message.field:
            field.ClearField("json_name")


@needs_protoc
def test_the_shipped_health_proto_is_the_one_grpc_health_serves(tmp_path: Path) -> None:
    (shipped,) = _compile(tmp_path, HEALTH_PROTO)
    served = descriptor_pb2.FileDescriptorProto.FromString(health_pb2.DESCRIPTOR.serialized_pb)
    # The same schema under another file name (grpc_health's Python package path).
    assert (shipped.name, served.name) == (HEALTH_PROTO, "grpc_health/v1/health.proto")
    _without_json_names(shipped)
    shipped.name = served.name
    assert shipped == served


@needs_protoc
def test_the_two_protos_compile_together(tmp_path: Path) -> None:
    lookup, health = _compile(tmp_path, LOOKUP_PROTO, HEALTH_PROTO)
    assert [service.name for service in lookup.service] == ["LookupService", "AdminService"]
    assert [method.name for method in health.service[0].method] == ["Check", "List", "Watch"]


def test_the_health_proto_keeps_its_apache_licence() -> None:
    text = (PROTO_DIR / HEALTH_PROTO).read_text()
    assert text.startswith("// Copyright 2015 The gRPC Authors\n")
    assert 'Licensed under the Apache License, Version 2.0 (the "License")' in text
    assert "http://www.apache.org/licenses/LICENSE-2.0" in text


# ---------------------------------------------------------------------------------------
# What a real server registers, and what the README says it registers


def _readme_table(header: str) -> list[str]:
    """The first column of the README integrators' table whose header starts ``header``,
    each cell's first `code` span (`""` read as the empty name)."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n{README_SECTION}\n") + 1
    section = re.split(r"\n##+ ", text[start:])[0]
    rows = section.split(f"\n{header}", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    names = [re.findall(r"`([^`]*)`", row.split("|")[1])[0] for row in rows]
    return ["" if name == '""' else name for name in names]


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    """A channel to a server on 127.0.0.1 answering from the embedded data."""
    server = LookupServer(ServerConfig(host="127.0.0.1", port=0)).start()
    server.load(Answerer.load(open_database()))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as opened:
        grpc.channel_ready_future(opened).result(timeout=_TIMEOUT_S)
        yield opened
    server.stop(0)


def _code_of(caught: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    error: Any = caught.value  # a grpc.Call too: it has code()
    code: grpc.StatusCode = error.code()
    return code


def _reflect(channel: grpc.Channel, request: reflection_pb2.ServerReflectionRequest) -> Any:
    stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
    (response,) = stub.ServerReflectionInfo(iter([request]), timeout=_TIMEOUT_S)
    return response


def test_the_readme_lists_the_services_reflection_lists(channel: grpc.Channel) -> None:
    listed = _reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
    registered = sorted(service.name for service in listed.list_services_response.service)
    assert sorted(_readme_table("| service |")) == registered
    assert registered == [
        "envoy.service.auth.v3.Authorization",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "lookupd.v1.AdminService",
        "lookupd.v1.LookupService",
    ]


def test_reflection_describes_every_service(channel: grpc.Channel) -> None:
    for name in _readme_table("| service |"):
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=name)
        files = _reflect(channel, request).file_descriptor_response.file_descriptor_proto
        services = {
            f"{proto.package}.{service.name}"
            for proto in map(descriptor_pb2.FileDescriptorProto.FromString, files)
            for service in proto.service
        }
        assert name in services


def test_reflection_v1_is_not_served(channel: grpc.Channel) -> None:
    # The v1 messages are v1alpha's, renamed: the same bytes on the wire.
    v1 = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with pytest.raises(grpc.RpcError) as caught:
        list(v1(iter([request]), timeout=_TIMEOUT_S))
    assert _code_of(caught) == grpc.StatusCode.UNIMPLEMENTED


def test_the_readme_lists_the_health_names_registered(channel: grpc.Channel) -> None:
    health: Any = health_pb2_grpc.HealthStub(channel)
    names = _readme_table("| health name |")
    assert names == ["", "lookupd.v1.LookupService"]
    for name in names:
        answer = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=_TIMEOUT_S)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("name", ["lookupd.v1.AdminService", "grpc.health.v1.Health", "x"])
def test_other_health_names_are_unknown(channel: grpc.Channel, name: str) -> None:
    health: Any = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service=name)
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(request, timeout=_TIMEOUT_S)
    assert _code_of(caught) == grpc.StatusCode.NOT_FOUND
    watch = health.Watch(request, timeout=_TIMEOUT_S)
    try:
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    finally:
        watch.cancel()


def test_health_list_is_unimplemented(channel: grpc.Channel) -> None:
    health: Any = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        # types-grpcio-health-checking predates List.
        health.List(health_pb2.HealthListRequest(), timeout=_TIMEOUT_S)  # type: ignore[attr-defined]
    assert _code_of(caught) == grpc.StatusCode.UNIMPLEMENTED
