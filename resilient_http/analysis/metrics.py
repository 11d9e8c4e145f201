"""Metric streams from ``ExportMetricsServiceRequest`` lines, reduced as they arrive.

A *stream* is resource + scope + metric + attribute set (+ start time for cumulative data). The
SDK's default CUMULATIVE temporality repeats each stream on every export with growing totals, so
only its latest point is kept; DELTA points are added up. Gauges (and non-monotonic sums, such as
``http.client.open_connections``, which may arrive either way) keep their latest level and the
peak level seen. Only the metrics named in the SDK's contract are kept, so memory is bounded by
the number of streams, never by the number of lines. Grouping streams into upstreams is
``model.py``'s job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from resilient_http.analysis import names
from resilient_http.analysis.stats import BucketHistogram

__all__ = ["MetricStore", "Stream"]

_WANTED = names.SDK_METRICS
# http.client.* names are semantic conventions: other libraries (httpx, requests...) emit them
# too, so those are only taken from the SDK's scope or the aiohttp instrumentation's.
_SEMCONV_PREFIX = "http.client."

_DELTA = 1
#: Levels kept as a series over time, not only as their latest, peak and low: the adaptive
#: concurrency limit, which ``analyze`` reports over time.
SERIES_METRICS = frozenset({names.CONCURRENCY_LIMIT})
SERIES_MAX_POINTS = 512
_TEMPORALITY = {"AGGREGATION_TEMPORALITY_DELTA": 1, "AGGREGATION_TEMPORALITY_CUMULATIVE": 2}
# OTLP's integers: a point's asInt is a signed 64-bit integer, counts are unsigned.
_INT64 = range(-(1 << 63), 1 << 63)
_UINT64 = range(1 << 64)
# No double of the SDK's (a count, a level, seconds) is larger than an asInt may be; a larger
# one is no measurement, and would overflow the analysis's arithmetic (1e306 s in ns is inf).
_MAX_DOUBLE = float(1 << 63)


@dataclass(slots=True)
class Stream:
    """The reduced state of one metric stream.

    ``value`` is the total (counters), the current level (gauges, up-down counters) or unused
    (histograms, see ``hist``); ``peak`` is the highest level seen. ``start``/``time`` bound the
    observed window in Unix nanoseconds.
    """

    name: str
    resource: bytes
    attributes: dict[str, Any]
    start: int
    time: int
    delta: bool = False
    level: bool = False
    value: float = 0.0
    peak: float = -math.inf
    low: float = math.inf
    """The lowest level seen (levels only): where an adaptive limit went down to."""
    hist: BucketHistogram | None = None
    series: list[tuple[int, float]] | None = None
    """(time, level) of each export, for the levels followed over time (``SERIES_METRICS``);
    thinned to every other point past ``SERIES_MAX_POINTS``, so memory stays bounded."""


@dataclass
class MetricStore:
    """All streams of the wanted metrics, by stream identity."""

    streams: dict[tuple[Any, ...], Stream] = field(default_factory=dict)
    points: int = 0
    # Peak, per resource (one process), of the sum of active connections over all upstreams at
    # one collection time: what the total pool limit (RESILIENT_HTTP_LIMIT) is compared with.
    active_total_peak: dict[bytes, float] = field(default_factory=dict)
    # Times between two exports of one stream, rounded to 2 significant digits (ms), counted:
    # the most frequent is the metric export interval, the sampling interval of every gauge
    # peak. Not the shortest (the flush at shutdown follows the last export closely) nor the
    # longest (a restart leaves a gap in a gauge's stream).
    export_gaps_ms: dict[float, int] = field(default_factory=dict)

    @property
    def export_interval_s(self) -> float | None:
        """The metric export interval in seconds (None until a stream was exported twice)."""
        if not self.export_gaps_ms:
            return None
        gap = max(self.export_gaps_ms, key=lambda ms: (self.export_gaps_ms[ms], ms))
        return gap / 1000

    def add_request(self, request: dict[str, Any]) -> None:
        """Fold one decoded ``ExportMetricsServiceRequest`` into the streams."""
        for resource_metrics in request.get("resourceMetrics") or ():
            resource = resource_metrics.get("resource") or {}
            # The attribute list as serialised identifies the resource; one process always
            # writes it the same way.
            resource_key = orjson.dumps(resource.get("attributes") or [])
            for scope_metrics in resource_metrics.get("scopeMetrics") or ():
                scope = (scope_metrics.get("scope") or {}).get("name", "")
                for metric in scope_metrics.get("metrics") or ():
                    name = metric.get("name")
                    if name not in _WANTED:
                        continue
                    if name.startswith(_SEMCONV_PREFIX) and scope not in names.ATTEMPT_SCOPES:
                        continue
                    self._add_metric(resource_key, scope, name, metric)

    def merge(self, later: MetricStore) -> None:
        """Add the streams of a later part of the input (read by another process).

        Cumulative streams and gauges keep the newer point; deltas add up (a delta level's
        peak in ``later`` is relative to its own start, so it is shifted by this level).
        """
        for key, theirs in later.streams.items():
            mine = self.streams.get(key)
            if mine is None:
                self.streams[key] = theirs
                continue
            if mine.delta:
                if theirs.level:
                    mine.peak = max(mine.peak, mine.value + theirs.peak)
                mine.value += theirs.value
                if mine.hist is not None and theirs.hist is not None:
                    mine.hist.merge(theirs.hist)
                else:
                    mine.hist = mine.hist or theirs.hist
            else:
                if theirs.time >= mine.time:
                    mine.value, mine.hist = theirs.value, theirs.hist
                mine.peak = max(mine.peak, theirs.peak)
                mine.low = min(mine.low, theirs.low)
                for time, level in theirs.series or ():
                    _add_to_series(mine, time, level)
            starts = [s for s in (mine.start, theirs.start) if s]
            mine.start = min(starts) if starts else 0
            mine.time = max(mine.time, theirs.time)
        for gap, count in later.export_gaps_ms.items():
            self.export_gaps_ms[gap] = self.export_gaps_ms.get(gap, 0) + count
        for resource, peak in later.active_total_peak.items():
            self.active_total_peak[resource] = max(self.active_total_peak.get(resource, 0.0), peak)
        self.points += later.points

    def by_name(self, name: str) -> list[Stream]:
        """Streams of one metric."""
        return [stream for stream in self.streams.values() if stream.name == name]

    def _add_metric(self, resource: bytes, scope: str, name: str, metric: dict[str, Any]) -> None:
        for kind in ("sum", "gauge", "histogram", "exponentialHistogram"):
            data = metric.get(kind)
            if data is not None:
                break
        else:
            return
        temporality = data.get("aggregationTemporality", 0)
        temporality = _TEMPORALITY.get(temporality, temporality)
        delta = temporality == _DELTA
        is_level = kind == "gauge" or (kind == "sum" and not data.get("isMonotonic", False))
        is_histogram = kind in ("histogram", "exponentialHistogram")
        for point in data.get("dataPoints") or ():
            attributes = attributes_dict(point.get("attributes"))
            start = int(point.get("startTimeUnixNano") or 0)
            time = int(point.get("timeUnixNano") or 0)
            # Values first: a malformed one raises before this point changes any stream.
            hist = _histogram(kind, point) if is_histogram else None
            number = 0.0 if is_histogram else _number(point)
            self.points += 1
            identity = tuple(sorted(attributes.items()))
            # Cumulative points of one stream share their start time; a new start time is a
            # restarted process (a new stream to add). Gauges and deltas ignore it.
            stream_start = start if not (delta or kind == "gauge") else 0
            key = (resource, scope, name, identity, stream_start)
            stream = self.streams.get(key)
            if stream is None:
                stream = Stream(name, resource, attributes, start, time, delta, is_level)
                self.streams[key] = stream
            elif not delta and time < stream.time:
                # An older point (files read out of order): keep the latest, note its level.
                if is_level:
                    stream.peak = max(stream.peak, number)
                    stream.low = min(stream.low, number)
                    _add_to_series(stream, time, number)
                continue
            elif is_level and time > stream.time and stream.time:
                self._note_interval(time - stream.time)
            if start and (not stream.start or start < stream.start):
                stream.start = start
            stream.time = max(stream.time, time)
            if hist is not None:
                if delta and stream.hist is not None:
                    stream.hist.merge(hist)
                else:
                    stream.hist = hist
                continue
            stream.value = stream.value + number if delta else number
            if is_level:
                stream.peak = max(stream.peak, stream.value)
                stream.low = min(stream.low, stream.value)
                _add_to_series(stream, time, stream.value)
        if name == names.OPEN_CONNECTIONS:
            self._update_active_total(resource)

    def _note_interval(self, gap_ns: int) -> None:
        gap_ms = float(f"{gap_ns / 1e6:.2g}")
        self.export_gaps_ms[gap_ms] = self.export_gaps_ms.get(gap_ms, 0) + 1

    def _update_active_total(self, resource: bytes) -> None:
        total = sum(
            stream.value
            for stream in self.streams.values()
            if stream.name == names.OPEN_CONNECTIONS
            and stream.resource == resource
            and stream.attributes.get(names.CONNECTION_STATE) == "active"
        )
        self.active_total_peak[resource] = max(self.active_total_peak.get(resource, 0.0), total)


def _add_to_series(stream: Stream, time: int, level: float) -> None:
    """Note one exported level of a ``SERIES_METRICS`` stream (others keep no series)."""
    if stream.name not in SERIES_METRICS:
        return
    series = stream.series if stream.series is not None else []
    stream.series = series
    series.append((time, level))
    if len(series) > SERIES_MAX_POINTS:
        series.sort()
        del series[1::2]  # every other point: the shape stays, the memory is bounded


def attributes_dict(attributes: list[dict[str, Any]] | None) -> dict[str, Any]:
    """OTLP ``KeyValue`` list -> plain dict of hashable scalars (arrays become tuples)."""
    if not attributes:
        return {}
    return {kv["key"]: any_value(kv.get("value") or {}) for kv in attributes}


def any_value(value: dict[str, Any]) -> Any:
    """Decode one OTLP/JSON ``AnyValue`` (64-bit integers arrive as strings)."""
    for kind, raw in value.items():
        if kind == "stringValue" or kind == "boolValue":
            return raw
        if kind == "intValue":
            return int(raw)
        if kind == "doubleValue":
            return float(raw)
        if kind == "arrayValue":
            return tuple(any_value(item) for item in raw.get("values") or ())
        if kind == "kvlistValue":
            return tuple(sorted(attributes_dict(raw.get("values")).items()))
        return raw
    return None


def _number(point: dict[str, Any]) -> float:
    if "asInt" in point:
        return float(_integer(point["asInt"], _INT64))
    return _finite(point.get("asDouble", 0.0))


def _integer(raw: Any, valid: range) -> int:
    """An integer field of OTLP; one out of its type's range is malformed (ValueError)."""
    value = int(raw)
    if value not in valid:
        raise ValueError(f"{raw!r} is out of range")
    return value


