"""Report rendering: the ``--json`` document and the rich text tables (and their HTML export).

The JSON keys follow SPEC "Command line / analyze" exactly; extra keys are additions, never
renames. Counts estimated from sampled spans are rounded to whole calls; ratios keep 4 decimals
and milliseconds 3.

Pool wait: ``pool_wait_ms`` ({p50, p95, p99}) is over ALL connection acquisitions of the host.
The SDK records a pool wait only when a request queued, so the acquisitions counted by
``resilient_http.connection.acquired`` without a recorded wait count as waits of 0; with
acquisitions known and no wait recorded, every percentile is 0 (null only when the data has no
pool metrics). ``pool_queued`` is the number of acquisitions that queued, ``pool_queued_share``
their share of all acquisitions, and ``pool_queued_wait_ms`` the percentiles among them only.
Each recommendation also carries ``current``: the value in force when known (a recommendation
whose ``value`` equals it says to keep that value, e.g. ``pool-backpressure``), and ``expect``:
the figure it should move (``{"figure", "direction", "upstream"}``; null for a keep, which
changes nothing; advice merged over several hosts names the first, ``upstreams`` lists all).
A figure too large for a float (finite data can overflow, e.g. a 1e308 s histogram maximum in
milliseconds) is unknown: null in JSON, ``-`` in text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from resilient_http.analysis.model import PoolLimits, UpstreamReport
from resilient_http.analysis.reader import ReadCounts
from resilient_http.analysis.rules import Recommendation
from resilient_http.analysis.settings import Settings

if TYPE_CHECKING:  # rich is imported only when text is rendered (``--json`` starts faster)
    from rich.console import Console

__all__ = ["Analysis", "render_figures", "render_text", "to_json", "upstream_json", "write_json"]

# Attempt chains listed per upstream in the JSON (most frequent first).
TOP_CHAINS = 5


@dataclass
class Analysis:
    """The result of reading and analysing telemetry files."""

    counts: ReadCounts
    upstreams: list[UpstreamReport]
    hosts: list[UpstreamReport]
    limits: PoolLimits
    recommendations: list[Recommendation]
    spans: int = 0
    metric_points: int = 0
    settings: Settings = field(default_factory=Settings)


def to_json(analysis: Analysis) -> dict[str, Any]:
    """The ``--json`` document."""
    counts = analysis.counts
    return {
        "files": counts.files,
        "lines": counts.lines,
        "corrupt_lines": counts.corrupt_lines,
        "spans": analysis.spans,
        "metric_points": analysis.metric_points,
        "pool_limits": {
            "limit": analysis.limits.limit,
            "limit_per_host": analysis.limits.limit_per_host,
            "active_total_peak": _num(analysis.limits.active_total_peak),
            "pools": analysis.limits.pools,
        },
        "settings": analysis.settings.to_json(),
        "upstreams": [upstream_json(u) for u in analysis.upstreams],
        "recommendations": [_recommendation_json(r) for r in analysis.recommendations],
    }


def write_json(document: Any, out: TextIO) -> None:
    """Write a ``--json`` document to ``out``, indented, always valid JSON: a number that is not
    finite is written null (``json`` would write ``Infinity``, which no JSON parser reads)."""
    json.dump(_finite_numbers(document), out, indent=2, allow_nan=False)
    out.write("\n")


def upstream_json(u: UpstreamReport) -> dict[str, Any]:
    """One upstream row of the ``--json`` document (``expect`` figures are paths in it)."""
    chains = sorted(u.attempt_chains.items(), key=lambda item: (-item[1], item[0]))[:TOP_CHAINS]
    return {
        "server.address": u.address,
        "server.port": u.port,
        "http.request.method": u.method,
        "source": u.source,
        "sampled": u.sampled,
        "requests": _whole(u.requests),
        "attempts": _whole(u.attempts),
        "latency_ms": _ms(u.latency_ms),
        "attempt_latency_ms": _ms(u.attempt_latency_ms),
        "pool_wait_ms": _ms(u.pool_wait_ms) if u.pool_wait_ms else {"p95": None},
        "pool_queued": _whole(u.pool_queued),
        "pool_queued_share": _ratio(u.pool_queued_share),
        "pool_queued_wait_ms": _ms(u.pool_queued_wait_ms) if u.pool_queued_wait_ms else None,
        "reuse_ratio": _ratio(u.reuse_ratio),
        "connections_acquired": _whole(u.connections_acquired),
        "new_connections": _whole(u.new_connections),
        "new_connections_per_s": _ratio(u.new_connections_per_s),
        "window_s": _num(u.window_s),
        "retries": {reason: _whole(n) for reason, n in sorted(u.retries.items())},
        "retries_suppressed": {reason: _whole(n) for reason, n in sorted(u.suppressed.items())},
        "throttled_share": _ratio(u.throttled_share),
        "errors": _whole(u.errors),
        "error_rate": _ratio(u.error_rate),
        "interrupted": _whole(u.interrupted),
        "error_types": {label: _whole(n) for label, n in sorted(u.error_types.items())},
        "attempt_error_types": None
        if u.attempt_error_types is None
        else {label: _whole(n) for label, n in sorted(u.attempt_error_types.items())},
        "attempt_chains": {chain: _whole(n) for chain, n in chains},
        "open_connections_peak": {
            "active": _num(u.active_peak),
            "idle": _num(u.idle_peak),
            "sampling_interval_s": _num(u.peak_sampling_s),
            "caveat": u.peak_caveat,
        },
        "breaker": {"rejected": _whole(u.breaker_rejected), "opened": u.breaker_opened},
        "hedges": {outcome: _whole(n) for outcome, n in sorted(u.hedges.items())},
        "concurrency_limit": {
            "low": _num(u.concurrency_limit_low),
            "last": _num(u.concurrency_limit_last),
        },
        "concurrency_limit_over_time": [
            {"t_s": round(t, 3), "limit": _num(limit)} for t, limit in u.concurrency_limit_over_time
        ],
    }


def _recommendation_json(r: Recommendation) -> dict[str, Any]:
    return {
        "variable": r.variable,
        "value": r.value,
        "reason": r.reason,
        "evidence": r.evidence,
        "rule": r.rule,
        "current": r.current,
        "upstreams": list(r.upstreams),
        "expect": None
        if r.expect is None
        else {
            "figure": r.expect.figure,
            "direction": r.expect.direction,
            "upstream": r.upstreams[0] if r.upstreams else None,
        },
    }


def render_text(analysis: Analysis, console: Console) -> None:
    """Print the human report of files: what was read, then ``render_figures``."""
    counts = analysis.counts
    console.print(
        f"Read {counts.files} file(s), {counts.lines} line(s), {counts.corrupt_lines} corrupt "
        f"(skipped): {analysis.spans} spans, {analysis.metric_points} metric points.",
        highlight=False,
    )
    render_figures(analysis, console)


def render_figures(analysis: Analysis, console: Console) -> None:
    """Print the report below its header (which says where the data came from): calls per
    upstream, the pools, retries, then the advice (or "no change needed"). Counts marked ``~``
    are estimates from sampled spans."""
    from rich import box
    from rich.table import Table

    # Three narrow tables rather than one wide one: each fits an 80-column terminal.
    calls = Table(
        title="Calls (latency in ms)",
        title_justify="left",
        box=box.SIMPLE,
        pad_edge=False,
        collapse_padding=True,
    )
    calls.add_column("upstream", no_wrap=True)
    for column in ("calls", "attempts", "p50", "p95", "p99", "errors", "throttled"):
        calls.add_column(column, justify="right")
    for u in analysis.upstreams:
        estimate = "~" if u.sampled else ""
        calls.add_row(
            _name(u),
            estimate + _cell(_whole(u.requests)),
            estimate + _cell(_whole(u.attempts)),
            *(_cell(_round(u.latency_ms.get(q), 1)) for q in ("p50", "p95", "p99")),
            _percent(u.error_rate),
            _percent(u.throttled_share),
        )
    console.print(calls)
    for u in analysis.upstreams:
        if u.interrupted:
            console.print(
                f"  {_name(u)}: {_whole(u.interrupted)} calls interrupted (cancelled by the "
                "application, e.g. a Ctrl-C): not counted as errors",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
    pools = Table(
        title="Connection pools (wait ms over all acquisitions; queued = share that waited)",
        title_justify="left",
        box=box.SIMPLE,
        pad_edge=False,
        collapse_padding=True,
    )
    pools.add_column("upstream", no_wrap=True)
    for column in ("wait p95", "queued", "reuse", "new conn/s", "active peak", "idle peak"):
        pools.add_column(column, justify="right")
    for host in analysis.hosts:
        pools.add_row(
            host.upstream,
            _cell(_round(host.pool_wait_ms.get("p95"), 1)),
            _percent(host.pool_queued_share),
            _percent(host.reuse_ratio),
            _cell(_round(host.new_connections_per_s, 2)),
            _cell(_round(host.active_peak, 1)),
            _cell(_round(host.idle_peak, 1)),
        )
    console.print(pools)
    _render_peak_sampling(analysis, console)
    _render_retries(analysis, console)
    _render_resilience(analysis, console)
    if not analysis.recommendations:
        console.print("Recommendations: no change needed.")
        return
    console.print("Recommendations:")
    for r in analysis.recommendations:
        keep = " (keep: the value in force)" if r.current == r.value else ""
        console.print(f"  [bold]{r.variable}={r.value}[/bold]{keep}", highlight=False)
        console.print(f"    why: {r.reason}", highlight=False, markup=False)
        console.print(f"    evidence: {r.evidence}", highlight=False, markup=False)
        if r.expect is not None:
            console.print(
                f"    expect: {r.expect.figure} {r.expect.direction}", highlight=False, markup=False
            )


def _render_peak_sampling(analysis: Analysis, console: Console) -> None:
    """Peaks are samples: say how often they were taken, and when they say little."""
    for host in analysis.hosts:
        if host.active_peak is None and host.idle_peak is None:
            if host.peak_caveat:
                console.print(
                    f"  {host.upstream}: {host.peak_caveat}",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )
            continue
        every = (
            "once per metric export"
            if host.peak_sampling_s is None
            else f"every {host.peak_sampling_s:.3g} s (the metric export interval)"
        )
        caveat = f"; {host.peak_caveat}" if host.peak_caveat else ""
        console.print(
            f"  {host.upstream}: peaks sampled {every}{caveat}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def _render_resilience(analysis: Analysis, console: Console) -> None:
    """One line per upstream where the breaker, adaptive concurrency or hedging acted."""
    lines = []
    for host in analysis.hosts:
        parts = []
        if host.breaker_rejected or host.breaker_opened:
            opened = "opened; " if host.breaker_opened else ""
            parts.append(
                f"circuit breaker {opened}{_whole(host.breaker_rejected or 0)} calls rejected"
            )
        low, last = host.concurrency_limit_low, host.concurrency_limit_last
        if low is not None and last is not None and low < last:
            parts.append(f"adaptive limit down to {_whole(low)}, now {_whole(last)}")
        over_time = host.concurrency_limit_over_time
        if len(over_time) > 1:
            steps = " -> ".join(f"{_whole(limit)}" for _, limit in over_time)
            parts.append(f"limit over {over_time[-1][0]:.1f} s: {steps}")
        if host.hedges:
            won, lost = host.hedges.get("won", 0.0), host.hedges.get("lost", 0.0)
            parts.append(f"{_whole(won + lost)} hedges ({_whole(won)} won)")
        if parts:
            lines.append(f"  {host.upstream}: " + "; ".join(parts))
    if lines:
        console.print("Resilience:", highlight=False)
        for line in lines:
            console.print(line, highlight=False, markup=False, soft_wrap=True)


def _render_retries(analysis: Analysis, console: Console) -> None:
    """Retries by reason and retries not made, only for upstreams that have any."""
    from rich import box
    from rich.table import Table

    reasons = sorted({r for u in analysis.upstreams for r, n in u.retries.items() if n})
    suppressed = sorted({r for u in analysis.upstreams for r, n in u.suppressed.items() if n})
    if not reasons and not suppressed:
        return
    table = Table(
        title="Retries by reason",
        title_justify="left",
        box=box.SIMPLE,
        pad_edge=False,
        collapse_padding=True,
    )
    if suppressed:
        table.caption = "-reason: retries not made, and why"
    table.add_column("upstream", no_wrap=True)
    for reason in reasons:
        table.add_column(reason, justify="right")
    for reason in suppressed:
        table.add_column(f"-{reason}", justify="right")
    for u in analysis.upstreams:
        if u.retries_total or any(u.suppressed.values()):
            row = [_name(u)]
            row += [_cell(_whole(u.retries.get(r))) for r in reasons]
            row += [_cell(_whole(u.suppressed.get(r))) for r in suppressed]
            table.add_row(*row)
    console.print(table)


def _name(u: UpstreamReport) -> str:
    return f"{u.upstream} {u.method}" if u.method else u.upstream


def _finite_numbers(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_numbers(item) for item in value]
    return value


def _whole(value: float | None) -> int | None:
    return None if value is None or not math.isfinite(value) else round(value)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def _num(value: float | None) -> float | None:
    return _round(value, 3)


def _ratio(value: float | None) -> float | None:
    return _round(value, 4)


def _ms(values: dict[str, float | None]) -> dict[str, float | None]:
    return {q: _num(v) for q, v in values.items()}


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _percent(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value * 100:.1f}%"
