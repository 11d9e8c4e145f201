"""A service using the SDK, run in a subprocess by tests: ``python -m tests.telemetry.scenario``.

Telemetry comes only from ``configure_telemetry()`` and the OTEL_* variables the test sets.
One GET meets two dead connections (both retried); ``--calls N`` adds N plain GETs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

import resilient_http as rh
from resilient_http.upstream import FaultPlan, FaultyUpstream, Script


async def main(calls: int, shutdown_timeout: float) -> None:
    handle = rh.configure_telemetry()
    print("telemetry", "on" if handle.enabled else "off", flush=True)
    plan = FaultPlan(scripts=(Script(("close", "close"), path="/flaky"),))
    with rh.testing.set_testing(True):
        async with FaultyUpstream(plan) as upstream, rh.ResilientSession() as client:
            async with client.get(f"{upstream.url}/flaky?token=s3cr3t-value") as resp:
                print("status", resp.status, flush=True)
            for _ in range(calls):
                async with client.get(f"{upstream.url}/plain") as resp:
                    await resp.read()
            print("calls", calls, flush=True)
    started = time.monotonic()
    finished = await handle.aclose(timeout=shutdown_timeout)
    print("flushed", finished, round(time.monotonic() - started, 3), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=0)
    parser.add_argument("--shutdown-timeout", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    asyncio.run(main(args.calls, args.shutdown_timeout))
