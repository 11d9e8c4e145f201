"""Results into words: the machine, the goals (met or missed), the text tables, the JSON.

Nothing here measures; it reads ``ScenarioResult``, ``ScalingResult`` and ``AnalyzeResult``
objects. A variant that could not run is shown as unavailable with its reason, and a goal that
depends on it says so: no number is ever filled in for a run that did not happen.

Every throughput goal is a ratio between two variants of the same run: per round (both ran in
it, under the same machine noise), then the median over rounds. Never an absolute rate, which
this shared machine could not hold still.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from .analyze_bench import AnalyzeResult
from .runner import ScenarioResult, VariantResult, paired_ratios
from .scaling import REFERENCE, SCALING_GOAL, SDK, ScalingResult, format_bytes
from .variants import BASELINE

__all__ = ["RATIO_GOALS", "Goal", "RatioGoal", "evaluate_goals", "machine_info", "render_text"]

GoalStatus = Literal["met", "missed", "unavailable", "not run"]


@dataclass(frozen=True, slots=True)
class RatioGoal:
    """``variant``'s throughput >= ``factor`` x ``reference``'s, in ``scenario``: the median of
    the per-round ratios. A telemetry goal names its OpenTelemetry ``floor`` (plain aiohttp
    making only the OpenTelemetry SDK calls the telemetry contract needs), shown next to it as
    the floor's own ratio to the same reference when that diagnostic variant ran."""

    variant: str
    factor: float
    reference: str
    scenario: str = "healthy"
    floor: str | None = None

    @property
    def text(self) -> str:
        """The goal as the report lists it."""
        return (
            f"{self.variant} >= {self.factor:.2f}x {self.reference} "
            f"({self.scenario}, median of per-round ratios)"
        )


# The throughput goals (the scaling table's per-row goal is separate: benchmarks.scaling).
RATIO_GOALS = (
    # Like for like: plain aiohttp doing the SDK's default timing work, and a retrying peer.
    RatioGoal("sdk_plain", 0.95, "aiohttp_same_timeouts"),
    RatioGoal("sdk_plain", 1.00, "aiohttp_retry"),
    # no cost when idle: the three resilience strategies against a healthy upstream
    RatioGoal("sdk_strategies_on", 0.97, "sdk_strategies_off"),
    # Telemetry against the contrib instrumentation with metrics and 10 % sampled traces.
    RatioGoal("sdk_metrics_10pct", 1.25, "otel_contrib", floor="otel_floor_10pct"),
    RatioGoal("sdk_traces_100pct", 0.45, "aiohttp_tuned", floor="otel_floor_100pct"),
    # Stale keep-alive connections: the SDK's retry against aiohttp's own hidden resend.
    RatioGoal("sdk_plain", 0.85, "aiohttp_tuned", scenario="stale"),
)
ANALYZE_MIN_SPANS_PER_S = 200_000
RSS_GROWTH_MAX_MB = 50.0
_FULL_SIZES = (100_000, 1_000_000)
# Above this spread of the baseline's throughput between rounds, the table warns of noise.
NOISY_SPREAD = 0.15
# The SDK variants issue 8 judges (diagnostic extras such as sdk_plain_aiohttp_timeouts are
# shown in the tables but judge nothing).
SDK_VARIANTS = (
    "sdk_plain",
    "sdk_metrics_10pct",
    "sdk_traces_100pct",
    "sdk_strategies_off",
    "sdk_strategies_on",
)
_VERSIONED = (
    "aiohttp",
    "aiohttp-retry",
    "tenacity",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-aiohttp-client",
    "httpx",
    "httpcore",
    "sniffio",
    "resilient_http",
)


@dataclass(frozen=True, slots=True)
class Goal:
    """One goal as measured by this run."""

    goal: str
    status: GoalStatus
    value: str
    ratio: float | None = None
    """The median ratio a throughput goal judges (the scaling goal: its lowest row's; None for
    the other goals)."""
    target: float | None = None
    """The ratio it must reach."""


