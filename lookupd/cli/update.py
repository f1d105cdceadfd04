"""``lookupd update``: download the sources, verify them, build and rename a snapshot into place."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from lookupd.datafiles.formats import FORMATS
from lookupd.datafiles.progress import progress_line
from lookupd.update.loop import parse_duration

if TYPE_CHECKING:
    from lookupd.update.run import Result, Settings
    from lookupd.update.secrets import Redactor
    from lookupd.update.sources import Source

_LOGGER = logging.getLogger("lookupd.update")
# Kept in step with lookupd.update.run.DEFAULT_MAX_CHANGE (a test checks): the help text
# must not load the updater (YAML) for every command.
_DEFAULT_MAX_CHANGE = 0.05

EXIT_CODES = {"updated": 0, "unchanged": 3, "refused": 4, "failed": 5, "locked": 6}
"""Exit status of a one-shot ``lookupd update`` per outcome (2: bad flags or config)."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``update`` command to the subparsers ``commands``."""
    update = commands.add_parser(
        "update",
        help="download the sources, verify them, build a snapshot and rename it into place",
        description=(
            "Download each source (from --config, or the one --url), verify it (checksum, "
            "archive safety), build a snapshot as `lookupd build` does and rename it over "
            "--output, for a server to reload. Unchanged sources (ETag / Last-Modified) "
            "download and build nothing. A failed step leaves the snapshot untouched; a "
            "release relabelling more than --max-change of the known address space of "
            "either family is refused unless --force. Exit status: 0 updated, 3 unchanged, "
            "4 refused, 5 failed, 6 another update holds the lock, 2 bad flags or config. "
            "Credentials come from environment variables or files, never flags."
        ),
    )
    update.add_argument("-o", "--output", metavar="FILE", help="the snapshot to keep fresh")
    update.add_argument("--config", metavar="FILE", help="YAML file of sources (README)")
    update.add_argument(
        "--mmdb-output",
        metavar="FILE",
        help="also keep a MaxMind DB export of the snapshot here, for Envoy's geoip filter "
        "(lookupd export mmdb)",
    )
    one = update.add_argument_group("one source without a config file")
    one.add_argument("--url", help="the source's URL")
    one.add_argument("--format", choices=sorted(FORMATS), metavar="NAME", help="its format")
    one.add_argument("--sha256", metavar="HEX", help="its expected SHA-256")
    one.add_argument("--checksum-url", metavar="URL", help="a sha256sum file for it")
    one.add_argument("--username-env", metavar="VAR", help="basic auth user from VAR")
    one.add_argument("--password-env", metavar="VAR", help="basic auth password from VAR")
    one.add_argument("--password-file", metavar="FILE", help="basic auth password from FILE")
    one.add_argument("--bearer-token-env", metavar="VAR", help="bearer token from VAR")
    one.add_argument("--bearer-token-file", metavar="FILE", help="bearer token from FILE")
    update.add_argument(
        "--max-change",
        type=_share,
        metavar="SHARE",
        help=f"refuse a release relabelling more than this share (0.05 or 5%%) of either "
        f"family's known address space (default {_DEFAULT_MAX_CHANGE:.0%})",
    )
    update.add_argument("--force", action="store_true", help="accept any change")
    update.add_argument(
        "--every", type=_duration, metavar="DURATION", help="keep running: 30m, 6h, 1d (±10%%)"
    )
    update.add_argument("--metrics-port", type=int, metavar="PORT", help="with --every")
    update.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST")
    update.add_argument("--timeout", type=float, default=60.0, metavar="S", help="socket timeout")
    update.add_argument("--retries", type=int, default=3, metavar="N", help="retries per download")
    update.add_argument("--backoff", type=float, default=1.0, metavar="S", help="first retry delay")
    update.add_argument("--max-bytes", type=int, default=1 << 30, metavar="N", help="per download")
    update.add_argument("--lock-wait", type=float, default=0.0, metavar="S", help="wait for a lock")
    update.add_argument("--log-format", choices=("kv", "json"), default="kv")
    update.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    update.set_defaults(run=run)


