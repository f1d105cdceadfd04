"""Answer the gRPC service's requests from a database and policies: pure work, no gRPC.

The servicer in :mod:`lookupd.server.app` only adapts these functions to gRPC. Everything here
is vectorised: per-label tables (country code as two bytes, as text) are built once per
loaded database and indexed by the label arrays a lookup returns, so no Python code runs
per address.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from lookupd.codes import Status
from lookupd.core import _parse, _search, reserved
from lookupd.core.database import Database, LookupResult
from lookupd.core.labels import split_label
from lookupd.datafiles.data_version import DataVersion, data_version_of
from lookupd.errors import InvalidAddressError, LookupdError
from lookupd.v1 import lookup_pb2 as pb
from lookupd.version import __version__
from lookupd.wire import NO_COUNTRY_CODE, ODD_COUNTRY_CODE

if TYPE_CHECKING:
    from lookupd.policies import CompiledPolicies, PolicySet

# Default most addresses per request (text and packed together).
DEFAULT_MAX_BATCH = 100_000
# Addresses answered between two checks that the call is still wanted (deadline, cancel):
# about 1 ms of work on the compiled core, so an expired call stops within a millisecond.
CHUNK_ADDRESSES = 32_768
_V4_BYTES = 4
_V6_BYTES = 16
# Text requests of at most this many addresses (without subdivisions) are answered with
# Database.lookup_one per address (about 0.3 us each) instead of one Database.lookup
# (about 12 us of fixed numpy and argument costs even for one address).
SCALAR_MOST = 8
# lookupd.v1.LookupResponse field tags (field number << 3 | wire type 2, length-delimited).
# LookupRequest.addresses: the field lookup_request_answer reads from the raw message.
_FIELD_ADDRESSES: int = pb.LookupRequest.DESCRIPTOR.fields_by_name["addresses"].number
_TAG_COUNTRIES = 1 << 3 | 2
_TAG_STATUS = 2 << 3 | 2  # packed repeated enum
_TAG_DATA_VERSION = 3 << 3 | 2
_TAG_SUBDIVISIONS = 4 << 3 | 2


class RequestError(LookupdError):
    """A request the service refuses as a whole: the gRPC layer maps each kind to a status."""


class BadRequestError(RequestError):
    """Malformed request or over a limit (gRPC ``INVALID_ARGUMENT``)."""


class UnknownPolicyError(RequestError):
    """No policy of that name is loaded (gRPC ``NOT_FOUND``)."""


class CallAbandonedError(RequestError):
    """The caller stopped waiting (deadline passed or cancelled) before the work finished."""


# The packed status field's payload is the status array's bytes as they are: Status numbers
# are the lookupd.v1.Status numbers, each below 128 (a one-byte varint).
if max(Status) >= 0x80:  # pragma: no cover
    raise AssertionError("a lookupd.v1.Status number needs a two-byte varint")
_STATUS_OK_BYTE = bytes([Status.OK])
# What answer_packed_v4 reads to mark reserved IPv4 addresses: a flag per /16 (0 none, 1
# all, 2 some), then one per segment of the reserved table; none set for a database that
# does not mark them.
_RESERVED_PREFIXES_V4 = np.frombuffer(reserved.PREFIX_FLAGS_V4, dtype=np.uint8)
_NO_RESERVED_PREFIXES_V4 = np.zeros(1 << 16, dtype=np.uint8)
# The verdicts and reasons of an empty check (read-only: shared by every call).
_NO_DECISIONS = np.zeros(0, dtype=np.uint8)
_NO_DECISIONS.flags.writeable = False
# The statuses of a small all-OK batch (read-only: shared by every call).
_ALL_OK = np.full(SCALAR_MOST, Status.OK, dtype=np.uint8)
_ALL_OK.flags.writeable = False


def _varint(value: int) -> bytes:
    """Return ``value`` (>= 0) as a protobuf varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """Return a length-delimited protobuf field (``tag`` below 128) holding ``payload``."""
    return bytes([tag]) + _varint(len(payload)) + payload


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
    0); ``codes[labels].tobytes()`` is the packed answer. Indexing ``uint16`` is 5x faster
    than indexing the same bytes as ``S2`` (55 us against 11 us for 10,000 labels)."""
    countries: npt.NDArray[np.object_] = field(init=False, repr=False)
    """Per label: the country as ``str``; ``""`` for label 0."""
    subdivisions: npt.NDArray[np.object_] = field(init=False, repr=False)
    """Per label: the ISO 3166-2 subdivision as ``str``; ``""`` where none."""
    version_bytes: bytes = field(init=False, repr=False)
    """The ``LookupResponse.data_version`` field, serialized once."""
    _codes_by_label: npt.NDArray[np.uint16] = field(init=False, repr=False)
    """``codes`` padded to every possible ``uint16`` label (``--`` beyond the data's), as
    the search core's packed answer wants, so that no label can read past it."""
    _country_fields: npt.NDArray[np.object_] = field(init=False, repr=False)
    """Per label: its ``LookupResponse.countries`` element, serialized (tag, length, text)."""
    _country_words: npt.NDArray[np.uint32] | None = field(init=False, repr=False)
    """Where every element is 2 or 4 bytes (two-letter countries, and "" for label 0): per
    label, the element as 4 bytes (zero padded), so a ``uint32`` gather and one mask
    serialize 10,000 countries in ~50 us (a ``bytes.join`` took 160, protobuf's own
    repeated-string field 150 plus 60 for the list of ``str``); else None."""
    _country_full: npt.NDArray[np.bool_] = field(init=False, repr=False)
    """Per label: whether its element is 4 bytes (else 2)."""
    _subdivision_fields: npt.NDArray[np.object_] = field(init=False, repr=False)
    """Per label: its ``LookupResponse.subdivisions`` element, serialized."""
    _field_by_country: dict[str, bytes] = field(init=False, repr=False)
    """Country text -> its serialized ``countries`` element, for labelled countries."""

    def __post_init__(self) -> None:
        codes, texts = _country_tables(self.db.label_names)
        subdivisions = [""] + [split_label(name)[1] or "" for name in self.db.label_names[1:]]
        object.__setattr__(self, "codes", np.frombuffer(codes.tobytes(), dtype=np.uint16))
        by_label = np.full(1 << 16, self.codes[0], dtype=np.uint16)
        by_label[: len(self.codes)] = self.codes
        object.__setattr__(self, "_codes_by_label", by_label)
        object.__setattr__(self, "countries", np.array(texts, dtype=object))
        object.__setattr__(self, "subdivisions", np.array(subdivisions, dtype=object))
        version = pb.DataVersion(id=self.version.id, built_at=self.version.built_at)
        object.__setattr__(
            self, "version_bytes", _field(_TAG_DATA_VERSION, version.SerializeToString())
        )
        fields = [_field(_TAG_COUNTRIES, text.encode()) for text in texts]
        array = np.empty(len(fields), dtype=object)
        array[:] = fields
        object.__setattr__(self, "_country_fields", array)
        words: npt.NDArray[np.uint32] | None = None
        if all(len(item) in (2, 4) for item in fields):
            padded = b"".join(item.ljust(4, b"\0") for item in fields)
            words = np.frombuffer(padded, dtype=np.uint32)
        object.__setattr__(self, "_country_words", words)
        object.__setattr__(
            self, "_country_full", np.array([len(item) == 4 for item in fields], dtype=bool)
        )
        subs = np.empty(len(subdivisions), dtype=object)
        subs[:] = [_field(_TAG_SUBDIVISIONS, text.encode()) for text in subdivisions]
        object.__setattr__(self, "_subdivision_fields", subs)
        object.__setattr__(
            self,
            "_field_by_country",
            {text: item for text, item in zip(texts[1:], fields[1:], strict=True) if text},
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

    # -----------------------------------------------------------------------------------
    # requests

    def check_batch(self, count: int) -> None:
        """Refuse a request of more than ``max_batch`` addresses.

        Raises:
            BadRequestError: with the limit in the message.
        """
        if count > self.max_batch:
            msg = (
                f"batch of {count:,} addresses is over the limit of {self.max_batch:,} "
                "per request: split it into chunks"
            )
            raise BadRequestError(msg)

    def lookup_text(
        self,
        addresses: Sequence[str],
        *,
        subdivisions: bool = False,
        keep_going: Callable[[], bool] | None = None,
    ) -> tuple[list[str], list[int], list[str]]:
        """Answer addresses given as text.

        Returns:
            per address: the country ("" where none), the ``lookupd.v1.Status`` number, and
            (with ``subdivisions``) the subdivision ("" where none; else an empty list).

        Raises:
            BadRequestError: the batch is over the limit.
            CallAbandonedError: ``keep_going`` said stop between chunks.
        """
        self.check_batch(len(addresses))
        items = addresses if isinstance(addresses, (list, tuple)) else list(addresses)
        countries: list[str] = []
        status: list[int] = []
        subs: list[str] = []
        for part in _chunks(len(items), keep_going):
            result = self.db.lookup(items[part])
            labels = result.labels
            countries += self.countries[labels].tolist()
            status += result.status.tolist()
            if subdivisions:
                subs += self.subdivisions[labels].tolist()
        return countries, status, subs

    def lookup_text_encoded(
        self,
        addresses: Sequence[str],
        *,
        subdivisions: bool = False,
        keep_going: Callable[[], bool] | None = None,
    ) -> bytes:
        """Answer addresses given as text, as a serialized ``lookupd.v1.LookupResponse``.

        The same answer as :meth:`lookup_text` (and the data version), encoded from per-label
        tables without a protobuf message: building one cost ~35 ns per address for the
        countries and ~20 for the statuses, more than the lookup itself.

        Raises:
            BadRequestError: the batch is over the limit.
            CallAbandonedError: ``keep_going`` said stop between chunks.
        """
        return self.lookup_text_answer(addresses, subdivisions=subdivisions, keep_going=keep_going)[
            0
        ]

    def lookup_text_answer(
        self,
        addresses: Sequence[str],
        *,
        subdivisions: bool = False,
        keep_going: Callable[[], bool] | None = None,
    ) -> tuple[bytes, npt.NDArray[np.uint8]]:
        """:meth:`lookup_text_encoded`, and the per-item ``lookupd.Status`` (for metrics)."""
        self.check_batch(len(addresses))
        items = addresses if isinstance(addresses, (list, tuple)) else list(addresses)
        if len(items) <= SCALAR_MOST and not subdivisions:
            encoded = self._scalar_encoded(items)
            if encoded is not None:
                return encoded, _ALL_OK[: len(items)]
        labels_parts = []
        status_parts = []
        for part in _chunks(len(items), keep_going):
            result = self.db.lookup(items[part])
            labels_parts.append(result.labels)
            status_parts.append(result.status)
        return self._encode_text_answer(labels_parts, status_parts, subdivisions)

    def lookup_request_answer(
        self,
        message: bytes,
        *,
        keep_going: Callable[[], bool] | None = None,
    ) -> tuple[bytes, npt.NDArray[np.uint8]] | None:
        """Answer a serialized ``LookupRequest`` straight from its bytes, or return None.

        The addresses are parsed in place from the message (:func:`lookupd.core._parse.
        parse_fields`): protobuf would first make a ``str`` of each, which costs more than
        the rest of the answer (300 us for 10,000). None, for the caller to decode the
        message as usual, when it holds anything but addresses (``include_subdivisions``,
        unknown fields), is malformed (protobuf then says what is wrong), or is small
        (the per-address path of :meth:`lookup_text_answer` is faster there).

        Raises:
            BadRequestError: the batch is over the limit.
            CallAbandonedError: ``keep_going`` said stop between chunks.
        """
        count, others = _parse.scan_fields(message, _FIELD_ADDRESSES)
        if count <= SCALAR_MOST or others:
            return None
        self.check_batch(count)
        keys = np.empty((count, 2), dtype=np.uint64)
        status = np.empty(count, dtype=np.uint8)
        _parse.parse_fields(message, _FIELD_ADDRESSES, keys, status)
        labels_parts = []
        status_parts = []
        for part in _chunks(count, keep_going):
            result = self.db.lookup_parsed(keys[part], status[part])
            labels_parts.append(result.labels)
            status_parts.append(result.status)
        return self._encode_text_answer(labels_parts, status_parts, subdivisions=False)

    def _encode_text_answer(
        self,
        labels_parts: Sequence[npt.NDArray[np.uint16]],
        status_parts: Sequence[npt.NDArray[np.uint8]],
        subdivisions: bool,
    ) -> tuple[bytes, npt.NDArray[np.uint8]]:
        """The serialized ``LookupResponse`` of the labels and statuses, and the statuses."""
        if not labels_parts:
            return self.version_bytes, _ALL_OK[:0]
        labels = labels_parts[0] if len(labels_parts) == 1 else np.concatenate(labels_parts)
        status = status_parts[0] if len(status_parts) == 1 else np.concatenate(status_parts)
        parts = []
        words = self._country_words
        if words is None:
            parts.append(b"".join(self._country_fields[labels].tolist()))
        else:
            halves = words[labels].view(np.uint16)
            keep = np.ones(halves.shape[0], dtype=bool)
            keep[1::2] = self._country_full[labels]
            parts.append(halves[keep].tobytes())
        parts.append(_field(_TAG_STATUS, status.tobytes()))
        parts.append(self.version_bytes)
        if subdivisions:
            parts.append(b"".join(self._subdivision_fields[labels].tolist()))
        return b"".join(parts), status

    def _scalar_encoded(self, items: Sequence[str]) -> bytes | None:
        """Encode a small all-OK answer with one ``lookup_one`` per address; None otherwise.

        Any address without a country (invalid, reserved, not found) returns None, and the
        caller answers the batch the ordinary way, which tells those statuses apart.
        """
        lookup_one = self.db.lookup_one
        by_country = self._field_by_country
        fields = []
        for item in items:
            if type(item) is not str:
                return None
            try:
                country = lookup_one(item)
            except (InvalidAddressError, ValueError):
                return None
            encoded = by_country.get(country) if country else None
            if encoded is None:
                return None
            fields.append(encoded)
        fields.append(_field(_TAG_STATUS, _STATUS_OK_BYTE * len(items)))
        fields.append(self.version_bytes)
        return b"".join(fields)

    def lookup_packed(
        self,
        ipv4: bytes,
        ipv6: bytes,
        *,
        keep_going: Callable[[], bool] | None = None,
    ) -> tuple[bytes, bytes, bytes, bytes]:
        """Answer packed addresses (network order; 4 bytes per IPv4, 16 per IPv6).

        Returns:
            IPv4 countries (2 bytes each), IPv6 countries, IPv4 statuses (1 byte each,
            ``lookupd.v1.Status`` numbers), IPv6 statuses.

        Raises:
            BadRequestError: a length is not a multiple of 4 or 16, or the batch is over the
                limit.
            CallAbandonedError: ``keep_going`` said stop between chunks.
        """
        self.check_batch(packed_count(ipv4, ipv6))
        v4_codes, v4_status = self._packed_family(ipv4, 4, keep_going)
        v6_codes, v6_status = self._packed_family(ipv6, 6, keep_going)
        return v4_codes, v6_codes, v4_status, v6_status

    def _packed_family(
        self, data: bytes, version: int, keep_going: Callable[[], bool] | None
    ) -> tuple[bytes, bytes]:
        if not data:
            return b"", b""
        if version == 4:
            return self._packed_v4(data, keep_going)
        codes: list[bytes] = []
        status: list[bytes] = []
        view = memoryview(data)
        for part in _chunks(len(data) // _V6_BYTES, keep_going):
            chunk = view[part.start * _V6_BYTES : part.stop * _V6_BYTES]
            result = self.db.lookup(chunk, version=6)
            codes.append(self.codes[result.labels].tobytes())
            status.append(result.status.tobytes())
        return b"".join(codes), b"".join(status)

    def _packed_v4(self, data: bytes, keep_going: Callable[[], bool] | None) -> tuple[bytes, bytes]:
        """Packed IPv4 answered in one pass of the search core (search, reserved check,
        country code and status bytes): 1.8x faster than composing the steps in numpy
        (``bench/bench_answer.py``)."""
        count = len(data) // _V4_BYTES
        codes = np.empty(count, dtype=np.uint16)
        status = np.empty(count, dtype=np.uint8)
        marked = self.db.mark_reserved
        prefixes = _RESERVED_PREFIXES_V4 if marked else _NO_RESERVED_PREFIXES_V4
        view = memoryview(data)
        for part in _chunks(count, keep_going):
            _search.answer_packed_v4(
                self.db.v4.starts,  # type: ignore[arg-type]
                self.db.v4.jump,
                self.db.v4.labels,
                reserved.TABLE_V4.starts,  # type: ignore[arg-type]
                reserved.TABLE_V4.jump,
                reserved.SEGMENT_FLAGS_V4,
                prefixes,
                self._codes_by_label,
                view[part.start * _V4_BYTES : part.stop * _V4_BYTES],
                codes[part],
                status[part],
            )
        return codes.tobytes(), status.tobytes()

    def check(
        self,
        policy: str,
        addresses: Sequence[str],
        ipv4: bytes = b"",
        ipv6: bytes = b"",
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], list[str]]:
        """Check addresses (text, then packed IPv4, then packed IPv6) against a policy.

        Returns:
            per address, in that order: the ``lookupd.v1.Verdict`` and ``Reason`` numbers
            (``uint8`` arrays) and the country ("" where none).

        Raises:
            UnknownPolicyError: no policy of that name (the message lists the known ones).
            BadRequestError: malformed packed input or a batch over the limit.
        """
        self.check_batch(len(addresses) + packed_count(ipv4, ipv6))
        if self.policies is None or policy not in self.policies.names:
            known = ", ".join(sorted(self.policies.names)) if self.policies is not None else ""
            msg = f"no policy named {policy!r}; known policies: {known or 'none loaded'}"
            raise UnknownPolicyError(msg)
        parts: list[LookupResult] = []
        if addresses:
            items = addresses if isinstance(addresses, (list, tuple)) else list(addresses)
            parts.append(self.db.lookup(items))
        if ipv4:
            parts.append(self.db.lookup(ipv4, version=4))
        if ipv6:
            parts.append(self.db.lookup(ipv6, version=6))
        decided = [self.policies.evaluate(policy, result) for result in parts]
        countries: list[str] = []
        for result in parts:
            countries += self.countries[result.labels].tolist()
        if not decided:
            return _NO_DECISIONS, _NO_DECISIONS, countries
        if len(decided) == 1:
            return decided[0].verdicts, decided[0].reasons, countries
        return (
            np.concatenate([d.verdicts for d in decided]),
            np.concatenate([d.reasons for d in decided]),
            countries,
        )

    # -----------------------------------------------------------------------------------
    # info

    def info(self, *, max_message_bytes: int) -> pb.GetInfoResponse:
        """Describe the data, policies, limits and versions."""
        metadata = self.db.info.metadata
        sources = [_source_message(source) for source in metadata.get("sources", [])]
        rows = metadata.get("rows") or {}
        counts_meta = metadata.get("counts") or {}
        v4_rows = _int(rows.get("ipv4")) or _int((counts_meta.get("ipv4") or {}).get("rows"))
        v6_rows = _int(rows.get("ipv6")) or _int((counts_meta.get("ipv6") or {}).get("rows"))
        policies = []
        policy_version = ""
        if self.policy_set is not None:
            policy_version = self.policy_set.version
            for name in sorted(self.policy_set.policies):
                description = getattr(self.policy_set.policies[name], "description", "") or ""
                policies.append(pb.PolicyInfo(name=name, description=str(description)))
        return pb.GetInfoResponse(
            data_version=self.version_message(),
            data_source=self.db.info.source,
            sources=sources,
            counts=pb.Counts(
                ipv4_segments=len(self.db.v4),
                ipv6_segments=len(self.db.v6),
                labels=len(self.db.label_names) - 1,
                ipv4_rows=v4_rows,
                ipv6_rows=v6_rows,
            ),
            has_subdivisions=self.db.has_subdivisions,
            policies=policies,
            policy_version=policy_version,
            server_version=__version__,
            search_core=_search.CORE,
            max_batch=self.max_batch,
            max_message_bytes=max_message_bytes,
            process_id=os.getpid(),
            loaded_at=self.loaded_at,
        )

    def version_message(self) -> pb.DataVersion:
        """Return the data version as its proto message."""
        return pb.DataVersion(id=self.version.id, built_at=self.version.built_at)


def _chunks(count: int, keep_going: Callable[[], bool] | None) -> Iterator[slice]:
    """Slices of at most ``CHUNK_ADDRESSES`` over ``count`` items; between two, ask
    ``keep_going`` (the call still wanted?), so a caller that gave up stops the work.

    Raises:
        CallAbandonedError: ``keep_going`` said stop.
    """
    for start in range(0, count, CHUNK_ADDRESSES):
        if start and keep_going is not None and not keep_going():
            raise CallAbandonedError("the caller stopped waiting")
        yield slice(start, min(start + CHUNK_ADDRESSES, count))


def packed_count(ipv4: bytes, ipv6: bytes) -> int:
    """Return how many addresses packed fields hold.

    Raises:
        BadRequestError: a length is not a multiple of the family's width.
    """
    if len(ipv4) % _V4_BYTES:
        msg = f"ipv4 holds {len(ipv4)} bytes, not a multiple of {_V4_BYTES}"
        raise BadRequestError(msg)
    if len(ipv6) % _V6_BYTES:
        msg = f"ipv6 holds {len(ipv6)} bytes, not a multiple of {_V6_BYTES}"
        raise BadRequestError(msg)
    return len(ipv4) // _V4_BYTES + len(ipv6) // _V6_BYTES


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
    )