def _finite(raw: Any) -> float:
    """A double field of OTLP (float() reads OTLP/JSON's "NaN" and "Infinity" too); one that
    is NaN, infinite or beyond ``_MAX_DOUBLE`` is malformed (ValueError)."""
    value = float(raw)
    if not -_MAX_DOUBLE <= value <= _MAX_DOUBLE:  # False for NaN too
        raise ValueError(f"{raw!r} is not a measurement")
    return value


def _histogram(kind: str, point: dict[str, Any]) -> BucketHistogram:
    raw_min = point.get("min")
    raw_max = point.get("max")
    total = float(_integer(point.get("count") or 0, _UINT64))
    total_sum = _finite(point.get("sum") or 0.0)
    minimum = None if raw_min is None else _finite(raw_min)
    maximum = None if raw_max is None else _finite(raw_max)
    if kind == "histogram":
        counts = [float(_integer(c, _UINT64)) for c in point.get("bucketCounts") or ()]
        bounds = [_finite(b) for b in point.get("explicitBounds") or ()]
        if len(counts) != len(bounds) + 1:  # no buckets at all: only the summary is usable
            counts = []
        return BucketHistogram.from_explicit(
            bounds, counts, total=total, total_sum=total_sum, minimum=minimum, maximum=maximum
        )
    positive = point.get("positive") or {}
    return BucketHistogram.from_exponential(
        int(point.get("scale") or 0),
        int(positive.get("offset") or 0),
        [float(_integer(c, _UINT64)) for c in positive.get("bucketCounts") or ()],
        float(_integer(point.get("zeroCount") or 0, _UINT64)),
        total=total,
        total_sum=total_sum,
        minimum=minimum,
        maximum=maximum,
    )
