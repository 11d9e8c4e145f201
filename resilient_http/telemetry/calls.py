"""Spans and metrics for logical calls and their attempts.

``SessionTelemetry`` is made once per ``ResilientSession`` from the injected providers (else
the global ones); when both are no-ops (``exports`` False) the session starts no
``CallTelemetry`` at all. ``CallTelemetry``, a ``CallObserver`` of the event channel, follows one
logical call: an INTERNAL span ``{METHOD} {server.address}`` and, per physical attempt, a CLIENT
span shaped like the one ``opentelemetry-instrumentation-aiohttp-client`` makes in stable
semconv mode, with W3C trace context injected into that attempt's headers. Non-sampled spans
get no attributes, events or header copies beyond what propagation needs.

Only the OpenTelemetry API is used; providers are injected (or global), never configured here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

import aiohttp
from multidict import CIMultiDict
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from yarl import URL

from .._events import (
    AttemptEvent,
    BreakerEvent,
    HedgeEvent,
    QueuedEvent,
    RejectionEvent,
    RetryEvent,
    SuppressionEvent,
)
from .._pool_state import ConnectionUse
from .._version import __version__
from ..pool import HostCounters, observe_pool
from . import names
from .instruments import Instruments, instruments_for, is_api_proxy, server_attributes
from .redact import redact_text, redact_url

__all__ = ["NO_TRACE_IDS", "CallTelemetry", "SessionTelemetry", "Target", "drop_contrib_spans"]

log: Final = logging.getLogger("resilient_http")

SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.21.0"
_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
_URL_CACHE_SIZE: Final = 1024
NO_TRACE_IDS: Final = "trace_id=- span_id=-"
"""What DEBUG lines show for the ids of a call that is not traced."""


def drop_contrib_spans(session: aiohttp.ClientSession) -> None:
    """Our spans replace those of ``AioHttpClientInstrumentor().instrument()`` on ``session``:
    no double spans."""
    marker = "_is_instrumented_by_opentelemetry"  # how the contrib package marks its configs
    if any(hasattr(config, marker) for config in session.trace_configs):
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

        AioHttpClientInstrumentor.uninstrument_session(session)


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

    @property
    def exports(self) -> bool:
        """Whether spans or metrics go anywhere (else only DEBUG lines may be written)."""
        return self.tracer is not None or self.instruments is not None

    def report_pool(self, connector: aiohttp.BaseConnector) -> Callable[[], object] | None:
        """Report ``connector``'s pool (waits, closes, gauges) while it lives; the function
        returned stops the gauges early (None: nothing to stop)."""
        if not self.exports:
            return None
        observe_pool(connector, self)
        if self.instruments is None:
            return None
        return self.instruments.pools.register(connector)

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
        self, method: str, status: int | None, error: BaseException | None
    ) -> dict[str, Any]:
        """Metric (and span end) attributes of an outcome: status code or ``error.type``."""
        if status is not None:
            key = (method, status)
            found = self._outcomes.get(key)
            if found is None:
                found = self._base(method)
                found[names.STATUS] = status
                if status >= 400:
                    found[names.ERROR_TYPE] = str(status)
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
    """One logical call's spans and metrics: a ``CallObserver`` (``_events.py``).

    An INTERNAL span for the call and, per attempt, a CLIENT span. An unsampled call gets no
    CLIENT spans: its attempts carry the INTERNAL span's (unsampled) context downstream, which
    is all a non-recorded trace needs.
    """

    __slots__ = (
        "_attempt_spans",
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
        # open CLIENT spans by hedge index (0: the attempt itself), ended as each one ends
        self._attempt_spans: dict[int, trace.Span] = {}
        self._last_outcome: tuple[int | BaseException | None, dict[str, Any]] | None = None
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

    def attempt_started(
        self, number: int, kwargs: dict[str, Any], hedge: int = 0
    ) -> dict[str, Any]:
        """Start the attempt's CLIENT span; returns ``kwargs`` with trace context added."""
        self.attempts = number
        context = self._context
        if context is None:
            return kwargs
        if self._recording:
            attributes = self.target.request_attributes(self._method)
            if number > 1:
                attributes = {**attributes, names.RESEND_COUNT: number - 1}
            if hedge:
                attributes = {**attributes, names.HEDGE: True}
            tracer = self.session.tracer
            assert tracer is not None
            span = tracer.start_span(
                _span_method(self._method),
                context=context,
                kind=SpanKind.CLIENT,
                attributes=attributes,
            )
            self._attempt_spans[hedge] = span
            context = trace.set_span_in_context(span)
        given = kwargs.get("headers")
        # A CIMultiDict, because aiohttp converts any other mapping into one; kwargs is the
        # call's own dict, so the next attempt starts from these headers and replaces the
        # traceparent in them.
        headers: CIMultiDict[str] = CIMultiDict(given) if given else CIMultiDict()
        propagate.inject(headers, context=context)
        kwargs["headers"] = headers
        return kwargs

    def attempt_ended(self, event: AttemptEvent) -> None:
        """Record the attempt's duration and end its span with its outcome."""
        attributes = self.target.outcome_attributes(self._method, event.status, event.error)
        self._last_outcome = (event.status if event.error is None else event.error, attributes)
        instruments = self.session.instruments
        if instruments is not None:
            instruments.attempt_duration.record(event.duration, attributes)
        span = self._attempt_spans.pop(event.hedge, None)
        if span is not None:
            span_attributes = _outcome_only(attributes)
            if event.connection is not None:
                _add_connection_use(span_attributes, event.connection)
            _end_span(span, span_attributes, event.status, event.error)

    def retried(self, event: RetryEvent) -> None:
        """Count the retry and add it to the call's span as an event."""
        instruments = self.session.instruments
        if instruments is not None:
            attributes = self.target.counter_attributes(
                self._method, names.RETRY_REASON, event.reason
            )
            instruments.retries.add(1, attributes)
        if self._span is not None and self._recording:
            self._span.add_event(
                names.RETRY_EVENT,
                {
                    names.RETRY_REASON: event.reason,
                    names.RETRY_DELAY: float(event.delay),
                    names.ERROR_TYPE: event.error_type,
                },
            )

    def suppressed(self, event: SuppressionEvent) -> None:
        """Count a retryable failure that was not retried."""
        instruments = self.session.instruments
        if instruments is not None:
            key = names.SUPPRESSION_REASON
            instruments.suppressed.add(
                1, self.target.counter_attributes(self._method, key, event.reason)
            )

    def breaker_changed(self, event: BreakerEvent) -> None:
        """Add the transition to the call's span as an event."""
        if self._span is not None and self._recording:
            self._span.add_event(
                names.BREAKER_EVENT,
                {names.BREAKER_STATE: event.state, names.BREAKER_PREVIOUS_STATE: event.previous},
            )

    def rejected(self, event: RejectionEvent) -> None:
        """Count the call an open breaker failed at once."""
        instruments = self.session.instruments
        if instruments is not None:
            instruments.breaker_rejected.add(1, self.target.request_attributes(self._method))

    def hedged(self, event: HedgeEvent) -> None:
        """Count the hedge, won or lost."""
        instruments = self.session.instruments
        if instruments is not None:
            outcome = "won" if event.won else "lost"
            instruments.hedges.add(
                1, self.target.counter_attributes(self._method, names.HEDGE_OUTCOME, outcome)
            )

    def queued(self, event: QueuedEvent) -> None:
        """A wait under the adaptive concurrency limit is pool wait (one figure everywhere)."""
        instruments = self.session.instruments
        if instruments is not None:
            target = self.target
            instruments.pool_wait.record(event.seconds, server_attributes(target.host, target.port))

    def finished(self, status: int | None, error: BaseException | None) -> None:
        """End the logical call: its duration, and its span with the final outcome."""
        while self._attempt_spans:  # cancelled mid-attempt: the attempt ends here too
            _end_span(self._attempt_spans.popitem()[1], {}, None, error)
        last = self._last_outcome
        outcome = status if error is None else error
        if last is not None and last[0] == outcome:
            attributes = last[1]  # the last attempt's outcome is the call's: same attributes
        else:
            attributes = self.target.outcome_attributes(self._method, status, error)
        instruments = self.session.instruments
        if instruments is not None:
            instruments.call_duration.record(time.perf_counter() - self._started, attributes)
        if self._span is not None:
            if self._recording:
                ended = _outcome_only(attributes)
                ended[names.ATTEMPTS] = self.attempts
                _end_span(self._span, ended, status, error)
            else:  # most calls, when sampling: nothing to set on a span that records nothing
                self._span.end()

    def log_ids(self) -> str:
        """``trace_id=... span_id=...`` of the call's span, for DEBUG lines, so that a log line
        can be found in the trace it belongs to; ``-`` without tracing."""
        span = self._span
        context = span.get_span_context() if span is not None else None
        if context is None or not context.is_valid:
            return NO_TRACE_IDS
        return f"trace_id={context.trace_id:032x} span_id={context.span_id:016x}"


