"""TLS and mutual TLS for the gRPC server and client: PEM files in, gRPC credentials out.

```python
from pathlib import Path
from lookupd.client import Client
from lookupd.server.app import LookupServer, ServerConfig
from lookupd.client.tls import ClientTLS
from lookupd.server.tls import ServerTLS

tls = ServerTLS(Path("server.pem"), Path("server.key"), client_ca=Path("clients-ca.pem"))
LookupServer(ServerConfig(tls=tls)).start()

client_tls = ClientTLS(ca=Path("ca.pem"), cert=Path("client.pem"), key=Path("client.key"))
Client("lookupd.internal:50051", tls=client_tls)
```

The files are checked before gRPC sees them, so a wrong path, a swapped certificate and
key, or a key of another certificate fails at startup with a :class:`LookupdError` naming
the file. gRPC alone reports an unusable key or certificate on a server only as
``RuntimeError: Failed to bind to address`` from ``add_secure_port`` (the reason goes to its
log), and on a client as every call failing with UNAVAILABLE ("Failed to create security
handshaker"). The checks use only the standard library's ``ssl`` module (OpenSSL, no extra
dependency): the PEM BEGIN lines, then that the certificates parse and that the key belongs
to the certificate. gRPC's own TLS (BoringSSL) reads the same files again; where ``ssl`` is
unavailable only the BEGIN lines are checked. A certificate already past its notAfter is
refused too, at start and on rotation, and each file's expiry is a metric
(``lookupd_tls_certificate_expiry_timestamp_seconds``). The files are opened only if they
are regular files, never blocking (a FIFO in their place is refused). Not checked here:
whether the certificate names the server's host or is signed by a CA the peer trusts;
those fail each handshake, as UNAVAILABLE on the client.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from lookupd.errors import LookupdError
from lookupd.files import read_regular
from lookupd.pem import PemKind, check_not_expired, check_with_openssl, read_pem
from lookupd.server.logs import log_event
from lookupd.server.reload import FileState, file_state

if TYPE_CHECKING:
    from lookupd.server.metrics import Metrics

_LOGGER = logging.getLogger(__name__)

# auth_context() keys of the peer's certificate (set only when the peer presented one).
_COMMON_NAME = "x509_common_name"
_SUBJECT_ALT_NAME = "x509_subject_alternative_name"
# Far more than any certificate chain or CA bundle: a larger file is not one.
_MOST_PEM_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """The server's certificate and key, and optionally the CA its clients must present.

    Raises (from :meth:`credentials`, so when the server starts):
        LookupdError: a file cannot be read, is not PEM of the expected kind, does not parse,
            or the key does not match the certificate.
    """

    cert: Path
    """PEM certificate chain: the server's certificate first, then any intermediates."""
    key: Path
    """PEM private key of the certificate (unencrypted: gRPC takes no passphrase)."""
    client_ca: Path | None = None
    """PEM CA certificate(s): when set, every client must present a certificate signed by
    one of them (mutual TLS); connections without one fail the handshake."""

    def check(self) -> None:
        """Read and check the files, creating no gRPC object: safe in a process that will
        fork (gRPC does not survive a fork), such as a supervisor of worker processes."""
        self._load()

    def credentials(self, metrics: Metrics | None = None) -> grpc.ServerCredentials:
        """Read and check the files; return the credentials for ``add_secure_port``.

        The credentials follow the files: before each new connection's handshake, gRPC asks
        :class:`_Rotation` whether they changed (three ``stat`` calls); a new certificate,
        key or client CA that passes the same checks is used from then on, so a renewed
        certificate needs no restart. One that does not is logged once and the current one
        stays. Connections already open keep the certificate they were made with. The
        certificates' expiry times go to ``metrics`` at start and on each rotation.
        """
        cert, key, client_ca = self._load(metrics)
        rotation = _Rotation(self, metrics)
        # require_client_authentication=False makes gRPC not request a client certificate
        # at all (rather than request and not verify one), which peer_identities relies on.
        return grpc.dynamic_ssl_server_credentials(
            _configuration(cert, key, client_ca),
            # None from the fetcher means "no change" (grpc's docs); the stub omits it.
            rotation.fetch,  # type: ignore[arg-type]
            require_client_authentication=client_ca is not None,
        )

    def states(self) -> tuple[FileState | None, ...]:
        """The files' states (inode, size, mtime), to tell when one was replaced."""
        return tuple(file_state(path) for path in (self.cert, self.key, self.client_ca))

    def _load(self, metrics: Metrics | None = None) -> tuple[bytes, bytes, bytes | None]:
        cert = _read(self.cert, "certificate")
        key = _read(self.key, "private key")
        client_ca = _read(self.client_ca, "CA certificate") if self.client_ca else None
        # OpenSSL opens the files again by name: each was just found to be a regular file.
        check_with_openssl(self.cert, self.key, self.client_ca)
        expiries = {"server": check_not_expired(self.cert, "certificate", cert)}
        if self.client_ca is not None and client_ca is not None:
            expiries["client_ca"] = check_not_expired(self.client_ca, "CA certificate", client_ca)
        if metrics is not None:
            for name, expires in expiries.items():
                metrics.set_certificate_expiry(name, expires)
        return cert, key, client_ca


