"""Exceptions raised by lookupd, all under one root, and how their messages quote input."""


class LookupdError(Exception):
    """Root of every error lookupd raises on purpose."""


class InvalidTableError(LookupdError):
    """A range table is malformed: unsorted, overlapping, or not covering the space."""


class DataFormatError(LookupdError):
    """A data file cannot be read: malformed row, bad address, start > end, ..."""


class InvalidAddressError(LookupdError, ValueError):
    """A single address given to ``lookup_one`` is not a valid IPv4 or IPv6 address."""


QUOTE_CHARS = 100
"""The most characters of an input (a line, an address, a name) that an error message quotes."""


def quoted(text: str | bytes, limit: int = QUOTE_CHARS) -> str:
    """Return ``repr(text)``, cut after ``limit`` characters (and then saying how long it was).

    Messages quote the input they refuse; that input may be a megabyte line or a hostile
    request field, and the message must stay one short line.
    """
    if len(text) <= limit:
        return repr(text)
    unit = "bytes" if isinstance(text, bytes) else "characters"
    return f"{text[:limit]!r}... ({len(text):,} {unit})"
