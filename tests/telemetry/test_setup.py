"""configure_telemetry() end to end: a service in a subprocess exporting to a real OTLP receiver."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

import resilient_http as rh
from resilient_http.analysis.analyze import analyze_paths
from resilient_http.upstream import down_url
from tests.helpers import clean_environ, run_python
from tests.otlp_receiver import OTLPReceiver, attributes_of

ROOT = Path(__file__).resolve().parents[2]


async def run_scenario(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run tests/telemetry/scenario.py with a clean environment plus ``env``; never blocks."""
    return await run_python(
        "-m", "tests.telemetry.scenario", *args, cwd=ROOT, env=clean_environ(**env)
    )


async def test_retried_get_reaches_the_receiver_as_one_trace(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    telemetry_file = tmp_path / "telemetry.jsonl"
    code, out, err = await run_scenario(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            "OTEL_SERVICE_NAME": "scenario-service",
            "RESILIENT_HTTP_TELEMETRY_FILE": str(telemetry_file),
        }
    )
    assert code == 0, err
    assert "status 200" in out
    assert "flushed True" in out
    spans = list(receiver.spans())
    assert {resource["service.name"] for resource, _, _ in spans} == {"scenario-service"}
    assert {scope for _, scope, _ in spans} == {"resilient_http"}
    internal = [span for _, _, span in spans if span.kind == Span.SPAN_KIND_INTERNAL]
    attempts = [span for _, _, span in spans if span.kind == Span.SPAN_KIND_CLIENT]
    assert len(internal) == 1
    assert len(attempts) == 3
    assert {span.trace_id for _, _, span in spans} == {internal[0].trace_id}
    assert {span.parent_span_id for span in attempts} == {internal[0].span_id}
    attempts.sort(key=lambda span: span.start_time_unix_nano)
    assert [attributes_of(s).get("http.request.resend_count") for s in attempts] == [None, 1, 2]
    assert attributes_of(internal[0])["resilient_http.attempts"] == 3
    assert [e.name for e in internal[0].events] == ["resilient_http.retry"] * 2
    retries = receiver.metric_points("resilient_http.retries")
    assert [(a["resilient_http.retry.reason"], p.as_int) for a, p in retries] == [
        ("connection_closed", 2)
    ]
    assert "gzip" in receiver.encodings
    assert not any(b"s3cr3t-value" in body for body in receiver.raw)
    # the same telemetry, as OTLP JSON lines, for the tuning analysis
    assert b"s3cr3t-value" not in telemetry_file.read_bytes()
    report = analyze_paths([str(telemetry_file)])
    assert report.spans == 4
    assert json.loads(telemetry_file.read_text().splitlines()[0])


async def test_collector_down_costs_a_warning_not_a_request(tmp_path: Path) -> None:
    code, out, err = await run_scenario(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": down_url(),
            "OTEL_EXPORTER_OTLP_TIMEOUT": "0.5",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        },
        "--calls",
        "300",
        "--shutdown-timeout",
        "3",
    )
    assert code == 0, err
    assert "status 200" in out
    assert "calls 300" in out
    warnings = [line for line in err.splitlines() if line.startswith("WARNING")]
    assert warnings, err  # the failure is reported...
    assert all("exporting" in line and "requests are unaffected" in line for line in warnings), err
    assert len(warnings) <= 4  # ...once per interval and signal, not per batch or retry
    assert "Transient error" not in err
    flushed = [line for line in out.splitlines() if line.startswith("flushed")]
    assert float(flushed[0].split()[2]) < 10  # shutdown is bounded even with the collector down


