"""OTLP/JSON encoding of SDK spans and metrics: one ``Export*ServiceRequest`` per line.

The mapping is the one the OpenTelemetry Collector's pdata marshaller (its ``file`` exporter)
writes: lowerCamelCase keys, trace and span ids as lowercase hex, 64-bit integers as strings and
enums as integers. ``otlp_file.py`` appends these lines to files; ``resilient-http analyze``
(``resilient_http.analysis``) reads them, as well as the files a Collector writes.

Spans are encoded by a hand-written encoder straight from the SDK's ``ReadableSpan``: measured on
HTTP spans, 8 us per span against 46 us for the protobuf route (``encode_spans`` + ``json_format``),
and the file is written by the demo under load on the exporter's thread, which shares the GIL with
the event loop. A test pins the encoder to the protobuf route (parse both back, compare messages).
Metrics are exported rarely (once per interval), so they reuse ``encode_metrics`` and
``json_format``.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

__all__ = ["encode_metrics_json", "encode_spans_json"]

_logger = logging.getLogger(__name__)

# proto SpanFlags: bit 8 says "is_remote is known", bit 9 says "the parent is remote" (as the
# OTLP exporter's encoder sets them).
_FLAG_HAS_IS_REMOTE = 0x100
_FLAG_IS_REMOTE = 0x200

try:  # orjson is an optional (CLI) dependency; the SDK itself must work without it.
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

except ImportError:  # pragma: no cover - exercised only where orjson is missing

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def encode_spans_json(spans: Sequence[ReadableSpan]) -> bytes:
    """Encode SDK spans as one OTLP/JSON ``ExportTraceServiceRequest`` (no trailing newline).

    Grouping (resource, then instrumentation scope, in first-seen order) and every field follow
    ``opentelemetry.exporter.otlp.proto.common.encode_spans``.
    """
    # Keyed by identity: Resource.__hash__ serialises its attributes to JSON on every call, and
    # all spans of one provider share the same Resource object.
    resources: dict[int, Resource] = {}
    grouped: dict[int, dict[InstrumentationScope | None, list[dict[str, Any]]]] = {}
    for span in spans:
        resource = span.resource
        by_scope = grouped.get(id(resource))
        if by_scope is None:
            resources[id(resource)] = resource
            by_scope = grouped[id(resource)] = {}
        by_scope.setdefault(span.instrumentation_scope, []).append(_encode_span(span))
    resource_spans = []
    for resource_id, by_scope in grouped.items():
        resource = resources[resource_id]
        scope_spans = []
        for scope, encoded in by_scope.items():
            entry: dict[str, Any] = {"scope": _encode_scope(scope), "spans": encoded}
            if scope is not None and scope.schema_url:
                entry["schemaUrl"] = scope.schema_url
            scope_spans.append(entry)
        item: dict[str, Any] = {"resource": _encode_resource(resource), "scopeSpans": scope_spans}
        if resource.schema_url:
            item["schemaUrl"] = resource.schema_url
        resource_spans.append(item)
    return _dumps({"resourceSpans": resource_spans})


def encode_metrics_json(metrics_data: MetricsData) -> bytes:
    """Encode SDK metrics as one OTLP/JSON ``ExportMetricsServiceRequest`` (no newline)."""
    # Imported here: the protobuf modules are only needed once metrics are exported.
    from google.protobuf import json_format
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    message = json_format.MessageToDict(encode_metrics(metrics_data), use_integers_for_enums=True)
    # json_format writes bytes as base64; the OTLP/JSON mapping wants exemplar ids in hex.
    for resource_metrics in message.get("resourceMetrics", ()):
        for scope_metrics in resource_metrics.get("scopeMetrics", ()):
            for metric in scope_metrics.get("metrics", ()):
                for kind in ("sum", "gauge", "histogram", "exponentialHistogram"):
                    for point in metric.get(kind, {}).get("dataPoints", ()):
                        for exemplar in point.get("exemplars", ()):
                            _ids_base64_to_hex(exemplar)
    return _dumps(message)


def _encode_span(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None  # SDK spans always carry a context
    out: dict[str, Any] = {
        "traceId": format(context.trace_id, "032x"),
        "spanId": format(context.span_id, "016x"),
    }
    if context.trace_state:
        out["traceState"] = ",".join(f"{k}={v}" for k, v in context.trace_state.items())
    parent = span.parent
    if parent is not None:
        out["parentSpanId"] = format(parent.span_id, "016x")
    out["name"] = span.name
    # proto SpanKind = SDK SpanKind + 1 (proto reserves 0 for UNSPECIFIED).
    out["kind"] = span.kind.value + 1
    if span.start_time:
        out["startTimeUnixNano"] = str(span.start_time)
    if span.end_time:
        out["endTimeUnixNano"] = str(span.end_time)
    if span.attributes:
        out["attributes"] = _encode_attributes(span.attributes)
    if span.dropped_attributes:
        out["droppedAttributesCount"] = span.dropped_attributes
    if span.events:
        out["events"] = [_encode_event(event) for event in span.events]
    if span.dropped_events:
        out["droppedEventsCount"] = span.dropped_events
    if span.links:
        out["links"] = [_encode_link(link) for link in span.links]
    if span.dropped_links:
        out["droppedLinksCount"] = span.dropped_links
    status: dict[str, Any] = {}
    if span.status.description:
        status["message"] = span.status.description
    if span.status.status_code.value:
        status["code"] = span.status.status_code.value
    out["status"] = status
    flags = _FLAG_HAS_IS_REMOTE
    if parent is not None and parent.is_remote:
        flags |= _FLAG_IS_REMOTE
    out["flags"] = flags
    return out


def _encode_event(event: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if event.timestamp:
        out["timeUnixNano"] = str(event.timestamp)
    if event.name:
        out["name"] = event.name
    if event.attributes:
        out["attributes"] = _encode_attributes(event.attributes)
    if event.dropped_attributes:
        out["droppedAttributesCount"] = event.dropped_attributes
    return out


def _encode_link(link: Any) -> dict[str, Any]:
    context = link.context
    out: dict[str, Any] = {
        "traceId": format(context.trace_id, "032x"),
        "spanId": format(context.span_id, "016x"),
    }
    if link.attributes:
        out["attributes"] = _encode_attributes(link.attributes)
    if link.dropped_attributes:
        out["droppedAttributesCount"] = link.dropped_attributes
    out["flags"] = _FLAG_HAS_IS_REMOTE | (_FLAG_IS_REMOTE if context.is_remote else 0)
    return out


def _encode_resource(resource: Resource) -> dict[str, Any]:
    if not resource.attributes:
        return {}
    return {"attributes": _encode_attributes(resource.attributes)}


def _encode_scope(scope: InstrumentationScope | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if scope is None:
        return out
    if scope.name:
        out["name"] = scope.name
    if scope.version:
        out["version"] = scope.version
    if scope.attributes:
        out["attributes"] = _encode_attributes(scope.attributes)
    return out


def _encode_attributes(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    encoded = []
    for key, value in attributes.items():
        # Fast paths for the two types almost every HTTP attribute has.
        kind = type(value)
        if kind is str:
            encoded.append({"key": key, "value": {"stringValue": value}})
            continue
        if kind is int:
            encoded.append({"key": key, "value": {"intValue": str(value)}})
            continue
        try:
            encoded.append({"key": key, "value": _encode_value(value)})
        except TypeError as exc:  # skipped with a log line, as the OTLP encoder does
            _logger.warning("cannot encode attribute %s: %s", key, exc)
    return encoded


def _encode_value(value: Any) -> dict[str, Any]:
    # bool before int: bool is an int subclass.
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value if math.isfinite(value) else _non_finite(value)}
    if value is None:
        return {}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, Sequence):
        return {"arrayValue": {"values": [_encode_value(v) for v in value]} if value else {}}
    if isinstance(value, Mapping):
        values = [{"key": str(k), "value": _encode_value(v)} for k, v in value.items()]
        return {"kvlistValue": {"values": values} if values else {}}
    raise TypeError(f"invalid attribute type {type(value).__name__}")


def _non_finite(value: float) -> str:
    # The proto3 JSON mapping spells these as strings; JSON itself has no NaN or Infinity.
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _ids_base64_to_hex(message: dict[str, Any]) -> None:
    for key in ("traceId", "spanId"):
        if key in message:
            message[key] = base64.b64decode(message[key]).hex()
