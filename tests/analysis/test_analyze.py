"""End to end on files written by the real OpenTelemetry SDK: every reported figure has a known
answer (worked out in the comments), from traces and metrics together, each alone, cumulative or
delta, one process or several."""

from __future__ import annotations

import io
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from resilient_http.analysis import names
from resilient_http.analysis.analyze import NoTelemetryError, analyze_paths
from resilient_http.analysis.report import Analysis, render_text, to_json
from resilient_http.analysis.settings import Settings
from resilient_http.analysis.synthetic import write_synthetic_file
from tests.analysis.otlp_lines import (
    SECOND,
    T0,
    UPSTREAM,
    histogram_metric,
    histogram_point,
    metrics_request,
    number_point,
    span,
    sum_metric,
    traces_request,
    write_lines,
)
from tests.analysis.sdk_telemetry import Attempt, SdkTelemetry

GET_CALLS = 107  # 100 plain + 5 throttled-then-ok + 2 final 503
GET_ATTEMPTS = 112  # 100 + 5 * 2 + 2
POST_CALLS = 10
POST_ATTEMPTS = 20


def record_known_traffic(telemetry: SdkTelemetry, flush_between: bool = False) -> None:
    """The traffic every known answer below is worked out from."""
    telemetry.pool_limits(100, 10)
    for i in range(100):
        # Durations 10, 20 ... 100 ms (ten of each); the last ten waited 200 ms for the pool;
        # every other one reused a pooled connection.
        telemetry.call(
            [Attempt(0.01 * (i % 10 + 1), pool_wait=0.2 if i >= 90 else 0.0, reused=i % 2 == 0)]
        )
        if flush_between and i in (30, 60):
            telemetry.flush_metrics()
    telemetry.open_connections(active=10, idle=0)
    telemetry.flush_metrics()
    for _ in range(5):  # 429, a 0.5 s Retry-After wait, then 200: 520 ms in all
        telemetry.call([Attempt(0.01, status=429, retry="throttled", delay=0.5), Attempt(0.01)])
    for _ in range(2):  # a final 503: an error, and a throttled attempt
        telemetry.call([Attempt(0.05, status=503)])
    for _ in range(10):  # a stale pooled connection, retried at once on a new one
        telemetry.call(
            [
                Attempt(
                    0.02,
                    status=None,
                    error_type="ServerDisconnectedError",
                    retry="connection_closed",
                ),
                Attempt(0.03, reused=False),
            ],
            method="POST",
        )
    telemetry.open_connections(active=2, idle=7)
    telemetry.suppressed("budget", 3)
    telemetry.flush_metrics()


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Traces and metrics in separate files (as the Collector may write them)."""
    folder = tmp_path_factory.mktemp("known")
    started = time.time_ns()
    telemetry = SdkTelemetry(folder / "traces.jsonl", folder / "metrics.jsonl")
    record_known_traffic(telemetry, flush_between=True)
    telemetry.close()
    return {"folder": folder, "elapsed_s": (time.time_ns() - started) / 1e9}


def _analyze(*paths: Path) -> Analysis:
    return analyze_paths(paths, Settings())


def _rows(analysis: Analysis) -> dict[str | None, dict[str, Any]]:
    return {u["http.request.method"]: u for u in to_json(analysis)["upstreams"]}


def test_counts_and_shares_from_metrics_and_spans(known: dict[str, Any]) -> None:
    analysis = _analyze(known["folder"])
    document = to_json(analysis)
    assert document["files"] == 2
    assert document["corrupt_lines"] == 0
    get, post = _rows(analysis)["GET"], _rows(analysis)["POST"]
    assert (get["server.address"], get["server.port"]) == ("api.test", 8080)
    assert get["source"] == "metrics+spans"
    assert (get["requests"], get["attempts"]) == (GET_CALLS, GET_ATTEMPTS)
    assert (post["requests"], post["attempts"]) == (POST_CALLS, POST_ATTEMPTS)
    assert get["retries"] == {"throttled": 5}
    assert post["retries"] == {"connection_closed": 10}
    # Throttled attempts: 5 retried 429s + 2 final 503s, of 112 attempts.
    assert get["throttled_share"] == pytest.approx(7 / 112, abs=1e-4)
    assert post["throttled_share"] == 0.0
    # Errors: the two final 503s, of 107 calls.
    assert get["error_rate"] == pytest.approx(2 / 107, abs=1e-4)
    assert get["errors"] == 2
    assert get["error_types"] == {"503": 2}
    assert post["error_rate"] == 0.0
    assert get["attempt_chains"] == {"200": 100, "throttled > 200": 5, "503": 2}
    assert get["retries_suppressed"] == {"budget": 3}


def test_latency_percentiles_from_spans(known: dict[str, Any]) -> None:
    get, post = _rows(_analyze(known["folder"])).values()
    # Call latencies (107): 10..100 ms x10 (50 ms x12 with the two 503s), 520 ms x5. DDSketch
    # ranks q*(n-1): p50 = 53rd (0-based) -> 60 ms, p95 = 100th -> 100 ms, p99 = 104th -> 520.
    assert get["latency_ms"] == pytest.approx({"p50": 60, "p95": 100, "p99": 520}, rel=0.01)
    # Attempts (112): 10 ms x20, 20..40 ms x10, 50 ms x12, 60..100 ms x10.
    assert get["attempt_latency_ms"] == pytest.approx({"p50": 50, "p95": 100, "p99": 100}, rel=0.01)
    assert post["latency_ms"] == pytest.approx({"p50": 50, "p95": 50, "p99": 50}, rel=0.01)
    assert post["attempt_latency_ms"] == pytest.approx({"p50": 20, "p95": 30, "p99": 30}, rel=0.01)


def test_pool_figures(known: dict[str, Any]) -> None:
    analysis = _analyze(known["folder"])
    get = _rows(analysis)["GET"]
    # 132 acquisitions (one per attempt): 60 new (50 plain GETs + 10 POST retries), 72 reused.
    assert get["connections_acquired"] == 132
    assert get["new_connections"] == 60
    assert get["reuse_ratio"] == pytest.approx(72 / 132, abs=1e-4)
    # The SDK records only the 10 waits of 200 ms (min = max = 0.2); the other 122
    # acquisitions waited 0. p95 rank 0.95 * 132 = 125.4 > 122: among the waits, all 200 ms.
    assert get["pool_wait_ms"] == {"p50": 0.0, "p95": pytest.approx(200.0), "p99": 200.0}
    assert (get["pool_queued"], get["pool_queued_share"]) == (10, round(10 / 132, 4))
    assert get["pool_queued_wait_ms"] == pytest.approx({"p50": 200, "p95": 200, "p99": 200})
    peak = get["open_connections_peak"]
    assert (peak["active"], peak["idle"]) == (10.0, 7.0)
    assert peak["sampling_interval_s"] > 0  # from the times between the test's exports
    assert analysis.limits.limit == 100
    assert analysis.limits.limit_per_host == 10
    assert analysis.limits.active_total_peak == 10
    # The SDK stamps metrics with the wall clock: the window lies within the test's run time.
    host = analysis.hosts[0]
    assert host.window_s is not None
    assert 0 < host.window_s <= known["elapsed_s"]
    assert host.new_connections_per_s == pytest.approx(60 / host.window_s)


def test_metrics_alone_interpolate_histogram_buckets(known: dict[str, Any]) -> None:
    get, post = _rows(_analyze(known["folder"] / "metrics.jsonl")).values()
    assert get["source"] == "metrics"
    assert (get["requests"], get["attempts"], post["attempts"]) == (107, 112, 20)
    assert get["retries"] == {"throttled": 5}
    assert get["error_rate"] == pytest.approx(2 / 107, abs=1e-4)
    # Call durations by bucket (upper bounds in s): 0.01:10 (min 0.01: a point), 0.025:10,
    # 0.05:32, 0.075:20, 0.1:30, 0.75:5 (max 0.52). p50 target 53.5 -> 0.05 + 0.025*1.5/20;
    # p95 target 101.65 -> 0.075 + 0.025*29.65/30; p99 target 105.93 -> 0.5 + 0.02*3.93/5.
    assert get["latency_ms"] == pytest.approx(
        {
            "p50": 1000 * (0.05 + 0.025 * 1.5 / 20),
            "p95": 1000 * (0.075 + 0.025 * 29.65 / 30),
            "p99": 1000 * (0.5 + 0.02 * 3.93 / 5),
        },
        abs=1e-3,
    )
    # Attempts: 0.01:20, 0.025:10, 0.05:32, 0.075:20, 0.1:30 (max 0.1).
    assert get["attempt_latency_ms"] == pytest.approx(
        {
            "p50": 1000 * (0.025 + 0.025 * 26 / 32),
            "p95": 1000 * (0.075 + 0.025 * 24.4 / 30),
            "p99": 1000 * (0.075 + 0.025 * 28.88 / 30),
        },
        abs=1e-3,
    )
    assert get["attempt_chains"] == {}  # chains only come from spans


def test_traces_alone_estimate_counts(known: dict[str, Any]) -> None:
    get, post = _rows(_analyze(known["folder"] / "traces.jsonl")).values()
    assert get["source"] == "spans"
    assert (get["requests"], get["attempts"]) == (GET_CALLS, GET_ATTEMPTS)
    assert (post["requests"], post["attempts"]) == (POST_CALLS, POST_ATTEMPTS)
    assert get["retries"] == {"throttled": 5}
    assert get["throttled_share"] == pytest.approx(7 / 112, abs=1e-4)
    assert get["error_rate"] == pytest.approx(2 / 107, abs=1e-4)
    assert get["latency_ms"] == pytest.approx({"p50": 60, "p95": 100, "p99": 520}, rel=0.01)
    # No metrics: nothing is known about the pool.
    assert get["reuse_ratio"] is None
    assert get["new_connections_per_s"] is None
    assert get["pool_wait_ms"] == {"p95": None}


def test_delta_temporality_gives_the_same_counts(tmp_path: Path) -> None:
    telemetry = SdkTelemetry(None, tmp_path / "metrics.jsonl", delta=True)
    record_known_traffic(telemetry, flush_between=True)
    telemetry.close()
    get, post = _rows(_analyze(tmp_path)).values()
    assert (get["requests"], get["attempts"]) == (GET_CALLS, GET_ATTEMPTS)
    assert (post["requests"], post["attempts"]) == (POST_CALLS, POST_ATTEMPTS)
    assert get["retries"] == {"throttled": 5}
    assert get["connections_acquired"] == 132
    assert get["pool_wait_ms"]["p95"] == pytest.approx(200.0)
    assert get["retries_suppressed"] == {"budget": 3}


def test_several_processes_add_up(tmp_path: Path) -> None:
    # Two services (resources) export cumulative streams into one file: totals add.
    for service in ("a", "b"):
        telemetry = SdkTelemetry(None, tmp_path / "metrics.jsonl", service=service)
        record_known_traffic(telemetry)
        telemetry.close()
    get, _ = _rows(_analyze(tmp_path / "metrics.jsonl")).values()
    assert (get["requests"], get["attempts"]) == (2 * GET_CALLS, 2 * GET_ATTEMPTS)
    assert get["retries"] == {"throttled": 10}


def test_new_connections_per_second_from_metric_timestamps(tmp_path: Path) -> None:
    def acquired(new: int, reused: int, seconds: int) -> dict[str, Any]:
        points = [
            number_point({**UPSTREAM, names.REUSED: False}, new, T0, T0 + seconds * SECOND),
            number_point({**UPSTREAM, names.REUSED: True}, reused, T0, T0 + seconds * SECOND),
        ]
        return metrics_request([sum_metric(names.CONNECTIONS_ACQUIRED, points)])

    path = write_lines(tmp_path / "m.jsonl", [acquired(10, 20, 30), acquired(30, 90, 60)])
    (host,) = _analyze(path).hosts
    assert host.window_s == 60
    assert host.new_connections_per_s == 0.5  # 30 new connections in 60 s
    assert host.reuse_ratio == 0.75
    assert host.requests is None  # pool metrics alone say nothing about calls


def _pool_wait_line(waits: list[int], *, acquired: int | None, attempts: int) -> dict[str, Any]:
    """Waits per bucket of (-inf, 0.1], (0.1, 0.25], (0.25, inf) with no min/max, the
    acquisitions (None: not in the data) and the attempts (with two read timeouts)."""
    request = {**UPSTREAM, names.METHOD: "GET"}
    metrics = [
        histogram_metric(
            names.POOL_WAIT, [histogram_point(UPSTREAM, [0.1, 0.25], waits, T0, T0 + SECOND)]
        ),
        histogram_metric(
            names.ATTEMPT_DURATION,
            [
                histogram_point(
                    {**request, names.STATUS: 200}, [1.0], [attempts - 2, 0], T0, T0 + SECOND
                ),
                histogram_point(
                    {**request, names.ERROR_TYPE: "SocketTimeoutError"},
                    [1.0],
                    [2, 0],
                    T0,
                    T0 + SECOND,
                ),
            ],
        ),
    ]
    if acquired is not None:
        point = number_point({**UPSTREAM, names.REUSED: True}, acquired, T0, T0 + SECOND)
        metrics.append(sum_metric(names.CONNECTIONS_ACQUIRED, [point]))
    return metrics_request(metrics)


def test_pool_wait_is_over_all_acquisitions(tmp_path: Path) -> None:
    # 20 waits in (0.1, 0.25] recorded, of 200 acquisitions: 180 waited 0.
    line = _pool_wait_line([0, 20, 0], acquired=200, attempts=200)
    get = to_json(_analyze(write_lines(tmp_path / "m.jsonl", [line])))["upstreams"][0]
    # p95 rank 190: the 10th of the 20 waits -> 0.1 + 0.15 * 10/20; p99 rank 198 -> 18th.
    assert get["pool_wait_ms"] == pytest.approx({"p50": 0.0, "p95": 175.0, "p99": 235.0})
    assert (get["pool_queued"], get["pool_queued_share"]) == (20, 0.1)
    # Among the queued requests alone, p95 rank 19 of 20 -> 0.1 + 0.15 * 19/20.
    assert get["pool_queued_wait_ms"]["p95"] == pytest.approx(242.5)
    assert get["attempt_error_types"] == {"SocketTimeoutError": 2}


def test_pool_wait_without_the_acquisition_counter_uses_the_attempts(tmp_path: Path) -> None:
    # A collector that dropped resilient_http.connection.acquired: one acquisition per attempt.
    line = _pool_wait_line([0, 20, 0], acquired=None, attempts=200)
    get = to_json(_analyze(write_lines(tmp_path / "m.jsonl", [line])))["upstreams"][0]
    assert get["pool_wait_ms"]["p95"] == pytest.approx(175.0)


def test_no_recorded_wait_is_a_zero_wait(tmp_path: Path) -> None:
    # Acquisitions known, no request ever queued: 0 (not unknown).
    telemetry = SdkTelemetry(None, tmp_path / "metrics.jsonl")
    for _ in range(30):
        telemetry.call([Attempt(0.01)])
    telemetry.flush_metrics()
    telemetry.close()
    get = to_json(_analyze(tmp_path))["upstreams"][0]
    assert get["pool_wait_ms"] == {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    assert (get["pool_queued"], get["pool_queued_share"]) == (0, 0.0)
    assert get["pool_queued_wait_ms"] is None


def test_corrupt_lines_are_counted_and_the_rest_used(tmp_path: Path, known: dict[str, Any]) -> None:
    content = (known["folder"] / "metrics.jsonl").read_bytes()
    path = tmp_path / "damaged.jsonl"
    path.write_bytes(
        b"garbage\n[1, 2]\n" + content + b'{"resourceSpans": "nope"}\n' + content[:100]
    )
    analysis = _analyze(path)
    assert analysis.counts.corrupt_lines == 4
    assert _rows(analysis)["GET"]["requests"] == GET_CALLS


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.write_bytes(b""),
        lambda p: p.write_bytes(b"\n\n"),
        lambda p: p.write_bytes(b"not json\n"),
        lambda p: write_lines(p, [{"resourceLogs": []}]),
        lambda p: write_lines(p, [metrics_request([sum_metric("unrelated", [])])]),
    ],
    ids=["empty", "blank", "corrupt", "logs", "unrelated"],
)
def test_nothing_usable_is_an_error(tmp_path: Path, make: Callable[[Path], Any]) -> None:
    path = tmp_path / "t.jsonl"
    make(path)
    with pytest.raises(NoTelemetryError, match="no resilient_http spans or metrics found"):
        _analyze(path)


def test_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(NoTelemetryError, match=r"\(0 file\(s\)"):
        _analyze(tmp_path)


def test_attempt_spans_alone_estimate_calls(tmp_path: Path) -> None:
    # Only CLIENT spans (e.g. the aiohttp instrumentation's): first attempts are the calls.
    request = {**UPSTREAM, names.METHOD: "GET"}
    spans = [
        span(3, {**request, names.STATUS: 503}, T0, T0 + SECOND // 10),
        span(3, {**request, names.STATUS: 200, names.RESEND_COUNT: 1}, T0, T0 + SECOND // 5),
        span(3, {**request, names.STATUS: 200}, T0, T0 + SECOND // 10),
    ]
    path = write_lines(tmp_path / "t.jsonl", [traces_request(spans, scope=names.AIOHTTP_SCOPE)])
    (row,) = to_json(_analyze(path))["upstreams"]
    assert (row["requests"], row["attempts"]) == (2, 3)
    assert row["retries"] == {"unknown": 1}
    assert row["throttled_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert row["error_rate"] is None  # the final outcome of a call is not known
    assert row["attempt_latency_ms"]["p50"] == pytest.approx(100, rel=0.01)
    assert row["latency_ms"] == {"p50": None, "p95": None, "p99": None}


def test_retries_without_a_method_count_for_the_host(tmp_path: Path) -> None:
    duration = histogram_point(
        {**UPSTREAM, names.METHOD: "GET", names.STATUS: 200}, [1.0], [10, 0], T0, T0 + SECOND
    )
    retries = number_point({**UPSTREAM, names.RETRY_REASON: "timeout"}, 4, T0, T0 + SECOND)
    line = metrics_request(
        [
            histogram_metric(names.CALL_DURATION, [duration]),
            sum_metric(names.RETRIES, [retries]),
        ]
    )
    analysis = _analyze(write_lines(tmp_path / "m.jsonl", [line]))
    (row,) = analysis.upstreams
    assert (row.method, row.requests, row.retries) == ("GET", 10, {})
    (host,) = analysis.hosts
    assert (host.requests, host.attempts, host.retries) == (10, 14, {"timeout": 4})


class _Probe:
    """Rides in a decoded line: alive exactly as long as the line's decoded value."""


