"""Per-upstream aggregates: metric streams and span statistics joined into one report row.

Counts come from metrics whenever the upstream has request metrics (they are never sampled, so
they are exact); spans then only add detail: precise latency percentiles (DDSketch), attempt
chains and error types. An upstream seen only in spans gets span-based estimates, scaled by the
spans' sampling. Pool figures (wait, reuse, new connections, open connections) are per
``server.address:server.port`` and repeated on each method row of that host.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from resilient_http.analysis import names
from resilient_http.analysis.metrics import MetricStore, Stream
from resilient_http.analysis.spans import AttemptStats, CallStats, SpanAggregator, UpstreamKey
from resilient_http.analysis.stats import BucketHistogram, LatencySketch

__all__ = ["PoolLimits", "UpstreamReport", "build_pool_limits", "build_upstreams"]

HostKey = tuple[str, int | None]
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


@dataclass
class PoolLimits:
    """Pool limits the SDK reported (``resilient_http.pool.limit``; 0 = unlimited; None = absent)
    and the peak number of connections in use at once in one process, over all upstreams."""

    limit: int | None = None
    limit_per_host: int | None = None
    active_total_peak: float | None = None


@dataclass
class UpstreamReport:
    """Everything the report and the rules know about one upstream (one method, or all)."""

    address: str
    port: int | None
    method: str | None
    source: str
    requests: float | None = None
    attempts: float | None = None
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    attempt_latency_ms: dict[str, float | None] = field(default_factory=dict)
    pool_wait_ms: dict[str, float | None] = field(default_factory=dict)
    reuse_ratio: float | None = None
    connections_acquired: float | None = None
    new_connections: float | None = None
    new_connections_per_s: float | None = None
    window_s: float | None = None
    retries: dict[str, float] = field(default_factory=dict)
    suppressed: dict[str, float] = field(default_factory=dict)
    throttled_attempts: float | None = None
    throttled_share: float | None = None
    errors: float | None = None
    error_rate: float | None = None
    error_types: dict[str, float] = field(default_factory=dict)
    attempt_chains: dict[str, float] = field(default_factory=dict)
    active_peak: float | None = None
    idle_peak: float | None = None
    sampled: bool = False

    @property
    def upstream(self) -> str:
        """``address:port`` as the SDK's pool stats name it."""
        return self.address if self.port is None else f"{self.address}:{self.port}"

    @property
    def retries_total(self) -> float:
        """All retries, whatever the reason."""
        return sum(self.retries.values())


def build_pool_limits(store: MetricStore) -> PoolLimits:
    """Limits from the ``resilient_http.pool.limit`` gauge (the largest of several processes)."""
    limits = PoolLimits()
    for stream in store.by_name(names.POOL_LIMIT):
        scope = stream.attributes.get(names.LIMIT_SCOPE)
        value = int(stream.value)
        if scope == "total":
            limits.limit = max(limits.limit or 0, value)
        elif scope == "per_host":
            limits.limit_per_host = max(limits.limit_per_host or 0, value)
    if store.active_total_peak:
        limits.active_total_peak = max(store.active_total_peak.values())
    return limits


def build_upstreams(
    store: MetricStore, spans: SpanAggregator, *, split_method: bool
) -> list[UpstreamReport]:
    """One report per upstream (per method too when ``split_method``), sorted by name."""
    view = _MetricView(store, split_method)
    calls = _regroup(spans.calls, view, split_method, CallStats)
    attempts = _regroup(spans.attempts, view, split_method, AttemptStats)
    keys = view.rows | set(calls) | set(attempts)
    reports = []
    for key in sorted(keys, key=lambda k: (k[0], k[1] or 0, k[2] or "")):
        host = (key[0], key[1])
        report = _request_figures(key, view, calls.get(key), attempts.get(key))
        _add_pool_figures(report, host, view)
        if report.window_s is None:
            report.window_s = _span_window_s(calls.get(key), attempts.get(key))
        reports.append(report)
    return reports


