"""Structured logs: one line per event, as ``key=value`` pairs or as JSON.

The server logs what an operator acts on (start, stop, reload, worker restarts, errors),
never one line per request. Every line has ``ts``, ``level``, ``logger`` and ``msg``; an
event adds ``event`` and its own fields::

    ts=2026-11-25T15:04:05.123Z level=info logger=lookupd.server.reload event=reload
    msg="reloaded" result=success trigger=watch data_version=5f0c... seconds=0.012

Log with :func:`log_event` so the fields travel as fields, not only inside the message.

Repeated warnings and errors are rate-limited (:class:`RepeatLimiter`): a client sending the
same bad request a thousand times a second writes one line, then one line a minute with the
count. gRPC's own Python loggers (``grpc._server``, ``grpc._common``) write through the same
handler, in the same format.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TextIO

LogFormat = Literal["kv", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("kv", "json")

# Where the fields of an event ride on a LogRecord (logging's ``extra``).
_FIELDS = "lookupd_fields"
_EVENT = "lookupd_event"
# Marks the summary line of held repeats, which the limiter lets through.
_SUMMARY = "lookupd_summary"

REPEAT_WINDOW_S = 60.0
"""How long repeats of a warning or error are held before one line gives their count."""
# Kinds tracked at once: lines of further kinds pass unlimited. Kinds are few (messages are
# fixed texts, values go in fields); the bound keeps memory flat if some message is not.
_MAX_KINDS = 1024
# The loggers written through lookupd's handler: its own, and gRPC's Python code (which
# would otherwise print plain multi-line tracebacks through logging's last resort).
_LOGGERS = ("lookupd", "grpc")


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


@dataclass(slots=True)
class _Kind:
    """The repeats of one kind of line held in the current window."""

    opened: float
    """When the window opened (``time.monotonic``)."""
    held: int = 0
    """Lines held since."""
    last: logging.LogRecord | None = None
    """The last line held: the summary repeats its fields."""


class RepeatLimiter(logging.Filter):
    """Let the first warning or error of each kind through, and hold its repeats for a
    window; at the window's end, write one line with their count (if any), and hold the
    next ones for another window.

    A kind is a line's logger, level, event and message: values belong in fields, so lines
    about the same fault share a kind whatever their peer or detail. The summary is the last
    held line with `` (N more in the last 60 s)`` added to its message and a ``repeated``
    field. Lines below WARNING are never held.
    """

    def __init__(self, handler: logging.Handler, window_s: float = REPEAT_WINDOW_S) -> None:
        super().__init__()
        self._handler = handler
        self._window_s = window_s
        self._kinds: dict[tuple[object, ...], _Kind] = {}
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._pid = os.getpid()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, _SUMMARY, False):
            return True
        if self._pid != os.getpid():
            self._forked()
        key = (record.name, record.levelno, getattr(record, _EVENT, None), record.getMessage())
        with self._lock:
            kind = self._kinds.get(key)
            if kind is not None:
                kind.held += 1
                kind.last = record
                return False
            if len(self._kinds) < _MAX_KINDS:
                self._kinds[key] = _Kind(time.monotonic())
                if self._timer is None:
                    self._schedule(self._window_s)
        return True

    def _forked(self) -> None:
        """In a forked child: forget the parent's windows (its timer did not come along,
        and its lock may have been held at the fork)."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._kinds = {}
        self._timer = None

    def _schedule(self, delay_s: float) -> None:
        """Close the due windows after ``delay_s`` (one timer at a time; lock held)."""
        self._timer = threading.Timer(delay_s, self._close_windows)
        self._timer.daemon = True
        self._timer.start()

    def _close_windows(self) -> None:
        """Summarize each window that has ended: write its count, or forget the kind."""
        summaries = []
        with self._lock:
            now = time.monotonic()
            for key, kind in list(self._kinds.items()):
                if now - kind.opened < self._window_s:
                    continue
                if kind.last is None:
                    del self._kinds[key]
                    continue
                summaries.append(self._summary(kind.last, kind.held))
                self._kinds[key] = _Kind(now)
            self._timer = None
            if self._kinds:
                next_end = min(kind.opened for kind in self._kinds.values()) + self._window_s
                self._schedule(max(next_end - now, 0.0))
        for summary in summaries:
            self._handler.handle(summary)

    def _summary(self, last: logging.LogRecord, held: int) -> logging.LogRecord:
        summary = logging.makeLogRecord(dict(last.__dict__))
        summary.msg = "%s"
        summary.args = (f"{last.getMessage()} ({held} more in the last {self._window_s:g} s)",)
        summary.exc_info = None
        summary.exc_text = None
        summary.created = time.time()
        fields = dict(getattr(last, _FIELDS, None) or {})
        fields["repeated"] = held
        setattr(summary, _FIELDS, fields)
        setattr(summary, _SUMMARY, True)
        return summary


def configure(
    log_format: LogFormat = "kv",
    *,
    level: int = logging.INFO,
    stream: TextIO | None = None,
    context: Mapping[str, object] | None = None,
    repeat_window_s: float = REPEAT_WINDOW_S,
) -> logging.Handler:
    """Send the ``lookupd`` and ``grpc`` loggers' lines to ``stream`` (stderr) in
    ``log_format``, repeated warnings and errors held for ``repeat_window_s``
    (:class:`RepeatLimiter`).

    Replaces a handler an earlier call installed, so a forked worker can add its own
    ``context`` (e.g. ``worker=2``). Returns the handler.

    Raises:
        ValueError: an unknown format.
    """
    formatters: dict[str, type[_Formatter]] = {"kv": KeyValueFormatter, "json": JsonFormatter}
    if log_format not in formatters:
        msg = f"unknown log format {log_format!r}: choose one of {', '.join(LOG_FORMATS)}"
        raise ValueError(msg)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatters[log_format](context or {}))
    handler.addFilter(RepeatLimiter(handler, repeat_window_s))
    handler.lookupd_handler = True  # type: ignore[attr-defined]  # marks ours for replacing
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "lookupd_handler", False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        # gRPC's lines below WARNING are its internals, not the operator's business.
        logger.setLevel(level if name == "lookupd" else max(level, logging.WARNING))
        # Ours is the only output: the root logger's handlers (if any) would print twice.
        logger.propagate = False
    return handler


def field_value(record: logging.LogRecord, name: str) -> Any:
    """Return an event field of ``record`` (for tests and log consumers in Python)."""
    return (getattr(record, _FIELDS, None) or {}).get(name)
