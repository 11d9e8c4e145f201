"""Span aggregation: per-upstream call and attempt statistics, one span at a time.

No trace is ever reassembled, so memory does not grow with the number of traces: the logical
(INTERNAL) span already carries what a trace join would give (``resilient_http.attempts``, one
``resilient_http.retry`` event per retry, the final outcome), and the attempt (CLIENT) spans are
aggregated on their own attributes. Each span is weighted by its adjusted count when its
``traceState`` carries an OpenTelemetry probability threshold (``ot=th:<hex>``), else counts once.

This is the hot loop of ``resilient-http analyze``: attribute lists are read with one dict
comprehension and only the few keys needed are decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from resilient_http.analysis import names
from resilient_http.analysis.evidence import STALE_ERROR_TYPES, ConnectionEvidence, RateTimeline
from resilient_http.analysis.stats import LatencySketch
from resilient_http.config import RATE_LIMITED_STATUS, THROTTLING_STATUSES

__all__ = ["AttemptStats", "CallStats", "SpanAggregator", "UpstreamKey", "adjusted_count"]

_N = TypeVar("_N", int, float)

# (server.address, server.port, http.request.method); port and method may be unknown.
UpstreamKey = tuple[str, int | None, str | None]

# Distinct error types / attempt chains kept per upstream; the rest are counted as "other".
# Bounds memory when error messages leak into error.type or retries vary wildly.
MAX_DISTINCT_LABELS = 32
OTHER_LABEL = "other"

# 2**56: OTel TraceState thresholds are 56-bit rejection thresholds (14 hex digits).
_MAX_THRESHOLD = 1 << 56
_TRACE_STATE_CACHE_LIMIT = 4096

_INTERNAL = 1
_CLIENT = 3
_ODD = object()

# Module constants for the hot loop: a global is one lookup, ``names.X`` is two.
_ADDRESS = names.ADDRESS
_PORT = names.PORT
_METHOD = names.METHOD
_STATUS = names.STATUS
_ERROR_TYPE = names.ERROR_TYPE
_ATTEMPTS = names.ATTEMPTS
_RESEND_COUNT = names.RESEND_COUNT
_RETRY_EVENT = names.RETRY_EVENT
_RETRY_REASON = names.RETRY_REASON
_IN_USE = names.CONNECTION_IN_USE
_IDLE_TIME = names.CONNECTION_IDLE_TIME
_REQUESTS = names.CONNECTION_REQUESTS
_KINDS = {"SPAN_KIND_INTERNAL": _INTERNAL, "SPAN_KIND_CLIENT": _CLIENT}

INTERRUPTED_ERROR_TYPE = "CancelledError"
"""``error.type`` of a call the application cancelled (a Ctrl-C, an outer timeout, a caller that
went away): counted as interrupted, not as an error, for the upstream did nothing wrong."""


@dataclass(slots=True)
class CallStats:
    """Logical calls (INTERNAL spans) of one upstream; counts are adjusted for sampling."""

    count: float = 0.0
    spans: int = 0
    attempts: float = 0.0
    errors: float = 0.0
    interrupted: float = 0.0
    throttled_final: float = 0.0
    latency: LatencySketch = field(default_factory=LatencySketch)
    retries: dict[str, float] = field(default_factory=dict)
    error_types: dict[str, float] = field(default_factory=dict)
    # Calls with retries, by chain ("throttled > 200"); calls without, by outcome (an error
    # type or a status code), turned into chain names only when reported.
    chains: dict[str, float] = field(default_factory=dict)
    plain_outcomes: dict[str | int | None, float] = field(default_factory=dict)
    first_start: int = 0
    last_end: int = 0

    def chain_counts(self) -> dict[str, float]:
        """Calls by attempt chain: the retry reasons in order, then the outcome."""
        counts = dict(self.chains)
        for outcome, count in self.plain_outcomes.items():
            label = outcome if isinstance(outcome, str) else _outcome(outcome, None)
            _bump(counts, label, count)
        return counts

    def merge(self, other: CallStats) -> None:
        """Add ``other`` into this (used to fold methods into a host)."""
        self.count += other.count
        self.spans += other.spans
        self.attempts += other.attempts
        self.errors += other.errors
        self.interrupted += other.interrupted
        self.throttled_final += other.throttled_final
        self.latency.merge(other.latency)
        for mine, theirs in (
            (self.retries, other.retries),
            (self.error_types, other.error_types),
            (self.chains, other.chains),
        ):
            for label, count in theirs.items():
                _bump(mine, label, count)
        for outcome, count in other.plain_outcomes.items():
            self.plain_outcomes[outcome] = self.plain_outcomes.get(outcome, 0.0) + count
        self.first_start, self.last_end = _window(self, other)


@dataclass(slots=True)
class AttemptStats:
    """Physical attempts (CLIENT spans) of one upstream; counts are adjusted for sampling."""

    count: float = 0.0
    spans: int = 0
    first_attempts: float = 0.0
    errors: float = 0.0
    interrupted: float = 0.0
    throttled: float = 0.0
    rate_limited: float = 0.0  # answered 429
    latency: LatencySketch = field(default_factory=LatencySketch)
    error_types: dict[str, float] = field(default_factory=dict)
    # How the pool handed out the connections (idle time, requests served, connections in use)
    connections: ConnectionEvidence = field(default_factory=ConnectionEvidence)
    # Answers (429, un-throttled) by end time: the rate a rate limit let through while binding
    timeline: RateTimeline = field(default_factory=RateTimeline)
    first_start: int = 0
    last_end: int = 0

    def merge(self, other: AttemptStats) -> None:
        """Add ``other`` into this (used to fold methods into a host)."""
        self.count += other.count
        self.spans += other.spans
        self.first_attempts += other.first_attempts
        self.errors += other.errors
        self.interrupted += other.interrupted
        self.throttled += other.throttled
        self.rate_limited += other.rate_limited
        self.latency.merge(other.latency)
        for label, count in other.error_types.items():
            _bump(self.error_types, label, count)
        self.connections.merge(other.connections)
        self.timeline.merge(other.timeline)
        self.first_start, self.last_end = _window(self, other)


@dataclass
class SpanAggregator:
    """Per-upstream ``CallStats`` and ``AttemptStats`` from ``ExportTraceServiceRequest`` lines."""

    calls: dict[UpstreamKey, CallStats] = field(default_factory=dict)
    attempts: dict[UpstreamKey, AttemptStats] = field(default_factory=dict)
    spans: int = 0
    other_spans: int = 0
    sampled_spans: int = 0
    _weights: dict[str, float] = field(default_factory=dict, repr=False)
    _call_rows: dict[tuple[Any, Any, Any], CallStats] = field(default_factory=dict, repr=False)
    _attempt_rows: dict[tuple[Any, Any, Any], AttemptStats] = field(
        default_factory=dict, repr=False
    )

    def add_request(self, request: dict[str, Any]) -> None:
        """Fold one decoded ``ExportTraceServiceRequest`` into the statistics."""
        for resource_spans in request.get("resourceSpans") or ():
            scopes = resource_spans.get("scopeSpans") or resource_spans.get(
                "instrumentationLibrarySpans"  # pre-1.0 OTLP, still found in old files
            )
            for scope_spans in scopes or ():
                scope = scope_spans.get("scope") or scope_spans.get("instrumentationLibrary") or {}
                scope_name = scope.get("name")
                spans = scope_spans.get("spans") or ()
                self.spans += len(spans)
                if scope_name not in names.ATTEMPT_SCOPES:
                    self.other_spans += len(spans)
                    continue
                self._add_spans(spans, scope_name == names.SDK_SCOPE)

    def merge(self, other: SpanAggregator) -> None:
        """Add the statistics of another part of the input (read by another process)."""
        for key, call in other.calls.items():
            if key in self.calls:
                self.calls[key].merge(call)
            else:
                self.calls[key] = call
        for key, attempt in other.attempts.items():
            if key in self.attempts:
                self.attempts[key].merge(attempt)
            else:
                self.attempts[key] = attempt
        self.spans += other.spans
        self.other_spans += other.other_spans
        self.sampled_spans += other.sampled_spans

    def drop_caches(self) -> None:
        """Forget lookup caches (rebuilt on demand); the statistics are kept."""
        self._weights.clear()
        self._call_rows.clear()
        self._attempt_rows.clear()

    def _weight(self, trace_state: str) -> float:
        weight = self._weights.get(trace_state)
        if weight is None:
            if len(self._weights) >= _TRACE_STATE_CACHE_LIMIT:
                self._weights.clear()  # per-trace random values make every state unique
            weight = self._weights[trace_state] = adjusted_count(trace_state)
        if weight != 1.0:
            self.sampled_spans += 1
        return weight

    def _add_spans(self, spans: Any, is_sdk: bool) -> None:
        # One loop for both kinds, with the kind-specific steps as branches: a method call per
        # span costs as much as the branches, and the shared steps are written once. The order
        # of the updates is part of the result: a span that turns out malformed halfway leaves
        # what it had already counted (see analyze._MALFORMED).
        call_rows, attempt_rows = self._call_rows, self._attempt_rows
        rows: dict[tuple[Any, Any, Any], Any]
        stats: Any  # a CallStats when is_call, else an AttemptStats
        for span in spans:
            kind = span.get("kind")
            kind = _KINDS.get(kind, kind) if type(kind) is str else kind
            if kind == _CLIENT:
                is_call, rows = False, attempt_rows
            elif kind == _INTERNAL and is_sdk:
                is_call, rows = True, call_rows
            else:
                self.other_spans += 1
                continue
            # A plain loop: in Python 3.11 a comprehension is a function call of its own.
            attributes = {}
            for kv in span.get("attributes") or ():
                attributes[kv["key"]] = kv["value"]
            get = attributes.get
            address, port, method = get(_ADDRESS), get(_PORT), get(_METHOD)
            # The row is cached by the raw values (see _new_row): three dict lookups per span.
            raw_key = (
                address.get("stringValue", _ODD) if address else None,
                port.get("intValue", _ODD) if port else None,
                method.get("stringValue", _ODD) if method else None,
            )
            stats = rows.get(raw_key)
            if stats is None:
                stats = self._new_row(
                    self.calls if is_call else self.attempts,
                    rows,
                    raw_key,
                    (address, port, method),
                    CallStats if is_call else AttemptStats,
                )
                if stats is None:
                    continue
            trace_state = span.get("traceState")
            weight = self._weight(trace_state) if trace_state else 1.0
            start = int(span.get("startTimeUnixNano", 0))
            end = int(span.get("endTimeUnixNano", 0))
            stats.count += weight
            stats.spans += 1
            seconds = (end - start) / 1e9
            stats.latency.add(seconds if seconds > 0.0 else 0.0, weight)
            if is_call:
                value = get(_ATTEMPTS)
                raw = value.get("intValue") if value else None
                attempts = (_INTS.get(raw) or _parse_int(raw)) if raw is not None else _int(value)
                stats.attempts += (attempts or 1) * weight
            else:
                value = get(_RESEND_COUNT)
                if not value or not _int(value):
                    stats.first_attempts += weight
            value = get(_STATUS)
            raw = value.get("intValue") if value else None
            status = (_INTS.get(raw) or _parse_int(raw)) if raw is not None else _int(value)
            value = get(_ERROR_TYPE)
            error_type = _text(value) if value else None
            if error_type == INTERRUPTED_ERROR_TYPE:
                stats.interrupted += weight
            elif error_type is not None or (status is not None and status >= 500):
                stats.errors += weight
                _bump(stats.error_types, error_type or str(status), weight)
            if is_call:
                if status in THROTTLING_STATUSES:
                    stats.throttled_final += weight
                events = span.get("events")
                if events:
                    chain = []
                    for event in events:
                        if event.get("name") == _RETRY_EVENT:
                            reason = "unknown"
                            for kv in event.get("attributes") or ():
                                if kv["key"] == _RETRY_REASON:
                                    reason = _text(kv["value"]) or reason
                            _bump(stats.retries, reason, weight)
                            chain.append(reason)
                    chain.append(_outcome(status, error_type))
                    _bump(stats.chains, " > ".join(chain), weight)
                else:
                    # Calls without retries: counted by outcome, named only when reported.
                    outcome = error_type or status
                    stats.plain_outcomes[outcome] = stats.plain_outcomes.get(outcome, 0.0) + weight
            else:
                throttled = status in THROTTLING_STATUSES
                if throttled:
                    stats.throttled += weight
                    if status == RATE_LIMITED_STATUS:
                        stats.rate_limited += weight
                        if end:
                            stats.timeline.add(end, True, weight)
                elif status is not None and end:
                    stats.timeline.add(end, False, weight)
                value = get(_IN_USE)
                if value is not None:
                    _add_connection_use(
                        stats.connections, get, value, error_type, throttled, weight
                    )
            if start and (not stats.first_start or start < stats.first_start):
                stats.first_start = start
            if end > stats.last_end:
                stats.last_end = end

    def _new_row(
        self,
        rows: dict[UpstreamKey, Any],
        cache: dict[tuple[Any, Any, Any], Any],
        raw_key: tuple[Any, Any, Any],
        values: tuple[Any, Any, Any],
        kind: type[Any],
    ) -> Any:
        """The stats object of a span's upstream on a cache miss; None (span skipped) without
        ``server.address``. A value of an unusual type reads as _ODD in ``raw_key`` and is never
        cached, so a string port "8080" and a missing port cannot share a cache entry."""
        address, port, method = values
        text = _text(address)
        if text is None:
            self.other_spans += 1
            return None
        key = (text, _int(port), _text(method))
        stats = rows.get(key)
        if stats is None:
            stats = rows[key] = kind()
        if _ODD not in raw_key:  # the cache stays bounded by the number of upstreams
            cache[raw_key] = stats
        return stats


def _add_connection_use(
    evidence: ConnectionEvidence,
    get: Any,
    in_use: dict[str, Any],
    error_type: str | None,
    throttled: bool,
    weight: float,
) -> None:
    """Fold an attempt span's connection attributes into its upstream's evidence."""
    evidence.add_attempt(_int(in_use) or 0, throttled, weight)
    idle = get(_IDLE_TIME)
    if idle is not None:
        evidence.add_reuse(
            _float(idle) or 0.0,
            _int(get(_REQUESTS)) or 0,
            error_type in STALE_ERROR_TYPES,
            weight,
        )


def adjusted_count(trace_state: str) -> float:
    """How many spans one sampled span stands for, from a W3C ``tracestate`` value.

    Reads the OpenTelemetry entry ``ot=th:<hex>`` (a 56-bit rejection threshold, trailing zeros
    omitted: probability = (2**56 - th) / 2**56) and the older ``ot=p:<n>`` (probability 2**-n).
    No OTel entry, or one without a usable threshold, means the span was not sampled: 1.
    """
    for member in trace_state.split(","):
        key, _, value = member.strip().partition("=")
        if key != "ot":
            continue
        for item in value.split(";"):
            sub_key, _, sub_value = item.partition(":")
            try:
                if sub_key == "th" and 0 < len(sub_value) <= 14:
                    threshold = int(sub_value.ljust(14, "0"), 16)
                    return _MAX_THRESHOLD / (_MAX_THRESHOLD - threshold)
                if sub_key == "p" and 0 <= int(sub_value) <= 62:
                    return float(2 ** int(sub_value))
            except ValueError:
                return 1.0
    return 1.0


def _outcome(status: int | None, error_type: str | None) -> str:
    """How a call ended, as attempt chains spell it: the error type, else the status code."""
    if error_type is not None:
        return error_type
    return "?" if status is None else str(status)


# int() of an intValue, by its raw JSON value: status codes and attempt counts repeat, and a
# lookup costs a fraction of parsing a string. Looked up as ``_INTS.get(raw) or _parse_int(raw)``
# (a cached 0 is parsed again). Values int() cannot read raise as before, unhashable ones raise
# TypeError as int() would; 1 and True, or 2 and 2.0, share an entry and an int() result.
_INTS: dict[Any, int] = {}
_INTS_LIMIT = 1024


def _parse_int(raw: Any) -> int:
    if len(_INTS) >= _INTS_LIMIT:
        _INTS.clear()  # distinct values are a handful; this only bounds odd input
    value = _INTS[raw] = int(raw)
    return value


def _text(value: dict[str, Any] | None) -> str | None:
    if not value:
        return None
    for raw in value.values():
        return str(raw)
    return None


def _int(value: dict[str, Any] | None) -> int | None:
    return _number(value, int)


def _float(value: dict[str, Any] | None) -> float | None:
    return _number(value, float)


def _number(value: dict[str, Any] | None, kind: Callable[[Any], _N]) -> _N | None:
    """An OTLP ``AnyValue`` read as ``kind`` (None: absent or not a number)."""
    if not value:
        return None
    for raw in value.values():
        try:
            return kind(raw)
        except (TypeError, ValueError):
            return None
    return None


def _bump(counts: dict[str, float], label: str, weight: float) -> None:
    if label not in counts and len(counts) >= MAX_DISTINCT_LABELS:
        label = OTHER_LABEL
    counts[label] = counts.get(label, 0.0) + weight


def _window(a: CallStats | AttemptStats, b: CallStats | AttemptStats) -> tuple[int, int]:
    starts = [s for s in (a.first_start, b.first_start) if s]
    return (min(starts) if starts else 0), max(a.last_end, b.last_end)
