"""What the clients return: typed, frozen results built from the server's responses.

Each ``*_from`` function is pure: a protobuf response in, a result out, nothing else read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lookupd.codes import CodeArray, Reason, Verdict, code_array
from lookupd.v1 import lookup_pb2 as pb


@dataclass(frozen=True, slots=True)
class Answers:
    """A batch's answers, in input order."""

    countries: npt.NDArray[np.str_]
    """Country code per address; ``""`` where none (status other than OK)."""
    status: CodeArray
    """A :class:`lookupd.Status` number per address, as :meth:`lookupd.Database.lookup`: a
    ``uint8`` array that prints the names (:class:`~lookupd.codes.StatusArray`)."""
    data_versions: tuple[str, ...]
    """The data version ids that answered, each once (one unless the data changed)."""
    subdivisions: npt.NDArray[np.str_] | None = None
    """With ``subdivisions=True``: the ISO 3166-2 subdivision per address, ``""`` if none."""

    def __len__(self) -> int:
        return int(self.status.shape[0])

    @property
    def data_version(self) -> str:
        """Return the data version id that answered (the last, if the data changed)."""
        return self.data_versions[-1] if self.data_versions else ""

    def countries_list(self) -> list[str | None]:
        """Return the country per address, ``None`` where none (as ``countries()``)."""
        return [country or None for country in self.countries.tolist()]


@dataclass(frozen=True, slots=True)
class Checks:
    """A policy's answers for a batch, in input order."""

    verdicts: CodeArray
    """A :class:`lookupd.Verdict` number per address (1 ALLOW, 2 DENY), printed by name
    (:class:`~lookupd.codes.VerdictArray`)."""
    reasons: CodeArray
    """A :class:`lookupd.Reason` number per address (1 COUNTRY_ALLOWED ... 9
    SUBDIVISION_ALLOWED), printed by name (:class:`~lookupd.codes.ReasonArray`)."""
    countries: npt.NDArray[np.str_]
    """Country code per address; ``""`` where none."""
    data_version: str
    """The data version id that answered."""
    policy_version: str
    """SHA-256 of the policy file that answered."""

    def __len__(self) -> int:
        return int(self.verdicts.shape[0])

    @property
    def allowed(self) -> npt.NDArray[np.bool_]:
        """Mask of the addresses the policy allows."""
        allowed: npt.NDArray[np.bool_] = self.verdicts == Verdict.ALLOW
        return allowed


@dataclass(frozen=True, slots=True)
class DataVersion:
    """Which data a server serves."""

    id: str
    """SHA-256 (64 hex digits) of the data's compiled tables: equal ids, equal answers."""
    built_at: str
    """When the data was built (ISO 8601 UTC, or a release date); ``""`` if unknown."""


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One input file the served data was built from."""

    name: str
    """File name as given to ``lookupd build``."""
    format: str
    """Input format (``location-csv``, ``mmdb`` ...); ``""`` if not recorded."""
    size: int
    """Size in bytes; 0 if not recorded."""
    sha256: str
    """SHA-256 of the file (hex); ``""`` if not recorded."""
    ipv4_rows: int
    """IPv4 rows read from it."""
    ipv6_rows: int
    """IPv6 rows read from it."""
    date: str = ""
    """When the vendor made its data (ISO 8601); ``""`` if unknown."""
    date_from: str = ""
    """Where ``date`` came from (``mmdb build_epoch``, ``Last-Modified`` ...)."""


@dataclass(frozen=True, slots=True)
class Counts:
    """Sizes of the served data."""

    ipv4_segments: int
    """Non-overlapping IPv4 ranges after merging."""
    ipv6_segments: int
    """Non-overlapping IPv6 ranges after merging."""
    labels: int
    """Distinct labels (countries, or countries with subdivisions)."""
    ipv4_rows: int
    """IPv4 rows read from all sources; 0 if not recorded."""
    ipv6_rows: int
    """IPv6 rows read from all sources; 0 if not recorded."""


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """A policy the server's ``check`` accepts."""

    name: str
    """The name to pass to ``check``."""
    description: str
    """What the policy is for, from the policy file."""


