"""Rounds of runs: every variant once per round, interleaved, against one upstream per scenario.

Per scenario one upstream process is started (healthy, or with its fault flags); each round runs
every variant once, in an order rotated by one place per round so that no variant always runs
right after the same neighbour or at the same point of a round. A variant's ratio is computed
per round against the baseline's run of the same round (both saw the same machine noise), and
the median over rounds is reported. ``run_rounds`` is the same on an upstream the caller owns
and with another baseline: the scaling table runs several rows on one upstream, each against
``aiohttp_same_timeouts``. ``paired_ratios`` compares any two variants of a scenario the same
way, round by round (the goals between two peers).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .measure import Measurement, measure_run, warm_up
from .server import UpstreamServer
from .variants import BASELINE, VARIANTS, ClientSettings, VariantUnavailable

__all__ = [
    "Isolation",
    "RunPlan",
    "ScenarioResult",
    "VariantResult",
    "paired_ratios",
    "run_rounds",
    "run_scenario",
]

Isolation = Literal["process", "subprocess"]


@dataclass(frozen=True, slots=True)
class RunPlan:
    """How much load per run, how many rounds, and where runs execute."""

    requests: int
    concurrency: int
    rounds: int
    warmup: int
    time_cap_s: float
    isolation: Isolation = "process"
    per_call_targets: bool = False
    """Every call GETs its own target, so the upstream can key "this call's retry"."""
    path: str = "/"
    """The path every call GETs, on every host (``/bytes/N`` for an N-byte body)."""
    client: ClientSettings | None = None
    """The clients' settings; None: the defaults with ``limit_per_host`` = concurrency."""

    @property
    def settings(self) -> ClientSettings:
        """The shared client settings (by default ``limit_per_host`` = concurrency)."""
        if self.client is not None:
            return self.client
        return ClientSettings(limit_per_host=self.concurrency)


@dataclass
class VariantResult:
    """All runs of one variant in one scenario."""

    name: str
    unavailable: str | None = None
    runs: list[Measurement] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    """Requests per second divided by the baseline's, one per round."""
    cpu_ratios: list[float] = field(default_factory=list)
    """The baseline's CPU per request divided by this variant's, one per round: the same
    comparison by CPU cost, which a noisy neighbour on the machine disturbs less than wall
    time (a descheduled client loses wall time but is not charged CPU time)."""

    def median(self, pick: Callable[[Measurement], float]) -> float:
        """The median over rounds of one figure."""
        return statistics.median(pick(run) for run in self.runs) if self.runs else float("nan")

    @property
    def ratio(self) -> float:
        """Median per-round throughput ratio to the baseline (the figure the goals judge)."""
        return statistics.median(self.ratios) if self.ratios else float("nan")

    @property
    def cpu_ratio(self) -> float:
        """Median per-round CPU-cost ratio to the baseline."""
        return statistics.median(self.cpu_ratios) if self.cpu_ratios else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: medians first, then every run."""
        if self.unavailable is not None or not self.runs:
            return {"status": "unavailable", "reason": self.unavailable or "no runs"}
        runs = self.runs
        total = sum(run.requests for run in runs)
        return {
            "status": "ok",
            "ratio_median": self.ratio,
            "ratios": self.ratios,
            "cpu_ratio_median": self.cpu_ratio,
            "cpu_ratios": self.cpu_ratios,
            "requests_per_s": self.median(lambda m: m.requests_per_s),
            "cpu_us_per_request": self.median(lambda m: m.cpu_us_per_request),
            "p50_ms": self.median(lambda m: m.p50_ms),
            "p99_ms": self.median(lambda m: m.p99_ms),
            "server_cpu_share": self.median(lambda m: m.server_cpu_share),
            "client_cpu_share": self.median(lambda m: m.client_cpu_share),
            "connections_opened": self.median(lambda m: m.connections_opened),
            "success_rate": sum(run.succeeded for run in runs) / total if total else 0.0,
            "attempts_per_request": sum(run.server_requests for run in runs) / total
            if total
            else 0.0,
            "capped": any(run.capped for run in runs),
            "runs": [run.to_dict() for run in runs],
        }


@dataclass
class ScenarioResult:
    """One scenario: its upstream flags and every variant's results."""

    name: str
    fault_args: list[str]
    plan: RunPlan
    variants: dict[str, VariantResult]
    note: str = ""
    """What to know when reading this scenario's numbers (e.g. failures expected by design)."""

    @property
    def baseline_spread(self) -> float:
        """(max - min) / median of the baseline's throughput over rounds: how much the machine
        moved under this scenario (a quiet 2-core machine stays within a few per cent)."""
        runs = self.variants[BASELINE].runs
        if len(runs) < 2:
            return 0.0
        rates = [run.requests_per_s for run in runs]
        return (max(rates) - min(rates)) / statistics.median(rates)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        plan = self.plan
        return {
            "baseline_spread": self.baseline_spread,
            "upstream_flags": self.fault_args,
            "note": self.note,
            "requests": plan.requests,
            "concurrency": plan.concurrency,
            "rounds": plan.rounds,
            "warmup": plan.warmup,
            "time_cap_s": plan.time_cap_s,
            "isolation": plan.isolation,
            "variants": {name: result.to_dict() for name, result in self.variants.items()},
        }


