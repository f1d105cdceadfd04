"""Answer ``GetInfo``: the data, policies, limits and versions a server answers with."""

from __future__ import annotations

import os

from lookupd.core import _search
from lookupd.server.answers import Answerer
from lookupd.v1 import lookup_pb2 as pb
from lookupd.version import __version__


def info(answerer: Answerer, *, max_message_bytes: int) -> pb.GetInfoResponse:
    """Describe the data, policies, limits and versions."""
    db = answerer.db
    metadata = db.info.metadata
    rows = metadata.get("rows") or {}
    counts = metadata.get("counts") or {}
    v4_rows = _int(rows.get("ipv4")) or _int((counts.get("ipv4") or {}).get("rows"))
    v6_rows = _int(rows.get("ipv6")) or _int((counts.get("ipv6") or {}).get("rows"))
    return pb.GetInfoResponse(
        data_version=answerer.version_message(),
        data_source=db.info.source,
        sources=[_source_message(source) for source in metadata.get("sources", [])],
        counts=pb.Counts(
            ipv4_segments=len(db.v4),
            ipv6_segments=len(db.v6),
            labels=len(db.label_names) - 1,
            ipv4_rows=v4_rows,
            ipv6_rows=v6_rows,
        ),
        has_subdivisions=db.has_subdivisions,
        policies=_policies(answerer),
        policy_version=answerer.policy_version,
        server_version=__version__,
        search_core=_search.CORE,
        max_batch=answerer.max_batch,
        max_message_bytes=max_message_bytes,
        process_id=os.getpid(),
        loaded_at=answerer.loaded_at,
        data_date=answerer.version.data_date,
        data_date_from=answerer.version.data_date_from,
    )


def _policies(answerer: Answerer) -> list[pb.PolicyInfo]:
    """The policies' names and descriptions, by name."""
    if answerer.policy_set is None:
        return []
    policies = answerer.policy_set.policies
    return [
        pb.PolicyInfo(name=name, description=str(getattr(policies[name], "description", "") or ""))
        for name in sorted(policies)
    ]


def _int(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _source_message(source: object) -> pb.Source:
    """Return a Source message from a metadata source record (tolerating sparse records)."""
    if not isinstance(source, dict):
        return pb.Source(name=str(source))
    rows = source.get("rows")
    if not isinstance(rows, dict):
        rows = {}
    return pb.Source(
        name=str(source.get("name", "")),
        format=str(source.get("format", "")),
        size=_int(source.get("size")),
        sha256=str(source.get("sha256", "")),
        ipv4_rows=_int(rows.get("ipv4")),
        ipv6_rows=_int(rows.get("ipv6")),
        date=str(source.get("date", "")),
        date_from=str(source.get("date_from", "")),
    )
