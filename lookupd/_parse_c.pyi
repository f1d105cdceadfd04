"""Stub for the compiled address parser (ext/_parse_c.pyx); lookupd._parse_py is its twin.

Every parsed address becomes a 128-bit key stored as a row (high 64 bits, low 64 bits) of a
``uint64`` array of shape (n, 2); an IPv4 address a.b.c.d becomes the IPv4-mapped
``::ffff:a.b.c.d``. ``status`` gets ``STATUS_OK`` (0) or ``STATUS_INVALID`` (2) per item, and
an invalid item's key is (0, 0). No input, whatever its bytes, raises for the batch or crashes.
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
