"""The report's rendering of figures that are not finite numbers (e.g. an overflowed product,
or a Prometheus sample of NaN): unknown, never ``Infinity`` in JSON or a crash in text."""

from __future__ import annotations

import io
import json
import math
from typing import Any

from rich.console import Console

from resilient_http.analysis.model import PoolLimits, UpstreamReport
from resilient_http.analysis.reader import ReadCounts
from resilient_http.analysis.report import Analysis, render_text, to_json, write_json


def strict_json(text: str) -> Any:
    """``text`` parsed as JSON proper: ``NaN`` and ``Infinity`` are not JSON."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_write_json_writes_non_finite_numbers_as_null() -> None:
    out = io.StringIO()
    write_json({"a": math.inf, "b": [-math.inf, (math.nan, 1.5)], "c": {"d": 2}}, out)
    assert out.getvalue().endswith("}\n")
    assert strict_json(out.getvalue()) == {"a": None, "b": [None, [None, 1.5]], "c": {"d": 2}}


def test_figures_that_are_not_finite_are_unknown() -> None:
    upstream = UpstreamReport(
        "api.test",
        8080,
        "GET",
        "metrics",
        requests=math.inf,
        attempts=math.inf,
        latency_ms={"p50": math.inf, "p95": math.nan, "p99": 1.0},
        reuse_ratio=math.nan,
        error_rate=math.inf,
        retries={"timeout": math.inf},
    )
    analysis = Analysis(ReadCounts(), [upstream], [upstream], PoolLimits(), [])

    text = io.StringIO()
    render_text(analysis, Console(file=text, width=120))
    assert "inf" not in text.getvalue()
    assert "nan" not in text.getvalue()

    out = io.StringIO()
    write_json(to_json(analysis), out)
    (row,) = strict_json(out.getvalue())["upstreams"]
    assert (row["requests"], row["attempts"], row["reuse_ratio"]) == (None, None, None)
    assert row["latency_ms"] == {"p50": None, "p95": None, "p99": 1.0}
    assert (row["error_rate"], row["retries"]) == (None, {"timeout": None})
