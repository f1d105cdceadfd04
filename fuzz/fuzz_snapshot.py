"""Fuzz the snapshot loader with mutated copies of a small valid snapshot.

The input says how to damage the snapshot (atheris' FuzzedDataProvider reads it):

- mode 0: overwrite bytes anywhere and maybe cut or extend the file, checksums left stale;
  ``load_snapshot`` with and without ``verify`` may raise only DataFormatError.
- mode 1: replace the JSON header with the input's bytes and fix the header checksum, so
  that the header checks are what decides.
- mode 2: overwrite bytes inside one payload array and fix both checksums, so that the
  table checks ``verify`` makes are what decides; a snapshot that loads must then answer
  lookups (text, packed, the packed IPv4 one-pass answer) without an error or a crash.

The snapshot is rewritten under a new inode each time (unlink, then write): an earlier
input's mapping may still be alive, and rewriting its inode in place is its own fault
(issue 10, item 1), not this target's.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import struct
import sys

import atheris
from _harness import check, instrument_lookupd, main, scratch_directory

from lookupd.core.database import Database
from lookupd.core.table import Tables
from lookupd.datafiles.rows import RangeRows
from lookupd.datafiles.snapshot import MAGIC, PAGE_BYTES, load_snapshot, write_snapshot
from lookupd.errors import DataFormatError
from lookupd.server.answers import Answerer
from lookupd.server.lookups import lookup_packed

instrument_lookupd(dataflow=("lookupd.datafiles.snapshot",))

_TMP = scratch_directory()
_PREFIX = struct.Struct("<12sII32s")
ADDRESSES = [
    "0.0.0.0",
    "1.0.0.1",
    "1.0.3.255",
    "10.0.0.1",
    "2001:db8::1",
    "::1",
    "ffff::",
    "::ffff:1.0.0.9",
]
PACKED_V4 = b"".join(bytes([a, 0, b, 1]) for a in (0, 1, 2, 10, 127, 255) for b in (0, 3, 255))
PACKED_V6 = bytes(16) + bytes.fromhex("20010db8" + "00" * 12) + b"\xff" * 16


def _good_snapshot() -> bytes:
    rows = RangeRows()
    rows.add(4, 0x0100_0000, 0x0100_00FF, "AU")
    rows.add(4, 0x0100_0100, 0x0100_03FF, "CN")
    rows.add(4, 0x0A00_0000, 0x0AFF_FFFF, "UA-43")
    rows.add(6, 0x2001_0DB8 << 96, (0x2001_0DB9 << 96) - 1, "JP")
    v4, v6 = rows.tables()
    path = _TMP / "good.lkd"
    created = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    write_snapshot(path, Tables(v4, v6, tuple(rows.label_names)), created=created)
    return path.read_bytes()


GOOD = _good_snapshot()
_, _, HEADER_LENGTH, _ = _PREFIX.unpack_from(GOOD)
HEADER = json.loads(GOOD[_PREFIX.size : _PREFIX.size + HEADER_LENGTH])
ARRAYS = sorted(HEADER["arrays"].items(), key=lambda item: item[1]["offset"])


def with_header(text: bytes, payload: bytes, payload_offset: int) -> bytes:
    """A snapshot of ``text`` as its header (checksum fixed) and ``payload`` at its offset."""
    head = MAGIC + struct.pack("<II", 1, len(text))
    start = _PREFIX.pack(MAGIC, 1, len(text), hashlib.sha256(head + text).digest()) + text
    if len(start) > payload_offset:  # a longer header: the payload moves to the next page
        payload_offset = -(-len(start) // PAGE_BYTES) * PAGE_BYTES
    return start + bytes(payload_offset - len(start)) + payload


def _patch(blob: bytearray, fdp: atheris.FuzzedDataProvider, start: int, end: int) -> None:
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        at = fdp.ConsumeIntInRange(start, max(start, end - 1))
        blob[at : at + 16] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16))[: end - at]


def mutate(data: bytes) -> tuple[int, bytes]:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    payload_offset = HEADER["payload_offset"]
    if mode == 0:
        blob = bytearray(GOOD)
        _patch(blob, fdp, 0, len(blob))
        if fdp.ConsumeBool():
            size = fdp.ConsumeIntInRange(0, len(blob) + PAGE_BYTES)
            blob = blob[:size] + bytes(max(0, size - len(blob)))
        return mode, bytes(blob)
    if mode == 1:
        return mode, with_header(fdp.ConsumeBytes(1 << 20), GOOD[payload_offset:], payload_offset)
    blob = bytearray(GOOD)
    _, spec = ARRAYS[fdp.ConsumeIntInRange(0, len(ARRAYS) - 1)]
    nbytes = max(1, len(bytes(spec["dtype"], "ascii")) and _nbytes(spec))
    _patch(blob, fdp, spec["offset"], spec["offset"] + nbytes)
    header = dict(HEADER, payload_sha256=hashlib.sha256(blob[payload_offset:]).hexdigest())
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return mode, with_header(text, bytes(blob[payload_offset:]), payload_offset)


def _nbytes(spec: dict[str, object]) -> int:
    count = 1
    for n in spec["shape"]:  # type: ignore[attr-defined]
        count *= n
    return count * int(str(spec["dtype"])[-1])


def test_one(data: bytes) -> None:
    mode, blob = mutate(data)
    path = _TMP / "fuzzed.lkd"
    path.unlink(missing_ok=True)
    path.write_bytes(blob)
    for verify in (True, False) if mode < 2 else (True,):
        try:
            snapshot = load_snapshot(path, verify=verify)
        except DataFormatError:
            continue
        if mode == 2:
            answer(Database(snapshot.v4, snapshot.v6, snapshot.label_names))


def answer(db: Database) -> None:
    """Lookups on a snapshot that passed verification: answers, never an error."""
    result = db.lookup(ADDRESSES)
    check(len(result.labels) == len(ADDRESSES), "a lookup lost addresses")
    for address in ADDRESSES:
        db.lookup_one(address)
    db.lookup(PACKED_V4, version=4)
    db.lookup(PACKED_V6, version=6)
    v4_codes, _, v4_status, _ = lookup_packed(Answerer.load(db), PACKED_V4, b"")
    check(len(v4_status) * 2 == len(v4_codes), "packed IPv4 answer of the wrong length")


if __name__ == "__main__":
    sys.exit(main(test_one))
