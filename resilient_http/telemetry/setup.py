"""``configure_telemetry()``: SDK providers and exporters from the standard ``OTEL_*`` variables.

Opt-in, for applications (a library never configures global providers; ``ResilientSession``
only uses what it is given or finds). Reads ``OTEL_SDK_DISABLED``, ``OTEL_TRACES_EXPORTER`` /
``OTEL_METRICS_EXPORTER`` (``otlp``, ``console``, ``none``, and ``resilient_http_file``, the
file's entry point name, so one environment also serves ``opentelemetry-instrument``; metrics
also take ``prometheus``, a ``/metrics`` endpoint, see ``prometheus_endpoint.py``),
``OTEL_EXPORTER_OTLP_PROTOCOL``
(``http/protobuf``, or ``grpc`` with the ``grpc`` extra), ``OTEL_TRACES_SAMPLER(_ARG)`` and
``OTEL_METRIC_EXPORT_INTERVAL``, and checks what the SDK and the OTLP exporters read themselves
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``_HEADERS``, ``_TIMEOUT``, ``_COMPRESSION``, each also per
signal, ``OTEL_RESOURCE_ATTRIBUTES`` and the span batching ``OTEL_BSP_*``) so that a typo is a
``ConfigError`` naming the variable rather than a logged line and a silent default.
``RESILIENT_HTTP_TELEMETRY_FILE`` adds OTLP JSON lines for ``resilient-http analyze``.

Exporting runs on the SDK's worker threads (batching span processor, periodic metric reader), so
it never blocks the event loop; the span queue is bounded, so a collector that is down costs
dropped spans, not memory; and a failing exporter logs one warning per interval instead of the
OTLP exporter's own line per batch and per retry.

>>> handle = configure_telemetry()   # doctest: +SKIP
>>> handle.shutdown(timeout=5)       # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any, Final
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

from .._exceptions import ConfigError, ConfigWarning
from ..config import TELEMETRY_FILE_VARIABLE, describe_environment
from . import names
from .export_failures import QuietExporterLogs, QuietMetricExporter, QuietSpanExporter
from .handle import TelemetryHandle
from .instruments import is_api_proxy
from .otlp_file import (
    FILE_EXPORTER_NAME,
    OTLPJsonFileMetricExporter,
    OTLPJsonFileSpanExporter,
    telemetry_file_from_environment,
)
from .prometheus_endpoint import (
    PROMETHEUS_EXPORTER_NAME,
    check_prometheus_settings,
    import_extra,
    prometheus_reader,
)

__all__ = ["TelemetryHandle", "config_resource_attributes", "configure_telemetry"]

log: Final = logging.getLogger("resilient_http")
_DEFAULT_INTERVAL_MS: Final = 60_000
# The batching span processor's defaults (opentelemetry-sdk), for checking the two together.
_BSP_DEFAULT_QUEUE: Final = 2048
_BSP_DEFAULT_BATCH: Final = 512
_SAMPLERS: Final[dict[str, Callable[[float], sampling.Sampler] | sampling.Sampler]] = {
    "always_on": sampling.ALWAYS_ON,
    "always_off": sampling.ALWAYS_OFF,
    "parentbased_always_on": sampling.DEFAULT_ON,
    "parentbased_always_off": sampling.DEFAULT_OFF,
    "traceidratio": sampling.TraceIdRatioBased,
    "parentbased_traceidratio": sampling.ParentBasedTraceIdRatio,
}


def configure_telemetry(*, telemetry_file: str | None = None) -> TelemetryHandle:
    """Build tracer and meter providers from ``OTEL_*`` variables and install them globally.

    Global providers are installed only where none is set yet; otherwise this warns and leaves
    the existing ones alone. ``telemetry_file`` (default ``RESILIENT_HTTP_TELEMETRY_FILE``) also
    writes OTLP JSON lines. Raises ``ConfigError`` for invalid values.
    """
    path = telemetry_file or telemetry_file_from_environment()
    if _flag(os.environ.get("OTEL_SDK_DISABLED", ""), "OTEL_SDK_DISABLED"):
        return TelemetryHandle(None, None, None, None)
    trace_exporters = _exporters("OTEL_TRACES_EXPORTER", path)
    metric_exporters = _exporters("OTEL_METRICS_EXPORTER", path)
    for signal, kinds in (("TRACES", trace_exporters), ("METRICS", metric_exporters)):
        if "otlp" in kinds:
            _protocol(signal)  # validated before anything is installed
    if PROMETHEUS_EXPORTER_NAME in metric_exporters:
        check_prometheus_settings()
    sampler = _sampler()
    interval_ms = _positive_number("OTEL_METRIC_EXPORT_INTERVAL", _DEFAULT_INTERVAL_MS)
    _check_exporter_settings()
    resource = Resource.create(config_resource_attributes())
    warn_every = interval_ms / 1000

    # Whatever can still fail is made before anything is installed or started: the exporters (an
    # extra may be missing), then the Prometheus endpoint (its port may be taken). A ConfigError
    # then leaves the process as it was, and a second try can install the providers.
    traced = is_api_proxy(trace.get_tracer_provider())
    metered = is_api_proxy(metrics.get_meter_provider())
    span_exporters = [
        QuietSpanExporter(_span_exporter(kind), warn_every)
        for kind in (_besides_the_file(trace_exporters) if traced else ())
    ]
    metric_kinds = _besides_the_file(metric_exporters) if metered else []
    metric_exporters_pushed = [
        QuietMetricExporter(_metric_exporter(kind), warn_every)
        for kind in metric_kinds
        if kind != PROMETHEUS_EXPORTER_NAME  # pulled by Prometheus, not pushed
    ]
    pulled = [prometheus_reader()] if PROMETHEUS_EXPORTER_NAME in metric_kinds else []

    tracer_provider: TracerProvider | None = None
    if traced:
        # The handle shuts it down, once and within its budget (see handle.py).
        tracer_provider = TracerProvider(resource=resource, sampler=sampler, shutdown_on_exit=False)
        # The file first: its last spans then never wait for a collector that is down.
        if path:
            tracer_provider.add_span_processor(BatchSpanProcessor(OTLPJsonFileSpanExporter(path)))
        for span_exporter in span_exporters:
            tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        trace.set_tracer_provider(tracer_provider)
    else:
        _warn_already_set("TRACES", path, attached=FILE_EXPORTER_NAME in trace_exporters)

    meter_provider: MeterProvider | None = None
    if metered:
        readers: list[MetricReader] = []
        if path:
            readers.append(
                PeriodicExportingMetricReader(
                    OTLPJsonFileMetricExporter(path), export_interval_millis=interval_ms
                )
            )
        for metric_exporter in metric_exporters_pushed:
            readers.append(
                PeriodicExportingMetricReader(metric_exporter, export_interval_millis=interval_ms)
            )
        readers.extend(pulled)
        meter_provider = MeterProvider(
            resource=resource, metric_readers=readers, shutdown_on_exit=False
        )
        metrics.set_meter_provider(meter_provider)
    else:
        _warn_already_set("METRICS", path, attached=FILE_EXPORTER_NAME in metric_exporters)
    # The OTLP exporters, which the handle shuts down to end their retries at its deadline.
    cut_offs: list[QuietSpanExporter | QuietMetricExporter] = [
        *span_exporters,
        *metric_exporters_pushed,
    ]
    handle = TelemetryHandle(
        tracer_provider, meter_provider, path, QuietExporterLogs.install(), cut_offs=cut_offs
    )
    if tracer_provider is not None:
        _installed_by["TRACES"] = handle
    if meter_provider is not None:
        _installed_by["METRICS"] = handle
    return handle


# How to attach the file to a provider of one's own, per signal.
_ATTACH: Final = {
    "TRACES": (
        "TracerProvider",
        "spans",
        "add BatchSpanProcessor(resilient_http.telemetry.OTLPJsonFileSpanExporter({path!r})) "
        "to that TracerProvider",
    ),
    "METRICS": (
        "MeterProvider",
        "metrics",
        "give that MeterProvider PeriodicExportingMetricReader(resilient_http.telemetry."
        "OTLPJsonFileMetricExporter({path!r})) among its metric_readers",
    ),
}


def config_resource_attributes() -> dict[str, str | tuple[str, ...]]:
    """The settings in force, as resource attributes (``names.CONFIG_PREFIX``): the tuning
    analysis then reads the settings of the process that wrote the telemetry, and where each
    came from, instead of guessing from its own environment. Empty when a variable is invalid:
    the session raises ``ConfigError`` for it, and telemetry setup is not the place to."""
    try:
        reports = describe_environment(warn_unknown=False)
    except ConfigError:
        return {}
    attributes: dict[str, str | tuple[str, ...]] = {
        names.config_attribute(r.variable): r.value
        for r in reports
        if r.variable != TELEMETRY_FILE_VARIABLE
    }
    attributes[names.CONFIG_FROM_ENVIRONMENT] = tuple(
        r.variable for r in reports if r.source == "environment"
    )
    return attributes


def _besides_the_file(kinds: list[str]) -> list[str]:
    return [kind for kind in kinds if kind != FILE_EXPORTER_NAME]


# The handle of the global provider that configure_telemetry() installed, per signal: a
# process has one global provider per signal, set once (OpenTelemetry refuses a second).
_installed_by: Final[dict[str, TelemetryHandle]] = {}


def _warn_already_set(signal: str, path: str | None, *, attached: bool) -> None:
    """Say that the global provider is kept and, when a file was asked for and the OTEL_*
    variables did not attach it to that provider, how to attach it."""
    provider, what, attach = _ATTACH[signal]
    earlier = _installed_by.get(signal)
    if earlier is not None:
        _warn_configured_before(earlier, provider, what, path)
        return
    message = f"a global {provider} is already set: configure_telemetry() uses it as it is"
    variable = f"OTEL_{signal}_EXPORTER"
    if path and not attached:
        message += (
            f", so {what} are not written to {path}; to write them there, run under "
            f"opentelemetry-instrument with {variable}=otlp,{FILE_EXPORTER_NAME} and "
            f"{TELEMETRY_FILE_VARIABLE}={path}, or {attach.format(path=path)}"
        )
    warnings.warn(message, ConfigWarning, stacklevel=3)


def _warn_configured_before(
    earlier: TelemetryHandle, provider: str, what: str, path: str | None
) -> None:
    """The global provider is one that an earlier call installed: say what becomes of the
    telemetry, which that call's handle still governs (or has shut down for good)."""
    if earlier.closed:
        message = (
            f"telemetry was configured by an earlier configure_telemetry() call and shut down; "
            f"OpenTelemetry sets a global {provider} once per process, so {what} are no longer "
            "exported: configure telemetry once, at start-up, and shut it down at exit"
        )
    else:
        message = (
            "telemetry is already configured by an earlier configure_telemetry() call: "
            f"{what} go where it sends them"
        )
        if path and path != earlier.telemetry_file:
            message += f", not to {path}"
        message += "; that call's handle shuts them down"
    warnings.warn(message, ConfigWarning, stacklevel=4)