async def test_collector_down_keeps_memory_bounded() -> None:
    """Telemetry that cannot be exported is dropped, not kept: the client's heap stays flat.

    A call makes two spans of about 0.8 KiB each; anything kept per call (spans, failed
    batches, per-call state of the SDK) would add 1.6 MiB or more between the 1,000th and the
    2,000th call. What may differ is what the 128-span queue holds at each reading (~0.3 MiB).
    """
    code, out, err = await run_scenario(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": down_url(),
            "OTEL_EXPORTER_OTLP_TIMEOUT": "0.5",
            "OTEL_BSP_MAX_QUEUE_SIZE": "128",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        },
        "--calls",
        "2000",
        "--memory",
        "--shutdown-timeout",
        "3",
    )
    assert code == 0, err
    assert "calls 2000" in out
    (heap,) = [line.split()[1:] for line in out.splitlines() if line.startswith("heap_kb")]
    at_half, at_end = (int(kb) for kb in heap)
    assert at_half > 0  # tracemalloc ran
    assert at_end - at_half < 1024, heap


async def test_sdk_disabled_exports_nothing(receiver: OTLPReceiver, tmp_path: Path) -> None:
    telemetry_file = tmp_path / "telemetry.jsonl"
    code, out, err = await run_scenario(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_SDK_DISABLED": "true",
            "RESILIENT_HTTP_TELEMETRY_FILE": str(telemetry_file),
        }
    )
    assert code == 0, err
    assert "telemetry off" in out
    assert "status 200" in out
    assert receiver.raw == []
    assert not telemetry_file.exists()


# A second configure_telemetry() in one process, while the first handle is open and after it
# was shut down; prints the warnings of each call and the span names the file received.
_TWICE = """
import json, sys, warnings
from opentelemetry import trace
import resilient_http as rh

def configure():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handle = rh.configure_telemetry()
    return handle, [str(w.message) for w in caught]

first, quiet = configure()
second, open_warnings = configure()
with trace.get_tracer("test").start_as_current_span("while-open"):
    pass
first.shutdown()
third, closed_warnings = configure()
with trace.get_tracer("test").start_as_current_span("after-shutdown"):
    pass
third.shutdown()
print(json.dumps([quiet, open_warnings, closed_warnings]))
"""


