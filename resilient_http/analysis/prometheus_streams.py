"""Prometheus's result rows as the file analysis's metric streams (``prometheus.py`` asks the
queries): the attributes of a row, a histogram from cumulative ``le`` buckets, a stream per job
and attribute set, the fleet's store summed over jobs, and the store split by job.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
from dataclasses import replace
from typing import Any

from resilient_http.analysis import names
from resilient_http.analysis.fleet_report import JOB
from resilient_http.analysis.metrics import MetricStore, Stream
from resilient_http.analysis.promql import Source, attribute_label
from resilient_http.analysis.stats import BucketHistogram

__all__ = [
    "ATTRIBUTES",
    "COUNTERS",
    "HISTOGRAMS",
    "HOST",
    "RESILIENCE_COUNTERS",
    "SECONDS_TO_NS",
    "SUMMED",
    "add_stream",
    "fold_into_fleet",
    "from_cumulative",
    "host_of",
    "identity_of",
    "job_host",
    "labels_of",
    "row_identity",
    "split_by_job",
]

HOST = (names.ADDRESS, names.PORT)
# Attributes kept per metric (the ones the file analysis groups or filters by).
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    names.CALL_DURATION: (*HOST, names.METHOD, names.STATUS, names.ERROR_TYPE),
    names.ATTEMPT_DURATION: (*HOST, names.METHOD, names.STATUS, names.ERROR_TYPE),
    names.POOL_WAIT: HOST,
    names.RETRIES: (*HOST, names.METHOD, names.RETRY_REASON),
    names.RETRIES_SUPPRESSED: (*HOST, names.SUPPRESSION_REASON),
    names.CONNECTIONS_ACQUIRED: (*HOST, names.REUSED),
    names.OPEN_CONNECTIONS: (*HOST, names.CONNECTION_STATE),
    names.POOL_LIMIT: (names.LIMIT_SCOPE,),
    names.BREAKER_REJECTED: HOST,
    names.HEDGES: (*HOST, names.HEDGE_OUTCOME),
    names.BREAKER_STATE: (*HOST, names.BREAKER_STATE),
    names.CONCURRENCY_LIMIT: HOST,
}
HISTOGRAMS = (names.CALL_DURATION, names.ATTEMPT_DURATION, names.POOL_WAIT)
COUNTERS = (names.RETRIES, names.RETRIES_SUPPRESSED, names.CONNECTIONS_ACQUIRED)
#: The resilience strategies' counters: read raw even with ``--recorded`` (no rule records
#: them; a series per upstream and outcome, few).
RESILIENCE_COUNTERS = (names.BREAKER_REJECTED, names.HEDGES)
_INT_ATTRIBUTES = frozenset({names.PORT, names.STATUS})
# Their values as the exporters write them: ASCII digits (str.isdigit also takes "²", which
# int() refuses), few enough for int() (which refuses more than 4300).
_INTEGER = re.compile(r"[0-9]{1,18}")
# Metrics summed over jobs in the whole fleet's store (fold_into_fleet), under _FLEET.
SUMMED = frozenset((*HISTOGRAMS, *COUNTERS, *RESILIENCE_COUNTERS))
_FLEET = b""
SECONDS_TO_NS = 1_000_000_000


def from_cumulative(cumulative: list[tuple[float, float]]) -> BucketHistogram:
    """Prometheus's cumulative ``le`` buckets -> the OTLP-style per-bucket counts: the buckets
    ``BucketHistogram.from_explicit`` would make of them (empty ones left out; nothing above
    the last ``le`` without a +Inf bucket), built straight (a fleet has tens of thousands)."""
    cumulative.sort()
    hist = BucketHistogram()
    buckets = hist.buckets
    lower = -math.inf
    below = 0.0
    for le, total in cumulative:
        if total > below:
            buckets[(lower, le)] = total - below
            below = total
        lower = le
    hist.count = below
    return hist


def add_stream(
    store: MetricStore,
    name: str,
    job: str,
    identity: tuple[tuple[str, Any], ...],
    *,
    value: float = 0.0,
    peak: float = -math.inf,
    low: float = math.inf,
    series: list[tuple[int, float]] | None = None,
    hist: BucketHistogram | None = None,
    source: Source | None = None,
    start: float | None = None,
    end: float | None = None,
) -> None:
    resource = job.encode()
    first = start if start is not None else (source.start if source else 0.0)
    last = end if end is not None else (source.end if source else 0.0)
    stream = Stream(
        name,
        resource,
        dict(identity),
        round(first * SECONDS_TO_NS),
        round(last * SECONDS_TO_NS),
        level=peak != -math.inf,
        value=value,
        peak=peak,
        low=low,
        hist=hist,
        series=series,
    )
    store.streams[(resource, name, identity)] = stream


def fold_into_fleet(whole: MetricStore, store: MetricStore) -> None:
    """Add a group's streams to the whole fleet's store. The counted metrics (histograms and
    counters) are summed over the jobs per attribute set as they arrive: the fleet report adds
    them up per upstream anyway, and its store then holds one stream per attribute set, not
    one per job. Gauges stay per job: pool limits and peaks are per process; but the adaptive
    limit of an upstream is one stream over the jobs, the tightest (``_fold_limit``)."""
    whole.active_total_peak.update(store.active_total_peak)
    for key, stream in store.streams.items():
        if stream.name == names.CONCURRENCY_LIMIT:
            _fold_limit(whole, (_FLEET, stream.name, key[2]), stream)
            continue
        if stream.name not in SUMMED:
            whole.streams[key] = stream
            continue
        fleet_key = (_FLEET, stream.name, key[2])
        total = whole.streams.get(fleet_key)
        if total is None:
            hist = None if stream.hist is None else BucketHistogram.merged([stream.hist])
            total = Stream(stream.name, _FLEET, stream.attributes, stream.start, stream.time)
            total.value, total.hist = stream.value, hist
            whole.streams[fleet_key] = total
            continue
        total.value += stream.value
        if total.hist is not None and stream.hist is not None:
            total.hist.merge(stream.hist)
        total.start = min(total.start, stream.start)
        total.time = max(total.time, stream.time)


def _fold_limit(whole: MetricStore, key: tuple[Any, ...], stream: Stream) -> None:
    """The whole fleet's concurrency limit of an upstream: the tightest over the jobs that call
    it (lowest low, lowest last, and over time the lowest in force), so that its report line
    says how far the limit went down and where it is now, as one job's does, and jobs with
    different fixed limits do not read as an adaptation."""
    total = whole.streams.get(key)
    if total is None:
        whole.streams[key] = replace(stream, resource=_FLEET, series=list(stream.series or ()))
        return
    total.low, total.value = min(total.low, stream.low), min(total.value, stream.value)
    total.peak = max(total.peak, stream.peak)
    total.series = lowest_in_force(total.series or [], stream.series or [])
    total.start, total.time = min(total.start, stream.start), max(total.time, stream.time)


def lowest_in_force(
    one: list[tuple[int, float]], other: list[tuple[int, float]]
) -> list[tuple[int, float]]:
    """Two step functions (sorted (time, level) points, each level in force until the next
    point, the first also before it) -> the lower of the two at every point of either."""
    if not one or not other:
        return list(one or other)
    merged = []
    for at in sorted({t for t, _ in one} | {t for t, _ in other}):
        merged.append((at, min(_in_force(one, at), _in_force(other, at))))
    return merged


def _in_force(points: list[tuple[int, float]], at: int) -> float:
    index = bisect.bisect_right(points, (at, math.inf)) - 1
    return points[max(index, 0)][1]


def split_by_job(store: MetricStore) -> dict[bytes, MetricStore]:
    """The store split by job (resource), in one pass."""
    parts: dict[bytes, MetricStore] = {}
    for key, stream in store.streams.items():
        part = parts.get(stream.resource)
        if part is None:
            part = parts[stream.resource] = MetricStore()
            peak = store.active_total_peak.get(stream.resource)
            if peak is not None:
                part.active_total_peak = {stream.resource: peak}
        part.streams[key] = stream
    return parts


def row_identity(
    labels: dict[str, str], attributes: tuple[str, ...]
) -> tuple[tuple[str, Any], ...]:
    """The OTel attributes of a result row (an empty label is an absent attribute)."""
    return identity_of(attributes, tuple(map(labels.get, labels_of(attributes))))


@functools.lru_cache(maxsize=1 << 16)
def identity_of(
    attributes: tuple[str, ...], values: tuple[str | None, ...]
) -> tuple[tuple[str, Any], ...]:
    # Cached: the same attribute values recur in every job of a fleet.
    found: list[tuple[str, Any]] = []
    for attribute, text in zip(attributes, values, strict=True):
        if text:
            is_int = attribute in _INT_ATTRIBUTES and _INTEGER.fullmatch(text)
            value: Any = int(text) if is_int else text
            found.append((attribute, value))
    return tuple(found)


@functools.cache
def labels_of(attributes: tuple[str, ...]) -> tuple[str, ...]:
    """The Prometheus labels of OTel ``attributes`` (cached: every query and row asks)."""
    return tuple(attribute_label(a) for a in attributes)


def host_of(identity: tuple[tuple[str, Any], ...]) -> tuple[Any, ...]:
    values = dict(identity)
    return (values.get(names.ADDRESS), values.get(names.PORT))


def job_host(labels: dict[str, str]) -> tuple[str, tuple[Any, ...]]:
    return labels.get(JOB, ""), host_of(row_identity(labels, HOST))
