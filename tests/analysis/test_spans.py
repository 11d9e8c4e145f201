"""Span aggregation: calls from INTERNAL spans, attempts from CLIENT spans, sampling weights."""

from __future__ import annotations

import pytest

from resilient_http.analysis import names
from resilient_http.analysis.evidence import BindingRate
from resilient_http.analysis.spans import SpanAggregator, adjusted_count
from tests.analysis.otlp_lines import (
    SECOND,
    T0,
    rate_limited_spans,
    retry_event,
    span,
    traces_request,
)

REQUEST = {names.ADDRESS: "api.test", names.PORT: 8080, names.METHOD: "GET"}
KEY = ("api.test", 8080, "GET")


@pytest.mark.parametrize(
    ("trace_state", "expected"),
    [
        ("", 1.0),
        ("ot=th:0", 1.0),  # 100 % sampling
        ("ot=th:8", 2.0),  # threshold 2**55: half the traces kept
        ("ot=th:c", 4.0),  # 25 %
        ("ot=th:c0000000000000", 4.0),  # the same, all 14 digits
        ("vendor=x,ot=rv:abcdef12345678;th:f", 16.0),  # other members and sub-keys
        ("ot=p:3", 8.0),  # the older p-value form: 2**-3
        ("ot=th:zz", 1.0),  # garbage: counted once
        ("ot=th:123456789abcdef0", 1.0),  # too many digits
        ("other=th:8", 1.0),  # not the OpenTelemetry member
    ],
)
def test_adjusted_count_from_trace_state(trace_state: str, expected: float) -> None:
    assert adjusted_count(trace_state) == pytest.approx(expected)


def _call_span(status: int, seconds: float, **kwargs: object) -> dict[str, object]:
    attrs = {**REQUEST, names.STATUS: status, names.ATTEMPTS: kwargs.pop("attempts", 1)}
    if "error" in kwargs:
        attrs[names.ERROR_TYPE] = kwargs.pop("error")
    return span(1, attrs, T0, T0 + round(seconds * SECOND), **kwargs)  # type: ignore[arg-type]


def test_calls_attempts_retries_and_outcomes() -> None:
    aggregator = SpanAggregator()
    spans = [
        _call_span(200, 0.1),
        _call_span(
            503,
            0.3,
            attempts=3,
            error="503",
            events=[retry_event("throttled", T0), retry_event("throttled", T0)],
        ),
        _call_span(200, 0.2, attempts=2, events=[retry_event("connection_closed", T0)]),
        span(3, {**REQUEST, names.STATUS: 429}, T0, T0 + SECOND // 10),
        span(3, {**REQUEST, names.STATUS: 200, names.RESEND_COUNT: 1}, T0, T0 + SECOND // 10),
    ]
    aggregator.add_request(traces_request(spans))

    call = aggregator.calls[KEY]
    assert (call.count, call.attempts, call.errors, call.throttled_final) == (3, 6, 1, 1)
    assert call.retries == {"throttled": 2, "connection_closed": 1}
    assert call.error_types == {"503": 1}
    assert call.chain_counts() == {
        "200": 1,
        "throttled > throttled > 503": 1,
        "connection_closed > 200": 1,
    }
    assert call.latency.quantile_ms(1.0) == pytest.approx(300, rel=0.01)
    attempt = aggregator.attempts[KEY]
    assert (attempt.count, attempt.first_attempts, attempt.throttled) == (2, 1, 1)


def test_sampled_spans_are_weighted() -> None:
    aggregator = SpanAggregator()
    sampled = [_call_span(200, 0.1, trace_state="ot=th:c") for _ in range(3)]
    aggregator.add_request(traces_request(sampled))
    call = aggregator.calls[KEY]
    assert (call.spans, call.count, call.attempts) == (3, 12.0, 12.0)
    assert aggregator.sampled_spans == 3


def test_foreign_scopes_kinds_and_spans_without_upstream_are_skipped() -> None:
    aggregator = SpanAggregator()
    aggregator.add_request(traces_request([_call_span(200, 0.1)], scope="my.app"))
    aggregator.add_request(traces_request([span(2, REQUEST, T0, T0 + 1)]))  # SERVER
    aggregator.add_request(traces_request([span(1, {names.METHOD: "GET"}, T0, T0 + 1)]))
    # The aiohttp instrumentation's CLIENT spans count; an INTERNAL span there does not.
    aggregator.add_request(
        traces_request(
            [span(3, REQUEST, T0, T0 + 1), span(1, REQUEST, T0, T0 + 1)],
            scope=names.AIOHTTP_SCOPE,
        )
    )
    assert aggregator.calls == {}
    assert aggregator.attempts[KEY].count == 1
    assert aggregator.spans == 5
    assert aggregator.other_spans == 4


def test_string_enums_and_string_ports_are_understood() -> None:
    aggregator = SpanAggregator()
    named = _call_span(200, 0.1)
    named["kind"] = "SPAN_KIND_INTERNAL"
    aggregator.add_request(traces_request([named]))
    odd_port = span(3, {**REQUEST, names.PORT: "8080"}, T0, T0 + 1)
    no_port = span(3, {names.ADDRESS: "api.test", names.METHOD: "GET"}, T0, T0 + 1)
    aggregator.add_request(traces_request([no_port, odd_port, no_port, odd_port]))
    assert aggregator.calls[KEY].count == 1
    assert aggregator.attempts[KEY].count == 2
    assert aggregator.attempts[("api.test", None, "GET")].count == 2


def test_merge_adds_parts() -> None:
    first, second = SpanAggregator(), SpanAggregator()
    first.add_request(traces_request([_call_span(200, 0.1)]))
    second.add_request(traces_request([_call_span(500, 0.2, error="500")]))
    first.merge(second)
    call = first.calls[KEY]
    assert (call.count, call.errors) == (2, 1)
    assert call.chain_counts() == {"200": 1, "500": 1}
    assert first.spans == 2


def test_attempts_timeline_gives_the_rate_let_through_between_429s() -> None:
    aggregator = SpanAggregator()
    aggregator.add_request(traces_request(rate_limited_spans(REQUEST)))
    attempt = aggregator.attempts[KEY]
    window = (attempt.last_end - attempt.first_start) / SECOND
    # Over the whole run (the Retry-After waits included) it let through 125/s; between its
    # 429s, with answers counted 10 ms (the time they take) before they end, 200/s: the bucket's
    # rate. Counted at their end, the burst's answers let through just before the first 429
    # count too: 300/s.
    assert (attempt.count - attempt.throttled) / window == pytest.approx(125, abs=1)
    assert attempt.timeline.binding_rate(0.01) == BindingRate(200.0, 18.0, 0.09, 3)
    assert attempt.timeline.binding_rate() == BindingRate(300.0, 27.0, 0.09, 3)
    # Sampled spans count by their weight (a quarter kept: each stands for 4 attempts).
    sampled = SpanAggregator()
    sampled.add_request(traces_request(rate_limited_spans(REQUEST, trace_state="ot=th:c")))
    binding = sampled.attempts[KEY].timeline.binding_rate(0.01)
    assert binding is not None
    assert (binding.rate, binding.answers) == (800.0, 72.0)
