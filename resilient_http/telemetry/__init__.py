"""OpenTelemetry for resilient_http: spans, metrics, redaction and exporter set-up.

Public here, for applications that run OpenTelemetry providers of their own: the exporters of
the OTLP JSON lines file that ``resilient-http analyze`` reads (the OpenTelemetry Collector's
``file`` exporter format)::

    provider.add_span_processor(BatchSpanProcessor(OTLPJsonFileSpanExporter("telemetry.jsonl")))
    MeterProvider(metric_readers=[
        PeriodicExportingMetricReader(OTLPJsonFileMetricExporter("telemetry.jsonl")),
    ])

They are also registered as the OpenTelemetry exporter entry point ``resilient_http_file``, so
``OTEL_TRACES_EXPORTER=otlp,resilient_http_file`` and ``OTEL_METRICS_EXPORTER=otlp,
resilient_http_file`` select them under ``opentelemetry-instrument``; built that way they write to
the file ``RESILIENT_HTTP_TELEMETRY_FILE`` names. The modules of this package are private.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .otlp_file import OTLPJsonFileMetricExporter, OTLPJsonFileSpanExporter

__all__ = ["OTLPJsonFileMetricExporter", "OTLPJsonFileSpanExporter"]


def __getattr__(name: str) -> Any:
    # The exporters are built on the OpenTelemetry SDK, imported on their first use: an
    # application that never exports does not load the SDK (a quarter second), nor meet its
    # import-time reading of OTEL_* variables (a bad one made `import resilient_http` fail).
    if name in __all__:
        from . import otlp_file

        return getattr(otlp_file, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