class _MetricView:
    """Metric streams grouped by report row (address, port, method) and by host."""

    def __init__(self, store: MetricStore, split_method: bool) -> None:
        self.split_method = split_method
        self.calls = self._hists(store.by_name(names.CALL_DURATION))
        self.attempts = self._hists(store.by_name(names.ATTEMPT_DURATION))
        self.retries: dict[UpstreamKey, dict[str, float]] = {}
        for stream in store.by_name(names.RETRIES):
            key = self.row_key(stream.attributes)
            if key is not None:
                reason = str(stream.attributes.get(names.RETRY_REASON, "unknown"))
                counts = self.retries.setdefault(key, {})
                counts[reason] = counts.get(reason, 0.0) + stream.value
        self.request_hosts = {(k[0], k[1]) for k in (*self.calls, *self.attempts, *self.retries)}
        # Hosts whose request metrics carry no method: spans of those hosts are not split either.
        self.unsplit_hosts = {
            host
            for host in self.request_hosts
            if not any(
                k[2] is not None and (k[0], k[1]) == host for k in (*self.calls, *self.attempts)
            )
        }
        self.suppressed: dict[HostKey | None, dict[str, float]] = {}
        for stream in store.by_name(names.RETRIES_SUPPRESSED):
            host = self.host_key(stream.attributes)
            reason = str(stream.attributes.get(names.SUPPRESSION_REASON, "unknown"))
            counts = self.suppressed.setdefault(host, {})
            counts[reason] = counts.get(reason, 0.0) + stream.value
        self.pool_wait: dict[HostKey, BucketHistogram] = {}
        for stream in store.by_name(names.POOL_WAIT):
            host = self.host_key(stream.attributes)
            if host is not None and stream.hist is not None:
                self.pool_wait.setdefault(host, BucketHistogram()).merge(stream.hist)
        self.acquired: dict[HostKey, list[Stream]] = {}
        for stream in store.by_name(names.CONNECTIONS_ACQUIRED):
            host = self.host_key(stream.attributes)
            if host is not None:
                self.acquired.setdefault(host, []).append(stream)
        self.open_peaks: dict[tuple[HostKey, str], float] = {}
        for stream in store.by_name(names.OPEN_CONNECTIONS):
            host = self.host_key(stream.attributes)
            state = str(stream.attributes.get(names.CONNECTION_STATE, ""))
            if host is not None:
                peak = max(self.open_peaks.get((host, state), 0.0), stream.peak)
                self.open_peaks[(host, state)] = peak
        pool_hosts = set(self.pool_wait) | set(self.acquired) | {h for h, _ in self.open_peaks}
        self.rows: set[UpstreamKey] = set(self.calls) | set(self.attempts)
        # Retries make a row of their own only for a host without duration metrics (retries
        # recorded without a method cannot be split over the method rows of their host).
        duration_hosts = {(k[0], k[1]) for k in self.rows}
        self.rows |= {k for k in self.retries if (k[0], k[1]) not in duration_hosts}
        self.rows |= {(h[0], h[1], None) for h in pool_hosts - self.request_hosts}

    def host_key(self, attributes: dict[str, Any]) -> HostKey | None:
        address = attributes.get(names.ADDRESS)
        if address is None:
            return None
        return (str(address), _port(attributes.get(names.PORT)))

    def row_key(self, attributes: dict[str, Any]) -> UpstreamKey | None:
        host = self.host_key(attributes)
        if host is None:
            return None
        method = attributes.get(names.METHOD) if self.split_method else None
        return (host[0], host[1], None if method is None else str(method))

    def _hists(self, streams: Iterable[Stream]) -> dict[UpstreamKey, list[Stream]]:
        grouped: dict[UpstreamKey, list[Stream]] = {}
        for stream in streams:
            key = self.row_key(stream.attributes)
            if key is not None and stream.hist is not None:
                grouped.setdefault(key, []).append(stream)
        return grouped


def _regroup(
    stats: dict[UpstreamKey, Any], view: _MetricView, split_method: bool, kind: type[Any]
) -> dict[UpstreamKey, Any]:
    """Span statistics keyed like the metric rows (methods folded where the metrics have none)."""
    grouped: dict[UpstreamKey, Any] = {}
    for (address, port, method), item in stats.items():
        if not split_method or (address, port) in view.unsplit_hosts:
            method = None
        key = (address, port, method)
        target = grouped.get(key)
        if target is None:
            target = grouped[key] = kind()
        target.merge(item)
    return grouped


def _request_figures(
    key: UpstreamKey, view: _MetricView, call: CallStats | None, attempt: AttemptStats | None
) -> UpstreamReport:
    host = (key[0], key[1])
    has_metrics = host in view.request_hosts
    has_spans = call is not None or attempt is not None
    source = "+".join(s for s, ok in (("metrics", has_metrics), ("spans", has_spans)) if ok)
    report = UpstreamReport(key[0], key[1], key[2], source or "none")
    if has_metrics:
        _metric_counts(report, key, view)
    else:
        _span_counts(report, call, attempt)
    if report.requests:
        report.error_rate = None if report.errors is None else report.errors / report.requests
    if report.attempts:
        report.throttled_share = (
            None
            if report.throttled_attempts is None
            else report.throttled_attempts / report.attempts
        )
    call_hist = _merged(view.calls.get(key, ()))
    attempt_hist = _merged(view.attempts.get(key, ()))
    report.latency_ms = _percentiles(call.latency if call and call.spans else call_hist)
    report.attempt_latency_ms = _percentiles(
        attempt.latency if attempt and attempt.spans else attempt_hist
    )
    if call is not None:
        report.error_types = dict(call.error_types)
        report.attempt_chains = call.chain_counts()
    elif attempt is not None:
        report.error_types = dict(attempt.error_types)
    report.sampled = any(
        s is not None and s.count != s.spans for s in (call, attempt) if not has_metrics
    )
    return report


