"""Teams already on OpenTelemetry: the file exporters are public, selectable by entry point name
as ``opentelemetry-instrument`` selects exporters, and a file that cannot be attached is said so.

The service runs in a subprocess (tests/telemetry/instrumented.py) whose global providers come
from the SDK's own configurator, the one ``opentelemetry-instrument`` runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

import resilient_http as rh
from resilient_http.analysis.analyze import analyze_paths
from tests.helpers import clean_environ, run_python
from tests.otlp_receiver import OTLPReceiver

ROOT = Path(__file__).resolve().parents[2]
NAME = "resilient_http_file"


async def run_instrumented(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    return await run_python(
        "-m", "tests.telemetry.instrumented", *args, cwd=ROOT, env=clean_environ(**env)
    )


def assert_analyzable(path: Path) -> None:
    """``resilient-http analyze`` reads ``path``: the call's three spans and its metrics."""
    analysis = analyze_paths([path])
    assert analysis.spans == 3  # the call and its two attempts (one stale connection)
    (upstream,) = analysis.upstreams
    assert upstream.source == "metrics+spans"
    assert upstream.requests == 1
    assert upstream.retries == {"connection_closed": 1}


@pytest.mark.parametrize("also_configure", [False, True], ids=["alone", "and-configure_telemetry"])
async def test_the_entry_point_writes_the_file_for_the_sdk_configurator(
    tmp_path: Path, also_configure: bool
) -> None:
    path = tmp_path / "telemetry.jsonl"
    code, out, err = await run_instrumented(
        {
            "OTEL_TRACES_EXPORTER": NAME,
            "OTEL_METRICS_EXPORTER": NAME,
            "RESILIENT_HTTP_TELEMETRY_FILE": str(path),
        },
        *(["--also-configure"] if also_configure else []),
    )
    assert code == 0, err
    assert "status 200" in out
    assert_analyzable(path)
    if also_configure:
        # configure_telemetry() keeps the providers it finds, and the file is attached to them
        assert "global TracerProvider is already set" in err
        assert "not written" not in err
    else:
        assert err == ""


async def test_the_entry_point_goes_beside_otlp(receiver: OTLPReceiver, tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    code, _, err = await run_instrumented(
        {
            "OTEL_TRACES_EXPORTER": f"otlp,{NAME}",
            "OTEL_METRICS_EXPORTER": f"otlp,{NAME}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",  # the SDK's default is grpc
            "RESILIENT_HTTP_TELEMETRY_FILE": str(path),
        }
    )
    assert code == 0, err
    assert_analyzable(path)
    kinds = sorted(span.kind for _, _, span in receiver.spans())
    assert kinds == [Span.SPAN_KIND_INTERNAL, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_CLIENT]


async def test_a_file_that_cannot_be_attached_is_named_with_how_to_attach_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "telemetry.jsonl"
    code, out, err = await run_instrumented(
        {
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "RESILIENT_HTTP_TELEMETRY_FILE": str(path),
        },
        "--also-configure",
    )
    assert code == 0, err
    assert "status 200" in out
    assert not path.exists()
    warnings = [line for line in err.splitlines() if "ConfigWarning" in line]
    assert len(warnings) == 2, err
    traces, metrics = warnings
    for warning, signal, attach in (
        (traces, "TRACES", f"OTLPJsonFileSpanExporter('{path}')"),
        (metrics, "METRICS", f"OTLPJsonFileMetricExporter('{path}')"),
    ):
        assert f"not written to {path}" in warning
        assert f"OTEL_{signal}_EXPORTER=otlp,{NAME}" in warning
        assert f"RESILIENT_HTTP_TELEMETRY_FILE={path}" in warning
        assert f"resilient_http.telemetry.{attach}" in warning


async def test_configure_telemetry_takes_the_entry_point_name_too(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    """One environment serves opentelemetry-instrument and configure_telemetry() alike."""
    path = tmp_path / "telemetry.jsonl"
    code, out, err = await run_python(
        "-m",
        "tests.telemetry.scenario",
        cwd=ROOT,
        env=clean_environ(
            OTEL_TRACES_EXPORTER=f"otlp,{NAME}",
            OTEL_METRICS_EXPORTER=f"otlp,{NAME}",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
            RESILIENT_HTTP_TELEMETRY_FILE=str(path),
        ),
    )
    assert code == 0, err
    assert "flushed True" in out
    assert len(list(receiver.spans())) == 4
    assert analyze_paths([path]).spans == 4


def test_the_exporters_need_a_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for exporter in (
        rh.telemetry.OTLPJsonFileSpanExporter,
        rh.telemetry.OTLPJsonFileMetricExporter,
    ):
        with pytest.raises(rh.ConfigError, match="RESILIENT_HTTP_TELEMETRY_FILE is not set"):
            exporter()
    monkeypatch.setenv("RESILIENT_HTTP_TELEMETRY_FILE", str(tmp_path / "t.jsonl"))
    span_exporter = rh.telemetry.OTLPJsonFileSpanExporter()
    assert span_exporter.path == tmp_path / "t.jsonl"
    span_exporter.shutdown()


def test_configure_telemetry_needs_the_file_the_entry_point_name_asks_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", f"otlp,{NAME}")
    with pytest.raises(rh.ConfigError, match="OTEL_METRICS_EXPORTER='otlp,resilient_http_file'"):
        rh.configure_telemetry()
