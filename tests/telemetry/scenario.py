"""A service using the SDK, run in a subprocess by tests: ``python -m tests.telemetry.scenario``.

Telemetry comes only from ``configure_telemetry()`` and the OTEL_* variables the test sets.
One GET meets two dead connections (both retried); ``--calls N`` adds N plain GETs, and
``--memory`` prints the client's Python heap in use (tracemalloc, after a full collection) when
half of them and when all of them are done, so a test can see whether it grows with the calls.
The last line is ``flushed ...`` once ``aclose()`` returned, or ``exiting`` with
``--never-close``, which leaves telemetry to the interpreter's exit.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import time
import tracemalloc

import resilient_http as rh
from resilient_http.upstream import FaultPlan, FaultyUpstream, Script


def heap_kb() -> int:
    """The client's Python heap in use now, in KiB, garbage collected first: allocations made
    by the in-process upstream (which keeps a record per request) are left out."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, "*/resilient_http/upstream/*")]
    )
    return sum(stat.size for stat in snapshot.statistics("filename")) // 1024


async def main(calls: int, shutdown_timeout: float, memory: bool, never_close: bool) -> None:
    handle = rh.configure_telemetry()
    print("telemetry", "on" if handle.enabled else "off", flush=True)
    plan = FaultPlan(scripts=(Script(("close", "close"), path="/flaky"),))
    with rh.testing.set_testing(True):
        async with FaultyUpstream(plan) as upstream, rh.ResilientSession() as client:
            async with client.get(f"{upstream.url}/flaky?token=s3cr3t-value") as resp:
                print("status", resp.status, flush=True)
            if memory:
                tracemalloc.start()
            heap = []
            for call in range(calls):
                async with client.get(f"{upstream.url}/plain") as resp:
                    await resp.read()
                if memory and call + 1 in (calls // 2, calls):
                    heap.append(heap_kb())
            print("calls", calls, flush=True)
            if memory:
                print("heap_kb", *heap, flush=True)
    if never_close:
        print("exiting", flush=True)
        return
    started = time.monotonic()
    finished = await handle.aclose(timeout=shutdown_timeout)
    print("flushed", finished, round(time.monotonic() - started, 3), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=0)
    parser.add_argument("--shutdown-timeout", type=float, default=5.0)
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--never-close", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    asyncio.run(main(args.calls, args.shutdown_timeout, args.memory, args.never_close))
