"""Export failures, reported quietly: one warning per interval instead of one per batch and retry.

A collector that is down must cost the application a logged line now and then, not a log flood
(the OTLP exporters log every failed batch and every retry) and never an exception in a request.
The wrappers here count failures and log a summary at most once per interval; the filter mutes
the exporters' own lines while ``configure_telemetry``'s handle is open. A wrapper shuts the
wrapped exporter down once, whoever asks first: the handle (which does so to end a retry wait that
is past its budget, see ``handle.py``) or the SDK's processor or reader, which would otherwise get
the exporter's "already shutdown" warning.

Two kinds of OpenTelemetry internals are used, each checked where it is used, pinned against the
installed packages by ``tests/telemetry/test_export_failures.py``, and where one is missing or
changed, one ``RuntimeWarning`` names it and the wrapper goes on without it:

============================================  ===============================================
internal (shape checked)                      what it buys (and what is lost without it)
============================================  ===============================================
``MetricExporter._preferred_temporality``     the reader takes temporality and aggregation
and ``_preferred_aggregation`` (each None     from the exporter it is given, this wrapper:
or a dict keyed by instrument classes, of     copied from the wrapped one, they keep its
``AggregationTemporality`` / ``Aggregation``  ``OTEL_EXPORTER_OTLP_METRICS_*`` preferences, as
values), read from the wrapped exporter       SPEC's "exporters from OTEL_* env" asks (else
                                              None: the SDK's defaults)
the exporters' logger names                   their per-batch lines are muted (else they are
(``_EXPORTER_LOGGERS``; one is the private    logged as the exporters write them); checked
module ``opentelemetry.sdk.metrics.           for the modules already imported: each has a
_internal.export``)                           module-level logger of that name
============================================  ===============================================
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from opentelemetry.metrics import Instrument
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.metrics.view import Aggregation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .._dependency_internals import warn_changed_internal

__all__ = ["QuietExporterLogs", "QuietMetricExporter", "QuietSpanExporter"]

log: Final = logging.getLogger("resilient_http")
# Loggers through which the OTLP exporters report each failed batch and each retry: each is
# the module-level logger of the module of that name, in the distribution named with it.
_EXPORTER_LOGGERS: Final = (
    (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry-exporter-otlp-proto-http",
    ),
    (
        "opentelemetry.exporter.otlp.proto.http.metric_exporter",
        "opentelemetry-exporter-otlp-proto-http",
    ),
    ("opentelemetry.exporter.otlp.proto.grpc.exporter", "opentelemetry-exporter-otlp-proto-grpc"),
    ("opentelemetry.exporter.otlp.common.http", "opentelemetry-exporter-otlp-common"),
    ("opentelemetry.sdk.trace.export", "opentelemetry-sdk"),
    ("opentelemetry.sdk.metrics._internal.export", "opentelemetry-sdk"),
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


class _Once:
    """Runs a callable the first time it is called, from any thread; later calls do nothing."""

    def __init__(self, action: Callable[..., None]) -> None:
        self._action: Callable[..., None] | None = action
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            action, self._action = self._action, None
        if action is not None:
            action(*args, **kwargs)


class QuietSpanExporter(SpanExporter):
    """Wraps a span exporter: failures (or exceptions) are counted and reported per interval."""

    def __init__(self, inner: SpanExporter, interval: float) -> None:
        self._inner = inner
        self._report = _FailureReport(f"spans with {type(inner).__name__}", interval)
        self._shutdown = _Once(inner.shutdown)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._report.failed()
        return result

    def shutdown(self) -> None:
        """Shut the wrapped exporter down, the first time only."""
        self._shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class QuietMetricExporter(MetricExporter):
    """Wraps a metric exporter: failures (or exceptions) are counted and reported per interval."""

    def __init__(self, inner: MetricExporter, interval: float) -> None:
        super().__init__(
            preferred_temporality=preference_of(inner, "_preferred_temporality"),
            preferred_aggregation=preference_of(inner, "_preferred_aggregation"),
        )
        self._inner = inner
        self._report = _FailureReport(f"metrics with {type(inner).__name__}", interval)
        self._shutdown = _Once(inner.shutdown)

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
        """Shut the wrapped exporter down, the first time only."""
        self._shutdown(timeout_millis=timeout_millis, **kwargs)


class QuietExporterLogs(logging.Filter):
    """Drops the OTLP exporters' per-batch and per-retry lines; ``_FailureReport`` sums them up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.CRITICAL

    @classmethod
    def install(cls) -> QuietExporterLogs:
        quiet = cls()
        for name, distribution in _EXPORTER_LOGGERS:
            if not logger_name_fits(name):
                warn_changed_internal(
                    distribution,
                    f"the logger {name}",
                    "that module's exporter lines are not muted",
                )
            logging.getLogger(name).addFilter(quiet)
        return quiet

    def remove(self) -> None:
        for name, _ in _EXPORTER_LOGGERS:
            logging.getLogger(name).removeFilter(self)


# What each preference of a MetricExporter maps an instrument class to.
_PREFERENCE_VALUES: Final = {
    "_preferred_temporality": AggregationTemporality,
    "_preferred_aggregation": Aggregation,
}
_MISSING: Final = object()


def preference_of(exporter: MetricExporter, name: str) -> dict[type, Any] | None:
    """``exporter``'s preference ``name`` (see ``_PREFERENCE_VALUES``), or None (the SDK's
    default) with one warning when it is missing or of another shape."""
    preference = getattr(exporter, name, _MISSING)
    if preference is None or (
        type(preference) is dict
        and all(
            isinstance(key, type)
            and issubclass(key, Instrument)
            and isinstance(value, _PREFERENCE_VALUES[name])
            for key, value in preference.items()
        )
    ):
        return preference
    warn_changed_internal(
        "opentelemetry-sdk",
        f"MetricExporter.{name}",
        f"{type(exporter).__name__}'s preference is not passed on (the SDK's default applies)",
    )
    return None


def logger_name_fits(name: str) -> bool:
    """Whether the module ``name``, when imported, logs through a module-level logger ``name``
    (a module not imported is not checked: it logs nothing)."""
    module = sys.modules.get(name)
    return module is None or any(
        isinstance(value, logging.Logger) and value.name == name for value in vars(module).values()
    )
