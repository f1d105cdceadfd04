"""Which address of an Envoy ``CheckRequest`` is the client's: the ``--authz-ip-source``.

- ``peer``: ``attributes.source.address``, the downstream address as Envoy decided it: the
  TCP peer, or the client behind trusted proxies where the listener says so
  (``use_remote_address`` with ``xff_num_trusted_hops``, or the PROXY protocol).
- ``header:NAME``: a header Envoy itself sets before ``ext_authz`` (e.g. a
  ``header_mutation`` filter writing ``%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%``, which
  replaces whatever the client sent).
- ``xff:N``: the N-th address from the right of ``x-forwarded-for`` as Envoy passes it on,
  1 being the rightmost (the address the nearest proxy appended). Addresses to its left
  were written by whoever sent the request and prove nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from lookupd.errors import LookupdError, quoted

XFF_HEADER = "x-forwarded-for"
# More trusted hops than any real chain of proxies: a larger N is a mistake in the setting.
_MOST_HOPS = 16


@dataclass(frozen=True, slots=True)
class AddressSource:
    """Where the client's address is read: ``kind`` ``peer``, ``header`` (``header``
    names it) or ``xff`` (``hops`` from the right, 1 the rightmost)."""

    kind: Literal["peer", "header", "xff"]
    header: str = ""
    hops: int = 0

    @classmethod
    def parse(cls, text: str) -> AddressSource:
        """Read the setting: ``peer``, ``header:NAME`` or ``xff:N``.

        Raises:
            LookupdError: anything else, naming what was wrong.
        """
        kind, _, argument = text.strip().partition(":")
        if kind == "peer" and not argument:
            return cls("peer")
        if kind == "header" and argument.strip():
            name = argument.strip().lower()  # Envoy passes header names in lower case
            if name == XFF_HEADER:
                msg = f"use xff:N for {XFF_HEADER}, not header:{XFF_HEADER}"
                raise LookupdError(msg)
            if not all(c.isalnum() or c in "-_." for c in name):
                msg = f"not a header name: {quoted(argument)}"
                raise LookupdError(msg)
            return cls("header", header=name)
        if kind == "xff":
            try:
                hops = int(argument)
            except ValueError:
                hops = 0
            if not 1 <= hops <= _MOST_HOPS:
                most = f"from 1 (the rightmost address) to {_MOST_HOPS}"
                msg = f"xff:N needs N {most}, not {quoted(argument)}"
                raise LookupdError(msg)
            return cls("xff", hops=hops)
        msg = f"the address source must be peer, header:NAME or xff:N, not {quoted(text)}"
        raise LookupdError(msg)

    def __str__(self) -> str:
        if self.kind == "header":
            return f"header:{self.header}"
        if self.kind == "xff":
            return f"xff:{self.hops}"
        return "peer"

    def pick(self, peer: str, headers: Mapping[str, str]) -> str:
        """Return the client's address as the request gives it, from its ``peer`` address
        and ``headers`` (lower-case names): "" where the source is missing. Whether it is an
        IP address is the lookup's to say (the parser in C, as for every address)."""
        if self.kind == "peer":
            return peer.strip()
        if self.kind == "header":
            return headers.get(self.header, "").strip()
        entries = headers.get(XFF_HEADER, "").split(",")
        return entries[-self.hops].strip() if len(entries) >= self.hops else ""


PEER = AddressSource("peer")
"""The default source: the downstream address Envoy decided on."""
