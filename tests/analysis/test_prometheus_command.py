"""``analyze --prometheus`` on data backfilled with ``promtool`` (counters that existed before
the range, started inside it, or reset in it), and its one-line errors."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from resilient_http.analysis import names, prometheus
from resilient_http.analysis.command import add_arguments
from resilient_http.analysis.prometheus_arguments import QUERY_TIMEOUT_S, parse_duration
from resilient_http.analysis.prometheus_streams import HOST, row_identity
from resilient_http.analysis.promql import (
    PrometheusError,
    all_of,
    exact_increase,
    request_headers,
)
from tests.helpers import clean_environ, run_python
from tests.prometheus_server import free_port, prometheus_binary, running_prometheus
from tests.servers import serving

ROOT = Path(__file__).resolve().parents[2]
RETRIES = "resilient_http_retries_total"
PASSWORD = "s3cret"
TENANT = "X-Scope-OrgID"


def test_exact_increase_counts_from_the_baseline_and_across_resets() -> None:
    start = 100.0
    assert exact_increase([(90, 10), (110, 12), (130, 15)], start) == 5  # baseline 10
    assert exact_increase([(110, 3), (130, 7)], start) == 7  # started inside: from zero
    assert exact_increase([(95, 4), (110, 9), (120, 2), (130, 5)], start) == 5 + 2 + 3
    assert exact_increase([(90, 10)], start) == 0  # nothing inside the range


# Past what Prometheus takes (292 years), and past a float (and int()'s 4300 digits).
TOO_LONG = ["293y", "1" + "0" * 300 + "s", "9" * 5000 + "d"]


@pytest.mark.parametrize(
    "text", ["", "1", "h", "5 m", "0s", "1h-5m", "1.5h", "1d1d", "30s1m", "\u0661h", *TOO_LONG]
)
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"^--since '.*': .*(duration|Prometheus allows)"):
        parse_duration(text)


def test_durations_are_prometheus_durations() -> None:
    assert parse_duration("30s") == 30
    assert parse_duration("1h30m") == 5400
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1y2w3d4h5m6s7ms") == 31536000 + 2 * 604800 + 3 * 86400 + 14706.007
    assert parse_duration("292y") == 292 * 31536000


@pytest.mark.parametrize(
    ("url", "given", "sent"),
    [
        ("http://127.0.0.1:9090", [], [("Accept-Encoding", "identity")]),
        ("http://[::1]:9090/prometheus", [], [("Accept-Encoding", "identity")]),
        (
            "http://localhost:9090",
            [(TENANT, "t")],
            [(TENANT, "t"), ("Accept-Encoding", "identity")],
        ),
        ("https://mimir.example:8080/prometheus", [(TENANT, "t")], [(TENANT, "t")]),
        ("http://127.0.0.1:9090", [("accept-encoding", "gzip")], [("accept-encoding", "gzip")]),
    ],
)
def test_answers_are_asked_uncompressed_only_from_this_machine(
    url: str, given: list[tuple[str, str]], sent: list[tuple[str, str]]
) -> None:
    assert request_headers(url, given) == sent


def _openmetrics(now: float) -> str:
    """Four retry counters and the call histogram of one service (range: the last 10
    minutes), and a retry counter of another."""

    def series(reason: str, job: str, points: list[tuple[float, float]]) -> str:
        labels = (
            f'job="{job}",server_address="api.example",server_port="443",'
            f'resilient_http_retry_reason="{reason}"'
        )
        return "".join(f"{RETRIES}{{{labels}}} {v} {now - ago:.3f}\n" for ago, v in points)

    def buckets(le: str, points: list[tuple[float, float]]) -> str:
        labels = f'job="checkout",server_address="api.example",server_port="443",le="{le}"'
        name = "resilient_http_request_duration_seconds_bucket"
        return "".join(f"{name}{{{labels}}} {v} {now - ago:.3f}\n" for ago, v in points)

    minute = 60.0
    return (
        "# TYPE resilient_http_retries counter\n"
        # Existed before the range (10 at 12 min ago): counts 15 - 10.
        + series("throttled", "checkout", [(12 * minute, 10), (9 * minute, 12), (minute, 15)])
        # Started inside the range: counts from zero.
        + series("timeout", "checkout", [(8 * minute, 3), (2 * minute, 7)])
        # Reset inside the range (a restarted process): 9 - 4, then 2, then 5 - 2.
        + series(
            "connection_closed",
            "checkout",
            [(12 * minute, 4), (8 * minute, 9), (6 * minute, 2), (3 * minute, 5)],
        )
        + series("throttled", "search.v2", [(5 * minute, 1), (minute, 4)])
        # Ended before the range (its last sample within the baseline's 5 minutes): counts 0.
        + series("server_error", "checkout", [(14 * minute, 3), (11 * minute, 6)])
        # Calls of checkout, whose process restarted (its buckets reset): 0.1 s and +Inf.
        + "# TYPE resilient_http_request_duration_seconds histogram\n"
        + buckets("0.1", [(12 * minute, 10), (8 * minute, 15), (6 * minute, 2), (3 * minute, 5)])
        + buckets("+Inf", [(12 * minute, 20), (8 * minute, 30), (6 * minute, 4), (3 * minute, 9)])
        + _resilience(now)
        + "# EOF\n"
    )


def _resilience(now: float) -> str:
    """The breaker, hedges and concurrency limit on the same upstream: checkout's breaker
    opened (its state gauge named as the collector names it), search.v2's did not (named as
    opentelemetry-exporter-prometheus names it); checkout's limit went 20 -> 12 -> 8 -> 14 ->
    16, search.v2's stayed at 10."""
    minute = 60.0

    def emit(name: str, job: str, labels: str, points: list[tuple[float, float]]) -> str:
        labels = f'job="{job}",server_address="api.example",server_port="443"{labels}'
        return "".join(f"{name}{{{labels}}} {v} {now - ago * minute:.3f}\n" for ago, v in points)

    state = ',resilient_http_breaker_state="{}"'.format
    outcome = ',http_request_method="GET",resilient_http_hedge_outcome="{}"'.format
    hedges = "resilient_http_hedges_total"
    limit = "resilient_http_concurrency_limit"
    return (
        "# TYPE resilient_http_breaker_state_ratio gauge\n"
        + emit("resilient_http_breaker_state_ratio", "checkout", state("open"),
               [(9, 0), (6, 1), (3, 0)])
        + emit("resilient_http_breaker_state_ratio", "checkout", state("closed"),
               [(9, 1), (6, 0), (3, 1)])
        + "# TYPE resilient_http_breaker_state gauge\n"
        + emit("resilient_http_breaker_state", "search.v2", state("open"), [(8, 0), (2, 0)])
        + "# TYPE resilient_http_breaker_rejected counter\n"
        # 2 before the range: counts 14 - 2.
        + emit("resilient_http_breaker_rejected_total", "checkout", ',http_request_method="GET"',
               [(12, 2), (5, 9), (1, 14)])
        + "# TYPE resilient_http_hedges counter\n"
        + emit(hedges, "checkout", outcome("won"), [(12, 4), (1, 7)])
        + emit(hedges, "search.v2", outcome("won"), [(8, 3), (2, 5)])
        + emit(hedges, "search.v2", outcome("lost"), [(8, 1), (2, 2)])
        + "# TYPE resilient_http_concurrency_limit gauge\n"
        + emit(limit, "checkout", "", [(9, 20), (7, 12), (5, 8), (1.5, 14), (1, 16)])
        + emit(limit, "search.v2", "", [(8, 10), (2, 10)])
    )  # fmt: skip


