"""Show how far a long build has got: one line on a terminal, redrawn in place."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TextIO

# Redraw at most this often: a reader may report progress every few hundred rows.
_MIN_REDRAW_S = 0.1


class Reporter(Protocol):
    """Receives a long job's phases and, within a phase, how much of it is done."""

    def phase(self, text: str) -> None:
        """Start a new phase, described by ``text`` (e.g. ``reading x.csv``)."""

    def update(self, done: int, total: int) -> None:
        """Report ``done`` of ``total`` units of the current phase (a reader's Progress)."""


class ProgressLine:
    """A :class:`Reporter` that redraws one status line on a terminal with ``\\r``.

    Use it only on a terminal (see :func:`progress_line`): on a file or a pipe, the
    redraws would pile up as junk.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        prefix: str = "lookupd: ",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._prefix = prefix
        self._clock = clock
        self._text = ""
        self._width = 0
        self._last_draw = float("-inf")

    def phase(self, text: str) -> None:
        """Start a new phase and show it at once."""
        self._text = text
        self._draw(f"{text}...")

    def update(self, done: int, total: int) -> None:
        """Show the phase's percentage, at most every 0.1 s (and always when complete)."""
        now = self._clock()
        if done < total and now - self._last_draw < _MIN_REDRAW_S:
            return
        percent = 100 * done // total if total > 0 else 0
        self._draw(f"{self._text}... {min(percent, 100)}%")

    def close(self) -> None:
        """Erase the line, so that what is printed next starts on a clean line."""
        if self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0

    def _draw(self, text: str) -> None:
        line = self._prefix + text
        # Pad over the rest of a longer previous line.
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = max(self._width, len(line))
        self._last_draw = self._clock()


def progress_line(stream: TextIO, *, quiet: bool = False) -> ProgressLine | None:
    """Return a progress line on ``stream`` if it is a terminal and not ``quiet``, else None."""
    if quiet:
        return None
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream: no terminal
        return None
    return ProgressLine(stream) if interactive else None
