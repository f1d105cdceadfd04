"""The idle timeout of client streams: a stream that sends no message for that long ends.

Each open ``StreamLookup`` holds a stream thread; without a timeout, clients that open
streams and send nothing more hold every stream thread, and new streams wait for ever.
gRPC's sync server has no timeout for the next message of a stream (its request iterator
blocks until a message, the end, or a cancellation), so a reader thread per stream takes
the messages and hands them over one at a time; the handler waits for each at most the
idle timeout, and then ends the call with a status that names the timeout. Once the call
has ended, gRPC ends the reader's wait too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

from lookupd.errors import LookupdError

# Long enough for any client that sends as it goes (a batch every few seconds at worst),
# short enough that abandoned streams give their threads back within the minute.
DEFAULT_STREAM_IDLE_S = 30.0

_Message = TypeVar("_Message")


class StreamIdleError(LookupdError):
    """A stream sent no message within the idle timeout."""

    def __init__(self, idle_s: float) -> None:
        super().__init__(
            f"no message on this stream for {idle_s:g} s: ended by the server's stream idle "
            "timeout (lookupd serve --stream-idle-timeout); send more often or open a new stream"
        )
        self.idle_s = idle_s
        """The timeout that ran out, in seconds."""


class _Relay(Generic[_Message]):
    """Hands a stream's messages from the reader thread to the handler, one at a time (so
    at most one message waits in memory)."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._waiting: list[_Message] = []  # holds at most one
        self._ended = False
        self._failure: BaseException | None = None
        self._closed = False

    def read(self, messages: Iterator[_Message]) -> None:
        """The reader thread: take each message, and wait until the handler took it."""
        try:
            for message in messages:
                with self._ready:
                    while self._waiting and not self._closed:
                        self._ready.wait()
                    if self._closed:
                        return
                    self._waiting.append(message)
                    self._ready.notify_all()
        except BaseException as exc:  # the call was cancelled: the handler raises it
            self._failure = exc
        finally:
            with self._ready:
                self._ended = True
                self._ready.notify_all()

    def take(self, idle_s: float) -> list[_Message]:
        """The next message, in a list; an empty list at the end.

        Raises:
            StreamIdleError: none came within ``idle_s``.
            Exception: what reading the messages raised (a cancelled call's error).
        """
        with self._ready:
            if not self._ready.wait_for(lambda: self._waiting or self._ended, idle_s):
                raise StreamIdleError(idle_s)
            if self._waiting:
                taken, self._waiting = self._waiting, []
                self._ready.notify_all()
                return taken
        if self._failure is not None:
            raise self._failure
        return []

    def close(self) -> None:
        """Stop the reader at its next message (the end of the call ends its wait)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()


def within_idle_timeout(messages: Iterator[_Message], idle_s: float) -> Iterator[_Message]:
    """Yield ``messages``, raising :class:`StreamIdleError` when the next one takes longer
    than ``idle_s`` seconds to come (0: wait for ever).

    The wait counts only while the handler waits for a message, not while it answers one.
    """
    if idle_s <= 0:
        yield from messages
        return
    relay: _Relay[_Message] = _Relay()
    reader = threading.Thread(
        target=relay.read, args=(messages,), name="lookupd-stream-reader", daemon=True
    )
    reader.start()
    try:
        while True:
            taken = relay.take(idle_s)
            if not taken:
                return
            yield taken[0]
    finally:
        relay.close()
