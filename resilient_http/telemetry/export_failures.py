"""Export failures, reported quietly: one warning per interval instead of one per batch and retry.

A collector that is down must cost the application a logged line now and then, not a log flood
(the OTLP exporters log every failed batch and every retry) and never an exception in a request.
The wrappers here count failures and log a summary at most once per interval; the filter mutes
the exporters' own lines while ``configure_telemetry``'s handle is open.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["QuietExporterLogs", "QuietMetricExporter", "QuietSpanExporter"]

log: Final = logging.getLogger("resilient_http")
# Loggers through which the OTLP exporters report each failed batch and each retry.
_EXPORTER_LOGGERS: Final = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.sdk.metrics._internal.export",
)


class _FailureReport:
    """Logs a failing exporter once per interval, with how many batches failed since."""

    def __init__(self, what: str, interval: float) -> None:
        self._what = what
        self._interval = interval
        self._last = -math.inf
        self._failed = 0
        self._lock = threading.Lock()

    def failed(self) -> None:
        with self._lock:
            self._failed += 1
            now = time.monotonic()
            if now - self._last < self._interval:
                return
            count, self._failed, self._last = self._failed, 0, now
        log.warning(
            "exporting %s failed (%d batch(es) since the last warning); requests are unaffected",
            self._what,
            count,
        )


class QuietSpanExporter(SpanExporter):
    """Wraps a span exporter: failures (or exceptions) are counted and reported per interval."""

    def __init__(self, inner: SpanExporter, interval: float) -> None:
        self._inner = inner
        self._report = _FailureReport(f"spans with {type(inner).__name__}", interval)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._report.failed()
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class QuietMetricExporter(MetricExporter):
    """Wraps a metric exporter: failures (or exceptions) are counted and reported per interval."""

    def __init__(self, inner: MetricExporter, interval: float) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._report = _FailureReport(f"metrics with {type(inner).__name__}", interval)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            result = MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            self._report.failed()
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class QuietExporterLogs(logging.Filter):
    """Drops the OTLP exporters' per-batch and per-retry lines; ``_FailureReport`` sums them up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.CRITICAL

    @classmethod
    def install(cls) -> QuietExporterLogs:
        quiet = cls()
        for name in _EXPORTER_LOGGERS:
            logging.getLogger(name).addFilter(quiet)
        return quiet

    def remove(self) -> None:
        for name in _EXPORTER_LOGGERS:
            logging.getLogger(name).removeFilter(self)
