"""``analyze --prometheus``: the file analysis's model, fed from Prometheus instead of files.

The queries (``promql.py``) return, per service (the ``job`` label) and attribute set, the
figures the file reader folds OTLP points into: exact counter increases over the range, bucket
counts of the duration histograms, the peaks and last values of the pool gauges. They become the
same ``Stream`` objects in a ``MetricStore`` (one resource per job; ``prometheus_streams.py``
translates the rows), and from there everything is
the file analysis's own code: ``build_upstreams``, ``build_pool_limits``, ``evaluate_rules`` and
``to_json``. So the report and its advice cannot drift from the file analysis: there is one
model and one rules table, and this module is only a second way of filling the store.

Counts are exact (see ``promql.py``); quantiles come from the bucket counts, so they agree with
the file analysis within a bucket (the file also knows each stream's min and max, which tighten
the first and last bucket). Gauges are seen at scrape times, so a peak between two scrapes may be
missed, as one between two exports is by the file.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from resilient_http.analysis import names
from resilient_http.analysis.analyze import analysis_of
from resilient_http.analysis.fleet_report import JOB, FleetAnalysis, fleet_json
from resilient_http.analysis.grouping import LIMIT_SLICES
from resilient_http.analysis.metrics import MetricStore
from resilient_http.analysis.prometheus_arguments import (
    QUERY_TIMEOUT_S,
    parse_duration,
    prometheus_url,
)
from resilient_http.analysis.prometheus_streams import (
    ATTRIBUTES,
    COUNTERS,
    HISTOGRAMS,
    HOST,
    RESILIENCE_COUNTERS,
    SECONDS_TO_NS,
    SUMMED,
    add_stream,
    fold_into_fleet,
    from_cumulative,
    host_of,
    identity_of,
    job_host,
    labels_of,
    row_identity,
    split_by_job,
)
from resilient_http.analysis.promql import (
    JOINED,
    JOINED_SEPARATOR,
    PROMETHEUS_NAMES,
    PrometheusError,
    Source,
    all_of,
    attribute_label,
    name_matcher,
    recorded_name,
    request_headers,
    task_group,
)
from resilient_http.analysis.reader import ReadCounts
from resilient_http.analysis.recording_rules import GROUP, INTERVAL_S
from resilient_http.analysis.report import Analysis
from resilient_http.analysis.settings import Settings
from resilient_http.analysis.spans import SpanAggregator
from resilient_http.telemetry.redact import redact_url

__all__ = ["FleetAnalysis", "PrometheusError", "analyze_prometheus", "fleet_json"]

# Steps at which the first and last sample of the acquisition counters are looked up.
_WINDOW_STEPS = 30
#: Jobs per group of queries (see ``_shards``).
JOBS_PER_SHARD = 25
# Groups asked at once: the next group's queries keep Prometheus busy while the last answers
# of one group come in, and one group completes after the other, so that its reports can be
# made while the next is asked (all at once, every group would complete at the end).
_GROUPS_IN_FLIGHT = 2
# The attempt histogram and the open-connections gauge have semconv names that other HTTP
# clients share: only the SDK's scope and the aiohttp instrumentation's are read, as from files.
_SCOPE_MATCHER = 'otel_scope_name=~"{}"'.format("|".join(sorted(names.ATTEMPT_SCOPES)))
# Points of the concurrency limit over the range, where it changed (``_concurrency_limits``):
# a few per time slice the report tells it in.
_LIMIT_STEPS = 4 * LIMIT_SLICES
# The metrics read from the recording rules' series with --recorded.
_RECORDED = frozenset(SUMMED - set(RESILIENCE_COUNTERS))
# The label the limit's figures (low, last, high) are told apart by in their one answer.
_STAT = "rh_stat"
# Each figure of the limit: how the processes of a job are combined, and the range function.
_LIMIT_FIGURES = {"low": ("min", "min"), "last": ("min", "last"), "high": ("max", "max")}


def analyze_prometheus(
    url: str,
    since: str = "1h",
    selector: str = "",
    settings: Settings | None = None,
    *,
    recorded: bool = False,
    headers: Sequence[tuple[str, str]] = (),
    timeout: float = QUERY_TIMEOUT_S,
) -> FleetAnalysis:
    """Query Prometheus at ``url`` over the last ``since`` and analyse per upstream and per job
    (counts from the recording rules' series with ``recorded``, see ``recording_rules.py``).
    ``headers`` go on every request (a tenant's ``X-Scope-OrgID``, an ``Authorization``); an
    answer that keeps ``timeout`` seconds without a byte ends the analysis.

    Raises ``PrometheusError`` (unreachable, an answer no Prometheus gives, a query refused,
    no SDK metrics) and ``PrometheusArgumentError`` (a bad ``url``, ``since`` or ``selector``),
    each with a one-line message. Messages and the report show ``url`` without its
    credentials (``redact_url``)."""
    url = prometheus_url(url)
    shown = redact_url(url)
    since_s = parse_duration(since)
    collected = _Collected()
    # The main coroutine returns nothing: asyncio.run keeps a reference to its task in the
    # SIGINT handler it restores at the end, and Python 3.11 formats that handler's repr there,
    # the task's result included (a whole fleet's store: most of a second).
    asyncio.run(_collect(url, since_s, selector, recorded, headers, settings, timeout, collected))
    whole, series = collected.analysis, collected.series
    if whole is None:
        raise PrometheusError(
            f"no resilient_http metrics in Prometheus at {shown} over the last {since}"
            + (f" matching {selector}" if selector else "")
        )
    whole.metric_points = series
    fleet = FleetAnalysis(shown, since, selector, recorded, whole, series=series)
    fleet.services = dict(sorted(collected.services.items()))
    return fleet


@dataclass
class _Collected:
    whole: MetricStore = field(default_factory=MetricStore)
    analysis: Analysis | None = None
    services: dict[str, Analysis] = field(default_factory=dict)
    series: int = 0


async def _collect(
    url: str,
    since_s: float,
    selector: str,
    recorded: bool,
    headers: Sequence[tuple[str, str]],
    settings: Settings | None,
    read_timeout: float,
    collected: _Collected,
) -> None:
    """Collect the whole fleet's report, each job's, and the number of result rows read.

    The groups of jobs (``_shards``) are asked two at a time (``Source`` keeps a few queries
    in flight, in the order they were asked), so that they complete one after the other, and
    each group's reports per job are made while Prometheus answers the next group's queries.
    (Not in a worker process: on two cores, with Prometheus busy, pickling the stores and the
    reports cost more than the worker saved.)"""
    # A query over a long range of a large fleet takes seconds on the server, and its answer
    # as long to read as it is large: no total timeout. But a connection that cannot be made
    # fails fast, and a server that accepted the query and went silent (hung, or past its
    # own query timeout without saying so) fails after ``read_timeout``.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout)
    sent = request_headers(url, headers)
    async with aiohttp.ClientSession(timeout=timeout, headers=sent) as session:
        source = Source(session, url, since_s, selector, recorded=recorded)
        await _check_reachable(source)
        shards = await _shards(source)
        whole = collected.whole
        groups = asyncio.Semaphore(_GROUPS_IN_FLIGHT)

        async def fill(shard: Source) -> int:
            store = MetricStore()
            async with groups:
                results = await all_of(
                    *(_histogram(shard, store, name) for name in HISTOGRAMS),
                    *(_counter(shard, store, name) for name in COUNTERS),
                    *(_counter(shard.raw(), store, name) for name in RESILIENCE_COUNTERS),
                    _breaker_opened(shard, store),
                    _concurrency_limits(shard, store),
                    _gauge_peaks(shard, store),
                    _pool_limits(shard, store),
                    _active_total_peaks(shard, store),
                )
            fold_into_fleet(whole, store)
            for job, part in split_by_job(store).items():
                analysis = analysis_of(part, SpanAggregator(), ReadCounts(), settings)
                if analysis is not None:
                    collected.services[job.decode()] = analysis
            return sum(results)

        collected.series = sum(await all_of(*(fill(shard) for shard in shards)))
    if recorded and not any(s.name in _RECORDED for s in whole.streams.values()):
        raise PrometheusError(
            f"no recorded series (job:<series>:increase) in Prometheus at {source.shown}: load "
            "otel-collector/recording-rules.yml into it, or leave out --recorded"
        )
    # None: the settings the series carry, else the defaults (as the file analysis does)
    collected.analysis = analysis_of(whole, SpanAggregator(), ReadCounts(), settings)


async def _check_reachable(source: Source) -> None:
    # One cheap query first, so that a wrong URL is one clear error, not one per query.
    await source.query("vector(1)")


async def _shards(source: Source) -> list[Source]:
    """The fleet in groups of ``JOBS_PER_SHARD`` jobs, queried one group after the other: an
    answer holds one group's rows, so memory (here and in Prometheus, whose per-query sample
    limit a whole large fleet would exceed) is bounded by the group, not by the fleet."""
    selectors = [source.select(PROMETHEUS_NAMES[name]) for name in COUNTERS]
    selectors += [source.select(PROMETHEUS_NAMES[name] + "_bucket") for name in HISTOGRAMS]
    jobs = sorted(await source.label_values(JOB, selectors))
    if len(jobs) <= JOBS_PER_SHARD:
        return [source]
    return [
        source.narrowed(f'{JOB}=~"{_any_of(jobs[i : i + JOBS_PER_SHARD])}"')
        for i in range(0, len(jobs), JOBS_PER_SHARD)
    ]


def _any_of(values: list[str]) -> str:
    """A regular expression matching exactly ``values``, quoted for a PromQL string."""
    pattern = "|".join(re.escape(value) for value in values)
    return pattern.replace("\\", "\\\\").replace('"', '\\"')


async def _histogram(source: Source, store: MetricStore, name: str) -> int:
    attributes = ATTRIBUTES[name]
    series = PROMETHEUS_NAMES[name] + "_bucket"
    rows = await source.bucket_sums(series, _scope(name), [JOB, *labels_of(attributes)])
    # A histogram's rows (one per le) are grouped by their other labels (joined into one)
    # first, so that the attribute translation runs once per histogram, not once per bucket.
    hists: dict[str, list[tuple[float, float]]] = {}
    bounds: dict[str, float] = {}  # each distinct le parsed once (a few, in every histogram)
    for found, value, _ in rows:
        joined = found[JOINED]
        cumulative = hists.get(joined)
        if cumulative is None:
            cumulative = hists[joined] = []
        le = found["le"]
        bound = bounds.get(le)
        if bound is None:
            bound = bounds[le] = _bucket_bound(source, series, le)
        cumulative.append((bound, value))
    for joined, cumulative in hists.items():
        hist = from_cumulative(cumulative)
        if hist.count > 0:
            job, *values = joined.split(JOINED_SEPARATOR)
            if len(values) != len(attributes):
                raise PrometheusError(
                    f"a label value of {series} holds the character U+001F, which "
                    "analyze --prometheus uses to join label values"
                )
            identity = identity_of(attributes, tuple(values))
            add_stream(store, name, job, identity, hist=hist, source=source)
    return len(rows)


def _bucket_bound(source: Source, series: str, le: str) -> float:
    """A bucket's upper bound from its ``le`` label (``+Inf`` included)."""
    try:
        bound = float(le)
    except ValueError:
        bound = math.nan
    if math.isnan(bound):
        raise source.unexpected(f"a bucket of {series} whose le is not a number: {le!r}")
    return bound


async def _counter(source: Source, store: MetricStore, name: str) -> int:
    attributes = ATTRIBUTES[name]
    selector = source.select(PROMETHEUS_NAMES[name])
    sums = source.counter_sums(PROMETHEUS_NAMES[name], (), [JOB, *labels_of(attributes)])
    if name == names.CONNECTIONS_ACQUIRED:
        async with task_group() as group:
            counted = group.create_task(sums)
            windows = group.create_task(_windows(source, selector))
        rows, window = counted.result(), windows.result()
    else:
        rows, window = await sums, {}
    for row in rows:
        if not row.value:  # did not move in the range (or had no sample in it)
            continue
        job, identity = row.labels.get(JOB, ""), row_identity(row.labels, attributes)
        start, end = window.get((job, host_of(identity)), (source.start, source.end))
        add_stream(store, name, job, identity, value=row.value, source=source, start=start, end=end)
    return len(rows)


async def _windows(
    source: Source, selector: str
) -> dict[tuple[str, tuple[Any, ...]], tuple[float, float]]:
    """First and last sample time per job and host, within the range: the window in which
    connections were counted (new connections per second). The last is the latest sample's
    own time (an instant query: exact, and cheap) where a series was scraped within the
    lookback before the range's end, else looked up at steps like the first. The first is
    looked up at ``_WINDOW_STEPS`` steps over the range (a step per scrape would cost as much
    as all the counts): known to a step, which is plenty for a rate."""
    by = ", ".join([JOB, *labels_of(HOST)])
    if source.recorded:
        return await _recorded_windows(source, by)
    step = source.step(_WINDOW_STEPS)
    stamps = f"timestamp({selector})[{source.range}:{step}]"
    first, last = await all_of(
        source.query(f"min by ({by}) (min_over_time({stamps}))"),
        source.query(f"max by ({by}) (timestamp({selector}))"),
    )
    ends = {job_host(s.labels): s.value for s in last}
    if any(job_host(s.labels) not in ends for s in first):  # stopped before the end
        stepped = await source.query(f"max by ({by}) (max_over_time({stamps}))")
        ends = {job_host(s.labels): s.value for s in stepped} | ends
    return {
        job_host(s.labels): (
            _within(source, s.value),
            _within(source, ends.get(job_host(s.labels), s.value)),
        )
        for s in first
    }


def _within(source: Source, at: float) -> float:
    # A sample time the steps looked up before the range counts from its start; and no window
    # reaches past the range (nor past the times the store counts in nanoseconds).
    return min(max(at, source.start), source.end)


async def _recorded_windows(
    source: Source, by: str
) -> dict[tuple[str, tuple[Any, ...]], tuple[float, float]]:
    """With ``--recorded``: the rules record a sample per evaluation while a series has data,
    so the number of samples times the rules' interval is how long connections were counted
    (to an interval), without reading the raw series."""
    recorded = source.select(recorded_name(PROMETHEUS_NAMES[names.CONNECTIONS_ACQUIRED]))
    async with task_group() as group:
        counted = group.create_task(
            source.query(f"max by ({by}) (count_over_time({recorded}[{source.range}]))")
        )
        listed = group.create_task(source.rule_interval(GROUP))
    rows, interval = counted.result(), listed.result()
    step = interval or INTERVAL_S
    return {
        job_host(s.labels): (_within(source, source.end - s.value * step), source.end) for s in rows
    }


async def _gauge_peaks(source: Source, store: MetricStore) -> int:
    name = names.OPEN_CONNECTIONS
    return await _peaks(source, store, name, source.select(PROMETHEUS_NAMES[name], *_scope(name)))


async def _peaks(source: Source, store: MetricStore, name: str, selector: str) -> int:
    """The peak over the range of the gauge ``name``'s series of ``selector``, per job and
    attribute set."""
    attributes = ATTRIBUTES[name]
    by = ", ".join([JOB, *labels_of(attributes)])
    rows = await source.query(f"max by ({by}) (max_over_time({selector}[{source.range}]))")
    for row in rows:
        identity = row_identity(row.labels, attributes)
        add_stream(store, name, row.labels.get(JOB, ""), identity, value=row.value, peak=row.value)
    return len(rows)


async def _pool_limits(source: Source, store: MetricStore) -> int:
    name = names.POOL_LIMIT
    selector = source.select(PROMETHEUS_NAMES[name])
    by = ", ".join([JOB, *labels_of(ATTRIBUTES[name])])
    rows = await source.query(f"max by ({by}) (last_over_time({selector}[{source.range}]))")
    for row in rows:
        identity = row_identity(row.labels, ATTRIBUTES[name])
        add_stream(store, name, row.labels.get(JOB, ""), identity, value=row.value)
    return len(rows)


async def _active_total_peaks(source: Source, store: MetricStore) -> int:
    """Per job, the peak over time of one process's active connections over all upstreams
    (what the total limit is compared with), at the server's evaluation interval."""
    state = f'{attribute_label(names.CONNECTION_STATE)}="active"'
    name = names.OPEN_CONNECTIONS
    selector = source.select(PROMETHEUS_NAMES[name], state, *_scope(name))
    per_process = f"sum by ({JOB}, instance) ({selector})"
    rows = await source.query(f"max by ({JOB}) (max_over_time({per_process}[{source.range}:]))")
    for row in rows:
        store.active_total_peak[row.labels.get(JOB, "").encode()] = row.value
    return len(rows)


async def _breaker_opened(source: Source, store: MetricStore) -> int:
    """Per job and upstream, the peak of the breaker state gauge for the state ``open`` (1
    while open): whether a scrape saw the breaker open."""
    name = names.BREAKER_STATE
    state = f'{attribute_label(name)}="open"'
    return await _peaks(source, store, name, source.select("", name_matcher(name), state))


async def _concurrency_limits(source: Source, store: MetricStore) -> int:
    """Per job and upstream, the concurrency limit: its lowest, its last and its highest over
    the range (one answer, ``_STAT`` telling them apart; the lowest over a job's processes:
    the tightest limit in force), and where it changed (lowest < highest), its value at
    ``_LIMIT_STEPS`` steps over the range (a subquery, asked only for the jobs where it did).
    A limit that did not change is its last value at the range's end."""
    name = names.CONCURRENCY_LIMIT
    attributes = ATTRIBUTES[name]
    selector = source.select(PROMETHEUS_NAMES[name])
    by = ", ".join([JOB, *labels_of(attributes)])
    stats = " or ".join(
        f"label_replace({op} by ({by}) ({over}_over_time({selector}[{source.range}])), "
        f'"{_STAT}", "{stat}", "", "")'
        for stat, (op, over) in _LIMIT_FIGURES.items()
    )
    rows = await source.query(stats)
    found: dict[tuple[str, tuple[tuple[str, Any], ...]], dict[str, float]] = {}
    for row in rows:
        key = (row.labels.get(JOB, ""), row_identity(row.labels, attributes))
        found.setdefault(key, {})[row.labels.get(_STAT, "")] = row.value
    # The three figures are over the same series, so Prometheus answers all three or none.
    for (job, identity), stat in found.items():
        if stat.keys() != _LIMIT_FIGURES.keys():
            raise source.unexpected(
                f"{_STAT} {sorted(stat)} for the concurrency limit of job {job!r} "
                f"{dict(identity)}, where {sorted(_LIMIT_FIGURES)} were asked"
            )
    changed = sorted({job for (job, _), stat in found.items() if stat["low"] < stat["high"]})
    series: dict[tuple[str, tuple[tuple[str, Any], ...]], list[tuple[int, float]]] = {}
    if changed:
        narrow = source.narrowed(f'{JOB}=~"{_any_of(changed)}"')
        step = source.step(_LIMIT_STEPS)
        inner = f"min by ({by}) (last_over_time({narrow.select(PROMETHEUS_NAMES[name])}[{step}]))"
        for row in await narrow.query(f"({inner})[{source.range}:{step}]", "matrix"):
            key = (row.labels.get(JOB, ""), row_identity(row.labels, attributes))
            series[key] = [(round(at * SECONDS_TO_NS), level) for at, level in row.samples]
            rows.append(row)
    for (job, identity), stat in found.items():
        last = stat["last"]
        points = series.get((job, identity)) or [(round(source.end * SECONDS_TO_NS), last)]
        add_stream(
            store, name, job, identity,
            value=last, peak=stat["high"], low=stat["low"], series=points, source=source,
        )  # fmt: skip
    return len(rows)


def _scope(name: str) -> tuple[str, ...]:
    return (_SCOPE_MATCHER,) if name.startswith("http.client.") else ()
