"""TelemetryHandle: a process exits promptly after shutting telemetry down, or without doing so.

Each test runs a service (tests/telemetry/scenario.py) in a subprocess with the OTLP endpoint
on a port that refuses connections, or that accepts them and never answers, and otherwise the
default OTEL settings (10 s export timeout, whose retries once kept the process alive for 12 s).
The time from the service's last line to the end of its process is what a user waits for.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from resilient_http.telemetry.export_failures import QuietSpanExporter
from resilient_http.telemetry.handle import TelemetryHandle
from resilient_http.upstream import down_url
from tests.helpers import SAFETY_NET_SECONDS, clean_environ
from tests.otlp_receiver import OTLPReceiver

ROOT = Path(__file__).resolve().parents[2]
# The bound: exit within a second of aclose() returning (or of the last line).
EXIT_BOUND_SECONDS = 1.0
CLOSE = ("--shutdown-timeout", "1")  # marker line: "flushed ..."
NEVER_CLOSE = ("--never-close",)  # marker line: "exiting"


async def run_until_exit(endpoint: str, *args: str) -> tuple[float, str, str]:
    """Run the scenario; (seconds from its last stdout line to its exit, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.telemetry.scenario",
        *args,
        cwd=ROOT,
        env=clean_environ(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    stderr = asyncio.ensure_future(process.stderr.read())
    lines: list[str] = []
    last_line_at = time.monotonic()
    async with asyncio.timeout(SAFETY_NET_SECONDS * 6):  # the old exit took 12 s
        async for raw in process.stdout:
            last_line_at = time.monotonic()
            lines.append(raw.decode())
        await process.wait()
        exited_at = time.monotonic()
        err = (await stderr).decode()
    assert process.returncode == 0, err
    return exited_at - last_line_at, "".join(lines), err


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(("WARNING", "ERROR"))]


@pytest.fixture
def silent_collector() -> Iterator[str]:
    """An endpoint that accepts connections and never answers (requests wait for a timeout)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # the kernel completes connections; nobody ever reads them
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("args", [CLOSE, NEVER_CLOSE], ids=["aclose", "never-closed"])
async def test_exit_is_prompt_and_quiet_with_the_collector_down(args: tuple[str, ...]) -> None:
    waited, out, err = await run_until_exit(down_url(), *args)
    assert waited < EXIT_BOUND_SECONDS, (waited, err)
    assert "status 200" in out
    if args == CLOSE:
        assert "flushed False" in out  # the collector is down: the last batch is lost
    # One warning per signal, as during the run: none of the exporters' retry lines, and no
    # second shutdown of the SDK's providers at exit.
    assert "Transient error" not in err
    assert "retry" not in err
    assert "called once" not in err
    assert sorted(warnings_of(err)) == [
        "WARNING resilient_http exporting metrics with OTLPMetricExporter failed (1 batch(es) "
        "since the last warning); requests are unaffected",
        "WARNING resilient_http exporting spans with OTLPSpanExporter failed (1 batch(es) "
        "since the last warning); requests are unaffected",
    ], err


async def test_exit_is_prompt_when_the_collector_never_answers(silent_collector: str) -> None:
    waited, out, err = await run_until_exit(silent_collector, *CLOSE)
    assert waited < EXIT_BOUND_SECONDS, (waited, err)
    assert "flushed False" in out
    # The exports still wait on their sockets: the handle says so once and leaves them behind.
    assert warnings_of(err) == [
        "WARNING resilient_http telemetry was not flushed within 1.0 s; some of it may be lost"
    ], err


async def test_telemetry_never_closed_is_flushed_at_exit(receiver: OTLPReceiver) -> None:
    waited, out, err = await run_until_exit(receiver.url, *NEVER_CLOSE)
    assert waited < EXIT_BOUND_SECONDS, (waited, err)
    assert "exiting" in out
    assert err == ""
    kinds = sorted(span.kind for _, _, span in receiver.spans())
    assert kinds == [Span.SPAN_KIND_INTERNAL] + [Span.SPAN_KIND_CLIENT] * 3
    assert receiver.metric_points("resilient_http.retries")


class StuckExporter(SpanExporter):
    """An exporter whose export and shutdown both wait until the test releases them."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exporting = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exporting.set()
        self.release.wait()
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.release.wait()


def test_shutdown_returns_even_when_the_exporter_cannot_be_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stuck = StuckExporter()
    quiet = QuietSpanExporter(stuck, interval=60)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(quiet))
    handle = TelemetryHandle(provider, None, None, None, cut_offs=[quiet])
    provider.get_tracer("t").start_span("s").end()
    results: list[bool] = []
    caller = threading.Thread(target=lambda: results.append(handle.shutdown(timeout=0.1)))
    try:
        caller.start()
        caller.join(SAFETY_NET_SECONDS)
        assert results == [False]  # returned (a safety net, not a bound), and said so
        assert stuck.exporting.is_set()
    finally:
        stuck.release.set()
    assert "telemetry was not flushed within 0.1 s" in caplog.text
