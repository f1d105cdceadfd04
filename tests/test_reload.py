"""The Loader: first load, reloads by trigger and by watching, failures keep the old."""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

import pytest
from versions import (
    CHANGING_ADDRESS,
    country_of_version,
    replace_atomically,
    write_data,
    write_policies,
)

from lookupd.errors import LookupdError
from lookupd.server.answers import Answerer
from lookupd.server.logs import field_value
from lookupd.server.reload import FileState, Loader, file_state, preload


class _Published:
    """What the loader published, in order."""

    def __init__(self) -> None:
        self.answerers: list[Answerer] = []

    def __call__(self, answerer: Answerer) -> None:
        self.answerers.append(answerer)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    data, policies = tmp_path / "data.lookupd", tmp_path / "policies.yaml"
    write_data(data, 0)
    write_policies(policies, 0)
    return data, policies


def _loader(files: tuple[Path, Path], published: _Published) -> Loader:
    return Loader(*files, publish=published)


def _country(answerer: Answerer) -> str | None:
    return answerer.db.lookup_one(CHANGING_ADDRESS)


def _reload_events(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "lookupd_event", None) == "reload"]


def test_load_publishes_the_files(files: tuple[Path, Path]) -> None:
    published = _Published()
    loader = _loader(files, published)
    answerer = loader.load()
    assert published.answerers == [answerer]
    assert loader.current is answerer
    assert _country(answerer) == country_of_version(0)
    assert answerer.policy_set is not None
    assert set(answerer.policy_set.policies) == {"only-au", "deny-changing"}


def test_load_of_a_missing_file_raises(tmp_path: Path) -> None:
    published = _Published()
    with pytest.raises(LookupdError, match="no such file"):
        Loader(tmp_path / "nope", None, publish=published).load()
    assert published.answerers == []


def test_reload_swaps_in_new_data_and_policies(files: tuple[Path, Path]) -> None:
    published = _Published()
    loader = _loader(files, published)
    first = loader.load()
    data_version = write_data(files[0], 1)
    policy_version = write_policies(files[1], 1)
    outcome = loader.reload("signal")
    assert outcome.ok
    assert outcome.data_changed
    assert outcome.policies_changed
    assert outcome.answerer.version.id == data_version
    assert outcome.answerer.policy_set is not None
    assert outcome.answerer.policy_set.version == policy_version
    assert published.answerers == [first, outcome.answerer]
    assert _country(outcome.answerer) == country_of_version(1)
    # The old answerer still answers from the old data (calls in flight keep theirs).
    assert _country(first) == country_of_version(0)


def test_reload_of_unchanged_files_says_so(files: tuple[Path, Path]) -> None:
    loader = _loader(files, _Published())
    loader.load()
    outcome = loader.reload("admin")
    assert outcome.ok
    assert not outcome.data_changed
    assert not outcome.policies_changed


