"""Guard: the compiled cores are present whenever the build was required to make them."""

import importlib
import os

import pytest

_REQUIRED = os.environ.get("LOOKUPD_REQUIRE_EXTENSION") == "1"
_PURE = bool(os.environ.get("LOOKUPD_NO_EXTENSIONS"))


@pytest.mark.skipif(not _REQUIRED or _PURE, reason="compiled core not required in this run")
@pytest.mark.parametrize(
    "name", ["lookupd.core._search_c", "lookupd.core._parse_c", "lookupd.core._mmdb_c"]
)
def test_c_core_loaded(name: str) -> None:
    importlib.import_module(name)
    from lookupd.core import _mmdb, _parse, _search

    assert _search.CORE == "c"
    assert _parse.CORE == "c"
    assert _mmdb.CORE == "c"


@pytest.mark.skipif(not _PURE, reason="only meaningful in the pure-Python run")
def test_pure_core_selected() -> None:
    from lookupd.core import _mmdb, _parse, _search

    assert _search.CORE == "python"
    assert _parse.CORE == "python"
    assert _mmdb.CORE == "python"
