"""The scaling table: ``sdk_plain`` against plain aiohttp with the same timeouts, row by row.

``sdk_plain``'s healthy-scenario goal is judged at one point (C=64, one host, an 11-byte body).
The table repeats that comparison, against ``aiohttp_same_timeouts`` (plain aiohttp with the
SDK's default per-attempt timeouts), where a client's costs move:

- concurrency 1, 64 and 512 (latency-bound, the default point, many connections at once);
- 1 and 50 upstream hosts (50 ``host:port`` upstreams on 127.0.0.1, one process:
  ``benchmarks.multi_upstream``), so per-host pools and their bookkeeping multiply;
- 100-byte and 1 MiB bodies (``/bytes/N``), both clients streaming them in 64 KiB chunks
  (``async for chunk in response.content.iter_chunked(65536)``), as a client of large bodies
  does;
- no fault, and the stale-close fault (the upstream closes keep-alive connections after 1-3
  requests, unannounced: the ``stale`` scenario's flags).

Every row's client settings: ``limit=0`` (unlimited: the total must never be what throttles)
and ``limit_per_host`` = the per-host concurrency, ``ceil(C / hosts)``: the load driver gives
each host at most that many calls in flight (``benchmarks.load``; with fewer calls in flight
than hosts, the calls go round the hosts, and the limit is C). Both variants get the same
settings, the same requests and the same upstream.

Each row runs ``rounds`` interleaved rounds (order swapped every round) after a short warm-up
of both variants; the row's figure is the median over rounds of the per-round throughput ratio
``sdk_plain / aiohttp_same_timeouts``, next to the same ratio by client CPU per request. The
goal is >= 0.90x on every row. Request counts are per row (``row_requests``): fewer for c=1 and
for 1 MiB bodies, so the default table takes about 75 s of the 2-core machine with another
engineer's tests running (a third of it the four c=512, 1 MiB rows, which must make at least one
call per connection); ``--full`` (or ``--scaling-scale``) multiplies them.

The 1 MiB rows keep the upstream busy too (``/bytes/N`` builds each body per request; the
server's CPU share approaches a core), so both clients partly wait on the same server there:
their CPU ratio is the steadier figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any, Literal

from .runner import Isolation, RunPlan, VariantResult, run_rounds
from .server import UpstreamServer
from .variants import ClientSettings

__all__ = [
    "BODY_SIZES",
    "CONCURRENCIES",
    "FAULT_FLAGS",
    "HOST_COUNTS",
    "REFERENCE",
    "SCALING_GOAL",
    "SDK",
    "RowStatus",
    "ScalingResult",
    "ScalingRow",
    "build_rows",
    "format_bytes",
    "row_requests",
    "run_scaling",
]

SDK = "sdk_plain"
REFERENCE = "aiohttp_same_timeouts"
SCALING_GOAL = 0.90
CONCURRENCIES = (1, 64, 512)
HOST_COUNTS = (1, 50)
BODY_SIZES = (100, 1_048_576)
# The upstream's own flags per fault; "stale" is the stale scenario's fault.
FAULT_FLAGS: dict[str, tuple[str, ...]] = {
    "none": (),
    "stale": ("--stale-after", "1-3"),
}
CHUNK_BYTES = 64 * 1024
# Bodies from this size on are "large": their rows are sized by bytes moved, not by calls.
LARGE_BODY_BYTES = 256 * 1024
# The time cap guards against a pathological client (httpx's pool); the two clients here are
# both aiohttp, and a capped run would cut a 1 MiB row short, so the cap only catches a hang.
SCALING_TIME_CAP_S = 60.0
WARMUP_SHARE, WARMUP_MAX = 4, 100

RowStatus = Literal["met", "missed", "unavailable"]


def row_requests(concurrency: int, body_bytes: int, scale: float = 1.0) -> int:
    """Calls per run of one row: 0.2-0.9 s of this 2-core machine at scale 1.

    Small bodies: 1500 calls (500 at c=1, where every call waits a round trip), and at least 3
    per connection at high concurrency, so connection set-up does not dominate. Large bodies
    move a MiB per call: 150 calls (80 at c=1), and at least one per connection."""
    if body_bytes >= LARGE_BODY_BYTES:
        base, per_connection = (80 if concurrency == 1 else 150), 1
    else:
        base, per_connection = (500 if concurrency == 1 else 1500), 3
    return max(1, round(scale * max(base, per_connection * concurrency)))


def format_bytes(size: int) -> str:
    """``100 B``, ``64 KiB``, ``1 MiB``: the table's body column."""
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"