def _write_fleet(folder: Path) -> tuple[Path, Path]:
    source = folder / "fleet.om"
    source.write_text(_openmetrics(time.time()))
    return source, folder / "data"


@pytest.fixture
async def backfilled(tmp_path: Path) -> AsyncIterator[str]:
    """A real Prometheus on ``_openmetrics``'s series, backfilled with promtool: its URL."""
    prometheus_binary()
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (make promtool installs it)")
    source, data = _write_fleet(tmp_path)
    process = await asyncio.create_subprocess_exec(
        promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(120):  # a safety net only
        output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    config = "global:\n  scrape_interval: 1m\nscrape_configs: []\n"
    async with running_prometheus(config, tmp_path / "prometheus", data=data) as url:
        yield url


async def test_counts_are_exact_on_backfilled_data(
    backfilled: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = backfilled
    code, out, err = await _analyze("--prometheus", url, "--since", "10m", "--json")
    assert code == 0, err
    report = json.loads(out)
    code, out, err = await _analyze(
        "--prometheus", url, "--since", "10m", "--selector", '{job="search.v2"}', "--json"
    )
    assert code == 0, err
    selected = json.loads(out)
    # --recorded needs the recording rules' series, which this Prometheus has not.
    code, _out, without_rules = await _analyze("--prometheus", url, "--recorded")
    assert code == 1
    # One job per group of queries: the same report (job names are regex-escaped), the whole
    # fleet's summed over the groups as they come.
    monkeypatch.setattr(prometheus, "JOBS_PER_SHARD", 1)
    sharded = prometheus.fleet_json(
        await asyncio.to_thread(prometheus.analyze_prometheus, url, "10m")
    )
    for key in ("services", "upstreams", "recommendations", "pool_limits"):
        assert sharded[key] == report[key], key
    (row,) = report["upstreams"]
    assert (row["server.address"], row["server.port"]) == ("api.example", 443)
    assert row["retries"] == {"connection_closed": 10, "throttled": 5 + 4, "timeout": 7}
    # 30 - 20, then 4 after the reset, then 9 - 4; 5 + 2 + 3 of them within 0.1 s.
    assert (row["requests"], row["latency_ms"]["p50"]) == (
        10 + 4 + 5,
        pytest.approx(100 * 9.5 / 10),
    )
    services = {s["job"]: s["upstreams"][0]["retries"] for s in report["services"]}
    assert services == {
        "checkout": {"connection_closed": 10, "throttled": 5, "timeout": 7},
        "search.v2": {"throttled": 4},
    }
    assert "load otel-collector/recording-rules.yml" in without_rules
    _resilience_is_reported(report)
    assert selected["upstreams"][0]["retries"] == {"throttled": 4}
    assert [s["job"] for s in selected["services"]] == ["search.v2"]
    assert selected["prometheus"]["selector"] == '{job="search.v2"}'


def _resilience_is_reported(report: dict[str, Any]) -> None:
    """``_resilience``'s figures, per service and over the fleet (hedges summed; the breaker
    opened if it did in any job; the limit the tightest in force)."""
    (row,) = report["upstreams"]
    jobs = {s["job"]: s["upstreams"][0] for s in report["services"]}
    checkout, search = jobs["checkout"], jobs["search.v2"]
    assert checkout["breaker"] == {"rejected": 14 - 2, "opened": True}
    assert search["breaker"] == {"rejected": None, "opened": False}
    assert row["breaker"] == {"rejected": 12, "opened": True}
    assert (checkout["hedges"], search["hedges"]) == ({"won": 3}, {"lost": 2, "won": 5})
    assert row["hedges"] == {"lost": 2, "won": 3 + 5}
    assert checkout["concurrency_limit"] == {"low": 8, "last": 16}
    assert search["concurrency_limit"] == {"low": 10, "last": 10}
    assert row["concurrency_limit"] == {"low": 8, "last": 10}
    # Told in 8 time slices of the 8 minutes from the first point: 14, 1.5 minutes ago, shares
    # the last slice with 16. The points are a subquery's steps, aligned to multiples of its
    # step (about 19 s) rather than to the data: times within a step or two, and the slices'
    # edges move by up to a step, which 14's 30 s inside the last slice allows for.
    over_time = checkout["concurrency_limit_over_time"]
    assert [p["limit"] for p in over_time] == [20, 12, 8, 16]
    assert [p["t_s"] for p in over_time] == [
        0,
        pytest.approx(120, abs=40),
        pytest.approx(240, abs=40),
        pytest.approx(480, abs=40),
    ]
    assert search["concurrency_limit_over_time"] == [{"t_s": 0, "limit": 10}]
    assert [p["limit"] for p in row["concurrency_limit_over_time"]] == [10, 8, 10]


async def _analyze(*args: str) -> tuple[int, str, str]:
    return await run_python("-m", "resilient_http", "analyze", *args, cwd=ROOT, env=clean_environ())


async def test_the_text_report_says_which_prometheus_range_and_selector_it_read(
    backfilled: str,
) -> None:
    selector = '{job=~"checkout|search.v2"}'
    # Credentials in the URL are sent (this Prometheus ignores them), never printed.
    with_credentials = backfilled.replace("http://", f"http://user:{PASSWORD}@")
    code, out, err = await _analyze(
        "--prometheus", with_credentials, "--since", "10m", "--selector", selector
    )
    assert code == 0, err
    assert PASSWORD not in out
    headline = re.fullmatch(
        rf"Prometheus {re.escape(backfilled)}, last 10m, selector {re.escape(selector)}, "
        r"raw series: (\d+) result rows read, 2 service\(s\)\.",
        out.splitlines()[0],
    )
    assert headline is not None, out.splitlines()[0]
    assert int(headline[1]) >= 4  # the four retry counters' rows at least
    assert "file(s)" not in out  # the file analysis's header is not the Prometheus one
    assert [line.strip(" ─") for line in out.splitlines() if "service " in line] == [
        "service checkout",
        "service search.v2",
    ]


@dataclass
class TenantProxy:
    """A reverse proxy in front of the real Prometheus that, like Mimir's gateway, answers 401
    unless the tenant and the credentials are sent; records every request it saw."""

    upstream: str
    seen: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    async def forward(self, request: web.Request) -> web.Response:
        tenant, authorization = request.headers.get(TENANT), request.headers.get("Authorization")
        self.seen.append((request.path, tenant, authorization))
        if (tenant, authorization) != ("tenant-1", "Bearer s3cret"):
            return web.Response(status=401, text="no org id")
        async with (
            ClientSession() as client,
            client.request(
                request.method,
                self.upstream + request.path,
                params=request.query,
                data=await request.post() if request.method == "POST" else None,
            ) as answer,
        ):
            return web.Response(
                status=answer.status, body=await answer.read(), content_type="application/json"
            )


async def test_headers_go_on_every_request_to_prometheus(backfilled: str) -> None:
    proxy = TenantProxy(backfilled)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.forward)
    async with serving(app) as url:
        code, _out, refused = await _analyze("--prometheus", url)
        assert proxy.seen[:1] == [("/api/v1/query", None, None)]
        proxy.seen.clear()
        code_with, out, err = await _analyze(
            "--prometheus", url, "--since", "10m", "--json",
            "--prometheus-header", f"{TENANT}: tenant-1",
            "--prometheus-header", "Authorization:Bearer s3cret",
        )  # fmt: skip
    assert code == 1
    assert f"{url} is not a Prometheus API (HTTP 401" in refused
    assert code_with == 0, err
    services = {s["job"]: s["upstreams"][0]["retries"] for s in json.loads(out)["services"]}
    assert services["search.v2"] == {"throttled": 4}
    paths = {path for path, _tenant, _auth in proxy.seen}
    assert {"/api/v1/query", "/api/v1/label/job/values"} <= paths
    assert {(tenant, auth) for _path, tenant, auth in proxy.seen} == {("tenant-1", "Bearer s3cret")}


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("X-Scope-OrgID tenant-1", "'X-Scope-OrgID'..."),
        ("Bad Name: x", "'Bad Name'"),
        (": value", "''"),
        ("Authorization: Bearer a\x01b", "'Authorization'"),
    ],
)
async def test_a_bad_header_exits_2_naming_it(header: str, named: str) -> None:
    code, out, err = await _analyze(
        "--prometheus", "http://127.0.0.1:9", "--prometheus-header", header
    )
    assert (code, out) == (2, "")
    assert err.strip().startswith(f"resilient-http analyze: error: --prometheus-header {named}")
    assert len(err.splitlines()) == 1
    assert "Bearer" not in err  # a credential is never echoed