# --- reading the variables ----------------------------------------------------------------------


def _flag(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value in ("", "false"):
        return False
    if value == "true":
        return True
    raise ConfigError(f"{name}={text!r}: expected 'true' or 'false'")


def _exporters(name: str, path: str | None) -> list[str]:
    """The exporters ``name`` lists. The file's entry point name is accepted so that one
    environment serves opentelemetry-instrument too; the file is written whenever ``path`` is."""
    text = os.environ.get(name, "").strip() or "otlp"
    kinds = [part.strip().lower() for part in text.split(",")]
    allowed: tuple[str, ...] = ("otlp", "console", FILE_EXPORTER_NAME, "none")
    if name == "OTEL_METRICS_EXPORTER":
        allowed = (*allowed[:-1], PROMETHEUS_EXPORTER_NAME, "none")
    for kind in kinds:
        if kind not in allowed:
            raise ConfigError(
                f"{name}={text!r}: expected a comma list of "
                f"{', '.join(repr(a) for a in allowed[:-1])} or 'none'"
            )
    if FILE_EXPORTER_NAME in kinds and not path:
        raise ConfigError(
            f"{name}={text!r}: {FILE_EXPORTER_NAME} writes to the file that "
            f"{TELEMETRY_FILE_VARIABLE} names, and it is not set"
        )
    return [] if "none" in kinds else list(dict.fromkeys(kinds))


def _choice(name: str, allowed: Sequence[str], default: str) -> str:
    text = os.environ.get(name, "").strip()
    value = text.lower() or default
    if value not in allowed:
        raise ConfigError(f"{name}={text!r}: expected one of {', '.join(allowed)}")
    return value


def _positive_number(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}={text!r}: expected a number > 0")
    return value


def _positive_integer(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) <= 0:
        raise ConfigError(f"{name}={text!r}: expected a whole number > 0")
    return int(text)


def _check_exporter_settings() -> None:
    """The variables that the SDK and the OTLP exporters read themselves: where they log a
    warning (or nothing) and go on with a default or without the value, a typo is a
    ``ConfigError`` here instead, before anything is installed."""
    for name in _otlp_variables("TIMEOUT"):
        _positive_number(name, 10.0)
    for name in _otlp_variables("COMPRESSION"):
        _choice(name, ("none", "gzip", "deflate"), "none")
    for name in _otlp_variables("ENDPOINT"):
        _url(name)
    for name in (*_otlp_variables("HEADERS"), "OTEL_RESOURCE_ATTRIBUTES"):
        _key_value_list(name)
    _check_span_batching()
    _check_provider_choice("OTEL_PYTHON_TRACER_PROVIDER", "tracer_provider")
    _check_provider_choice("OTEL_PYTHON_METER_PROVIDER", "meter_provider")


def _otlp_variables(setting: str) -> tuple[str, ...]:
    """``OTEL_EXPORTER_OTLP_<setting>`` and the per-signal variants that take precedence."""
    return tuple(f"OTEL_EXPORTER_OTLP_{signal}{setting}" for signal in ("", "TRACES_", "METRICS_"))


def _url(name: str) -> None:
    text = os.environ.get(name, "").strip()
    if not text:
        return
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{name}={text!r}: expected an http:// or https:// URL, e.g. http://localhost:4318"
        )


