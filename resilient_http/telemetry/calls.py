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
from .instruments import Instruments, instruments_for, is_api_proxy, server_attributes
from .redact import redact_text, redact_url

__all__ = ["CallTelemetry", "SessionTelemetry", "Target"]

log: Final = logging.getLogger("resilient_http")
SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.21.0"
_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
_URL_CACHE_SIZE: Final = 1024
NO_TRACE_IDS: Final = "trace_id=- span_id=-"
"""What DEBUG lines show for the ids of a call that is not traced."""


class SessionTelemetry:
    """What one session reports: a tracer and instruments, or neither when they are no-ops."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.tracer = _real_tracer(tracer_provider)
        self.instruments = _real_instruments(meter_provider)
        self._urls: dict[str, Target] = {}

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

    def target(self, url: Any) -> Target:
        """What telemetry needs of ``url`` (cached: services call few distinct URLs)."""
        key = str(url)
        found = self._urls.get(key)
        if found is None:
            parsed = url if isinstance(url, URL) else URL(key)
            found = Target(redact_url(parsed), parsed.host or "", parsed.port)
            if len(self._urls) >= _URL_CACHE_SIZE:
                self._urls.clear()
            self._urls[key] = found
        return found

    # PoolObserver: called by the connector on the event loop.
    def pool_waited(self, host: HostCounters, seconds: float) -> None:
        """Record a wait for a pooled connection."""
        if self.instruments is not None:
            self.instruments.pool_wait.record(seconds, server_attributes(host.host, host.port))
        log.debug("pool wait upstream=%s seconds=%.6f", host.label, seconds)

    def connection_closed(self, host: HostCounters, lifetime: float) -> None:
        """Record the lifetime of a closed connection."""
        if self.instruments is not None:
            self.instruments.connection_duration.record(
                lifetime, server_attributes(host.host, host.port)
            )
        log.debug("connection closed upstream=%s lifetime=%.3f", host.label, lifetime)


class Target:
    """A URL as telemetry reports it, with the attribute sets built once and reused.

    The SDK copies attributes it keeps, so sharing these dictionaries between calls is safe;
    building them afresh for every span and measurement was a visible share of a request.
    """

    __slots__ = ("_names", "_outcomes", "_requests", "host", "port", "url")

    def __init__(self, url: str, host: str, port: int | None) -> None:
        self.url = url
        self.host = host
        self.port = port
        self._names: dict[str, str] = {}
        self._requests: dict[str, dict[str, Any]] = {}
        self._outcomes: dict[tuple[str, int], dict[str, Any]] = {}

    def call_span_name(self, method: str) -> str:
        """The INTERNAL span's name, ``{METHOD} {server.address}`` (``HTTP`` for other methods)."""
        found = self._names.get(method)
        if found is None:
            found = self._names[method] = f"{_span_method(method)} {self.host}"
        return found

    def request_attributes(self, method: str) -> dict[str, Any]:
        """``http.request.method``, ``url.full``, ``server.address``, ``server.port``."""
        found = self._requests.get(method)
        if found is None:
            known = method if method in _KNOWN_METHODS else "_OTHER"
            found = {
                names.METHOD: known,
                "url.full": self.url,
                **server_attributes(self.host, self.port),
            }
            if known == "_OTHER":
                found["http.request.method_original"] = method
            self._requests[method] = found
        return found

    def outcome_attributes(
        self, method: str, response: aiohttp.ClientResponse | None, error: BaseException | None
    ) -> dict[str, Any]:
        """Metric (and span end) attributes of an outcome: status code or ``error.type``."""
        if response is not None:
            key = (method, response.status)
            found = self._outcomes.get(key)
            if found is None:
                found = self._base(method)
                found[names.STATUS] = response.status
                if response.status >= 400:
                    found[names.ERROR_TYPE] = str(response.status)
                self._outcomes[key] = found
            return found
        attributes = self._base(method)
        if error is not None:
            attributes[names.ERROR_TYPE] = type(error).__qualname__
        return attributes

    def counter_attributes(self, method: str, key: str, value: str) -> dict[str, Any]:
        """Attributes of a retry or suppression counter."""
        attributes = self._base(method)
        attributes[key] = value
        return attributes

    def _base(self, method: str) -> dict[str, Any]:
        known = method if method in _KNOWN_METHODS else "_OTHER"
        return {names.METHOD: known, **server_attributes(self.host, self.port)}


