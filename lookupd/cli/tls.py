"""The client TLS flags that ``lookupd lookup --server`` and ``lookupd reload`` share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from lookupd.errors import LookupdError

if TYPE_CHECKING:
    from lookupd.client.tls import ClientTLS


def add_client_tls_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--tls-ca``, ``--tls-cert``, ``--tls-key`` and ``--tls-server-name``."""
    group = parser.add_argument_group("TLS to the server")
    group.add_argument("--tls-ca", metavar="PATH", help="CA (PEM) to verify the server with")
    group.add_argument("--tls-cert", metavar="PATH", help="client certificate (PEM), for mTLS")
    group.add_argument("--tls-key", metavar="PATH", help="client private key (PEM), for mTLS")
    group.add_argument(
        "--tls-server-name", metavar="NAME", help="name to expect in the server certificate"
    )


def any_client_tls_flag(args: argparse.Namespace) -> bool:
    """Whether any of the client TLS flags is given."""
    return bool(args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name)


def client_tls(args: argparse.Namespace) -> ClientTLS | None:
    """The client TLS settings of the flags; None (plaintext) when no TLS flag is given.

    Raises:
        LookupdError: ``--tls-cert`` without ``--tls-key``, or the other way round.
    """
    # The client (gRPC) is imported only by the commands that talk to a server.
    from lookupd.client.tls import ClientTLS

    if not any_client_tls_flag(args):
        return None
    if bool(args.tls_cert) != bool(args.tls_key):
        msg = "--tls-cert and --tls-key go together"
        raise LookupdError(msg)
    return ClientTLS(
        ca=Path(args.tls_ca) if args.tls_ca else None,
        cert=Path(args.tls_cert) if args.tls_cert else None,
        key=Path(args.tls_key) if args.tls_key else None,
        server_name=args.tls_server_name,
    )
