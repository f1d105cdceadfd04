"""Download the data sources and build the snapshot the server reads (overlays/snapshot).

Run by the pod's init container once (the first snapshot, before the server starts) and by
its sidecar every ``SNAPSHOT_REFRESH_S`` seconds. ``lookupd build`` writes a temporary file
and renames it over the snapshot, and the server's file watch reloads it: no restart. A
refresh whose sources are byte for byte those of the last build builds nothing. A failed
refresh in the sidecar is logged and retried at the next interval while the server keeps
the data it has. ``lookupd update --every`` (issue 13) is to take this script's place.

Environment: ``SNAPSHOT_SOURCES``, the source URLs separated by spaces, in the precedence
order of ``lookupd build``; ``SNAPSHOT_PATH``, the snapshot; ``SNAPSHOT_REFRESH_S``, the
interval (unset or 0: build once and exit, the exit status saying whether it worked).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

# A download larger than this is refused: it would fill the pod's data volume.
MAX_BYTES = 512 * 1024 * 1024
TIMEOUT_S = 60


def log(message: str) -> None:
    """One line on stderr, where the kubelet collects it."""
    print(f"refresh_snapshot: {message}", file=sys.stderr, flush=True)


def download(url: str, dest: Path) -> str:
    """Download ``url`` to ``dest`` (a temporary file renamed over it); return its SHA-256."""
    digest = hashlib.sha256()
    part = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, part.open("wb") as out:
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
            if out.tell() > MAX_BYTES:
                msg = f"{url}: larger than {MAX_BYTES} bytes"
                raise ValueError(msg)
    part.replace(dest)
    return digest.hexdigest()


def refresh(urls: list[str], snapshot: Path) -> bool:
    """Download the sources and build ``snapshot`` unless they are unchanged; True if built."""
    sources = snapshot.parent / "sources"
    sources.mkdir(exist_ok=True)
    # The index keeps two URLs with the same file name apart; the name itself stays last,
    # because lookupd detects a source's format from it.
    files = [
        sources / f"{n}-{Path(urllib.parse.urlparse(url).path).name}" for n, url in enumerate(urls)
    ]
    digests = " ".join(download(url, file) for url, file in zip(urls, files, strict=True))
    built_from = sources / "built-from.sha256"
    if snapshot.exists() and built_from.exists() and built_from.read_text() == digests:
        log(f"sources unchanged, {snapshot} kept")
        return False
    command = [sys.executable, "-m", "lookupd", "build", "-q", "-o", str(snapshot)]
    subprocess.run([*command, *map(str, files)], check=True)
    built_from.write_text(digests)
    log(f"built {snapshot} from {len(files)} sources")
    return True


def main() -> int:
    """Build once, or (with ``SNAPSHOT_REFRESH_S``) refresh forever; the exit status."""
    # The script is its container's process 1, which ignores SIGTERM unless it handles
    # it: without this the pod's shutdown would wait for the whole grace period.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    urls = os.environ["SNAPSHOT_SOURCES"].split()
    snapshot = Path(os.environ["SNAPSHOT_PATH"])
    every = float(os.environ.get("SNAPSHOT_REFRESH_S") or 0)
    if every <= 0:
        try:
            refresh(urls, snapshot)
        except (OSError, ValueError, subprocess.CalledProcessError) as error:
            log(f"build failed: {error}")
            return 1
        return 0
    while True:
        time.sleep(every)
        try:
            refresh(urls, snapshot)
        except (OSError, ValueError, subprocess.CalledProcessError) as error:
            log(f"refresh failed, {snapshot} kept: {error}")


if __name__ == "__main__":
    sys.exit(main())