Progress = Callable[[str], None]


async def run_scenario(
    name: str,
    fault_args: Sequence[str],
    variant_names: Sequence[str],
    plan: RunPlan,
    progress: Progress,
    note: str = "",
) -> ScenarioResult:
    """Start the scenario's upstream, warm up, run ``plan.rounds`` interleaved rounds."""
    with UpstreamServer(fault_args) as server:
        results = await run_rounds(server, variant_names, plan, progress, name)
    return ScenarioResult(name, list(fault_args), plan, results, note)


async def run_rounds(
    server: UpstreamServer,
    variant_names: Sequence[str],
    plan: RunPlan,
    progress: Progress,
    label: str,
    baseline: str = BASELINE,
) -> dict[str, VariantResult]:
    """On a running upstream: warm up, then ``plan.rounds`` interleaved rounds of the variants
    (``baseline`` first in the first round, always run), each with its per-round ratios to
    ``baseline``."""
    names = [baseline, *(n for n in variant_names if n != baseline)]
    results = {n: VariantResult(n) for n in names}
    if plan.isolation == "process" and plan.warmup:
        for variant_name in names:
            try:
                await warm_up(
                    VARIANTS[variant_name],
                    plan.settings,
                    server,
                    plan.warmup,
                    plan.concurrency,
                    plan.time_cap_s,
                    path=plan.path,
                    per_call_targets=plan.per_call_targets,
                )
            except VariantUnavailable as exc:
                results[variant_name].unavailable = str(exc)
    for round_index in range(plan.rounds):
        shift = round_index % len(names)
        for variant_name in names[shift:] + names[:shift]:
            result = results[variant_name]
            if result.unavailable is not None:
                continue
            progress(f"{label}: round {round_index + 1}/{plan.rounds}, {variant_name}")
            measured = await _run_once(variant_name, server, plan)
            if isinstance(measured, str):
                result.unavailable = measured
            else:
                result.runs.append(measured)
        _add_ratios(results, round_index, baseline)
    return results


def paired_ratios(
    result: VariantResult, reference: VariantResult
) -> tuple[list[float], list[float]]:
    """Per-round throughput ratios of ``result`` to ``reference`` (runs of the same round, as
    the baseline ratios are), and the same by CPU per request (reference's / result's).

    A variant's runs are its rounds in order (one that becomes unavailable stops running), so
    run i of both is round i of both."""
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    for run, ref in zip(result.runs, reference.runs, strict=False):
        if ref.requests_per_s > 0:
            ratios.append(run.requests_per_s / ref.requests_per_s)
        if run.cpu_us_per_request > 0:
            cpu_ratios.append(ref.cpu_us_per_request / run.cpu_us_per_request)
    return ratios, cpu_ratios


def _add_ratios(results: dict[str, VariantResult], round_index: int, baseline_name: str) -> None:
    baseline = results[baseline_name]
    if len(baseline.runs) <= round_index:
        return
    base = baseline.runs[round_index]
    for result in results.values():
        if len(result.runs) <= round_index:
            continue
        run = result.runs[round_index]
        if base.requests_per_s > 0:
            result.ratios.append(run.requests_per_s / base.requests_per_s)
        if run.cpu_us_per_request > 0:
            result.cpu_ratios.append(base.cpu_us_per_request / run.cpu_us_per_request)


async def _run_once(variant_name: str, server: UpstreamServer, plan: RunPlan) -> Measurement | str:
    """A measurement, or the reason the variant is unavailable."""
    variant = VARIANTS[variant_name]
    if plan.isolation == "process":
        try:
            return await measure_run(
                variant,
                plan.settings,
                server,
                plan.requests,
                plan.concurrency,
                plan.time_cap_s,
                path=plan.path,
                per_call_targets=plan.per_call_targets,
            )
        except VariantUnavailable as exc:
            return str(exc)
    # A blocking wait is fine here: nothing else runs on this loop meanwhile.
    command = [
        sys.executable,
        "-m",
        "benchmarks.worker",
        *("--variant", variant_name, "--host", server.host),
        *("--ports", ",".join(str(port) for port in server.ports)),
        *("--pid", str(server.pid), "--requests", str(plan.requests)),
        *("--warmup", str(plan.warmup), "--concurrency", str(plan.concurrency)),
        *("--time-cap", str(plan.time_cap_s), "--path", plan.path),
        *("--settings", json.dumps(asdict(plan.settings))),
        *(["--per-call-targets"] if plan.per_call_targets else []),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: ASYNC221
    if completed.returncode != 0:
        raise RuntimeError(f"worker for {variant_name} failed:\n{completed.stderr[-2000:]}")
    answer = json.loads(completed.stdout.strip().splitlines()[-1])
    if "unavailable" in answer:
        return str(answer["unavailable"])
    return Measurement.from_dict(answer["measurement"])
