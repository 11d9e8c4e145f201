"""``resilient-http compare BEFORE AFTER [--json]``: did applied advice do what it promised?

Both sides are analysed as ``resilient-http analyze`` analyses them (each a path, file or
folder). Per upstream the headline figures stand side by side, and each recommendation made on
BEFORE that carries an ``expect`` is checked on AFTER: did its figure (a path in the ``--json``
upstream object, e.g. ``pool_wait_ms.p95``) move the promised way? A recommendation that keeps a
value promises nothing and is listed as such.

Upstreams are paired by ``host:port``; when each side has exactly one upstream under different
names (the demo starts its upstream on a new port each run) the two are paired, and the
document says so. Errors are one line on stderr and exit status 1, as for ``analyze``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on use: building the parser must not need the cli extra
    from rich.console import Console

    from resilient_http.analysis.model import UpstreamReport
    from resilient_http.analysis.report import Analysis

__all__ = [
    "FIGURES",
    "Comparison",
    "ExpectCheck",
    "UpstreamPair",
    "add_arguments",
    "compare_analyses",
    "figure_value",
    "run",
]

PROG = "resilient-http compare"

#: The figures shown side by side (paths in the --json upstream object).
FIGURES = (
    "requests",
    "attempts",
    "latency_ms.p50",
    "latency_ms.p95",
    "latency_ms.p99",
    "pool_wait_ms.p95",
    "pool_queued_share",
    "reuse_ratio",
    "new_connections_per_s",
    "throttled_share",
    "error_rate",
    "retries.connection_closed",
    "retries.throttled",
)


@dataclass(frozen=True)
class UpstreamPair:
    """One upstream on both sides (None: absent on that side)."""

    name: str
    before: UpstreamReport | None
    after: UpstreamReport | None
    paired_by_position: bool = False

    def figures(self) -> dict[str, tuple[float | None, float | None]]:
        """``FIGURES`` before and after."""
        before, after = _documents(self)
        return {path: (figure_value(before, path), figure_value(after, path)) for path in FIGURES}


@dataclass(frozen=True)
class ExpectCheck:
    """A recommendation of BEFORE and what its ``expect`` figure did on AFTER."""

    rule: str
    variable: str
    value: str
    figure: str | None
    direction: str | None
    upstream: str | None
    before: float | None
    after: float | None

    @property
    def change(self) -> float | None:
        """(after - before) / before; None when unknown or before is 0."""
        if self.before is None or self.after is None or self.before == 0:
            return None
        return (self.after - self.before) / self.before

    @property
    def moved(self) -> bool | None:
        """Whether the figure moved the promised way (None: no promise, or a side unknown)."""
        if self.direction is None or self.before is None or self.after is None:
            return None
        return self.after < self.before if self.direction == "down" else self.after > self.before


@dataclass(frozen=True)
class Comparison:
    """BEFORE and AFTER side by side."""

    before: Analysis
    after: Analysis
    upstreams: list[UpstreamPair]
    checks: list[ExpectCheck]


def compare_analyses(before: Analysis, after: Analysis) -> Comparison:
    """Pair the upstreams (methods folded) and check each BEFORE recommendation's ``expect``."""
    pairs = _pair(before.hosts, after.hosts)
    by_before_name = {p.before.upstream: p for p in pairs if p.before is not None}
    checks = []
    for r in before.recommendations:
        expect = r.expect
        name = r.upstreams[0] if r.upstreams else None
        pair = by_before_name.get(name) if name is not None else None
        values: tuple[float | None, float | None] = (None, None)
        if expect is not None and pair is not None:
            values = _values(pair, expect.figure)
        checks.append(
            ExpectCheck(
                r.rule,
                r.variable,
                r.value,
                None if expect is None else expect.figure,
                None if expect is None else expect.direction,
                name,
                *values,
            )
        )
    return Comparison(before, after, pairs, checks)


def figure_value(document: dict[str, Any] | None, path: str) -> float | None:
    """The number at ``path`` (``pool_wait_ms.p95``) of an upstream's --json object; a retry
    reason absent from ``retries`` counts 0 (no such retry), other absent figures are None."""
    if document is None:
        return None
    value: Any = document
    parts = path.split(".")
    for index, part in enumerate(parts):
        if not isinstance(value, dict):
            return None
        if part not in value:
            is_count = index == len(parts) - 1 and parts[0] in ("retries", "retries_suppressed")
            return 0.0 if is_count else None
        value = value[part]
    return float(value) if isinstance(value, int | float) else None


