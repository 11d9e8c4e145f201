"""``python -m benchmarks.worker``: one warm-up and one measured run of one variant, in a
fresh process (the ``--isolation subprocess`` mode of the runner).

It attaches to the already running upstream (host, ports and pid on the command line), so it
reads the server's CPU clock and counters itself, around its own run only, and prints one JSON
line: ``{"measurement": {...}}`` or ``{"unavailable": "reason"}``. The client settings come as
JSON (``ClientSettings`` fields), exactly as the runner's plan has them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from .measure import measure_run, warm_up
from .server import UpstreamServer
from .variants import VARIANTS, ClientSettings, VariantUnavailable

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one variant once (after a warm-up) and print the result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    parser.add_argument("--host", required=True)
    parser.add_argument("--ports", required=True, help="comma list: the upstream's ports")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--time-cap", type=float, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--settings", required=True, help="ClientSettings fields as JSON")
    parser.add_argument("--per-call-targets", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    ports = [int(port) for port in args.ports.split(",")]
    server = UpstreamServer.attach(args.host, ports, args.pid)
    settings = ClientSettings(**json.loads(args.settings))
    variant = VARIANTS[args.variant]

    async def run() -> dict[str, object]:
        try:
            if args.warmup:
                await warm_up(
                    variant,
                    settings,
                    server,
                    args.warmup,
                    args.concurrency,
                    args.time_cap,
                    path=args.path,
                    per_call_targets=args.per_call_targets,
                )
            measurement = await measure_run(
                variant,
                settings,
                server,
                args.requests,
                args.concurrency,
                args.time_cap,
                path=args.path,
                per_call_targets=args.per_call_targets,
            )
        except VariantUnavailable as exc:
            return {"unavailable": str(exc)}
        return {"measurement": measurement.to_dict()}

    print(json.dumps(asyncio.run(run())), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
