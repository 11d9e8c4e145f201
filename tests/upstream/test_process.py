"""Fault plans on the command line, and the upstream as a separate process: the plan survives
`plan_to_args`/`parse_plan_args`, invalid plans are refused, `UpstreamProcess` reports its
statistics, and `python -m resilient_http.upstream` prints its port and exits cleanly on a signal.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from typing import Any

import aiohttp
import pytest

from resilient_http.upstream import (
    FaultPlan,
    Latency,
    Outage,
    RateLimit,
    RetryAfter,
    Script,
    SlowBody,
    Throttle,
    UpstreamProcess,
    UpstreamStats,
    parse_plan_args,
    plan_to_args,
)
from tests.upstream.conftest import get_status

# -- plans and the subprocess ----------------------------------------------------------------------


def test_plan_survives_the_command_line() -> None:
    plan = FaultPlan(
        seed=5,
        latency=Latency.lognormal(0.01, 0.7),
        stale_after=(1, 3),
        stale_mode="reset",
        idle_timeout=2.5,
        stale_idle=0.75,
        close_after=4,
        capacity=8,
        capacity_retry_after=RetryAfter("http-date", 2),
        reset_probability=0.01,
        reset_mid_body_probability=0.02,
        hang_probability=0.001,
        throttle=Throttle(status=429, probability=0.1, first=2, every=10, repeat=False),
        scripts=(Script((503, "reset", 200), path="/a", per_client=True), Script(("hang",))),
        rate_limit=RateLimit(rate=50, burst=5, retry_after="http-date"),
        slow_body=SlowBody(chunks=2, delay=0.01, probability=0.5),
        client_id_header="X-Tenant",
        echo=False,
        outage=Outage("hang", 0.5, 3.0),
    )
    assert parse_plan_args(plan_to_args(plan))[3] == plan
    assert parse_plan_args([])[3] == FaultPlan()


def test_a_long_tail_survives_the_command_line() -> None:
    plan = FaultPlan(latency=Latency.tail(0.001, 1.0, 0.01))
    assert parse_plan_args(plan_to_args(plan))[3] == plan


async def test_stats_wait_out_a_refuse_outage() -> None:
    # The outage starts with the first request and refuses every connect, the control
    # requests' too: reading the counters waits until the upstream is back.
    plan = FaultPlan(outage=Outage("refuse", 0.0, 0.3))
    async with UpstreamProcess(plan) as upstream, aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await get_status(session, upstream.make_url("/"))
        stats = await upstream.stats()
    assert (stats.outage_closes, stats.outages_begun, stats.outages_ended) == (1, 1, 1)


def test_throttle_repeat_text_form() -> None:
    throttle = Throttle.parse("probability=0.05,retry_after=none,repeat=false")
    assert throttle == Throttle(probability=0.05, retry_after=RetryAfter("none"), repeat=False)
    assert str(throttle).endswith(",repeat=false")
    assert Throttle.parse(str(throttle)) == throttle
    assert Throttle.parse("repeat=TRUE") == Throttle.parse("") == Throttle()
    with pytest.raises(ValueError, match="repeat must be true or false"):
        Throttle.parse("repeat=no")
    with pytest.raises(SystemExit) as exited:
        parse_plan_args(["--throttle", "first=1,repeat=maybe"])
    assert exited.value.code == 2


@pytest.mark.parametrize(
    "changes",
    [
        {"reset_probability": 1.5},
        {"stale_after": 0},
        {"stale_after": (3, 1)},
        {"idle_timeout": 0},
        {"stale_idle": 0},
        {"close_after": 0},
        {"capacity": 0},
        {"stale_mode": "explode"},
        {"client_id_header": ""},
    ],
)
def test_plan_validation(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        FaultPlan().replace(**changes)


async def test_subprocess_serves_and_reports_stats() -> None:
    async with asyncio.timeout(60):
        process = UpstreamProcess(FaultPlan(stale_after=1))
        async with process, aiohttp.ClientSession() as client:
            for _ in range(3):
                assert await get_status(client, process.make_url("/p")) == 200
            stats = await process.stats(log=True)
            assert isinstance(stats, UpstreamStats)
            assert (stats.requests, stats.responses, stats.stale_closes) == (5, 3, 2)
            assert stats.requests_by_route == {"GET /p": 5}
            assert len(stats.request_log) == 5
            await process.reset_stats()
            assert (await process.stats()).requests == 0
        assert process.returncode == 0


async def test_the_child_has_its_own_process_group_and_stops_with_its_parents_pipe() -> None:
    async with asyncio.timeout(60):
        process = UpstreamProcess()
        async with process, aiohttp.ClientSession() as client:
            child = process._process
            assert child is not None
            assert child.stdin is not None
            # A terminal's Ctrl-C goes to this process's group; the child has a group of its own.
            assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
            assert await get_status(client, process.make_url("/")) == 200
            # The parent gone (its end of the pipe closed): the child stops by itself.
            child.stdin.close()
            assert await child.wait() == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_cli_prints_the_port_and_exits_cleanly(signum: signal.Signals) -> None:
    async with asyncio.timeout(60):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "resilient_http.upstream",
            "--port",
            "0",
            "--throttle",
            "first=1",
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        line = (await child.stdout.readline()).decode()
        match = re.fullmatch(r"listening 127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        async with aiohttp.ClientSession() as client:
            url = f"http://127.0.0.1:{match[1]}/"
            assert [await get_status(client, url) for _ in range(2)] == [503, 200]
            async with client.get(url + "__stats__") as resp:
                assert json.loads(await resp.read())["responses_by_status"] == {"503": 1, "200": 1}
        child.send_signal(signum)
        out, _ = await child.communicate()
        assert (child.returncode, out) == (0, b"")
