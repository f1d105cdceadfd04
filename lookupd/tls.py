"""TLS and mutual TLS for the gRPC server and client: PEM files in, gRPC credentials out.

```python
from pathlib import Path
from lookupd.client import Client
from lookupd.server import LookupServer, ServerConfig
from lookupd.tls import ClientTLS, ServerTLS

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
unavailable only the BEGIN lines are checked. Not checked here: expiry, and whether the
certificate names the server's host or is signed by a CA the peer trusts; those fail each
handshake, as UNAVAILABLE on the client.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import grpc
import grpc.aio

from lookupd.errors import LookupdError
from lookupd.logs import log_event
from lookupd.reload import FileState, file_state

_LOGGER = logging.getLogger(__name__)

_CERTIFICATE = re.compile(rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----")
# PKCS#8 ("PRIVATE KEY") or the older PKCS#1 and SEC1 forms, which gRPC also reads.
_PRIVATE_KEY = re.compile(rb"-----BEGIN (?:RSA |EC )?PRIVATE KEY-----")
_ENCRYPTED_KEY = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED")
_ANY_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")

_Kind = Literal["certificate", "CA certificate", "private key"]

# auth_context() keys of the peer's certificate (set only when the peer presented one).
_COMMON_NAME = "x509_common_name"
_SUBJECT_ALT_NAME = "x509_subject_alternative_name"


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

    def credentials(self) -> grpc.ServerCredentials:
        """Read and check the files; return the credentials for ``add_secure_port``.

        The credentials follow the files: before each new connection's handshake, gRPC asks
        :class:`_Rotation` whether they changed (three ``stat`` calls); a new certificate,
        key or client CA that passes the same checks is used from then on, so a renewed
        certificate needs no restart. One that does not is logged once and the current one
        stays. Connections already open keep the certificate they were made with.
        """
        cert, key, client_ca = self._load()
        rotation = _Rotation(self)
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

    def _load(self) -> tuple[bytes, bytes, bytes | None]:
        cert = _read_pem(self.cert, "certificate")
        key = _read_pem(self.key, "private key")
        client_ca = _read_pem(self.client_ca, "CA certificate") if self.client_ca else None
        _check_with_openssl(self.cert, self.key, self.client_ca)
        return cert, key, client_ca


def _configuration(
    cert: bytes, key: bytes, client_ca: bytes | None
) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=client_ca)


class _Rotation:
    """gRPC's certificate-configuration fetcher for :meth:`ServerTLS.credentials`."""

    def __init__(self, tls: ServerTLS) -> None:
        self._tls = tls
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
            cert, key, client_ca = self._tls._load()
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


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """How a client checks the server (``ca``), and its own certificate for mutual TLS.

    Raises:
        ValueError: only one of ``cert`` and ``key`` is given.
    """

    ca: Path | None = None
    """PEM CA certificate(s) to verify the server against. None: gRPC's default roots, which
    for grpcio are the public CA bundle it ships (or the file named by the environment
    variable ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``), not the operating system's store."""
    cert: Path | None = None
    """PEM client certificate chain, for a server that requires one (mutual TLS)."""
    key: Path | None = None
    """PEM private key of ``cert`` (unencrypted)."""
    server_name: str | None = None
    """The name to check the server's certificate for, instead of the target's host (gRPC's
    ``grpc.ssl_target_name_override``): to dial an address the certificate does not name."""

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            msg = "ClientTLS needs both cert and key (a client certificate), or neither"
            raise ValueError(msg)

    def credentials(self) -> grpc.ChannelCredentials:
        """Read and check the files; return the credentials for ``secure_channel``.

        Raises:
            LookupdError: a file cannot be read, is not PEM of the expected kind, does not
                parse, or the key does not match the certificate.
        """
        ca = _read_pem(self.ca, "CA certificate") if self.ca else None
        cert = _read_pem(self.cert, "certificate") if self.cert else None
        key = _read_pem(self.key, "private key") if self.key else None
        if self.cert is not None and self.key is not None:
            _check_with_openssl(self.cert, self.key, self.ca)
        elif self.ca is not None:
            _check_with_openssl(None, None, self.ca)
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )

    def channel_options(self) -> list[tuple[str, Any]]:
        """Return the channel options TLS needs (the server name override, if any)."""
        if self.server_name is None:
            return []
        return [("grpc.ssl_target_name_override", self.server_name)]


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


def _read_pem(path: Path, kind: _Kind) -> bytes:
    """Read a PEM file and check it holds a block of ``kind`` (by its BEGIN line)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        msg = f"cannot read the TLS {kind} {path}: {exc.strerror or exc}"
        raise LookupdError(msg) from exc
    if kind == "private key":
        if _ENCRYPTED_KEY.search(data):
            msg = f"the TLS private key {path} is encrypted: gRPC needs an unencrypted key"
            raise LookupdError(msg)
        if not _PRIVATE_KEY.search(data):
            holds = "a certificate, not a key" if _CERTIFICATE.search(data) else "no PEM key"
            msg = (
                f"the TLS private key {path} holds {holds} (no '-----BEGIN PRIVATE KEY-----' line)"
            )
            raise LookupdError(msg)
    elif not _CERTIFICATE.search(data):
        holds = (
            "a private key, not a certificate" if _ANY_KEY.search(data) else "no PEM certificate"
        )
        msg = f"the TLS {kind} {path} holds {holds} (no '-----BEGIN CERTIFICATE-----' line)"
        raise LookupdError(msg)
    return data


def _check_with_openssl(cert: Path | None, key: Path | None, ca: Path | None) -> None:
    """Parse the files with the standard library's OpenSSL; check the key fits the cert.

    gRPC would only say "Failed to bind to address" for these (logging the reason), or, on
    a client, fail every connection attempt.
    """
    try:
        import ssl
    except ImportError:  # a Python built without OpenSSL: the marker checks will have to do
        return
    for kind, path in (("CA certificate", ca), ("certificate", cert)):
        if path is None:
            continue
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_verify_locations(cafile=path)
        except OSError as exc:  # ssl.SSLError, or the file went away since it was read
            msg = f"the TLS {kind} {path} cannot be parsed ({_reason(exc)})"
            raise LookupdError(msg) from exc
    if cert is None or key is None:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # Security level 0: judge only whether the files parse and match, not key sizes or
    # digests, which are BoringSSL's (gRPC's) business and differ from OpenSSL's defaults.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except OSError as exc:
        if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
            msg = f"the TLS private key {key} does not match the certificate {cert}"
        else:
            msg = f"the TLS private key {key} cannot be parsed ({_reason(exc)})"
        raise LookupdError(msg) from exc


def _no_password() -> bytes:
    # Never let OpenSSL prompt on the terminal; encrypted keys are refused before this.
    msg = "encrypted private keys are not supported"
    raise LookupdError(msg)


def _reason(exc: OSError) -> str:
    """OpenSSL's message without the ``(_ssl.c:1234)`` suffix."""
    message = exc.strerror or str(exc)
    return "OpenSSL: " + re.sub(r"\s*\(_ssl\.c:\d+\)$", "", message)
