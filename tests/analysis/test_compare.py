"""``resilient-http compare BEFORE AFTER``: figures side by side, each ``expect`` checked."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from resilient_http.analysis.compare import add_arguments, figure_value, run
from tests.analysis.sdk_telemetry import SdkTelemetry, idle_timeout_calls


def _record(folder: Path, *, stale: bool, address: str = "api.test") -> Path:
    telemetry = SdkTelemetry(folder / "traces.jsonl", folder / "metrics.jsonl")
    telemetry.pool_limits(100, 10)
    idle_timeout_calls(telemetry, stale=stale, address=address)
    telemetry.flush_metrics()
    telemetry.close()
    return folder


def _compare(before: Path, after: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args([str(before), str(after), *flags])) == 0
    return capsys.readouterr().out


def test_applied_advice_is_checked_against_its_expect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _record(tmp_path / "before", stale=True)
    after = _record(tmp_path / "after", stale=False)
    document = json.loads(_compare(before, after, capsys, "--json"))
    (pair,) = document["upstreams"]
    assert (pair["upstream"], pair["paired_by_position"]) == ("api.test:8080", False)
    assert pair["figures"]["retries.connection_closed"] == {"before": 20.0, "after": 0.0}
    assert pair["figures"]["requests"] == {"before": 60.0, "after": 60.0}
    (check,) = document["recommendations"]
    assert (check["variable"], check["value"]) == ("RESILIENT_HTTP_KEEPALIVE_TIMEOUT", "3.3")
    assert check["expect"] == {
        "figure": "retries.connection_closed",
        "direction": "down",
        "upstream": "api.test:8080",
    }
    assert (check["before"], check["after"], check["change"], check["moved"]) == (
        20.0,
        0.0,
        -1.0,
        True,
    )
    # The other way round, nothing was advised on the healthy side: nothing to check.
    backwards = json.loads(_compare(after, before, capsys, "--json"))
    assert backwards["recommendations"] == []
    # Text: the verdict in words.
    text = _compare(before, after, capsys)
    assert "retries.connection_closed should go down: 20 -> 0 (-100 %); moved the" in text


def test_advice_that_did_not_help_says_no(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _record(tmp_path / "before", stale=True)
    again = _record(tmp_path / "again", stale=True)
    (check,) = json.loads(_compare(before, again, capsys, "--json"))["recommendations"]
    assert (check["change"], check["moved"]) == (0.0, False)


def test_single_upstreams_under_different_names_are_paired(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The demo starts its upstream on a new port each run.
    before = _record(tmp_path / "before", stale=True)
    after = _record(tmp_path / "after", stale=False, address="other.test")
    document = json.loads(_compare(before, after, capsys, "--json"))
    (pair,) = document["upstreams"]
    assert (pair["upstream"], pair["paired_by_position"]) == (
        "api.test:8080 -> other.test:8080",
        True,
    )
    assert document["recommendations"][0]["moved"] is True


def test_a_missing_path_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args([str(tmp_path / "nope"), str(tmp_path)])) == 1
    err = capsys.readouterr().err
    assert err.startswith("resilient-http compare: error:")
    assert err.count("\n") == 1


def test_figure_paths() -> None:
    row = {"pool_wait_ms": {"p95": 12.5}, "retries": {"throttled": 3}, "reuse_ratio": None}
    assert figure_value(row, "pool_wait_ms.p95") == 12.5
    assert figure_value(row, "retries.throttled") == 3.0
    assert figure_value(row, "retries.connection_closed") == 0.0  # no such retry: 0
    assert figure_value(row, "reuse_ratio") is None
    assert figure_value(row, "latency_ms.p95") is None
    assert figure_value(None, "requests") is None
