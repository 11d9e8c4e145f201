"""``python -m benchmarks.multi_upstream --hosts N [upstream flags]``: N upstreams, one process.

The scaling table's many-host rows need N distinct ``host:port`` upstreams (each its own pool
key, so per-host limits and per-host connection reuse are exercised) without N server
processes fighting the client for the machine's two cores. This runs N ``FaultyUpstream``
instances (``resilient_http.upstream``'s public API) on one event loop, each on its own free
port of 127.0.0.1, with the same fault flags as ``python -m resilient_http.upstream``; instance
i gets seed ``SEED + i``, so the hosts do not fail in lockstep.

Prints exactly one line once every port is bound, ``listening HOST:PORT HOST:PORT ...``, and
serves until SIGTERM or SIGINT. Each instance keeps its own counters (``/__stats__`` and
``/__reset__`` on its port); ``benchmarks.server`` adds them up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
from collections.abc import Sequence

from resilient_http.upstream import FaultPlan, FaultyUpstream, parse_plan_args

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Serve ``--hosts`` upstreams until SIGTERM/SIGINT; exit 0 (2 on bad flags)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.multi_upstream",
        description="N fault-injecting upstreams on N ports of one process; every other flag "
        "is python -m resilient_http.upstream's.",
    )
    parser.add_argument("--hosts", type=int, required=True, help="how many upstreams (ports)")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.hosts < 1:
        parser.error("--hosts must be >= 1")
    host, port, record_limit, plan = parse_plan_args(rest)
    if port != 0:
        parser.error("--port is not supported: every upstream picks a free port")
    asyncio.run(_serve(host, args.hosts, record_limit, plan))
    return 0


async def _serve(host: str, hosts: int, record_limit: int, plan: FaultPlan) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        upstreams = [
            await stack.enter_async_context(
                FaultyUpstream(
                    dataclasses.replace(plan, seed=plan.seed + index),
                    host=host,
                    record_limit=record_limit,
                )
            )
            for index in range(hosts)
        ]
        addresses = " ".join(f"{upstream.host}:{upstream.port}" for upstream in upstreams)
        print(f"listening {addresses}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    raise SystemExit(main())
