"""lookupd: high-throughput IP-to-country lookups over sorted range tables."""

from importlib.metadata import PackageNotFoundError, version

from lookupd._constants import Status
from lookupd.database import Database, DataInfo, LookupResult
from lookupd.database import open_database as open
from lookupd.errors import (
    DataFormatError,
    InvalidAddressError,
    InvalidTableError,
    LookupdError,
)
from lookupd.table import RangeTable

try:
    __version__ = version("lookupd")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "DataFormatError",
    "DataInfo",
    "Database",
    "InvalidAddressError",
    "InvalidTableError",
    "LookupResult",
    "LookupdError",
    "RangeTable",
    "Status",
    "__version__",
    "open",
]
