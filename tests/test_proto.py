"""The committed lookupd/v1 code matches proto/, and the proto documents everything."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from lookupd.codes import Status
from lookupd.v1 import lookup_pb2 as pb
from lookupd.v1 import lookup_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PROTO = "lookupd/v1/lookup.proto"
GENERATED = ("lookup_pb2.py", "lookup_pb2.pyi", "lookup_pb2_grpc.py")
_TIMEOUT_S = 60.0

needs_protoc = pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None,
    reason="grpcio-tools is not installed (pip install -e '.[test]'): cannot run protoc",
)


def _protoc(out: Path, *extra: str) -> None:
    command = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", *extra, PROTO]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, done.stderr


def _descriptor_set(out: Path, *, source_info: bool) -> descriptor_pb2.FileDescriptorSet:
    path = out / "lookup.desc"
    _protoc(out, f"--descriptor_set_out={path}", *(["--include_source_info"] * source_info))
    return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())


@needs_protoc
def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    tools = importlib.metadata.version("grpcio-tools")
    if tools != lookup_pb2_grpc.GRPC_GENERATED_VERSION:
        pytest.skip(
            f"grpcio-tools {tools} writes other text than {lookup_pb2_grpc.GRPC_GENERATED_VERSION}"
            " did: only the descriptor is compared (run `make protos` to move on)"
        )
    _protoc(
        tmp_path,
        f"--python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
    )
    for name in GENERATED:
        fresh = (tmp_path / "lookupd" / "v1" / name).read_text()
        committed = (ROOT / "lookupd" / "v1" / name).read_text()
        assert fresh == committed, f"lookupd/v1/{name} is stale: run `make protos` and commit"


@needs_protoc
def test_generated_descriptor_matches_the_proto(tmp_path: Path) -> None:
    # Independent of the grpcio-tools version that generated the code: same schema.
    (fresh,) = _descriptor_set(tmp_path, source_info=False).file
    for message in fresh.message_type:  # the descriptor set spells json_name out; _pb2 not
        for item in message.field:
            item.ClearField("json_name")
    committed = descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb)
    assert committed == fresh


@needs_protoc
def test_every_element_of_the_proto_is_documented(tmp_path: Path) -> None:
    (proto,) = _descriptor_set(tmp_path, source_info=True).file
    commented = {
        tuple(location.path)
        for location in proto.source_code_info.location
        if location.leading_comments.strip()
    }
    missing = []
    # Paths into FileDescriptorProto: 4 = message_type (2 = field), 5 = enum_type (2 =
    # value), 6 = service (2 = method). Fields sharing one comment line (ipv4_rows, ipv6_rows)
    # count through their first.
    for i, message in enumerate(proto.message_type):
        if (4, i) not in commented:
            missing.append(message.name)
        for j, item in enumerate(message.field):
            if (4, i, 2, j) not in commented and not (
                j and item.name.startswith("ipv6_") and (4, i, 2, j - 1) in commented
            ):
                missing.append(f"{message.name}.{item.name}")
    for i, enum in enumerate(proto.enum_type):
        if (5, i) not in commented:
            missing.append(enum.name)
        missing += [
            f"{enum.name}.{value.name}"
            for j, value in enumerate(enum.value)
            if (5, i, 2, j) not in commented
        ]
    for i, service in enumerate(proto.service):
        if (6, i) not in commented:
            missing.append(service.name)
        missing += [
            f"{service.name}.{method.name}"
            for j, method in enumerate(service.method)
            if (6, i, 2, j) not in commented
        ]
    assert missing == []


def test_service_has_the_five_rpcs() -> None:
    service = pb.DESCRIPTOR.services_by_name["LookupService"]
    assert service.full_name == "lookupd.v1.LookupService"
    methods = {method.name: method for method in service.methods}
    assert set(methods) == {"Lookup", "LookupPacked", "StreamLookup", "CheckRegion", "GetInfo"}
    stream = methods["StreamLookup"]
    assert stream.client_streaming
    assert stream.server_streaming
    assert not methods["Lookup"].client_streaming
    assert not methods["Lookup"].server_streaming
    assert hasattr(lookup_pb2_grpc, "LookupServiceStub")


def test_every_response_carries_the_data_version() -> None:
    for name in (
        "LookupResponse",
        "PackedLookupResponse",
        "CheckRegionResponse",
        "GetInfoResponse",
    ):
        field = pb.DESCRIPTOR.message_types_by_name[name].fields_by_name["data_version"]
        assert field.message_type is not None
        assert field.message_type.full_name == "lookupd.v1.DataVersion"


def test_repeated_enums_are_packed() -> None:
    # proto3 packs repeated scalars: one byte per status/verdict/reason on the wire.
    response = pb.LookupResponse(status=[pb.STATUS_OK] * 1000)
    assert len(response.SerializeToString()) == 1000 + 3  # tag, 2-byte length, values


def test_every_status_has_a_proto_value() -> None:
    assert {f"STATUS_{member.name}" for member in Status} <= set(pb.Status.keys())


def test_policy_enums_share_the_proto_numbers() -> None:
    policies = pytest.importorskip("lookupd.policies")
    for member in policies.Verdict:
        assert pb.Verdict.Value(f"VERDICT_{member.name}") == member
    for member in policies.Reason:
        assert pb.Reason.Value(f"REASON_{member.name}") == member
    assert len(pb.Reason.keys()) == len(policies.Reason) + 1  # + REASON_UNSPECIFIED
