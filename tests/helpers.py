"""Small waiting helpers for tests: wait on conditions, never on the clock."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

# A generous safety net: conditions normally hold within a few loop iterations.
SAFETY_NET_SECONDS = 10.0


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without RESILIENT_HTTP_* and OTEL_* variables, plus ``extra``."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("RESILIENT_HTTP_", "OTEL_"))}
    return {**kept, **extra}


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the event loop until ``condition()`` holds."""
    async with asyncio.timeout(SAFETY_NET_SECONDS):
        # Pool counters have no event to wait on: give the loop a turn until they settle.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0)