class CallTelemetry:
    """One logical call: its INTERNAL span, its attempts' CLIENT spans and its metrics.

    An unsampled call gets no CLIENT spans: its attempts carry the INTERNAL span's (unsampled)
    context downstream, which is all a non-recorded trace needs.
    """

    __slots__ = (
        "_attempt_span",
        "_attempt_started",
        "_context",
        "_last_outcome",
        "_method",
        "_recording",
        "_span",
        "_started",
        "attempts",
        "session",
        "target",
    )

    def __init__(self, session: SessionTelemetry, method: str, url: Any) -> None:
        self.session = session
        self.target = session.target(url)
        self._method = method
        self._started = time.perf_counter()
        self._attempt_started = 0.0
        self._attempt_span: trace.Span | None = None
        self._last_outcome: tuple[object, dict[str, Any]] | None = None
        self.attempts = 0
        tracer = session.tracer
        if tracer is None:
            self._span: trace.Span | None = None
            self._context = None
            self._recording = False
            return
        self._span = tracer.start_span(
            self.target.call_span_name(method),
            kind=SpanKind.INTERNAL,
            attributes=self.target.request_attributes(method),
        )
        self._recording = self._span.is_recording()
        self._context = trace.set_span_in_context(self._span)

    def begin_attempt(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Start an attempt; returns the request's keyword arguments with trace context added."""
        self.attempts += 1
        self._attempt_started = time.perf_counter()
        context = self._context
        if context is None:
            return kwargs
        if self._recording:
            attributes = self.target.request_attributes(self._method)
            if self.attempts > 1:
                attributes = {**attributes, names.RESEND_COUNT: self.attempts - 1}
            tracer = self.session.tracer
            assert tracer is not None
            span = tracer.start_span(
                _span_method(self._method),
                context=context,
                kind=SpanKind.CLIENT,
                attributes=attributes,
            )
            self._attempt_span = span
            context = trace.set_span_in_context(span)
        given = kwargs.get("headers")
        # A CIMultiDict, because aiohttp converts any other mapping into one; kwargs is the
        # call's own dict, so the next attempt starts from these headers and replaces the
        # traceparent in them.
        headers: CIMultiDict[str] = CIMultiDict(given) if given else CIMultiDict()
        propagate.inject(headers, context=context)
        kwargs["headers"] = headers
        return kwargs

    def end_attempt(
        self, response: aiohttp.ClientResponse | None, error: BaseException | None
    ) -> None:
        """Finish the current attempt with its response (headers received) or its failure."""
        duration = time.perf_counter() - self._attempt_started
        attributes = self.target.outcome_attributes(self._method, response, error)
        self._last_outcome = (response if response is not None else error, attributes)
        instruments = self.session.instruments
        if instruments is not None:
            instruments.attempt_duration.record(duration, attributes)
        span = self._attempt_span
        if span is not None:
            self._attempt_span = None
            _end_span(span, _outcome_only(attributes), response, error)
        if log.isEnabledFor(logging.DEBUG):
            self._log_attempt(attributes, duration, span)

    def retry(self, reason: str, delay: float, error_type: str) -> None:
        """A retry follows the current attempt after ``delay`` seconds."""
        instruments = self.session.instruments
        if instruments is not None:
            attributes = self.target.counter_attributes(self._method, names.RETRY_REASON, reason)
            instruments.retries.add(1, attributes)
        if self._span is not None and self._recording:
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
            key = names.SUPPRESSION_REASON
            instruments.suppressed.add(1, self.target.counter_attributes(self._method, key, reason))

    def finish(self, response: aiohttp.ClientResponse | None, error: BaseException | None) -> None:
        """End the logical call: its duration, and its span with the final outcome."""
        if self._attempt_span is not None:  # cancelled mid-attempt: the attempt ends here too
            self.end_attempt(None, error)
        last = self._last_outcome
        outcome = response if response is not None else error
        if last is not None and last[0] is outcome:
            attributes = last[1]  # the last attempt's outcome is the call's: same attributes
        else:
            attributes = self.target.outcome_attributes(self._method, response, error)
        instruments = self.session.instruments
        if instruments is not None:
            instruments.call_duration.record(time.perf_counter() - self._started, attributes)
        if self._span is not None:
            if self._recording:
                ended = _outcome_only(attributes)
                ended[names.ATTEMPTS] = self.attempts
                _end_span(self._span, ended, response, error)
            else:  # most calls, when sampling: nothing to set on a span that records nothing
                self._span.end()

    def log_ids(self, span: trace.Span | None = None) -> str:
        """``trace_id=... span_id=...`` of ``span`` (default: the call's), for DEBUG lines, so
        that a log line can be found in the trace it belongs to; ``-`` without tracing."""
        span = span or self._span
        context = span.get_span_context() if span is not None else None
        if context is None or not context.is_valid:
            return NO_TRACE_IDS
        return f"trace_id={context.trace_id:032x} span_id={context.span_id:016x}"

    def _log_attempt(
        self, attributes: dict[str, Any], duration: float, span: trace.Span | None
    ) -> None:
        outcome = attributes.get(names.STATUS) or attributes.get(names.ERROR_TYPE)
        log.debug(
            "attempt method=%s url=%s attempt=%d outcome=%s duration_ms=%.3f %s",
            self._method,
            self.target.url,
            self.attempts,
            outcome,
            duration * 1000,
            self.log_ids(span),
        )


def _span_method(method: str) -> str:
    """A method as span names show it: semconv's methods as they are, others as ``HTTP``."""
    return method if method in _KNOWN_METHODS else "HTTP"


_ERROR_STATUS: Final = Status(StatusCode.ERROR)
_OUTCOME_KEYS: Final = (names.STATUS, names.ERROR_TYPE)


def _outcome_only(attributes: dict[str, Any]) -> dict[str, Any]:
    """What an outcome adds to a span that already has the request's attributes."""
    return {key: attributes[key] for key in _OUTCOME_KEYS if key in attributes}


def _end_span(
    span: trace.Span,
    attributes: dict[str, Any],
    response: aiohttp.ClientResponse | None,
    error: BaseException | None,
) -> None:
    if span.is_recording():
        span.set_attributes(attributes)
        if response is not None:
            if response.status >= 400:  # otherwise the status stays UNSET, as semconv says
                span.set_status(_ERROR_STATUS)
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


def _real_tracer(provider: trace.TracerProvider | None) -> trace.Tracer | None:
    """A tracer, or None when spans would go nowhere (so the attempt loop can skip them)."""
    provider = provider if provider is not None else trace.get_tracer_provider()
    if is_api_proxy(provider) or isinstance(provider, trace.NoOpTracerProvider):
        return None  # no provider configured when the session was made
    tracer = provider.get_tracer(names.SDK_SCOPE, __version__, schema_url=SCHEMA_URL)
    return None if isinstance(tracer, trace.NoOpTracer) else tracer


def _real_instruments(provider: metrics.MeterProvider | None) -> Instruments | None:
    provider = provider if provider is not None else metrics.get_meter_provider()
    if is_api_proxy(provider) or isinstance(provider, metrics.NoOpMeterProvider):
        return None
    meter = provider.get_meter(names.SDK_SCOPE, __version__, schema_url=SCHEMA_URL)
    return None if isinstance(meter, metrics.NoOpMeter) else instruments_for(meter)
