"""Stub for the compiled address parser (ext/_parse_c.pyx); lookupd.core._parse_py is its twin.

Every parsed address becomes a 128-bit key stored as a row (high 64 bits, low 64 bits) of a
``uint64`` array of shape (n, 2); an IPv4 address a.b.c.d becomes the IPv4-mapped
``::ffff:a.b.c.d``. ``status`` gets ``Status.OK`` (1) or ``Status.INVALID_ADDRESS`` (2) per
item, and an invalid item's key is (0, 0); both batch calls return how many were invalid.
No item, whatever its type or bytes, raises or crashes: only a bad call raises (``TypeError``
for a non-sequence ``items`` or a non-buffer array, ``ValueError`` for an output of the
wrong length, shape, dtype or layout, or a read-only one).

The syntax is ``ipaddress.ip_address``'s, minus scope IDs; the module docstring of
lookupd.core._parse_py lists it exactly. ``bytes`` items are ASCII text, not packed addresses.
``parse_many`` and ``parse_one`` strip nothing; ``parse_lines`` splits ``text`` on ``b"\\n"``
(as ``count_lines`` counts) and strips spaces, tabs and ``\\r`` around each line, and a blank
line is an invalid item. ``parse_lines`` runs without the GIL.

``scan_fields`` / ``parse_fields`` read the addresses of a serialized protobuf message (a
``repeated string`` field) straight from its bytes, so a server needs no ``str`` per address:
``scan_fields`` counts the field (and the others; -1 for malformed wire format),
``parse_fields`` parses each occurrence as ``parse_many`` parses a ``bytes`` item.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

def parse_many(
    items: Sequence[str | bytes],
    keys: npt.NDArray[np.uint64],
    status: npt.NDArray[np.uint8],
) -> int: ...
def count_lines(text: bytes | bytearray | memoryview) -> int: ...
def parse_lines(
    text: bytes | bytearray | memoryview,
    keys: npt.NDArray[np.uint64],
    status: npt.NDArray[np.uint8],
) -> int: ...
def parse_one(item: str | bytes) -> int | None: ...
def scan_fields(message: bytes | bytearray | memoryview, field: int) -> tuple[int, int]: ...
def parse_fields(
    message: bytes | bytearray | memoryview,
    field: int,
    keys: npt.NDArray[np.uint64],
    status: npt.NDArray[np.uint8],
) -> int: ...
