"""The load driver: N GETs at concurrency C through one variant, timed.

C worker tasks pull request numbers from a shared counter until N have been sent, so exactly C
requests are in flight until the tail, and the driver's own cost per request is the same small
loop for every variant (no task or semaphore per request). A failed call is counted, never
retried here: retrying is the variants' business.

Measured per run: wall time (``perf_counter``), the client process's CPU time
(``process_time``, every thread included, so telemetry export threads are charged to the client),
per-call latency, statuses and exception types.

With ``per_call_targets`` every call GETs its own target, ``URL?run=TOKEN&call=N`` (TOKEN new
per run), so the upstream can tell a call's retry from the next call: the throttle scenario's
``repeat=false`` throttles a call once and lets its retry through.

Several URLs (one per upstream host:port, the scaling table's 50-host rows) share the load so
that no host gets more than ``ceil(C / hosts)`` calls in flight, which is the per-host limit
those rows give the clients: with C >= hosts each worker keeps to one host (worker i to host
i mod hosts); with fewer workers than hosts the calls go round the hosts in turn, so every
host's connections are used.
"""

from __future__ import annotations

import asyncio
import gc
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from .variants import ClientSettings, Variant

__all__ = ["RunResult", "run_load"]


@dataclass
class RunResult:
    """One timed run of one variant."""

    requests: int
    """Logical calls made (N, or fewer when the run hit its time cap)."""
    wall_s: float
    cpu_s: float
    latencies_s: list[float]
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    capped: bool = False
    """True when the run stopped at its time cap before N calls."""

    @property
    def succeeded(self) -> int:
        """Calls that ended in a 200."""
        return self.statuses.get(200, 0)

    @property
    def requests_per_s(self) -> float:
        """Logical calls per wall-clock second."""
        return self.requests / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        """Client CPU microseconds per logical call."""
        return self.cpu_s * 1e6 / self.requests if self.requests else 0.0

    def latency_ms(self, quantile: float) -> float:
        """A latency quantile in milliseconds (nearest rank)."""
        if not self.latencies_s:
            return 0.0
        ordered = sorted(self.latencies_s)
        rank = min(len(ordered) - 1, max(0, round(quantile * len(ordered)) - 1))
        return ordered[rank] * 1000.0


async def run_load(
    variant: Variant,
    settings: ClientSettings,
    urls: Sequence[str],
    requests: int,
    concurrency: int,
    time_cap_s: float,
    *,
    per_call_targets: bool = False,
) -> RunResult:
    """Build the variant's client, send ``requests`` GETs to ``urls`` with ``concurrency`` in
    flight, close the client. Only the sending is timed; building and closing are not.
    ``per_call_targets`` gives each call its own query string, and several URLs share the
    calls (see the module docstring for both).

    ``time_cap_s`` bounds a pathological client (the run stops starting calls after it and
    reports ``capped``): it is a safety net for the 2-minute budget, not a way to measure less.
    Raises ``VariantUnavailable`` when the variant cannot run here.
    """
    sent = 0
    result = RunResult(requests=0, wall_s=0.0, cpu_s=0.0, latencies_s=[])
    latencies = result.latencies_s
    statuses = result.statuses
    errors = result.errors
    perf_counter = time.perf_counter
    # A fresh token per run: a pass the upstream still owes a call of an earlier run (one
    # whose client did not retry) must not exempt the same call number of this run.
    token = secrets.token_hex(4)
    prefixes = [f"{url}?run={token}&call=" if per_call_targets else url for url in urls]
    hosts = len(prefixes)
    pinned = concurrency >= hosts

    async with variant.factory(settings) as fetch:
        deadline = perf_counter() + time_cap_s

        async def worker(index: int) -> None:
            nonlocal sent
            own = prefixes[index % hosts]
            while sent < requests:
                sent += 1
                started = perf_counter()
                if started > deadline:
                    sent -= 1
                    result.capped = True
                    return
                prefix = own if pinned else prefixes[sent % hosts]
                target = f"{prefix}{sent}" if per_call_targets else prefix
                try:
                    statuses[await fetch(target)] += 1
                except Exception as exc:  # every failure is a data point, not a crash
                    errors[type(exc).__name__] += 1
                latencies.append(perf_counter() - started)

        # Each run starts from the same heap state: garbage of earlier runs is not charged here.
        gc.collect()
        cpu_before, wall_before = time.process_time(), perf_counter()
        await asyncio.gather(*(worker(index) for index in range(concurrency)))
        result.wall_s = perf_counter() - wall_before
        result.cpu_s = time.process_time() - cpu_before
    result.requests = len(latencies)
    return result
