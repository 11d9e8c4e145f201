"""A real OTLP/HTTP receiver on 127.0.0.1: decodes opentelemetry-proto requests (gzip too)."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


class OTLPReceiver:
    """Accepts POST /v1/traces and /v1/metrics as an OpenTelemetry Collector would."""

    def __init__(self) -> None:
        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.raw: list[bytes] = []  # every decoded request body, for scanning for secrets
        self.encodings: list[str] = []
        self._changed = asyncio.Condition()
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        self.port = 0

    @property
    def url(self) -> str:
        """The endpoint to give as ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        await self._runner.cleanup()

    async def wait_for(self, predicate: Callable[[OTLPReceiver], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def _body(self, request: web.Request) -> bytes:
        body = await request.read()
        encoding = request.headers.get("Content-Encoding", "identity")
        self.encodings.append(encoding)
        # aiohttp's parser already inflates request bodies; inflate here only what it left alone.
        if encoding == "gzip" and body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        elif encoding == "deflate" and body[:1] == b"\x78":
            body = zlib.decompress(body)
        self.raw.append(body)
        return body

    async def _traces(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await self._body(request))
        self.traces.append(message)
        await self._notify()
        return _protobuf(ExportTraceServiceResponse().SerializeToString())

    async def _metrics(self, request: web.Request) -> web.Response:
        message = ExportMetricsServiceRequest()
        message.ParseFromString(await self._body(request))
        self.metrics.append(message)
        await self._notify()
        return _protobuf(ExportMetricsServiceResponse().SerializeToString())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def spans(self) -> Iterator[tuple[dict[str, Any], str, Any]]:
        """(resource attributes, scope name, span) for every span received."""
        for message in self.traces:
            for resource_spans in message.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        yield resource, scope_spans.scope.name, span

    def metric_points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, data point) of every point of metric ``name`` received."""
        found = []
        for message in self.metrics:
            for resource_metrics in message.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        if metric.name != name:
                            continue
                        data = getattr(metric, metric.WhichOneof("data") or "sum")
                        for point in data.data_points:
                            found.append((_attributes(point.attributes), point))
        return found


def attributes_of(span: Any) -> dict[str, Any]:
    """A proto span's (or event's) attributes as a dict."""
    return _attributes(span.attributes)


def _attributes(key_values: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in key_values:
        kind = item.value.WhichOneof("value")
        result[item.key] = getattr(item.value, kind) if kind else None
    return result


def _protobuf(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/x-protobuf")
