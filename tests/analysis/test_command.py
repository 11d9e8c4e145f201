"""``resilient-http analyze``: arguments, the --json document, text, HTML, exit codes."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from resilient_http.analysis import names
from resilient_http.analysis.command import add_arguments, main, run
from tests.analysis.otlp_lines import (
    SECOND,
    T0,
    UPSTREAM,
    histogram_metric,
    histogram_point,
    metrics_request,
    number_point,
    sum_metric,
    write_lines,
)
from tests.analysis.sdk_telemetry import Attempt, SdkTelemetry, idle_timeout_calls
from tests.analysis.test_report import strict_json

UPSTREAM_KEYS = {
    "server.address",
    "server.port",
    "http.request.method",
    "requests",
    "attempts",
    "latency_ms",
    "attempt_latency_ms",
    "pool_wait_ms",
    "reuse_ratio",
    "new_connections_per_s",
    "retries",
    "throttled_share",
    "error_rate",
}
# Additions to the SPEC's keys (documented in report.py).
EXTRA_UPSTREAM_KEYS = {"pool_queued", "pool_queued_share", "pool_queued_wait_ms"}
RECOMMENDATION_KEYS = {"variable", "value", "reason", "evidence"}


@pytest.fixture(scope="module")
def telemetry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of SDK telemetry with a stale keep-alive problem (one recommendation)."""
    folder = tmp_path_factory.mktemp("telemetry")
    telemetry = SdkTelemetry(folder / "traces.jsonl", folder / "nested" / "metrics.jsonl")
    telemetry.pool_limits(100, 10)
    idle_timeout_calls(telemetry, method="POST")
    telemetry.flush_metrics()
    telemetry.close()
    return folder