def _values(pair: UpstreamPair, figure: str) -> tuple[float | None, float | None]:
    before, after = _documents(pair)
    return figure_value(before, figure), figure_value(after, figure)


def _documents(pair: UpstreamPair) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Both sides as ``--json`` upstream objects (None: absent)."""
    from resilient_http.analysis.report import upstream_json

    before = None if pair.before is None else upstream_json(pair.before)
    after = None if pair.after is None else upstream_json(pair.after)
    return before, after


def _pair(before: list[UpstreamReport], after: list[UpstreamReport]) -> list[UpstreamPair]:
    if len(before) == 1 and len(after) == 1 and before[0].upstream != after[0].upstream:
        name = f"{before[0].upstream} -> {after[0].upstream}"
        return [UpstreamPair(name, before[0], after[0], paired_by_position=True)]
    after_by_name = {u.upstream: u for u in after}
    pairs = [UpstreamPair(u.upstream, u, after_by_name.pop(u.upstream, None)) for u in before]
    pairs += [UpstreamPair(u.upstream, None, u) for u in after_by_name.values()]
    return pairs


# --- command line ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare BEFORE, AFTER and ``--json`` on ``parser``."""
    parser.add_argument("before", metavar="BEFORE", help="telemetry before the change (as analyze)")
    parser.add_argument("after", metavar="AFTER", help="telemetry after the change (as analyze)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def run(args: argparse.Namespace) -> int:
    """Compare ``args.before`` and ``args.after``; 0, or 1 with a one-line message."""
    from resilient_http.analysis.analyze import analyze_paths
    from resilient_http.analysis.reader import InputError
    from resilient_http.analysis.report import write_json

    try:
        comparison = compare_analyses(analyze_paths([args.before]), analyze_paths([args.after]))
    except InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        write_json(to_json(comparison), sys.stdout)
        return 0
    from resilient_http._text_console import TextConsole

    render_text(comparison, TextConsole())
    return 0


def to_json(comparison: Comparison) -> dict[str, Any]:
    """The ``--json`` document."""
    return {
        "before": {"files": comparison.before.counts.files},
        "after": {"files": comparison.after.counts.files},
        "upstreams": [
            {
                "upstream": pair.name,
                "paired_by_position": pair.paired_by_position,
                "figures": {
                    path: {"before": before, "after": after}
                    for path, (before, after) in pair.figures().items()
                },
            }
            for pair in comparison.upstreams
        ],
        "recommendations": [
            {
                "rule": check.rule,
                "variable": check.variable,
                "value": check.value,
                "expect": None
                if check.figure is None
                else {
                    "figure": check.figure,
                    "direction": check.direction,
                    "upstream": check.upstream,
                },
                "before": check.before,
                "after": check.after,
                "change": None if check.change is None else round(check.change, 4),
                "moved": check.moved,
            }
            for check in comparison.checks
        ],
    }


def render_text(comparison: Comparison, console: Console) -> None:
    """Figures side by side per upstream, then each recommendation's verdict."""
    from rich.table import Table

    for pair in comparison.upstreams:
        note = " (the only upstream on each side)" if pair.paired_by_position else ""
        table = Table(title=f"{pair.name}{note}", title_justify="left", box=None)
        for column in ("figure", "before", "after"):
            table.add_column(column, justify="left" if column == "figure" else "right")
        for path, (before, after) in pair.figures().items():
            table.add_row(path, _cell(before), _cell(after))
        console.print(table)
    if not comparison.checks:
        console.print("BEFORE had no recommendations: nothing to check.")
        return
    console.print("Recommendations made on BEFORE:")
    for check in comparison.checks:
        console.print(f"  {check.variable}={check.value} ({check.rule})", highlight=False)
        if check.figure is None:
            console.print("    keeps a value: promises no change", highlight=False)
            continue
        verdict = {True: "yes", False: "NO", None: "unknown"}[check.moved]
        change = "" if check.change is None else f" ({check.change * 100:+.0f} %)"
        console.print(
            f"    {check.figure} should go {check.direction}: {_cell(check.before)} -> "
            f"{_cell(check.after)}{change}; moved the promised way: {verdict}",
            highlight=False,
            markup=False,
        )


def _cell(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}"
