"""``analyze --prometheus`` on a synthetic fleet: how long it takes, and how much memory.

``python -m benchmarks.prometheus_fleet [--services 200] [--upstreams 50] [--hours 1]
[--interval 15s] [--keep DIR]`` writes the fleet's series as OpenMetrics text (every service
calls every upstream: logical-call, attempt and pool-wait histograms with the SDK's 14 duration
buckets, retries, acquisitions, open connections, pool limits, with the labels the collector's
exporter writes), backfills it into a TSDB with ``promtool tsdb create-blocks-from
openmetrics``, starts Debian's ``prometheus`` on it and times ``resilient-http analyze
--prometheus URL --since 1h --json`` in a child process. It then checks that the report counts
exactly the calls the generator made (every series starts inside the hour, so from zero), and
prints one JSON line: series, samples, backfill seconds, analyze seconds, the analysis's peak RSS
and Prometheus's. Needs ``prometheus`` and ``promtool`` (``make promtool``); not part of
``make bench`` (the backfill alone writes gigabytes at full size).

The hour ends when the generator starts; ``--since`` covers the hour plus the minutes the
generator and the backfill took (``--since`` counts back from the moment of the query).

With ``--keep DIR`` the blocks stay in ``DIR/data`` and what was generated is noted in
``DIR/fleet.json``; a later run with the same ``--keep DIR`` and the same fleet flags queries
those blocks again instead of generating and backfilling them anew (minutes at full size), so
the analysis can be timed again and again (``--since`` then reaches back to the kept hour).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from resilient_http.analysis.promql import BASELINE_LOOKBACK_S, recorded_name
from resilient_http.analysis.recording_rules import INTERVAL_S

__all__ = ["main"]

_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
_SCOPE = 'otel_scope_name="resilient_http"'
_READY_SAFETY_NET_S = 300.0
# Recorded lines held in memory before they go to the side file.
_RECORDED_BUFFER = 200_000
# What a run with --keep generated, next to its blocks (see the module docstring).
_FLEET_NOTE = "fleet.json"


def main(argv: list[str] | None = None) -> int:
    """Generate, backfill, query; print the figures as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prometheus_fleet")
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--upstreams", type=int, default=50)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--interval", type=int, default=15, help="seconds between samples")
    parser.add_argument(
        "--keep",
        type=Path,
        help="work in this folder and keep it (a later run with the same flags reuses its blocks)",
    )
    args = parser.parse_args(argv)
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus is None or promtool is None:
        print("needs Debian's prometheus package (make promtool)", file=sys.stderr)
        return 2
    folder = args.keep or Path(tempfile.mkdtemp(prefix="fleet-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        kept = _kept_fleet(args, folder)
        fleet = kept or _backfilled_fleet(args, folder, promtool)
        figures = {**fleet, "reused_blocks": kept is not None}
        figures.update(_timed_analyses(args, folder, prometheus, fleet["end"]))
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(figures))
    return 0 if figures["counts_exact"] and figures["recorded_counts_exact"] else 1


def _fleet_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "services": args.services,
        "upstreams": args.upstreams,
        "hours": args.hours,
        "interval_s": args.interval,
    }


def _kept_fleet(args: argparse.Namespace, folder: Path) -> dict[str, Any] | None:
    """What a previous run with ``--keep`` generated into ``folder`` with the same flags (its
    blocks are in ``folder/data``), or None."""
    noted = folder / _FLEET_NOTE
    if args.keep is None or not noted.exists() or not (folder / "data").is_dir():
        return None
    fleet: dict[str, Any] = json.loads(noted.read_text())
    flags = _fleet_flags(args)
    return fleet if {k: fleet.get(k) for k in flags} == flags else None


def _backfilled_fleet(args: argparse.Namespace, folder: Path, promtool: str) -> dict[str, Any]:
    """Generate the fleet and backfill it into ``folder/data``; what was generated."""
    began = time.time()
    shutil.rmtree(folder / "data", ignore_errors=True)
    (folder / _FLEET_NOTE).unlink(missing_ok=True)
    source = folder / "fleet.om"
    with source.open("w") as out:
        # The hour ends a few minutes ago: the rules' last evaluations over it are past too.
        end = began - 3 * INTERVAL_S
        series, samples, calls = _write_fleet(
            out, args.services, args.upstreams, end - args.hours * 3600, end, args.interval
        )
    generated = time.time()
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(folder / "data")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    backfilled = time.time()
    source.unlink()  # gigabytes: not needed once the blocks are written
    fleet = {
        **_fleet_flags(args),
        "end": end,
        "series": series,
        "samples": samples,
        "calls": calls,
        "generate_s": round(generated - began, 1),
        "backfill_s": round(backfilled - generated, 1),
    }
    (folder / _FLEET_NOTE).write_text(json.dumps(fleet))
    return fleet


