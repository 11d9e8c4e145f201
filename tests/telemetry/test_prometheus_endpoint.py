"""``OTEL_METRICS_EXPORTER=prometheus``: a ``/metrics`` endpoint, scraped over real HTTP, whose
series names are those ``analyze --prometheus`` queries and the collector's exporter produces."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from opentelemetry.sdk.metrics import MeterProvider

import resilient_http as rh
from resilient_http.analysis.names import BREAKER_REJECTED, HEDGES, POOL_WAIT, RETRIES_SUPPRESSED
from resilient_http.analysis.promql import EXPORTER_NAMES, PROMETHEUS_NAMES, attribute_label
from resilient_http.telemetry.prometheus_endpoint import prometheus_reader
from resilient_http.upstream import FaultPlan, FaultyUpstream, Script
from tests.prometheus_names import (
    SDK_ATTRIBUTES,
    SDK_INSTRUMENTS,
    prometheus_label_name,
    prometheus_metric_name,
)

pytest.importorskip("opentelemetry.exporter.prometheus", reason="needs the prometheus extra")

# Where opentelemetry-exporter-prometheus and the collector's exporter name a series apart: a
# unit-1 gauge gets `_ratio` from the collector only. The analysis reads both names.
EXPORTERS_DIFFER = {EXPORTER_NAMES[name]: PROMETHEUS_NAMES[name] for name in EXPORTER_NAMES}
# Counters whose series appear only once they count (this load neither queues nor suppresses
# a retry, has no breaker open nor hedges).
NOT_COUNTED_HERE = (POOL_WAIT, RETRIES_SUPPRESSED, BREAKER_REJECTED, HEDGES)
# Lines of the text exposition format: name{labels} value
_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+$")
_LABEL = re.compile(r'([a-zA-Z_]\w*)="')


def free_port() -> int:
    """A port nothing listens on now (the endpoint needs a number before it starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def endpoint(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, MeterProvider]]:
    port = free_port()
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
    provider = MeterProvider(metric_readers=[prometheus_reader()])
    try:
        yield f"http://127.0.0.1:{port}/metrics", provider
    finally:
        provider.shutdown()


async def _exposition(url: str) -> dict[str, set[str]]:
    """Series name -> label names seen on it."""
    async with aiohttp.ClientSession() as client, client.get(url) as resp:
        assert resp.status == 200
        text = await resp.text()
    series: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is not None:
            labels = set(_LABEL.findall(match.group(2) or ""))
            series.setdefault(match.group(1), set()).update(labels)
    return series


async def test_the_endpoint_serves_the_names_the_analysis_queries(
    endpoint: tuple[str, MeterProvider],
) -> None:
    url, provider = endpoint
    # Two dead connections, both retried: attempts, retries and acquisitions are all recorded.
    plan = FaultPlan(scripts=(Script(("close", "close"), path="/flaky"),))
    with rh.testing.set_testing(True):
        session = rh.ResilientSession(meter_provider=provider)
        async with FaultyUpstream(plan) as upstream, session as client:
            async with client.get(f"{upstream.url}/flaky") as resp:
                assert resp.status == 200
            series = await _exposition(url)  # while the session (and its gauges) lives
    exposed = set(series)
    instruments = {i.name: i for i in SDK_INSTRUMENTS}
    for name, prometheus_name in PROMETHEUS_NAMES.items():
        instrument = instruments[name]
        histogram = instrument.kind == "histogram"
        # The stack's translation (statically, as tests/stack checks the collector's config)...
        assert prometheus_metric_name(name, instrument.unit, instrument.kind) == prometheus_name
        # ...and this exporter's, live.
        if name not in NOT_COUNTED_HERE:
            exported = EXPORTER_NAMES.get(name, prometheus_name)
            assert exported + ("_bucket" if histogram else "") in exposed, name
    # Every SDK series is named as the collector's exporter names it (tests/prometheus_names).
    expected = {prometheus_metric_name(i.name, i.unit, i.kind) for i in SDK_INSTRUMENTS}
    for name in exposed:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name.startswith(("resilient_http_", "http_client_")):
            base = EXPORTERS_DIFFER.get(base, base)
            assert base in expected or name in expected, name
    assert set(EXPORTERS_DIFFER) <= exposed
    assert not set(EXPORTERS_DIFFER.values()) & exposed
    # Attribute labels: the analysis's translation, the stack's translation, the exporter's.
    labels = set().union(*(series[PROMETHEUS_NAMES[n]] for n in PROMETHEUS_NAMES if n in series))
    labels |= series["resilient_http_retries_total"]
    for attribute in SDK_ATTRIBUTES:
        assert attribute_label(attribute) == prometheus_label_name(attribute)
    assert {"server_address", "server_port", "resilient_http_retry_reason"} <= labels
    assert "otel_scope_name" in series["http_client_request_duration_seconds_bucket"]


async def test_shutdown_frees_the_port(endpoint: tuple[str, MeterProvider]) -> None:
    url, provider = endpoint
    provider.shutdown()
    async with aiohttp.ClientSession() as client:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with client.get(url):
                pass


def test_a_port_in_use_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
        monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(taken.getsockname()[1]))
        with pytest.raises(rh.ConfigError, match="cannot serve /metrics"):
            prometheus_reader()