@pytest.mark.parametrize(
    ("which", "content", "problem"),
    [
        ("data", b"LOOKUPD-SNAPSHOT but not really", "snapshot|format|read"),
        ("data", b"", "empty|format|read|no rows"),
        ("policies", b"policies:\n  x:\n    description: d\n    allow_countries: [MI]\n", "MI"),
        ("policies", b"policies: [unclosed\n", "YAML|yaml|parse"),
    ],
)
def test_a_bad_file_keeps_the_last_good_version(
    files: tuple[Path, Path],
    which: str,
    content: bytes,
    problem: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    published = _Published()
    loader = _loader(files, published)
    good = loader.load()
    replace_atomically(files[0] if which == "data" else files[1], content)
    with caplog.at_level(logging.INFO, logger="lookupd"):
        outcome = loader.reload("watch")
    assert not outcome.ok
    assert outcome.answerer is good
    assert loader.current is good
    assert published.answerers == [good]
    assert outcome.error
    assert re.search(problem, outcome.error), outcome.error
    (event,) = _reload_events(caplog)
    assert event.levelno == logging.ERROR
    assert field_value(event, "result") == "failure"
    assert field_value(event, "data_version") == good.version.id


def test_a_truncated_snapshot_is_refused(files: tuple[Path, Path]) -> None:
    loader = _loader(files, _Published())
    good = loader.load()
    write_data(files[0], 3)
    data = files[0].read_bytes()
    replace_atomically(files[0], data[: len(data) - 100])
    outcome = loader.reload("watch")
    assert not outcome.ok
    assert loader.current is good


def test_poll_reloads_a_changed_file_once_it_holds_still(files: tuple[Path, Path]) -> None:
    published = _Published()
    loader = _loader(files, published)
    loader.load()
    assert loader.poll() is None  # nothing changed
    version = write_data(files[0], 2)
    # First sight of the change: it must hold for one more poll.
    assert loader.poll() is None
    outcome = loader.poll()
    assert outcome is not None
    assert outcome.ok
    assert outcome.data_changed
    assert not outcome.policies_changed
    assert outcome.answerer.version.id == version
    # The policies were not re-read: the same PolicySet object is reused.
    assert outcome.answerer.policy_set is published.answerers[0].policy_set
    assert loader.poll() is None


def test_poll_does_not_retry_a_broken_file_until_it_changes(
    files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    loader = _loader(files, _Published())
    good = loader.load()
    replace_atomically(files[1], b"policies: 3\n")
    with caplog.at_level(logging.INFO, logger="lookupd"):
        assert loader.poll() is None
        failed = loader.poll()
        assert failed is not None
        assert not failed.ok
        for _ in range(3):
            assert loader.poll() is None
    assert len(_reload_events(caplog)) == 1  # one clear error, not one per poll
    assert loader.current is good
    version = write_policies(files[1], 5)
    loader.poll()
    fixed = loader.poll()
    assert fixed is not None
    assert fixed.ok
    assert fixed.answerer.policy_set is not None
    assert fixed.answerer.policy_set.version == version


def test_a_file_that_disappears_keeps_the_last_good_version(files: tuple[Path, Path]) -> None:
    loader = _loader(files, _Published())
    good = loader.load()
    os.unlink(files[0])
    loader.poll()
    outcome = loader.poll()
    assert outcome is not None
    assert not outcome.ok
    assert "no such file" in outcome.error
    assert loader.current is good


def test_embedded_data_reloads_only_the_policies(tmp_path: Path) -> None:
    policies = tmp_path / "p.yaml"
    write_policies(policies, 0)
    loader = Loader(None, policies, publish=_Published())
    first = loader.load()
    write_policies(policies, 1)
    outcome = loader.reload("signal")
    assert outcome.ok
    assert outcome.answerer.db is first.db
    assert outcome.policies_changed


def test_default_policies_are_the_packaged_example(files: tuple[Path, Path]) -> None:
    answerer = Loader(files[0], None, publish=_Published()).load()
    assert answerer.policy_set is not None
    assert "api-supported" in answerer.policy_set.policies


def test_preloaded_data_is_used_and_its_state_kept(files: tuple[Path, Path]) -> None:
    preloaded = preload(*files)
    loader = Loader(*files, publish=_Published(), preloaded=preloaded)
    answerer = loader.load()
    assert answerer.db is preloaded.db
    assert answerer.policy_set is preloaded.policies
    assert loader.refresh() is None
    assert loader.poll() is None
    assert loader.poll() is None  # the preloaded files' states count as read


def test_refresh_catches_up_with_files_changed_since_the_preload(
    files: tuple[Path, Path],
) -> None:
    preloaded = preload(*files)
    version = write_data(files[0], 5)
    loader = Loader(*files, publish=_Published(), preloaded=preloaded)
    assert loader.load().db is preloaded.db
    outcome = loader.refresh()
    assert outcome is not None
    assert outcome.ok
    assert outcome.answerer.version.id == version
    assert outcome.answerer.policy_set is preloaded.policies  # unchanged: not re-read


def test_preloaded_versions_serve_when_a_file_broke_since(files: tuple[Path, Path]) -> None:
    preloaded = preload(*files)
    replace_atomically(files[1], b"policies: [broken\n")
    loader = Loader(*files, publish=_Published(), preloaded=preloaded)
    good = loader.load()  # no file is read: a restarted worker always starts
    outcome = loader.refresh()
    assert outcome is not None
    assert not outcome.ok
    assert loader.current is good


def test_preload_of_bad_policies_raises(files: tuple[Path, Path]) -> None:
    replace_atomically(files[1], b"policies: 3\n")
    with pytest.raises(LookupdError):
        preload(*files)


def test_file_state_tells_a_replaced_file_apart(tmp_path: Path) -> None:
    path = tmp_path / "f"
    assert file_state(path) is None
    assert file_state(None) is None
    path.write_bytes(b"one")
    first = file_state(path)
    assert isinstance(first, FileState)
    replace_atomically(path, b"two")
    assert file_state(path) != first


def test_watch_reloads_in_the_background(files: tuple[Path, Path]) -> None:
    published = _Published()
    loader = _loader(files, published)
    loader.load()
    stop = threading.Event()
    thread = loader.watch(0.01, stop)
    try:
        version = write_data(files[0], 4)
        for _ in range(500):
            current = loader.current
            if current is not None and current.version.id == version:
                break
            threading.Event().wait(0.01)
        assert loader.current is not None
        assert loader.current.version.id == version
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_concurrent_reloads_are_serialised(files: tuple[Path, Path]) -> None:
    published = _Published()
    loader = _loader(files, published)
    loader.load()
    write_data(files[0], 6)
    outcomes = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(loader.reload("admin"))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(outcomes) == 4
    assert all(outcome.ok for outcome in outcomes)
    # Each reload saw the one before it finished: exactly one changed the data.
    assert sum(outcome.data_changed for outcome in outcomes) == 1
    assert len(published.answerers) == 5
