"""The fuzz targets (fuzz/), run for a bounded number of inputs: a finding fails the test.

Each target replays its whole seed corpus (fuzz/corpus/<target>, findings included), then
tries a fixed number of mutated inputs from a fixed seed, in a subprocess (a crash of a
compiled core must not take pytest down with it). New inputs go to a temporary directory,
never into the committed corpus. `make fuzz` is the long run.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris not installed (the test extra installs it on Linux x86_64)",
)

# Mutated inputs per target after the corpus: a few seconds each on a shared core.
RUNS = {"parse": 3000, "wire": 3000, "formats": 1000, "snapshot": 1000}


@pytest.mark.parametrize("target", sorted(RUNS))
def test_fuzz_target_finds_nothing(target: str, tmp_path: Path) -> None:
    new_inputs = tmp_path / "new"
    new_inputs.mkdir()
    command = [
        sys.executable,
        str(FUZZ / f"fuzz_{target}.py"),
        f"-runs={RUNS[target]}",
        "-seed=1",
        "-timeout=30",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={tmp_path}/",
        str(new_inputs),
        str(FUZZ / "corpus" / target),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=240, cwd=ROOT, check=False
    )
    output = done.stdout + done.stderr
    findings = sorted(path.name for path in tmp_path.iterdir() if path.is_file())
    report = f"fuzz_{target} (exit {done.returncode}, saved {findings}):\n{output[-6000:]}"
    assert done.returncode == 0, report
    assert not findings, report
    assert f"#{RUNS[target]}\tDONE" in output, report
