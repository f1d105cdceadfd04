"""The ``lookupd serve`` settings: each a flag, an environment variable and a default, checked.

Defaults are not written here: a setting names the :class:`ServerConfig` field it sets, or
a function reading its default from the code that uses it, and :attr:`Setting.default`
renders that value for ``--help`` and the README table. The server modules (gRPC) are
imported only when a default or a choice is asked for: by ``lookupd serve`` and its help.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lookupd.errors import LookupdError

SettingKind = Literal["str", "port", "count", "seconds", "bool", "choice"]

# The --log-level words and the logging levels they stand for.
LOG_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_MOST_PORT = 65535


@dataclass(frozen=True, slots=True)
class Setting:
    """One ``lookupd serve`` setting: a flag, an environment variable, a default."""

    flag: str
    """The command-line flag, e.g. ``--port``."""
    variable: str
    """The environment variable read when the flag is not given."""
    kind: SettingKind
    """How its text is read: ``str``; ``port`` (0-65535); ``count`` (>= 1); ``seconds``
    (>= 0); ``bool`` (see :data:`_TRUE`, :data:`_FALSE`); ``choice`` (one of
    :attr:`choices`)."""
    help: str
    """What it does, for ``--help`` (which adds the default and the variable)."""
    config_field: str | None = None
    """The :class:`~lookupd.server.app.ServerConfig` field it sets; its default is then
    that field's."""
    default_from: Callable[[], object] | str | None = None
    """For a setting that sets no config field: a function returning the default from the
    code that uses it, or, for a setting that is off or absent by default, the words for
    that (``off``, ``embedded data``)."""
    choices: Callable[[], tuple[str, ...]] | None = None
    """With kind ``choice``: the function returning the accepted words."""

    @property
    def dest(self) -> str:
        """The attribute of the parsed arguments that holds the flag's value."""
        return self.flag.removeprefix("--").replace("-", "_")

    def default_value(self) -> object:
        """The default value; None for a setting that is off or absent by default."""
        if self.config_field is not None:
            return _server_config_default(self.config_field)
        if callable(self.default_from):
            return self.default_from()
        return None

    @property
    def default(self) -> str:
        """The default as ``--help`` and the README table show it."""
        if isinstance(self.default_from, str):
            return self.default_from
        return _text(self.default_value())


def _text(value: object) -> str:
    """Render a default: ``5.0`` seconds as ``5``, ``8 << 20`` bytes as ``8388608``."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _server_config_default(name: str) -> object:
    """The default of the server configuration's field ``name``."""
    from lookupd.server.app import ServerConfig  # gRPC: for lookupd serve and its help only

    return _field_default(ServerConfig, name)


def _worker_default(name: str) -> object:
    """The default of the worker supervisor's setting ``name``."""
    from lookupd.server.workers import WorkerSettings

    return _field_default(WorkerSettings, name)


def _field_default(cls: type[Any], name: str) -> object:
    (found,) = (item for item in dataclasses.fields(cls) if item.name == name)
    return found.default


def _default_log_level() -> str:
    level = _worker_default("log_level")
    (word,) = (word for word, number in LOG_LEVELS.items() if number == level)
    return word


def _authz_default(name: str) -> object:
    """The default of the Envoy authorizer's setting ``name``, as the setting reads it."""
    from lookupd.server.authz.servicer import AuthzConfig

    value = _field_default(AuthzConfig, name)
    return str(value) if name == "ip_source" else value


def _deny_statuses() -> tuple[str, ...]:
    from lookupd.server.authz.response import DENY_STATUSES

    return tuple(str(status) for status in DENY_STATUSES)


def _log_formats() -> tuple[str, ...]:
    from lookupd.server.logs import LOG_FORMATS

    return LOG_FORMATS


