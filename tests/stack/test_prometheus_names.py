"""Prometheus names: the collector's OTLP -> Prometheus name translation (the translator's
own examples and the names this stack relies on), the PromQL name extraction, and the Grafana
dashboard querying only metrics and labels the stack produces.

A dashboard query on a name the stack does not produce shows an empty panel rather than an
error, so the names are checked here instead.
"""

from __future__ import annotations

import copy
import json
import re

import pytest

from resilient_http.analysis.prometheus_streams import ATTRIBUTES
from resilient_http.analysis.promql import (
    EXPORTER_NAMES,
    PROMETHEUS_NAMES,
    attribute_label,
    counter_increase,
    name_matcher,
    recorded_name,
)
from resilient_http.analysis.recording_rules import COUNTER_SERIES
from tests import prometheus_names as pn
from tests import stack_checks as sc
from tests.stack.conftest import GRAFANA_DIR, Config

DASHBOARD_PATH = GRAFANA_DIR / "dashboards" / "resilient-http.json"


@pytest.fixture(scope="module")
def dashboard() -> Config:
    data: Config = json.loads(DASHBOARD_PATH.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def datasource_uids() -> dict[str, str]:
    provisioned = sc.load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yaml")
    return {str(ds["type"]): str(ds["uid"]) for ds in provisioned["datasources"]}


# ---------------------------------------------------------------- (g) metric names


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        # Examples of github.com/prometheus/otlptranslator (metric_namer.go docs and tests).
        ("http.server.request.duration", "s", "histogram", "http_server_request_duration_seconds"),
        ("requests.count", "1", "counter", "requests_count_total"),
        ("memory.usage", "By", "gauge", "memory_usage_bytes"),
        ("cpu.utilization", "1", "gauge", "cpu_utilization_ratio"),
        ("network.io", "By/s", "gauge", "network_io_bytes_per_second"),
        ("queue.size", "{item}", "updowncounter", "queue_size"),
        ("already_seconds", "s", "histogram", "already_seconds"),
        ("jobs.total.done", "", "counter", "jobs_done_total"),
        ("up.down", "1", "updowncounter", "up_down"),
        ("2xx", "", "gauge", "_2xx"),
        # The names this stack relies on.
        ("http.client.request.duration", "s", "histogram", "http_client_request_duration_seconds"),
        (
            "http.client.open_connections",
            "{connection}",
            "updowncounter",
            "http_client_open_connections",
        ),
        ("resilient_http.retries", "{retry}", "counter", "resilient_http_retries_total"),
        ("resilient_http.pool.limit", "{connection}", "gauge", "resilient_http_pool_limit"),
        ("resilient_http.breaker.state", "1", "gauge", "resilient_http_breaker_state_ratio"),
        ("resilient_http.hedges", "{attempt}", "counter", "resilient_http_hedges_total"),
        ("traces.span.metrics.calls", "", "counter", "traces_span_metrics_calls_total"),
        ("traces.span.metrics.duration", "s", "histogram", "traces_span_metrics_duration_seconds"),
        (
            "traces.span.metrics.duration",
            "ms",
            "histogram",
            "traces_span_metrics_duration_milliseconds",
        ),
    ],
)
def test_prometheus_metric_name(name: str, unit: str, kind: pn.Kind, expected: str) -> None:
    assert pn.prometheus_metric_name(name, unit, kind) == expected


def test_prometheus_metric_name_with_namespace() -> None:
    assert pn.prometheus_metric_name("a.b", "s", "counter", "ns") == "ns_a_b_seconds_total"


def test_prometheus_label_name() -> None:
    assert pn.prometheus_label_name("http.connection.state") == "http_connection_state"
    assert pn.prometheus_label_name("resilient_http.retry.reason") == "resilient_http_retry_reason"
    assert pn.prometheus_label_name("2xx") == "key_2xx"


def test_expected_names_cover_the_sdk_and_spanmetrics(collector: Config) -> None:
    names = pn.expected_prometheus_names(collector)
    assert {
        "http_client_request_duration_seconds_bucket",
        "http_client_request_duration_seconds_count",
        "http_client_open_connections",
        "http_client_connection_duration_seconds_sum",
        "http_client_active_requests",
        "resilient_http_request_duration_seconds_bucket",
        "resilient_http_pool_wait_duration_seconds_bucket",
        "resilient_http_connection_acquired_total",
        "resilient_http_retries_total",
        "resilient_http_retries_suppressed_total",
        "resilient_http_pool_limit",
        "resilient_http_breaker_state_ratio",
        "resilient_http_breaker_rejected_total",
        "resilient_http_concurrency_limit",
        "resilient_http_hedges_total",
        "traces_span_metrics_calls_total",
        "traces_span_metrics_duration_seconds_bucket",
    } <= names
    assert "traces_span_metrics_duration_milliseconds_bucket" not in names
    # 4 SDK histograms, 10 other SDK, spanmetrics 1 + 3, 6 recording rules
    assert len(names) == 3 * 4 + 10 + 1 + 3 + 6


