"""What every answer is made from: a loaded database and its policies, with per-label tables.

The functions that answer each RPC (:mod:`~lookupd.server.lookups`,
:mod:`~lookupd.server.checks`, :mod:`~lookupd.server.info`) read an :class:`Answerer`. The
tables are built once per loaded database and indexed by the label arrays a lookup
returns, so no Python code runs per address.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from lookupd.core.database import Database
from lookupd.core.labels import split_label
from lookupd.datafiles.data_version import DataVersion, data_version_of
from lookupd.server.batches import DEFAULT_MAX_BATCH
from lookupd.server.encoding import TextFields
from lookupd.v1 import lookup_pb2 as pb
from lookupd.wire import NO_COUNTRY_CODE, ODD_COUNTRY_CODE

if TYPE_CHECKING:
    from lookupd.policies import CompiledPolicies, PolicySet


def _country_tables(label_names: Sequence[str]) -> tuple[npt.NDArray[np.bytes_], list[str]]:
    """Return per label: its country as two ASCII bytes (S2), and as text ("" for none)."""
    codes = [NO_COUNTRY_CODE]
    texts = [""]
    for name in label_names[1:]:
        country, _ = split_label(name)
        texts.append(country)
        raw = country.encode("ascii", "replace")
        codes.append(raw if len(raw) == 2 and country.isascii() else ODD_COUNTRY_CODE)
    return np.array(codes, dtype="S2"), texts


@dataclass(frozen=True, slots=True)
class Answerer:
    """A database, its policies, and the tables that turn answers into response fields.

    Immutable: a server swaps a whole new one in to change data, and a call that read one
    answers entirely from it (so its data version is the one that answered).
    """

    db: Database
    """The data."""
    version: DataVersion
    """The data's version."""
    policies: CompiledPolicies | None = None
    """Policies compiled against ``db``, or None (CheckRegion then knows no policy)."""
    policy_set: PolicySet | None = None
    """The policies as loaded (names, descriptions, file version)."""
    max_batch: int = DEFAULT_MAX_BATCH
    """Most addresses one request may hold."""
    loaded_at: str = ""
    """When :meth:`load` built it: ISO 8601 in UTC."""
    codes: npt.NDArray[np.uint16] = field(init=False, repr=False)
    """Per label: the country's two ASCII bytes, as one native ``uint16`` (``--`` for label
    0); ``codes[labels].tobytes()`` is the packed answer. A ``uint16``, not the same bytes
    as ``S2``: numpy gathers integers by a quicker path than fixed-width strings (chosen
    by measurement: see bench/README.md, "Figures behind design choices in the code")."""
    codes_by_label: npt.NDArray[np.uint16] = field(init=False, repr=False)
    """``codes`` padded to every possible ``uint16`` label (``--`` beyond the data's), as
    the search core's packed answer wants, so that no label can read past it."""
    countries: npt.NDArray[np.object_] = field(init=False, repr=False)
    """Per label: the country as ``str``; ``""`` for label 0."""
    text: TextFields = field(init=False, repr=False)
    """Per label: its serialized ``LookupResponse`` elements, and the data version's."""

    def __post_init__(self) -> None:
        codes, texts = _country_tables(self.db.label_names)
        subdivisions = [""] + [split_label(name)[1] or "" for name in self.db.label_names[1:]]
        object.__setattr__(self, "codes", np.frombuffer(codes.tobytes(), dtype=np.uint16))
        by_label = np.full(1 << 16, self.codes[0], dtype=np.uint16)
        by_label[: len(self.codes)] = self.codes
        object.__setattr__(self, "codes_by_label", by_label)
        object.__setattr__(self, "countries", np.array(texts, dtype=object))
        object.__setattr__(
            self, "text", TextFields.build(texts, subdivisions, self.version_message())
        )

    @classmethod
    def load(
        cls,
        db: Database,
        policy_set: PolicySet | None = None,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> Answerer:
        """Compile ``policy_set`` against ``db`` and build the answer tables."""
        policies = policy_set.compile(db) if policy_set is not None else None
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return cls(db, data_version_of(db), policies, policy_set, max_batch, now)

    def version_message(self) -> pb.DataVersion:
        """Return the data version as its proto message."""
        return pb.DataVersion(id=self.version.id, built_at=self.version.built_at)

    @property
    def policy_version(self) -> str:
        """The policy file's version; "" without policies."""
        return self.policy_set.version if self.policy_set is not None else ""
