"""TLS for the client: how it checks the server, and its own certificate for mutual TLS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from lookupd.pem import check_with_openssl, read_pem


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
        ca = read_pem(self.ca, "CA certificate") if self.ca else None
        cert = read_pem(self.cert, "certificate") if self.cert else None
        key = read_pem(self.key, "private key") if self.key else None
        if self.cert is not None and self.key is not None:
            check_with_openssl(self.cert, self.key, self.ca)
        elif self.ca is not None:
            check_with_openssl(None, None, self.ca)
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )

    def channel_options(self) -> list[tuple[str, Any]]:
        """Return the channel options TLS needs (the server name override, if any)."""
        if self.server_name is None:
            return []
        return [("grpc.ssl_target_name_override", self.server_name)]
