"""Serve from several worker processes on one port: a supervisor that forks them.

A sync gRPC server in Python answers on about one core (the GIL). To use more cores,
``lookupd serve --workers N`` runs a supervisor that:

1. opens the data once (a snapshot is copied into the run directory, verified, and the
   copy memory-mapped; embedded or source data is compiled into the supervisor's memory)
   so that the workers, forked from it, share those pages; a reload maps the same
   content-addressed copy in every worker;
2. refuses a port another server listens on, then reserves the port: a socket bound with
   ``SO_REUSEPORT`` but never listening, which fixes the port (``--port 0`` picks one)
   without taking connections;
3. forks N workers before any gRPC object exists (gRPC does not survive a fork: the
   supervisor imports grpc but creates nothing with it); each
   starts its own server on the port with ``SO_REUSEPORT``, and the kernel spreads new
   connections over them (so clients should open several connections);
4. waits for signals, synchronously (``sigtimedwait``: no threads, no handler races):
   SIGTERM/SIGINT are forwarded and the workers are given their drain and grace to stop;
   SIGHUP is forwarded; SIGUSR1 from a worker (after an admin ``Reload``) is forwarded as
   SIGHUP to every other worker; a worker that dies is restarted, after a delay that grows
   while it keeps dying young; a worker whose heartbeat stops (stopped, or stuck) is
   killed and restarted.

A restarted worker starts from the data and policies loaded before the fork, then reloads
the files that changed since. A first worker that cannot start (unreadable TLS files, say)
exits with ``EX_CONFIG`` and the supervisor stops; later, such a worker is restarted like
any other.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lookupd.datafiles.private_copy import PrivateCopies
from lookupd.errors import LookupdError
from lookupd.server.app import DEFAULT_HOST, ServerConfig, serve, write_port_file
from lookupd.server.bind import ALL_IPV6, bind_hosts, claim_port, family_of, refuse_in_use
from lookupd.server.heartbeat import Heartbeat, beat_interval
from lookupd.server.logs import LogFormat, configure, log_event
from lookupd.server.reload import Preloaded, preload
from lookupd.server.rundir import RunDir

if TYPE_CHECKING:
    from lookupd.server.metrics import Metrics

_LOGGER = logging.getLogger(__name__)

EX_CONFIG = 78  # sysexits.h: a configuration error (a restart will not help)
_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1}
# A worker that dies within this long of starting "died young": the restart delay doubles.
_YOUNG_S = 10.0
_FIRST_DELAY_S = 0.1
_MOST_DELAY_S = 10.0
# Beyond the workers' own drain and grace: how long they may take to exit before SIGKILL.
_EXIT_MARGIN_S = 5.0


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Bind (without listening) ``host:port`` with SO_REUSEPORT; return it and the port.

    ``[::]`` binds the IPv6 wildcard (dual stack), or 0.0.0.0 where IPv6 is unavailable,
    as the gRPC server does. A port another server listens on is refused: with
    SO_REUSEPORT the workers would join it, and the kernel would split the connections
    between two servers.

    Raises:
        LookupdError: the address cannot be bound, or another server listens there.
    """
    refuse_in_use(host, port)
    problem = ""
    for candidate in bind_hosts(host):
        try:
            sock = socket.socket(family_of(candidate), socket.SOCK_STREAM)
        except OSError as exc:  # no IPv6 here: the next candidate is 0.0.0.0
            problem = str(exc)
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if candidate == ALL_IPV6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((candidate, port))
        except OSError as exc:
            sock.close()
            problem = str(exc)
            continue
        return sock, sock.getsockname()[1]
    msg = f"cannot listen on {host}:{port}: {problem}"
    raise LookupdError(msg)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What the supervisor needs beyond the server's own configuration."""

    workers: int
    db_path: str | None = None
    policies_path: str | None = None
    port_file: str | None = None
    metrics_host: str = DEFAULT_HOST
    metrics_port: int | None = None
    log_format: LogFormat = "kv"
    log_level: int = logging.INFO
    run_dir: RunDir | None = None
    """The run directory (metrics files, data copies); None: one of the supervisor's own
    in the system's temporary directory."""


