"""Spans, metrics and debug lines for logical calls and their attempts.

``SessionTelemetry`` is made once per ``ResilientSession`` from the injected providers (else
the global ones); it is None-like (``enabled`` False) when neither tracing, metrics nor DEBUG
logging is on, and the attempt loop then skips it entirely. ``CallTelemetry`` follows one
logical call: an INTERNAL span ``{METHOD} {server.address}`` and, per physical attempt, a CLIENT
span shaped like the one ``opentelemetry-instrumentation-aiohttp-client`` makes in stable
semconv mode, with W3C trace context injected into that attempt's headers. Non-sampled spans
get no attributes, events or header copies beyond what propagation needs.

Only the OpenTelemetry API is used; providers are injected (or global), never configured here.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import aiohttp
from multidict import CIMultiDict
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from yarl import URL

from .._version import __version__
from ..pool import HostCounters
from . import names
from .instruments import Instruments, instruments_for
from .redact import redact_text, redact_url

__all__ = ["CallTelemetry", "SessionTelemetry"]

log: Final = logging.getLogger("resilient_http")
SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.21.0"
_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
_URL_CACHE_SIZE: Final = 1024


class SessionTelemetry:
    """What one session reports: a tracer and instruments, or neither when they are no-ops."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.tracer = _real_tracer(tracer_provider)
        self.instruments = _real_instruments(meter_provider)
        self._urls: dict[str, tuple[str, str, int | None]] = {}

    @classmethod
    def logging_only(cls) -> SessionTelemetry:
        """Telemetry that exports nothing, for DEBUG lines when no provider is configured."""
        telemetry = cls.__new__(cls)
        telemetry.tracer = None
        telemetry.instruments = None
        telemetry._urls = {}
        return telemetry

    @property
    def exports(self) -> bool:
        """Whether spans or metrics go anywhere (else only DEBUG lines may be written)."""
        return self.tracer is not None or self.instruments is not None

    def start_call(self, method: str, url: Any) -> CallTelemetry:
        """Begin following one logical call to the absolute ``url``."""
        return CallTelemetry(self, method, url)

    def target(self, url: Any) -> tuple[str, str, int | None]:
        """Redacted URL, host and port of ``url`` (cached: services call few distinct URLs)."""
        key = str(url)
        found = self._urls.get(key)
        if found is None:
            parsed = url if isinstance(url, URL) else URL(key)
            found = (redact_url(parsed), parsed.host or "", parsed.port)
            if len(self._urls) >= _URL_CACHE_SIZE:
                self._urls.clear()
            self._urls[key] = found
        return found

    # PoolObserver: called by the connector on the event loop.
    def pool_waited(self, host: HostCounters, seconds: float) -> None:
        """Record a wait for a pooled connection."""
        if self.instruments is not None:
            self.instruments.pool_wait.record(seconds, _server(host.host, host.port))
        log.debug("pool wait upstream=%s seconds=%.6f", host.label, seconds)

    def connection_closed(self, host: HostCounters, lifetime: float) -> None:
        """Record the lifetime of a closed connection."""
        if self.instruments is not None:
            self.instruments.connection_duration.record(lifetime, _server(host.host, host.port))
        log.debug("connection closed upstream=%s lifetime=%.3f", host.label, lifetime)


