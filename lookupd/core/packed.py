"""Packed addresses: big-endian IPv4 (4 bytes each) or IPv6 (16 bytes each), back to back."""

from __future__ import annotations

# Bytes per packed address, by IP version.
ADDRESS_BYTES = {4: 4, 6: 16}


def packed_count(size: int, version: int | None) -> int:
    """Return how many addresses ``size`` bytes of packed IPv``version`` hold.

    Raises:
        ValueError: ``version`` is not 4 or 6, or ``size`` is not a multiple of its width.
    """
    width = ADDRESS_BYTES.get(version or 0)
    if width is None:
        msg = "packed input needs version=4 (4 bytes per address) or version=6 (16 bytes)"
        raise ValueError(msg)
    if size % width:
        msg = f"packed IPv{version} input of {size} bytes is not a multiple of {width}"
        raise ValueError(msg)
    return size // width
