"""Build every Cython module in ext/ into lookupd.core, beside its pure-Python twin.

A failed compile falls back to the pure-Python twins (with a warning) unless
LOOKUPD_REQUIRE_EXTENSION=1, which CI sets so a broken core can never pass
unnoticed; with it, a tree or sdist without ext/*.pyx is an error too.
LOOKUPD_NATIVE=1 adds -march=native for a machine-specific build.

The .pyx files are the sources (MANIFEST.in ships them in the sdist, never the
generated .c): they are cythonized when build_ext runs, so making an sdist needs
no Cython and writes no .c.
"""

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_REQUIRE_EXTENSION = os.environ.get("LOOKUPD_REQUIRE_EXTENSION") == "1"
_NO_EXTENSIONS = os.environ.get("LOOKUPD_NO_EXTENSIONS") == "1"
_HERE = Path(__file__).parent

# Portable by default: a wheel must run on any x86-64; -march=native is opt-in.
_COMPILE_ARGS = ["-O3", "-fno-strict-aliasing"]
if os.environ.get("LOOKUPD_NATIVE") == "1":
    _COMPILE_ARGS.append("-march=native")

# Global directives live here and only here.
_DIRECTIVES = {
    "language_level": 3,
    "embedsignature": True,
    "freethreading_compatible": True,
}


class OptionalBuildExt(build_ext):
    """Build the extensions, turning a failure into a warning unless required."""

    def run(self) -> None:
        try:
            self.extensions = _cythonize(self.extensions)
            super().run()
        except Exception as exc:
            self._give_up(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._give_up(exc)

    def _give_up(self, exc: BaseException) -> None:
        if _REQUIRE_EXTENSION:
            raise exc
        print(
            f"WARNING: building the lookupd C core failed ({exc}); "
            "falling back to the slow pure-Python core",
            file=sys.stderr,
        )


def _extensions() -> list[Extension]:
    """One extension per ext/*.pyx, its sources still .pyx (see :func:`_cythonize`)."""
    if _NO_EXTENSIONS:
        return []
    sources = sorted((_HERE / "ext").glob("*.pyx"))
    if not sources:
        message = f"no Cython sources (ext/*.pyx) under {_HERE.resolve()}"
        if _REQUIRE_EXTENSION:
            # An sdist made without MANIFEST.in once installed the slow core silently.
            raise SystemExit(f"error: {message}, and LOOKUPD_REQUIRE_EXTENSION=1")
        print(f"WARNING: {message}; not building the C core", file=sys.stderr)
        return []
    return [
        Extension(
            f"lookupd.core.{source.stem}",
            [str(source.relative_to(_HERE))],
            extra_compile_args=_COMPILE_ARGS,
        )
        for source in sources
    ]


def _cythonize(extensions: list[Extension]) -> list[Extension]:
    """The extensions, their .pyx sources turned into C (written beside them).

    The same objects, sources swapped: build_ext has already set its attributes on them.
    """
    if not extensions:
        return extensions
    try:
        from Cython.Build import cythonize
    except ImportError:
        if _REQUIRE_EXTENSION:
            raise
        print("WARNING: Cython is not installed; not building the C core", file=sys.stderr)
        return []
    built = cythonize(extensions, compiler_directives=_DIRECTIVES, include_path=["ext"])
    sources = {extension.name: extension.sources for extension in built}
    for extension in extensions:
        extension.sources = sources[extension.name]
    return extensions


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
