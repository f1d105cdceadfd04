"""``lookupd serve``: the settings made into a server configuration, run by one or more workers."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from lookupd.cli.settings import SERVE_SETTINGS, SETTINGS_BY_DEST, ServeSettings, read_settings

if TYPE_CHECKING:
    from lookupd.server.app import ServerConfig


class _SettingsHelpFormatter(argparse.HelpFormatter):
    """Adds each setting's default and variable to its help, when help is shown.

    The defaults come from the server modules (gRPC): reading them only here keeps them out
    of every other command.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        setting = SETTINGS_BY_DEST.get(action.dest)
        if setting is None or text is None:
            return text
        return f"{text} (default: {setting.default}) [{setting.variable}]"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` command to the subparsers ``commands``."""
    serve = commands.add_parser(
        "serve",
        help="run the gRPC server",
        description=(
            "Serve lookups and policy checks over gRPC (service lookupd.v1.LookupService, "
            "with grpc.health.v1 health and server reflection). Each option can also be set "
            "by the environment variable named in its help; an option given here wins. "
            "SIGTERM or SIGINT stops the server: health goes NOT_SERVING, new calls are "
            "refused after the drain and calls in flight get the grace period to finish. "
            "SIGHUP reloads the data and policy files (so does a change to them)."
        ),
        formatter_class=_SettingsHelpFormatter,
    )
    for setting in SERVE_SETTINGS:
        if setting.kind == "bool":
            serve.add_argument(setting.flag, action="store_true", default=None, help=setting.help)
        else:
            metavar = setting.variable.removeprefix("LOOKUPD_")
            serve.add_argument(setting.flag, metavar=metavar, help=setting.help)
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until stopped: in this process for one worker, else under a supervisor."""
    # gRPC is imported only by the commands that use it.
    from lookupd.server import app as server
    from lookupd.server import cpus, logs, workers
    from lookupd.server.rundir import RunDir

    settings = read_settings(args)
    level = logging.DEBUG if args.verbose else settings.log_level()
    log_format: logs.LogFormat = settings.value("--log-format")
    logs.configure(log_format, level=level)
    config = _server_config(settings)
    if config.tls is not None:
        config.tls.check()  # bad files fail here, before any process (and no gRPC object)
    config.admin.loaded()  # likewise the token file
    given = settings.given
    metrics_host = settings.value("--metrics-host")
    metrics_port = given["--metrics-port"]
    count = given["--workers"] or cpus.available_cpus()
    # Made before anything starts, so an unusable one stops the start with one line.
    run_dir = RunDir.create(given["--run-dir"])
    try:
        if count == 1:
            server.serve(
                config,
                db_path=given["--db"],
                policies_path=given["--policies"],
                port_file=given["--port-file"],
                metrics_address=None if metrics_port is None else (metrics_host, metrics_port),
                run_dir=run_dir,
            )
            return 0
        supervisor = workers.Supervisor(
            config,
            workers.WorkerSettings(
                workers=count,
                db_path=given["--db"],
                policies_path=given["--policies"],
                port_file=given["--port-file"],
                metrics_host=metrics_host,
                metrics_port=metrics_port,
                log_format=log_format,
                log_level=level,
                run_dir=run_dir,
            ),
        )
        return supervisor.run()
    finally:
        run_dir.remove()


def _server_config(settings: ServeSettings) -> ServerConfig:
    """The server configuration: the settings given, the config's own defaults for the rest."""
    from lookupd.server.admin import AdminConfig, parse_names
    from lookupd.server.app import ServerConfig
    from lookupd.server.authz.address import AddressSource
    from lookupd.server.authz.servicer import AuthzConfig
    from lookupd.server.tls import ServerTLS

    given = settings.given
    cert, key, client_ca = given["--tls-cert"], given["--tls-key"], given["--tls-client-ca"]
    token_file = given["--admin-token-file"]
    return ServerConfig(
        **settings.config_fields(),
        tls=ServerTLS(Path(cert), Path(key), Path(client_ca) if client_ca else None)
        if cert
        else None,
        admin=AdminConfig(
            token_file=Path(token_file) if token_file else None,
            mtls=bool(given["--admin-mtls"]),
            allowed_names=parse_names(given["--admin-allow"]),
        ),
        authz=AuthzConfig(
            policy=given["--authz-policy"] or "",
            ip_source=AddressSource.parse(settings.value("--authz-ip-source")),
            deny_status=int(settings.value("--authz-deny-status")),
        ),
    )