SERVE_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "--host", "LOOKUPD_HOST", "str", "address to listen on ([::]: all)", config_field="host"
    ),
    Setting("--port", "LOOKUPD_PORT", "port", "gRPC port (0: any free port)", config_field="port"),
    Setting(
        "--db",
        "LOOKUPD_DB",
        "str",
        "data file: a snapshot or a source",
        default_from="embedded data",
    ),
    Setting(
        "--policies",
        "LOOKUPD_POLICIES",
        "str",
        "policy file (YAML)",
        default_from="example policies",
    ),
    Setting(
        "--workers",
        "LOOKUPD_WORKERS",
        "count",
        "server processes sharing the port (CPUs of the affinity mask and cgroup quota)",
        default_from="CPUs available",
    ),
    Setting(
        "--threads",
        "LOOKUPD_THREADS",
        "count",
        "threads per process for unary calls",
        config_field="threads",
    ),
    Setting(
        "--max-streams",
        "LOOKUPD_MAX_STREAMS",
        "count",
        "threads per process for StreamLookup streams (one per open stream)",
        config_field="max_streams",
    ),
    Setting(
        "--stream-idle-timeout",
        "LOOKUPD_STREAM_IDLE_TIMEOUT_S",
        "seconds",
        "end a StreamLookup stream that sends no message for this long (0: never)",
        config_field="stream_idle_timeout_s",
    ),
    Setting(
        "--max-concurrent-streams",
        "LOOKUPD_MAX_CONCURRENT_STREAMS",
        "count",
        "most calls in flight on one connection (more wait in the client)",
        config_field="max_concurrent_streams",
    ),
    Setting(
        "--handshake-timeout",
        "LOOKUPD_HANDSHAKE_TIMEOUT_S",
        "seconds",
        "close a new connection that has not finished its TLS and HTTP/2 handshake by then",
        config_field="handshake_timeout_s",
    ),
    Setting(
        "--keepalive",
        "LOOKUPD_KEEPALIVE_S",
        "seconds",
        "ping a connection after this long without activity (0: never)",
        config_field="keepalive_s",
    ),
    Setting(
        "--keepalive-timeout",
        "LOOKUPD_KEEPALIVE_TIMEOUT_S",
        "seconds",
        "close a connection whose ping is not answered within this",
        config_field="keepalive_timeout_s",
    ),
    Setting(
        "--max-connection-idle",
        "LOOKUPD_MAX_CONNECTION_IDLE_S",
        "seconds",
        "close a connection with no call for this long (0: never)",
        config_field="max_connection_idle_s",
    ),
    Setting(
        "--max-connection-age",
        "LOOKUPD_MAX_CONNECTION_AGE_S",
        "seconds",
        "close every connection after about this long, so clients spread over new "
        "replicas (0: never)",
        config_field="max_connection_age_s",
    ),
    Setting(
        "--max-connection-age-grace",
        "LOOKUPD_MAX_CONNECTION_AGE_GRACE_S",
        "seconds",
        "seconds the calls in flight on a connection past its age get to finish",
        config_field="max_connection_age_grace_s",
    ),
    Setting(
        "--max-batch",
        "LOOKUPD_MAX_BATCH",
        "count",
        "most addresses per request",
        config_field="max_batch",
    ),
    Setting(
        "--max-message-bytes",
        "LOOKUPD_MAX_MESSAGE_BYTES",
        "count",
        "largest request message accepted",
        config_field="max_message_bytes",
    ),
    Setting(
        "--drain",
        "LOOKUPD_DRAIN_S",
        "seconds",
        "on stop, seconds to keep serving after health goes NOT_SERVING",
        config_field="drain_s",
    ),
    Setting(
        "--grace",
        "LOOKUPD_GRACE_S",
        "seconds",
        "on stop, seconds calls in flight get",
        config_field="grace_s",
    ),
    Setting(
        "--watch-interval",
        "LOOKUPD_WATCH_INTERVAL_S",
        "seconds",
        "seconds between checks for changed data and policy files (0: off)",
        config_field="watch_interval_s",
    ),
    Setting(
        "--heartbeat-timeout",
        "LOOKUPD_HEARTBEAT_TIMEOUT_S",
        "seconds",
        "with several workers: seconds a worker may send no heartbeat before it is replaced "
        "(0: off)",
        config_field="heartbeat_timeout_s",
    ),
    Setting(
        "--metrics-port",
        "LOOKUPD_METRICS_PORT",
        "port",
        "serve Prometheus metrics on this port (/metrics)",
        default_from="off",
    ),
    Setting(
        "--metrics-host",
        "LOOKUPD_METRICS_HOST",
        "str",
        "address for metrics",
        default_from=lambda: _server_config_default("host"),
    ),
    Setting(
        "--log-format",
        "LOOKUPD_LOG_FORMAT",
        "choice",
        "log line format",
        default_from=lambda: _worker_default("log_format"),
        choices=_log_formats,
    ),
    Setting(
        "--log-level",
        "LOOKUPD_LOG_LEVEL",
        "choice",
        "least severe level logged",
        default_from=_default_log_level,
        choices=lambda: tuple(LOG_LEVELS),
    ),
    Setting(
        "--tls-cert",
        "LOOKUPD_TLS_CERT",
        "str",
        "server certificate (PEM): TLS",
        default_from="off",
    ),
    Setting(
        "--tls-key",
        "LOOKUPD_TLS_KEY",
        "str",
        "server private key (PEM)",
        default_from="off",
    ),
    Setting(
        "--tls-client-ca",
        "LOOKUPD_TLS_CLIENT_CA",
        "str",
        "CA (PEM) that must have signed client certificates: mTLS",
        default_from="off",
    ),
    Setting(
        "--admin-token-file",
        "LOOKUPD_ADMIN_TOKEN_FILE",
        "str",
        "enable admin RPCs for callers sending the token in this file",
        default_from="off",
    ),
    Setting(
        "--admin-mtls",
        "LOOKUPD_ADMIN_MTLS",
        "bool",
        "enable admin RPCs for callers with a verified client certificate",
        default_from="off",
    ),
    Setting(
        "--admin-allow",
        "LOOKUPD_ADMIN_ALLOW",
        "str",
        "with --admin-mtls: certificate names (CN or SAN) allowed, comma-separated",
        default_from="any",
    ),
    Setting(
        "--authz-policy",
        "LOOKUPD_AUTHZ_POLICY",
        "str",
        "Envoy ext_authz: the policy of requests whose route sets no lookupd_policy "
        "context extension",
        default_from="none (denied)",
    ),
    Setting(
        "--authz-ip-source",
        "LOOKUPD_AUTHZ_IP_SOURCE",
        "str",
        "Envoy ext_authz: where the client's address is read: peer, header:NAME or xff:N",
        default_from=lambda: _authz_default("ip_source"),
    ),
    Setting(
        "--authz-deny-status",
        "LOOKUPD_AUTHZ_DENY_STATUS",
        "choice",
        "Envoy ext_authz: the HTTP status of a denied request",
        default_from=lambda: _authz_default("deny_status"),
        choices=_deny_statuses,
    ),
    Setting(
        "--port-file",
        "LOOKUPD_PORT_FILE",
        "str",
        "write the port here once listening (with --port 0)",
        default_from="none",
    ),
    Setting(
        "--run-dir",
        "LOOKUPD_RUN_DIR",
        "str",
        "directory in which the server makes its private run directory (metrics files, "
        "private copies of the data), removed at exit",
        default_from="$TMPDIR, else /tmp",
    ),
)
SETTINGS_BY_DEST: dict[str, Setting] = {setting.dest: setting for setting in SERVE_SETTINGS}
_BY_FLAG: dict[str, Setting] = {setting.flag: setting for setting in SERVE_SETTINGS}


