"""Structured logs: the key=value and JSON formatters, log_event, configure()."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from lookupd.server.logs import (
    LOG_FORMATS,
    REPEAT_WINDOW_S,
    JsonFormatter,
    KeyValueFormatter,
    configure,
    field_value,
    log_event,
)

_LOGGER_NAME = "lookupd.tests.logs"
# 2023-11-14T22:13:20.500Z
_CREATED = 1_700_000_000.5
_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
# One logfmt pair: a bare value (no space, quote or =) or a JSON string.
_PAIR = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|[^\s="]*)(?:\s|$)')


@pytest.fixture(autouse=True)
def _restore_lookupd_logger() -> Iterator[None]:
    """configure() changes the shared ``lookupd`` and ``grpc`` loggers: put them back after
    each test."""
    loggers = [logging.getLogger(name) for name in ("lookupd", "grpc")]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    test_logger = logging.getLogger(_LOGGER_NAME)
    test_saved = (test_logger.handlers[:], test_logger.level)
    try:
        yield
    finally:
        for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        test_logger.handlers[:] = test_saved[0]
        test_logger.setLevel(test_saved[1])


class _Records(logging.Handler):
    """Keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _event(
    event: str, message: str, level: int = logging.INFO, **fields: object
) -> logging.LogRecord:
    """The record log_event makes, with a fixed creation time."""
    return _event_with(event, message, fields, level)


def _event_with(
    event: str, message: str, fields: Mapping[str, object], level: int = logging.INFO
) -> logging.LogRecord:
    logger = logging.getLogger(_LOGGER_NAME)
    records = _Records()
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    try:
        log_event(logger, level, event, message, **fields)
    finally:
        logger.removeHandler(records)
    (record,) = records.records
    record.created = _CREATED
    return record


def _parse_kv(line: str) -> dict[str, str]:
    """Parse one logfmt line, decoding quoted values; fail on anything left over."""
    assert "\n" not in line
    out: dict[str, str] = {}
    position = 0
    while position < len(line):
        match = _PAIR.match(line, position)
        assert match is not None, f"not key=value at {line[position:]!r}"
        key, value = match.groups()
        assert key not in out, f"{key} twice"
        out[key] = json.loads(value) if value.startswith('"') else value
        position = match.end()
    return out


def _kv(record: logging.LogRecord, context: dict[str, object] | None = None) -> str:
    return KeyValueFormatter(context or {}).format(record)


def _json(record: logging.LogRecord, context: dict[str, object] | None = None) -> dict[str, object]:
    line = JsonFormatter(context or {}).format(record)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


class _Unprintable:
    """A value that must never be formatted."""

    def __str__(self) -> str:
        raise AssertionError("formatted")

    def __repr__(self) -> str:
        raise AssertionError("formatted")

    def __format__(self, spec: str) -> str:
        raise AssertionError("formatted")


# ---------------------------------------------------------------------------------------
# KeyValueFormatter


def test_kv_line_has_the_fields_in_order() -> None:
    record = _event("reload", "reloaded", result="success", trigger="watch", seconds=0.012)
    assert _kv(record) == (
        "ts=2023-11-14T22:13:20.500Z level=info logger=lookupd.tests.logs event=reload "
        "msg=reloaded result=success trigger=watch seconds=0.012"
    )


def test_kv_timestamp_is_utc_milliseconds_ending_in_z() -> None:
    record = _event("e", "m")
    for created, expected in [
        (_CREATED, "2023-11-14T22:13:20.500Z"),
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_700_000_000.0019, "2023-11-14T22:13:20.001Z"),
    ]:
        record.created = created
        assert _parse_kv(_kv(record))["ts"] == expected
        assert _TS.fullmatch(str(_json(record)["ts"]))
        assert _json(record)["ts"] == expected


@pytest.mark.parametrize(
    ("level", "name"),
    [
        (logging.DEBUG, "debug"),
        (logging.INFO, "info"),
        (logging.WARNING, "warning"),
        (logging.ERROR, "error"),
        (logging.CRITICAL, "critical"),
    ],
)
def test_kv_level_is_lower_case(level: int, name: str) -> None:
    record = _event("e", "m", level)
    assert _parse_kv(_kv(record))["level"] == name
    assert _json(record)["level"] == name


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain", "plain"),
        ("two words", '"two words"'),
        ('say "hi"', r'"say \"hi\""'),
        ("a=b", '"a=b"'),
        ("line one\nline two", r'"line one\nline two"'),
        ("tab\there", r'"tab\there"'),
        ("back\\slash", r'"back\\slash"'),
        ("", '""'),
        ("ünïcode", "ünïcode"),
        ("1.2.3.4:50051", "1.2.3.4:50051"),
    ],
    ids=[
        "plain",
        "space",
        "quotes",
        "equals",
        "newline",
        "tab",
        "backslash",
        "empty",
        "unicode",
        "address",
    ],
)
def test_kv_quotes_string_values_that_need_it(value: str, written: str) -> None:
    line = _kv(_event("e", "m", value=value))
    assert line.endswith(f" value={written}")
    assert "\n" not in line
    assert _parse_kv(line)["value"] == value


