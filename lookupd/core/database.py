"""The lookup API: a database of IPv4 and IPv6 range tables answering batches of addresses."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from lookupd.codes import Status, code_array
from lookupd.core import _parse, _search, reserved
from lookupd.core.constants import IPV4_MAPPED_PREFIX, IPV4_MAX
from lookupd.core.labels import split_label
from lookupd.core.packed import packed_count
from lookupd.core.result import LookupResult
from lookupd.core.table import IPVersion, RangeTable
from lookupd.errors import InvalidAddressError

# ::ffff:0.0.0.0 and ::ffff:255.255.255.255, the IPv4-mapped block ::ffff:0:0/96.
_MAPPED_FIRST = IPV4_MAPPED_PREFIX
_MAPPED_LAST = IPV4_MAPPED_PREFIX | IPV4_MAX

AddressBatch = (
    Sequence[str | bytes]
    | npt.NDArray[np.uint32]
    | npt.NDArray[np.uint64]
    | bytes
    | bytearray
    | memoryview
)


@dataclass(frozen=True, slots=True)
class DataInfo:
    """Where a database's data came from."""

    source: str
    """A file path, or ``embedded:NAME`` for the packaged default data."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Free-form facts about the data: name, version, date, licence, checksums."""


class Database:
    """IPv4 and IPv6 range tables sharing one label table.

    Addresses in special-purpose ranges (private, loopback, link-local, documentation,
    multicast, ...; see :mod:`lookupd.core.reserved`) answer ``Status.RESERVED`` with label 0,
    whatever the data says, unless ``mark_reserved=False`` asks for the data's own answer.

    Thread-safe: lookups only read the tables, and the search loops release the GIL.
    """

    __slots__ = (
        "_answer_tables",
        "_codes",
        "_find_reserved_v4",
        "_find_reserved_v6",
        "_find_v4",
        "_find_v6",
        "_labels_v4",
        "_labels_v6",
        "_reserved_prefixes_v4",
        "_reserved_prefixes_v6",
        "_reserved_v4",
        "_reserved_v6",
        "_subdivisions",
        "info",
        "label_names",
        "mark_reserved",
        "v4",
        "v6",
    )

    def __init__(
        self,
        v4: RangeTable,
        v6: RangeTable,
        label_names: Sequence[str],
        info: DataInfo | None = None,
        *,
        mark_reserved: bool = True,
    ) -> None:
        """Wrap the tables.

        Args:
            mark_reserved: answer ``Status.RESERVED`` (label 0) for special-purpose
                addresses; ``False`` gives the data's label there, as for any address (for
                inspecting data files).
        """
        if v4.version != 4 or v6.version != 6:
            msg = "Database(v4, v6): tables given in the wrong order"
            raise ValueError(msg)
        if label_names[0] != "":
            msg = "label_names[0] must be the unknown label ''"
            raise ValueError(msg)
        self.v4 = v4
        self.v6 = v6
        self.label_names: tuple[str, ...] = tuple(label_names)
        self.info = info or DataInfo(source="<memory>")
        split = [split_label(name) for name in self.label_names[1:]]
        # Per label, its country code and subdivision (None at label 0 and where none), as
        # tuples of interned strs: the search core builds the lists countries() returns
        # from these, each item a new reference to one of the few objects.
        self._codes: tuple[str | None, ...] = (
            None,
            *(sys.intern(country) for country, _ in split),
        )
        self._subdivisions: tuple[str | None, ...] = (
            None,
            *(None if sub is None else sys.intern(sub) for _, sub in split),
        )
        # lookup_one's state, built once as plain Python objects (no copy of any array):
        # its per-call cost was mostly attribute chains, numpy scalars and argument checks.
        # The labels are read through memoryviews, whose items are Python ints (indexing
        # the array would give a numpy scalar, and int() of it is one more call).
        self._find_v4 = bind_search(_search.find_index_v4, v4.starts, v4.jump)
        self._find_v6 = bind_search(_search.find_index_v6, v6.starts, v6.jump)
        self._labels_v4 = v4.labels.data  # ndarray.data: a memoryview of the array
        self._labels_v6 = v6.labels.data
        self.mark_reserved = mark_reserved
        self._find_reserved_v4 = bind_search(
            _search.find_index_v4, reserved.TABLE_V4.starts, reserved.TABLE_V4.jump
        )
        self._find_reserved_v6 = bind_search(
            _search.find_index_v6, reserved.TABLE_V6.starts, reserved.TABLE_V6.jump
        )
        self._reserved_v4 = reserved.TABLE_V4.labels.data
        self._reserved_v6 = reserved.TABLE_V6.labels.data
        # Per /16: 0 no reserved address, 1 all reserved, 2 search. All zeros when not
        # marking, so lookup_one tests nothing else.
        no_prefixes = bytes(1 << 16)
        self._reserved_prefixes_v4 = reserved.PREFIX_FLAGS_V4 if mark_reserved else no_prefixes
        self._reserved_prefixes_v6 = reserved.PREFIX_FLAGS_V6 if mark_reserved else no_prefixes
        self._answer_tables = _answer_tables(v4, v6, mark_reserved=mark_reserved)

    @property
    def answer_tables(self) -> AnswerTables:
        """The arrays the search core's ``answer_many`` and ``answer_packed_v6`` take before
        their batch, in order: the data's tables and the reserved ones (with all-zero /16
        flags when not marking reserved addresses)."""
        return self._answer_tables

    @property
    def has_subdivisions(self) -> bool:
        """Whether any label carries an ISO 3166-2 subdivision (city-level data)."""
        return any(sub is not None for sub in self._subdivisions)

    def __reduce__(self) -> tuple[Callable[..., Database], tuple[Any, ...]]:
        # Pickle what the constructor takes: lookup_one's bound searches and memoryviews
        # cannot be pickled, and are rebuilt from the tables.
        return _rebuild, (self.v4, self.v6, self.label_names, self.info, self.mark_reserved)

    def __repr__(self) -> str:
        return (
            f"<Database {self.info.source}: {len(self.v4)} IPv4 and {len(self.v6)} IPv6 "
            f"segments, {len(self.label_names) - 1} labels>"
        )

    def lookup(
        self, ips: AddressBatch | Iterable[str | bytes], *, version: IPVersion | None = None
    ) -> LookupResult:
        """Look up a batch of addresses.

        Args:
            ips: a sequence of ``str``/``bytes`` addresses (IPv4 or IPv6 text, mixed); a
                ``uint32`` array of IPv4 addresses; a ``uint64`` array of shape (n, 2) of
                IPv6 addresses as (high, low) halves; or a packed buffer in network order
                (4 bytes per IPv4 or 16 per IPv6 address, which ``version`` must say).
            version: for packed buffers only: 4 or 6.

        Returns:
            labels and a per-item status (``OK``, ``NOT_FOUND``, ``INVALID_ADDRESS`` or
            ``RESERVED``); an invalid address is flagged for that item and never fails the
            batch. A reserved address gets label 0 even where the data labels it.

        Raises:
            TypeError: for input of an unsupported type (including a single ``str``).
            ValueError: for a packed buffer without ``version`` or of the wrong length.
        """
        if isinstance(ips, (bytes, bytearray, memoryview)):
            return self._lookup_packed(ips, version)
        if version is not None:
            msg = "version= applies only to packed bytes input"
            raise ValueError(msg)
        if isinstance(ips, np.ndarray):
            return self._lookup_array(ips)
        if isinstance(ips, str):
            msg = "lookup() takes a batch; use lookup_one() for a single address"
            raise TypeError(msg)
        items = ips if isinstance(ips, (list, tuple)) else list(ips)
        keys = np.empty((len(items), 2), dtype=np.uint64)
        status = np.empty(len(items), dtype=np.uint8)
        _parse.parse_many(items, keys, status)
        return self._lookup_keys(keys, status)

    def lookup_lines(self, text: bytes | bytearray | memoryview) -> LookupResult:
        """Look up newline-separated addresses (surrounding whitespace ignored per line).

        A blank line is an invalid item, so result index ``i`` is always line ``i + 1``.
        """
        n = _parse.count_lines(text)
        keys = np.empty((n, 2), dtype=np.uint64)
        status = np.empty(n, dtype=np.uint8)
        _parse.parse_lines(text, keys, status)
        return self._lookup_keys(keys, status)

    def lookup_one(
        self,
        ip: str
        | bytes
        | bytearray
        | int
        | np.integer[Any]
        | ipaddress.IPv4Address
        | ipaddress.IPv6Address,
    ) -> str | None:
        """Return the country code of one address, or ``None`` if there is none.

        ``None`` when no range covers the address, or when it is reserved (private,
        loopback, documentation, ...; see :mod:`lookupd.core.reserved`).
        An ``int`` is an IPv4 address when at most ``2**32 - 1``, otherwise IPv6.

        Raises:
            InvalidAddressError: ``ip`` is not a valid IPv4 or IPv6 address.
        """
        # str first, with a one-type test: it is the common case.
        key = _parse.parse_one(ip) if isinstance(ip, str) else _key_of(ip)
        if key is None:
            msg = f"not an IPv4 or IPv6 address: {ip!r}"
            raise InvalidAddressError(msg)
        # ::ffff:0:0/96 (IPv4-mapped) goes to the IPv4 table. Comparisons allocate no ints.
        # Reserved: only a labelled address needs the check, and its /16 answers it unless
        # the /16 is mixed (a search of the small reserved table then), so most addresses
        # pay one byte read, not a search.
        if _MAPPED_FIRST <= key <= _MAPPED_LAST:
            key -= IPV4_MAPPED_PREFIX
            label = self._labels_v4[self._find_v4(key)]
            if (
                label
                and (flag := self._reserved_prefixes_v4[key >> 16])
                and (flag == 1 or self._reserved_v4[self._find_reserved_v4(key)])
            ):
                return None
        else:
            label = self._labels_v6[self._find_v6(key)]
            if (
                label
                and (flag := self._reserved_prefixes_v6[key >> 112])
                and (flag == 1 or self._reserved_v6[self._find_reserved_v6(key)])
            ):
                return None
        code: str | None = self._codes[label]
        return code

    def locate_one(self, ip: str) -> tuple[int, Status, int]:
        """Return the label, the status and the 128-bit key of one text address (IPv4 as
        ``::ffff:a.b.c.d``), as one item of :meth:`lookup` would have them; never raises
        for the text: an invalid address is ``(0, INVALID_ADDRESS, 0)``.

        For callers that decide one address at a time (a policy check per HTTP request),
        without the arrays of a batch.
        """
        key = _parse.parse_one(ip)
        if key is None:
            return 0, Status.INVALID_ADDRESS, 0
        if _MAPPED_FIRST <= key <= _MAPPED_LAST:
            ipv4 = key - IPV4_MAPPED_PREFIX
            label = self._labels_v4[self._find_v4(ipv4)]
            reserved = (flag := self._reserved_prefixes_v4[ipv4 >> 16]) and (
                flag == 1 or self._reserved_v4[self._find_reserved_v4(ipv4)]
            )
        else:
            label = self._labels_v6[self._find_v6(key)]
            reserved = (flag := self._reserved_prefixes_v6[key >> 112]) and (
                flag == 1 or self._reserved_v6[self._find_reserved_v6(key)]
            )
        if reserved:
            return 0, Status.RESERVED, key
        return label, Status.OK if label else Status.NOT_FOUND, key

    def lookup_parsed(
        self, keys: npt.NDArray[np.uint64], status: npt.NDArray[np.uint8]
    ) -> LookupResult:
        """Look up keys a parser wrote (``lookupd.core._parse``: 128-bit rows, IPv4-mapped for
        IPv4, and a status per row); ``status`` is updated in place and kept by the result.
        """
        return self._lookup_keys(keys, status)

    def _lookup_keys(
        self, keys: npt.NDArray[np.uint64], status: npt.NDArray[np.uint8]
    ) -> LookupResult:
        labels = np.empty(status.shape[0], dtype=np.uint16)
        # Labels, and reserved addresses marked, in the one pass (invalid items keep their
        # status).
        _search.answer_many(*self._answer_tables, keys, status, labels)
        return LookupResult(
            labels,
            code_array(status, Status),
            self.label_names,
            self._codes,
            self._subdivisions,
            _keys=keys,
        )

    def _lookup_array(self, ips: npt.NDArray[Any]) -> LookupResult:
        if ips.dtype.kind == "u" and ips.dtype.itemsize == 4 and ips.ndim == 1:
            # Any byte order; native contiguous arrays pass through without a copy.
            keys = np.ascontiguousarray(ips, dtype=np.uint32)
            labels = np.empty(keys.shape[0], dtype=np.uint16)
            status = np.empty(keys.shape[0], dtype=np.uint8)
            # One pass: search, label, and the reserved check by the /16's flag (a search
            # of the reserved table only for the few /16s partly reserved).
            starts, jump, by_row, _, _, _, r_starts, r_jump, r_flags, r_prefixes, *_ = (
                self._answer_tables
            )
            _search.answer_many_v4(
                starts, jump, by_row, r_starts, r_jump, r_flags, r_prefixes, keys, labels, status
            )
            return LookupResult(
                labels,
                code_array(status, Status),
                self.label_names,
                self._codes,
                self._subdivisions,
                _ipv4=keys,
            )
        if (
            ips.dtype.kind == "u"
            and ips.dtype.itemsize == 8
            and ips.ndim == 2
            and ips.shape[1] == 2
        ):
            pairs = np.ascontiguousarray(ips, dtype=np.uint64)
            return self._lookup_keys(pairs, _all_ok(pairs.shape[0]))
        msg = (
            "lookup() takes a uint32 array (IPv4) or a uint64 array of shape (n, 2) (IPv6), "
            f"not {ips.dtype} of shape {ips.shape}"
        )
        raise TypeError(msg)

    def _lookup_packed(
        self, buffer: bytes | bytearray | memoryview, version: IPVersion | None
    ) -> LookupResult:
        packed_count(memoryview(buffer).nbytes, version)
        if version == 4:
            return self._lookup_array(np.frombuffer(buffer, dtype=">u4").astype(np.uint32))
        keys = np.frombuffer(buffer, dtype=">u8").astype(np.uint64).reshape(-1, 2)
        return self._lookup_keys(keys, _all_ok(keys.shape[0]))