async def test_an_unreachable_url_is_one_line_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = await _analyze("--prometheus", url)
    assert code == 1
    assert out == ""
    assert len(err.splitlines()) == 1
    assert f"cannot reach Prometheus at {url}" in err


async def test_credentials_in_the_url_are_sent_but_never_printed() -> None:
    authorizations: list[str | None] = []

    async def gateway(request: web.Request) -> web.Response:
        authorizations.append(request.headers.get("Authorization"))
        return web.Response(status=401, text="wrong password")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", gateway)
    async with serving(app) as url:
        code, _out, refused = await _analyze(
            "--prometheus", url.replace("http://", f"http://user:{PASSWORD}@") + "/"
        )
    unreachable = f"http://127.0.0.1:{free_port()}"
    code_unreachable, _out, not_reached = await _analyze(
        "--prometheus", unreachable.replace("http://", f"http://user:{PASSWORD}@")
    )
    # Sent as basic authentication (aiohttp's BasicAuth helper is deprecated from 3.14 on).
    assert authorizations == ["Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()]
    assert code == 1
    assert refused.strip().endswith(f"{url} is not a Prometheus API (HTTP 401 on /api/v1/query)")
    assert code_unreachable == 1
    assert f"cannot reach Prometheus at {unreachable}: " in not_reached
    assert PASSWORD not in refused + not_reached


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://[::1", "'http://[::1': not a URL (Invalid IPv6 URL)"),
        (f"http://user:{PASSWORD}@[::1", "'http://[::1': not a URL"),
        (f"http://user:{PASSWORD}@127.0.0.1:http/", "'http://127.0.0.1:http/': not a URL"),
        ("localhost:9090", "'localhost:9090': expected an http:// or https:// URL"),
        ("ftp://127.0.0.1/", "'ftp://127.0.0.1/': expected an http:// or https:// URL"),
    ],
)
async def test_a_malformed_url_exits_2_naming_it(url: str, named: str) -> None:
    code, out, err = await _analyze("--prometheus", url)
    assert (code, out) == (2, "")
    assert err.startswith(f"resilient-http analyze: error: --prometheus {named}")
    assert len(err.splitlines()) == 1
    assert PASSWORD not in err


