"""The synthetic trace generator (used by the benchmark) and parallel reading, checked against
the generator's ground truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from resilient_http.analysis import analyze as analyze_module
from resilient_http.analysis.analyze import analyze_paths
from resilient_http.analysis.report import to_json
from resilient_http.analysis.settings import Settings
from resilient_http.analysis.synthetic import SyntheticTruth, write_synthetic_file
from tests.analysis.sdk_telemetry import Attempt, SdkTelemetry


def _check_against_truth(path: Path, truth: SyntheticTruth, scale: float = 1.0) -> None:
    analysis = analyze_paths([path], Settings(), jobs=1)
    assert analysis.spans == truth.spans
    assert analysis.counts.lines == truth.lines
    rows = {(u.address, u.port, u.method): u for u in analysis.upstreams}
    assert set(rows) == set(truth.upstreams)
    for key, expected in truth.upstreams.items():
        row = rows[key]
        assert row.source == "spans"
        assert row.requests == pytest.approx(expected.calls * scale)
        assert row.attempts == pytest.approx(expected.attempts * scale)
        assert row.errors == pytest.approx(expected.errors * scale)
        assert row.retries == pytest.approx({r: n * scale for r, n in expected.retries.items()})
        assert row.throttled_share == pytest.approx(expected.throttled_attempts / expected.attempts)


def test_exact_span_count_deterministic_output_and_truth(tmp_path: Path) -> None:
    first = write_synthetic_file(tmp_path / "a.jsonl", spans=5_001, seed=3)
    second = write_synthetic_file(tmp_path / "b.jsonl", spans=5_001, seed=3)
    assert first.spans == 5_001
    assert first.lines == 10  # batches of 512
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert first == second
    _check_against_truth(tmp_path / "a.jsonl", first)


def test_sampled_spans_scale_the_estimates(tmp_path: Path) -> None:
    truth = write_synthetic_file(tmp_path / "s.jsonl", spans=2_000, seed=5, trace_state="ot=th:c")
    _check_against_truth(tmp_path / "s.jsonl", truth, scale=4.0)  # a 25 % sample
    rows = analyze_paths([tmp_path], Settings()).upstreams
    assert all(row.sampled for row in rows)


def test_gzip_output(tmp_path: Path) -> None:
    truth = write_synthetic_file(tmp_path / "g.jsonl.gz", spans=1_500, seed=1, compress=True)
    _check_against_truth(tmp_path / "g.jsonl.gz", truth)


@pytest.fixture
def small_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut even small files into many byte ranges, so the parallel path runs in a test."""
    monkeypatch.setattr(analyze_module, "MIN_RANGE_BYTES", 512)
    monkeypatch.setattr(analyze_module, "RANGES_PER_JOB", 100)


@pytest.mark.usefixtures("small_ranges")
def test_parallel_reading_matches_one_process(tmp_path: Path) -> None:
    write_synthetic_file(tmp_path / "traces.jsonl", spans=3_000, seed=9)
    write_synthetic_file(tmp_path / "more.jsonl.gz", spans=700, seed=10, compress=True)
    telemetry = SdkTelemetry(None, tmp_path / "metrics.jsonl")
    for i in range(40):  # cumulative metric lines spread over several ranges
        telemetry.call([Attempt(0.01 * (i % 5 + 1))], address="search.internal", port=9200)
        telemetry.flush_metrics()
    telemetry.close()
    tasks = analyze_module._tasks(sorted(tmp_path.iterdir()), 2)
    assert sum(1 for path, _, _ in tasks if path.name == "metrics.jsonl") > 5

    one = to_json(analyze_paths([tmp_path], Settings(), jobs=1))
    two = to_json(analyze_paths([tmp_path], Settings(), jobs=2))

    assert one == two
    (search,) = [u for u in one["upstreams"] if u["server.address"] == "search.internal"]
    # Spans (synthetic) and metrics (40 calls) for one upstream: metrics give the counts.
    assert search["source"] == "metrics+spans"
    assert search["requests"] == 40
