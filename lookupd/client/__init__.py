"""Call a lookupd server: typed sync and asyncio clients with one API, chunking and packing.

```python
from lookupd.client import Client

with Client("localhost:50051") as client:
    answers = client.lookup(["1.1.1.1", "2001:4860:4860::8888", "10.0.0.1"])
    answers.countries        # array(['AU', 'US', ''], dtype='<U2')
    answers.status           # StatusArray([OK, OK, RESERVED]): lookupd.Status numbers
    client.check("example", ["1.1.1.1"]).verdicts   # VerdictArray([ALLOW])
    client.info().data_version.id                    # Info, a frozen dataclass
```

:class:`AsyncClient` has the same methods, arguments and results as coroutines. The
modules: :mod:`~lookupd.client.sync` and :mod:`~lookupd.client.aio` (the clients),
:mod:`~lookupd.client.requests` (batches to requests and back, pure),
:mod:`~lookupd.client.results` (what the calls return), :mod:`~lookupd.client.channel`
(channel options, gRPC retries, :class:`ServerError`), :mod:`~lookupd.client.tls`.
"""

from __future__ import annotations

from lookupd.client.aio import AsyncClient
from lookupd.client.channel import (
    DEFAULT_CHANNELS,
    DEFAULT_IN_FLIGHT,
    DEFAULT_KEEPALIVE_S,
    DEFAULT_TIMEOUT_S,
    ServerError,
)
from lookupd.client.requests import DEFAULT_CHUNK_SIZE, Addresses
from lookupd.client.results import (
    Answers,
    Checks,
    Counts,
    DataVersion,
    Info,
    PolicyInfo,
    ReloadResult,
    SourceFile,
)
from lookupd.client.sync import Client
from lookupd.client.tls import ClientTLS

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_IN_FLIGHT",
    "DEFAULT_KEEPALIVE_S",
    "DEFAULT_TIMEOUT_S",
    "Addresses",
    "Answers",
    "AsyncClient",
    "Checks",
    "Client",
    "ClientTLS",
    "Counts",
    "DataVersion",
    "Info",
    "PolicyInfo",
    "ReloadResult",
    "ServerError",
    "SourceFile",
]