def _timed_analyses(
    args: argparse.Namespace, folder: Path, prometheus: str, end: float
) -> dict[str, Any]:
    """Start Prometheus on the blocks, time the analysis exact and ``--recorded``."""
    port = _free_port()
    config = folder / "prometheus.yml"
    config.write_text("global:\n  evaluation_interval: 15s\nscrape_configs: []\n")
    with (folder / "prometheus.log").open("wb") as log:
        server = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=10y",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _until_ready(url, server)
            since = f"{int(time.time() - end + args.hours * 3600) + 60}s"
            report, seconds, rss_kb = _analyze(url, since, recorded=False)
            recorded, recorded_seconds, recorded_rss_kb = _analyze(url, since, recorded=True)
            prometheus_rss_kb = _peak_rss_kb(server.pid)
        finally:
            server.terminate()
            server.wait()
    calls = json.loads((folder / _FLEET_NOTE).read_text())["calls"]
    counted = sum(u["requests"] for u in report["upstreams"])
    counted_recorded = sum(u["requests"] for u in recorded["upstreams"])
    return {
        "analyze_s": round(seconds, 2),
        "analyze_peak_rss_mb": round(rss_kb / 1024, 1),
        "recorded_analyze_s": round(recorded_seconds, 2),
        "recorded_analyze_peak_rss_mb": round(recorded_rss_kb / 1024, 1),
        "prometheus_peak_rss_mb": round(prometheus_rss_kb / 1024, 1),
        "report_services": len(report["services"]),
        "report_upstreams": len(report["upstreams"]),
        "counts_exact": counted == calls,
        "recorded_counts_exact": counted_recorded == calls,
    }