@pytest.mark.parametrize(
    "value",
    ["a\rb", "a\x0bb", "a\x0cb", "a\x85b", "a\u2028b"],
    ids=["cr", "vt", "ff", "nel", "line-separator"],
)
def test_kv_quotes_every_whitespace_and_line_break(value: str) -> None:
    line = _kv(_event("e", value, value=value))
    assert len(line.splitlines()) == 1
    parsed = _parse_kv(line)
    assert (parsed["msg"], parsed["value"]) == (value, value)


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (3, "3"),
        (-7, "-7"),
        (0.25, "0.25"),
        ([1, 2], '"[1, 2]"'),
        ({"a": 1}, r'"{\"a\": 1}"'),
    ],
    ids=["true", "false", "none", "int", "negative", "float", "list", "dict"],
)
def test_kv_writes_other_values_as_json(value: object, written: str) -> None:
    line = _kv(_event("e", "m", value=value))
    assert line.endswith(f" value={written}")
    assert json.loads(_parse_kv(line)["value"]) == value


def test_kv_message_is_quoted_too() -> None:
    parsed = _parse_kv(_kv(_event("start", 'listening on "[::]:50051"\nnow', address="[::]")))
    assert parsed["msg"] == 'listening on "[::]:50051"\nnow'
    assert parsed["address"] == "[::]"


def test_kv_context_comes_after_the_logger_and_before_the_event() -> None:
    line = _kv(_event("e", "m", n=1), {"worker": 2, "role": "a b"})
    assert line == (
        'ts=2023-11-14T22:13:20.500Z level=info logger=lookupd.tests.logs worker=2 role="a b" '
        "event=e msg=m n=1"
    )


def test_a_plain_logging_call_has_no_event() -> None:
    logger = logging.getLogger(_LOGGER_NAME)
    records = _Records()
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    logger.warning("disk %s at %d%%", "/var", 93)
    (record,) = records.records
    parsed = _parse_kv(_kv(record))
    assert list(parsed) == ["ts", "level", "logger", "msg"]
    assert parsed["msg"] == "disk /var at 93%"
    assert "event" not in _json(record)
    assert field_value(record, "anything") is None


def test_kv_writes_other_objects_as_their_text() -> None:
    record = _event("e", "m", path=Path("/tmp/x"))
    assert _parse_kv(_kv(record))["path"] == "/tmp/x"


# ---------------------------------------------------------------------------------------
# JsonFormatter


def test_json_line_has_the_same_fields() -> None:
    fields: dict[str, object] = {
        "result": "success",
        "changed": True,
        "seconds": 0.012,
        "count": 3,
        "none": None,
        "text": 'a "b" = c\nd',
        "empty": "",
    }
    record = _event_with("reload", "reloaded", fields)
    parsed = _json(record, {"worker": 1})
    assert parsed == {
        "ts": "2023-11-14T22:13:20.500Z",
        "level": "info",
        "logger": _LOGGER_NAME,
        "worker": 1,
        "event": "reload",
        "msg": "reloaded",
        **fields,
    }
    # The same keys in the same order as the kv line, each value the same once decoded.
    kv = _parse_kv(_kv(record, {"worker": 1}))
    assert list(kv) == list(parsed)
    for key, value in parsed.items():
        assert kv[key] == (value if isinstance(value, str) else json.dumps(value)), key


def test_json_writes_other_objects_as_their_text() -> None:
    assert _json(_event("e", "m", path=Path("/tmp/x")))["path"] == "/tmp/x"
    assert _json(_event("e", "m", items=[1, "a"]))["items"] == [1, "a"]


# ---------------------------------------------------------------------------------------
# Exceptions


def test_an_exception_goes_in_an_error_field() -> None:
    logger = logging.getLogger(_LOGGER_NAME)
    records = _Records()
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    try:
        raise ValueError("boom = bad")
    except ValueError:
        logger.exception("internal error answering a call")
    (record,) = records.records
    for parsed in (_parse_kv(_kv(record)), _json(record)):
        assert parsed["level"] == "error"
        assert parsed["msg"] == "internal error answering a call"
        error = str(parsed["error"])
        assert error.startswith("Traceback (most recent call last):")
        assert error.rstrip().endswith("ValueError: boom = bad")
        assert "test_an_exception_goes_in_an_error_field" in error
        assert list(parsed)[-1] == "error"


