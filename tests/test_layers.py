"""What each entry point loads, in a fresh interpreter: a client-only user pays for no server.

The import rules themselves are import-linter contracts (``[tool.importlinter]`` in
pyproject.toml, run by ``make lint``); these tests check what a user actually gets at run
time, lazy imports and the package root included.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Prints the lookupd modules and the third-party top-level packages loaded after the import.
_PROBE = """
import json, sys
before = set(sys.modules)
{statement}
loaded = sorted(set(sys.modules) - before)
print(json.dumps(loaded))
"""


def _loaded_by(statement: str) -> set[str]:
    """Return the modules ``statement`` loads in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.format(statement=statement)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded: list[str] = json.loads(result.stdout)
    return set(loaded)


def _under(modules: set[str], *roots: str) -> set[str]:
    """Return the modules that are one of ``roots`` or inside one."""
    return {m for m in modules if any(m == r or m.startswith(r + ".") for r in roots)}


def test_client_loads_no_server_policy_or_data_file_module() -> None:
    loaded = _loaded_by("import lookupd.client")
    assert "lookupd.client" in loaded
    assert (
        _under(
            loaded,
            "lookupd.server",
            "lookupd.policies",
            "lookupd.datafiles",
            "lookupd.cli",
            "lookupd.core.database",
            "yaml",
            "pycountry",
            "prometheus_client",
        )
        == set()
    )


def test_client_names_work_without_the_engine() -> None:
    loaded = _loaded_by("from lookupd.client import AsyncClient, Client; Client, AsyncClient")
    assert _under(loaded, "lookupd.core.database", "lookupd.datafiles", "yaml") == set()


def test_package_root_loads_no_grpc() -> None:
    loaded = _loaded_by("import lookupd")
    assert _under(loaded, "grpc", "google.protobuf", "yaml", "pycountry") == set()
    # The public names load on first use only.
    assert _under(loaded, "lookupd.core.database", "lookupd.datafiles") == set()


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("open", "lookupd.datafiles.open"),
        ("Database", "lookupd.core.database"),
        ("Status", "lookupd.codes"),
        ("Verdict", "lookupd.codes"),
        ("Reason", "lookupd.codes"),
        ("RangeTable", "lookupd.core.table"),
    ],
)
def test_public_names_load_on_first_use(name: str, module: str) -> None:
    loaded = _loaded_by(f"import lookupd; lookupd.{name}")
    assert module in loaded
    assert _under(loaded, "grpc") == set()


def test_open_database_loads_no_grpc_or_policies() -> None:
    loaded = _loaded_by("import lookupd; lookupd.open().lookup(['1.1.1.1'])")
    assert _under(loaded, "grpc", "lookupd.policies", "lookupd.server", "yaml") == set()


def test_unknown_root_attribute_is_an_attribute_error() -> None:
    import lookupd

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lookupd.nope  # noqa: B018  # the miss is the point


def test_root_dir_lists_the_lazy_names() -> None:
    import lookupd

    assert {"open", "Database", "Status", "__version__"} <= set(dir(lookupd))
    assert set(lookupd.__all__) <= set(dir(lookupd))
