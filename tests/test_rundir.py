"""`lookupd serve`'s run directory: made in --run-dir ($TMPDIR, else /tmp), private, removed
at exit; an unusable one stops the start with exit status 2 and one line naming it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from served import TIMEOUT_S, child_env, start_serve
from versions import write_data

from lookupd.server.rundir import RUN_DIR_PREFIX, RunDir, RunDirError


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `lookupd serve ARGS` on 127.0.0.1 (expected to stop at once)."""
    command = [sys.executable, "-m", "lookupd", "serve", "--host", "127.0.0.1", "--port", "0"]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env=env or child_env(),
        timeout=TIMEOUT_S,
        check=False,
    )


def _refused(run: subprocess.CompletedProcess[str], named: str) -> None:
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1, run.stderr  # one line, no traceback
    assert f"cannot make a run directory in {named}" in run.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_missing_run_dir_stops_the_start(tmp_path: Path, workers: str) -> None:
    missing = tmp_path / "missing"
    run = _serve("--workers", workers, "--run-dir", str(missing))
    _refused(run, f"{missing} (--run-dir): No such file or directory")


def test_a_run_dir_that_is_a_file_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    run = _serve("--workers", "2", "--run-dir", str(tmp_path / "file"))
    _refused(run, f"{tmp_path / 'file'} (--run-dir): Not a directory")


def _unshare_works() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run(
        [unshare, "-rm", "true"], capture_output=True, timeout=TIMEOUT_S, check=False
    )
    return probe.returncode == 0


def test_a_read_only_run_dir_stops_the_start(tmp_path: Path) -> None:
    read_only = tmp_path / "ro"
    read_only.mkdir()
    command = [sys.executable, "-m", "lookupd", "serve", "--port", "0", "--workers", "2"]
    command += ["--host", "127.0.0.1", "--run-dir", str(read_only)]
    if _unshare_works():
        # A read-only file system (as a hardened container's root), mounted for the child
        # alone: a mode would not stop root.
        mount = f'mount -t tmpfs -o ro none {read_only} && exec "$@"'
        command = ["unshare", "-rm", "sh", "-c", mount, "sh", *command]
    elif os.geteuid() != 0:
        read_only.chmod(0o555)
    else:
        pytest.skip("root without user namespaces: nothing here makes a directory read-only")
    run = subprocess.run(
        command, capture_output=True, text=True, env=child_env(), timeout=TIMEOUT_S, check=False
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1, run.stderr
    assert f"cannot make a run directory in {read_only} (--run-dir): " in run.stderr
    assert "Read-only file system" in run.stderr or "Permission denied" in run.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_default_run_dir_is_tmpdir(tmp_path: Path, workers: str) -> None:
    nowhere = tmp_path / "nowhere"
    run = _serve("--workers", workers, env=child_env(TMPDIR=str(nowhere)))
    _refused(run, f"{nowhere} ($TMPDIR): No such file or directory")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_run_dir_is_private_holds_the_data_copy_and_goes_at_exit(
    tmp_path: Path, workers: str
) -> None:
    parent, snap = tmp_path / "run", tmp_path / "snap.lkd"
    parent.mkdir()
    version = write_data(snap, 0)
    args = ["--workers", workers, "--db", str(snap), "--run-dir", str(parent)]
    served = start_serve(tmp_path, *args, "--metrics-port", "0", "--metrics-host", "127.0.0.1")
    try:
        (run_dir,) = parent.iterdir()
        assert run_dir.name.startswith(f"{RUN_DIR_PREFIX}{served.process.pid}-")
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
        (copy,) = (run_dir / "data").iterdir()
        assert copy.name.startswith(version)
        assert (run_dir / "metrics").is_dir() == (workers != "1")
        assert served.stop() == 0
        assert list(parent.iterdir()) == []
    finally:
        served.kill()


def test_run_dir_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    run = RunDir.create()
    assert run.path.parent == tmp_path
    assert run.data.is_dir()
    run.remove()
    assert not run.path.exists()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "gone"))
    with pytest.raises(RunDirError, match=r"\(\$TMPDIR\)"):
        RunDir.create()
