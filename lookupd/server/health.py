"""The ``grpc.health.v1.Health`` servicer, whose open ``Watch`` streams a stopping server ends."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2


class HealthServicer(health.HealthServicer):
    """grpc's health servicer, whose open ``Watch`` streams can be ended on stop.

    Load balancers keep a ``Watch`` open for as long as a server lives; left open, it would
    hold ``server.stop(grace)`` for the whole grace. After telling watchers NOT_SERVING,
    :meth:`end_watches` closes their streams (OK status), as a stopping server should.
    """

    def __init__(self) -> None:
        super().__init__(experimental_non_blocking=True)
        self._watch_callbacks: list[_SendOnce] = []
        self._watch_lock = threading.Lock()

    def Watch(  # grpc passes send_response_callback in non-blocking mode
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.ServicerContext,
        send_response_callback: Callable[[Any], None] | None = None,
    ) -> Any:
        if send_response_callback is None:  # a server without non-blocking handlers
            return super().Watch(request, context)
        once = _SendOnce(send_response_callback)
        with self._watch_lock:
            self._watch_callbacks = [c for c in self._watch_callbacks if not c.ended]
            self._watch_callbacks.append(once)
        return super().Watch(request, context, once)

    def end_watches(self) -> None:
        """End every open ``Watch`` stream (they have been told NOT_SERVING first)."""
        with self._watch_lock:
            callbacks, self._watch_callbacks = self._watch_callbacks, []
        for callback in callbacks:
            callback(None)


class _SendOnce:
    """A Watch's send-response callback that ignores everything after the end (None):
    grpc's own close callback calls it again once the stream has ended."""

    def __init__(self, send: Callable[[Any], None]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self.ended = False

    def __call__(self, response: Any) -> None:
        with self._lock:
            if self.ended:
                return
            if response is None:
                self.ended = True
            self._send(response)
