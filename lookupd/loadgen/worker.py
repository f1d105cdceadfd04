"""One client process of a load test: its connections, its callers, its histogram.

Closed loop: ``concurrency`` callers each send a call, wait for its answer, send the next.
Open loop: calls are due at a fixed rate whatever the answers do, and each call's latency
counts from when it was due, not from when a caller got round to sending it: a server that
stalls for a second shows a second of latency on every call due in that second, instead of
the one slow call a closed loop sees (coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from hdrh.histogram import HdrHistogram

from lookupd.client.channel import BALANCED_SCHEME, channel_options
from lookupd.loadgen.calls import Calls

if TYPE_CHECKING:
    from multiprocessing.queues import Queue

    from lookupd.client.tls import ClientTLS

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
"""Latencies are recorded in microseconds, up to an hour (longer ones count as an hour)."""
SIGNIFICANT_DIGITS = 3
PROGRESS_EVERY_S = 0.5
_NS_PER_US = 1000


def new_histogram() -> HdrHistogram:
    """An empty latency histogram in microseconds, as every process of a test records."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


@dataclass(frozen=True, slots=True)
class Load:
    """How hard and how long one client process pushes."""

    connections: int
    """Channels, each its own connection to the server."""
    concurrency: int
    """Calls in flight at most (callers in a closed loop; a cap in an open loop)."""
    duration_s: float | None
    """How long to send calls (after the warm-up); None: until ``requests`` are sent."""
    requests: int | None
    """How many calls to send; None: for ``duration_s``."""
    rate: float | None
    """Open loop: calls due per second; None: closed loop."""
    timeout_s: float
    """Deadline of each call."""
    warmup_s: float = 0.0
    """Calls sent first and not counted: connections and server caches settle."""


@dataclass(slots=True)
class Tally:
    """What one process saw; :meth:`merge` adds another's."""

    calls: int = 0
    """Calls answered or failed (not counting the warm-up)."""
    ok: int = 0
    """Calls answered."""
    addresses: int = 0
    """Addresses in the calls answered."""
    errors: Counter[str] = field(default_factory=Counter)
    """Failed calls by gRPC status code name."""
    versions: Counter[str] = field(default_factory=Counter)
    """Answered calls by the data version id that answered them."""
    histogram: bytes = b""
    """Latency histogram (microseconds), HdrHistogram's compressed encoding."""
    wall_s: float = 0.0
    """Measured time: from the first counted call sent to the last one answered."""
    cpu_s: float = 0.0
    """CPU time the process spent in that time (every thread: gRPC's own too)."""
    due: int = 0
    """Open loop: calls that fell due."""
    late_us_max: int = 0
    """Open loop: how late the most delayed call was sent after it fell due."""

    def merge(self, other: Tally) -> None:
        """Add ``other``'s counts to these (times: the longest wall time, the CPU summed)."""
        self.calls += other.calls
        self.ok += other.ok
        self.addresses += other.addresses
        self.errors.update(other.errors)
        self.versions.update(other.versions)
        histogram = new_histogram()
        for encoded in (self.histogram, other.histogram):
            if encoded:
                histogram.decode_and_add(encoded)
        self.histogram = histogram.encode()
        self.wall_s = max(self.wall_s, other.wall_s)
        self.cpu_s += other.cpu_s
        self.due += other.due
        self.late_us_max = max(self.late_us_max, other.late_us_max)


def run_process(
    index: int,
    target: str,
    tls: ClientTLS | None,
    calls: Calls,
    load: Load,
    progress: Queue[tuple[int, int, int]] | None = None,
) -> Tally:
    """Run one process's share of a load test; return what it saw.

    ``progress``, if given, gets ``(index, calls, errors)`` twice a second.
    """
    return asyncio.run(_Process(index, target, tls, calls, load, progress).run())


