"""What every fuzz target shares: the libFuzzer defaults, the entry point, the allowed errors.

Each ``fuzz/fuzz_*.py`` is a script: ``python fuzz/fuzz_parse.py [libFuzzer flags] [corpus
dirs]``. The targets import lookupd, then instrument its Python code
(:func:`instrument_lookupd`) so that it reports coverage to libFuzzer. The compiled cores
(``lookupd.core._parse_c``, ``_search_c``) are not instrumented (that needs a build with
``-fsanitize=fuzzer-no-link``), so the fuzzer steers by the Python code around them; a crash
inside them (SIGSEGV, SIGBUS) is still caught and reported by libFuzzer as a finding.
"""

from __future__ import annotations

import inspect
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FunctionType, ModuleType

import atheris
from atheris.instrument_bytecode import patch_code

# libFuzzer flags every target gets unless the command line gives its own: a slow input or
# one that takes memory without bound is a finding, not a hang of the run.
DEFAULT_FLAGS = ("-timeout=20", "-rss_limit_mb=2048", "-print_final_stats=1")


class Finding(AssertionError):
    """An invariant of a target does not hold: libFuzzer saves the input and stops."""


def main(test_one: Callable[[bytes], None]) -> None:
    """Run ``test_one`` under libFuzzer with ``sys.argv`` (defaults added)."""
    given = {arg.split("=", 1)[0] for arg in sys.argv[1:] if arg.startswith("-")}
    extra = [flag for flag in DEFAULT_FLAGS if flag.split("=", 1)[0] not in given]
    atheris.Setup([sys.argv[0], *extra, *sys.argv[1:]], test_one)
    atheris.Fuzz()


def check(condition: bool, what: str) -> None:
    """Raise :class:`Finding` with ``what`` unless ``condition`` holds."""
    if not condition:
        raise Finding(what)


def instrument_module(module: ModuleType, *, dataflow: bool = True) -> None:
    """Instrument, in place, the functions and methods of a module imported already.

    ``dataflow`` also traces comparisons (what lets libFuzzer learn the constants an input
    is compared with). Leave it off for modules that compare numpy arrays: atheris' comparison
    hook keeps a reference to array operands, so every call leaks its temporary arrays
    (hundreds of KB per snapshot load, seen with atheris 3.0.0 and numpy 2.4).
    """
    for value in vars(module).values():
        members = vars(value).values() if inspect.isclass(value) else [value]
        for member in members:
            function = getattr(member, "__func__", member)
            if isinstance(function, FunctionType) and function.__module__ == module.__name__:
                function.__code__ = patch_code(function.__code__, dataflow)


def instrument_lookupd(dataflow: tuple[str, ...] = ()) -> None:
    """Instrument every ``lookupd`` module loaded so far (call it after the imports).

    Comparisons are traced only in the modules named in ``dataflow`` (see
    :func:`instrument_module`): text and wire parsing, where they guide the fuzzer most.
    """
    for name, module in sorted(sys.modules.items()):
        if (name == "lookupd" or name.startswith("lookupd.")) and module is not None:
            instrument_module(module, dataflow=name in dataflow)


def scratch_directory() -> Path:
    """A new directory for a target's files: in /dev/shm where there is one (no disk I/O).

    libFuzzer ends the process with C ``exit``, past Python's clean-up, so each directory is
    named after its process and removed by the next target that finds its process gone.
    """
    base = Path("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    for old in base.glob("lookupd-fuzz-*"):
        pid = old.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"lookupd-fuzz-{os.getpid()}-", dir=base))
