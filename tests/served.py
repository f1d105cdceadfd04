"""`lookupd serve` as a child process, started the way the README starts it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import lookupd

TIMEOUT_S = 30.0
POLL_S = 0.02


@dataclass
class Served:
    """A `lookupd serve` child process and where it listens."""

    process: subprocess.Popen[bytes]
    target: str
    log: Path

    @property
    def port(self) -> int:
        return int(self.target.rsplit(":", 1)[1])

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines (``--log-format json``), those of event ``name`` if given."""
        out = []
        for line in self.log_text().splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:  # a line being written
                continue
            if name is None or record.get("event") == name:
                out.append(record)
        return out

    def wait_for_event(self, name: str, count: int = 1) -> list[dict[str, Any]]:
        """Wait (bounded) until ``count`` lines of event ``name`` were logged."""
        deadline = time.monotonic() + TIMEOUT_S
        while len(found := self.events(name)) < count:
            if time.monotonic() > deadline or self.process.poll() is not None:
                pytest.fail(f"no {count} {name!r} events in the log:\n{self.log_text()}")
            time.sleep(POLL_S)
        return found

    def stop(self) -> int:
        """SIGTERM it and return its exit status (bounded wait; killed if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(TIMEOUT_S)
            raise

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT_S)


def child_env(**extra: str) -> dict[str, str]:
    """The child's environment: lookupd's root on the path unless lookupd is installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKUPD_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    root = Path(lookupd.__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def start_serve(directory: Path, *args: str, env: dict[str, str] | None = None) -> Served:
    """Start `python -m lookupd serve ARGS` on 127.0.0.1 and a free port (unless ``env`` is
    given: then ARGS and ``env`` say where); wait (bounded) for the port file it writes."""
    port_file = directory / "port"
    log = directory / "serve.log"
    command = [sys.executable, "-m", "lookupd", "serve", *args]
    if env is None:
        env = child_env()
        command += ["--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file)]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + TIMEOUT_S
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(TIMEOUT_S)
            pytest.fail(f"lookupd serve did not start: {log.read_text(errors='replace')}")
        time.sleep(POLL_S)  # polling for the port file: the readiness signal of the child
    return Served(process, f"127.0.0.1:{int(port_file.read_text())}", log)