def test_one_decoded_line_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Reading is faster when a line's tree is freed before the next line is decoded (the new
    # tree reuses its memory): neither the reader nor the analysis loop may hold on to it.
    path = tmp_path / "t.jsonl"
    write_synthetic_file(path, spans=2_000, seed=1, batch_size=500)
    with path.open("ab") as out:
        out.write(b"[1]\n" + path.read_bytes().splitlines()[0] + b"\n")  # not a dict, then one
    loads = orjson.loads
    probes: list[weakref.ref[_Probe]] = []
    alive_at_decode: list[int] = []

    def probed_loads(line: bytes) -> Any:
        alive_at_decode.append(sum(probe() is not None for probe in probes))
        value = loads(line)
        probe = _Probe()
        probes.append(weakref.ref(probe))
        if isinstance(value, dict):
            value["probe"] = probe
        else:
            value.append(probe)
        return value

    monkeypatch.setattr(orjson, "loads", probed_loads)
    analysis = analyze_paths([path], jobs=1)

    assert alive_at_decode == [0] * 6
    assert analysis.spans == 2_500
    assert analysis.counts.corrupt_lines == 1


def test_cancelled_calls_are_interrupted_not_errors(tmp_path: Path) -> None:
    traces, metrics = tmp_path / "traces.jsonl", tmp_path / "metrics.jsonl"
    telemetry = SdkTelemetry(traces, metrics)
    for _ in range(3):
        telemetry.call([Attempt(0.01)])
    for _ in range(2):  # cut short by the application (the SDK records asyncio's CancelledError)
        telemetry.call([Attempt(0.01, status=None, error_type="CancelledError")])
    telemetry.call([Attempt(0.01, status=None, error_type="ServerDisconnectedError")])
    telemetry.flush_metrics()
    telemetry.close()
    for paths in ((traces, metrics), (traces,), (metrics,)):
        (row,) = to_json(_analyze(*paths))["upstreams"]
        assert (row["requests"], row["errors"], row["interrupted"]) == (6, 1, 2), paths
        assert row["error_rate"] == pytest.approx(1 / 6, abs=1e-4)
        if traces in paths:
            assert row["error_types"] == {"ServerDisconnectedError": 1}
    text = io.StringIO()
    render_text(_analyze(traces, metrics), Console(file=text, width=120))
    assert "api.test:8080 GET: 2 calls interrupted (cancelled by the application" in text.getvalue()


