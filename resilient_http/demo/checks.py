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
    slack: int = 0
    """How far apart the two may be: attempts cancelled while they connected or sent (lost
    to a hedge) are seen by one side only."""

    @property
    def agrees(self) -> bool:
        """Whether the report's figure is the independently counted one (within ``slack``)."""
        return self.report is not None and abs(self.report - self.expected) <= self.slack


def cross_check(analysis: Analysis, run: RunResult) -> list[Check]:
    """The report's row for the run's upstream, checked figure by figure."""
    row = _host_row(analysis, run.upstream_address)
    if row is None:  # the run left nothing in the file: every figure is missing
        row = UpstreamReport(run.upstream_address, None, None, "none")
    load, upstream = run.load, run.upstream
    # Attempts cancelled because a hedge (or the original) answered first.
    cancelled = round((row.attempt_error_types or {}).get("CancelledError", 0.0))
    race = f" (+/- {cancelled} cancelled by hedging)" if cancelled and row.hedges else ""
    cancelled = cancelled if row.hedges else 0
    dropped = (
        upstream.stale_closes + upstream.resets + upstream.disconnects + upstream.outage_closes
    )
    return [
        Check("calls", _whole(row.requests), load.calls, "demo: calls made"),
        # Attempts that had a connection sent their request; the others (refused by a down
        # upstream, or cancelled while they waited for one) never reached it. An attempt that
        # lost to its hedge (or a hedge that lost) may be cancelled between connecting and
        # sending, or while its connection is being accepted: one side sees it, not the other.
        Check(
            "attempts sent",
            _whole(row.connections_acquired),
            upstream.requests,
            "upstream: requests" + race,
            slack=cancelled,
        ),
        Check(
            "new connections",
            _whole(row.new_connections),
            upstream.connections_opened,
            "upstream: connections" + race,
            slack=cancelled,
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