@dataclass(frozen=True, slots=True)
class Info:
    """What a server runs on: data, policies, limits and versions (``GetInfo``)."""

    data_version: DataVersion
    """The served data's version."""
    data_source: str
    """``embedded:NAME`` for the data shipped with lookupd, else the data file's name."""
    sources: tuple[SourceFile, ...]
    """The files the data was built from, in precedence order (later wins)."""
    counts: Counts
    """Sizes of the data."""
    has_subdivisions: bool
    """Whether the data carries subdivisions (so policies' subdivision rules apply)."""
    policies: tuple[PolicyInfo, ...]
    """The policies ``check`` accepts, sorted by name."""
    policy_version: str
    """SHA-256 (hex) of the policy file; ``""`` if none is loaded."""
    server_version: str
    """The server's lookupd version."""
    search_core: str
    """The search core answering lookups: ``c`` (compiled) or ``python``."""
    max_batch: int
    """Most addresses one request may hold: the most ``chunk_size`` can usefully be."""
    max_message_bytes: int
    """The largest request message the server accepts, in bytes."""
    process_id: int
    """The id of the server process that answered (each worker process has its own)."""
    loaded_at: str
    """When that process loaded its data and policies: ISO 8601 in UTC."""
    data_date: str = ""
    """When the data itself was made (its oldest source's date); ``""`` if unknown."""
    data_date_from: str = ""
    """Where ``data_date`` came from."""

    @property
    def policy_names(self) -> tuple[str, ...]:
        """The names of the policies ``check`` accepts, sorted."""
        return tuple(policy.name for policy in self.policies)


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What a reload swapped in (``AdminService.Reload``)."""

    data_version: DataVersion
    """The data version now serving."""
    policy_version: str
    """SHA-256 (hex) of the policy file now serving; ``""`` if none is loaded."""
    data_changed: bool
    """Whether the data version differs from the one served before."""
    policies_changed: bool
    """Whether the policy version differs from the one served before."""


def checks_from(response: pb.CheckRegionResponse) -> Checks:
    """Return the :class:`Checks` of a ``CheckRegion`` response."""
    return Checks(
        code_array(np.array(response.verdicts, dtype=np.uint8), Verdict),
        code_array(np.array(response.reasons, dtype=np.uint8), Reason),
        np.array(list(response.countries), dtype=np.str_).reshape(-1),
        response.data_version.id,
        response.policy_version,
    )


def data_version_from(message: pb.DataVersion) -> DataVersion:
    """Return the :class:`DataVersion` of a ``DataVersion`` message."""
    return DataVersion(message.id, message.built_at)


def info_from(response: pb.GetInfoResponse) -> Info:
    """Return the :class:`Info` of a ``GetInfo`` response."""
    counts = response.counts
    return Info(
        data_version=data_version_from(response.data_version),
        data_source=response.data_source,
        sources=tuple(
            SourceFile(
                s.name, s.format, s.size, s.sha256, s.ipv4_rows, s.ipv6_rows, s.date, s.date_from
            )
            for s in response.sources
        ),
        counts=Counts(
            counts.ipv4_segments,
            counts.ipv6_segments,
            counts.labels,
            counts.ipv4_rows,
            counts.ipv6_rows,
        ),
        has_subdivisions=response.has_subdivisions,
        policies=tuple(PolicyInfo(p.name, p.description) for p in response.policies),
        policy_version=response.policy_version,
        server_version=response.server_version,
        search_core=response.search_core,
        max_batch=response.max_batch,
        max_message_bytes=response.max_message_bytes,
        process_id=response.process_id,
        loaded_at=response.loaded_at,
        data_date=response.data_date,
        data_date_from=response.data_date_from,
    )


def reload_result_from(response: pb.ReloadResponse) -> ReloadResult:
    """Return the :class:`ReloadResult` of a ``Reload`` response."""
    return ReloadResult(
        data_version=data_version_from(response.data_version),
        policy_version=response.policy_version,
        data_changed=response.data_changed,
        policies_changed=response.policies_changed,
    )
