"""The OpenTelemetry internals the quiet exporters use: each one's shape pinned, the degrade shown.

The shape tests run against the installed opentelemetry-sdk and exporters. A degrade test gives
the wrapper an exporter whose preferences are missing or of another shape, or renames an
exporter module's logger, then shows exactly one ``RuntimeWarning`` naming it and a wrapper that
still exports (with the SDK's defaults) or still mutes the other loggers.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Instrument
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import Aggregation, ExponentialBucketHistogramAggregation

from resilient_http import _dependency_internals
from resilient_http.telemetry import export_failures
from resilient_http.telemetry.export_failures import QuietExporterLogs, QuietMetricExporter
from tests.helpers import one_runtime_warning

PREFERENCES = ("_preferred_temporality", "_preferred_aggregation")


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_dependency_internals, "_warned", set())


class RecordingExporter(MetricExporter):
    """Keeps what it is asked to export."""

    def __init__(self, **preferences: Any) -> None:
        super().__init__(**preferences)
        self.exported: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def exported_temporality(inner: RecordingExporter) -> AggregationTemporality:
    """The temporality of a counter exported through ``QuietMetricExporter(inner)``."""
    reader = PeriodicExportingMetricReader(
        QuietMetricExporter(inner, interval=60.0), export_interval_millis=math.inf
    )
    provider = MeterProvider(metric_readers=[reader])
    try:
        provider.get_meter("m").create_counter("c").add(1)
        provider.force_flush()
    finally:
        provider.shutdown()
    (data, *_) = inner.exported
    metric = data.resource_metrics[0].scope_metrics[0].metrics[0]
    temporality: AggregationTemporality = metric.data.aggregation_temporality  # type: ignore[union-attr]
    return temporality


# --- shapes ------------------------------------------------------------------------------------


def assert_preference_shape(preference: object, value_type: type) -> None:
    """None, or a dict from the SDK's instrument classes to ``value_type``."""
    assert preference is None or type(preference) is dict
    for key, value in (preference or {}).items():
        assert isinstance(key, type)
        assert issubclass(key, Instrument)
        assert key.__module__ == "opentelemetry.sdk.metrics._internal.instrument"
        assert isinstance(value, value_type)


@pytest.mark.parametrize(
    "make",
    [
        OTLPMetricExporter,
        ConsoleMetricExporter,
        lambda: OTLPMetricExporter(
            preferred_temporality={Counter: AggregationTemporality.DELTA},
            preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()},
        ),
        lambda: ConsoleMetricExporter(
            preferred_temporality={Counter: AggregationTemporality.DELTA},
            preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()},
        ),
    ],
    ids=["otlp", "console", "otlp-preferring", "console-preferring"],
)
def test_metric_exporters_keep_their_preferences_in_the_pinned_attributes(
    make: Callable[[], MetricExporter],
) -> None:
    exporter = make()
    assert_preference_shape(exporter._preferred_temporality, AggregationTemporality)
    assert_preference_shape(exporter._preferred_aggregation, Aggregation)
    quiet = QuietMetricExporter(exporter, interval=60.0)  # warnings are errors here
    for name in PREFERENCES:
        assert export_failures.preference_of(exporter, name) is getattr(exporter, name)
        assert getattr(quiet, name) is getattr(exporter, name)


def test_the_otlp_exporter_keeps_the_env_preference_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "DELTA")
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
        "base2_exponential_bucket_histogram",
    )
    quiet = QuietMetricExporter(OTLPMetricExporter(), interval=60.0)
    assert quiet._preferred_temporality is not None
    assert quiet._preferred_temporality[Counter] is AggregationTemporality.DELTA
    assert quiet._preferred_aggregation is not None
    assert isinstance(
        quiet._preferred_aggregation[Histogram], ExponentialBucketHistogramAggregation
    )


def test_the_reader_takes_the_preferences_from_the_wrapper() -> None:
    delta = {Counter: AggregationTemporality.DELTA}
    assert exported_temporality(RecordingExporter(preferred_temporality=delta)) == (
        AggregationTemporality.DELTA
    )
    assert exported_temporality(RecordingExporter()) == AggregationTemporality.CUMULATIVE


def exporter_modules() -> Iterator[Any]:
    for name, distribution in export_failures._EXPORTER_LOGGERS:
        try:
            version = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            yield pytest.param(name, distribution, marks=pytest.mark.skip(f"{distribution} absent"))
        else:
            yield pytest.param(name, distribution, id=f"{name} ({version})")


@pytest.mark.parametrize(("name", "distribution"), list(exporter_modules()))
def test_each_muted_logger_is_its_exporter_modules_own(name: str, distribution: str) -> None:
    module = importlib.import_module(name)
    loggers = [value for value in vars(module).values() if isinstance(value, logging.Logger)]
    assert [logger.name for logger in loggers] == [name]
    assert export_failures.logger_name_fits(name)
    path = name.replace(".", "/")
    files = {str(file) for file in metadata.files(distribution) or ()}
    assert {f"{path}.py", f"{path}/__init__.py"} & files  # the module is the distribution's


# --- degrade paths -----------------------------------------------------------------------------


def missing(exporter: MetricExporter, name: str) -> None:
    delattr(exporter, name)


def keyed_by_name(exporter: MetricExporter, name: str) -> None:
    setattr(exporter, name, {"Counter": AggregationTemporality.DELTA})


def valued_by_name(exporter: MetricExporter, name: str) -> None:
    setattr(exporter, name, {Counter: "delta"})


def not_a_dict(exporter: MetricExporter, name: str) -> None:
    setattr(exporter, name, [(Counter, AggregationTemporality.DELTA)])


@pytest.mark.parametrize("change", [missing, keyed_by_name, valued_by_name, not_a_dict])
@pytest.mark.parametrize("name", PREFERENCES)
def test_a_changed_preference_is_not_passed_on_with_one_warning(
    change: Callable[[MetricExporter, str], None], name: str
) -> None:
    inner = RecordingExporter(
        preferred_temporality={Counter: AggregationTemporality.DELTA},
        preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()},
    )
    change(inner, name)
    with one_runtime_warning(f"MetricExporter.{name}"):
        quiet = QuietMetricExporter(inner, interval=60.0)
        again = QuietMetricExporter(inner, interval=60.0)
    for wrapper in (quiet, again):
        assert getattr(wrapper, name) is None  # the SDK's default
        (other,) = set(PREFERENCES) - {name}
        assert getattr(wrapper, other) is getattr(inner, other)  # the other still passed on
    expected = (
        AggregationTemporality.CUMULATIVE
        if name == "_preferred_temporality"
        else AggregationTemporality.DELTA
    )
    assert exported_temporality(inner) == expected  # and no warning (they are errors here)


def test_a_renamed_exporter_logger_is_not_muted_with_one_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = "opentelemetry.sdk.metrics._internal.export"
    module = importlib.import_module(name)
    monkeypatch.setattr(module, "_logger", logging.getLogger(f"{name}.v2"))
    with one_runtime_warning(f"the logger {name}"):
        handles = [QuietExporterLogs.install(), QuietExporterLogs.install()]
    muted = logging.getLogger("opentelemetry.sdk.trace.export")
    try:
        record = muted.makeRecord(muted.name, logging.WARNING, __file__, 1, "failed", (), None)
        assert not muted.filter(record)  # the other loggers are still muted
    finally:
        for handle in handles:
            handle.remove()
    assert muted.filter(record)
