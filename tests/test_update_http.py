"""``lookupd.update.http.fetch`` against a local origin: statuses, retries, limits, validators."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from origin import Origin, Reply, running_origin

from lookupd.update.errors import DownloadError
from lookupd.update.http import Policy, fetch
from lookupd.update.secrets import Redactor

_FAST = Policy(timeout_s=5.0, attempts=3, backoff_s=0.01, max_delay_s=0.05)


@pytest.fixture
def origin() -> Iterator[Origin]:
    with running_origin() as server:
        yield server


class _Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay_s: float) -> None:
        self.delays.append(delay_s)


def test_a_200_is_written_with_its_digest_validators_and_date(
    origin: Origin, tmp_path: Path
) -> None:
    body = b"1.0.0.0,1.0.0.255,AU\n" * 100
    origin.file("/a.csv", body, stamp=1_700_000_000)
    got = fetch(origin.url("/a.csv"), tmp_path, policy=_FAST)
    assert not got.not_modified
    assert got.path is not None
    assert got.path.read_bytes() == body
    assert got.sha256 == hashlib.sha256(body).hexdigest()
    assert got.size == len(body)
    assert got.etag is not None
    assert got.last_modified_s == 1_700_000_000
    assert os.stat(got.path).st_mtime == 1_700_000_000
    assert got.filename == "a.csv"


def test_validators_get_a_304_and_nothing_is_written(origin: Origin, tmp_path: Path) -> None:
    origin.file("/a.csv", b"data")
    first = fetch(origin.url("/a.csv"), tmp_path)
    assert first.path is not None
    before = set(tmp_path.iterdir())
    again = fetch(
        origin.url("/a.csv"), tmp_path, etag=first.etag, last_modified=first.last_modified
    )
    assert again.not_modified
    assert again.path is None
    assert set(tmp_path.iterdir()) == before
    last = origin.hits("/a.csv")[-1]
    assert last.headers["If-None-Match"] == first.etag
    assert last.headers["If-Modified-Since"] == first.last_modified


def test_if_modified_since_alone_gets_a_304(origin: Origin, tmp_path: Path) -> None:
    origin.serve("/b.csv", Reply(body=b"x", last_modified=1_700_000_000))
    first = fetch(origin.url("/b.csv"), tmp_path)
    assert first.etag is None
    assert fetch(origin.url("/b.csv"), tmp_path, last_modified=first.last_modified).not_modified


@pytest.mark.parametrize("status", [404, 401, 403])
def test_client_errors_are_not_retried(origin: Origin, tmp_path: Path, status: int) -> None:
    origin.serve("/gone", Reply(status))
    sleeps = _Sleeps()
    with pytest.raises(DownloadError, match=f"HTTP {status}") as raised:
        fetch(origin.url("/gone"), tmp_path, policy=_FAST, sleep=sleeps)
    assert raised.value.status == status
    assert len(origin.hits("/gone")) == 1
    assert sleeps.delays == []
    assert list(tmp_path.iterdir()) == []


def test_a_500_is_retried_with_growing_delays_then_succeeds(origin: Origin, tmp_path: Path) -> None:
    origin.serve("/f", Reply(500), Reply(503), Reply(body=b"ok"))
    sleeps = _Sleeps()
    got = fetch(origin.url("/f"), tmp_path, policy=_FAST, sleep=sleeps)
    assert got.path is not None
    assert got.path.read_bytes() == b"ok"
    assert len(origin.hits("/f")) == 3
    assert len(sleeps.delays) == 2
    # Exponential with jitter: the n-th delay is in [base * 2^n, 2 * base * 2^n], capped.
    assert 0.01 <= sleeps.delays[0] <= 0.02
    assert 0.02 <= sleeps.delays[1] <= 0.04


def test_persistent_5xx_fails_after_the_attempts(origin: Origin, tmp_path: Path) -> None:
    origin.serve("/f", Reply(502))
    with pytest.raises(DownloadError, match=r"HTTP 502 .*after 3 attempts"):
        fetch(origin.url("/f"), tmp_path, policy=_FAST, sleep=_Sleeps())
    assert len(origin.hits("/f")) == 3


def test_429_retry_after_is_honoured_within_the_cap(origin: Origin, tmp_path: Path) -> None:
    origin.serve(
        "/r",
        Reply(429, headers={"Retry-After": "7"}),
        Reply(429, headers={"Retry-After": "3600"}),
        Reply(body=b"ok"),
    )
    sleeps = _Sleeps()
    policy = Policy(timeout_s=5, attempts=3, backoff_s=0.01, max_delay_s=30)
    got = fetch(origin.url("/r"), tmp_path, policy=policy, sleep=sleeps)
    assert got.path is not None
    assert sleeps.delays == [7.0, 30.0]


def test_a_slow_response_times_out(origin: Origin, tmp_path: Path) -> None:
    origin.serve("/slow", Reply(body=b"late", delay_s=1.0))
    policy = Policy(timeout_s=0.2, attempts=1)
    with pytest.raises(DownloadError, match=r"timed out after 0\.2 s"):
        fetch(origin.url("/slow"), tmp_path, policy=policy)
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_body_is_detected_and_retried(origin: Origin, tmp_path: Path) -> None:
    body = b"x" * 10_000
    origin.serve("/t", Reply(body=body, truncate_to=4_000), Reply(body=body))
    got = fetch(origin.url("/t"), tmp_path, policy=_FAST, sleep=_Sleeps())
    assert got.path is not None
    assert got.size == 10_000
    assert len(origin.hits("/t")) == 2
    assert [p for p in tmp_path.iterdir() if p != got.path] == []


def test_a_body_always_truncated_fails(origin: Origin, tmp_path: Path) -> None:
    origin.serve("/t", Reply(body=b"x" * 10_000, truncate_to=100))
    with pytest.raises(DownloadError, match=r"broke off|truncated"):
        fetch(origin.url("/t"), tmp_path, policy=_FAST, sleep=_Sleeps())
    assert list(tmp_path.iterdir()) == []


def test_the_size_limit_refuses_without_retrying(origin: Origin, tmp_path: Path) -> None:
    origin.serve("/big", Reply(body=b"x" * 5000))
    policy = Policy(timeout_s=5, attempts=3, backoff_s=0.01, max_bytes=1000)
    with pytest.raises(DownloadError, match="more than the limit of 1,000"):
        fetch(origin.url("/big"), tmp_path, policy=policy, sleep=_Sleeps())
    assert len(origin.hits("/big")) == 1
    assert list(tmp_path.iterdir()) == []


def test_credentials_do_not_follow_a_redirect_to_another_host(tmp_path: Path) -> None:
    with running_origin() as first, running_origin() as storage:
        storage.serve("/blob", Reply(body=b"payload"))
        first.serve("/dl", Reply(302, headers={"Location": storage.url("/blob")}))
        got = fetch(
            first.url("/dl"), tmp_path, headers={"Authorization": "Basic c2VjcmV0OnNlY3JldA=="}
        )
        assert got.path is not None
        assert got.path.read_bytes() == b"payload"
        assert first.hits("/dl")[0].headers["Authorization"] == "Basic c2VjcmV0OnNlY3JldA=="
        assert "Authorization" not in storage.hits("/blob")[0].headers


def test_errors_are_redacted(origin: Origin, tmp_path: Path) -> None:
    origin.serve("/download/", Reply(403))
    redactor = Redactor(["s3cr3t-token"])
    url = origin.url("/download/?token=s3cr3t-token&file=DB1LITECSV")
    with pytest.raises(DownloadError) as raised:
        fetch(url, tmp_path, redactor=redactor)
    assert "s3cr3t-token" not in str(raised.value)
    assert "token=***" in str(raised.value)


def test_redactor_hides_user_info_query_credentials_and_known_values() -> None:
    redact = Redactor(["hunter2"])
    text = "https://user:pw@host/x?license_key=abc&file=1 failed: hunter2"
    assert redact(text) == "https://***@host/x?license_key=***&file=1 failed: ***"
