"""Status, Verdict and Reason: one numbering with the proto, and the arrays that print names."""

from __future__ import annotations

import pickle
from enum import IntEnum
from typing import Any

import numpy as np
import pytest

import lookupd
from lookupd.codes import (
    CodeArray,
    Reason,
    ReasonArray,
    Status,
    StatusArray,
    Verdict,
    VerdictArray,
    code_array,
)
from lookupd.policies import example_policies_path, load_policies
from lookupd.v1 import lookup_pb2 as pb

_PAIRS: list[tuple[type[IntEnum], Any, str]] = [
    (Status, pb.Status, "STATUS"),
    (Verdict, pb.Verdict, "VERDICT"),
    (Reason, pb.Reason, "REASON"),
]


@pytest.mark.parametrize(
    ("enum", "proto", "prefix"), _PAIRS, ids=lambda p: getattr(p, "__name__", "")
)
def test_every_member_is_the_proto_value_of_its_name(
    enum: type[IntEnum], proto: Any, prefix: str
) -> None:
    for member in enum:
        assert member == proto.Value(f"{prefix}_{member.name}"), member


@pytest.mark.parametrize(
    ("enum", "proto", "prefix"), _PAIRS, ids=lambda p: getattr(p, "__name__", "")
)
def test_every_proto_value_but_unspecified_is_a_member(
    enum: type[IntEnum], proto: Any, prefix: str
) -> None:
    for name, number in proto.items():
        if name == f"{prefix}_UNSPECIFIED":
            assert number == 0
            assert number not in set(enum)
            continue
        assert enum[name.removeprefix(f"{prefix}_")] == number, name
    assert len(enum) == len(proto.keys()) - 1


def test_what_the_cores_arithmetic_relies_on() -> None:
    # Database._lookup_keys keeps invalid items out of the reserved pass with `flags & status`
    # (low bit), _mark_reserved takes the larger of the status and flag * RESERVED, and the
    # compiled core steps OK -> NOT_FOUND -> RESERVED by adding differences.
    assert Status.OK & 1
    assert Status.NOT_FOUND & 1
    assert not Status.INVALID_ADDRESS & 1
    assert max(Status) == Status.RESERVED
    assert Status.OK < Status.NOT_FOUND < Status.RESERVED


def _statuses() -> StatusArray:
    raw = np.array([Status.OK, Status.NOT_FOUND, Status.RESERVED], dtype=np.uint8)
    array = code_array(raw, Status)
    assert isinstance(array, StatusArray)
    return array


def test_repr_and_str_show_the_names() -> None:
    array = _statuses()
    assert repr(array) == "StatusArray([OK, NOT_FOUND, RESERVED])"
    assert str(array) == "[OK NOT_FOUND RESERVED]"
    verdicts = code_array(np.array([1, 2], dtype=np.uint8), Verdict)
    assert repr(verdicts) == "VerdictArray([ALLOW, DENY])"
    reasons = code_array(np.array([9, 8], dtype=np.uint8), Reason)
    assert repr(reasons) == "ReasonArray([SUBDIVISION_ALLOWED, INVALID])"
    assert repr(code_array(np.zeros(0, dtype=np.uint8), Status)) == "StatusArray([])"


def test_a_number_that_is_no_member_prints_as_the_number() -> None:
    array = code_array(np.array([0, 1, 200], dtype=np.uint8), Status)
    assert repr(array) == "StatusArray([0, OK, 200])"
    assert array[0] == 0
    assert not isinstance(array[0], Status)


def test_large_and_two_dimensional_arrays_print_like_numpys() -> None:
    big = code_array(np.full(5_000, Status.OK, dtype=np.uint8), Status)
    assert repr(big) == "StatusArray([OK, OK, OK, ..., OK, OK, OK])"
    table = code_array(np.array([[1, 2], [3, 4]], dtype=np.uint8), Status)
    assert repr(table) == (
        "StatusArray([[OK, INVALID_ADDRESS],\n             [NOT_FOUND, RESERVED]])"
    )


def test_an_element_is_the_member_and_a_slice_keeps_the_enum() -> None:
    array = _statuses()
    assert array[0] is Status.OK
    assert array[-1] is Status.RESERVED
    assert list(array) == [Status.OK, Status.NOT_FOUND, Status.RESERVED]
    assert isinstance(array[1:], StatusArray)
    assert array[1:][0] is Status.NOT_FOUND
    masked = array[array != Status.OK]
    assert isinstance(masked, StatusArray)
    assert masked[1] is Status.RESERVED
    assert array.tolist() == [1, 3, 4]


def test_it_is_a_zero_copy_view() -> None:
    raw = np.array([1, 3, 4], dtype=np.uint8)
    array = code_array(raw, Status)
    assert np.shares_memory(array, raw)
    raw[0] = Status.RESERVED
    assert array[0] is Status.RESERVED


def test_numpy_sees_a_uint8_array() -> None:
    array = _statuses()
    mask = array == Status.OK
    assert type(mask) is np.ndarray
    assert mask.dtype == np.bool_
    assert mask.tolist() == [True, False, False]
    assert np.count_nonzero(array != Status.OK) == 2
    assert array.tobytes() == bytes([1, 3, 4])
    assert array.dtype == np.uint8
    shifted = array + 1
    assert type(shifted) is np.ndarray
    assert shifted.tolist() == [2, 4, 5]
    assert int(array.max()) == 4
    assert np.bincount(array).tolist() == [0, 1, 0, 1, 1]
    assert np.array_equal(array, [1, 3, 4])
    assert np.concatenate([array, array]).tolist() == [1, 3, 4, 1, 3, 4]
    assert np.asarray(array).__class__ is np.ndarray
    table = np.array([10, 11, 12, 13, 14])
    assert table[array].tolist() == [11, 13, 14]


def test_it_pickles_with_its_enum() -> None:
    array = _statuses()
    again = pickle.loads(pickle.dumps(array))
    assert isinstance(again, StatusArray)
    assert again[2] is Status.RESERVED
    assert again.tolist() == array.tolist()


def test_code_array_refuses_other_enums_and_dtypes() -> None:
    class Other(IntEnum):
        ONE = 1

    with pytest.raises(TypeError, match="no code array"):
        code_array(np.zeros(1, dtype=np.uint8), Other)
    with pytest.raises(TypeError, match="uint8 array"):
        code_array(np.zeros(1, dtype=np.int64), Status)


def test_the_api_returns_code_arrays() -> None:
    db = lookupd.open()
    result = db.lookup(["1.1.1.1", "not an ip", "10.0.0.1"])
    assert isinstance(result.status, StatusArray)
    assert repr(result.status) == "StatusArray([OK, INVALID_ADDRESS, RESERVED])"
    assert result.status[2] is Status.RESERVED
    for packed in (
        db.lookup(np.array([16843009], dtype=np.uint32)),
        db.lookup(bytes(16), version=6),
    ):
        assert isinstance(packed.status, StatusArray)
    assert isinstance(db.lookup_lines(b"1.1.1.1\n").status, StatusArray)
    policies = load_policies(example_policies_path()).compile(db)
    decisions = policies.evaluate(policies.names[0], result)
    assert isinstance(decisions.verdicts, VerdictArray)
    assert isinstance(decisions.reasons, ReasonArray)
    assert decisions.reasons[1] is Reason.INVALID
    assert isinstance(decisions.verdicts, CodeArray)
