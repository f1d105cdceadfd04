"""The answers to one batch: a label and a status per address, in input order."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from lookupd.codes import CodeArray, Status
from lookupd.core import _search
from lookupd.core.constants import IPV4_MAPPED_PREFIX


@dataclass(frozen=True, slots=True)
class LookupResult:
    """Answers for a batch, in input order: a label and a status per address.

    A label is a country code (``US``), or a country and its first-level subdivision
    (``UA-43``) for data that carries subdivisions; :meth:`countries` and
    :meth:`subdivisions` split it.
    """

    labels: npt.NDArray[np.uint16]
    """Label index per address into ``label_names``; 0 where there is no country (not
    found, invalid or reserved)."""
    status: CodeArray
    """A :class:`~lookupd.Status` per address: a ``uint8`` array that prints the names and
    whose elements are members (:class:`~lookupd.codes.StatusArray`)."""
    label_names: tuple[str, ...]
    """The database's label table; ``label_names[0] == ""``."""
    _countries: tuple[str | None, ...] = field(repr=False)
    _subdivisions: tuple[str | None, ...] = field(repr=False)
    _keys: npt.NDArray[np.uint64] | None = field(default=None, repr=False, compare=False)
    _ipv4: npt.NDArray[np.uint32] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def keys(self) -> npt.NDArray[np.uint64]:
        """The batch's 128-bit keys: a ``uint64`` array of shape (n, 2) of (high, low) halves.

        IPv4 addresses are IPv4-mapped (``::ffff:a.b.c.d``); an invalid item's key is (0, 0).
        For ``uint32`` and packed IPv4 input they are built on first use (a plain lookup does
        not pay for them), from the input array: do not change that array before reading
        them. For ``uint64`` input they may be that array itself.
        """
        keys = self._keys
        if keys is None:
            ipv4 = self._ipv4
            if ipv4 is None:  # pragma: no cover - every Database path sets one of them
                msg = "this LookupResult was built without its keys"
                raise ValueError(msg)
            keys = np.zeros((ipv4.shape[0], 2), dtype=np.uint64)
            keys[:, 1] = ipv4
            keys[:, 1] |= np.uint64(IPV4_MAPPED_PREFIX)
            # Frozen: cache through object.__setattr__. Two threads racing here build equal
            # arrays, and either may win.
            object.__setattr__(self, "_keys", keys)
        return keys

    def countries(self) -> list[str | None]:
        """Return the country code per address, ``None`` where none (invalid, not found or
        reserved)."""
        return _search.gather_names(self._countries, self.labels)

    def subdivisions(self) -> list[str | None]:
        """Return the ISO 3166-2 subdivision per address (``UA-43``), ``None`` where none."""
        return _search.gather_names(self._subdivisions, self.labels)

    def codes(self) -> npt.NDArray[np.str_]:
        """Return the country codes as a numpy string array, ``""`` where none."""
        countries = np.array(["", *self._countries[1:]], dtype=np.str_)
        return countries[self.labels]

    @property
    def invalid(self) -> npt.NDArray[np.bool_]:
        """Mask of the addresses that did not parse."""
        invalid: npt.NDArray[np.bool_] = self.status == Status.INVALID_ADDRESS
        return invalid

    @property
    def reserved(self) -> npt.NDArray[np.bool_]:
        """Mask of the addresses in special-purpose ranges (``Status.RESERVED``)."""
        mask: npt.NDArray[np.bool_] = self.status == Status.RESERVED
        return mask
