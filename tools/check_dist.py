"""Build the sdist and the wheel, check what each holds, install each fresh and ask its cores.

``python -m build`` makes the sdist, then the wheel from that sdist (so the wheel proves the
sdist compiles). The script lists both archives and checks them against the tree: the sdist
holds the Cython, stub, proto, licence, data and test files and nothing generated or
compiled; the wheel holds the compiled cores, stubs, data, licences and ``lookupd.v1`` and
nothing of ext/ or tests/. Then each is installed with pip into its own new virtual
environment (the sdist compiled again by pip, its build dependencies from PyPI) with
``LOOKUPD_REQUIRE_EXTENSION=1``, and ``lookupd version``, run outside the tree, must report
the compiled search, parse and mmdb cores. Exit status 1 names every failed check.

Usage: ``python tools/check_dist.py [--keep]`` (``make dist-check``; needs ``build``,
which the lint extra installs).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "lookupd"
# Building the wheel compiles the cores; a fresh venv downloads numpy, grpcio and more.
STEP_TIMEOUT_S = 600
CORES = ("_search_c", "_parse_c", "_mmdb_c")
# What `lookupd version` prints for the compiled cores.
CORE_LINES = ("search core: c", "parse core: c", "mmdb core: c")

# In the sdist (paths inside its top folder); ROOT's files matching these must all be there.
SDIST_FROM_TREE = (
    "ext/*.pyx",
    "lookupd/**/*.pyi",
    "lookupd/py.typed",
    "lookupd/data/*",
    "proto/**/*.proto",
    "tests/**/*",
    "tools/embed_data.py",
    "deploy/**/*",
    "Dockerfile",
    ".dockerignore",
)
SDIST_FILES = (
    *(f"ext/{core}.pyx" for core in CORES),
    "LICENSE",
    "lookupd/data/LICENSE-DATA.md",
    "README.md",
    "setup.py",
    "pyproject.toml",
    "MANIFEST.in",
    "proto/lookupd/v1/lookup.proto",
    "proto/grpc/health/v1/health.proto",
)
# Generated, compiled, cached or CI-only: never in the sdist.
SDIST_NEVER = re.compile(
    r"(^|/)(__pycache__|\.[a-z_]+_cache|\.hypothesis)/|\.(c|so|pyd|pyc|html)$"
    r"|^(\.ci|bench|build|dist)/"
)
WHEEL_FILES = (
    "lookupd/py.typed",
    "lookupd/data/LICENSE-DATA.md",
    "lookupd/v1/__init__.py",
    "lookupd/v1/lookup_pb2.py",
    "lookupd/v1/lookup_pb2.pyi",
    "lookupd/v1/lookup_pb2_grpc.py",
    "lookupd-*.dist-info/licenses/LICENSE",
    "lookupd-*.dist-info/licenses/lookupd/data/LICENSE-DATA.md",
    "lookupd-*.dist-info/entry_points.txt",
)
WHEEL_NEVER = re.compile(r"^(ext|tests|proto|tools)/|(^|/)__pycache__/|\.(c|pyx|pyc)$")


def _tree_files(patterns: Iterable[str]) -> set[str]:
    """ROOT's files matching ``patterns``, as relative POSIX paths, caches left out."""
    found = set()
    for pattern in patterns:
        for path in ROOT.glob(pattern):
            relative = path.relative_to(ROOT).as_posix()
            if path.is_file() and not SDIST_NEVER.search(relative):
                found.add(relative)
    return found


def _missing(names: set[str], wanted: Iterable[str]) -> list[str]:
    """The ``wanted`` patterns (``*`` within one path part) that match none of ``names``."""
    out = []
    for pattern in wanted:
        regex = re.compile("^" + re.escape(pattern).replace(r"\*", "[^/]*") + "$")
        if not any(regex.match(name) for name in names):
            out.append(pattern)
    return out


