"""OpenTelemetry SDK providers for the benchmark: real processing, discarded output.

The telemetry variants pay for everything an application pays for (sampling, span creation and
ending, attribute sets, the batch queue, metric aggregation, the periodic export collecting
every instrument) except the network: the exporters drop what they get. Each variant run builds
its own providers and shuts them down afterwards, so no background thread outlives its run and
no global provider is ever installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Histogram,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

__all__ = ["DiscardingMetricExporter", "DiscardingSpanExporter", "Providers", "make_providers"]

# The SDK's default export interval is 60 s, longer than a benchmark run, which would hide the
# collection cost; 1 s makes each run pay for several collections, as a long-lived service does.
METRIC_EXPORT_INTERVAL_MS = 1000


class DiscardingSpanExporter(SpanExporter):
    """Accepts every batch and drops it; counts spans so a run can show they were produced."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release."""


class DiscardingMetricExporter(MetricExporter):
    """Accepts every collection and drops it (cumulative temporality, as OTLP defaults to).

    It keeps each histogram's total count from the latest collection (cumulative, so the
    latest is the run's total), so a test can show that a variant records its metrics."""

    def __init__(self) -> None:
        super().__init__(preferred_temporality={}, preferred_aggregation={})
        self.exports = 0
        self.histogram_counts: dict[str, int] = {}

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object
    ) -> MetricExportResult:
        self.exports += 1
        # Once per collection (1 s), not per request: a negligible share of a run's CPU.
        for resource_metrics in metrics_data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if isinstance(metric.data, Histogram):
                        points = metric.data.data_points
                        self.histogram_counts[metric.name] = sum(p.count for p in points)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Nothing is buffered."""
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        """Nothing to release."""


@dataclass
class Providers:
    """One run's providers and the exporters behind them."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    span_exporter: DiscardingSpanExporter
    metric_exporter: DiscardingMetricExporter

    def shutdown(self) -> None:
        """Flush and stop both providers (ends the batch and export threads)."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def make_providers(sampling_ratio: float) -> Providers:
    """SDK providers with ``ParentBased(TraceIdRatioBased(sampling_ratio))`` and discarding
    exporters behind the SDK's usual processors (batch spans, periodic metric export)."""
    span_exporter = DiscardingSpanExporter()
    tracer_provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(sampling_ratio)))
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    metric_exporter = DiscardingMetricExporter()
    reader = PeriodicExportingMetricReader(
        metric_exporter, export_interval_millis=METRIC_EXPORT_INTERVAL_MS
    )
    meter_provider = MeterProvider(metric_readers=[reader])
    return Providers(tracer_provider, meter_provider, span_exporter, metric_exporter)