def _read(path: Path, kind: PemKind) -> bytes:
    """Read a PEM file if it is a regular file (never blocking) and check its kind."""
    try:
        data = read_regular(path, limit=_MOST_PEM_BYTES)
    except (OSError, LookupdError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        msg = f"cannot read the TLS {kind} {path}: {reason}"
        raise LookupdError(msg) from exc
    return read_pem(path, kind, data=data)


def _configuration(
    cert: bytes, key: bytes, client_ca: bytes | None
) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=client_ca)


class _Rotation:
    """gRPC's certificate-configuration fetcher for :meth:`ServerTLS.credentials`."""

    def __init__(self, tls: ServerTLS, metrics: Metrics | None) -> None:
        self._tls = tls
        self._metrics = metrics
        self._lock = threading.Lock()
        self._states = tls.states()

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration if the files changed and are usable; None to keep the
        current one. Called by gRPC before every TLS handshake; never raises."""
        try:
            states = self._tls.states()
            with self._lock:
                if states == self._states:
                    return None
                self._states = states  # each new state is tried once
            cert, key, client_ca = self._tls._load(self._metrics)
            configuration = _configuration(cert, key, client_ca)
        except Exception as exc:  # a bad file must not fail handshakes: keep the current
            log_event(
                _LOGGER,
                logging.ERROR,
                "tls_reload",
                f"TLS files changed but cannot be used, keeping the current ones: {exc}",
                result="failure",
                error=str(exc),
            )
            return None
        log_event(
            _LOGGER,
            logging.INFO,
            "tls_reload",
            f"new TLS certificate from {self._tls.cert}",
            result="success",
            cert=str(self._tls.cert),
        )
        return configuration


def peer_identities(
    context: grpc.ServicerContext | grpc.aio.ServicerContext[Any, Any],
) -> list[str]:
    """Return the names in the calling client's certificate: its common name, then its
    subject alternative names (DNS names, IP addresses, URIs, e-mail addresses), each once.

    Empty when the client presented no certificate: a plaintext server, or a TLS server
    without ``client_ca``. The names are verified only because :class:`ServerTLS` never
    accepts a certificate it has not verified: with ``client_ca`` it requires one signed by
    that CA, without it gRPC does not ask for one. (A server built with other gRPC
    credentials that request but do not verify client certificates would report
    unverified names here.) Names that are not UTF-8 are left out: they cannot match an
    allow-list.
    """
    # types-grpcio says Mapping[str, bytes] for the sync context; it is a list per key.
    properties: Any = context.auth_context()
    names: dict[str, None] = {}
    for key in (_COMMON_NAME, _SUBJECT_ALT_NAME):
        for value in _values(properties.get(key)):
            try:
                names[value.decode()] = None
            except UnicodeDecodeError:
                continue
    return list(names)


def _values(value: Any) -> Iterable[bytes]:
    if value is None:
        return ()
    if isinstance(value, bytes):
        return (value,)
    return [item for item in value if isinstance(item, bytes)]
