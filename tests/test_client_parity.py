"""Client and AsyncClient have one API; the clients' pure parts (requests, results) work
without a server."""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import typing
from typing import Any

import numpy as np
import pytest

from lookupd.client import Answers, AsyncClient, Client, DataVersion, Info, ReloadResult
from lookupd.client.requests import lookup_plan, next_stream_request, stream_request
from lookupd.client.results import checks_from, info_from, reload_result_from
from lookupd.codes import ReasonArray, Status, StatusArray, Verdict, VerdictArray
from lookupd.v1 import lookup_pb2 as pb


def _public_methods(cls: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_both_clients_have_the_same_public_methods() -> None:
    assert set(_public_methods(Client)) == set(_public_methods(AsyncClient))
    assert {"lookup", "check", "info", "reload", "stream", "wait_until_serving", "close"} <= set(
        _public_methods(Client)
    )
    assert hasattr(Client, "__enter__")
    assert hasattr(Client, "__exit__")
    assert hasattr(AsyncClient, "__aenter__")
    assert hasattr(AsyncClient, "__aexit__")


@pytest.mark.parametrize("name", ["__init__", *sorted(_public_methods(Client))])
def test_signatures_are_the_same(name: str) -> None:
    sync, aio = getattr(Client, name), getattr(AsyncClient, name)
    sync_signature, aio_signature = inspect.signature(sync), inspect.signature(aio)
    sync_hints, aio_hints = typing.get_type_hints(sync), typing.get_type_hints(aio)
    # Names, kinds (keyword-only markers), defaults and annotations of every parameter.
    assert [
        (p.name, p.kind, p.default, sync_hints.get(p.name))
        for p in sync_signature.parameters.values()
    ] == [
        (p.name, p.kind, p.default, aio_hints.get(p.name))
        for p in aio_signature.parameters.values()
    ]
    if name == "__init__":
        return
    if name == "stream":
        # A generator of answers, and an async generator of the same answers (closing one
        # ends the stream).
        assert inspect.isgeneratorfunction(sync)
        assert inspect.isasyncgenfunction(aio)
        assert typing.get_origin(sync_hints["return"]) is collections.abc.Generator
        assert typing.get_origin(aio_hints["return"]) is collections.abc.AsyncGenerator
        assert typing.get_args(sync_hints["return"])[0] is Answers
        assert typing.get_args(aio_hints["return"])[0] is Answers
        return
    # A plain method and a coroutine returning the same type.
    assert not inspect.iscoroutinefunction(sync)
    assert inspect.iscoroutinefunction(aio)
    assert sync_hints["return"] == aio_hints["return"]


def test_methods_are_documented() -> None:
    for cls in (Client, AsyncClient):
        for name, method in _public_methods(cls).items():
            assert inspect.getdoc(method), f"{cls.__name__}.{name}"


# ---------------------------------------------------------------------------------------
# The pure parts


def test_results_are_built_from_responses() -> None:
    checks = checks_from(
        pb.CheckRegionResponse(
            verdicts=[pb.VERDICT_ALLOW, pb.VERDICT_DENY],
            reasons=[pb.REASON_COUNTRY_ALLOWED, pb.REASON_INVALID],
            countries=["AU", ""],
            data_version=pb.DataVersion(id="a" * 64),
            policy_version="b" * 64,
        )
    )
    assert isinstance(checks.verdicts, VerdictArray)
    assert isinstance(checks.reasons, ReasonArray)
    assert repr(checks.verdicts) == "VerdictArray([ALLOW, DENY])"
    assert checks.verdicts[1] is Verdict.DENY
    assert checks.allowed.tolist() == [True, False]
    assert (checks.data_version, checks.policy_version, len(checks)) == ("a" * 64, "b" * 64, 2)

    info = info_from(
        pb.GetInfoResponse(
            data_version=pb.DataVersion(id="c" * 64, built_at="2026-06-17"),
            sources=[pb.Source(name="x.csv", format="location-csv", size=3, ipv4_rows=2)],
            counts=pb.Counts(ipv4_segments=5, labels=2),
            policies=[pb.PolicyInfo(name="p", description="d")],
            max_batch=7,
            process_id=42,
        )
    )
    assert isinstance(info, Info)
    assert info.data_version == DataVersion("c" * 64, "2026-06-17")
    assert info.sources[0].name == "x.csv"
    assert info.sources[0].ipv4_rows == 2
    assert info.counts.ipv4_segments == 5
    assert info.policy_names == ("p",)
    assert (info.max_batch, info.process_id, info.loaded_at) == (7, 42, "")
    assert dataclasses.is_dataclass(info)
    assert not hasattr(info, "__dict__")  # slotted

    reloaded = reload_result_from(
        pb.ReloadResponse(data_version=pb.DataVersion(id="d" * 64), data_changed=True)
    )
    assert reloaded == ReloadResult(DataVersion("d" * 64, ""), "", True, False)


def test_lookup_plan_chunks_and_assembles() -> None:
    plan = lookup_plan(["1.1.1.1", "bad", "::1", "::ffff:1.2.3.4"], None, 2, None, False)
    if plan.kind == "packed":  # the compiled parser packs text here
        assert plan.method == "LookupPacked"
        assert [len(r.ipv4) // 4 + len(r.ipv6) // 16 for r in plan.requests] == [2, 1]
        responses = [
            pb.PackedLookupResponse(
                ipv4_countries=b"AU" + b"--",
                ipv4_status=bytes([Status.OK, Status.NOT_FOUND]),
                data_version=pb.DataVersion(id="v1"),
            ),
            pb.PackedLookupResponse(
                ipv6_countries=b"--",
                ipv6_status=bytes([Status.RESERVED]),
                data_version=pb.DataVersion(id="v2"),
            ),
        ]
        answers = plan.assemble(responses)
        assert answers.countries.tolist() == ["AU", "", "", ""]
        assert isinstance(answers.status, StatusArray)
        assert answers.status.tolist() == [
            Status.OK,
            Status.INVALID_ADDRESS,
            Status.RESERVED,
            Status.NOT_FOUND,
        ]
        assert answers.data_versions == ("v1", "v2")
    text = lookup_plan(["1.1.1.1", "bad", "::1"], None, 2, True, False)
    assert text.method == "Lookup"
    assert [list(r.addresses) for r in text.requests] == [["1.1.1.1", "bad"], ["::1"]]


def test_stream_requests_are_read_one_at_a_time() -> None:
    read: list[int] = []

    def batches() -> Any:
        for index in range(3):
            read.append(index)
            yield np.array([index], dtype=np.uint32)

    source = iter(batches())
    first = next_stream_request(source, None, 1)
    assert first is not None
    assert read == [0]
    assert first[0].ipv4 == b"\0\0\0\0"
    assert first[1].size == 1
    assert next_stream_request(source, None, 1) is not None
    assert next_stream_request(source, None, 1) is not None
    assert next_stream_request(source, None, 1) is None
    with pytest.raises(ValueError, match=r"batch of 2 addresses is over chunk_size \(1\)"):
        stream_request(np.zeros(2, dtype=np.uint32), None, 1)
