"""``python -m benchmarks.profiling VARIANT [...]``: where one variant's time goes, by cProfile.

Issue 8 asks for a profile wherever a goal is missed. This runs the same load as the benchmark
(same upstream process, same settings) for one or more variants: a warm-up, then one run under
``cProfile``, and prints the top functions (by own time and by cumulative time) with the
profile's total per request, so two variants can be compared function by function.
``--save DIR`` also writes ``VARIANT.prof`` for ``python -m pstats`` or snakeviz.

cProfile slows everything down (deterministic tracing of every call), more so for code that makes
many small calls, so compare the shares and per-request call counts, not the absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
from collections.abc import Sequence
from pathlib import Path

from .load import run_load
from .scaling import FAULT_FLAGS
from .server import UpstreamServer
from .variants import VARIANTS, ClientSettings

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Profile each named variant; print the top functions."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling")
    parser.add_argument("variants", nargs="+", choices=sorted(VARIANTS))
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--save", type=Path, help="folder for VARIANT.prof files")
    parser.add_argument(
        "--fault",
        choices=sorted(FAULT_FLAGS),
        help="run the upstream with this fault (as the benchmark's fault scenarios and rows)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    settings = ClientSettings(limit_per_host=args.concurrency)
    with UpstreamServer(FAULT_FLAGS[args.fault] if args.fault else ()) as server:
        for name in args.variants:
            profile = asyncio.run(_profile(name, settings, server, args.requests))
            if args.save is not None:
                args.save.mkdir(parents=True, exist_ok=True)
                profile.dump_stats(args.save / f"{name}.prof")
            print(_summary(name, profile, args.requests, args.top))
    return 0


async def _profile(
    name: str, settings: ClientSettings, server: UpstreamServer, requests: int
) -> cProfile.Profile:
    variant = VARIANTS[name]
    urls = server.urls("/")
    concurrency = settings.limit_per_host
    await run_load(variant, settings, urls, min(requests, 2_000), concurrency, 60.0)
    profile = cProfile.Profile()
    profile.enable()
    await run_load(variant, settings, urls, requests, concurrency, 600.0)
    profile.disable()
    return profile


def _summary(name: str, profile: cProfile.Profile, requests: int, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    total = stats.total_tt  # type: ignore[attr-defined]
    out.write(f"=== {name}: {total:.2f} s profiled, {total * 1e6 / requests:.0f} us/request\n")
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


if __name__ == "__main__":
    raise SystemExit(main())