def _rebuild(
    v4: RangeTable,
    v6: RangeTable,
    label_names: Sequence[str],
    info: DataInfo,
    mark_reserved: bool,
) -> Database:
    """Unpickle a Database (``__reduce__``)."""
    return Database(v4, v6, label_names, info, mark_reserved=mark_reserved)


def bind_search(
    find: Callable[..., int], starts: npt.NDArray[Any], jump: npt.NDArray[Any]
) -> Callable[[int], int]:
    """Bind a single-key search to its table, in the form its core reads fastest.

    The compiled core takes any buffer, and borrows a memoryview's far more cheaply than a
    numpy array's (numpy rebuilds the format string on every export), a large part of a
    one-key search's call. The numpy twin takes only the arrays themselves.
    """
    if _search.CORE == "c":
        return partial(find, starts.data, jump.data)
    return partial(find, starts, jump)


def _key_of(ip: object) -> int | None:
    """Return the 128-bit key of a non-text address for lookup_one (None if not one).

    Raises:
        InvalidAddressError: for an ``int`` outside 0..2**128-1 or an object of another type.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        return IPV4_MAPPED_PREFIX | int(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        return int(ip)
    if isinstance(ip, (int, np.integer)) and not isinstance(ip, bool):
        value = int(ip)
        if not 0 <= value < 1 << 128:
            msg = f"address out of range: {value}"
            raise InvalidAddressError(msg)
        return IPV4_MAPPED_PREFIX | value if value <= IPV4_MAX else value
    if isinstance(ip, (bytes, bytearray)):
        return _parse.parse_one(bytes(ip))
    msg = f"not an IP address: {ip!r}"
    raise InvalidAddressError(msg)


def _all_ok(count: int) -> npt.NDArray[np.uint8]:
    """Statuses for ``count`` keys that need no parsing: all OK until the search says."""
    return np.full(count, Status.OK, dtype=np.uint8)


AnswerTables = tuple[
    npt.NDArray[np.uint32],
    npt.NDArray[np.uint32],
    npt.NDArray[np.uint16],
    npt.NDArray[np.uint64],
    npt.NDArray[np.uint32],
    npt.NDArray[np.uint16],
    npt.NDArray[np.uint32],
    npt.NDArray[np.uint32],
    npt.NDArray[np.uint8],
    npt.NDArray[np.uint8],
    npt.NDArray[np.uint64],
    npt.NDArray[np.uint32],
    npt.NDArray[np.uint8],
    npt.NDArray[np.uint8],
]
"""The leading arguments of the search core's answer_* functions (``Database.answer_tables``)."""


def _answer_tables(v4: RangeTable, v6: RangeTable, *, mark_reserved: bool) -> AnswerTables:
    """The arrays of :attr:`Database.answer_tables`, in the search core's order."""
    return (
        v4.starts,  # type: ignore[return-value]
        v4.jump,
        v4.labels,
        v6.starts,
        v6.jump,
        v6.labels,
        reserved.TABLE_V4.starts,
        reserved.TABLE_V4.jump,
        reserved.SEGMENT_FLAGS_V4,
        reserved.PREFIXES_V4 if mark_reserved else reserved.NO_PREFIXES,
        reserved.TABLE_V6.starts,
        reserved.TABLE_V6.jump,
        reserved.SEGMENT_FLAGS_V6,
        reserved.PREFIXES_V6 if mark_reserved else reserved.NO_PREFIXES,
    )