@dataclass(frozen=True, slots=True)
class ScalingRow:
    """One row's conditions and load."""

    concurrency: int
    hosts: int
    body_bytes: int
    fault: str
    requests: int

    @property
    def limit_per_host(self) -> int:
        """The per-host concurrency the load driver keeps to (see the module docstring)."""
        if self.concurrency >= self.hosts:
            return math.ceil(self.concurrency / self.hosts)
        return self.concurrency

    @property
    def settings(self) -> ClientSettings:
        """Both clients' settings: no total limit, the per-host concurrency, chunked reads."""
        return ClientSettings(
            limit=0, limit_per_host=self.limit_per_host, read_chunk_bytes=CHUNK_BYTES
        )

    @property
    def label(self) -> str:
        """``c=64 hosts=50 100 B none``: the progress lines' name for the row."""
        body = format_bytes(self.body_bytes)
        return f"c={self.concurrency} hosts={self.hosts} {body} {self.fault}"


@dataclass
class ScalingResult:
    """One measured row: both variants' runs, ratios taken against the reference."""

    row: ScalingRow
    rounds: int
    variants: dict[str, VariantResult]

    @property
    def sdk(self) -> VariantResult:
        """``sdk_plain``'s runs; its ratios are to ``aiohttp_same_timeouts`` of the same round."""
        return self.variants[SDK]

    @property
    def status(self) -> RowStatus:
        """Met when the median per-round ratio reaches the goal."""
        sdk = self.sdk
        if sdk.unavailable is not None or not sdk.ratios or not self.variants[REFERENCE].runs:
            return "unavailable"
        return "met" if sdk.ratio >= SCALING_GOAL else "missed"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready row: conditions, the medians the goal reads, then both variants."""
        row, sdk = self.row, self.sdk
        return {
            "concurrency": row.concurrency,
            "hosts": row.hosts,
            "body_bytes": row.body_bytes,
            "fault": row.fault,
            "requests": row.requests,
            "rounds": self.rounds,
            "limit_per_host": row.limit_per_host,
            "ratio_median": sdk.ratio,
            "ratios": sdk.ratios,
            "cpu_ratio_median": sdk.cpu_ratio,
            "cpu_ratios": sdk.cpu_ratios,
            "goal": f"{SDK} >= {SCALING_GOAL:.2f}x {REFERENCE}",
            "status": self.status,
            "variants": {name: result.to_dict() for name, result in self.variants.items()},
        }


def build_rows(
    concurrencies: Iterable[int],
    host_counts: Iterable[int],
    body_sizes: Iterable[int],
    faults: Iterable[str],
    scale: float = 1.0,
) -> list[ScalingRow]:
    """Every combination, grouped by upstream (fault, then hosts) so that each group shares
    one upstream process, then by concurrency and body size."""
    return [
        ScalingRow(concurrency, hosts, body, fault, row_requests(concurrency, body, scale))
        for fault, hosts, concurrency, body in product(
            faults, host_counts, concurrencies, body_sizes
        )
    ]


async def run_scaling(
    rows: Sequence[ScalingRow],
    rounds: int,
    isolation: Isolation,
    progress: Callable[[str], None],
) -> list[ScalingResult]:
    """Measure every row: one upstream per (fault, hosts) group, rows in order on it."""
    results: list[ScalingResult] = []
    groups: dict[tuple[str, int], list[ScalingRow]] = {}
    for row in rows:
        groups.setdefault((row.fault, row.hosts), []).append(row)
    for (fault, hosts), group in groups.items():
        with UpstreamServer(FAULT_FLAGS[fault], hosts=hosts) as server:
            for row in group:
                plan = RunPlan(
                    requests=row.requests,
                    concurrency=row.concurrency,
                    rounds=rounds,
                    # Code paths warm up once per row and client settings; the timed runs
                    # each build a fresh client, so nothing else carries over.
                    warmup=min(WARMUP_MAX, max(1, row.requests // WARMUP_SHARE)),
                    time_cap_s=SCALING_TIME_CAP_S,
                    isolation=isolation,
                    path=f"/bytes/{row.body_bytes}",
                    client=row.settings,
                )
                label = f"scaling {row.label}"
                variants = await run_rounds(server, [SDK], plan, progress, label, REFERENCE)
                results.append(ScalingResult(row, rounds, variants))
    return results
