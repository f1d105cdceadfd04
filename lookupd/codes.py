"""What an answer says of each address: status, verdict and reason numbers.

One numbering for the Python enums, the arrays lookups return, the packed status bytes
and the ``lookupd.v1`` proto enums (whose 0 is ``*_UNSPECIFIED``, never sent).
"""

from enum import IntEnum


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
    :mod:`lookupd.core.reserved`."""


class Verdict(IntEnum):
    """Whether an address may pass."""

    ALLOW = 1
    """The address is in a supported region (or an override or default allows it)."""
    DENY = 2
    """The address is not, or is invalid."""


class Reason(IntEnum):
    """Which rule decided a verdict (see the precedence in :mod:`lookupd.policies`)."""

    COUNTRY_ALLOWED = 1
    """The country rule allows the address's country."""
    COUNTRY_DENIED = 2
    """The country rule denies the address's country."""
    SUBDIVISION_DENIED = 3
    """A ``deny_subdivisions`` entry (``UA-43``) denies it inside an allowed country."""
    NETWORK_ALLOWED = 4
    """A ``networks.allow`` entry allows it, whatever its country or status."""
    NETWORK_DENIED = 5
    """A ``networks.deny`` entry denies it, whatever its country or status."""
    RESERVED = 6
    """A special-purpose address (private, loopback, ...): the ``reserved`` verdict."""
    UNKNOWN = 7
    """The data has no country for it: the ``unknown`` verdict."""
    INVALID = 8
    """Not a valid address: always denied."""
    SUBDIVISION_ALLOWED = 9
    """An ``allow_subdivisions`` entry allows it inside a denied country."""
