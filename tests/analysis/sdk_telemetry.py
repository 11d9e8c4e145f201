"""Telemetry files written by the REAL OpenTelemetry SDK through the OTLP JSON file exporters.

``SdkTelemetry`` records logical calls the way the resilient_http contract describes them (an
INTERNAL span per call with retry events, a CLIENT span per attempt, the duration histograms and
the pool/retry counters), with durations chosen by the test, so every figure of the analysis has
a known answer. Metrics are exported only when the test calls ``flush_metrics()``. As in the
SDK, a pool wait is recorded only for an attempt that queued (``pool_wait > 0``), while every
attempt counts one connection acquisition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from resilient_http.analysis import names
from resilient_http.telemetry.instruments import DURATION_BUCKETS
from resilient_http.telemetry.otlp_file import OTLPJsonFileMetricExporter, OTLPJsonFileSpanExporter

START_NS = 1_760_000_000_000_000_000


@dataclass
class Attempt:
    """One physical attempt: how long it took and how it ended; ``retry`` = why it was retried."""

    seconds: float
    status: int | None = 200
    error_type: str | None = None
    retry: str | None = None
    delay: float = 0.0
    pool_wait: float = 0.0
    reused: bool = True
    idle: float | None = None
    """Seconds its connection lay idle before this reuse (on the CLIENT span when given)."""
    served: int = 0
    """Requests its connection had served before (on the CLIENT span with ``idle``)."""
    in_use: int | None = None
    """Connections to the upstream in use once it was acquired (on the CLIENT span when given)."""


@dataclass
class SdkTelemetry:
    """Real TracerProvider/MeterProvider writing the given files (None: that signal is off)."""

    traces: Path | None
    metrics: Path | None
    delta: bool = False
    service: str = "svc"
    clock_ns: int = START_NS
    _instruments: dict[str, Any] = field(default_factory=dict)
    _open: dict[tuple[str, int, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        resource = Resource.create({"service.name": self.service})
        self.tracer_provider = TracerProvider(resource=resource)
        if self.traces is not None:
            exporter = OTLPJsonFileSpanExporter(self.traces)
            self.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.tracer = self.tracer_provider.get_tracer(names.SDK_SCOPE, "1.0")
        readers = []
        if self.metrics is not None:
            temporality: dict[type, AggregationTemporality] | None = None
            if self.delta:
                temporality = {
                    Counter: AggregationTemporality.DELTA,
                    Histogram: AggregationTemporality.DELTA,
                    ObservableCounter: AggregationTemporality.DELTA,
                    UpDownCounter: AggregationTemporality.CUMULATIVE,
                    ObservableUpDownCounter: AggregationTemporality.CUMULATIVE,
                    ObservableGauge: AggregationTemporality.CUMULATIVE,
                }
            metric_exporter = OTLPJsonFileMetricExporter(self.metrics, temporality)
            # An infinite interval: no background exports, only the explicit flushes.
            readers.append(
                PeriodicExportingMetricReader(metric_exporter, export_interval_millis=math.inf)
            )
        self.meter_provider = MeterProvider(metric_readers=readers, resource=resource)
        meter = self.meter_provider.get_meter(names.SDK_SCOPE, "1.0")
        self._instruments = {
            "call": meter.create_histogram(
                names.CALL_DURATION, "s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS
            ),
            "attempt": meter.create_histogram(
                names.ATTEMPT_DURATION, "s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS
            ),
            "wait": meter.create_histogram(
                names.POOL_WAIT, "s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS
            ),
            "acquired": meter.create_counter(names.CONNECTIONS_ACQUIRED),
            "retries": meter.create_counter(names.RETRIES),
            "suppressed": meter.create_counter(names.RETRIES_SUPPRESSED),
            "open": meter.create_up_down_counter(names.OPEN_CONNECTIONS),
            "limit": meter.create_gauge(names.POOL_LIMIT),
        }

    def call(
        self,
        attempts: list[Attempt],
        *,
        address: str = "api.test",
        port: int = 8080,
        method: str = "GET",
    ) -> None:
        """Record one logical call made of ``attempts`` (the last one is the final outcome)."""
        server: dict[str, str | int] = {names.ADDRESS: address, names.PORT: port}
        request: dict[str, str | int] = {**server, names.METHOD: method}
        start = self.clock_ns
        final = attempts[-1]
        outcome = _outcome(final)
        internal = self.tracer.start_span(
            f"{method} {address}",
            kind=SpanKind.INTERNAL,
            start_time=start,
            attributes={
                **request,
                "url.full": f"http://{address}:{port}/items",
                **outcome,
                names.ATTEMPTS: len(attempts),
            },
        )
        context = trace.set_span_in_context(internal)
        now = start
        for index, attempt in enumerate(attempts):
            if attempt.pool_wait > 0:  # the SDK records a wait only when the request queued
                self._instruments["wait"].record(attempt.pool_wait, server)
            self._instruments["acquired"].add(1, {**server, names.REUSED: attempt.reused})
            attributes: dict[str, Any] = {**request, **_outcome(attempt)}
            if index:
                attributes[names.RESEND_COUNT] = index
            end = now + round(attempt.seconds * 1e9)
            span_attributes = dict(attributes)
            if attempt.in_use is not None:
                span_attributes[names.CONNECTION_IN_USE] = attempt.in_use
            if attempt.reused and attempt.idle is not None:
                span_attributes[names.CONNECTION_IDLE_TIME] = attempt.idle
                span_attributes[names.CONNECTION_REQUESTS] = attempt.served
            client = self.tracer.start_span(
                method,
                context=context,
                kind=SpanKind.CLIENT,
                start_time=now,
                attributes=span_attributes,
            )
            client.end(end_time=end)
            self._instruments["attempt"].record(attempt.seconds, attributes)
            now = end
            if attempt.retry is not None:
                self._instruments["retries"].add(1, {**request, names.RETRY_REASON: attempt.retry})
                internal.add_event(
                    names.RETRY_EVENT,
                    {
                        names.RETRY_REASON: attempt.retry,
                        names.RETRY_DELAY: attempt.delay,
                        names.ERROR_TYPE: attempt.error_type or str(attempt.status),
                    },
                    timestamp=now,
                )
                now += round(attempt.delay * 1e9)
        internal.end(end_time=now)
        self._instruments["call"].record((now - start) / 1e9, {**request, **outcome})
        self.clock_ns = now + 1_000_000

    def suppressed(self, reason: str, count: int = 1, *, address: str = "api.test") -> None:
        """Retries not made, for ``reason``."""
        attributes = {names.ADDRESS: address, names.PORT: 8080, names.SUPPRESSION_REASON: reason}
        self._instruments["suppressed"].add(count, attributes)

    def open_connections(
        self, active: int, idle: int, *, address: str = "api.test", port: int = 8080
    ) -> None:
        """Set the open-connection levels of one upstream (an up-down counter moves there)."""
        for state, level in (("active", active), ("idle", idle)):
            key = (address, port, state)
            change = level - self._open.get(key, 0)
            self._open[key] = level
            if change:
                attributes = {names.ADDRESS: address, names.PORT: port}
                attributes[names.CONNECTION_STATE] = state
                self._instruments["open"].add(change, attributes)

    def pool_limits(self, limit: int, limit_per_host: int) -> None:
        """Report the pool limits (0 = unlimited)."""
        self._instruments["limit"].set(limit, {names.LIMIT_SCOPE: "total"})
        self._instruments["limit"].set(limit_per_host, {names.LIMIT_SCOPE: "per_host"})

    def flush_metrics(self) -> None:
        """Export the metrics now: one more line in the metrics file."""
        self.meter_provider.force_flush()

    def close(self) -> None:
        """Flush and shut both providers down."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _outcome(attempt: Attempt) -> dict[str, str | int]:
    outcome: dict[str, str | int] = {}
    if attempt.status is not None:
        outcome[names.STATUS] = attempt.status
    if attempt.error_type is not None:
        outcome[names.ERROR_TYPE] = attempt.error_type
    elif attempt.status is not None and attempt.status >= 500:
        outcome[names.ERROR_TYPE] = str(attempt.status)
    return outcome


def idle_timeout_calls(
    telemetry: SdkTelemetry, *, stale: bool = True, address: str = "api.test", method: str = "GET"
) -> None:
    """60 calls behind an upstream idle timeout of about 4 s: with ``stale``, every third GET
    reuses a connection idle 4.2 s that the upstream had closed (retried on a new one); the
    other calls (``method``) reuse connections idle up to 2 s, which never fail."""
    for i in range(60):
        if stale and i % 3 == 0:
            closed = Attempt(
                0.001,
                status=None,
                error_type="ServerDisconnectedError",
                retry="connection_closed",
                idle=4.2,
                served=i % 5,
                in_use=1,
            )
            telemetry.call([closed, Attempt(0.02, reused=False, in_use=1)], address=address)
        else:
            fine = Attempt(0.02, idle=0.05 * (i % 40 + 1), in_use=1)
            telemetry.call([fine], address=address, method=method)
