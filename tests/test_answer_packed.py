"""answer_packed_v4: the one-pass packed IPv4 answer equals the composed lookup, per core."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from conftest import SEARCH_CORES
from hypothesis import example, given
from hypothesis import strategies as st

import lookupd
from lookupd.core import reserved
from lookupd.core.database import Database
from lookupd.server.answers import Answerer
from lookupd.server.lookups import lookup_packed

_DB = lookupd.open()
_ANSWERER = Answerer.load(_DB)
_CODES = _ANSWERER.codes_by_label
_PREFIXES = np.frombuffer(reserved.PREFIX_FLAGS_V4, dtype=np.uint8)
# Ends of the space, whole reserved /8s and /16s, and the /16s only partly reserved
# (192.0.0.0/24 and 192.0.2.0/24 in 192.0/16, 198.51.100.0/24, 203.0.113.0/24, 255.255.255.255).
_EDGES = [
    0,
    1,
    0x0A00_0000,
    0x0AFF_FFFF,
    0x7F00_0001,
    0xC0A8_0001,
    0xC000_0001,
    0xC000_0101,
    0xC000_0201,
    0xC000_0301,
    0xC633_6401,
    0xC633_6501,
    0xCB00_7101,
    0xCB00_7201,
    0xFFFF_FFFE,
    0xFFFF_FFFF,
]


def _answer(
    core: ModuleType, db: Database, keys: npt.NDArray[np.uint32], prefixes: Any
) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint8]]:
    codes = np.empty(keys.shape[0], dtype=np.uint16)
    status = np.empty(keys.shape[0], dtype=np.uint8)
    core.answer_packed_v4(
        db.v4.starts,
        db.v4.jump,
        db.v4.labels,
        reserved.TABLE_V4.starts,
        reserved.TABLE_V4.jump,
        reserved.SEGMENT_FLAGS_V4,
        prefixes,
        _CODES,
        keys.astype(">u4").tobytes(),
        codes,
        status,
    )
    return codes, status


def _composed(
    db: Database, keys: npt.NDArray[np.uint32]
) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint8]]:
    result = db.lookup(keys)
    # The packed answer's status bytes are the lookup's statuses, as they are.
    return _ANSWERER.codes[result.labels], result.status


@pytest.mark.parametrize("search_core", SEARCH_CORES, ids=lambda m: m.__name__.rsplit(".")[-1])
@given(st.lists(st.integers(0, 0xFFFF_FFFF), max_size=600))
@example(_EDGES)
def test_equals_the_composed_lookup(search_core: ModuleType, values: list[int]) -> None:
    keys = np.array(values, dtype=np.uint32)
    codes, status = _answer(search_core, _DB, keys, _PREFIXES)
    want_codes, want_status = _composed(_DB, keys)
    assert codes.tolist() == want_codes.tolist()
    assert status.tolist() == want_status.tolist()


def test_without_reserved_marking(search_core: ModuleType) -> None:
    db = lookupd.open(mark_reserved=False)
    keys = np.array(_EDGES + list(range(0x0100_0000, 0x0100_0400)), dtype=np.uint32)
    codes, status = _answer(search_core, db, keys, np.zeros(1 << 16, dtype=np.uint8))
    want_codes, want_status = _composed(db, keys)
    assert codes.tolist() == want_codes.tolist()
    assert status.tolist() == want_status.tolist()


def test_many_chunks_and_a_partial_lane(search_core: ModuleType) -> None:
    rng = np.random.default_rng(7)
    keys = rng.integers(0, 1 << 32, 256 * 9 + 5, dtype=np.uint64).astype(np.uint32)
    codes, status = _answer(search_core, _DB, keys, _PREFIXES)
    want_codes, want_status = _composed(_DB, keys)
    assert np.array_equal(codes, want_codes)
    assert np.array_equal(status, want_status)


def test_the_service_answers_packed_ipv4_with_it() -> None:
    keys = np.array([*_EDGES, 0x0101_0101, 0x0808_0808], dtype=np.uint32)
    v4_codes, _, v4_status, _ = lookup_packed(_ANSWERER, keys.astype(">u4").tobytes(), b"")
    want_codes, want_status = _composed(_DB, keys)
    assert v4_codes == want_codes.tobytes()
    assert v4_status == want_status.tobytes()


def _call(core: ModuleType, **changes: Any) -> None:
    arguments: dict[str, Any] = {
        "starts": _DB.v4.starts,
        "jump": _DB.v4.jump,
        "labels": _DB.v4.labels,
        "reserved_starts": reserved.TABLE_V4.starts,
        "reserved_jump": reserved.TABLE_V4.jump,
        "reserved_flags": reserved.SEGMENT_FLAGS_V4,
        "reserved_prefixes": _PREFIXES,
        "codes": _CODES,
        "packed": b"\x01\x01\x01\x01" * 3,
        "out_codes": np.empty(3, dtype=np.uint16),
        "out_status": np.empty(3, dtype=np.uint8),
    }
    arguments.update(changes)
    core.answer_packed_v4(*arguments.values())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"packed": b"\x01\x01\x01"}, "not a multiple of 4"),
        ({"out_codes": np.empty(2, dtype=np.uint16)}, "out_codes"),
        ({"out_status": np.empty(4, dtype=np.uint8)}, "out_status"),
        ({"codes": _CODES[:300].copy()}, "codes needs 65,536 entries"),
        ({"reserved_flags": reserved.SEGMENT_FLAGS_V4[:-1].copy()}, "reserved_flags"),
        ({"labels": _DB.v4.labels[:-1].copy()}, "labels"),
        ({"reserved_prefixes": _PREFIXES[:256].copy()}, "reserved_prefixes needs 65,536"),
    ],
)
def test_bad_arguments_are_refused_alike(
    search_core: ModuleType, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _call(search_core, **changes)


def test_a_read_only_output_is_refused(search_core: ModuleType) -> None:
    frozen = np.empty(3, dtype=np.uint16)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _call(search_core, out_codes=frozen)
