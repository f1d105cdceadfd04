"""lookupd: high-throughput IP-to-country lookups over sorted range tables.

The public names load on first use, so ``import lookupd.client`` pays for neither the
lookup engine nor the data files, and ``import lookupd`` for no gRPC.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lookupd.errors import (
    DataFormatError,
    InvalidAddressError,
    InvalidTableError,
    LookupdError,
)
from lookupd.version import __version__

if TYPE_CHECKING:
    from lookupd.codes import Reason, Status, Verdict
    from lookupd.core.database import Database, DataInfo
    from lookupd.core.result import LookupResult
    from lookupd.core.table import RangeTable
    from lookupd.datafiles.open import open_database as open

# Public name -> (module, attribute), imported by __getattr__ on first use.
_LAZY = {
    "Database": ("lookupd.core.database", "Database"),
    "DataInfo": ("lookupd.core.database", "DataInfo"),
    "LookupResult": ("lookupd.core.result", "LookupResult"),
    "RangeTable": ("lookupd.core.table", "RangeTable"),
    "Reason": ("lookupd.codes", "Reason"),
    "Status": ("lookupd.codes", "Status"),
    "Verdict": ("lookupd.codes", "Verdict"),
    "open": ("lookupd.datafiles.open", "open_database"),
}

__all__ = [
    "DataFormatError",
    "DataInfo",
    "Database",
    "InvalidAddressError",
    "InvalidTableError",
    "LookupResult",
    "LookupdError",
    "RangeTable",
    "Reason",
    "Status",
    "Verdict",
    "__version__",
    "open",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        msg = f"module 'lookupd' has no attribute {name!r}"
        raise AttributeError(msg) from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