def _write_fleet(
    out: IO[str], services: int, upstreams: int, start: float, end: float, interval: int
) -> tuple[int, int, int]:
    """The fleet as OpenMetrics text, family by family; (series, samples, calls made)."""
    rng = random.Random(18)
    # Recorded samples wait in a side file until the raw families are written (OpenMetrics
    # wants each family in one piece).
    sides: dict[str, IO[str]] = {}  # closed (and deleted) at the end
    recorded_side: dict[str, list[str]] = {}
    times = [start + i * interval for i in range(int((end - start) // interval) + 1)]
    pairs = [(s, u) for s in range(services) for u in range(upstreams)]
    # Calls per sample interval and a latency profile per pair: some slow, some throttled.
    rates = {pair: rng.randint(1, 20) for pair in pairs}
    slow = {pair: rng.random() < 0.1 for pair in pairs}
    throttled = {pair: rng.random() < 0.1 for pair in pairs}
    series = samples = calls = 0

    def emit(name: str, labels: str, values: Iterator[float]) -> None:
        nonlocal series, samples
        series += 1
        for at, value in zip(times, values, strict=False):
            out.write(f"{name}{{{labels}}} {value:g} {at:.3f}\n")
            samples += 1

    def emit_counter(name: str, labels: str, per_step: float) -> None:
        """A counter series, and what the recording rules would record from it."""
        nonlocal series, samples
        emit(name, labels, cumulative(per_step))
        recorded_labels = labels.replace(f",{_instance_label(labels)}", "")
        recorded = recorded_side.setdefault(recorded_name(name), [])
        for at, value in _recorded(times, list(cumulative(per_step)), interval):
            recorded.append(f"{{{recorded_labels}}} {value:g} {at:.3f}\n")
            samples += 1
        series += 1
        if sum(len(lines) for lines in recorded_side.values()) > _RECORDED_BUFFER:
            _flush(sides, recorded_side)

    def base(pair: tuple[int, int]) -> str:
        service, upstream = pair
        return (
            f'job="svc-{service:03d}",instance="10.0.{service // 250}.{service % 250}:9464",'
            f'server_address="upstream-{upstream:02d}.internal",server_port="443"'
        )

    def cumulative(per_step: float) -> Iterator[float]:
        # The first sample is already above 0: the process started before its first scrape.
        total = per_step
        for _ in times:
            yield total
            total += per_step

    for family, scope in (
        ("resilient_http_request_duration_seconds", ""),
        ("http_client_request_duration_seconds", _SCOPE),
    ):
        out.write(f"# TYPE {family} histogram\n")
        for pair in pairs:
            labels = f'{base(pair)},http_request_method="GET",http_response_status_code="200"'
            labels += f",{scope}" if scope else ""
            shares = _latency_shares(slow[pair])
            for bound, share in zip((*_BOUNDS, float("inf")), shares, strict=True):
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                emit_counter(f"{family}_bucket", f'{labels},le="{le}"', rates[pair] * share)
            if family.startswith("resilient_http"):
                calls += rates[pair] * len(times)
    out.write("# TYPE resilient_http_pool_wait_duration_seconds histogram\n")
    for pair in pairs:
        if slow[pair]:  # only the slow upstreams queue for connections
            shares = _latency_shares(True)
            for bound, share in zip((*_BOUNDS, float("inf")), shares, strict=True):
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                labels = f'{base(pair)},le="{le}"'
                emit_counter(
                    "resilient_http_pool_wait_duration_seconds_bucket",
                    labels,
                    rates[pair] * share / 2,
                )
    out.write("# TYPE resilient_http_retries counter\n")
    for pair in pairs:
        if throttled[pair]:
            labels = f'{base(pair)},http_request_method="GET"'
            labels += ',resilient_http_retry_reason="throttled"'
            emit_counter("resilient_http_retries_total", labels, rates[pair] / 4)
    out.write("# TYPE resilient_http_connection_acquired counter\n")
    for pair in pairs:
        for reused, share in (("true", 0.95), ("false", 0.05)):
            labels = f'{base(pair)},resilient_http_connection_reused="{reused}"'
            emit_counter("resilient_http_connection_acquired_total", labels, rates[pair] * share)
    out.write("# TYPE http_client_open_connections gauge\n")
    for pair in pairs:
        for state in ("active", "idle"):
            labels = f'{base(pair)},http_connection_state="{state}",{_SCOPE}'
            emit("http_client_open_connections", labels, (rng.randint(0, 10) for _ in times))
    out.write("# TYPE resilient_http_pool_limit gauge\n")
    for service in range(services):
        for scope, limit in (("total", 100), ("per_host", 10)):
            labels = f'job="svc-{service:03d}",resilient_http_pool_limit_scope="{scope}"'
            emit("resilient_http_pool_limit", labels, (limit for _ in times))
    _flush(sides, recorded_side)
    for name, side in sides.items():  # the recorded series, family by family
        out.write(f"# TYPE {name} unknown\n")
        side.seek(0)
        out.writelines(name + line for line in side)
        side.close()
    out.write("# EOF\n")
    return series, samples, calls


def _recorded(
    times: list[float], values: list[float], interval: int
) -> Iterator[tuple[float, float]]:
    """What ``recording_rules.render_rules()`` records from one counter series sampled every
    ``interval`` seconds from ``times[0]``: at each minute t, the last value in (t - 90 s,
    t - 30 s] minus the last in (t - 390 s, t - 90 s], or that value itself for a new series."""
    step, first = INTERVAL_S, times[0]

    def last_index(at_or_before: float, after: float) -> int | None:
        index = min(math.floor((at_or_before - first) / interval), len(times) - 1)
        return index if index >= 0 and times[index] > after else None

    evaluation = first + step
    while evaluation <= times[-1] + step * 2:
        last = last_index(evaluation - step / 2, evaluation - 1.5 * step)
        if last is not None:
            before = last_index(
                evaluation - 1.5 * step, evaluation - 1.5 * step - BASELINE_LOOKBACK_S
            )
            value, baseline = values[last], None if before is None else values[before]
            yield evaluation, value if baseline is None or value < baseline else value - baseline
        evaluation += step


def _flush(sides: dict[str, IO[str]], recorded: dict[str, list[str]]) -> None:
    for name, lines in recorded.items():
        sides.setdefault(name, tempfile.TemporaryFile("w+")).writelines(lines)  # noqa: SIM115
        lines.clear()


def _instance_label(labels: str) -> str:
    start = labels.index("instance=")
    end = labels.index('"', labels.index('"', start) + 1) + 1
    return labels[start:end]


def _latency_shares(slow: bool) -> list[float]:
    """Cumulative shares of calls at or below each bound (and +Inf)."""
    per_bucket = [1, 2, 6, 10, 8, 6, 4, 2, 1, 0.5, 0.3, 0.1, 0.05, 0.03, 0.02]
    if slow:
        per_bucket = per_bucket[6:] + [0.0] * 6
        per_bucket[-1] = 0.5
    total = sum(per_bucket)
    shares, running = [], 0.0
    for weight in per_bucket:
        running += weight / total
        shares.append(min(running, 1.0))
    shares[-1] = 1.0
    return shares


def _analyze(url: str, since: str, *, recorded: bool) -> tuple[dict[str, Any], float, int]:
    """Run the analysis in a child; (report, seconds, the child's peak RSS in KiB)."""
    code = (
        "import json, sys, time\n"
        "from resilient_http.analysis.prometheus import analyze_prometheus, fleet_json\n"
        "t = time.perf_counter()\n"
        "fleet = analyze_prometheus(sys.argv[1], sys.argv[2], recorded=sys.argv[3] == 'yes')\n"
        "report = fleet_json(fleet)\n"
        "seconds = time.perf_counter() - t\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(json.dumps({'report': report, 'seconds': seconds, 'rss_kb': int(hwm)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, url, since, "yes" if recorded else "no"],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(done.stdout)
    return result["report"], result["seconds"], result["rss_kb"]


def _peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM"):
                return int(line.split()[1])
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _until_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _READY_SAFETY_NET_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("prometheus exited before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass  # not listening yet
        time.sleep(0.1)  # spaces the readiness probes out; the probe is the wait
    raise RuntimeError("prometheus was not ready in time")


if __name__ == "__main__":
    os.environ.pop("RESILIENT_HTTP_TELEMETRY_FILE", None)
    raise SystemExit(main())