@pytest.fixture(scope="module")
def healthy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("healthy")
    telemetry = SdkTelemetry(folder / "traces.jsonl", folder / "metrics.jsonl")
    for _ in range(50):
        telemetry.call([Attempt(0.02)])
    telemetry.flush_metrics()
    telemetry.close()
    return folder


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_json_document_has_the_spec_keys(
    telemetry_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(_parse(str(telemetry_dir), "--json")) == 0
    document = json.loads(capsys.readouterr().out)
    assert {"files", "lines", "corrupt_lines", "upstreams", "recommendations"} <= set(document)
    assert document["files"] == 2
    files = [telemetry_dir / "traces.jsonl", telemetry_dir / "nested" / "metrics.jsonl"]
    assert document["lines"] == sum(len(f.read_bytes().splitlines()) for f in files)
    assert document["lines"] > 140  # one line per span (SimpleSpanProcessor) + metric lines
    assert document["corrupt_lines"] == 0
    rows = {u["http.request.method"]: u for u in document["upstreams"]}
    assert set(rows) == {"GET", "POST"}
    for row in rows.values():
        assert set(row) >= UPSTREAM_KEYS | EXTRA_UPSTREAM_KEYS
        assert set(row["latency_ms"]) == {"p50", "p95", "p99"}
        assert set(row["attempt_latency_ms"]) == {"p50", "p95", "p99"}
        assert "p95" in row["pool_wait_ms"]
    assert (rows["GET"]["requests"], rows["GET"]["attempts"]) == (20, 40)
    assert rows["GET"]["retries"] == {"connection_closed": 20}
    (recommendation,) = document["recommendations"]
    assert set(recommendation) >= RECOMMENDATION_KEYS
    assert recommendation["variable"] == "RESILIENT_HTTP_KEEPALIVE_TIMEOUT"
    assert (recommendation["value"], recommendation["current"]) == ("3.3", "15")
    assert "stale only on connections idle >= 4.2 s" in recommendation["evidence"]
    assert "0 of 40 reuses idle up to 1.95 s failed" in recommendation["evidence"]
    assert recommendation["expect"] == {
        "figure": "retries.connection_closed",
        "direction": "down",
        "upstream": "api.test:8080",
    }


def test_text_report(telemetry_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_parse(str(telemetry_dir))) == 0
    out = capsys.readouterr().out
    assert "api.test:8080 GET" in out
    assert "RESILIENT_HTTP_KEEPALIVE_TIMEOUT=3.3" in out
    assert "connection_closed" in out


def test_healthy_data_says_no_change_needed(
    healthy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(_parse(str(healthy_dir))) == 0
    assert "no change needed" in capsys.readouterr().out
    assert run(_parse(str(healthy_dir), "--json")) == 0
    assert json.loads(capsys.readouterr().out)["recommendations"] == []


def test_html_report(
    telemetry_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "report.html"
    assert run(_parse(str(telemetry_dir), "--json", "--html", str(page))) == 0
    json.loads(capsys.readouterr().out)  # stdout stays pure JSON
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "RESILIENT_HTTP_KEEPALIVE_TIMEOUT=3.3" in html


@pytest.mark.parametrize("kind", ["missing", "empty", "empty-dir"])
def test_errors_are_one_line_and_exit_1(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "target.jsonl"
    if kind == "empty":
        target.write_bytes(b"")
    elif kind == "empty-dir":
        target = tmp_path
    assert main([str(target)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("resilient-http analyze: error: ")
    assert str(target) in lines[0]


def test_jobs_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse("x.jsonl", "--jobs", "0")
    assert exit_info.value.code == 2
    assert "expected a whole number >= 1" in capsys.readouterr().err
    assert _parse("x.jsonl", "--jobs", "2").jobs == 2


def test_runs_as_a_module_in_a_subprocess(telemetry_dir: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "resilient_http.analysis",
            str(telemetry_dir),
            "--json",
            "--jobs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["recommendations"][0]["value"] == "3.3"

    missing = subprocess.run(
        [sys.executable, "-m", "resilient_http.analysis", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.count("\n") == 1
    assert "Traceback" not in missing.stderr


def analyze_json(*args: str, stdin: bytes | None = None) -> dict[str, Any]:
    """``resilient-http analyze --json ARGS`` in a subprocess, ``stdin`` its standard input."""
    done = subprocess.run(
        [sys.executable, "-m", "resilient_http", "analyze", "--json", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, b"")
    document: dict[str, Any] = strict_json(done.stdout.decode())
    return document


def _same_report(piped: dict[str, Any], named: dict[str, Any], files: int) -> None:
    assert (piped["files"], piped["lines"], piped["corrupt_lines"]) == (
        files,
        named["lines"],
        0,
    )
    assert piped["upstreams"] == named["upstreams"]
    assert piped["recommendations"] == named["recommendations"]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("path", ["-", "/dev/stdin"])
def test_standard_input_is_read_like_a_file(telemetry_dir: Path, path: str, compress: bool) -> None:
    # `cat traces metrics | resilient-http analyze -`: a pipe, read whole, plain or gzip.
    files = (telemetry_dir / "traces.jsonl", telemetry_dir / "nested" / "metrics.jsonl")
    content = b"".join(f.read_bytes() for f in files)
    piped = analyze_json(path, stdin=gzip.compress(content) if compress else content)
    _same_report(piped, analyze_json(str(telemetry_dir)), files=1)


def test_a_pipe_among_files_is_read_by_this_process_with_jobs(telemetry_dir: Path) -> None:
    # With --jobs the files go to other processes; the pipe can only be read by this one.
    metrics = telemetry_dir / "nested" / "metrics.jsonl"
    traces = telemetry_dir / "traces.jsonl"
    piped = analyze_json("--jobs", "2", "-", str(metrics), stdin=traces.read_bytes())
    _same_report(piped, analyze_json(str(telemetry_dir)), files=2)


def test_a_fifo_is_read_like_a_file(telemetry_dir: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "telemetry.fifo"
    os.mkfifo(fifo)
    content = (telemetry_dir / "nested" / "metrics.jsonl").read_bytes()

    def write() -> None:
        with fifo.open("wb") as out:  # waits for the reader to open the FIFO
            out.write(gzip.compress(content))

    # A daemon: should the reader never open the FIFO, the writer does not hold up pytest.
    threading.Thread(target=write, daemon=True).start()
    piped = analyze_json(str(fifo))
    named = analyze_json(str(telemetry_dir / "nested" / "metrics.jsonl"))
    _same_report(piped, named, files=1)


@pytest.mark.skipif(sys.platform != "linux", reason="the reset of a Unix socket is Linux's")
def test_a_read_error_is_one_line_naming_the_input() -> None:
    # Standard input is a socket whose peer closes with unread data: Linux hands the reader
    # ECONNRESET after the lines already sent.
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"unread by its peer")
        ours.sendall(b'{"resourceSpans": []}\n' * 10)
        ours.close()
        done = subprocess.run(
            [sys.executable, "-m", "resilient_http", "analyze", "-"],
            stdin=theirs.fileno(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "resilient-http analyze: error: cannot read -: Connection reset by peer\n"


def _calls(**histogram: Any) -> dict[str, Any]:
    request = {**UPSTREAM, names.METHOD: "GET", names.STATUS: 200}
    point = histogram_point(request, [1.0], [10, 0], T0, T0 + SECOND, **histogram)
    return metrics_request([histogram_metric(names.CALL_DURATION, [point])])


def _retries_and_acquisitions(count: float) -> dict[str, Any]:
    """Two retry reasons and two kinds of acquisition, ``count`` each (asInt)."""
    retries = [
        number_point({**UPSTREAM, names.RETRY_REASON: reason}, 0, T0, T0 + SECOND)
        for reason in ("timeout", "throttled")
    ]
    acquired = [
        number_point({**UPSTREAM, names.REUSED: reused}, 0, T0, T0 + SECOND)
        for reused in (True, False)
    ]
    for point in retries + acquired:
        point["asInt"] = count
    return metrics_request(
        [sum_metric(names.RETRIES, retries), sum_metric(names.CONNECTIONS_ACQUIRED, acquired)]
    )


@pytest.mark.parametrize(
    "bad",
    [_calls(minimum=1e308, maximum=1e308), _retries_and_acquisitions(1.7e308)],
    ids=["histogram-max-1e308", "asInt-1.7e308"],
)
def test_a_number_beyond_any_measurement_is_a_corrupt_line_in_json_and_text(
    tmp_path: Path, bad: dict[str, Any]
) -> None:
    path = write_lines(tmp_path / "m.jsonl", [_calls(), bad])
    document = analyze_json(str(path))  # JSON proper: no Infinity
    assert (document["lines"], document["corrupt_lines"]) == (2, 1)
    assert document["upstreams"][0]["latency_ms"]["p50"] == 500.0

    text = subprocess.run(
        [sys.executable, "-m", "resilient_http", "analyze", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (text.returncode, text.stderr) == (0, "")
    assert text.stdout.startswith("Read 1 file(s), 2 line(s), 1 corrupt (skipped)")
