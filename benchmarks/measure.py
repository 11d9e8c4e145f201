"""One measured run: the load driver plus the server's side of the story.

``measure_run`` zeroes the upstream's counters, reads its CPU clock, runs the load, then reads
both again, and condenses everything into a ``Measurement`` (plain numbers, JSON-ready, so a
subprocess worker can hand it back unchanged). The same function serves the in-process runner
and the subprocess worker, so the two isolation modes measure exactly the same thing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .load import run_load
from .server import UpstreamServer
from .variants import ClientSettings, Variant

__all__ = ["Measurement", "measure_run", "warm_up"]


@dataclass
class Measurement:
    """A run's numbers, client and server side."""

    variant: str
    requests: int
    succeeded: int
    wall_s: float
    cpu_s: float
    requests_per_s: float
    cpu_us_per_request: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float
    server_cpu_share: float
    """Server CPU seconds per wall second of the run (1.0 = one core busy all along)."""
    client_cpu_share: float
    connections_opened: int
    server_requests: int
    stale_closes: int
    capped: bool
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        """Share of logical calls that ended in a 200."""
        return self.succeeded / self.requests if self.requests else 0.0

    @property
    def attempts_per_request(self) -> float:
        """Requests the server received per logical call (retries and resends included)."""
        return self.server_requests / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, derived figures included."""
        data = asdict(self)
        data["success_rate"] = self.success_rate
        data["attempts_per_request"] = self.attempts_per_request
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """Inverse of ``to_dict`` (derived figures are recomputed, not read)."""
        names = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in names})


async def warm_up(
    variant: Variant,
    settings: ClientSettings,
    server: UpstreamServer,
    requests: int,
    concurrency: int,
    time_cap_s: float,
    *,
    path: str = "/",
    per_call_targets: bool = False,
) -> None:
    """An untimed run: imports, code paths and allocator pools are warm before timing."""
    await run_load(
        variant,
        settings,
        server.urls(path),
        requests,
        concurrency,
        time_cap_s,
        per_call_targets=per_call_targets,
    )


async def measure_run(
    variant: Variant,
    settings: ClientSettings,
    server: UpstreamServer,
    requests: int,
    concurrency: int,
    time_cap_s: float,
    *,
    path: str = "/",
    per_call_targets: bool = False,
) -> Measurement:
    """One timed run of ``variant`` against ``server`` (every host of it, at ``path``); raises
    ``VariantUnavailable``. ``per_call_targets``: every call GETs its own target
    (``benchmarks.load``)."""
    server.reset()
    server_cpu_before = server.cpu_seconds()
    run = await run_load(
        variant,
        settings,
        server.urls(path),
        requests,
        concurrency,
        time_cap_s,
        per_call_targets=per_call_targets,
    )
    server_cpu = server.cpu_seconds() - server_cpu_before
    counters = server.counters()
    wall = run.wall_s or float("nan")
    return Measurement(
        variant=variant.name,
        requests=run.requests,
        succeeded=run.succeeded,
        wall_s=run.wall_s,
        cpu_s=run.cpu_s,
        requests_per_s=run.requests_per_s,
        cpu_us_per_request=run.cpu_us_per_request,
        p50_ms=run.latency_ms(0.50),
        p99_ms=run.latency_ms(0.99),
        server_cpu_s=server_cpu,
        server_cpu_share=server_cpu / wall,
        client_cpu_share=run.cpu_s / wall,
        connections_opened=counters.connections_opened,
        server_requests=counters.requests,
        stale_closes=counters.stale_closes,
        capped=run.capped,
        statuses={str(status): count for status, count in sorted(run.statuses.items())},
        errors=dict(run.errors),
    )