# A key of OTEL_EXPORTER_OTLP_HEADERS or OTEL_RESOURCE_ATTRIBUTES: an HTTP token, as in the
# W3C Baggage format that both use.
_KEY: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _key_value_list(name: str) -> None:
    text = os.environ.get(name, "")
    for number, member in enumerate(text.split(","), 1):
        key, equals, _ = member.partition("=")
        if member.strip() and not (equals and _KEY.fullmatch(key.strip())):
            # Header values are often credentials: the message points at the entry instead.
            shown = f"{name} (entry {number})" if "HEADERS" in name else f"{name}={text!r}"
            raise ConfigError(
                f"{shown}: expected a comma list of key=value pairs "
                "(values URL-encoded), e.g. key1=value1,key2=value2"
            )


def _check_provider_choice(name: str, kind: str) -> None:
    """A provider the OpenTelemetry API would load by entry point name when the global one is
    first read: a name no package registers made it raise StopIteration with a traceback."""
    text = os.environ.get(name, "").strip()
    if text and not entry_points(group=f"opentelemetry_{kind}", name=text):
        known = sorted(ep.name for ep in entry_points(group=f"opentelemetry_{kind}"))
        raise ConfigError(
            f"{name}={text!r}: no installed package provides it (known: {', '.join(known)})"
        )


