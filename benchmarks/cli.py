"""``python -m benchmarks`` (``make bench``): flags, the order of the work, the output.

Defaults fit a budget of a few minutes on the 2-core machine (261 s measured while another
engineer's tests ran; the scaling table is about 75 s of it);
``--full`` scales up (more requests, more rounds, a larger scaling table, the 1M-span
analysis). Progress goes to stderr; the report (text, or ``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from .analyze_bench import AnalyzeResult, run_analyze_bench
from .report import evaluate_goals, goals_to_dicts, machine_info, render_text
from .resilience import RESILIENCE_SCENARIOS, run_resilience, scaled_settings
from .resilience import render as render_resilience
from .runner import RunPlan, ScenarioResult, run_scenario
from .scaling import (
    BODY_SIZES,
    CONCURRENCIES,
    FAULT_FLAGS,
    HOST_COUNTS,
    ScalingResult,
    build_rows,
    run_scaling,
)
from .variants import BASELINE, VARIANTS, ClientSettings

__all__ = ["main"]

THROTTLE_PROBABILITY = 0.05

# The fault scenarios: the upstream's own flags (python -m resilient_http.upstream --help).
FAULT_SCENARIOS = {
    # Keep-alive connections die after 1-3 requests, unannounced: the stale-pool failure (the
    # scaling table's stale rows use the same flags).
    "stale": list(FAULT_FLAGS["stale"]),
    # 5 % of calls meet a 503 without Retry-After, at random, once: repeat=false lets the retry
    # of a throttled request (same method, target and client) through. Every call has its own
    # target (PER_CALL_TARGETS), so "the retry" is exactly that call's next attempt.
    "throttle": [
        "--throttle",
        f"status=503,probability={THROTTLE_PROBABILITY},retry_after=none,repeat=false",
    ],
}
# Scenarios whose calls each GET their own target (benchmarks.load): the upstream keys
# throttle-once by target, and one shared URL would hand a call's pass to whichever call of
# the 64 in flight came next.
PER_CALL_TARGETS = frozenset({"throttle"})
SCENARIOS = ("healthy", *FAULT_SCENARIOS, "scaling", *RESILIENCE_SCENARIOS, "analyze")
# The run sizes the time caps are given for; a larger run gets a proportionally longer cap.
DEFAULT_REQUESTS, DEFAULT_FAULT_REQUESTS = 6_000, 1_000
_ALIASES = {
    "faults": tuple(FAULT_SCENARIOS),
    "resilience": RESILIENCE_SCENARIOS,
    "all": SCENARIOS,
}


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _int_csv(text: str) -> list[int]:
    try:
        values = [int(item) for item in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1: {text!r}")
    return values


def _faults(text: str) -> list[str]:
    names = _csv(text)
    unknown = [name for name in names if name not in FAULT_FLAGS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(FAULT_FLAGS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    """The command line; every default is the default run (``make bench``)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Overhead of resilience and telemetry versus raw aiohttp and its peers, "
        "and what the resilience strategies do under faults. Prints a table and the goals, "
        "or --json.",
    )
    add = parser.add_argument
    add("--requests", type=int, default=DEFAULT_REQUESTS, help="GETs per run (default 6000)")
    add("--concurrency", type=int, default=64, help="calls in flight (default 64)")
    add("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    add("--warmup", type=int, default=1_000, help="warm-up GETs per variant (default 1000)")
    add(
        "--time-cap",
        type=float,
        default=4.0,
        help="seconds after which a run of up to 6000 calls stops starting calls, longer in "
        "proportion for larger runs (default 4; only the pathological httpx pool reaches it, "
        "and the table marks capped runs)",
    )
    add(
        "--fault-time-cap",
        type=float,
        default=2.0,
        help="the same for a fault run of up to 1000 calls (default 2: a call under faults "
        "costs up to twice a healthy one)",
    )
    add(
        "--variants",
        type=_csv,
        default=list(VARIANTS),
        help=f"comma list (default all: {', '.join(VARIANTS)}); {BASELINE} always runs",
    )
    add(
        "--scenario",
        type=_csv,
        default=["all"],
        help=f"comma list of {', '.join(SCENARIOS)}, or 'faults' / 'resilience' / 'all' "
        "(default all)",
    )
    add(
        "--fault-requests",
        type=int,
        default=DEFAULT_FAULT_REQUESTS,
        help="GETs per fault run (default 1000)",
    )
    add(
        "--fault-rounds",
        type=int,
        default=3,
        help="rounds per fault scenario (default 3: the stale goal is a median of rounds)",
    )
    add(
        "--scaling-concurrency",
        type=_int_csv,
        default=list(CONCURRENCIES),
        help="scaling table: calls in flight per row (default 1,64,512)",
    )
    add(
        "--scaling-hosts",
        type=_int_csv,
        default=list(HOST_COUNTS),
        help="scaling table: upstream hosts (ports) per row (default 1,50)",
    )
    add(
        "--scaling-bodies",
        type=_int_csv,
        default=list(BODY_SIZES),
        help="scaling table: response body bytes (default 100,1048576)",
    )
    add(
        "--scaling-faults",
        type=_faults,
        default=list(FAULT_FLAGS),
        help=f"scaling table: comma list of {', '.join(FAULT_FLAGS)} (default both)",
    )
    add("--scaling-rounds", type=int, default=3, help="scaling table: rounds per row (default 3)")
    add(
        "--scaling-scale",
        type=float,
        default=1.0,
        help="scaling table: multiply every row's request count (default 1; see "
        "benchmarks/scaling.py for the counts)",
    )
    add(
        "--analyze-spans",
        type=lambda text: [int(item) for item in _csv(text)],
        default=[10_000, 100_000],
        help="synthetic file sizes (default 10000,100000)",
    )
    add("--analyze-1m", action="store_true", help="also analyze 1,000,000 spans (~20 s more)")
    add(
        "--isolation",
        choices=("process", "subprocess"),
        default="process",
        help="run variants in this process (default; measured less noisy, see benchmarks/"
        "__init__.py) or each run in a fresh subprocess",
    )
    add(
        "--full",
        action="store_true",
        help="scale up: 30000 requests, 7 rounds, 10000 fault requests, 5 fault rounds, scaling "
        "rows x3 requests and 5 rounds, 1M spans",
    )
    add(
        "--resilience-scale",
        type=float,
        default=1.0,
        help="the outage, overloaded and long-tail scenarios' durations and call counts "
        "times this (default 1: about 70 s in all)",
    )
    add("--json", action="store_true", help="print the results as JSON instead of the table")
    add("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; exit 0 (goals missed are reported, not an error), 2 on bad flags."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.full:
        args.requests, args.rounds = max(args.requests, 30_000), max(args.rounds, 7)
        args.fault_requests = max(args.fault_requests, 10_000)
        args.fault_rounds = max(args.fault_rounds, 5)
        args.scaling_scale = max(args.scaling_scale, 3.0)
        args.scaling_rounds = max(args.scaling_rounds, 5)
        args.analyze_1m = True
    scenarios = _expand_scenarios(parser, args.scenario)
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    if args.requests < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--requests, --concurrency and --rounds must be >= 1")
    if args.fault_requests < 1 or args.fault_rounds < 1 or args.scaling_rounds < 1:
        parser.error("--fault-requests, --fault-rounds and --scaling-rounds must be >= 1")
    if args.scaling_scale <= 0:
        parser.error("--scaling-scale must be > 0")
    if args.resilience_scale <= 0:
        parser.error("--resilience-scale must be > 0")
    sizes = sorted(set(args.analyze_spans) | ({100_000, 1_000_000} if args.analyze_1m else set()))

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"[bench] {message}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    machine = machine_info()
    results, scaling = asyncio.run(_run_http(args, scenarios, progress))
    chosen = [name for name in scenarios if name in RESILIENCE_SCENARIOS]
    resilience = asyncio.run(
        run_resilience(chosen, scaled_settings(args.resilience_scale), progress)
    )
    analyze: list[AnalyzeResult] = []
    if "analyze" in scenarios and sizes:
        analyze = run_analyze_bench(sizes, (None, 1), progress)
    elapsed = time.perf_counter() - started
    goals = evaluate_goals(results, analyze, scaling, scaling_run="scaling" in scenarios)
    goals += [goal for result in resilience for goal in result.goals]
    if args.json:
        document: dict[str, Any] = {
            "machine": machine,
            # The same for every variant (see benchmarks/variants.py): limit_per_host = C.
            "client_settings": asdict(ClientSettings(limit_per_host=args.concurrency)),
            "scenarios": {name: result.to_dict() for name, result in results.items()},
            "scaling": [result.to_dict() for result in scaling],
            "resilience": [result.to_dict() for result in resilience],
            "analyze": [result.to_dict() for result in analyze],
            "goals": goals_to_dicts(goals),
            "elapsed_s": elapsed,
        }
        print(json.dumps(_finite(document), indent=2, allow_nan=False))
    else:
        text = render_text(machine, results, analyze, goals, elapsed, scaling)
        if resilience:  # before the goals, as the other tables are
            head, goals_part = text.split("\nGoals:", 1)
            text = "\n".join([head, *render_resilience(resilience), "", "Goals:" + goals_part])
        print(text)
    return 0


def _throttle_note(requests: int) -> str:
    # repeat=false plus a target per call: a call is throttled at most once, so one retry is
    # enough and a retrying variant has no legitimate failure; a variant without retries fails
    # on every first-attempt 503.
    expected = requests * THROTTLE_PROBABILITY
    return (
        f"each call has its own target and is throttled at most once (repeat=false: its retry "
        f"goes through), so 0 failures are expected from a variant that retries 503 and about "
        f"{expected:.0f} per {requests} calls ({THROTTLE_PROBABILITY:.0%}) from one that does "
        "not (aiohttp_tuned)"
    )


def _finite(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _time_cap(cap_s: float, requests: int, default_requests: int) -> float:
    """A run's time cap: ``cap_s`` up to the default size, proportionally longer above it (a
    fixed cap would cut --full's 30000-call runs of the slower normal variants short)."""
    return cap_s * max(1.0, requests / default_requests)


def _expand_scenarios(parser: argparse.ArgumentParser, names: Sequence[str]) -> list[str]:
    chosen: list[str] = []
    for name in names:
        expanded = _ALIASES.get(name, (name,))
        for item in expanded:
            if item not in SCENARIOS:
                parser.error(f"unknown scenario {item!r}; known: {', '.join(SCENARIOS)}")
            if item not in chosen:
                chosen.append(item)
    return chosen


async def _run_http(
    args: argparse.Namespace, scenarios: Sequence[str], progress: Callable[[str], None]
) -> tuple[dict[str, ScenarioResult], list[ScalingResult]]:
    results: dict[str, ScenarioResult] = {}
    main_plan = RunPlan(
        requests=args.requests,
        concurrency=args.concurrency,
        rounds=args.rounds,
        warmup=args.warmup,
        time_cap_s=_time_cap(args.time_cap, args.requests, DEFAULT_REQUESTS),
        isolation=args.isolation,
    )
    if "healthy" in scenarios:
        results["healthy"] = await run_scenario("healthy", [], args.variants, main_plan, progress)
    fault_plan = RunPlan(
        requests=args.fault_requests,
        concurrency=args.concurrency,
        rounds=args.fault_rounds,
        # Code paths are warm after the healthy scenario; a short warm-up still opens the pool.
        warmup=min(args.warmup, 200),
        time_cap_s=_time_cap(args.fault_time_cap, args.fault_requests, DEFAULT_FAULT_REQUESTS),
        isolation=args.isolation,
    )
    for name, flags in FAULT_SCENARIOS.items():
        if name in scenarios:
            note = _throttle_note(args.fault_requests) if name == "throttle" else ""
            plan = dataclasses.replace(fault_plan, per_call_targets=name in PER_CALL_TARGETS)
            results[name] = await run_scenario(name, flags, args.variants, plan, progress, note)
    scaling: list[ScalingResult] = []
    if "scaling" in scenarios:
        rows = build_rows(
            args.scaling_concurrency,
            args.scaling_hosts,
            args.scaling_bodies,
            args.scaling_faults,
            args.scaling_scale,
        )
        scaling = await run_scaling(rows, args.scaling_rounds, args.isolation, progress)
    return results, scaling
