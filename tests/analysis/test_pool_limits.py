"""Pool limits as the analysis reads them from the SDK's own gauge: per pool, per upstream.

Two real sessions with different per-host limits call one real upstream; the gauge is exported
to an OTLP JSON file by the SDK's exporter and read back by ``analyze_paths``.
"""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

import resilient_http as rh
from resilient_http.analysis.analyze import analyze_paths
from resilient_http.telemetry.otlp_file import OTLPJsonFileMetricExporter
from resilient_http.upstream import FaultPlan, FaultyUpstream

# Longer than any test: metrics are exported by the explicit flush only.
NEVER_MS = 3_600_000


async def test_an_unlimited_pool_is_not_lost_among_limited_ones(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    reader = PeriodicExportingMetricReader(
        OTLPJsonFileMetricExporter(str(path)), export_interval_millis=NEVER_MS
    )
    provider = MeterProvider(metric_readers=[reader])
    unlimited = rh.ClientConfig(limit=0, limit_per_host=0)
    limited = rh.ClientConfig(limit=20, limit_per_host=4)
    async with (
        FaultyUpstream(FaultPlan()) as upstream,
        FaultyUpstream(FaultPlan()) as other,
        rh.ResilientSession(config=unlimited, meter_provider=provider) as a,
        rh.ResilientSession(config=limited, meter_provider=provider) as b,
    ):
        for client, url in ((a, upstream.make_url()), (b, upstream.make_url())):
            async with client.get(url) as resp:
                await resp.read()
        async with b.get(other.make_url()) as resp:  # only the limited pool calls it
            await resp.read()
        provider.force_flush()
    provider.shutdown()
    limits = analyze_paths([path]).limits
    shared = limits.for_upstream(f"127.0.0.1:{upstream.port}")
    alone = limits.for_upstream(f"127.0.0.1:{other.port}")
    assert (shared.limit, shared.limit_per_host, shared.pools) == (0, 0, 2)
    assert (alone.limit, alone.limit_per_host, alone.pools) == (20, 4, 1)
    assert (limits.limit, limits.limit_per_host, limits.pools) == (0, 0, 2)
