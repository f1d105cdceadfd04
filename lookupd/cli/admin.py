"""``lookupd reload``: ask a running server to reload its data and policy files."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lookupd.cli.settings import setting_for
from lookupd.cli.tls import add_client_tls_flags, client_tls

# Read when --token-file is not given: the variable the server's --admin-token-file reads.
_TOKEN_FILE_VARIABLE = setting_for("--admin-token-file").variable


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``reload`` command to the subparsers ``commands``."""
    reload = commands.add_parser(
        "reload",
        help="ask a server to reload its data and policy files (an admin RPC)",
        description=(
            "Ask a running lookupd server to reload its data and policy files now. The "
            "server must enable admin RPCs (--admin-token-file or --admin-mtls). With "
            "several worker processes, the one that takes the call reloads before it "
            "answers and tells the others to follow."
        ),
    )
    reload.add_argument("--server", metavar="HOST:PORT", required=True, help="the server")
    reload.add_argument(
        "--token-file",
        metavar="PATH",
        help=f"file holding the admin token [{_TOKEN_FILE_VARIABLE}]",
    )
    add_client_tls_flags(reload)
    reload.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Call the server's Reload RPC and print what it reports."""
    # gRPC is imported only by the commands that use it.
    from lookupd.client import Client
    from lookupd.server.admin import AdminConfig

    token_file = args.token_file or os.environ.get(_TOKEN_FILE_VARIABLE)
    # Read and checked as the server reads it.
    token = AdminConfig(token_file=Path(token_file)).loaded().token if token_file else None
    with Client(args.server, tls=client_tls(args)) as client:
        response = client.reload(token=token)
    changed = [
        name
        for name, flag in (("data", response.data_changed), ("policies", response.policies_changed))
        if flag
    ]
    print(f"data version: {response.data_version.id}")
    print(f"policy version: {response.policy_version or '(none)'}")
    print(f"changed: {', '.join(changed) or 'nothing'}")
    return 0
