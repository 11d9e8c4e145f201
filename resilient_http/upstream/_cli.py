"""`python -m resilient_http.upstream`: the upstream as a child process.

Prints exactly one line, `listening HOST:PORT`, once the socket is bound (callers wait on it,
never sleep), serves until SIGTERM or SIGINT, then closes and exits 0. Counters are served at
`GET /__stats__` (JSON; `?log=1` adds the request log) and zeroed by `POST /__reset__`.
With `--stop-at-stdin-eof` it also stops when its stdin closes: `UpstreamProcess` keeps that
pipe open, so the child ends with its parent however the parent ends.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import cast

from ._outage import Outage
from ._plan import FaultPlan, Latency, RateLimit, RetryAfter, Script, SlowBody, StaleMode, Throttle
from ._server import FaultyUpstream

__all__ = ["main", "parse_plan_args", "plan_to_args"]


def _stale_after(text: str) -> int | tuple[int, int]:
    low, sep, high = text.partition("-")
    return (int(low), int(high)) if sep else int(low)


_SCRIPT = "[PATH=]STEP,STEP...[;per-client][;retry-after=FORM:S]"
_THROTTLE = "status=S,probability=P,first=K,every=N[,retry_after=FORM:S][,repeat=false]"


def build_parser() -> argparse.ArgumentParser:
    """The CLI's flags; each nested fault takes the text form its class parses."""
    parser = argparse.ArgumentParser(
        prog="python -m resilient_http.upstream",
        description="Fault-injecting HTTP/1.1 upstream. Prints 'listening HOST:PORT', serves "
        "until SIGTERM/SIGINT. GET /__stats__ returns counters as JSON (?log=1 adds the "
        "request log); POST /__reset__ zeroes them.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=0, help="0 picks a free port (the default)")
    add("--record-limit", type=int, default=10_000, help="requests kept in the log")
    add("--seed", type=int, default=0)
    add(
        "--latency",
        type=Latency.parse,
        help="fixed:S | uniform:LO:HI | lognormal:MEDIAN:SIGMA | tail:USUAL:SLOW:SHARE",
    )
    add("--stale-after", type=_stale_after, help="N or LO-HI requests per connection")
    add("--stale-mode", choices=("close", "reset"), default="close")
    add("--idle-timeout", type=float, help="seconds before idle connections are closed")
    add(
        "--stale-idle",
        type=float,
        help="seconds of idle time after which a reused connection is closed unanswered",
    )
    add("--close-after", type=int, help="answers per connection, the last with Connection: close")
    add("--capacity", type=int, help="requests in flight beyond which 503 is answered at once")
    add(
        "--capacity-retry-after",
        type=RetryAfter.parse,
        default=RetryAfter("seconds", 0.0),
        help="FORM[:SECONDS] of the capacity 503s (default seconds:0)",
    )
    add("--reset-probability", type=float, default=0.0)
    add("--reset-mid-body-probability", type=float, default=0.0)
    add("--hang-probability", type=float, default=0.0)
    add("--throttle", type=Throttle.parse, help=_THROTTLE)
    add("--script", type=Script.parse, action="append", default=[], help="repeatable: " + _SCRIPT)
    add("--rate-limit", type=RateLimit.parse, help="rate=R,burst=B[,status=429][,retry_after=F]")
    add("--slow-body", type=SlowBody.parse, help="chunks=N,delay=S[,probability=P]")
    add(
        "--outage",
        type=Outage.parse,
        help="MODE:AFTER:DURATION: refuse connections (or hang) for DURATION s, from AFTER s "
        "after the first request",
    )
    add("--client-id-header", default="X-Client-Id")
    add("--no-echo", action="store_true", help="answer 200s with one pre-built body")
    add(
        "--stop-at-stdin-eof",
        action="store_true",
        help="also stop when stdin closes (for a parent process: when it is gone)",
    )
    return parser


def parse_plan_args(argv: Sequence[str]) -> tuple[str, int, int, FaultPlan]:
    """(host, port, record_limit, plan) from CLI arguments; exits 2 on bad flags, like argparse."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    try:
        plan = FaultPlan(
            seed=args.seed,
            latency=args.latency,
            stale_after=args.stale_after,
            stale_mode=cast(StaleMode, args.stale_mode),
            idle_timeout=args.idle_timeout,
            stale_idle=args.stale_idle,
            close_after=args.close_after,
            capacity=args.capacity,
            capacity_retry_after=args.capacity_retry_after,
            reset_probability=args.reset_probability,
            reset_mid_body_probability=args.reset_mid_body_probability,
            hang_probability=args.hang_probability,
            throttle=args.throttle,
            scripts=tuple(args.script),
            rate_limit=args.rate_limit,
            slow_body=args.slow_body,
            client_id_header=args.client_id_header,
            echo=not args.no_echo,
            outage=args.outage,
        )
    except ValueError as exc:
        parser.error(str(exc))
    return args.host, args.port, args.record_limit, plan


def plan_to_args(plan: FaultPlan) -> list[str]:
    """CLI arguments that rebuild `plan` in a child process (`parse_plan_args` inverts it)."""
    args = ["--seed", str(plan.seed)]
    if plan.latency is not None:
        args += ["--latency", str(plan.latency)]
    if plan.stale_after is not None:
        stale = plan.stale_after
        args += [
            "--stale-after",
            f"{stale[0]}-{stale[1]}" if isinstance(stale, tuple) else str(stale),
        ]
        args += ["--stale-mode", plan.stale_mode]
    for flag, number in (
        ("--idle-timeout", plan.idle_timeout),
        ("--stale-idle", plan.stale_idle),
        ("--close-after", plan.close_after),
        ("--capacity", plan.capacity),
    ):
        if number is not None:
            args += [flag, repr(number)]
    if plan.capacity is not None:
        args += ["--capacity-retry-after", str(plan.capacity_retry_after)]
    for flag, value in (
        ("--reset-probability", plan.reset_probability),
        ("--reset-mid-body-probability", plan.reset_mid_body_probability),
        ("--hang-probability", plan.hang_probability),
    ):
        if value:
            args += [flag, repr(value)]
    for flag, nested in (
        ("--throttle", plan.throttle),
        ("--rate-limit", plan.rate_limit),
        ("--slow-body", plan.slow_body),
        ("--outage", plan.outage),
    ):
        if nested is not None:
            args += [flag, str(nested)]
    for script in plan.scripts:
        args += ["--script", str(script)]
    args += ["--client-id-header", plan.client_id_header]
    if not plan.echo:
        args.append("--no-echo")
    return args


async def _serve(
    host: str, port: int, record_limit: int, plan: FaultPlan, *, stop_at_stdin_eof: bool
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with FaultyUpstream(plan, host=host, port=port, record_limit=record_limit) as upstream:
        print(f"listening {upstream.host}:{upstream.port}", flush=True)
        watcher = asyncio.create_task(_set_at_stdin_eof(stop)) if stop_at_stdin_eof else None
        try:
            await stop.wait()
        finally:
            if watcher is not None:
                watcher.cancel()  # stopped by a signal: the pipe is closed by its finally


async def _set_at_stdin_eof(stop: asyncio.Event) -> None:
    """Set ``stop`` once stdin reaches end of file (nobody writes to it; its writer closed it
    or is gone)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.connect_read_pipe(lambda: protocol, sys.stdin)
    try:
        await reader.read()
    finally:
        transport.close()
    stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m resilient_http.upstream`; returns the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    host, port, record_limit, plan = parse_plan_args(args)
    stop_at_stdin_eof = build_parser().parse_args(args).stop_at_stdin_eof
    asyncio.run(_serve(host, port, record_limit, plan, stop_at_stdin_eof=stop_at_stdin_eof))
    return 0