def machine_info() -> dict[str, Any]:
    """CPU count and model, load, Python and library versions (the table's header)."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in cpuinfo
                    if line.startswith("model name")
                ),
                model,
            )
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "revision": _revision(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def _revision() -> str | None:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it: numbers belong
    to the code they measured (None outside a git checkout)."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def evaluate_goals(
    scenarios: dict[str, ScenarioResult],
    analyze: Sequence[AnalyzeResult],
    scaling: Sequence[ScalingResult] = (),
    *,
    scaling_run: bool = False,
) -> list[Goal]:
    """Every goal, each met, missed, unavailable or not run (``scaling_run``: the scaling
    table was asked for, so an empty one is "unavailable" rather than "not run")."""
    goals = [_ratio_goal(goal, scenarios.get(goal.scenario)) for goal in RATIO_GOALS]
    goals.append(_scaling_goal(scaling, scaling_run))
    for scenario in ("stale", "throttle"):
        goals.append(_fault_goal(scenario, scenarios.get(scenario)))
    goals.extend(_analyze_goals(analyze))
    return goals


def _ratio_goal(goal: RatioGoal, scenario: ScenarioResult | None) -> Goal:
    text, target = goal.text, goal.factor
    result = scenario.variants.get(goal.variant) if scenario else None
    reference = scenario.variants.get(goal.reference) if scenario else None
    if result is None or reference is None:
        return Goal(text, "not run", "-", target=target)
    for side in (result, reference):
        if side.unavailable is not None or not side.runs:
            reason = f"{side.name}: {side.unavailable or 'no runs'}"
            return Goal(text, "unavailable", reason, target=target)
    ratios, cpu_ratios = paired_ratios(result, reference)
    if not ratios:
        return Goal(text, "unavailable", "no round with both", target=target)
    ratio = statistics.median(ratios)
    value = f"{ratio:.2f}x (rounds {' '.join(f'{r:.2f}' for r in ratios)}"
    if cpu_ratios:
        value += f"; by CPU {statistics.median(cpu_ratios):.2f}x"
    value += ")"
    floor = scenario.variants.get(goal.floor) if scenario and goal.floor else None
    if floor is not None and floor.runs:
        floor_ratios, _ = paired_ratios(floor, reference)
        if floor_ratios:
            floor_ratio = statistics.median(floor_ratios)
            value += f" (OpenTelemetry floor, {goal.floor}: {floor_ratio:.2f}x)"
    status: GoalStatus = "met" if ratio >= target else "missed"
    return Goal(text, status, value, ratio=ratio, target=target)


def _scaling_goal(scaling: Sequence[ScalingResult], scaling_run: bool) -> Goal:
    text = f"scaling: every row {SDK} >= {SCALING_GOAL:.2f}x {REFERENCE} (median per row)"
    if not scaling:
        return Goal(text, "unavailable" if scaling_run else "not run", "-", target=SCALING_GOAL)
    measured = [result for result in scaling if result.status != "unavailable"]
    missed = [result for result in measured if result.status == "missed"]
    worst = min((result.sdk.ratio for result in measured), default=None)
    value = f"{len(measured) - len(missed)}/{len(scaling)} rows met"
    if worst is not None:
        value += f", lowest {worst:.2f}x"
    if missed:
        value += "; missed: " + ", ".join(
            f"{result.row.label} {result.sdk.ratio:.2f}x" for result in missed
        )
    if len(measured) < len(scaling):
        value += f"; {len(scaling) - len(measured)} unavailable"
    status: GoalStatus = "unavailable" if len(measured) < len(scaling) else "met"
    if missed:
        status = "missed"
    return Goal(text, status, value, ratio=worst, target=SCALING_GOAL)


def _fault_goal(scenario: str, result: ScenarioResult | None) -> Goal:
    text = f"{scenario}: every sdk_* variant 100% success while aiohttp_tuned has failures"
    if result is None:
        return Goal(text, "not run", "-")
    rates = {name: _success_rate(v) for name, v in result.variants.items() if v.runs}
    sdk = {name: rate for name, rate in rates.items() if name in SDK_VARIANTS}
    value = ", ".join(f"{name} {rate:.2%}" for name, rate in rates.items() if name in sdk)
    value += f"; aiohttp_tuned {rates.get('aiohttp_tuned', float('nan')):.2%}"
    if not sdk or "aiohttp_tuned" not in rates:
        return Goal(text, "unavailable", value)
    ok = all(rate == 1.0 for rate in sdk.values()) and rates["aiohttp_tuned"] < 1.0
    missing = [n for n, v in result.variants.items() if n in SDK_VARIANTS and not v.runs]
    if missing:
        value += f" (not measured: {', '.join(missing)})"
    if result.note:
        value += f" (note: {result.note})"
    return Goal(text, "met" if ok else "missed", value)


def _success_rate(result: VariantResult) -> float:
    total = sum(run.requests for run in result.runs)
    return sum(run.succeeded for run in result.runs) / total if total else 0.0


def _analyze_goals(analyze: Sequence[AnalyzeResult]) -> list[Goal]:
    goals: list[Goal] = []
    if not analyze:
        return [Goal(f"analyze >= {ANALYZE_MIN_SPANS_PER_S:,} spans/s", "not run", "-")]
    largest = max(result.spans for result in analyze)
    for result in (r for r in analyze if r.spans == largest):
        text = (
            f"analyze >= {ANALYZE_MIN_SPANS_PER_S:,} spans/s "
            f"({largest:,} spans, jobs={result.jobs})"
        )
        met = result.spans_per_s >= ANALYZE_MIN_SPANS_PER_S
        goals.append(Goal(text, "met" if met else "missed", f"{result.spans_per_s:,.0f} spans/s"))
    by_key = {(r.spans, r.jobs): r for r in analyze}
    jobs_settings = sorted({r.jobs for r in analyze})
    low, high = _FULL_SIZES
    for jobs in jobs_settings:
        text = (
            f"analyze peak RSS grows < {RSS_GROWTH_MAX_MB:.0f} MB from 100k to 1M spans "
            f"(jobs={jobs})"
        )
        if (low, jobs) in by_key and (high, jobs) in by_key:
            growth = by_key[high, jobs].peak_rss_mb - by_key[low, jobs].peak_rss_mb
            status: GoalStatus = "met" if growth < RSS_GROWTH_MAX_MB else "missed"
            goals.append(Goal(text, status, f"{growth:+.1f} MB"))
            continue
        goals.append(Goal(text, "not run", _scaled_down_growth(analyze, jobs)))
    return goals


def _scaled_down_growth(analyze: Sequence[AnalyzeResult], jobs: str) -> str:
    # Without the 1M file: the growth between the two largest sizes that did run, with the
    # target scaled to that span difference (memory should not grow with the input at all).
    runs = sorted((r for r in analyze if r.jobs == jobs), key=lambda r: r.spans)
    if len(runs) < 2:
        return "1M not run (--analyze-1m)"
    small, big = runs[-2], runs[-1]
    growth = big.peak_rss_mb - small.peak_rss_mb
    scaled = RSS_GROWTH_MAX_MB * (big.spans - small.spans) / (_FULL_SIZES[1] - _FULL_SIZES[0])
    verdict = "within" if growth < scaled else "over"
    return (
        f"1M not run (--analyze-1m); scaled-down check {small.spans:,} -> {big.spans:,}: "
        f"{growth:+.1f} MB, {verdict} the scaled target {scaled:.1f} MB"
    )


# --- text --------------------------------------------------------------------------------------


def render_text(
    machine: dict[str, Any],
    scenarios: dict[str, ScenarioResult],
    analyze: Sequence[AnalyzeResult],
    goals: Sequence[Goal],
    elapsed_s: float,
    scaling: Sequence[ScalingResult] = (),
) -> str:
    """The whole report as plain text."""
    lines = [_machine_line(machine)]
    for scenario in scenarios.values():
        lines += ["", *_scenario_table(scenario)]
    if scaling:
        lines += ["", *_scaling_table(scaling)]
    if analyze:
        lines += ["", *_analyze_table(analyze)]
    lines += ["", "Goals:"]
    lines += [f"  [{goal.status:^11}] {goal.goal}: {goal.value}" for goal in goals]
    lines += ["", f"total time {elapsed_s:.0f} s"]
    return "\n".join(lines)


def _machine_line(machine: dict[str, Any]) -> str:
    versions = machine["versions"]
    shown = ", ".join(f"{name} {version}" for name, version in versions.items() if version)
    load = " ".join(str(x) for x in machine["load_average"])
    return (
        f"machine: {machine['nproc']} CPUs, {machine['cpu_model']}, load {load}; "
        f"Python {machine['python']}; {shown}; code {machine['revision'] or 'unknown'}"
    )


def _scenario_table(scenario: ScenarioResult) -> list[str]:
    plan = scenario.plan
    flags = " ".join(scenario.fault_args) or "no faults"
    head = (
        f"scenario {scenario.name} (upstream: {flags}): N={plan.requests} GETs at C="
        f"{plan.concurrency}, {plan.rounds} round(s), warm-up {plan.warmup}, "
        f"isolation={plan.isolation}"
    )
    header = (
        "variant", "ratio", "per-round", "cpu ratio", "req/s", "CPU us/req", "p50 ms", "p99 ms",
        "srv CPU", "cli CPU", "conns", "success", "att/req",
    )  # fmt: skip
    rows: list[tuple[str, ...]] = []
    for name, result in scenario.variants.items():
        if result.unavailable is not None or not result.runs:
            rows.append((name, f"unavailable: {result.unavailable or 'no runs'}"))
            continue
        data = result.to_dict()
        rows.append(
            (
                name + (" (capped)" if data["capped"] else ""),
                f"{data['ratio_median']:.2f}x",
                " ".join(f"{ratio:.2f}" for ratio in result.ratios),
                f"{data['cpu_ratio_median']:.2f}x",
                f"{data['requests_per_s']:,.0f}",
                f"{data['cpu_us_per_request']:.0f}",
                f"{data['p50_ms']:.2f}",
                f"{data['p99_ms']:.2f}",
                f"{data['server_cpu_share']:.0%}",
                f"{data['client_cpu_share']:.0%}",
                f"{data['connections_opened']:.0f}",
                f"{data['success_rate']:.2%}",
                f"{data['attempts_per_request']:.3f}",
            )
        )
    note = [f"  note: {scenario.note}"] if scenario.note else []
    if scenario.baseline_spread > NOISY_SPREAD:
        note.append(
            f"  warning: {BASELINE}'s throughput varied by {scenario.baseline_spread:.0%} between "
            "rounds: the machine was busy; the per-round ratios absorb part of it, the CPU "
            "ratio is the steadier figure"
        )
    return [head, *note, *_columns(header, rows)]


def _scaling_table(scaling: Sequence[ScalingResult]) -> list[str]:
    rounds = max(result.rounds for result in scaling)
    head = (
        f"scaling: {SDK} / {REFERENCE}, throughput per round then the median; bodies streamed "
        f"in 64 KiB chunks; limit=0, limit_per_host = ceil(C / hosts); {rounds} round(s); "
        f"goal >= {SCALING_GOAL:.2f}x on every row; srv CPU: the upstream's share of a core "
        f"during {SDK}'s runs"
    )
    header = (
        "C", "hosts", "body", "fault", "N", "ratio", "per-round", "cpu ratio", "sdk req/s",
        "ref req/s", "sdk CPU us", "ref CPU us", "srv CPU", "sdk ok", "ref ok", "goal",
    )  # fmt: skip
    rows: list[tuple[str, ...]] = []
    for result in scaling:
        row = result.row
        conditions = (
            str(row.concurrency),
            str(row.hosts),
            format_bytes(row.body_bytes),
            row.fault,
            str(row.requests),
        )
        sdk, ref = result.sdk, result.variants[REFERENCE]
        if result.status == "unavailable":
            reason = sdk.unavailable or ref.unavailable or "no runs"
            rows.append((" ".join(conditions), f"unavailable: {reason}"))
            continue
        sdk_data, ref_data = sdk.to_dict(), ref.to_dict()
        rows.append(
            (
                *conditions,
                f"{sdk.ratio:.2f}x",
                " ".join(f"{ratio:.2f}" for ratio in sdk.ratios),
                f"{sdk.cpu_ratio:.2f}x",
                f"{sdk_data['requests_per_s']:,.0f}",
                f"{ref_data['requests_per_s']:,.0f}",
                f"{sdk_data['cpu_us_per_request']:.0f}",
                f"{ref_data['cpu_us_per_request']:.0f}",
                f"{sdk_data['server_cpu_share']:.0%}",
                f"{sdk_data['success_rate']:.2%}",
                f"{ref_data['success_rate']:.2%}",
                result.status,
            )
        )
    return [head, *_columns(header, rows)]


def _analyze_table(analyze: Sequence[AnalyzeResult]) -> list[str]:
    header = ("spans", "jobs", "file MB", "seconds", "spans/s", "peak RSS MB", "main", "worker")
    rows = [
        (
            f"{r.spans:,}",
            r.jobs,
            f"{r.file_mb:.0f}",
            f"{r.seconds:.2f}",
            f"{r.spans_per_s:,.0f}",
            f"{r.peak_rss_mb:.1f}",
            f"{r.main_rss_mb:.1f}",
            f"{r.worker_rss_mb:.1f}",
        )
        for r in analyze
    ]
    return [
        "analyze (synthetic OTLP JSON traces, one child process per run):",
        *_columns(header, rows),
    ]


def _columns(header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> list[str]:
    """Left-aligned first column, right-aligned numbers; a short row spans the rest."""
    rows = list(rows)
    full = [row for row in rows if len(row) == len(header)]
    widths = [max(len(row[i]) for row in [header, *full]) for i in range(len(header))]
    out = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])]
        if len(row) == len(header):
            cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        else:
            cells += list(row[1:])
        out.append("  " + "  ".join(cells).rstrip())
    return out


def goals_to_dicts(goals: Sequence[Goal]) -> list[dict[str, str]]:
    """JSON-ready goals."""
    return [asdict(goal) for goal in goals]
