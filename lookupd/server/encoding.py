"""Hand-encode ``lookupd.v1.LookupResponse`` from per-label fields serialized once per database.

Building the response as a protobuf message cost more per address than the lookup itself
(bench/README.md, "Figures behind design choices in the code"). Its fields are few and
simple, so each label's elements are serialized once, when a database is loaded, and an
answer is a gather of them plus the status bytes as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lookupd.codes import Status
from lookupd.v1 import lookup_pb2 as pb

# lookupd.v1.LookupResponse field tags (field number << 3 | wire type 2, length-delimited).
TAG_COUNTRIES = 1 << 3 | 2
TAG_STATUS = 2 << 3 | 2  # packed repeated enum
TAG_DATA_VERSION = 3 << 3 | 2
TAG_SUBDIVISIONS = 4 << 3 | 2

# The packed status field's payload is the status array's bytes as they are: Status numbers
# are the lookupd.v1.Status numbers, each below 128 (a one-byte varint).
if max(Status) >= 0x80:  # pragma: no cover
    raise AssertionError("a lookupd.v1.Status number needs a two-byte varint")
_STATUS_OK_BYTE = bytes([Status.OK])


def varint(value: int) -> bytes:
    """Return ``value`` (>= 0) as a protobuf varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(tag: int, payload: bytes) -> bytes:
    """Return a length-delimited protobuf field (``tag`` below 128) holding ``payload``."""
    return bytes([tag]) + varint(len(payload)) + payload


def _object_array(items: Sequence[bytes]) -> npt.NDArray[np.object_]:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


@dataclass(frozen=True, slots=True)
class TextFields:
    """Per label, its serialized ``LookupResponse`` elements; and the answers built from them.

    Use :meth:`build`.
    """

    version_bytes: bytes
    """The ``data_version`` field, serialized."""
    country_fields: npt.NDArray[np.object_]
    """Per label: its ``countries`` element, serialized (tag, length, text)."""
    country_words: npt.NDArray[np.uint32] | None
    """Where every element is 2 or 4 bytes (two-letter countries, and "" for label 0): per
    label, the element as 4 bytes (zero padded), so a ``uint32`` gather and one mask
    serialize the countries in numpy, where a ``bytes.join`` of the per-label fields or
    protobuf's own repeated-string field handle a Python object per address; else None."""
    country_full: npt.NDArray[np.bool_]
    """Per label: whether its element is 4 bytes (else 2)."""
    subdivision_fields: npt.NDArray[np.object_]
    """Per label: its ``subdivisions`` element, serialized."""
    by_country: dict[str, bytes]
    """Country text -> its serialized ``countries`` element, for labelled countries."""

    @classmethod
    def build(
        cls, countries: Sequence[str], subdivisions: Sequence[str], version: pb.DataVersion
    ) -> TextFields:
        """Serialize the elements of each label's country and subdivision ("" for none)."""
        fields = [field(TAG_COUNTRIES, text.encode()) for text in countries]
        words: npt.NDArray[np.uint32] | None = None
        if all(len(item) in (2, 4) for item in fields):
            padded = b"".join(item.ljust(4, b"\0") for item in fields)
            words = np.frombuffer(padded, dtype=np.uint32)
        return cls(
            version_bytes=field(TAG_DATA_VERSION, version.SerializeToString()),
            country_fields=_object_array(fields),
            country_words=words,
            country_full=np.array([len(item) == 4 for item in fields], dtype=bool),
            subdivision_fields=_object_array(
                [field(TAG_SUBDIVISIONS, text.encode()) for text in subdivisions]
            ),
            by_country={
                text: item for text, item in zip(countries[1:], fields[1:], strict=True) if text
            },
        )

    def encode(
        self, labels: npt.NDArray[np.uint16], status: npt.NDArray[np.uint8], *, subdivisions: bool
    ) -> bytes:
        """Return the serialized ``LookupResponse`` of these labels and statuses."""
        parts = []
        words = self.country_words
        if words is None:
            parts.append(b"".join(self.country_fields[labels].tolist()))
        else:
            halves = words[labels].view(np.uint16)
            keep = np.ones(halves.shape[0], dtype=bool)
            keep[1::2] = self.country_full[labels]
            parts.append(halves[keep].tobytes())
        parts.append(field(TAG_STATUS, status.tobytes()))
        parts.append(self.version_bytes)
        if subdivisions:
            parts.append(b"".join(self.subdivision_fields[labels].tolist()))
        return b"".join(parts)

    def encode_all_ok(self, country_fields: list[bytes]) -> bytes:
        """Return the serialized ``LookupResponse`` of addresses all found, from their
        ``countries`` elements (taken from :attr:`by_country`); ``country_fields`` is
        consumed."""
        count = len(country_fields)
        country_fields.append(field(TAG_STATUS, _STATUS_OK_BYTE * count))
        country_fields.append(self.version_bytes)
        return b"".join(country_fields)