def _span_method(method: str) -> str:
    """A method as span names show it: semconv's methods as they are, others as ``HTTP``."""
    return method if method in _KNOWN_METHODS else "HTTP"


_ERROR_STATUS: Final = Status(StatusCode.ERROR)
_OUTCOME_KEYS: Final = (names.STATUS, names.ERROR_TYPE)


def _outcome_only(attributes: dict[str, Any]) -> dict[str, Any]:
    """What an outcome adds to a span that already has the request's attributes."""
    return {key: attributes[key] for key in _OUTCOME_KEYS if key in attributes}


def _add_connection_use(attributes: dict[str, Any], use: ConnectionUse) -> None:
    """The evidence the analysis tells idle timeouts, request caps and load apart by."""
    if use.in_use:
        attributes[names.CONNECTION_IN_USE] = use.in_use
    if use.idle_time is not None:
        attributes[names.CONNECTION_IDLE_TIME] = use.idle_time
        attributes[names.CONNECTION_REQUESTS] = use.requests


def _end_span(
    span: trace.Span,
    attributes: dict[str, Any],
    status: int | None,
    error: BaseException | None,
) -> None:
    if span.is_recording():
        span.set_attributes(attributes)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, type(error).__qualname__))
            # Not span.record_exception: aiohttp puts the full URL, secrets included, in messages.
            span.add_event(
                "exception",
                {
                    "exception.type": f"{type(error).__module__}.{type(error).__qualname__}",
                    "exception.message": redact_text(str(error)),
                },
            )
        elif status is not None and status >= 400:  # else the status stays UNSET (semconv)
            span.set_status(_ERROR_STATUS)
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