async def test_a_second_configure_telemetry_says_which_call_governs(tmp_path: Path) -> None:
    telemetry_file = tmp_path / "telemetry.jsonl"
    code, out, err = await run_python(
        "-c",
        _TWICE,
        cwd=ROOT,
        env=clean_environ(
            RESILIENT_HTTP_TELEMETRY_FILE=str(telemetry_file),
            OTEL_TRACES_EXPORTER="none",
            OTEL_METRICS_EXPORTER="none",
        ),
    )
    assert code == 0, err
    quiet, open_warnings, closed_warnings = json.loads(out)
    assert quiet == []
    # The first handle still writes the file: nothing says the spans are not written there.
    assert [w.split(":")[0] for w in open_warnings] == [
        "telemetry is already configured by an earlier configure_telemetry() call"
    ] * 2
    assert all("that call's handle shuts them down" in w for w in open_warnings)
    assert not any("not written" in w or "not to" in w for w in open_warnings)
    assert len(closed_warnings) == 2
    assert "spans are no longer exported" in closed_warnings[0]
    assert "metrics are no longer exported" in closed_warnings[1]
    names = [
        span["name"]
        for line in telemetry_file.read_text().splitlines()
        for resource in json.loads(line).get("resourceSpans", ())
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]
    assert names == ["while-open"]  # what the second warning says: nothing after shutdown


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER='zipkin': expected"),
        ("OTEL_METRICS_EXPORTER", "statsd", "OTEL_METRICS_EXPORTER='statsd'"),
        ("OTEL_TRACES_EXPORTER", "prometheus", "OTEL_TRACES_EXPORTER='prometheus': expected"),
        ("OTEL_EXPORTER_PROMETHEUS_PORT", "0", "OTEL_EXPORTER_PROMETHEUS_PORT='0': expected"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "not supported"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon", "expected one of"),
        ("OTEL_TRACES_SAMPLER", "sometimes", "OTEL_TRACES_SAMPLER='sometimes'"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon", "expected a number > 0"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd", "expected one of none, gzip, deflate"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "-5", "expected a number > 0"),
        ("OTEL_SDK_DISABLED", "maybe", "expected 'true' or 'false'"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "1.5", r"OTEL_BSP_MAX_QUEUE_SIZE='1\.5': expected a whole"),
        ("OTEL_BSP_SCHEDULE_DELAY", "0", "OTEL_BSP_SCHEDULE_DELAY='0': expected a whole number"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "-1", "OTEL_BSP_EXPORT_TIMEOUT='-1': expected a whole"),
        (
            "OTEL_BSP_MAX_QUEUE_SIZE",
            "100",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=512 is larger than OTEL_BSP_MAX_QUEUE_SIZE=100",
        ),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "not-a-url", "'not-a-url': expected an http:// or"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318", "expected an http:// or https:// URL"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://", "OTEL_EXPORTER_OTLP_ENDPOINT='http://'"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://h:99999", "_TRACES_ENDPOINT='http://h"),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "ftp://h/", "_METRICS_ENDPOINT='ftp://h/'"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "garbage", r"OTEL_EXPORTER_OTLP_HEADERS \(entry 1\)"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "a=1,=2", r"OTEL_EXPORTER_OTLP_HEADERS \(entry 2\)"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a b=1", r"_TRACES_HEADERS \(entry 1\): expected"),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "k", r"_METRICS_HEADERS \(entry 1\)"),
        ("OTEL_RESOURCE_ATTRIBUTES", "garbage", "OTEL_RESOURCE_ATTRIBUTES='garbage': expected a"),
        ("OTEL_RESOURCE_ATTRIBUTES", "team=a,,=b", "OTEL_RESOURCE_ATTRIBUTES='team=a,,=b'"),
        ("OTEL_PYTHON_TRACER_PROVIDER", "bogus", "'bogus': no installed package provides it"),
        ("OTEL_PYTHON_METER_PROVIDER", "bogus", "known: default_meter_provider, sdk_meter"),
    ],
)
def test_bad_values_are_config_errors_before_anything_is_installed(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    from opentelemetry import trace

    before = trace.get_tracer_provider()  # read first: OTEL_PYTHON_* names what it would load
    monkeypatch.setenv(variable, value)
    if variable.startswith("OTEL_EXPORTER_PROMETHEUS_"):
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    with pytest.raises(rh.ConfigError, match=message):
        rh.configure_telemetry()
    monkeypatch.delenv(variable)  # else reading the global provider loads what OTEL_PYTHON_* names
    assert trace.get_tracer_provider() is before


def test_a_prometheus_port_in_use_installs_and_starts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The port is bound last of what can fail: the error leaves no global provider and no
    exporting thread behind, so that a second try, once the port is free, can install them."""
    pytest.importorskip("opentelemetry.exporter.prometheus", reason="needs the prometheus extra")
    from opentelemetry import metrics, trace

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
        monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
        monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(taken.getsockname()[1]))
        before = (trace.get_tracer_provider(), metrics.get_meter_provider())
        threads = set(threading.enumerate())
        with pytest.raises(rh.ConfigError, match="cannot serve /metrics"):
            rh.configure_telemetry()
        assert (trace.get_tracer_provider(), metrics.get_meter_provider()) == before
        assert set(threading.enumerate()) == threads


def test_a_bad_header_is_named_without_showing_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20s3cr3t,s3cr3t-2")
    with pytest.raises(rh.ConfigError, match=r"HEADERS \(entry 2\)") as raised:
        rh.configure_telemetry()
    assert "s3cr3t" not in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector.example:4318/"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://[::1]:4318/v1/traces"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=abc%3D%3D, x-team = payments ,"),
        ("OTEL_RESOURCE_ATTRIBUTES", "service.namespace=shop,deployment.environment=prod"),
    ],
)
def test_good_values_are_accepted(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    from resilient_http.telemetry import setup

    monkeypatch.setenv(variable, value)
    setup._check_exporter_settings()  # installs nothing, unlike configure_telemetry()


def test_sampler_argument_must_be_a_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "1.5")
    with pytest.raises(rh.ConfigError, match=r"OTEL_TRACES_SAMPLER_ARG='1\.5'"):
        rh.configure_telemetry()
