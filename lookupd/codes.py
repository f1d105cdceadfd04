"""What an answer says of each address: status, verdict and reason numbers, and their arrays.

One numbering for the Python enums, the arrays lookups return, the packed status bytes
and the ``lookupd.v1`` proto enums (whose 0 is ``*_UNSPECIFIED``, never sent):
``tests/test_codes.py`` pins each member to the proto value of the same name.

The arrays of these numbers that the API returns (``LookupResult.status``,
``Decisions.verdicts``, the client's ``Answers.status`` ...) are :class:`CodeArray` views:
plain ``uint8`` arrays to numpy, that print and index as the enum's members.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt


class Status(IntEnum):
    """What happened to one address of a batch."""

    OK = 1
    """Valid address with a country."""
    INVALID_ADDRESS = 2
    """Not a valid IPv4 or IPv6 address; the rest of the batch is unaffected."""
    NOT_FOUND = 3
    """Valid address that no range of the data covers."""
    RESERVED = 4
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


class CodeArray(np.ndarray[Any, np.dtype[np.uint8]]):
    """A ``uint8`` array of one enum's numbers that prints and indexes as its members.

    Build one with :func:`code_array`. To numpy it is the plain array (comparisons, masks,
    ``tobytes``, arithmetic); ufunc results are plain ndarrays, so a mask never claims to
    hold members. Indexing one element returns the member (a number that is not one comes
    back as a numpy integer); slices and masks keep the enum.

    The enum is the subclass's (:class:`StatusArray`, :class:`VerdictArray`,
    :class:`ReasonArray`), not an attribute of each array: views, slices, masks and pickles
    keep it with no Python code run per new array (``concatenate`` and other functions
    return plain arrays, as ufuncs do).
    """

    enum: ClassVar[type[IntEnum]]
    """The enum whose numbers the array holds."""

    def __getitem__(self, key: Any) -> Any:
        item = super().__getitem__(key)
        if isinstance(item, np.integer):
            try:
                return self.enum(int(item))
            except ValueError:
                return item
        return item

    def __array_wrap__(
        self,
        array: npt.NDArray[Any],
        context: tuple[np.ufunc, tuple[Any, ...], int] | None = None,
        return_scalar: bool = False,
        /,
    ) -> Any:
        # Ufunc results (masks, sums, shifted numbers) are not members: hand back plain
        # arrays, and scalars for reductions.
        if return_scalar:
            return array[()]
        return array.view(np.ndarray) if type(array) is not np.ndarray else array

    def _names(self) -> str:
        enum = self.enum

        def name(number: np.integer[Any]) -> str:
            try:
                return enum(int(number)).name
            except ValueError:
                return str(int(number))

        plain = self.view(np.ndarray)
        if plain.dtype.kind not in "ui":  # astype to floats etc.: nothing to name
            return np.array2string(plain, separator=", ")
        return np.array2string(plain, separator=", ", formatter={"int": name})

    def __repr__(self) -> str:
        prefix = f"{type(self).__name__}("
        body = self._names().replace("\n", "\n" + " " * len(prefix))
        return f"{prefix}{body})"

    def __str__(self) -> str:
        return self._names().replace(",", "")


class StatusArray(CodeArray):
    """:class:`Status` numbers: ``LookupResult.status``, the client's ``Answers.status``."""

    enum = Status


class VerdictArray(CodeArray):
    """:class:`Verdict` numbers: ``Decisions.verdicts``, the client's ``Checks.verdicts``."""

    enum = Verdict


class ReasonArray(CodeArray):
    """:class:`Reason` numbers: ``Decisions.reasons``, the client's ``Checks.reasons``."""

    enum = Reason


_ARRAY_TYPES: dict[type[IntEnum], type[CodeArray]] = {
    Status: StatusArray,
    Verdict: VerdictArray,
    Reason: ReasonArray,
}


def code_array(values: npt.NDArray[np.uint8], enum: type[IntEnum]) -> CodeArray:
    """Return ``values`` (a ``uint8`` array) as a :class:`CodeArray` of ``enum``: a view.

    Raises:
        TypeError: ``enum`` is not :class:`Status`, :class:`Verdict` or :class:`Reason`,
            or ``values`` is not a ``uint8`` array.
    """
    array_type = _ARRAY_TYPES.get(enum)
    if array_type is None:
        msg = f"no code array for {enum!r}: one of Status, Verdict, Reason"
        raise TypeError(msg)
    if not isinstance(values, np.ndarray) or values.dtype != np.uint8:
        msg = f"code_array takes a uint8 array, not {getattr(values, 'dtype', type(values))}"
        raise TypeError(msg)
    return values.view(array_type)