def sdist_problems(members: Sequence[str]) -> list[str]:
    """What is wrong with an sdist holding ``members`` (paths under its top folder)."""
    names = {member.split("/", 1)[1] for member in members if "/" in member}
    names.discard("")
    lacking = (_tree_files(SDIST_FROM_TREE) - names) | set(_missing(names, SDIST_FILES))
    problems = [f"sdist lacks {name}" for name in sorted(lacking)]
    problems += [f"sdist holds {name}" for name in sorted(names) if SDIST_NEVER.search(name)]
    return problems


def wheel_problems(names: Sequence[str]) -> list[str]:
    """What is wrong with a wheel holding ``names``."""
    present = set(names)
    wanted = [*WHEEL_FILES, *(f"lookupd/core/{core}.*.so" for core in CORES)]
    wanted += sorted(_tree_files(("lookupd/**/*.pyi", "lookupd/data/*")))
    problems = [f"wheel lacks {pattern}" for pattern in _missing(present, wanted)]
    problems += [f"wheel holds {name}" for name in sorted(present) if WHEEL_NEVER.search(name)]
    return problems


def _run(command: Sequence[str | Path], *, cwd: Path, env: dict[str, str]) -> str:
    """Run ``command``; its output, or SystemExit with that output if it fails."""
    started = time.monotonic()
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )
    print(f"   ({time.monotonic() - started:.0f} s) {' '.join(map(str, command))}", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"failed with status {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def _environment() -> dict[str, str]:
    """This environment, compiled cores required, with nothing pointing into the tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOKUPD_", "PYTHON"))}
    env.pop("VIRTUAL_ENV", None)
    env["LOOKUPD_REQUIRE_EXTENSION"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def build(out: Path) -> tuple[Path, Path]:
    """``python -m build`` into ``out``: the sdist, then the wheel built from it."""
    _run([sys.executable, "-m", "build", "--outdir", out, ROOT], cwd=ROOT, env=_environment())
    (sdist,) = out.glob(f"{NAME}-*.tar.gz")
    (wheel,) = out.glob(f"{NAME}-*.whl")
    return sdist, wheel


def _listing(title: str, names: Sequence[str]) -> None:
    print(f"== {title}: {len(names)} entries")
    for name in names:
        print(f"   {name}")


def check_archives(sdist: Path, wheel: Path) -> list[str]:
    """List both archives and return what is wrong with them."""
    with tarfile.open(sdist) as archive:
        members = [m.name for m in archive.getmembers() if m.isfile()]
    with zipfile.ZipFile(wheel) as archive:
        names = [name for name in archive.namelist() if not name.endswith("/")]
    _listing(sdist.name, members)
    _listing(wheel.name, names)
    return sdist_problems(members) + wheel_problems(names)


def installed_cores(artifact: Path, work: Path) -> list[str]:
    """Install ``artifact`` into a new venv; what its ``lookupd version`` misses of CORE_LINES."""
    venv = work / f"venv-{'sdist' if artifact.suffix == '.gz' else 'wheel'}"
    env = _environment()
    _run([sys.executable, "-m", "venv", venv], cwd=work, env=env)
    _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", artifact], cwd=work, env=env)
    # From `work`, outside the tree: only the installed package can be imported.
    said = _run([venv / "bin" / NAME, "version"], cwd=work, env=env)
    print("   " + "\n   ".join(said.splitlines()[:3]))
    lines = set(said.splitlines())
    return [f"{artifact.name} installed: no {line!r}" for line in CORE_LINES if line not in lines]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="lookupd-dist."))
    print(f"== python -m build (sdist, then the wheel from it) into {work / 'dist'}", flush=True)
    sdist, wheel = build(work / "dist")
    problems = check_archives(sdist, wheel)
    for artifact in (sdist, wheel):
        print(f"== pip install {artifact.name} into a new venv", flush=True)
        problems += installed_cores(artifact, work)
    if args.keep:
        print(f"== kept {work}")
    else:
        shutil.rmtree(work)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    verdict = "failed" if problems else "passed"
    print(f"== dist check {verdict} in {time.monotonic() - started:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