async def test_a_refused_query_is_one_line() -> None:
    async def refuse(request: web.Request) -> web.Response:
        error = "parse error:\n  unexpected \x1b[31mend\x1b[0m of input\r\n"
        return web.json_response({"status": "error", "errorType": "bad_data", "error": error})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    async with serving(app) as url:
        code, _out, err = await _analyze("--prometheus", url)
    assert code == 1
    assert err == (
        f"resilient-http analyze: error: Prometheus at {url} refused a query: parse error: "
        "unexpected [31mend [0m of input\n"
    )


async def test_a_prometheus_that_never_answers_is_one_line_after_the_timeout() -> None:
    released = asyncio.Event()  # set once the command has given up

    async def hang(request: web.Request) -> web.Response:
        await released.wait()
        return web.Response(text="too late")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hang)
    async with serving(app) as url:
        try:
            code, out, err = await _analyze("--prometheus", url, "--prometheus-timeout", "0.2")
        finally:
            released.set()
    assert (code, out) == (1, "")
    assert err == (
        f"resilient-http analyze: error: no answer from Prometheus at {url} to /api/v1/query "
        "within 0.2 s (--prometheus-timeout)\n"
    )


def test_the_timeout_is_a_number_of_seconds_by_default_the_librarys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args([]).prometheus_timeout == QUERY_TIMEOUT_S
    assert parser.parse_args(["--prometheus-timeout", "0.5"]).prometheus_timeout == 0.5
    for bad in ("0", "-1", "nan", "inf", "soon"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--prometheus-timeout", bad])
        assert f"expected a number of seconds > 0, got '{bad}'" in capsys.readouterr().err


async def test_a_server_that_is_not_prometheus_is_one_line_naming_it() -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>hi</html>")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    async with serving(app) as url:
        code, _out, err = await _analyze("--prometheus", url)
    assert code == 1
    assert err.strip() == (
        f"resilient-http analyze: error: {url} is not a Prometheus API (HTTP 200 on /api/v1/query)"
    )


async def test_a_failed_query_cancels_the_others_before_its_error_leaves() -> None:
    unanswered = asyncio.Event()
    cancelled: list[str] = []

    async def waits(name: str) -> int:
        try:
            await unanswered.wait()
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        return 0

    async def refused() -> int:
        raise PrometheusError("refused")

    async def group() -> int:
        return sum(await all_of(waits("inner"), refused()))

    # The error itself, not an ExceptionGroup, even from a nested group; no query left running.
    with pytest.raises(PrometheusError, match=r"^refused$"):
        await all_of(waits("outer"), group())
    assert sorted(cancelled) == ["inner", "outer"]


@pytest.mark.parametrize(
    ("port", "attribute"),
    [("443", 443), ("0443", 443), ("\u00b2", "\u00b2"), ("9" * 5000, "9" * 5000), ("", None)],
)
def test_a_port_label_is_an_integer_only_in_ascii_digits(port: str, attribute: object) -> None:
    # "²" is a digit to str.isdigit, not to int(); int() refuses more than 4300 digits.
    identity = dict(row_identity({"server_address": "a", "server_port": port}, HOST))
    assert identity.get(names.PORT) == attribute


def _fake_prometheus(data: Callable[[str], Any], jobs: Any = ("checkout",)) -> web.Application:
    """A server answering the label index with ``jobs`` and each query with ``data(query)``,
    as the ``data`` of a successful answer: what a half-compatible server might send."""

    async def answer(request: web.Request) -> web.Response:
        if request.path.startswith("/api/v1/label/"):
            return web.json_response({"status": "success", "data": jobs})
        query = str((await request.post()).get("query", ""))
        return web.json_response({"status": "success", "data": data(query)})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def _vector(*rows: Any) -> dict[str, Any]:
    return {"resultType": "vector", "result": list(rows)}


# A row such as the analysis's queries get, with every label they group by.
PLAUSIBLE = {
    "metric": {
        "job": "checkout",
        "server_address": "api.example",
        "server_port": "443",
        "le": "0.1",
        "rh_joined": "checkout\x1fapi.example\x1f443\x1fGET\x1f200\x1f",
    },
    "value": [1700000000.5, "5"],
}


def _bucket_lasts_only(row: dict[str, Any]) -> Callable[[str], Any]:
    """``row`` for the last values of the histograms' buckets, nothing for other queries."""

    def data(query: str) -> Any:
        lasts = query.startswith("sum by") and "_bucket" in query and "offset" not in query
        return _vector(row) if lasts else _vector()

    return data


@pytest.mark.parametrize(
    ("data", "jobs", "wrong"),
    [
        (lambda q: _vector({"value": [1, "1"]}), ["checkout"], '{"value":[1,"1"]}'),
        (lambda q: _vector({"metric": {}, "value": [1, "oops"]}), ["checkout"], '"oops"'),
        (lambda q: _vector({"metric": {}, "value": [1, "NaN"]}), ["checkout"], '"NaN"'),
        (lambda q: _vector({"metric": {"job": 7}, "value": [1, "1"]}), [], '{"job":7}'),
        (lambda q: [1], ["checkout"], '"data" is not an object but [1]'),
        (
            lambda q: {"resultType": "matrix", "result": []},
            ["checkout"],
            'a result of type "matrix" where a vector was asked',
        ),
        (lambda q: _vector(), {"a": 1}, '"data" is not a list of label values but {"a":1}'),
        (
            lambda q: _vector(PLAUSIBLE) if "rh_stat" in q else _vector(),
            ["checkout"],
            "rh_stat [''] for the concurrency limit of job 'checkout'",
        ),
        (
            _bucket_lasts_only({"metric": {"rh_joined": "", "le": "x"}, "value": [1, "3"]}),
            ["checkout"],
            "a bucket of resilient_http_request_duration_seconds_bucket whose le is not a "
            "number: 'x'",
        ),
        # The same plausible row for every query: wrong somewhere (which answer is found
        # wrong first depends on the order of the answers).
        (lambda q: _vector(PLAUSIBLE), ["checkout"], ""),
    ],
    ids=[
        "no metric",
        "value not a number",
        "NaN",
        "label not a string",
        "data not an object",
        "matrix for a vector",
        "label values not a list",
        "limit figures missing",
        "le not a number",
        "plausible everywhere",
    ],
)
async def test_an_answer_no_prometheus_gives_is_one_line_naming_the_url(
    data: Callable[[str], Any], jobs: Any, wrong: str
) -> None:
    async with serving(_fake_prometheus(data, jobs)) as url:
        code, out, err = await _analyze("--prometheus", url)
    assert (code, out) == (1, ""), err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(
        f"resilient-http analyze: error: unexpected answer from Prometheus at {url} to /api/v1/"
    )
    assert wrong in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prometheus", "http://127.0.0.1:9", "--since", "soon"], "not a Prometheus duration"),
        (["--prometheus", "http://127.0.0.1:9", "--since", "1d1d"], "--since '1d1d': not a"),
        (
            ["--prometheus", "http://127.0.0.1:9", "--since", TOO_LONG[1]],
            f"--since '{TOO_LONG[1]}': longer than Prometheus allows",
        ),
        (["--prometheus", "http://127.0.0.1:9", "--selector", "job=x"], "label matchers"),
        (["--since", "1h"], "give PATH... or --prometheus URL"),
    ],
)
async def test_bad_arguments_exit_2(args: list[str], message: str) -> None:
    code, _out, err = await _analyze(*args)
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1