def test_no_error_field_without_an_exception() -> None:
    record = _event("e", "m")
    assert "error" not in _parse_kv(_kv(record))
    assert "error" not in _json(record)


# ---------------------------------------------------------------------------------------
# configure()


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_configure_writes_kv_lines_to_the_stream() -> None:
    stream = io.StringIO()
    handler = configure(stream=stream)
    logger = logging.getLogger("lookupd")
    assert handler in logger.handlers
    assert logger.level == logging.INFO
    assert logger.propagate is False
    log_event(logging.getLogger("lookupd.server.reload"), logging.INFO, "reload", "reloaded", n=1)
    logging.getLogger("lookupd.server.reload").debug("not at info")
    (line,) = _lines(stream)
    parsed = _parse_kv(line)
    assert _TS.fullmatch(parsed["ts"])
    assert {k: v for k, v in parsed.items() if k != "ts"} == {
        "level": "info",
        "logger": "lookupd.server.reload",
        "event": "reload",
        "msg": "reloaded",
        "n": "1",
    }


def test_configure_json() -> None:
    stream = io.StringIO()
    configure("json", stream=stream, context={"worker": 1})
    log_event(
        logging.getLogger("lookupd.server.app"), logging.WARNING, "stop", "stopping", grace_s=5.0
    )
    (line,) = _lines(stream)
    parsed = json.loads(line)
    assert list(parsed) == ["ts", "level", "logger", "worker", "event", "msg", "grace_s"]
    assert parsed["worker"] == 1
    assert parsed["grace_s"] == 5.0
    assert parsed["level"] == "warning"


def test_configure_replaces_its_own_handler() -> None:
    logger = logging.getLogger("lookupd")
    foreign = _Records()  # a handler someone else added stays
    logger.addHandler(foreign)
    first, second = io.StringIO(), io.StringIO()
    old = configure(stream=first)
    new = configure("kv", stream=second, context={"worker": 1})
    assert old not in logger.handlers
    assert new in logger.handlers
    assert foreign in logger.handlers
    assert sum(getattr(h, "lookupd_handler", False) for h in logger.handlers) == 1
    log_event(logging.getLogger("lookupd.server.workers"), logging.INFO, "ready", "worker ready")
    assert first.getvalue() == ""
    (line,) = _lines(second)  # once, not once per configure()
    assert _parse_kv(line)["worker"] == "1"
    assert len(foreign.records) == 1


def test_configure_level() -> None:
    stream = io.StringIO()
    configure(stream=stream, level=logging.WARNING)
    logger = logging.getLogger("lookupd.tests.logs")
    log_event(logger, logging.INFO, "quiet", "not written")
    log_event(logger, logging.WARNING, "loud", "written")
    assert [_parse_kv(line)["event"] for line in _lines(stream)] == ["loud"]
    configure(stream=stream, level=logging.DEBUG)
    log_event(logger, logging.DEBUG, "debug", "written")
    assert [_parse_kv(line)["event"] for line in _lines(stream)] == ["loud", "debug"]


def test_configure_defaults_to_stderr() -> None:
    handler = configure()
    assert isinstance(handler, logging.StreamHandler)
    assert handler.stream is sys.stderr


def test_configure_rejects_an_unknown_format() -> None:
    stream = io.StringIO()
    handler = configure(stream=stream)
    with pytest.raises(ValueError, match=r"unknown log format 'xml': choose one of kv, json"):
        configure("xml", stream=io.StringIO())  # type: ignore[arg-type]
    # The earlier configuration is untouched.
    assert handler in logging.getLogger("lookupd").handlers
    assert LOG_FORMATS == ("kv", "json")


def test_configure_stops_propagation_so_lines_are_not_doubled() -> None:
    # A handler of our own on the root logger, not caplog: pytest also attaches caplog's
    # handler to loggers that already do not propagate when a test starts (as ``lookupd``
    # is after any earlier test ran ``lookupd serve``), so caplog would see the line anyway.
    logging.getLogger("lookupd").propagate = True
    root_records = _Records()
    logging.getLogger().addHandler(root_records)
    try:
        stream = io.StringIO()
        configure(stream=stream)
        log_event(logging.getLogger("lookupd.tests.logs"), logging.WARNING, "e", "m")
    finally:
        logging.getLogger().removeHandler(root_records)
    assert len(_lines(stream)) == 1
    assert root_records.records == []  # nothing reached the root logger's handlers


# ---------------------------------------------------------------------------------------
# log_event below the level