def test_the_analysis_queries_the_names_the_collector_exports(collector: Config) -> None:
    """Every series ``analyze --prometheus`` reads is one the stack's collector exports, under
    the translation of the SDK instrument's name, unit and kind; and the other exporter's name
    it also reads (opentelemetry-exporter-prometheus, tests/telemetry) differs only by the
    `_ratio` of a unit-1 gauge."""
    exported = pn.expected_prometheus_names(collector)
    instruments = {i.name: i for i in pn.SDK_INSTRUMENTS}
    for name, series in PROMETHEUS_NAMES.items():
        instrument = instruments[name]
        assert pn.prometheus_metric_name(name, instrument.unit, instrument.kind) == series
        assert series + ("_bucket" if instrument.kind == "histogram" else "") in exported, name
    for name, series in EXPORTER_NAMES.items():
        assert (instruments[name].unit, instruments[name].kind) == ("1", "gauge")
        assert PROMETHEUS_NAMES[name] == f"{series}_ratio"
        assert name_matcher(name) == f'__name__=~"{series}|{series}_ratio"'
    labels = pn.expected_prometheus_labels(collector)
    assert {attribute_label(a) for attributes in ATTRIBUTES.values() for a in attributes} <= labels


@pytest.mark.parametrize(
    ("expr", "metrics", "labels"),
    [
        (
            'histogram_quantile(0.95, sum by (le, server_address) (rate(a_bucket{job=~"$s"}'
            "[$__rate_interval])))",
            {"a_bucket"},
            {"le", "server_address", "job"},
        ),
        (
            'sum(rate(x_total{r="1"}[5m])) by (r) / ignoring(r) group_left sum(y) offset 1h',
            {"x_total", "y"},
            {"r"},
        ),
        ('max_over_time(g{a="}{",b!~"x"}[1m:30s]) > 0.5 and on (c) h', {"g", "h"}, {"a", "b", "c"}),
    ],
)
def test_promql_extraction(expr: str, metrics: set[str], labels: set[str]) -> None:
    assert pn.promql_metric_names(expr) == metrics
    assert pn.promql_label_names(expr) == labels


def test_dashboard_queries_only_metrics_the_stack_produces(
    collector: Config, dashboard: Config, datasource_uids: dict[str, str]
) -> None:
    names = pn.expected_prometheus_names(collector)
    labels = pn.expected_prometheus_labels(collector)
    assert pn.dashboard_problems(dashboard, names, labels, datasource_uids) == []


def test_dashboard_covers_the_pool_and_retry_questions(dashboard: Config) -> None:
    exprs = " ".join(
        t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t
    )
    for needle in (
        "http_client_open_connections",  # pool size and state
        "resilient_http_pool_wait_duration_seconds_bucket",  # pool wait p95
        'resilient_http_connection_reused="true"',  # reuse ratio
        "resilient_http_retries_total",  # retries by reason
        "resilient_http_retries_suppressed_total",  # suppressed retries
        'http_response_status_code=~"429|503"',  # throttled share
        "histogram_quantile(0.99, sum by (le, server_address)",  # p99 per upstream
    ):
        assert needle in exprs


def _prometheus_exprs(dashboard: Config) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets") or []
        if (target.get("datasource") or {}).get("type") == "prometheus" and target.get("expr")
    ]


def test_the_dashboard_reads_counters_as_the_report_does(dashboard: Config) -> None:
    """A counter on the dashboard is either a recording rule's series or, in the report row,
    the report's own exact-increase PromQL over the dashboard's range."""
    report_panels = 0
    for title, expr in _prometheus_exprs(dashboard):
        raw = pn.promql_metric_names(expr) & set(COUNTER_SERIES)
        if not raw:
            continue
        report_panels += 1
        series = "|".join(raw)
        selectors = re.findall(rf"\b(?:{series})\{{[^}}]*\}}", expr)
        assert selectors, (title, expr)
        for selector in selectors:
            assert counter_increase(selector, "$__range") in expr, (title, selector)
        assert not re.search(r"\b(rate|irate|increase)\(", expr), title
    assert report_panels >= 4
    recorded = {recorded_name(series) for series in COUNTER_SERIES}
    used = {
        name for _, expr in _prometheus_exprs(dashboard) for name in pn.promql_metric_names(expr)
    }
    assert recorded <= used, recorded - used


# ---------------------------------------------------------------- (h) the checks can fail


def test_dashboard_pool_wait_is_over_all_acquisitions(dashboard: Config) -> None:
    # One definition of pool wait (SPEC): over all acquisitions, with the share that queued.
    (panel,) = [p for p in dashboard["panels"] if p.get("title", "").startswith("Pool wait")]
    p95, share = (t["expr"] for t in panel["targets"])
    assert p95.startswith("histogram_quantile(0.95,")
    assert "resilient_http_connection_acquired_total" in p95
    # the waits counted: the +Inf bucket of the recorded wait histogram
    assert "resilient_http_pool_wait_duration_seconds_bucket:increase" in share
    assert 'le="+Inf"' in share or 'le="+Inf"' in share
    assert "resilient_http_connection_acquired_total" in share


def test_detects_a_dashboard_metric_the_stack_does_not_produce(
    collector: Config, dashboard: Config, datasource_uids: dict[str, str]
) -> None:
    broken = copy.deepcopy(dashboard)
    target = next(p for p in broken["panels"] if p.get("targets"))["targets"][0]
    target["expr"] = 'sum by (server_adress) (rate(resilient_http_retries{job="x"}[5m]))'
    names = pn.expected_prometheus_names(collector)
    labels = pn.expected_prometheus_labels(collector)
    problems = pn.dashboard_problems(broken, names, labels, datasource_uids)
    assert len(problems) == 2
    assert "metric 'resilient_http_retries' is not produced by the stack" in problems[0]
    assert "label 'server_adress' is not produced by the stack" in problems[1]
