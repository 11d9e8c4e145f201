"""A service whose OpenTelemetry is set up as ``opentelemetry-instrument`` sets it up, run in a
subprocess by tests: ``python -m tests.telemetry.instrumented [--also-configure]``.

The SDK's own configurator (what ``opentelemetry-instrument`` runs through a distro) builds the
global providers from the OTEL_* variables, exporters found by entry point name included; the
SDK's exit hooks flush them. ``--also-configure`` then calls ``configure_telemetry()`` as well, as
a service written for the SDK does, which finds the providers already set.
"""

from __future__ import annotations

import asyncio
import sys

from opentelemetry.sdk._configuration import _OTelSDKConfigurator

import resilient_http as rh
from resilient_http.upstream import FaultPlan, FaultyUpstream, Script


async def main() -> None:
    plan = FaultPlan(scripts=(Script(("close",), path="/flaky"),))
    with rh.testing.set_testing(True):
        async with (
            FaultyUpstream(plan) as upstream,
            rh.ResilientSession() as client,
            client.get(f"{upstream.url}/flaky") as resp,
        ):
            print("status", resp.status, flush=True)


if __name__ == "__main__":
    # The SDK leaves the configurator untyped.
    _OTelSDKConfigurator().configure()  # type: ignore[no-untyped-call]
    if "--also-configure" in sys.argv:
        rh.configure_telemetry()
    asyncio.run(main())
