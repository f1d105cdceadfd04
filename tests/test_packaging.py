"""What the installed package holds: every package of the source tree is listed for
setuptools (a missing one installs without its modules, and only an install from the
wheel or sdist would notice: CI's plain install found lookupd.server.authz missing)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_for_setuptools() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "lookupd").rglob("__init__.py")
        if "__pycache__" not in path.parts
    }
    assert listed == found
