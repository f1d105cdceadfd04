from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_UNSPECIFIED: _ClassVar[Status]
    STATUS_OK: _ClassVar[Status]
    STATUS_INVALID_ADDRESS: _ClassVar[Status]
    STATUS_NOT_FOUND: _ClassVar[Status]
    STATUS_RESERVED: _ClassVar[Status]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_ALLOW: _ClassVar[Verdict]
    VERDICT_DENY: _ClassVar[Verdict]

class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_UNSPECIFIED: _ClassVar[Reason]
    REASON_COUNTRY_ALLOWED: _ClassVar[Reason]
    REASON_COUNTRY_DENIED: _ClassVar[Reason]
    REASON_SUBDIVISION_DENIED: _ClassVar[Reason]
    REASON_NETWORK_ALLOWED: _ClassVar[Reason]
    REASON_NETWORK_DENIED: _ClassVar[Reason]
    REASON_RESERVED: _ClassVar[Reason]
    REASON_UNKNOWN: _ClassVar[Reason]
    REASON_INVALID: _ClassVar[Reason]
    REASON_SUBDIVISION_ALLOWED: _ClassVar[Reason]
STATUS_UNSPECIFIED: Status
STATUS_OK: Status
STATUS_INVALID_ADDRESS: Status
STATUS_NOT_FOUND: Status
STATUS_RESERVED: Status
VERDICT_UNSPECIFIED: Verdict
VERDICT_ALLOW: Verdict
VERDICT_DENY: Verdict
REASON_UNSPECIFIED: Reason
REASON_COUNTRY_ALLOWED: Reason
REASON_COUNTRY_DENIED: Reason
REASON_SUBDIVISION_DENIED: Reason
REASON_NETWORK_ALLOWED: Reason
REASON_NETWORK_DENIED: Reason
REASON_RESERVED: Reason
REASON_UNKNOWN: Reason
REASON_INVALID: Reason
REASON_SUBDIVISION_ALLOWED: Reason

