"""Per-upstream aggregates: metric streams and span statistics joined into one report row.

Counts come from metrics whenever the upstream has request metrics (they are never sampled, so
they are exact); spans then only add detail: precise latency percentiles (DDSketch), attempt
chains and error types. An upstream seen only in spans gets span-based estimates, scaled by the
spans' sampling. Pool figures (wait, reuse, new connections, open connections) are per
``server.address:server.port`` and repeated on each method row of that host.

Pool wait percentiles are over ALL acquisitions. The SDK records
``resilient_http.pool.wait.duration`` only when a request queued (a zero for every request would
cost a histogram record per request), while ``resilient_http.connection.acquired`` counts every
acquisition exactly; the acquisitions without a recorded wait are counted as waits of 0. The
percentiles among the requests that queued are kept apart (``pool_queued_wait_ms``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from resilient_http.analysis import names
from resilient_http.analysis.evidence import ConnectionEvidence, RateTimeline
from resilient_http.analysis.grouping import HostKey, MetricView, port_number
from resilient_http.analysis.metrics import MetricStore, Stream, attributes_dict
from resilient_http.analysis.settings import Settings
from resilient_http.analysis.spans import (
    INTERRUPTED_ERROR_TYPE,
    AttemptStats,
    CallStats,
    SpanAggregator,
    UpstreamKey,
)
from resilient_http.analysis.stats import BucketHistogram, LatencySketch
from resilient_http.config import RATE_LIMITED_STATUS, THROTTLING_STATUSES

__all__ = [
    "PoolLimits",
    "UpstreamReport",
    "build_pool_limits",
    "build_reports",
    "build_settings",
    "build_upstreams",
]

QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
_LEVELS = tuple(QUANTILES.values())


@dataclass
class PoolLimits:
    """Pool limits the SDK reported (``resilient_http.pool.limit``; 0 = unlimited; None = absent)
    and the peak number of connections in use at once in one process, over all upstreams.

    Several pools are combined into their loosest limit (0, unlimited, beats any number), never
    their largest number. ``per_upstream`` holds the limits of the pools that called one
    upstream (``host:port``); ``pools`` counts the pools that reported.
    """

    limit: int | None = None
    limit_per_host: int | None = None
    active_total_peak: float | None = None
    pools: int = 0
    per_upstream: dict[str, PoolLimits] = field(default_factory=dict)

    def for_upstream(self, upstream: str) -> PoolLimits:
        """The limits of the pools that called ``upstream`` (else these)."""
        return self.per_upstream.get(upstream, self)


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
    pool_queued: float | None = None
    pool_queued_share: float | None = None
    pool_queued_wait_ms: dict[str, float | None] = field(default_factory=dict)
    # Means in seconds, for Little's law: the pool wait over all acquisitions, and an attempt
    # (which runs from asking the pool for a connection to the answer's headers); None unknown.
    pool_wait_mean_s: float | None = None
    attempt_mean_s: float | None = None
    reuse_ratio: float | None = None
    connections_acquired: float | None = None
    new_connections: float | None = None
    new_connections_per_s: float | None = None
    window_s: float | None = None
    retries: dict[str, float] = field(default_factory=dict)
    suppressed: dict[str, float] = field(default_factory=dict)
    throttled_attempts: float | None = None
    throttled_share: float | None = None
    # Of those, answered 429 (a rate limit by its meaning); from the attempt histogram, None
    # without it.
    rate_limited: float | None = None
    # How the pool handed out connections (idle time, requests served, connections in use),
    # from attempt spans; None without them.
    connections: ConnectionEvidence | None = None
    # Answers (429, un-throttled) by end time, from attempt spans, for the rate a rate limit let
    # calls through between its 429s; None without 429s in them.
    rate_timeline: RateTimeline | None = None
    errors: float | None = None
    error_rate: float | None = None
    # Calls the application cancelled (a Ctrl-C, say): not errors, and not in ``errors``.
    interrupted: float | None = None
    error_types: dict[str, float] = field(default_factory=dict)
    # Attempts by error.type: exact from the attempt histogram, else from attempt spans; None
    # when neither is in the data.
    attempt_error_types: dict[str, float] | None = None
    attempt_chains: dict[str, float] = field(default_factory=dict)
    active_peak: float | None = None
    idle_peak: float | None = None
    # Gauge peaks are sampled once per metric export: the interval, and a caveat when the data
    # cannot show a peak (the run was shorter than one interval, or exported once).
    peak_sampling_s: float | None = None
    peak_caveat: str | None = None
    # The resilience strategies (None: their metrics are not in the data): calls an open
    # breaker failed at once, whether an export saw it open, hedges by outcome (won / lost),
    # and the concurrency limit per upstream, its lowest and its last value.
    breaker_rejected: float | None = None
    breaker_opened: bool | None = None
    hedges: dict[str, float] = field(default_factory=dict)
    concurrency_limit_low: float | None = None
    concurrency_limit_last: float | None = None
    # (seconds since its first export, limit) at the end of each of a few time slices, where
    # the limit changed (``Resilience.limit_over_time``).
    concurrency_limit_over_time: list[tuple[float, float]] = field(default_factory=list)
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
    """Limits from the ``resilient_http.pool.limit`` gauge, per pool and per upstream.

    A pool (``resilient_http.pool.id`` within one resource) reports its total limit and, per
    upstream it called, its per-host limit; streams without a pool id (older writers) count as
    one pool per resource that called every upstream.
    """
    totals: dict[tuple[bytes, Any], int] = {}
    per_host: dict[tuple[bytes, Any], int] = {}
    by_upstream: dict[str, dict[tuple[bytes, Any], int]] = {}
    for stream in store.by_name(names.POOL_LIMIT):
        scope = stream.attributes.get(names.LIMIT_SCOPE)
        pool = (stream.resource, stream.attributes.get(names.POOL_ID))
        value = int(stream.value)
        if scope == "total":
            totals[pool] = value
        elif scope == "per_host":
            address = stream.attributes.get(names.ADDRESS)
            if address is None:
                per_host[pool] = value
            else:
                name = _upstream_name(address, stream.attributes.get(names.PORT))
                by_upstream.setdefault(name, {})[pool] = value
                per_host.setdefault(pool, value)
    peaks = store.active_total_peak
    limits = PoolLimits(
        _loosest(totals.values()),
        _loosest(per_host.values()),
        max(peaks.values()) if peaks else None,
        len(set(totals) | set(per_host)),
    )
    for name, pools in by_upstream.items():
        resources = {resource for resource, _ in pools}
        limits.per_upstream[name] = PoolLimits(
            _loosest(v for k, v in totals.items() if k in pools) or limits.limit,
            _loosest(pools.values()),
            max((peaks[r] for r in resources if r in peaks), default=None),
            len(pools),
        )
    return limits


def build_settings(store: MetricStore) -> Settings:
    """The settings the SDK exported as resource attributes (``settings.py``), per upstream:
    those of the first process that called it and carried them. Without any, the defaults,
    marked as assumed."""
    found: dict[bytes, Settings | None] = {}
    upstream_resources: dict[str, list[bytes]] = {}
    for stream in store.streams.values():
        if stream.resource not in found:
            found[stream.resource] = _carried_settings(stream.resource)
        if found[stream.resource] is None:
            continue
        address = stream.attributes.get(names.ADDRESS)
        if address is not None:
            name = _upstream_name(address, stream.attributes.get(names.PORT))
            upstream_resources.setdefault(name, []).append(stream.resource)
    carried = [settings for settings in found.values() if settings is not None]
    if not carried:
        return Settings()
    per_upstream = {
        name: settings
        for name, resources in upstream_resources.items()
        if (settings := found[resources[0]]) is not None
    }
    first = carried[0]
    return Settings(first.config, first.sources, per_upstream, first.values)


def _carried_settings(resource: bytes) -> Settings | None:
    """The settings a stream's resource carries: an OTLP resource's attributes as JSON. A
    resource of another source (Prometheus series are keyed by their job) carries none."""
    try:
        attributes = orjson.loads(resource)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(attributes, list):
        return None
    return Settings.from_resource(attributes_dict(attributes))


def _loosest(limits: Iterable[int]) -> int | None:
    """The loosest of several pool limits: 0 (unlimited) if any, else the largest."""
    values = list(limits)
    if not values:
        return None
    return 0 if 0 in values else max(values)


def _upstream_name(address: Any, port: Any) -> str:
    number = port_number(port)
    return str(address) if number is None else f"{address}:{number}"


def build_reports(
    store: MetricStore, spans: SpanAggregator
) -> tuple[list[UpstreamReport], list[UpstreamReport]]:
    """``build_upstreams`` split by method, and not (per host: what the rules read).

    Without spans, a host whose request metrics (durations, retries) all carry one method has
    the same streams either way, so its host row is its method row without the method; the
    rows are built twice only where some host has several methods (a fleet's report per
    service is mostly hosts called with one method)."""
    view = MetricView(store, split_method=True)
    upstreams = _build(store, spans, view, split_method=True)
    if spans.calls or spans.attempts:
        return upstreams, build_upstreams(store, spans, split_method=False)
    methods: dict[HostKey, set[str | None]] = {}
    for key in (*view.calls, *view.attempts, *view.retries):
        methods.setdefault((key[0], key[1]), set()).add(key[2])
    hosts = []
    for row in upstreams:
        if methods.get((row.address, row.port)) != {row.method}:
            return upstreams, build_upstreams(store, spans, split_method=False)
        host = copy.copy(row)  # a shallow copy: dataclasses.replace runs __init__, 5x slower
        host.method = None
        hosts.append(host)
    return upstreams, hosts


def build_upstreams(
    store: MetricStore, spans: SpanAggregator, *, split_method: bool
) -> list[UpstreamReport]:
    """One report per upstream (per method too when ``split_method``), sorted by name."""
    return _build(store, spans, MetricView(store, split_method), split_method=split_method)


def _build(
    store: MetricStore, spans: SpanAggregator, view: MetricView, *, split_method: bool
) -> list[UpstreamReport]:
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
        _add_peak_sampling(report, store.export_interval_s)
        reports.append(report)
    return reports


def _regroup(
    stats: dict[UpstreamKey, Any], view: MetricView, split_method: bool, kind: type[Any]
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
    key: UpstreamKey, view: MetricView, call: CallStats | None, attempt: AttemptStats | None
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
    if attempt_hist.count:
        report.attempt_mean_s = attempt_hist.sum / attempt_hist.count
    report.latency_ms = _percentiles(call.latency if call and call.spans else call_hist)
    report.attempt_latency_ms = _percentiles(
        attempt.latency if attempt and attempt.spans else attempt_hist
    )
    if attempt is not None and report.rate_limited is None and attempt.spans:
        report.rate_limited = attempt.rate_limited
    if attempt is not None and attempt.connections.in_use:
        report.connections = attempt.connections
    if attempt is not None and attempt.rate_limited:
        report.rate_timeline = attempt.timeline
    if call is not None:
        report.error_types = dict(call.error_types)
        report.attempt_chains = call.chain_counts()
    elif attempt is not None:
        report.error_types = dict(attempt.error_types)
    if host in view.attempt_hosts:
        report.attempt_error_types = _error_types(view.attempts.get(key, ()))
    elif attempt is not None:
        report.attempt_error_types = dict(attempt.error_types)
    report.sampled = any(
        s is not None and s.count != s.spans for s in (call, attempt) if not has_metrics
    )
    return report


def _metric_counts(report: UpstreamReport, key: UpstreamKey, view: MetricView) -> None:
    calls = view.calls.get(key, [])
    attempts = view.attempts.get(key, [])
    report.retries = dict(view.retries.get(key, {}))
    retries = report.retries_total
    host = (key[0], key[1])
    if host in view.call_hosts:
        report.requests = sum(_count(s) for s in calls)
        report.errors = sum(_count(s) for s in calls if _is_error(s.attributes))
        report.interrupted = sum(_count(s) for s in calls if _is_interrupted(s.attributes))
        report.throttled_attempts = report.retries.get("throttled", 0.0) + sum(
            _count(s) for s in calls if s.attributes.get(names.STATUS) in THROTTLING_STATUSES
        )
    if host in view.attempt_hosts:
        report.attempts = sum(_count(s) for s in attempts)
        report.rate_limited = sum(
            _count(s) for s in attempts if s.attributes.get(names.STATUS) == RATE_LIMITED_STATUS
        )
        if report.throttled_attempts is None:
            report.throttled_attempts = sum(
                _count(s) for s in attempts if s.attributes.get(names.STATUS) in THROTTLING_STATUSES
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
        report.interrupted = call.interrupted
        report.throttled_attempts = call.retries.get("throttled", 0.0) + call.throttled_final
    elif attempt is not None:
        # Attempt spans alone: the first attempt of each call has no resend count.
        report.requests = attempt.first_attempts
        report.attempts = attempt.count
        resent = attempt.count - attempt.first_attempts
        report.retries = {"unknown": resent} if resent > 0 else {}
        report.throttled_attempts = attempt.throttled


def _add_pool_figures(report: UpstreamReport, host: HostKey, view: MetricView) -> None:
    report.suppressed = dict(view.suppressed.get(host, {}))
    acquired = view.acquired.get(host)
    _add_pool_wait(report, view.pool_wait.get(host), _acquisitions(host, view))
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
    resilience = view.resilience.get(host)
    if resilience is not None:
        report.breaker_rejected = resilience.breaker_rejected
        report.breaker_opened = resilience.breaker_opened
        report.hedges = dict(resilience.hedges)
        report.concurrency_limit_low = resilience.limit_low
        report.concurrency_limit_last = resilience.limit_last
        report.concurrency_limit_over_time = resilience.limit_over_time()


def _add_peak_sampling(report: UpstreamReport, interval_s: float | None) -> None:
    """The sampling interval of the peaks, and the caveat when they say little."""
    if report.active_peak is None and report.idle_peak is None:
        if report.connections_acquired:
            report.peak_caveat = (
                "the pool gauges were never exported while the pool was open (a run shorter "
                "than one export interval): no peaks; pool wait and its queued share are exact"
            )
        return
    report.peak_sampling_s = interval_s
    window = report.window_s
    if interval_s is None:
        report.peak_caveat = (
            "the pool gauges were exported once: the peaks are one sample, likely taken when "
            "the pool was idle"
        )
    elif window is not None and window < interval_s:
        report.peak_caveat = (
            f"the run ({window:.3g} s) was shorter than one export interval "
            f"({interval_s:.3g} s): the peaks are one or two samples and may miss the busiest "
            "moments; pool wait and its queued share are exact"
        )


def _acquisitions(host: HostKey, view: MetricView) -> float | None:
    """Connections handed out to this host's requests: exact from the acquisition counter;
    without it (a collector that dropped it), one per attempt from the attempt histogram (an
    attempt that failed before it got a connection is then counted too)."""
    acquired = view.acquired.get(host)
    if acquired:
        return sum(s.value for s in acquired)
    attempts = [s for k, streams in view.attempts.items() if k[:2] == host for s in streams]
    return sum(_count(s) for s in attempts) if attempts else None


def _add_pool_wait(
    report: UpstreamReport, queued: BucketHistogram | None, acquisitions: float | None
) -> None:
    """Pool wait over all acquisitions (those without a recorded wait waited 0), and among the
    requests that queued. A wait that ended without a connection (a pool timeout) is recorded
    but not acquired, so the zeros may be slightly under-counted: the p95 errs towards queueing.
    """
    hist = queued or BucketHistogram()
    if hist.count > 0:
        report.pool_queued = hist.count
        report.pool_queued_wait_ms = _percentiles(hist)
    total = None if acquisitions is None else max(acquisitions, hist.count)
    if total:  # unknown without acquisitions: the queued requests alone would overstate it
        report.pool_queued = hist.count
        report.pool_queued_share = hist.count / total
        zeros = total - hist.count
        report.pool_wait_ms = dict(zip(QUANTILES, hist.quantiles_ms(_LEVELS, zeros), strict=True))
        report.pool_wait_mean_s = hist.sum / total


def _span_window_s(call: CallStats | None, attempt: AttemptStats | None) -> float | None:
    starts = [s.first_start for s in (call, attempt) if s is not None and s.first_start]
    ends = [s.last_end for s in (call, attempt) if s is not None and s.last_end]
    if not starts or not ends or max(ends) <= min(starts):
        return None
    return (max(ends) - min(starts)) / 1e9


def _merged(streams: Iterable[Stream]) -> BucketHistogram:
    hists = [s.hist for s in streams if s.hist is not None]
    # One stream (a row of one process or job): its own histogram, read only, not a copy.
    return hists[0] if len(hists) == 1 else BucketHistogram.merged(hists)


def _percentiles(source: LatencySketch | BucketHistogram) -> dict[str, float | None]:
    if isinstance(source, BucketHistogram):
        return dict(zip(QUANTILES, source.quantiles_ms(_LEVELS), strict=True))
    return {label: source.quantile_ms(q) for label, q in QUANTILES.items()}


def _error_types(streams: Iterable[Stream]) -> dict[str, float]:
    """Attempts by ``error.type`` (the exception class, or the status code of an error)."""
    counts: dict[str, float] = {}
    for stream in streams:
        label = stream.attributes.get(names.ERROR_TYPE)
        if label is not None:
            counts[str(label)] = counts.get(str(label), 0.0) + _count(stream)
    return counts


def _count(stream: Stream) -> float:
    return stream.hist.count if stream.hist is not None else 0.0


def _is_error(attributes: dict[str, Any]) -> bool:
    status = attributes.get(names.STATUS)
    if _is_interrupted(attributes):
        return False
    return names.ERROR_TYPE in attributes or (isinstance(status, int) and status >= 500)


def _is_interrupted(attributes: dict[str, Any]) -> bool:
    return attributes.get(names.ERROR_TYPE) == INTERRUPTED_ERROR_TYPE


def _is_reused(attributes: dict[str, Any]) -> bool:
    reused = attributes.get(names.REUSED)
    # A bool attribute by contract; tolerate "true"/"false" strings from other writers.
    return reused is True or (isinstance(reused, str) and reused.lower() == "true")