def test_log_event_below_the_level_formats_nothing() -> None:
    stream = io.StringIO()
    configure(stream=stream, level=logging.WARNING)
    logger = logging.getLogger("lookupd.tests.logs")
    records = _Records()
    logger.addHandler(records)
    log_event(logger, logging.INFO, "e", "m", value=_Unprintable())
    log_event(logger, logging.DEBUG, "e", "m", value=_Unprintable(), other=_Unprintable())
    assert records.records == []  # no record made at all
    assert stream.getvalue() == ""


def test_log_event_fields_travel_as_fields() -> None:
    record = _event("reload", "reloaded", data_version="abc", changed=True)
    assert record.getMessage() == "reloaded"
    assert field_value(record, "data_version") == "abc"
    assert field_value(record, "changed") is True
    assert field_value(record, "missing") is None
    assert record.levelno == logging.INFO


def test_log_event_message_is_not_a_format_string() -> None:
    record = _event("e", "100% done, %s and %(x)s stay")
    assert record.getMessage() == "100% done, %s and %(x)s stay"
    assert _parse_kv(_kv(record))["msg"] == "100% done, %s and %(x)s stay"


# ---------------------------------------------------------------------------------------
# gRPC's loggers, and repeated warnings held with a count

_WINDOW_S = 0.3
_WAIT_S = 10.0


def _wait_for_lines(stream: io.StringIO, count: int) -> list[str]:
    """The stream's lines once there are ``count`` (bounded wait: a timer writes them)."""
    deadline = time.monotonic() + _WAIT_S
    while len(lines := _lines(stream)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return lines


def test_grpc_lines_are_written_as_lookupd_lines() -> None:
    stream = io.StringIO()
    handler = configure("json", stream=stream)
    grpc_logger = logging.getLogger("grpc._server")
    try:
        raise ValueError("bad bytes")
    except ValueError:
        grpc_logger.exception("Exception deserializing request!")
    grpc_logger.info("below WARNING: gRPC's internals")
    (line,) = _lines(stream)  # one line, the traceback inside it
    parsed = json.loads(line)
    assert parsed["logger"] == "grpc._server"
    assert parsed["level"] == "error"
    assert parsed["msg"] == "Exception deserializing request!"
    assert "ValueError: bad bytes" in parsed["error"]
    assert handler in logging.getLogger("grpc").handlers
    assert logging.getLogger("grpc").propagate is False


def test_repeats_are_held_and_counted_in_one_line_per_window() -> None:
    stream = io.StringIO()
    configure("json", stream=stream, repeat_window_s=_WINDOW_S)
    logger = logging.getLogger("lookupd.tests.logs")
    for peer in range(1000):
        log_event(logger, logging.WARNING, "bad_request", "refused", peer=peer)
    log_event(logger, logging.WARNING, "admin_denied", "refused")  # another kind
    log_event(logger, logging.WARNING, "bad_request", "refused, otherwise")  # another message
    for n in range(5):
        log_event(logger, logging.INFO, "reload", "reloaded", n=n)  # INFO: never held
    first = [json.loads(line) for line in _lines(stream)]
    assert [(r["event"], r["msg"]) for r in first] == [
        ("bad_request", "refused"),
        ("admin_denied", "refused"),
        ("bad_request", "refused, otherwise"),
    ] + [("reload", "reloaded")] * 5
    assert first[0]["peer"] == 0
    summary = json.loads(_wait_for_lines(stream, len(first) + 1)[len(first)])
    assert summary["msg"] == f"refused (999 more in the last {_WINDOW_S:g} s)"
    assert summary["repeated"] == 999
    assert summary["peer"] == 999  # the last one held
    assert summary["level"] == "warning"
    assert summary["event"] == "bad_request"


def test_a_kind_without_repeats_is_forgotten_after_its_window() -> None:
    stream = io.StringIO()
    configure(stream=stream, repeat_window_s=_WINDOW_S)
    logger = logging.getLogger("lookupd.tests.logs")
    log_event(logger, logging.ERROR, "reload", "reload failed")
    log_event(logger, logging.ERROR, "reload", "reload failed")  # held
    assert len(_wait_for_lines(stream, 2)) == 2  # the first, then the summary of one
    # The summary opened a window; once it ends with nothing held, the kind is new again.
    time.sleep(4 * _WINDOW_S)
    log_event(logger, logging.ERROR, "reload", "reload failed")
    assert [_parse_kv(line)["msg"] for line in _lines(stream)] == [
        "reload failed",
        "reload failed (1 more in the last 0.3 s)",
        "reload failed",
    ]


def test_the_window_defaults_to_a_minute() -> None:
    stream = io.StringIO()
    configure(stream=stream)
    logger = logging.getLogger("lookupd.tests.logs")
    for _ in range(3):
        log_event(logger, logging.WARNING, "admin_denied", "admin call refused")
    assert len(_lines(stream)) == 1
    assert REPEAT_WINDOW_S == 60.0