class DataVersion(_message.Message):
    __slots__ = ("id", "built_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    BUILT_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    built_at: str
    def __init__(self, id: _Optional[str] = ..., built_at: _Optional[str] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("addresses", "include_subdivisions")
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SUBDIVISIONS_FIELD_NUMBER: _ClassVar[int]
    addresses: _containers.RepeatedScalarFieldContainer[str]
    include_subdivisions: bool
    def __init__(self, addresses: _Optional[_Iterable[str]] = ..., include_subdivisions: _Optional[bool] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("countries", "status", "data_version", "subdivisions")
    COUNTRIES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DATA_VERSION_FIELD_NUMBER: _ClassVar[int]
    SUBDIVISIONS_FIELD_NUMBER: _ClassVar[int]
    countries: _containers.RepeatedScalarFieldContainer[str]
    status: _containers.RepeatedScalarFieldContainer[Status]
    data_version: DataVersion
    subdivisions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, countries: _Optional[_Iterable[str]] = ..., status: _Optional[_Iterable[_Union[Status, str]]] = ..., data_version: _Optional[_Union[DataVersion, _Mapping]] = ..., subdivisions: _Optional[_Iterable[str]] = ...) -> None: ...

class PackedLookupRequest(_message.Message):
    __slots__ = ("ipv4", "ipv6", "tag")
    IPV4_FIELD_NUMBER: _ClassVar[int]
    IPV6_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    ipv4: bytes
    ipv6: bytes
    tag: int
    def __init__(self, ipv4: _Optional[bytes] = ..., ipv6: _Optional[bytes] = ..., tag: _Optional[int] = ...) -> None: ...

class PackedLookupResponse(_message.Message):
    __slots__ = ("ipv4_countries", "ipv6_countries", "ipv4_status", "ipv6_status", "data_version", "tag")
    IPV4_COUNTRIES_FIELD_NUMBER: _ClassVar[int]
    IPV6_COUNTRIES_FIELD_NUMBER: _ClassVar[int]
    IPV4_STATUS_FIELD_NUMBER: _ClassVar[int]
    IPV6_STATUS_FIELD_NUMBER: _ClassVar[int]
    DATA_VERSION_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    ipv4_countries: bytes
    ipv6_countries: bytes
    ipv4_status: bytes
    ipv6_status: bytes
    data_version: DataVersion
    tag: int
    def __init__(self, ipv4_countries: _Optional[bytes] = ..., ipv6_countries: _Optional[bytes] = ..., ipv4_status: _Optional[bytes] = ..., ipv6_status: _Optional[bytes] = ..., data_version: _Optional[_Union[DataVersion, _Mapping]] = ..., tag: _Optional[int] = ...) -> None: ...

class CheckRegionRequest(_message.Message):
    __slots__ = ("policy", "addresses", "ipv4", "ipv6")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    IPV4_FIELD_NUMBER: _ClassVar[int]
    IPV6_FIELD_NUMBER: _ClassVar[int]
    policy: str
    addresses: _containers.RepeatedScalarFieldContainer[str]
    ipv4: bytes
    ipv6: bytes
    def __init__(self, policy: _Optional[str] = ..., addresses: _Optional[_Iterable[str]] = ..., ipv4: _Optional[bytes] = ..., ipv6: _Optional[bytes] = ...) -> None: ...

class CheckRegionResponse(_message.Message):
    __slots__ = ("verdicts", "reasons", "countries", "data_version", "policy_version")
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    COUNTRIES_FIELD_NUMBER: _ClassVar[int]
    DATA_VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    verdicts: _containers.RepeatedScalarFieldContainer[Verdict]
    reasons: _containers.RepeatedScalarFieldContainer[Reason]
    countries: _containers.RepeatedScalarFieldContainer[str]
    data_version: DataVersion
    policy_version: str
    def __init__(self, verdicts: _Optional[_Iterable[_Union[Verdict, str]]] = ..., reasons: _Optional[_Iterable[_Union[Reason, str]]] = ..., countries: _Optional[_Iterable[str]] = ..., data_version: _Optional[_Union[DataVersion, _Mapping]] = ..., policy_version: _Optional[str] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Source(_message.Message):
    __slots__ = ("name", "format", "size", "sha256", "ipv4_rows", "ipv6_rows", "date", "date_from")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    IPV4_ROWS_FIELD_NUMBER: _ClassVar[int]
    IPV6_ROWS_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    DATE_FROM_FIELD_NUMBER: _ClassVar[int]
    name: str
    format: str
    size: int
    sha256: str
    ipv4_rows: int
    ipv6_rows: int
    date: str
    date_from: str
    def __init__(self, name: _Optional[str] = ..., format: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., ipv4_rows: _Optional[int] = ..., ipv6_rows: _Optional[int] = ..., date: _Optional[str] = ..., date_from: _Optional[str] = ...) -> None: ...

class Counts(_message.Message):
    __slots__ = ("ipv4_segments", "ipv6_segments", "labels", "ipv4_rows", "ipv6_rows")
    IPV4_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    IPV6_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IPV4_ROWS_FIELD_NUMBER: _ClassVar[int]
    IPV6_ROWS_FIELD_NUMBER: _ClassVar[int]
    ipv4_segments: int
    ipv6_segments: int
    labels: int
    ipv4_rows: int
    ipv6_rows: int
    def __init__(self, ipv4_segments: _Optional[int] = ..., ipv6_segments: _Optional[int] = ..., labels: _Optional[int] = ..., ipv4_rows: _Optional[int] = ..., ipv6_rows: _Optional[int] = ...) -> None: ...

class PolicyInfo(_message.Message):
    __slots__ = ("name", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("data_version", "data_source", "sources", "counts", "has_subdivisions", "policies", "policy_version", "server_version", "search_core", "max_batch", "max_message_bytes", "process_id", "loaded_at", "data_date", "data_date_from")
    DATA_VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_SOURCE_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    HAS_SUBDIVISIONS_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    SEARCH_CORE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    DATA_DATE_FIELD_NUMBER: _ClassVar[int]
    DATA_DATE_FROM_FIELD_NUMBER: _ClassVar[int]
    data_version: DataVersion
    data_source: str
    sources: _containers.RepeatedCompositeFieldContainer[Source]
    counts: Counts
    has_subdivisions: bool
    policies: _containers.RepeatedCompositeFieldContainer[PolicyInfo]
    policy_version: str
    server_version: str
    search_core: str
    max_batch: int
    max_message_bytes: int
    process_id: int
    loaded_at: str
    data_date: str
    data_date_from: str
    def __init__(self, data_version: _Optional[_Union[DataVersion, _Mapping]] = ..., data_source: _Optional[str] = ..., sources: _Optional[_Iterable[_Union[Source, _Mapping]]] = ..., counts: _Optional[_Union[Counts, _Mapping]] = ..., has_subdivisions: _Optional[bool] = ..., policies: _Optional[_Iterable[_Union[PolicyInfo, _Mapping]]] = ..., policy_version: _Optional[str] = ..., server_version: _Optional[str] = ..., search_core: _Optional[str] = ..., max_batch: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., process_id: _Optional[int] = ..., loaded_at: _Optional[str] = ..., data_date: _Optional[str] = ..., data_date_from: _Optional[str] = ...) -> None: ...

class ReloadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadResponse(_message.Message):
    __slots__ = ("data_version", "policy_version", "data_changed", "policies_changed")
    DATA_VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_CHANGED_FIELD_NUMBER: _ClassVar[int]
    POLICIES_CHANGED_FIELD_NUMBER: _ClassVar[int]
    data_version: DataVersion
    policy_version: str
    data_changed: bool
    policies_changed: bool
    def __init__(self, data_version: _Optional[_Union[DataVersion, _Mapping]] = ..., policy_version: _Optional[str] = ..., data_changed: _Optional[bool] = ..., policies_changed: _Optional[bool] = ...) -> None: ...
