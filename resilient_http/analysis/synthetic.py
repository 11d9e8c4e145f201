"""Synthetic OTLP JSON trace files, shaped like the SDK's own, for benchmarks and tests.

``write_synthetic_file(path, spans=N, seed=S)`` writes exactly N spans in batches of 512 per line
(as ``BatchSpanProcessor`` exports them): per logical call, its CLIENT attempt spans and then its
INTERNAL span (spans are exported when they end, children first), with retry events, resend
counts, throttling and errors. It returns the ground truth per upstream, so a test can compare
the analysis with what was written. Deterministic for a given seed.
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson

from resilient_http.analysis import names

__all__ = ["SyntheticTruth", "UpstreamTruth", "write_synthetic_file"]

BATCH_SIZE = 512
_START_NS = 1_750_000_000_000_000_000
_UPSTREAMS = (
    ("api.internal", 8080, "GET"),
    ("api.internal", 8080, "POST"),
    ("auth.internal", 443, "GET"),
    ("search.internal", 9200, "GET"),
)
_RETRY_REASONS = ("connection_closed", "throttled", "timeout", "server_error", "connect_error")
_ERROR_TYPES = {
    "connection_closed": "ServerDisconnectedError",
    "throttled": "429",
    "timeout": "SocketTimeoutError",
    "server_error": "502",
    "connect_error": "ClientConnectorError",
}


@dataclass
class UpstreamTruth:
    """What was written for one (address, port, method)."""

    calls: int = 0
    attempts: int = 0
    client_spans: int = 0
    errors: int = 0
    throttled_attempts: int = 0
    retries: dict[str, int] = field(default_factory=dict)


@dataclass
class SyntheticTruth:
    """Ground truth of a synthetic file."""

    spans: int = 0
    lines: int = 0
    upstreams: dict[tuple[str, int, str], UpstreamTruth] = field(default_factory=dict)


def write_synthetic_file(
    path: str | Path,
    spans: int = 100_000,
    seed: int = 0,
    *,
    batch_size: int = BATCH_SIZE,
    trace_state: str | None = None,
    compress: bool = False,
) -> SyntheticTruth:
    """Write ``spans`` spans of synthetic SDK traces to ``path`` (gzip when ``compress``).

    ``trace_state`` (e.g. ``"ot=th:c"``, a 25 % probability sample) is set on every span, as a
    probability sampler would; the truth then counts the spans as written (unscaled).
    """
    rng = random.Random(seed)
    truth = SyntheticTruth()
    batch: list[dict[str, Any]] = []
    now = _START_NS
    with _create(Path(path), compress) as out:
        while truth.spans + len(batch) < spans:
            now += rng.randrange(50_000, 2_000_000)
            room = spans - truth.spans - len(batch)
            call_spans = _call(rng, now, room, trace_state, truth)
            for span in call_spans:
                batch.append(span)
                if len(batch) == batch_size:
                    _write_line(out, batch, truth)
                    batch = []
        if batch:
            _write_line(out, batch, truth)
    return truth


def _create(path: Path, compress: bool) -> BinaryIO:
    if compress:
        return cast(BinaryIO, gzip.open(path, "wb"))
    return path.open("wb")


def _call(
    rng: random.Random, now: int, room: int, trace_state: str | None, truth: SyntheticTruth
) -> list[dict[str, Any]]:
    address, port, method = rng.choice(_UPSTREAMS)
    roll = rng.random()
    attempts = 1 if roll < 0.85 else 2 if roll < 0.97 else 3
    # The last call of the file may have room for fewer CLIENT spans than it made attempts.
    written_attempts = min(attempts, room - 1)
    reasons = [rng.choice(_RETRY_REASONS) for _ in range(attempts - 1)]
    final = rng.random()
    status = 200 if final < 0.96 else 503 if final < 0.98 else 500
    trace_id = f"{rng.getrandbits(128):032x}"
    parent_id = f"{rng.getrandbits(64):016x}"
    url = f"http://{address}:{port}/items/{rng.randrange(1000)}"
    base = [_kv(names.METHOD, method), _kv(names.ADDRESS, address), _int(names.PORT, port)]
    base.append(_kv("url.full", url))
    out: list[dict[str, Any]] = []
    start = now
    events = []
    for index in range(attempts):
        duration = int(rng.lognormvariate(-4.0, 0.7) * 1e9)
        outcome = reasons[index] if index < len(reasons) else None
        attributes = list(base)
        if outcome is None:
            attributes.append(_int(names.STATUS, status))
        elif _ERROR_TYPES[outcome].isdigit():
            attributes.append(_int(names.STATUS, int(_ERROR_TYPES[outcome])))
            attributes.append(_kv(names.ERROR_TYPE, _ERROR_TYPES[outcome]))
        else:
            attributes.append(_kv(names.ERROR_TYPE, _ERROR_TYPES[outcome]))
        if index:
            attributes.append(_int(names.RESEND_COUNT, index))
        if index < written_attempts:
            out.append(
                _span(rng, trace_id, parent_id, method, 3, (start, start + duration), attributes)
            )
        start += duration
        if outcome is not None:
            delay = 0.0 if outcome == "connection_closed" else round(rng.uniform(0.05, 0.5), 3)
            events.append(
                {
                    "timeUnixNano": str(start),
                    "name": names.RETRY_EVENT,
                    "attributes": [
                        _kv(names.RETRY_REASON, outcome),
                        {"key": names.RETRY_DELAY, "value": {"doubleValue": delay}},
                        _kv(names.ERROR_TYPE, _ERROR_TYPES[outcome]),
                    ],
                }
            )
            start += int(delay * 1e9)
    attributes = [*base, _int(names.STATUS, status), _int(names.ATTEMPTS, attempts)]
    if status >= 500:
        attributes.append(_kv(names.ERROR_TYPE, str(status)))
    internal = _span(rng, trace_id, None, f"{method} {address}", 1, (now, start), attributes)
    internal["spanId"] = parent_id
    if events:
        internal["events"] = events
    out.append(internal)
    if trace_state:
        for span in out:
            span["traceState"] = trace_state
    stats = truth.upstreams.setdefault((address, port, method), UpstreamTruth())
    stats.calls += 1
    stats.attempts += attempts
    stats.client_spans += written_attempts
    stats.errors += status >= 500
    stats.throttled_attempts += reasons.count("throttled") + (status == 503)
    for reason in reasons:
        stats.retries[reason] = stats.retries.get(reason, 0) + 1
    return out


def _span(
    rng: random.Random,
    trace_id: str,
    parent_id: str | None,
    name: str,
    kind: int,
    times: tuple[int, int],
    attributes: list[dict[str, Any]],
) -> dict[str, Any]:
    span: dict[str, Any] = {"traceId": trace_id, "spanId": f"{rng.getrandbits(64):016x}"}
    if parent_id:
        span["parentSpanId"] = parent_id
    span.update(
        {
            "name": name,
            "kind": kind,
            "startTimeUnixNano": str(times[0]),
            "endTimeUnixNano": str(times[1]),
            "attributes": attributes,
            "status": {},
            "flags": 256,
        }
    )
    return span


def _write_line(out: BinaryIO, batch: list[dict[str, Any]], truth: SyntheticTruth) -> None:
    request = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        _kv("service.name", "synthetic"),
                        _kv("telemetry.sdk.language", "python"),
                        _kv("telemetry.sdk.name", "opentelemetry"),
                    ]
                },
                "scopeSpans": [
                    {"scope": {"name": names.SDK_SCOPE, "version": "0"}, "spans": batch}
                ],
            }
        ]
    }
    out.write(orjson.dumps(request) + b"\n")
    truth.spans += len(batch)
    truth.lines += 1


def _kv(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def _int(key: str, value: int) -> dict[str, Any]:
    return {"key": key, "value": {"intValue": str(value)}}