def _check_span_batching() -> None:
    """The ``OTEL_BSP_*`` variables the SDK's batching span processor reads itself: for a typo
    it logs a traceback and falls back to its default, and for a batch larger than the queue it
    raises a ``ValueError`` naming neither variable."""
    _positive_integer("OTEL_BSP_SCHEDULE_DELAY")
    _positive_integer("OTEL_BSP_EXPORT_TIMEOUT")
    queue = _positive_integer("OTEL_BSP_MAX_QUEUE_SIZE") or _BSP_DEFAULT_QUEUE
    batch = _positive_integer("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") or _BSP_DEFAULT_BATCH
    if batch > queue:
        raise ConfigError(
            f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE={batch} is larger than "
            f"OTEL_BSP_MAX_QUEUE_SIZE={queue}: a batch must fit in the queue"
        )


def _sampler() -> sampling.Sampler:
    name = _choice("OTEL_TRACES_SAMPLER", tuple(_SAMPLERS), "parentbased_always_on")
    found = _SAMPLERS[name]
    if isinstance(found, sampling.Sampler):
        return found
    text = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    try:
        ratio = float(text) if text else 1.0
    except ValueError:
        ratio = math.nan
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG={text!r}: expected a ratio between 0 and 1")
    return found(ratio)


def _protocol(signal: str) -> str:
    specific = f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"
    name = specific if os.environ.get(specific, "").strip() else "OTEL_EXPORTER_OTLP_PROTOCOL"
    protocol = _choice(name, ("http/protobuf", "grpc", "http/json"), "http/protobuf")
    if protocol == "http/json":
        raise ConfigError(
            f"{name}='http/json': not supported by opentelemetry-python; use http/protobuf or grpc"
        )
    return protocol


def _span_exporter(kind: str) -> SpanExporter:
    if kind == "console":
        return ConsoleSpanExporter()
    if _protocol("TRACES") == "grpc":
        grpc = _import_grpc("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
        exporter: SpanExporter = grpc.OTLPSpanExporter()
        return exporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _metric_exporter(kind: str) -> MetricExporter:
    if kind == "console":
        return ConsoleMetricExporter()
    if _protocol("METRICS") == "grpc":
        grpc = _import_grpc("opentelemetry.exporter.otlp.proto.grpc.metric_exporter")
        exporter: MetricExporter = grpc.OTLPMetricExporter()
        return exporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()


def _import_grpc(module: str) -> Any:
    return import_extra(module, "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'", "gRPC", "grpc")
