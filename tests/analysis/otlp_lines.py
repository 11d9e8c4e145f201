"""Hand-built OTLP JSON lines: cumulative and delta sequences with exactly chosen timestamps.

The real SDK stamps metrics with the wall clock; these builders write the same JSON shapes with
chosen start/end times, so rates (new connections per second) have exact known answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from resilient_http.analysis import names

CUMULATIVE = 2
DELTA = 1
SECOND = 1_000_000_000
T0 = 1_760_000_000 * SECOND
UPSTREAM = {names.ADDRESS: "api.test", names.PORT: 8080}


def attributes(values: dict[str, Any]) -> list[dict[str, Any]]:
    """A dict as an OTLP KeyValue list (ints as intValue strings, bools as boolValue)."""
    out = []
    for key, value in values.items():
        if isinstance(value, bool):
            encoded: dict[str, Any] = {"boolValue": value}
        elif isinstance(value, int):
            encoded = {"intValue": str(value)}
        elif isinstance(value, float):
            encoded = {"doubleValue": value}
        else:
            encoded = {"stringValue": value}
        out.append({"key": key, "value": encoded})
    return out


def number_point(attrs: dict[str, Any], value: float, start: int, time: int) -> dict[str, Any]:
    """A Sum/Gauge data point."""
    point: dict[str, Any] = {"attributes": attributes(attrs), "timeUnixNano": str(time)}
    if start:
        point["startTimeUnixNano"] = str(start)
    if isinstance(value, int):
        point["asInt"] = str(value)
    else:
        point["asDouble"] = value
    return point


def histogram_point(
    attrs: dict[str, Any],
    bounds: list[float],
    counts: list[int],
    start: int,
    time: int,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> dict[str, Any]:
    """An explicit-bucket histogram data point (sum left 0: the analysis does not use it)."""
    point: dict[str, Any] = {
        "attributes": attributes(attrs),
        "startTimeUnixNano": str(start),
        "timeUnixNano": str(time),
        "count": str(sum(counts)),
        "sum": 0.0,
        "bucketCounts": [str(c) for c in counts],
        "explicitBounds": bounds,
    }
    if minimum is not None:
        point["min"] = minimum
    if maximum is not None:
        point["max"] = maximum
    return point


def sum_metric(
    name: str, points: list[dict[str, Any]], temporality: int = CUMULATIVE, monotonic: bool = True
) -> dict[str, Any]:
    """A Sum metric."""
    data = {"dataPoints": points, "aggregationTemporality": temporality, "isMonotonic": monotonic}
    return {"name": name, "sum": data}


def gauge_metric(name: str, points: list[dict[str, Any]]) -> dict[str, Any]:
    """A Gauge metric."""
    return {"name": name, "gauge": {"dataPoints": points}}


def histogram_metric(
    name: str, points: list[dict[str, Any]], temporality: int = CUMULATIVE
) -> dict[str, Any]:
    """A Histogram metric."""
    return {
        "name": name,
        "unit": "s",
        "histogram": {"dataPoints": points, "aggregationTemporality": temporality},
    }


def metrics_request(
    metrics: list[dict[str, Any]], service: str = "svc", scope: str = names.SDK_SCOPE
) -> dict[str, Any]:
    """An ExportMetricsServiceRequest of one resource and scope."""
    return {
        "resourceMetrics": [
            {
                "resource": {"attributes": attributes({"service.name": service})},
                "scopeMetrics": [{"scope": {"name": scope}, "metrics": metrics}],
            }
        ]
    }


def span(
    kind: int,
    attrs: dict[str, Any],
    start: int,
    end: int,
    *,
    events: list[dict[str, Any]] | None = None,
    trace_state: str | None = None,
) -> dict[str, Any]:
    """A span (ids are fixed: the analysis never joins traces)."""
    out: dict[str, Any] = {
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": "b7ad6b7169203331",
        "name": "span",
        "kind": kind,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": attributes(attrs),
        "status": {},
    }
    if events:
        out["events"] = events
    if trace_state:
        out["traceState"] = trace_state
    return out


def retry_event(reason: str, time: int) -> dict[str, Any]:
    """A resilient_http.retry span event."""
    return {
        "timeUnixNano": str(time),
        "name": names.RETRY_EVENT,
        "attributes": attributes({names.RETRY_REASON: reason, names.RETRY_DELAY: 0.1}),
    }


def traces_request(spans: list[dict[str, Any]], scope: str = names.SDK_SCOPE) -> dict[str, Any]:
    """An ExportTraceServiceRequest of one resource and scope."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attributes({"service.name": "svc"})},
                "scopeSpans": [{"scope": {"name": scope}, "spans": spans}],
            }
        ]
    }


def write_lines(path: Path, requests: list[dict[str, Any]]) -> Path:
    """Write one request per line."""
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in requests))
    return path


def rate_limited_spans(
    attrs: dict[str, Any], seconds: int = 3, trace_state: str | None = None
) -> list[dict[str, Any]]:
    """CLIENT spans of a client meeting a 200/s token bucket (burst 20), as in the demo's
    ``throttled`` scenario: at the start of each second 1,000 attempts/s for 60 ms (the bucket
    runs dry, 429s among 200s), then 100 attempts/s (all let through) while the throttled
    calls wait out a 1 s Retry-After. Answers let through end 10 ms after they start, 429s 1 ms.
    """
    rate, burst = 200.0, 20.0
    tokens, last = burst, 0.0
    out = []
    for second in range(seconds):
        times = [second + i / 1000 for i in range(60)]
        times += [second + 0.06 + i / 100 for i in range(94)]
        for t in times:
            tokens = min(burst, tokens + (t - last) * rate)
            last = t
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            start = T0 + round(t * SECOND)
            end = start + (SECOND // 100 if allowed else SECOND // 1000)
            status = {names.STATUS: 200 if allowed else 429}
            out.append(span(3, {**attrs, **status}, start, end, trace_state=trace_state))
    return out