class _Process:
    def __init__(
        self,
        index: int,
        target: str,
        tls: ClientTLS | None,
        calls: Calls,
        load: Load,
        progress: Queue[tuple[int, int, int]] | None,
    ) -> None:
        self._index = index
        self._target = target
        self._tls = tls
        self._calls = calls
        self._load = load
        self._progress = progress
        self._tally = Tally()
        self._histogram = new_histogram()
        self._requests = itertools.cycle(calls.requests)
        self._counting = False
        self._sent = 0
        self._limit: int | None = None
        self._stop_at_ns = 0

    async def run(self) -> Tally:
        load = self._load
        credentials = self._tls.credentials() if self._tls is not None else None
        # The client library's channels, retries included: the calls fail as a caller of
        # lookupd.client sees them fail (a stream the server refused is sent again).
        balanced = self._target.startswith(BALANCED_SCHEME)
        options = channel_options(load.connections, self._tls, keepalive_s=0, balanced=balanced)
        channels = [
            grpc.aio.insecure_channel(self._target, options=options)
            if credentials is None
            else grpc.aio.secure_channel(self._target, credentials, options=options)
            for _ in range(load.connections)
        ]
        try:
            senders = [
                self._sender(channels[slot % len(channels)]) for slot in range(load.concurrency)
            ]
            reporter = asyncio.create_task(self._report_progress())
            try:
                if load.warmup_s > 0:
                    await self._phase(senders, load.warmup_s, None, counting=False)
                cpu_before, wall_before = time.process_time(), time.perf_counter()
                await self._phase(senders, load.duration_s, load.requests, counting=True)
                self._tally.wall_s = time.perf_counter() - wall_before
                self._tally.cpu_s = time.process_time() - cpu_before
            finally:
                reporter.cancel()
                for sender in senders:
                    await sender.close()
        finally:
            for channel in channels:
                await channel.close()
        self._tally.histogram = self._histogram.encode()
        self._send_progress()
        return self._tally

    def _sender(self, channel: grpc.aio.Channel) -> _Sender:
        if self._calls.streaming:
            return _StreamSender(channel, self._calls.method, self._load.timeout_s)
        return _UnarySender(channel, self._calls.method, self._load.timeout_s)

    async def _phase(
        self,
        senders: list[_Sender],
        duration_s: float | None,
        requests: int | None,
        *,
        counting: bool,
    ) -> None:
        """Send calls for ``duration_s`` or until ``requests`` are sent, then wait for all."""
        self._counting = counting
        self._sent = 0
        now = time.perf_counter_ns()
        self._stop_at_ns = now + round(duration_s * 1e9) if duration_s is not None else 0
        self._limit = requests
        if self._load.rate is None or not counting:
            await asyncio.gather(*(self._closed_loop(sender) for sender in senders))
        else:
            await self._open_loop(senders, self._load.rate)

    def _more(self) -> bool:
        """Whether another call is to be sent (and, if so, counts it as sent)."""
        if self._limit is not None and self._sent >= self._limit:
            return False
        if self._stop_at_ns and time.perf_counter_ns() >= self._stop_at_ns:
            return False
        self._sent += 1
        return True

    async def _closed_loop(self, sender: _Sender) -> None:
        while self._more():
            started = time.perf_counter_ns()
            await self._call(sender, started)

    async def _open_loop(self, senders: list[_Sender], rate: float) -> None:
        idle: asyncio.Queue[_Sender] = asyncio.Queue()
        for sender in senders:
            idle.put_nowait(sender)
        interval_ns = 1e9 / rate
        start = time.perf_counter_ns()
        pending: set[asyncio.Task[None]] = set()

        async def one(due_ns: int) -> None:
            sender = await idle.get()
            try:
                late = (time.perf_counter_ns() - due_ns) // _NS_PER_US
                self._tally.late_us_max = max(self._tally.late_us_max, late)
                await self._call(sender, due_ns)
            finally:
                idle.put_nowait(sender)

        for number in itertools.count():
            due_ns = start + round(number * interval_ns)
            wait_ns = due_ns - time.perf_counter_ns()
            if wait_ns > 0:
                await asyncio.sleep(wait_ns / 1e9)
            if not self._more():
                break
            self._tally.due += 1
            task = asyncio.create_task(one(due_ns))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)

    async def _call(self, sender: _Sender, since_ns: int) -> None:
        """Send one call; if counting, record it, its latency counted from ``since_ns``."""
        request = next(self._requests)
        try:
            response = await sender.send(request)
        except grpc.aio.AioRpcError as exc:
            if self._counting:
                self._record(since_ns)
                self._tally.errors[exc.code().name] += 1
            return
        if self._counting:
            self._record(since_ns)
            tally = self._tally
            tally.ok += 1
            tally.addresses += self._calls.batch
            tally.versions[self._calls.data_version(response)] += 1

    def _record(self, since_ns: int) -> None:
        micros = max(LOWEST_US, (time.perf_counter_ns() - since_ns) // _NS_PER_US)
        self._histogram.record_value(min(micros, HIGHEST_US))
        self._tally.calls += 1

    async def _report_progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            self._send_progress()

    def _send_progress(self) -> None:
        if self._progress is not None:
            errors = sum(self._tally.errors.values())
            self._progress.put((self._index, self._tally.calls, errors))


class _Sender:
    """Sends one call at a time on a channel."""

    async def send(self, request: bytes) -> bytes:
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the sender holds (an open stream)."""


class _UnarySender(_Sender):
    def __init__(self, channel: grpc.aio.Channel, method: str, timeout_s: float) -> None:
        # No serializers: the requests are bytes already, the answers read as bytes.
        self._method: Callable[..., Awaitable[bytes]] = channel.unary_unary(method)
        self._timeout_s = timeout_s

    async def send(self, request: bytes) -> bytes:
        return await self._method(request, timeout=self._timeout_s)


class _StreamSender(_Sender):
    """One bidirectional stream, a message at a time; a broken stream is opened again."""

    def __init__(self, channel: grpc.aio.Channel, method: str, timeout_s: float) -> None:
        self._method: Callable[..., Any] = channel.stream_stream(method)
        self._timeout_s = timeout_s
        self._call: Any = None

    async def send(self, request: bytes) -> bytes:
        if self._call is None:
            self._call = self._method()
        call = self._call
        try:
            await asyncio.wait_for(call.write(request), self._timeout_s)
            response = await asyncio.wait_for(call.read(), self._timeout_s)
        except asyncio.TimeoutError:
            self._call = None
            call.cancel()
            raise _deadline_error() from None
        except grpc.aio.AioRpcError:
            self._call = None
            raise
        if response is grpc.aio.EOF:
            self._call = None
            code = await call.code()
            raise _ended_error(code)
        response_bytes: bytes = response
        return response_bytes

    async def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None


def _deadline_error() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details="no answer on the stream in time",
    )


def _ended_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    ended = code if code != grpc.StatusCode.OK else grpc.StatusCode.UNKNOWN
    return grpc.aio.AioRpcError(
        ended, grpc.aio.Metadata(), grpc.aio.Metadata(), details="the stream ended"
    )