def _ten_calls_two_retries() -> dict[str, Any]:
    """Ten GET calls and two retries on timeouts: the figures a malformed later line keeps."""
    request = {**UPSTREAM, names.METHOD: "GET", names.STATUS: 200}
    duration = histogram_point(request, [1.0], [10, 0], T0, T0 + SECOND)
    retries = number_point({**UPSTREAM, names.RETRY_REASON: "timeout"}, 2, T0, T0 + SECOND)
    return metrics_request(
        [histogram_metric(names.CALL_DURATION, [duration]), sum_metric(names.RETRIES, [retries])]
    )


def _later_retries(**value: Any) -> dict[str, Any]:
    point = number_point({**UPSTREAM, names.RETRY_REASON: "timeout"}, 0, T0, T0 + 2 * SECOND)
    del point["asInt"]
    return metrics_request([sum_metric(names.RETRIES, [{**point, **value}])])


def _new_upstream(**value: Any) -> dict[str, Any]:
    other = {names.ADDRESS: "other.test", names.PORT: 8080, names.REUSED: True}
    point = {**number_point(other, 0, T0, T0 + SECOND), **value}
    del point["asInt"]
    return metrics_request([sum_metric(names.CONNECTIONS_ACQUIRED, [point])])


def _later_calls(**changes: Any) -> dict[str, Any]:
    request = {**UPSTREAM, names.METHOD: "GET", names.STATUS: 200}
    point = histogram_point(request, [1.0], [30, 0], T0, T0 + 2 * SECOND)
    return metrics_request([histogram_metric(names.CALL_DURATION, [{**point, **changes}])])