def _share(text: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        msg = f"not a share between 0 and 1 (or 0% and 100%): {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Run one update, or (``--every``) updates until SIGTERM/SIGINT; the exit status."""
    from lookupd.server import logs
    from lookupd.update.run import update_once
    from lookupd.update.secrets import Redactor

    handler = logs.configure(args.log_format, level=logging.DEBUG if args.verbose else logging.INFO)
    # One line per update, at most one update per interval: nothing to rate-limit, and an
    # operator must see every failure, not a count a minute later.
    for limiter in list(handler.filters):
        handler.removeFilter(limiter)
    redactor = Redactor()
    sources, settings = _settings(args, redactor)
    if args.every is None:
        display = progress_line(sys.stderr, quiet=args.quiet)
        try:
            result = update_once(sources, settings, redactor=redactor, report=display)
        finally:
            if display is not None:
                display.close()
        _log(result)
        return EXIT_CODES[result.outcome.value]
    return _run_every(args, sources, settings, redactor)


def _settings(args: argparse.Namespace, redactor: Redactor) -> tuple[list[Source], Settings]:
    from lookupd.update.archives import Limits
    from lookupd.update.config import load_config
    from lookupd.update.errors import ConfigError
    from lookupd.update.http import Policy
    from lookupd.update.run import DEFAULT_MAX_CHANGE, Settings
    from lookupd.update.secrets import has_query_credential
    from lookupd.update.sources import url_source

    options: dict[str, Any] = {}
    if args.config and args.url:
        msg = "give --config or --url, not both"
        raise ConfigError(msg)
    if args.config:
        sources, options = load_config(Path(args.config), redactor)
    elif args.url:
        if has_query_credential(args.url):
            # argv is visible to every user of the machine (ps, /proc/PID/cmdline).
            msg = "--url carries a credential: put the URL in a --config file instead"
            raise ConfigError(msg)
        sources = [
            url_source(
                args.url,
                redactor,
                format=args.format,
                sha256=args.sha256,
                checksum_url=args.checksum_url,
                username_env=args.username_env,
                password_env=args.password_env,
                password_file=args.password_file,
                bearer_token_env=args.bearer_token_env,
                bearer_token_file=args.bearer_token_file,
                where="--url",
            )
        ]
    else:
        msg = "give --config FILE or --url URL"
        raise ConfigError(msg)
    output = args.output or options.get("output")
    if not output:
        msg = "give --output (or 'output' in the config file)"
        raise ConfigError(msg)
    max_change = args.max_change
    if max_change is None:
        max_change = float(options.get("max_change", DEFAULT_MAX_CHANGE))
    if args.retries < 0 or args.timeout <= 0 or args.max_bytes <= 0:
        msg = "--retries must be >= 0, --timeout and --max-bytes > 0"
        raise ConfigError(msg)
    policy = Policy(
        timeout_s=args.timeout,
        attempts=args.retries + 1,
        backoff_s=args.backoff,
        max_bytes=args.max_bytes,
    )
    mmdb_output = args.mmdb_output or options.get("mmdb_output")
    settings = Settings(
        Path(output),
        max_change=max_change,
        force=args.force,
        policy=policy,
        limits=Limits(),
        lock_wait_s=args.lock_wait,
        mmdb_output=Path(mmdb_output) if mmdb_output else None,
    )
    return sources, settings


def _run_every(
    args: argparse.Namespace, sources: list[Source], settings: Settings, redactor: Redactor
) -> int:
    from lookupd.update.errors import ConfigError
    from lookupd.update.loop import run_every
    from lookupd.update.metrics import MetricsEndpoint, UpdateMetrics
    from lookupd.update.run import update_once

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        from lookupd.server.logs import log_event

        log_event(_LOGGER, logging.INFO, "signal", "stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    metrics = UpdateMetrics()
    endpoint = None
    if args.metrics_port is not None:
        try:
            endpoint = MetricsEndpoint(metrics, args.metrics_host, args.metrics_port)
        except OSError as exc:
            msg = f"--metrics-port {args.metrics_port}: cannot listen: {exc}"
            raise ConfigError(msg) from exc
        from lookupd.server.logs import log_event

        log_event(
            _LOGGER,
            logging.INFO,
            "metrics",
            "serving metrics",
            host=args.metrics_host,
            port=endpoint.port,
        )

    def on_result(result: Result) -> None:
        metrics.record(result)
        _log(result)

    try:
        run_every(
            args.every,
            lambda: update_once(sources, settings, redactor=redactor),
            stop,
            on_result=on_result,
        )
    finally:
        if endpoint is not None:
            endpoint.close()
    return 0


def _log(result: Result) -> None:
    """One line per update: its outcome, the sources, versions, sizes and times."""
    from lookupd.server.logs import log_event
    from lookupd.update.run import Outcome

    level = {
        Outcome.UPDATED: logging.INFO,
        Outcome.UNCHANGED: logging.INFO,
        Outcome.REFUSED: logging.WARNING,
        Outcome.FAILED: logging.ERROR,
        Outcome.LOCKED: logging.WARNING,
    }[result.outcome]
    message = {
        Outcome.UPDATED: "snapshot updated",
        Outcome.UNCHANGED: "sources unchanged, snapshot kept",
        Outcome.REFUSED: "release refused, snapshot kept",
        Outcome.FAILED: "update failed, snapshot kept",
        Outcome.LOCKED: "another update is running, nothing done",
    }[result.outcome]
    if result.reason == "export":
        message = "snapshot current, its MaxMind DB export failed"
    fields: dict[str, object] = {
        "outcome": result.outcome.value,
        "sources": [
            {
                "name": s.name,
                "url": s.url,
                "changed": s.changed,
                "bytes": s.size,
                "sha256": s.sha256,
                "last_modified": s.last_modified,
                "seconds": round(s.seconds, 4),
            }
            for s in result.sources
        ],
        "old_version": result.old_version,
        "new_version": result.new_version,
        "bytes": result.size,
        "seconds": round(result.seconds, 4),
    }
    if result.change:
        fields["change"] = {k: round(v, 6) for k, v in result.change.items()}
    if result.reason:
        fields["reason"] = result.reason
    if result.exported is not None:
        fields["exported"] = str(result.exported)
        message = f"{message}; MaxMind DB export written"
    if result.error:
        fields["error"] = result.error
        message = f"{message}: {result.error}"
    log_event(_LOGGER, level, "update", message, **fields)
