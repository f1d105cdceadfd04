"""Exceptions raised by lookupd, all under one root."""


class LookupdError(Exception):
    """Root of every error lookupd raises on purpose."""


class InvalidTableError(LookupdError):
    """A range table is malformed: unsorted, overlapping, or not covering the space."""


class DataFormatError(LookupdError):
    """A data file cannot be read: malformed row, bad address, start > end, ..."""


class InvalidAddressError(LookupdError, ValueError):
    """A single address given to ``lookup_one`` is not a valid IPv4 or IPv6 address."""