class CallTelemetry:
    """One logical call: its INTERNAL span, its attempts' CLIENT spans and its metrics."""

    __slots__ = (
        "_attempt_span",
        "_attempt_started",
        "_context",
        "_method",
        "_span",
        "_started",
        "_url",
        "attempts",
        "host",
        "port",
        "session",
    )

    def __init__(self, session: SessionTelemetry, method: str, url: Any) -> None:
        self.session = session
        self._url, self.host, self.port = session.target(url)
        self._method = method if method in _KNOWN_METHODS else "_OTHER"
        self._started = time.perf_counter()
        self._attempt_started = 0.0
        self._attempt_span: trace.Span | None = None
        self.attempts = 0
        tracer = session.tracer
        if tracer is None:
            self._span: trace.Span | None = None
            self._context = None
            return
        name = method if method in _KNOWN_METHODS else "HTTP"
        self._span = tracer.start_span(f"{name} {self.host}", kind=SpanKind.INTERNAL)
        if self._span.is_recording():
            self._span.set_attributes(self._request_attributes(method))
        self._context = trace.set_span_in_context(self._span)

    def _request_attributes(self, method: str) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            names.METHOD: self._method,
            "url.full": self._url,
            names.ADDRESS: self.host,
        }
        if self.port is not None:
            attributes[names.PORT] = self.port
        if self._method == "_OTHER":
            attributes["http.request.method_original"] = method
        return attributes

    def begin_attempt(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Start an attempt; returns the request's keyword arguments with trace context added."""
        self.attempts += 1
        self._attempt_started = time.perf_counter()
        tracer = self.session.tracer
        if tracer is None:
            return kwargs
        name = self._method if self._method != "_OTHER" else "HTTP"
        span = tracer.start_span(name, context=self._context, kind=SpanKind.CLIENT)
        self._attempt_span = span
        if span.is_recording():
            attributes = self._request_attributes(self._method)
            if self.attempts > 1:
                attributes[names.RESEND_COUNT] = self.attempts - 1
            span.set_attributes(attributes)
        headers: CIMultiDict[str] = CIMultiDict(kwargs.get("headers") or ())
        propagate.inject(headers, context=trace.set_span_in_context(span))
        return {**kwargs, "headers": headers}

    def end_attempt(
        self, response: aiohttp.ClientResponse | None, error: BaseException | None
    ) -> None:
        """Finish the current attempt with its response (headers received) or its failure."""
        duration = time.perf_counter() - self._attempt_started
        attributes = self._outcome_attributes(response, error)
        instruments = self.session.instruments
        if instruments is not None:
            instruments.attempt_duration.record(duration, attributes)
        span = self._attempt_span
        if span is not None:
            self._attempt_span = None
            _end_span(span, attributes, response, error)
        if log.isEnabledFor(logging.DEBUG):
            self._log_attempt(attributes, duration)

    def _outcome_attributes(
        self, response: aiohttp.ClientResponse | None, error: BaseException | None
    ) -> dict[str, Any]:
        attributes: dict[str, Any] = {names.METHOD: self._method, names.ADDRESS: self.host}
        if self.port is not None:
            attributes[names.PORT] = self.port
        if response is not None:
            attributes[names.STATUS] = response.status
            if response.status >= 400:
                attributes[names.ERROR_TYPE] = str(response.status)
        elif error is not None:
            attributes[names.ERROR_TYPE] = type(error).__qualname__
        return attributes

    def retry(self, reason: str, delay: float, error_type: str) -> None:
        """A retry follows the current attempt after ``delay`` seconds."""
        instruments = self.session.instruments
        if instruments is not None:
            instruments.retries.add(1, self._counter_attributes(names.RETRY_REASON, reason))
        if self._span is not None and self._span.is_recording():
            self._span.add_event(
                names.RETRY_EVENT,
                {
                    names.RETRY_REASON: reason,
                    names.RETRY_DELAY: float(delay),
                    names.ERROR_TYPE: error_type,
                },
            )

    def suppressed(self, reason: str) -> None:
        """A retryable failure was not retried, for ``reason``."""
        instruments = self.session.instruments
        if instruments is not None:
            attributes = self._counter_attributes(names.SUPPRESSION_REASON, reason)
            instruments.suppressed.add(1, attributes)

    def _counter_attributes(self, key: str, value: str) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            key: value,
            names.METHOD: self._method,
            names.ADDRESS: self.host,
        }
        if self.port is not None:
            attributes[names.PORT] = self.port
        return attributes

    def finish(self, response: aiohttp.ClientResponse | None, error: BaseException | None) -> None:
        """End the logical call: its duration, and its span with the final outcome."""
        if self._attempt_span is not None:  # cancelled mid-attempt: the attempt ends here too
            self.end_attempt(None, error)
        attributes = self._outcome_attributes(response, error)
        instruments = self.session.instruments
        if instruments is not None:
            instruments.call_duration.record(time.perf_counter() - self._started, attributes)
        if self._span is not None:
            attributes[names.ATTEMPTS] = self.attempts
            _end_span(self._span, attributes, response, error)

    def _log_attempt(self, attributes: dict[str, Any], duration: float) -> None:
        span = self._attempt_span or self._span
        context = span.get_span_context() if span is not None else None
        outcome = attributes.get(names.STATUS) or attributes.get(names.ERROR_TYPE)
        log.debug(
            "attempt method=%s url=%s attempt=%d outcome=%s duration_ms=%.3f "
            "trace_id=%s span_id=%s",
            self._method,
            self._url,
            self.attempts,
            outcome,
            duration * 1000,
            f"{context.trace_id:032x}" if context else "-",
            f"{context.span_id:016x}" if context else "-",
        )


def _end_span(
    span: trace.Span,
    attributes: dict[str, Any],
    response: aiohttp.ClientResponse | None,
    error: BaseException | None,
) -> None:
    if span.is_recording():
        span.set_attributes(attributes)
        if response is not None:
            span.set_status(
                Status(StatusCode.ERROR if response.status >= 400 else StatusCode.UNSET)
            )
        elif error is not None:
            span.set_status(Status(StatusCode.ERROR, type(error).__qualname__))
            # Not span.record_exception: aiohttp puts the full URL, secrets included, in messages.
            span.add_event(
                "exception",
                {
                    "exception.type": f"{type(error).__module__}.{type(error).__qualname__}",
                    "exception.message": redact_text(str(error)),
                },
            )
    span.end()


def _server(host: str, port: int | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {names.ADDRESS: host}
    if port is not None:
        attributes[names.PORT] = port
    return attributes


def _real_tracer(provider: trace.TracerProvider | None) -> trace.Tracer | None:
    """A tracer, or None when spans would go nowhere (so the attempt loop can skip them)."""
    provider = provider if provider is not None else trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None  # no provider configured when the session was made
    tracer = provider.get_tracer(names.SDK_SCOPE, __version__, schema_url=SCHEMA_URL)
    return None if isinstance(tracer, trace.NoOpTracer) else tracer


def _real_instruments(provider: metrics.MeterProvider | None) -> Instruments | None:
    provider = provider if provider is not None else metrics.get_meter_provider()
    # The API's global proxy before any provider is set: a private class, so matched by name.
    if isinstance(provider, metrics.NoOpMeterProvider) or type(provider).__name__ == (
        "_ProxyMeterProvider"
    ):
        return None
    meter = provider.get_meter(names.SDK_SCOPE, __version__, schema_url=SCHEMA_URL)
    return None if isinstance(meter, metrics.NoOpMeter) else instruments_for(meter)
