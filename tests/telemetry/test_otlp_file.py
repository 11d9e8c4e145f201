"""OTLP JSON lines file exporters: the Collector file exporter's format, written safely."""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from resilient_http.telemetry import otlp_file
from resilient_http.telemetry.otlp_file import OTLPJsonFileMetricExporter, OTLPJsonFileSpanExporter
from resilient_http.telemetry.otlp_json import encode_spans_json

HEX_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
HEX_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _ids_to_base64(node: Any) -> Any:
    """The OTLP/JSON hex ids -> the protobuf JSON mapping's base64, so json_format can parse."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                out[key] = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                out[key] = _ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_ids_to_base64(item) for item in node]
    return node


def _parse_traces(line: dict[str, Any]) -> ExportTraceServiceRequest:
    return json_format.ParseDict(_ids_to_base64(line), ExportTraceServiceRequest())


def _tracing(path: Path) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(resource=Resource.create({"service.name": "otlp-file-test"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(OTLPJsonFileSpanExporter(path)))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def _record_spans(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("resilient_http", "1.2.3")
    with tracer.start_as_current_span(
        "GET api.test",
        kind=SpanKind.INTERNAL,
        attributes={
            "http.request.method": "GET",
            "server.port": 8080,
            "resilient_http.attempts": 2,
            "flag": True,
            "ratio": 0.25,
            "tags": ("a", "b"),
            "empty": (),
        },
    ) as call:
        call.add_event(
            "resilient_http.retry",
            {"resilient_http.retry.reason": "throttled", "resilient_http.retry.delay": 0.5},
        )
        with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as attempt:
            attempt.set_status(Status(StatusCode.ERROR, "boom"))
        other = trace.SpanContext(0xABC, 0xDEF, is_remote=True)
        with tracer.start_as_current_span("linked", links=[Link(other, {"k": "v"})]):
            pass


@pytest.fixture
def sample_spans() -> Iterator[list[ReadableSpan]]:
    """Finished SDK spans (an INTERNAL call with an event, a CLIENT child, a linked span)."""
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    _record_spans(provider)
    yield list(memory.get_finished_spans())
    provider.shutdown()


def test_span_lines_match_the_protobuf_encoding(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    provider, memory = _tracing(path)
    _record_spans(provider)
    provider.shutdown()

    lines = _lines(path)
    spans = memory.get_finished_spans()
    assert len(lines) == len(spans) == 3  # SimpleSpanProcessor: one export (line) per span
    for line, span in zip(lines, spans, strict=True):
        assert _parse_traces(line) == encode_spans([span])


def test_span_lines_use_the_collector_file_exporter_json_conventions(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    provider, memory = _tracing(path)
    _record_spans(provider)
    provider.shutdown()

    call_line = _lines(path)[2]
    scope_spans = call_line["resourceSpans"][0]["scopeSpans"][0]
    assert scope_spans["scope"] == {"name": "resilient_http", "version": "1.2.3"}
    span = scope_spans["spans"][0]
    call = memory.get_finished_spans()[2]
    context = call.get_span_context()
    assert context is not None
    assert HEX_TRACE_ID.match(span["traceId"])
    assert int(span["traceId"], 16) == context.trace_id
    assert HEX_SPAN_ID.match(span["spanId"])
    assert "parentSpanId" not in span  # a root span
    assert span["kind"] == 1  # enums as integers
    assert span["startTimeUnixNano"] == str(call.start_time)  # 64-bit integers as strings
    attributes = {a["key"]: a["value"] for a in span["attributes"]}
    assert attributes["server.port"] == {"intValue": "8080"}
    assert attributes["flag"] == {"boolValue": True}
    assert attributes["ratio"] == {"doubleValue": 0.25}
    assert attributes["tags"] == {
        "arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}
    }
    assert span["events"][0]["name"] == "resilient_http.retry"
    child = _lines(path)[0]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert child["parentSpanId"] == span["spanId"]
    assert child["status"] == {"code": 2, "message": "boom"}
    link = _lines(path)[1]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["links"][0]
    assert link["traceId"] == f"{0xABC:032x}"
    assert link["flags"] == 0x300  # "is_remote known" | "is remote"


def test_one_line_per_export_call(tmp_path: Path, sample_spans: list[ReadableSpan]) -> None:
    path = tmp_path / "traces.jsonl"
    spans = sample_spans
    exporter = OTLPJsonFileSpanExporter(path)

    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.export(spans[:1]) is SpanExportResult.SUCCESS
    exporter.shutdown()

    first, second = _lines(path)
    assert _parse_traces(first) == encode_spans(spans)
    assert len(second["resourceSpans"][0]["scopeSpans"][0]["spans"]) == 1


def test_non_finite_doubles_are_written_as_proto_json_strings() -> None:
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span(
        "s", attributes={"nan": math.nan, "inf": math.inf, "ninf": -math.inf}
    ):
        pass
    line = json.loads(encode_spans_json(memory.get_finished_spans()))
    values = {
        a["key"]: a["value"]
        for a in line["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]
    }
    assert values == {
        "nan": {"doubleValue": "NaN"},
        "inf": {"doubleValue": "Infinity"},
        "ninf": {"doubleValue": "-Infinity"},
    }
    assert _parse_traces(line) == encode_spans(memory.get_finished_spans())


def _meter(
    path: Path, temporality: dict[type, AggregationTemporality] | None = None
) -> tuple[MeterProvider, OTLPJsonFileMetricExporter]:
    exporter = OTLPJsonFileMetricExporter(path, preferred_temporality=temporality)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
    return MeterProvider(metric_readers=[reader]), exporter


def test_metric_lines_parse_as_export_metrics_requests(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    provider, _ = _meter(path)
    meter = provider.get_meter("resilient_http", "1.0")
    counter = meter.create_counter("resilient_http.retries")
    histogram = meter.create_histogram(
        "resilient_http.request.duration", "s", explicit_bucket_boundaries_advisory=[0.1, 1.0]
    )
    counter.add(3, {"resilient_http.retry.reason": "throttled"})
    histogram.record(0.05)
    histogram.record(0.5)
    provider.force_flush()
    counter.add(2, {"resilient_http.retry.reason": "throttled"})
    provider.force_flush()
    provider.shutdown()

    lines = _lines(path)
    assert len(lines) >= 2
    request = json_format.ParseDict(_ids_to_base64(lines[1]), ExportMetricsServiceRequest())
    metrics = {m.name: m for m in request.resource_metrics[0].scope_metrics[0].metrics}
    retries = metrics["resilient_http.retries"].sum
    assert retries.aggregation_temporality == 2  # the SDK default: CUMULATIVE
    assert retries.data_points[0].as_int == 5
    duration = metrics["resilient_http.request.duration"].histogram.data_points[0]
    assert list(duration.bucket_counts) == [1, 1, 0]
    raw = lines[1]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
    counter_json = next(m for m in raw if m["name"] == "resilient_http.retries")
    point = counter_json["sum"]["dataPoints"][0]
    assert point["asInt"] == "5"  # int64 as a string
    assert isinstance(point["startTimeUnixNano"], str)
    assert counter_json["sum"]["aggregationTemporality"] == 2  # enum as an integer


def test_metric_exporter_passes_preferred_temporality(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    delta: dict[type, AggregationTemporality] = {
        Counter: AggregationTemporality.DELTA,
        Histogram: AggregationTemporality.DELTA,
    }
    provider, _ = _meter(path, delta)
    provider.get_meter("m").create_counter("c").add(1)
    provider.force_flush()
    provider.shutdown()

    metric = _lines(path)[0]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]
    assert metric["sum"]["aggregationTemporality"] == 1


def test_exemplar_ids_are_hex(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    provider, _ = _meter(path)
    histogram = provider.get_meter("m").create_histogram("h")
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("sampled") as span:
        histogram.record(1.0)  # the default exemplar filter keeps measurements in sampled spans
    provider.force_flush()
    provider.shutdown()

    metric = _lines(path)[0]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]
    exemplar = metric["histogram"]["dataPoints"][0]["exemplars"][0]
    assert exemplar["traceId"] == f"{span.get_span_context().trace_id:032x}"
    assert HEX_SPAN_ID.match(exemplar["spanId"])


def test_span_and_metric_exporters_share_a_file_without_interleaving(
    tmp_path: Path, sample_spans: list[ReadableSpan]
) -> None:
    path = tmp_path / "telemetry.jsonl"
    spans = sample_spans * 200  # large lines: many write() chunks if torn
    meter_provider, _ = _meter(path)
    meter_provider.get_meter("m").create_counter("c").add(1, {"k": "v" * 1000})
    span_exporter = OTLPJsonFileSpanExporter(path)
    exports_per_thread = 25

    def export_spans() -> None:
        for _ in range(exports_per_thread):
            assert span_exporter.export(spans) is SpanExportResult.SUCCESS

    def export_metrics() -> None:
        for _ in range(exports_per_thread):
            meter_provider.force_flush()

    threads = [threading.Thread(target=f) for f in (export_spans, export_metrics) * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    span_exporter.shutdown()
    meter_provider.shutdown()

    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # every line is terminated
    decoded = [json.loads(line) for line in lines[:-1]]  # every line is whole
    traces = [d for d in decoded if "resourceSpans" in d]
    metrics = [d for d in decoded if "resourceMetrics" in d]
    assert len(traces) == 2 * exports_per_thread
    assert len(metrics) >= 2 * exports_per_thread
    assert all(len(_parse_traces(t).resource_spans[0].scope_spans[0].spans) == 600 for t in traces)


def test_file_is_opened_lazily_and_closed_by_the_last_shutdown(
    tmp_path: Path, sample_spans: list[ReadableSpan]
) -> None:
    path = tmp_path / "sub" / "telemetry.jsonl"
    spans_out = OTLPJsonFileSpanExporter(path)
    metrics_out = OTLPJsonFileMetricExporter(path)
    assert not path.exists()  # nothing written, nothing created

    assert spans_out.export(sample_spans) is SpanExportResult.SUCCESS
    assert path.exists()
    spans_out.shutdown()
    assert path.resolve() in otlp_file._appenders  # the metric exporter still uses it
    assert spans_out.export(sample_spans) is SpanExportResult.FAILURE
    metrics_out.shutdown()
    assert path.resolve() not in otlp_file._appenders
    assert len(_lines(path)) == 1


def test_write_error_returns_failure_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sample_spans: list[ReadableSpan]
) -> None:
    blocked = tmp_path / "a-directory"
    blocked.mkdir()
    exporter = OTLPJsonFileSpanExporter(blocked)  # opening a directory for writing fails
    spans = sample_spans

    with caplog.at_level(logging.WARNING, logger=otlp_file.__name__):
        results = [exporter.export(spans) for _ in range(3)]
    exporter.shutdown()

    assert results == [SpanExportResult.FAILURE] * 3
    warnings = [r for r in caplog.records if r.name == otlp_file.__name__]
    assert len(warnings) == 1
    assert str(blocked) in warnings[0].getMessage()


def test_metric_write_error_returns_failure(tmp_path: Path) -> None:
    blocked = tmp_path / "a-directory"
    blocked.mkdir()
    provider, exporter = _meter(blocked)
    provider.get_meter("m").create_counter("c").add(1)
    results: list[MetricExportResult] = []
    original = exporter.export

    def spy(*args: Any, **kwargs: Any) -> MetricExportResult:
        results.append(original(*args, **kwargs))
        return results[-1]

    exporter.export = spy  # type: ignore[method-assign]
    provider.force_flush()
    provider.shutdown()
    assert results[0] is MetricExportResult.FAILURE
