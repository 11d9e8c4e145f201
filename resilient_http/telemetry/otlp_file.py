"""OTLP JSON lines file exporters: the format of the OpenTelemetry Collector's ``file`` exporter.

Public (``resilient_http.telemetry``), for applications with providers of their own, and
registered as the OpenTelemetry exporter entry point ``resilient_http_file`` (traces and
metrics), so ``OTEL_TRACES_EXPORTER=otlp,resilient_http_file`` selects them under
``opentelemetry-instrument``; built that way, with no path, they write to the file that
``RESILIENT_HTTP_TELEMETRY_FILE`` names.

Each ``export`` call appends exactly one line holding one ``ExportTraceServiceRequest`` or
``ExportMetricsServiceRequest`` in the OTLP/JSON mapping (``otlp_json.py``).

Exporters writing to the same path share one lock-guarded appender, so a span and a metric exporter
on one file never interleave partial lines. The file is opened lazily in append mode; every line is
one ``os.write`` (no user-space buffering, so nothing waits for a flush). A write error makes the
export return FAILURE and is logged once per exporter; exporters never raise.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .._exceptions import ConfigError
from ..config import TELEMETRY_FILE_VARIABLE
from .otlp_json import encode_metrics_json, encode_spans_json

__all__ = [
    "FILE_EXPORTER_NAME",
    "OTLPJsonFileMetricExporter",
    "OTLPJsonFileSpanExporter",
    "telemetry_file_from_environment",
]

#: The exporters' entry point name (pyproject.toml), for ``OTEL_TRACES_EXPORTER`` and
#: ``OTEL_METRICS_EXPORTER``.
FILE_EXPORTER_NAME: Final = "resilient_http_file"

_logger = logging.getLogger(__name__)


def telemetry_file_from_environment() -> str | None:
    """The path ``RESILIENT_HTTP_TELEMETRY_FILE`` names, or None when it is unset or empty."""
    return os.environ.get(TELEMETRY_FILE_VARIABLE) or None


class OTLPJsonFileSpanExporter(SpanExporter):
    """Append one OTLP/JSON ``ExportTraceServiceRequest`` line per export to ``path``.

    ``path`` defaults to ``RESILIENT_HTTP_TELEMETRY_FILE`` (a ``ConfigError`` when unset).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._sink = _Sink(path)

    @property
    def path(self) -> Path:
        """The file this exporter appends to."""
        return self._sink.path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Encode ``spans`` as one line and append it; FAILURE (never an exception) on error."""
        if not spans:
            return SpanExportResult.SUCCESS
        ok = self._sink.write(lambda: encode_spans_json(spans))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        """Release the file (closed when no exporter uses it any more); later exports fail."""
        self._sink.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered: every line is written by the export call itself."""
        return True


class OTLPJsonFileMetricExporter(MetricExporter):
    """Append one OTLP/JSON ``ExportMetricsServiceRequest`` line per export to ``path``.

    ``path`` defaults to ``RESILIENT_HTTP_TELEMETRY_FILE`` (a ``ConfigError`` when unset).
    ``preferred_temporality`` is passed to the SDK as for any push exporter (None keeps the SDK
    default, CUMULATIVE); the analysis reads both temporalities.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        preferred_temporality: dict[type, AggregationTemporality] | None = None,
    ) -> None:
        super().__init__(preferred_temporality=preferred_temporality)
        self._sink = _Sink(path)

    @property
    def path(self) -> Path:
        """The file this exporter appends to."""
        return self._sink.path

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        """Encode ``metrics_data`` as one line and append it; FAILURE on error, never raises."""
        if not metrics_data.resource_metrics:
            return MetricExportResult.SUCCESS
        ok = self._sink.write(lambda: encode_metrics_json(metrics_data))
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Nothing is buffered: every line is written by the export call itself."""
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Release the file (closed when no exporter uses it any more); later exports fail."""
        self._sink.close()


class _Appender:
    """One lock-guarded, lazily opened append-mode file descriptor shared by a path's exporters."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.users = 0
        self._fd: int | None = None

    def append_line(self, payload: bytes) -> None:
        line = memoryview(payload + b"\n")
        with self.lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            # One write per line (normally a single syscall): readers see whole lines, and
            # nothing sits in a user-space buffer waiting for a flush.
            while line:
                written = os.write(self._fd, line)
                line = line[written:]

    def close(self) -> None:
        with self.lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


_appenders: dict[Path, _Appender] = {}
_appenders_lock = threading.Lock()


class _Sink:
    """An exporter's handle on the shared appender of its path: encode, write, log once."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        if path is None:
            path = telemetry_file_from_environment()
        if path is None:
            raise ConfigError(
                f"{TELEMETRY_FILE_VARIABLE} is not set: the {FILE_EXPORTER_NAME} exporters "
                "write to the file it names"
            )
        # Resolved, so that two spellings of one file share one appender (and one lock).
        self.path = Path(path).resolve()
        with _appenders_lock:
            appender = _appenders.get(self.path)
            if appender is None:
                appender = _appenders[self.path] = _Appender(self.path)
            appender.users += 1
        self._appender: _Appender | None = appender
        self._logged_failure = False

    def write(self, encode: Callable[[], bytes]) -> bool:
        appender = self._appender
        if appender is None:
            self._log_once("exporter for %s is shut down; telemetry dropped", self.path)
            return False
        try:
            payload = encode()
        except Exception as exc:  # one bad attribute must not break the export thread
            self._log_once("cannot encode telemetry for %s: %r", self.path, exc)
            return False
        try:
            appender.append_line(payload)
        except OSError as exc:
            self._log_once("cannot write telemetry file %s: %s", self.path, exc)
            return False
        return True

    def close(self) -> None:
        appender, self._appender = self._appender, None
        if appender is None:
            return
        with _appenders_lock:
            appender.users -= 1
            if appender.users > 0:
                return
            _appenders.pop(appender.path, None)
        appender.close()

    def _log_once(self, message: str, *args: object) -> None:
        # A full disk would otherwise log on every export interval, forever.
        if not self._logged_failure:
            self._logged_failure = True
            _logger.warning(message, *args)