def _metric_counts(report: UpstreamReport, key: UpstreamKey, view: _MetricView) -> None:
    calls = view.calls.get(key, [])
    attempts = view.attempts.get(key, [])
    report.retries = dict(view.retries.get(key, {}))
    retries = report.retries_total
    host = (key[0], key[1])
    if any((h[0], h[1]) == host for h in view.calls):
        report.requests = sum(_count(s) for s in calls)
        report.errors = sum(_count(s) for s in calls if _is_error(s.attributes))
        report.throttled_attempts = report.retries.get("throttled", 0.0) + sum(
            _count(s) for s in calls if s.attributes.get(names.STATUS) in names.THROTTLE_STATUSES
        )
    if any((h[0], h[1]) == host for h in view.attempts):
        report.attempts = sum(_count(s) for s in attempts)
        if report.throttled_attempts is None:
            report.throttled_attempts = sum(
                _count(s)
                for s in attempts
                if s.attributes.get(names.STATUS) in names.THROTTLE_STATUSES
            )
    # One of the two duration histograms is enough: attempts = logical calls + retries.
    if report.requests is None and report.attempts is not None:
        report.requests = max(report.attempts - retries, 0.0)
    if report.attempts is None and report.requests is not None:
        report.attempts = report.requests + retries


def _span_counts(
    report: UpstreamReport, call: CallStats | None, attempt: AttemptStats | None
) -> None:
    if call is not None:
        report.requests = call.count
        report.attempts = call.attempts
        report.retries = dict(call.retries)
        report.errors = call.errors
        report.throttled_attempts = call.retries.get("throttled", 0.0) + call.throttled_final
    elif attempt is not None:
        # Attempt spans alone: the first attempt of each call has no resend count.
        report.requests = attempt.first_attempts
        report.attempts = attempt.count
        resent = attempt.count - attempt.first_attempts
        report.retries = {"unknown": resent} if resent > 0 else {}
        report.throttled_attempts = attempt.throttled


def _add_pool_figures(report: UpstreamReport, host: HostKey, view: _MetricView) -> None:
    report.suppressed = dict(view.suppressed.get(host, {}))
    if host in view.pool_wait:
        report.pool_wait_ms = _percentiles(view.pool_wait[host])
    acquired = view.acquired.get(host)
    if acquired:
        total = sum(s.value for s in acquired)
        new = sum(s.value for s in acquired if not _is_reused(s.attributes))
        report.connections_acquired = total
        report.new_connections = new
        report.reuse_ratio = (total - new) / total if total else None
        start = min((s.start for s in acquired if s.start), default=0)
        end = max(s.time for s in acquired)
        if start and end > start:
            report.window_s = (end - start) / 1e9
            report.new_connections_per_s = new / report.window_s
    active = view.open_peaks.get((host, "active"))
    idle = view.open_peaks.get((host, "idle"))
    report.active_peak = active
    report.idle_peak = idle


def _span_window_s(call: CallStats | None, attempt: AttemptStats | None) -> float | None:
    starts = [s.first_start for s in (call, attempt) if s is not None and s.first_start]
    ends = [s.last_end for s in (call, attempt) if s is not None and s.last_end]
    if not starts or not ends or max(ends) <= min(starts):
        return None
    return (max(ends) - min(starts)) / 1e9


def _merged(streams: Iterable[Stream]) -> BucketHistogram:
    return BucketHistogram.merged(s.hist for s in streams if s.hist is not None)


def _percentiles(source: LatencySketch | BucketHistogram) -> dict[str, float | None]:
    return {label: source.quantile_ms(q) for label, q in QUANTILES.items()}


def _count(stream: Stream) -> float:
    return stream.hist.count if stream.hist is not None else 0.0


def _is_error(attributes: dict[str, Any]) -> bool:
    status = attributes.get(names.STATUS)
    return names.ERROR_TYPE in attributes or (isinstance(status, int) and status >= 500)


def _is_reused(attributes: dict[str, Any]) -> bool:
    reused = attributes.get(names.REUSED)
    # A bool attribute by contract; tolerate "true"/"false" strings from other writers.
    return reused is True or (isinstance(reused, str) and reused.lower() == "true")


def _port(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
