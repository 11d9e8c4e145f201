"""``OTEL_METRICS_EXPORTER=prometheus``: the service's own ``/metrics`` endpoint.

The reader is ``opentelemetry-exporter-prometheus`` (the ``prometheus`` extra), the same one
``opentelemetry-instrument`` uses under that name, so the series are named as that exporter names
them (``http_client_request_duration_seconds_bucket``, ``resilient_http_retries_total``...), which
is also what the bundled collector's ``prometheus`` exporter produces. The endpoint listens on
``OTEL_EXPORTER_PROMETHEUS_HOST`` (default ``localhost``) and ``OTEL_EXPORTER_PROMETHEUS_PORT``
(default 9464), as the OpenTelemetry specification says. Unlike the entry point's reader, this one
stops its HTTP server when the meter provider shuts down, so a handle's ``shutdown`` frees the
port.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Final

from opentelemetry.sdk.metrics.export import MetricReader

from .._exceptions import ConfigError

__all__ = [
    "PROMETHEUS_EXPORTER_NAME",
    "check_prometheus_settings",
    "endpoint_from_environment",
    "import_extra",
    "prometheus_reader",
]

PROMETHEUS_EXPORTER_NAME: Final = "prometheus"
_HOST_VARIABLE: Final = "OTEL_EXPORTER_PROMETHEUS_HOST"
_PORT_VARIABLE: Final = "OTEL_EXPORTER_PROMETHEUS_PORT"
_DEFAULT_HOST: Final = "localhost"
_DEFAULT_PORT: Final = 9464


def endpoint_from_environment() -> tuple[str, int]:
    """``(host, port)`` of the endpoint; ``ConfigError`` naming the variable when invalid."""
    host = os.environ.get(_HOST_VARIABLE, "").strip() or _DEFAULT_HOST
    text = os.environ.get(_PORT_VARIABLE, "").strip()
    if not text:
        return host, _DEFAULT_PORT
    # 0 is refused: a port chosen by the OS could not be scraped by a configured Prometheus.
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"{_PORT_VARIABLE}={text!r}: expected a port number (1-65535)")
    return host, int(text)


def check_prometheus_settings() -> None:
    """Raise ``ConfigError`` now, before any provider is installed, for a bad host/port
    variable or a missing extra (binding the port can still fail later)."""
    endpoint_from_environment()
    _import("opentelemetry.exporter.prometheus")
    _import("prometheus_client")


def prometheus_reader() -> MetricReader:
    """A metric reader serving ``/metrics`` on the configured host and port.

    Raises ``ConfigError`` when the extra is not installed or the port cannot be bound."""
    host, port = endpoint_from_environment()
    exporter = _import("opentelemetry.exporter.prometheus")
    exposition = _import("prometheus_client")

    class _ServingReader(exporter.PrometheusMetricReader):  # type: ignore[misc,name-defined]
        """PrometheusMetricReader that owns its HTTP server."""

        def __init__(self) -> None:
            super().__init__()
            try:
                self._server, self._thread = exposition.start_http_server(port, addr=host)
            except OSError as exc:
                super().shutdown()  # unregisters its collector from the global registry
                raise ConfigError(
                    f"{_PORT_VARIABLE}={port}: cannot serve /metrics on {host}:{port}: "
                    f"{exc.strerror or exc}"
                ) from None

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            super().shutdown(timeout_millis=timeout_millis, **kwargs)
            self._server.shutdown()
            self._server.server_close()

    reader: MetricReader = _ServingReader()
    return reader


def _import(module: str) -> Any:
    return import_extra(module, "OTEL_METRICS_EXPORTER='prometheus'", "Prometheus", "prometheus")


def import_extra(module: str, setting: str, exporter: str, extra: str) -> Any:
    """``module``, from an optional extra that ``setting`` needs: a ``ConfigError`` naming the
    extra to install when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{setting} needs the {exporter} exporter: pip install 'resilient-http-sdk[{extra}]'"
        ) from None
