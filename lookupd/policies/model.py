"""The policy model: one validated policy, how it decides a label, and a batch's decisions."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from lookupd.codes import CodeArray, Reason, Verdict
from lookupd.core.labels import split_label
from lookupd.errors import LookupdError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
"""An ``allow`` or ``deny`` network override."""

# Labels that mean "no country": decided by ``unknown``, never listed.
UNKNOWN_MARKERS = frozenset({"ZZ", "XX"})


class PolicyError(LookupdError):
    """A policy file is unreadable or invalid; the message names the file, policy and field."""


@dataclass(frozen=True, slots=True)
class Policy:
    """One named policy, parsed and validated."""

    name: str
    """The policy's name, as requests give it."""
    description: str
    """Free text from the file."""
    mode: Literal["allow", "deny"]
    """``allow``: only ``countries`` are allowed; ``deny``: ``countries`` are denied."""
    countries: frozenset[str]
    """The ``allow_countries`` or ``deny_countries`` codes."""
    deny_subdivisions: frozenset[str] = frozenset()
    """ISO 3166-2 codes denied inside allowed countries."""
    allow_subdivisions: frozenset[str] = frozenset()
    """ISO 3166-2 codes allowed inside denied countries."""
    allow_networks: tuple[Network, ...] = ()
    """Networks allowed whatever their country or status (except invalid)."""
    deny_networks: tuple[Network, ...] = ()
    """Networks denied whatever their country or status."""
    unknown: Verdict = Verdict.DENY
    """Verdict for valid addresses with no country."""
    reserved: Verdict = Verdict.ALLOW
    """Verdict for special-purpose addresses (``Status.RESERVED``)."""

    def country_allowed(self, country: str) -> bool:
        """Tell whether the country rule alone allows ``country``."""
        listed = country in self.countries
        return listed if self.mode == "allow" else not listed

    def decide_label(self, label: str) -> tuple[Verdict, Reason]:
        """Decide a valid, non-reserved address labelled ``label`` (``""``: no country).

        Network overrides are not considered: they depend on the address, not its label.
        """
        if not label:
            return self.unknown, Reason.UNKNOWN
        country, subdivision = split_label(label)
        if country in UNKNOWN_MARKERS:
            return self.unknown, Reason.UNKNOWN
        if subdivision is not None:
            if subdivision in self.deny_subdivisions:
                return Verdict.DENY, Reason.SUBDIVISION_DENIED
            if subdivision in self.allow_subdivisions:
                return Verdict.ALLOW, Reason.SUBDIVISION_ALLOWED
        if self.country_allowed(country):
            return Verdict.ALLOW, Reason.COUNTRY_ALLOWED
        return Verdict.DENY, Reason.COUNTRY_DENIED


@dataclass(frozen=True, slots=True)
class Decisions:
    """A policy's answers for a batch, in input order."""

    verdicts: CodeArray
    """A :class:`Verdict` per address, printed by name (:class:`~lookupd.codes.VerdictArray`)."""
    reasons: CodeArray
    """A :class:`Reason` per address, printed by name (:class:`~lookupd.codes.ReasonArray`)."""

    def __len__(self) -> int:
        return int(self.verdicts.shape[0])

    @property
    def allowed(self) -> npt.NDArray[np.bool_]:
        """Mask of the allowed addresses."""
        mask: npt.NDArray[np.bool_] = self.verdicts == Verdict.ALLOW
        return mask
