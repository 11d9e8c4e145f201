"""Report rows from metric streams: the per-host rows ``build_reports`` reuses from the
per-method rows are the rows built without the split."""

from __future__ import annotations

from typing import Any

import pytest

from resilient_http.analysis import model, names
from resilient_http.analysis.metrics import MetricStore
from resilient_http.analysis.model import build_reports, build_upstreams
from resilient_http.analysis.spans import SpanAggregator
from tests.analysis import otlp_lines as otlp
from tests.analysis.otlp_lines import SECOND, T0, UPSTREAM

BOUNDS = [0.01, 0.1, 1.0]
OTHER = {names.ADDRESS: "other.test", names.PORT: 443}


def _calls(upstream: dict[str, Any], method: str | None, counts: list[int]) -> dict[str, Any]:
    attrs = {**upstream, **({names.METHOD: method} if method else {}), names.STATUS: 200}
    point = otlp.histogram_point(attrs, BOUNDS, counts, T0, T0 + 60 * SECOND)
    return otlp.histogram_metric(names.CALL_DURATION, [point])


def _retries(upstream: dict[str, Any], method: str | None, value: int) -> dict[str, Any]:
    attrs = {**upstream, **({names.METHOD: method} if method else {})}
    attrs[names.RETRY_REASON] = "throttled"
    return otlp.sum_metric(names.RETRIES, [otlp.number_point(attrs, value, T0, T0 + 60 * SECOND)])


def _store(*metrics: dict[str, Any]) -> MetricStore:
    store = MetricStore()
    store.add_request(otlp.metrics_request(list(metrics)))
    return store


@pytest.mark.parametrize(
    ("store", "reused"),
    [
        # One method per host: the host rows are the method rows without the method.
        (_store(_calls(UPSTREAM, "GET", [5, 3, 1, 0]), _calls(OTHER, "POST", [1, 1, 1, 1])), True),
        (_store(_calls(UPSTREAM, "GET", [5, 3, 1, 0]), _retries(UPSTREAM, "GET", 4)), True),
        # Two methods on one host: the host row adds them up, built apart.
        (
            _store(_calls(UPSTREAM, "GET", [5, 3, 1, 0]), _calls(UPSTREAM, "PUT", [0, 2, 0, 1])),
            False,
        ),
        # Retries without a method: not on the GET row, but on the host row.
        (_store(_calls(UPSTREAM, "GET", [5, 3, 1, 0]), _retries(UPSTREAM, None, 4)), False),
    ],
)
def test_host_rows_equal_the_rows_built_without_the_method_split(
    store: MetricStore, reused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected_upstreams = build_upstreams(store, SpanAggregator(), split_method=True)
    expected_hosts = build_upstreams(store, SpanAggregator(), split_method=False)
    if reused:  # the host rows must not be built a second time

        def built_again(*_args: object, **_kwargs: object) -> None:
            raise AssertionError("host rows built again")

        monkeypatch.setattr(model, "build_upstreams", built_again)
    upstreams, hosts = build_reports(store, SpanAggregator())
    assert upstreams == expected_upstreams
    assert hosts == expected_hosts
