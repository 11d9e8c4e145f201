"""The report checked against the other side: what the demo made and what the upstream counted.

The tuning report is computed only from the telemetry file; the upstream counts requests,
connections and faults on its own, in another process. Each check puts one figure of the
report next to the same quantity counted independently, so a reader (and the tests) can see
that the report's numbers are the real ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from resilient_http.analysis.model import UpstreamReport
from resilient_http.analysis.report import Analysis
from resilient_http.demo.load import RunResult

__all__ = ["Check", "cross_check"]


@dataclass(frozen=True)
class Check:
    """One figure of the report and the same quantity counted elsewhere."""

    name: str
    report: int | None
    expected: int
    source: str
    """Where ``expected`` comes from, e.g. ``upstream: requests received``."""

    @property
    def agrees(self) -> bool:
        """Whether the report's figure is the independently counted one."""
        return self.report == self.expected


def cross_check(analysis: Analysis, run: RunResult) -> list[Check]:
    """The report's row for the run's upstream, checked figure by figure."""
    row = _host_row(analysis, run.upstream_address)
    if row is None:  # the run left nothing in the file: every figure is missing
        row = UpstreamReport(run.upstream_address, None, None, "none")
    load, upstream = run.load, run.upstream
    dropped = (
        upstream.stale_closes + upstream.resets + upstream.disconnects + upstream.outage_closes
    )
    return [
        Check("calls", _whole(row.requests), load.calls, "demo: calls made"),
        # Attempts that had a connection sent their request; the others (refused by a down
        # upstream, or a hedge cancelled while it waited for one) never reached it.
        Check(
            "attempts sent",
            _whole(row.connections_acquired),
            upstream.requests,
            "upstream: requests",
        ),
        Check(
            "new connections",
            _whole(row.new_connections),
            upstream.connections_opened,
            "upstream: connections",
        ),
        Check(
            "connection_closed retries",
            _whole(row.retries.get("connection_closed", 0.0) if row.source != "none" else None),
            dropped - load.connection_errors,
            f"upstream: {dropped} stale closes + resets + outage closes - "
            f"{load.connection_errors} failed calls",
        ),
        Check(
            "throttled attempts",
            _whole(row.throttled_attempts),
            run.throttled,
            "upstream: 429 and 503 answers",
        ),
        Check("failed calls", _whole(row.errors), load.failed, "demo: raised or 4xx/5xx"),
    ]


def _host_row(analysis: Analysis, address: str) -> UpstreamReport | None:
    for host in analysis.hosts:
        if host.upstream == address:
            return host
    return None


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)