def setting_for(flag: str) -> Setting:
    """The setting of ``flag`` (e.g. ``--port``)."""
    return _BY_FLAG[flag]


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """The settings one ``lookupd serve`` run was given, read and checked."""

    given: Mapping[str, Any]
    """Each flag's value from the command line or the environment; None where neither
    gives one."""

    def value(self, flag: str) -> Any:
        """The value given, else (for an empty or missing one) the setting's default."""
        value = self.given[flag]
        if value is None or value == "":
            return setting_for(flag).default_value()
        return value

    def log_level(self) -> int:
        """The logging level of ``--log-level``."""
        return LOG_LEVELS[self.value("--log-level")]

    def config_fields(self) -> dict[str, Any]:
        """The :class:`ServerConfig` fields the settings give (the rest keep their default)."""
        return {
            setting.config_field: self.given[setting.flag]
            for setting in SERVE_SETTINGS
            if setting.config_field is not None and self.given[setting.flag] not in (None, "")
        }


def read_settings(
    args: argparse.Namespace, environ: Mapping[str, str] = os.environ
) -> ServeSettings:
    """Read every setting from ``args``, else ``environ``; check each and the rules between them.

    Raises:
        LookupdError: a value that does not fit its setting, or settings that do not go
            together; the message names the flag or variable.
    """
    given = {setting.flag: _read(args, environ, setting) for setting in SERVE_SETTINGS}
    _check_together(given)
    return ServeSettings(given)


