"""What a load test measured, as text for a person and JSON for a program."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lookupd.loadgen.run import Plan
from lookupd.loadgen.worker import Tally, new_histogram

PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
CLIENT_BUSY_SHARE = 0.9
"""A client process busy this share of a core or more is the bottleneck, not the server."""
ON_RATE_SHARE = 0.95
"""An open loop that sent fewer than this share of the calls due fell behind its rate."""


@dataclass(frozen=True, slots=True)
class Report:
    """A finished test: its plan and what every process saw, merged."""

    plan: Plan
    tally: Tally

    @property
    def calls_per_s(self) -> float:
        """Calls finished (answered or failed) per second of the measured time."""
        return self.tally.calls / self.tally.wall_s if self.tally.wall_s > 0 else 0.0

    @property
    def addresses_per_s(self) -> float:
        """Addresses answered per second."""
        return self.tally.addresses / self.tally.wall_s if self.tally.wall_s > 0 else 0.0

    @property
    def client_cpu_share(self) -> float:
        """CPU each client process used, as a share of one core (mean over processes)."""
        if self.tally.wall_s <= 0:
            return 0.0
        return self.tally.cpu_s / self.plan.processes / self.tally.wall_s

    def latency_us(self) -> dict[str, int]:
        """Latency percentiles and the maximum, in microseconds (none if no call ended)."""
        histogram = new_histogram()
        if self.tally.histogram:
            histogram.decode_and_add(self.tally.histogram)
        if histogram.get_total_count() == 0:
            return {}
        out = {f"p{p:g}": int(histogram.get_value_at_percentile(p)) for p in PERCENTILES}
        out["max"] = int(histogram.get_max_value())
        out["mean"] = round(histogram.get_mean_value())
        return out

    def verdict(self) -> str:
        """Whether the figures are the server's, or the client's limits."""
        load, tally = self.plan.load, self.tally
        if load.rate is not None and tally.wall_s > 0:
            expected = load.rate * tally.wall_s
            if tally.due < ON_RATE_SHARE * expected and load.requests is None:
                return (
                    f"client saturated: it sent {tally.due:,} calls where {expected:,.0f} fell "
                    "due; the rate was not reached (add --processes, or lower --rate)"
                )
        if self.client_cpu_share >= CLIENT_BUSY_SHARE:
            return (
                f"client saturated: each client process used {self.client_cpu_share:.0%} of a "
                "core; the server may answer more (add --processes, on more cores)"
            )
        return (
            f"client not saturated ({self.client_cpu_share:.0%} of a core per process): the "
            "figures are the server's and the network's"
        )

    def as_json(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        plan, load, tally = self.plan, self.plan.load, self.tally
        return {
            "target": plan.target,
            "tls": plan.tls is not None,
            "rpc": plan.calls.rpc,
            "batch": plan.calls.batch,
            "processes": plan.processes,
            "connections": load.connections,
            "concurrency": load.concurrency,
            "mode": "closed" if load.rate is None else "open",
            "rate": load.rate,
            "duration_s": tally.wall_s,
            "calls": tally.calls,
            "ok": tally.ok,
            "errors": dict(sorted(tally.errors.items())),
            "calls_per_s": self.calls_per_s,
            "addresses_per_s": self.addresses_per_s,
            "latency_us": self.latency_us(),
            "data_versions": dict(tally.versions.most_common()),
            "calls_due": tally.due if load.rate is not None else None,
            "late_us_max": tally.late_us_max if load.rate is not None else None,
            "client_cpu_share": self.client_cpu_share,
            "client_saturated": self.verdict().startswith("client saturated"),
            "verdict": self.verdict(),
        }

    def text(self) -> str:
        """The report for a person."""
        plan, load, tally = self.plan, self.plan.load, self.tally
        mode = "closed loop" if load.rate is None else f"open loop at {load.rate:,.0f} calls/s"
        lines = [
            f"target: {plan.target} ({'TLS' if plan.tls is not None else 'plaintext'})",
            f"rpc: {plan.calls.rpc}, batch {plan.calls.batch:,}; {mode}; {plan.processes} "
            f"process(es), {load.connections} connection(s), {load.concurrency} in flight",
            f"calls: {tally.calls:,} in {tally.wall_s:.2f} s: {self.calls_per_s:,.0f} calls/s, "
            f"{self.addresses_per_s:,.0f} addresses/s",
            f"answered: {tally.ok:,}; failed: {tally.calls - tally.ok:,}"
            + "".join(f", {code} {count:,}" for code, count in sorted(tally.errors.items())),
        ]
        latency = self.latency_us()
        if latency:
            lines.append(
                "latency (ms): "
                + ", ".join(f"{name} {micros / 1000:.3f}" for name, micros in latency.items())
            )
        if load.rate is not None:
            lines.append(
                f"calls due: {tally.due:,}; the latest was sent "
                f"{tally.late_us_max / 1000:.1f} ms after it fell due"
            )
        for version, count in tally.versions.most_common():
            lines.append(f"data version {version[:12]}: {count:,} calls")
        lines.append(self.verdict())
        return "\n".join(lines)