@dataclass
class _Worker:
    index: int
    pid: int = 0
    started: float = 0.0
    delay_s: float = 0.0
    restart_at: float | None = None
    heartbeat: Heartbeat | None = None


class Supervisor:
    """Forks and keeps ``settings.workers`` workers serving ``config`` on one port."""

    def __init__(self, config: ServerConfig, settings: WorkerSettings) -> None:
        if settings.workers < 1:
            msg = "workers must be at least 1"
            raise ValueError(msg)
        self.config = config
        self.settings = settings
        self._workers = [_Worker(index) for index in range(settings.workers)]
        self._stopping = False
        self._exit_code = 0
        self._metrics: Metrics | None = None
        self._run: RunDir | None = None
        # Workers write a byte here once they serve (the port file waits for all of them).
        self._ready_r = self._ready_w = -1
        # Set by run() before the first fork: what every worker is started with.
        self._preloaded: Preloaded | None = None
        self._metrics_address: tuple[str, int] | None = None
        self._old_mask: set[int | signal.Signals] = set()
        # Whether all the first workers served: until then a worker that cannot start
        # stops the server; after, it is restarted like any other (its files may be fixed).
        self._announced = False

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the exit status.

        Raises:
            LookupdError: the port or the data cannot be opened.
        """
        settings = self.settings
        run = self._run = settings.run_dir or RunDir.create()
        reserved: list[socket.socket] = []
        old_mask = self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            # Held for the supervisor's life: a second one starting at once is refused.
            claim = claim_port(self.config.host, self.config.port) if self.config.port else None
            reserved.extend([claim] if claim is not None else [])
            grpc_socket, port = reserve_port(self.config.host, self.config.port)
            reserved.append(grpc_socket)
            self.config = replace(self.config, port=port, reuse_port=True)
            if settings.metrics_port is not None:
                from lookupd.server import metrics, metrics_process

                metrics_socket, metrics_port = reserve_port(
                    settings.metrics_host, settings.metrics_port
                )
                reserved.append(metrics_socket)
                self._metrics_address = (settings.metrics_host, metrics_port)
                run.metrics.mkdir()
                metrics_process.enable_multiprocess(run.metrics)
                self._metrics = metrics.Metrics()
            # Loaded before forking: the workers share these pages, a bad file stops the
            # start with its error once, and a restarted worker starts from them.
            self._preloaded = preload(
                settings.db_path, settings.policies_path, copies=PrivateCopies(run.data)
            )
            self._ready_r, self._ready_w = os.pipe()
            os.set_blocking(self._ready_r, False)
            log_event(
                _LOGGER,
                logging.INFO,
                "supervisor_start",
                f"starting {settings.workers} workers on port {port}",
                workers=settings.workers,
                port=port,
                metrics_port=self._metrics_address[1] if self._metrics_address else None,
                pid=os.getpid(),
            )
            for worker in self._workers:
                self._fork(worker)
            self._supervise(port)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            for fd in (self._ready_r, self._ready_w):
                if fd >= 0:
                    os.close(fd)
            for sock in reserved:
                sock.close()
            for worker in self._workers:
                if worker.heartbeat is not None:
                    worker.heartbeat.close()
            if settings.run_dir is None:
                run.remove()
        log_event(_LOGGER, logging.INFO, "supervisor_stop", "stopped", code=self._exit_code)
        return self._exit_code

    # -----------------------------------------------------------------------------------

    def _say_serving(self) -> None:
        """In a worker: tell the supervisor this worker serves."""
        os.write(self._ready_w, b"\n")

    def _drain_ready(self) -> bytes:
        try:
            return os.read(self._ready_r, 4096)
        except BlockingIOError:
            return b""

    def _supervise(self, port: int) -> None:
        deadline = math.inf
        # Each worker writes a byte on the ready pipe once it serves; the port file is
        # written when all the first ones do, so that it means "answering".
        ready = 0
        while True:
            now = time.monotonic()
            if self._stopping:
                if not any(worker.pid for worker in self._workers):
                    return
                if now >= deadline:
                    for worker in self._workers:
                        if worker.pid:
                            _LOGGER.error("worker %d did not stop: killing it", worker.index)
                            _signal(worker.pid, signal.SIGKILL)
                    deadline = now + _EXIT_MARGIN_S
            due = [w.restart_at for w in self._workers if w.restart_at is not None]
            tick = 1.0 if self._announced else 0.02
            if self.config.heartbeat_timeout_s > 0:
                tick = min(tick, beat_interval(self.config.heartbeat_timeout_s))
            timeout = max(0.0, min([tick, deadline - now, *(at - now for at in due)]))
            info = signal.sigtimedwait(_SIGNALS, timeout)
            ready += len(self._drain_ready())
            if not self._announced and ready >= len(self._workers) and not self._stopping:
                self._announced = True
                if self.settings.port_file is not None:
                    write_port_file(Path(self.settings.port_file), port)
                log_event(_LOGGER, logging.INFO, "serving", f"{ready} workers serving")
            if info is not None:
                signum = info.si_signo
                if signum in (signal.SIGTERM, signal.SIGINT) and not self._stopping:
                    self._stop(f"received {signal.Signals(signum).name}")
                    wait = self.config.drain_s + self.config.grace_s + _EXIT_MARGIN_S
                    deadline = time.monotonic() + wait
                elif signum == signal.SIGHUP:
                    log_event(_LOGGER, logging.INFO, "signal", "received SIGHUP: reloading")
                    self._forward(signal.SIGHUP)
                elif signum == signal.SIGUSR1:
                    # A worker reloaded by an admin call: the others follow.
                    self._forward(signal.SIGHUP, skip=info.si_pid)
            self._reap()
            if not self._stopping:
                now = time.monotonic()
                self._check_heartbeats(now)
                for worker in self._workers:
                    if worker.restart_at is not None and now >= worker.restart_at:
                        worker.restart_at = None
                        self._fork(worker)
                        if self._metrics is not None:
                            self._metrics.worker_restarted()

    def _check_heartbeats(self, now: float) -> None:
        """Kill the workers silent for longer than the heartbeat timeout (SIGKILL: it works
        on a stopped process too); they are then restarted as if they had died."""
        for worker in self._workers:
            beat = worker.heartbeat
            if not worker.pid or beat is None:
                continue
            silent = beat.silent_s(now)
            if silent <= beat.timeout_s:
                continue
            log_event(
                _LOGGER,
                logging.ERROR,
                "worker_unresponsive",
                f"worker {worker.index} (pid {worker.pid}) sent no heartbeat for "
                f"{silent:.1f} s: killing it",
                worker=worker.index,
                pid=worker.pid,
                silent_s=round(silent, 1),
            )
            _signal(worker.pid, signal.SIGKILL)
            beat.forgive(now)

    def _stop(self, reason: str) -> None:
        self._stopping = True
        log_event(_LOGGER, logging.INFO, "stop", f"{reason}: stopping the workers")
        for worker in self._workers:
            worker.restart_at = None
        self._forward(signal.SIGTERM)

    def _forward(self, signum: signal.Signals, *, skip: int = 0) -> None:
        for worker in self._workers:
            if worker.pid and worker.pid != skip:
                _signal(worker.pid, signum)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self._workers if w.pid == pid), None)
            if worker is None:
                continue
            worker.pid = 0
            if self._metrics is not None:
                from lookupd.server.metrics_process import mark_process_dead

                mark_process_dead(pid)
            code = os.waitstatus_to_exitcode(status)
            if self._stopping:
                if code != 0:
                    _LOGGER.warning("worker %d (pid %d) exited with %d", worker.index, pid, code)
                continue
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
            if code == EX_CONFIG and not self._announced:
                _LOGGER.error(
                    "worker %d (pid %d) cannot start (%s): stopping", worker.index, pid, how
                )
                self._exit_code = EX_CONFIG
                self._stop("a worker cannot start")
                continue
            lived = time.monotonic() - worker.started
            young = lived < _YOUNG_S
            worker.delay_s = (
                min(_MOST_DELAY_S, max(_FIRST_DELAY_S, 2 * worker.delay_s))
                if young
                else _FIRST_DELAY_S
            )
            worker.restart_at = time.monotonic() + worker.delay_s
            log_event(
                _LOGGER,
                logging.ERROR,
                "worker_exit",
                f"worker {worker.index} (pid {pid}) died ({how}) after {lived:.1f} s: "
                f"restarting in {worker.delay_s:.1f} s",
                worker=worker.index,
                pid=pid,
                exit=how,
                restart_in_s=worker.delay_s,
            )

    def _fork(self, worker: _Worker) -> None:
        supervisor = os.getpid()
        if worker.heartbeat is not None:
            worker.heartbeat.close()
            worker.heartbeat = None
        if self.config.heartbeat_timeout_s > 0:
            worker.heartbeat = Heartbeat(self.config.heartbeat_timeout_s)
        sys.stdout.flush()
        sys.stderr.flush()
        with warnings.catch_warnings():
            # Python 3.12+ warns when forking a process with several OS threads. The
            # supervisor runs none of its own: the others are BLAS's idle pool (numpy's),
            # which re-creates itself in a child (it registers fork handlers).
            warnings.filterwarnings("ignore", ".*multi-threaded.*fork", DeprecationWarning)
            pid = os.fork()
        if pid:
            worker.pid = pid
            worker.started = time.monotonic()
            if worker.heartbeat is not None:
                worker.heartbeat.in_supervisor()
            log_event(
                _LOGGER,
                logging.INFO,
                "worker_start",
                f"worker {worker.index} started (pid {pid})",
                worker=worker.index,
                pid=pid,
            )
            return
        # The child: never return into the supervisor's code.
        code = 1
        try:
            code = self._work(worker, supervisor)
        except BaseException:  # the exit status tells the supervisor
            with contextlib.suppress(BaseException):
                _LOGGER.exception("worker %d failed", worker.index)
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _take_preloaded(self) -> Preloaded | None:
        """In a worker: hand the preloaded data to its server, keeping no reference here,
        so that once the worker has reloaded newer data the supervisor's copy is unmapped."""
        preloaded, self._preloaded = self._preloaded, None
        return preloaded

    def _work(self, worker: _Worker, supervisor: int) -> int:
        index = worker.index
        os.close(self._ready_r)
        for other in self._workers:
            if other is not worker and other.heartbeat is not None:
                other.heartbeat.close()  # the supervisor's ends for the other workers
        if worker.heartbeat is not None:
            worker.heartbeat.in_worker()
        stop = _handle_signals_until_serving()
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
        _die_with_parent()
        configure(
            self.settings.log_format,
            level=self.settings.log_level,
            context={"worker": index, "pid": os.getpid()},
        )
        try:
            serve(
                self.config,
                db_path=self.settings.db_path,
                policies_path=self.settings.policies_path,
                metrics_address=self._metrics_address,
                notify_others=lambda: _signal(supervisor, signal.SIGUSR1),
                preloaded=self._take_preloaded(),
                on_serving=self._say_serving,
                stop_event=stop,
                run_dir=self._run,
            )
        except LookupdError as exc:
            log_event(_LOGGER, logging.ERROR, "error", str(exc), worker=index)
            return EX_CONFIG
        return 0


def _handle_signals_until_serving() -> threading.Event:
    """In a new worker, before its signals are unblocked: set what they do until
    :func:`serve` installs its own handlers; return the event SIGTERM and SIGINT set.

    The supervisor may pass on a signal at any moment, a worker's first too; with the
    default actions, SIGHUP (and SIGUSR1) would kill it. SIGHUP is ignored until then: the
    worker reads the files as it starts. SIGTERM and SIGINT stop it once it has started.
    """
    stop = threading.Event()

    def on_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    return stop


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker if the supervisor dies (even by SIGKILL)."""
    name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or name is None:
        return
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
