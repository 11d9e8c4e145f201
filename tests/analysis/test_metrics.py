"""Metric streams: cumulative (latest point per stream), delta (sum), gauges (latest and peak)."""

from __future__ import annotations

from typing import Any

import pytest

from resilient_http.analysis import names
from resilient_http.analysis.metrics import MetricStore
from tests.analysis.otlp_lines import (
    DELTA,
    SECOND,
    T0,
    UPSTREAM,
    gauge_metric,
    histogram_metric,
    histogram_point,
    metrics_request,
    number_point,
    sum_metric,
)

RETRY = {**UPSTREAM, names.METHOD: "GET", names.RETRY_REASON: "throttled"}


def _retries(store: MetricStore) -> float:
    return sum(s.value for s in store.by_name(names.RETRIES))


def _retry_line(value: int, start: int, time: int, **kwargs: Any) -> dict[str, Any]:
    return metrics_request(
        [sum_metric(names.RETRIES, [number_point(RETRY, value, start, time)])], **kwargs
    )


def test_cumulative_stream_keeps_its_latest_point() -> None:
    store = MetricStore()
    for seconds, total in ((10, 3), (20, 7), (30, 12)):
        store.add_request(_retry_line(total, T0, T0 + seconds * SECOND))
    store.add_request(_retry_line(7, T0, T0 + 20 * SECOND))  # a repeated, older line
    assert _retries(store) == 12


def test_cumulative_streams_of_several_processes_and_restarts_add_up() -> None:
    store = MetricStore()
    store.add_request(_retry_line(5, T0, T0 + 10 * SECOND, service="a"))
    store.add_request(_retry_line(9, T0, T0 + 20 * SECOND, service="a"))
    store.add_request(_retry_line(4, T0, T0 + 20 * SECOND, service="b"))
    # Process a restarted: a new start time is a new stream, counting from zero again.
    store.add_request(_retry_line(2, T0 + 25 * SECOND, T0 + 30 * SECOND, service="a"))
    assert _retries(store) == 9 + 4 + 2


def test_delta_points_add_up() -> None:
    store = MetricStore()
    for index, value in enumerate((3, 4, 5)):
        start = T0 + index * 10 * SECOND
        line = metrics_request(
            [
                sum_metric(
                    names.RETRIES, [number_point(RETRY, value, start, start + 10 * SECOND)], DELTA
                )
            ]
        )
        store.add_request(line)
    (stream,) = store.by_name(names.RETRIES)
    assert stream.value == 12
    assert (stream.start, stream.time) == (T0, T0 + 30 * SECOND)


def _hist_line(counts: list[int], time: int, temporality: int = 2) -> dict[str, Any]:
    point = histogram_point(UPSTREAM, [0.1, 1.0], counts, T0, time, minimum=0.05, maximum=2.0)
    return metrics_request([histogram_metric(names.POOL_WAIT, [point], temporality)])


def test_cumulative_and_delta_histograms() -> None:
    cumulative = MetricStore()
    cumulative.add_request(_hist_line([1, 0, 0], T0 + SECOND))
    cumulative.add_request(_hist_line([5, 2, 1], T0 + 2 * SECOND))
    (stream,) = cumulative.by_name(names.POOL_WAIT)
    assert stream.hist is not None
    assert stream.hist.count == 8
    assert sorted(stream.hist.buckets.values()) == [1, 2, 5]

    delta = MetricStore()
    delta.add_request(_hist_line([1, 0, 0], T0 + SECOND, DELTA))
    delta.add_request(_hist_line([5, 2, 1], T0 + 2 * SECOND, DELTA))
    (stream,) = delta.by_name(names.POOL_WAIT)
    assert stream.hist is not None
    assert stream.hist.count == 9
    assert sorted(stream.hist.buckets.values()) == [1, 2, 6]


def _open_line(active: int, time: int, *, as_gauge: bool) -> dict[str, Any]:
    point = number_point({**UPSTREAM, names.CONNECTION_STATE: "active"}, active, T0, time)
    if as_gauge:
        return metrics_request([gauge_metric(names.OPEN_CONNECTIONS, [point])])
    return metrics_request([sum_metric(names.OPEN_CONNECTIONS, [point], monotonic=False)])


@pytest.mark.parametrize("as_gauge", [True, False])
def test_levels_keep_latest_and_peak(as_gauge: bool) -> None:
    store = MetricStore()
    for seconds, level in ((1, 4), (2, 10), (3, 2)):
        store.add_request(_open_line(level, T0 + seconds * SECOND, as_gauge=as_gauge))
    (stream,) = store.by_name(names.OPEN_CONNECTIONS)
    assert (stream.value, stream.peak) == (2, 10)
    assert max(store.active_total_peak.values()) == 10


def test_delta_up_down_counter_levels_are_running_sums() -> None:
    store = MetricStore()
    for seconds, change in ((1, 4), (2, 6), (3, -8)):
        point = number_point(
            {**UPSTREAM, names.CONNECTION_STATE: "active"}, change, T0, T0 + seconds * SECOND
        )
        line = metrics_request(
            [sum_metric(names.OPEN_CONNECTIONS, [point], DELTA, monotonic=False)]
        )
        store.add_request(line)
    (stream,) = store.by_name(names.OPEN_CONNECTIONS)
    assert (stream.value, stream.peak) == (2, 10)


def test_only_contract_metrics_and_scopes_are_kept() -> None:
    store = MetricStore()
    point = number_point(RETRY, 1, T0, T0 + SECOND)
    store.add_request(metrics_request([sum_metric("other.metric", [point])]))
    # http.client.* from another library (e.g. httpx) must not count as SDK attempts.
    hist = histogram_point(UPSTREAM, [1.0], [1, 0], T0, T0 + SECOND)
    store.add_request(
        metrics_request([histogram_metric(names.ATTEMPT_DURATION, [hist])], scope="httpx")
    )
    assert store.streams == {}
    store.add_request(
        metrics_request(
            [histogram_metric(names.ATTEMPT_DURATION, [hist])], scope=names.AIOHTTP_SCOPE
        )
    )
    assert len(store.by_name(names.ATTEMPT_DURATION)) == 1


def test_merging_parts_equals_reading_in_one_pass() -> None:
    lines = [
        _retry_line(3, T0, T0 + SECOND),
        _hist_line([1, 0, 0], T0 + SECOND, DELTA),
        _open_line(5, T0 + SECOND, as_gauge=False),
        _retry_line(8, T0, T0 + 2 * SECOND),
        _hist_line([2, 1, 0], T0 + 2 * SECOND, DELTA),
        _open_line(1, T0 + 2 * SECOND, as_gauge=False),
    ]
    whole = MetricStore()
    for line in lines:
        whole.add_request(line)
    first, second = MetricStore(), MetricStore()
    for line in lines[:3]:
        first.add_request(line)
    for line in lines[3:]:
        second.add_request(line)
    first.merge(second)

    assert first.points == whole.points
    assert first.active_total_peak == whole.active_total_peak
    for key, stream in whole.streams.items():
        merged = first.streams[key]
        assert (merged.value, merged.peak, merged.start, merged.time) == (
            stream.value,
            stream.peak,
            stream.start,
            stream.time,
        )
        if stream.hist is not None:
            assert merged.hist is not None
            assert merged.hist.buckets == stream.hist.buckets
