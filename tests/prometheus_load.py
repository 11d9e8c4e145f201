"""A service under a demo load, run in a subprocess by the Prometheus tests:
``python -m tests.prometheus_load SCENARIO [--requests N]``.

Telemetry comes from ``configure_telemetry()`` and the environment the test sets
(``OTEL_METRICS_EXPORTER=prometheus`` with its port, and ``RESILIENT_HTTP_TELEMETRY_FILE``). The
load is the demo's: the scenario's fault plan on a fresh bundled upstream, driven through
``ResilientSession``. The process prints ``serving`` once its ``/metrics`` endpoint is up and
``done`` once every call has finished; it then keeps its session open (a service's pool gauges
report while it lives) and serves its final figures until its stdin closes, so Prometheus can
scrape them, and exits after flushing the telemetry file.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import resilient_http as rh
from resilient_http.demo.load import CALL_PATH, drive_load
from resilient_http.demo.scenarios import SCENARIOS
from resilient_http.upstream import UpstreamProcess


async def main(scenario_name: str, requests: int | None) -> None:
    handle = rh.configure_telemetry()
    print("serving", flush=True)
    scenario = SCENARIOS[scenario_name]
    async with UpstreamProcess(scenario.plan) as upstream, rh.ResilientSession() as client:
        calls = requests or scenario.requests
        url = upstream.make_url(CALL_PATH)
        await drive_load(client.get, url, calls, scenario.concurrency, lambda ok: None)
        print("done", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await handle.aclose(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--requests", type=int)
    args = parser.parse_args()
    asyncio.run(main(args.scenario, args.requests))
