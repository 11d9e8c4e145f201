"""The report of ``analyze --prometheus``: the whole fleet's report, then one per service (the
``job`` label), as text or as the ``--json`` document.

The figures are the file report's (``report.py``); only the header differs: the file report
says how many files and lines it read, this one names the Prometheus, the range, the selector
and how many result rows the queries returned. ``prometheus.py`` computes the analyses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from resilient_http.analysis.report import Analysis, render_figures, to_json

if TYPE_CHECKING:  # rich is imported only when text is rendered
    from rich.console import Console

__all__ = ["JOB", "FleetAnalysis", "fleet_headline", "fleet_json", "render_fleet_text"]

JOB = "job"


@dataclass
class FleetAnalysis:
    """The report over all selected jobs and one per job, and where the data came from."""

    url: str
    since: str
    selector: str
    recorded: bool
    whole: Analysis
    services: dict[str, Analysis] = field(default_factory=dict)
    series: int = 0
    """Result rows the queries returned (one per series of each answer)."""


def fleet_json(fleet: FleetAnalysis) -> dict[str, Any]:
    """The ``--json`` document: the file report's keys (``files``, ``lines`` and
    ``corrupt_lines`` 0), plus ``services`` (one report per job) and ``prometheus``."""
    document = to_json(fleet.whole)
    document["services"] = [
        {
            JOB: job,
            "upstreams": (part := to_json(analysis))["upstreams"],
            "recommendations": part["recommendations"],
            "pool_limits": part["pool_limits"],
        }
        for job, analysis in fleet.services.items()
    ]
    document["prometheus"] = {
        "url": fleet.url,
        "since": fleet.since,
        "selector": fleet.selector,
        "recorded": fleet.recorded,
    }
    return document


def fleet_headline(fleet: FleetAnalysis) -> str:
    """Where the report's data came from: the Prometheus, range, selector, rows and services."""
    selector = f"selector {fleet.selector}" if fleet.selector else "no selector"
    counts = "recorded series (job:<series>:increase)" if fleet.recorded else "raw series"
    return (
        f"Prometheus {fleet.url}, last {fleet.since}, {selector}, {counts}: "
        f"{fleet.series} result rows read, {len(fleet.services)} service(s)."
    )


def render_fleet_text(fleet: FleetAnalysis, console: Console) -> None:
    """Print the headline and the whole fleet's report, then each service's under its name."""
    console.print(fleet_headline(fleet), highlight=False, markup=False, soft_wrap=True)
    render_figures(fleet.whole, console)
    for job, analysis in fleet.services.items():
        console.rule(f"service {job}")
        render_figures(analysis, console)
