"""Shared fixtures: both cores, Hypothesis profiles, vendored data paths."""

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

DATA_DIR = Path(__file__).parent / "data"

settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("thorough", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _importable(*names: str) -> list[ModuleType]:
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            continue
    return modules


SEARCH_CORES = _importable("lookupd.core._search_c", "lookupd.core._search_py")
PARSE_CORES = _importable("lookupd.core._parse_c", "lookupd.core._parse_py")
MMDB_CORES = _importable("lookupd.core._mmdb_c", "lookupd.core._mmdb_py")


def _core_id(module: ModuleType) -> str:
    return module.__name__.rsplit(".", 1)[-1]


@pytest.fixture(params=SEARCH_CORES, ids=_core_id)
def search_core(request: pytest.FixtureRequest) -> ModuleType:
    """Each search core in turn: the compiled one (when built) and the pure twin."""
    module: ModuleType = request.param
    return module


@pytest.fixture(params=PARSE_CORES, ids=_core_id)
def parse_core(request: pytest.FixtureRequest) -> ModuleType:
    """Each address parser in turn: the compiled one (when built) and the pure twin."""
    module: ModuleType = request.param
    return module


@pytest.fixture(params=MMDB_CORES, ids=_core_id)
def mmdb_core(request: pytest.FixtureRequest) -> ModuleType:
    """Each MaxMind DB walker in turn: the compiled one (when built) and the pure twin."""
    module: ModuleType = request.param
    return module
