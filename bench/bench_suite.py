"""The suite's own plumbing (bench/suite.py), on made-up figures: no timing here.

Collected with the benchmarks (``pytest bench/``), so CI's untimed run checks that the
report, the plots, the published copy and the regression guard still work.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _suite() -> ModuleType:
    path = Path(__file__).with_name("suite.py")
    spec = importlib.util.spec_from_file_location("_bench_suite_under_test", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


suite = _suite()


def _benchmark(
    name: str, median_s: float, workload: str, baseline: str | None = None
) -> dict[str, Any]:
    extra: dict[str, Any] = {"n_addresses": 1_000_000, "workload": workload}
    if baseline:
        extra["baseline"] = baseline
    return {"name": name, "stats": {"median": median_s}, "extra_info": extra}


def _parts() -> list[Any]:
    micro = suite.Part("micro", "Per-address cost")
    micro.data = suite.micro_figures(
        {
            "benchmarks": [
                _benchmark("test_lookup_v4_str_countries[row-uniform]", 0.050, "ipv4 row-uniform"),
                _benchmark("test_iptocc_v4[row-uniform]", 0.130, "ipv4 row-uniform", "iptocc"),
                _benchmark("test_lookup_v6_str", 0.100, "ipv6 row-uniform"),
            ]
        }
    )
    grpc = suite.Part("grpc", "Through gRPC")
    grpc.data = {
        "rates": {
            "lookupd text 1": 3_000.0,
            "echo text 1": 3_300.0,
            "lookupd packed 1000": 3e6,
            "echo packed 1000": 3.1e6,
            "naive text 10000": 1e5,
        }
    }
    latency = suite.Part("latency", "Latency")
    latency.data = {
        "percentile_ms": {
            "lookupd": {"50": 0.3, "99": 0.9, "100": 2.0},
            "echo": {"50": 0.25, "99": 0.8, "100": 1.5},
        }
    }
    workers = suite.Part("workers", "Workers")
    workers.data = {
        "throughput": [
            {"mode": "packed", "batch": 1000, "clients": 2, "workers": w, "rate": r}
            for w, r in ((1, 3e6), (2, 3.3e6))
        ],
        "memory": [
            {"data": "embedded", "workers": w, "pss_kib": 90_000 * w, "rss_kib": 95_000 * w}
            for w in (1, 2)
        ],
    }
    authz = suite.Part("authz", "Envoy")
    authz.data = {"rows": [{"kind": k, "rate": 5000.0} for k in suite.AUTHZ_KINDS]}
    build = suite.Part("build", "Build")
    build.data = {"seconds": {"build mmdb (full)": 0.3, "maxminddb iteration": 3.9}}
    return [micro, grpc, latency, workers, authz, build]


def test_micro_pairs_our_calls_with_their_peers() -> None:
    (pair,) = [row for row in _parts()[0].data["pairs"] if row["peer"] == "iptocc"]
    assert pair["ours"] == "lookup(strs).countries()"
    assert pair["ns"] == pytest.approx(50.0)
    assert pair["speedup"] == pytest.approx(2.6)
    # A pair with one side missing is left out, not reported half.
    assert len(_parts()[0].data["pairs"]) == 1


def test_every_part_draws_its_plot(tmp_path: Path) -> None:
    for part in _parts():
        suite.plot(part, tmp_path)
        assert part.plot == f"{part.name}.png"
        assert (tmp_path / part.plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = suite.Part("grpc", "nothing measured")
    suite.plot(empty, tmp_path)
    assert empty.plot is None


def test_the_guard_flags_a_fallen_ratio_only() -> None:
    saved = {"micro: a": 2.5, "micro: b": 1.0, "micro: gone": 3.0, "grpc: c": 1.0}
    assert suite.compare({"micro: a": 2.2, "micro: b": 1.5}, saved, 0.15) == []
    now = {"micro: a": 2.0, "micro: b": 0.99, "grpc: c": 0.5}
    assert suite.compare(now, saved, 0.15) == [
        "grpc: c: 1 -> 0.5 (-50%)",
        "micro: a: 2.5 -> 2 (-20%)",
    ]
    assert suite.compare(now, saved, 0.15, suite.GUARDED_PARTS) == ["micro: a: 2.5 -> 2 (-20%)"]
    assert suite.compare({"micro: a": 2.0}, saved, 0.25) == []


def test_the_report_names_the_machine_and_skips(tmp_path: Path) -> None:
    parts = _parts()
    parts[0].tables.append("| table |")
    parts[0].plot = "micro.png"
    parts[4].skipped = "wrk not found"
    header = {
        "mode": "quick",
        "started": "2026-12-04 15:30",
        "commit": "abc123",
        "machine": {"cpu": "AMD EPYC", "cores": 2, "python": "3.11.7", "system": "Linux 6"},
        "loadavg_start": (0.5, 0.5, 0.5),
        "loadavg_end": (0.9, 0.6, 0.5),
        "seconds": 200.0,
    }
    text = suite.report(parts, header, "report")
    assert "commit `abc123`" in text
    assert "AMD EPYC, 2 cores" in text
    assert "load average 0.50 before, 0.90 after" in text
    assert "![Per-address cost](report/micro.png)" in text
    assert "Skipped: wrk not found." in text


def test_publishing_rewrites_only_the_marked_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# Title\n\nkept\n\n{suite.REPORT_START}\nold\n{suite.REPORT_END}\n\nalso kept\n"
    )
    monkeypatch.setattr(suite, "README", readme)
    monkeypatch.setattr(suite, "PUBLISHED", tmp_path / "report")
    run = tmp_path / "run"
    run.mkdir()
    part = _parts()[1]
    suite.plot(part, run)
    suite.publish(run, [part], "new report ![x](report/grpc.png)")
    text = readme.read_text()
    assert "old" not in text
    assert "new report" in text
    assert text.startswith("# Title\n\nkept\n")
    assert text.endswith("also kept\n")
    assert (tmp_path / "report" / "grpc.png").exists()
    assert (tmp_path / "report" / "report.md").read_text() == "new report ![x](grpc.png)"


def test_a_machine_has_a_file_name() -> None:
    key = suite.machine_key({"cpu": "AMD EPYC 9654 96-Core Processor", "cores": 2})
    assert key == "amd-epyc-9654-96-core-processor-2c"