@pytest.mark.parametrize(
    "line",
    [
        _later_retries(asInt=1.7e308),  # no 64-bit integer
        _later_retries(asInt=str(2**64)),
        _later_retries(asDouble="NaN"),  # OTLP/JSON's spelling of non-finite doubles
        _later_retries(asDouble="Infinity"),
        _later_retries(asDouble=1e300),  # finite, but 1e300 s in ns would be infinite
        _new_upstream(asDouble="NaN"),  # leaves no stream (no upstream) behind
        _later_calls(min=1e308, max=1e308),
        _later_calls(bucketCounts=["-1", "31"]),
        traces_request(
            [span(3, {**UPSTREAM, names.METHOD: "GET"}, T0, int("1" + "0" * 400))]
        ),  # a time no float holds
    ],
    ids=[
        "asInt-1.7e308",
        "asInt-2**64",
        "asDouble-NaN",
        "asDouble-Infinity",
        "asDouble-1e300",
        "new-upstream-NaN",
        "max-1e308",
        "negative-count",
        "span-end-1e400",
    ],
)
def test_a_value_no_measurement_can_have_makes_its_line_corrupt(
    tmp_path: Path, line: dict[str, Any]
) -> None:
    path = write_lines(tmp_path / "m.jsonl", [_ten_calls_two_retries(), line])
    analysis = _analyze(path)
    assert analysis.counts.corrupt_lines == 1
    (row,) = analysis.upstreams
    (host,) = analysis.hosts
    assert (row.requests, host.attempts, host.retries) == (10, 12, {"timeout": 2})
