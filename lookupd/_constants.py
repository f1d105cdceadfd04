"""Numbers shared by both cores and the Python layer."""

from enum import IntEnum

# 2**32 - 1: last IPv4 address.
IPV4_MAX = 0xFFFF_FFFF
# 2**128 - 1: last IPv6 address.
IPV6_MAX = (1 << 128) - 1
# ::ffff:0:0/96 -- IPv4-mapped IPv6 addresses are answered from the IPv4 table.
IPV4_MAPPED_PREFIX = 0xFFFF_0000_0000
# Label index 0 in every label table means "no country" (a gap in the data).
UNKNOWN_LABEL = 0


class Status(IntEnum):
    """What happened to one address of a batch."""

    OK = 0
    """Valid address with a country."""
    NOT_FOUND = 1
    """Valid address that no range of the data covers."""
    INVALID_ADDRESS = 2
    """Not a valid IPv4 or IPv6 address; the rest of the batch is unaffected."""
    RESERVED = 3
    """Valid address in a special-purpose range (private, loopback, link-local,
    documentation, multicast, ...): no country, whatever the data says. See
    :mod:`lookupd.reserved`."""