def _read(args: argparse.Namespace, environ: Mapping[str, str], setting: Setting) -> Any:
    """Return a setting: the flag, else the environment variable, else None (default)."""
    value = getattr(args, setting.dest)
    source = setting.flag
    if value is None or value is False:
        value = environ.get(setting.variable) or None
        source = setting.variable
    if value is None or setting.kind == "str":
        return value
    if setting.kind == "bool":
        return _boolean(value, source)
    if setting.kind == "choice":
        choices = setting.choices() if setting.choices is not None else ()
        if value not in choices:
            msg = f"{source}: expected one of {', '.join(choices)}, not {value!r}"
            raise LookupdError(msg)
        return value
    return _number(value, source, setting.kind)


def _boolean(value: Any, source: str) -> bool | None:
    if value is True or str(value).lower() in _TRUE:
        return True
    if str(value).lower() in _FALSE:
        return None
    msg = f"{source}: expected one of {', '.join(_TRUE + _FALSE[:-1])}, not {value!r}"
    raise LookupdError(msg)


def _number(value: str, source: str, kind: SettingKind) -> int | float:
    try:
        number = float(value) if kind == "seconds" else int(value)
    except ValueError:
        number = -1
    low = 1 if kind == "count" else 0
    # number != number: NaN, which float() accepts.
    if number < low or (kind == "port" and number > _MOST_PORT) or number != number:
        msg = f"{source}: not a valid {'port' if kind == 'port' else 'value'}: {value!r}"
        raise LookupdError(msg)
    return number


def _check_together(given: Mapping[str, Any]) -> None:
    """Refuse TLS and admin settings that only work with others, and an Envoy address
    source that does not read."""
    source = given["--authz-ip-source"]
    if source:
        from lookupd.server.authz.address import AddressSource  # no gRPC: a plain module

        try:
            AddressSource.parse(source)
        except LookupdError as exc:
            msg = f"--authz-ip-source (LOOKUPD_AUTHZ_IP_SOURCE): {exc}"
            raise LookupdError(msg) from exc
    cert, key, client_ca = given["--tls-cert"], given["--tls-key"], given["--tls-client-ca"]
    if bool(cert) != bool(key):
        msg = "--tls-cert and --tls-key go together"
        raise LookupdError(msg)
    if client_ca and not cert:
        msg = "--tls-client-ca (mTLS) needs --tls-cert and --tls-key"
        raise LookupdError(msg)
    if given["--admin-mtls"] and not client_ca:
        msg = "--admin-mtls needs --tls-client-ca: clients can only show certificates with mTLS"
        raise LookupdError(msg)
