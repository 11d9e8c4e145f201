"""Small helpers for tests: wait on conditions (never on the clock), run child processes, expect
a dependency-internals warning."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path


class FakeClock:
    """An injected clock: reads ``now``, which a test moves forward by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# A generous safety net: conditions normally hold within a few loop iterations.
SAFETY_NET_SECONDS = 10.0


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without RESILIENT_HTTP_* and OTEL_* variables, plus ``extra``."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("RESILIENT_HTTP_", "OTEL_"))}
    return {**kept, **extra}


@contextlib.contextmanager
def one_runtime_warning(*parts: str) -> Iterator[None]:
    """Expect exactly one ``RuntimeWarning`` inside the block, its message holding ``parts``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    messages = [str(w.message) for w in caught if w.category is RuntimeWarning]
    assert len(messages) == 1, messages
    for part in parts:
        assert part in messages[0], (part, messages[0])


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the event loop until ``condition()`` holds."""
    async with asyncio.timeout(SAFETY_NET_SECONDS):
        # Pool counters have no event to wait on: give the loop a turn until they settle.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0)


async def run_python(*args: str, cwd: Path, env: Mapping[str, str]) -> tuple[int, str, str]:
    """``python ARGS`` in a child process with exactly ``env``: (status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=cwd,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):  # a safety net only
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
