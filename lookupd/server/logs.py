"""Structured logs: one line per event, as ``key=value`` pairs or as JSON.

The server logs what an operator acts on (start, stop, reload, worker restarts, errors),
never one line per request. Every line has ``ts``, ``level``, ``logger`` and ``msg``; an
event adds ``event`` and its own fields::

    ts=2026-11-25T15:04:05.123Z level=info logger=lookupd.server.reload event=reload
    msg="reloaded" result=success trigger=watch data_version=5f0c... seconds=0.012

Log with :func:`log_event` so the fields travel as fields, not only inside the message.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

LogFormat = Literal["kv", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("kv", "json")

# Where the fields of an event ride on a LogRecord (logging's ``extra``).
_FIELDS = "lookupd_fields"
_EVENT = "lookupd_event"


def log_event(
    logger: logging.Logger,
    level: int,
    event: str,
    message: str,
    /,
    **fields: object,
) -> None:
    """Log one event: ``message`` for people, ``event`` and ``fields`` for machines.

    Field names must not be those every line has (``ts``, ``level``, ``logger``, ``msg``,
    ``event``, and a worker's ``worker`` and ``pid``): they would replace them.
    """
    if logger.isEnabledFor(level):
        logger.log(level, "%s", message, extra={_EVENT: event, _FIELDS: fields})


class _Formatter(logging.Formatter):
    """The fields every line has, then the event's, then the exception if any."""

    def __init__(self, context: Mapping[str, object]) -> None:
        super().__init__()
        self._context = dict(context)

    def fields(self, record: logging.LogRecord) -> dict[str, object]:
        stamp = datetime.datetime.fromtimestamp(record.created, tz=datetime.timezone.utc)
        out: dict[str, object] = {
            "ts": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        out.update(self._context)
        event = getattr(record, _EVENT, None)
        if event is not None:
            out["event"] = event
        out["msg"] = record.getMessage()
        out.update(getattr(record, _FIELDS, None) or {})
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return out


class KeyValueFormatter(_Formatter):
    """``key=value`` pairs (logfmt); values with spaces, quotes or ``=`` are quoted."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_kv_value(value)}" for key, value in self.fields(record).items())


class JsonFormatter(_Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            # NaN and infinities are not JSON: write them as text.
            key: str(value) if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in self.fields(record).items()
        }
        return json.dumps(fields, default=str, separators=(",", ":"))


def _kv_value(value: object) -> str:
    """A value as logfmt writes it: bare when it is safe to, else a JSON string."""
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, (bool, int, float, list, tuple, dict)):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    # Quoted: empty text, and any character that would end or split the value or the line.
    if text and not any(c in '="\\' or c.isspace() or not c.isprintable() for c in text):
        return text
    return json.dumps(text)


def configure(
    log_format: LogFormat = "kv",
    *,
    level: int = logging.INFO,
    stream: TextIO | None = None,
    context: Mapping[str, object] | None = None,
) -> logging.Handler:
    """Send the ``lookupd`` loggers' lines to ``stream`` (stderr) in ``log_format``.

    Replaces a handler an earlier call installed, so a forked worker can add its own
    ``context`` (e.g. ``worker=2``). Returns the handler.

    Raises:
        ValueError: an unknown format.
    """
    formatters: dict[str, type[_Formatter]] = {"kv": KeyValueFormatter, "json": JsonFormatter}
    if log_format not in formatters:
        msg = f"unknown log format {log_format!r}: choose one of {', '.join(LOG_FORMATS)}"
        raise ValueError(msg)
    logger = logging.getLogger("lookupd")
    for old in [h for h in logger.handlers if getattr(h, "lookupd_handler", False)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatters[log_format](context or {}))
    handler.lookupd_handler = True  # type: ignore[attr-defined]  # marks ours for replacing
    logger.addHandler(handler)
    logger.setLevel(level)
    # Ours is the only output: the root logger's handlers (if any) would print twice.
    logger.propagate = False
    return handler


def field_value(record: logging.LogRecord, name: str) -> Any:
    """Return an event field of ``record`` (for tests and log consumers in Python)."""
    return (getattr(record, _FIELDS, None) or {}).get(name)
