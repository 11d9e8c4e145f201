"""The fault-injecting HTTP/1.1 upstream shared by the tests, the demo and the benchmarks.

It owns a raw asyncio server on 127.0.0.1 (port 0 by default) that misbehaves on purpose, as
described by a frozen `FaultPlan`, deterministically for a given `seed`. It leaves clients alone:
nothing here imports aiohttp.

Run it in-process (`async with FaultyUpstream(plan) as upstream: ...`), or as a child process
(`UpstreamProcess(plan)`, or `python -m resilient_http.upstream --port 0 [fault flags]`, which
prints `listening 127.0.0.1:PORT` once bound and exits 0 on SIGTERM/SIGINT).

Routes (every method, every path; ordinary requests go through the faults):
    any path        200, JSON echo: status, method, path, body_length, request (seq),
                    connection (id), connection_request (position on the connection);
                    with `echo=False` one pre-built `{"ok":true}` (the benchmark's path)
    /status/N       answers status N (when no fault intervenes)
    /bytes/N        N bytes of body (up to 16 MiB)
    GET /__stats__  the counters as JSON (`UpstreamStats.to_dict()`; `?log=1` adds the log)
    POST /__reset__ zero the counters
Control routes (`/__stats__`, `/__reset__`) bypass faults and counters, and so do connections
that start with one.

Faults, first match wins, per request:
    outage            `Outage`: for a few seconds, `refuse` connections (idle ones closed,
                      requests on busy ones closed unanswered) or `hang` every request; then
                      recover
    stale keep-alive  request N+1 on a connection: close it unanswered (FIN, or RST with
                      `stale_mode="reset"`); answers never say `Connection: close`
    hang              read the request, never answer
    rate limit        token bucket per client (client-id header, else peer address): 429
    scripts           e.g. 503, 503, then normal answers; per path and/or per client
    throttle          429/503 for the first k requests, every n-th, or at random; with
                      `repeat=False` never twice in a row for the same request (method,
                      target, client): a throttled request's retry goes through
    reset             RST before answering
    reset mid-body    head and half the body, then RST
and for answers: latency (fixed, uniform, lognormal), a slow body (chunks with delays), plus
idle keep-alive connections closed after `idle_timeout`. Retry-After comes as delta-seconds,
an HTTP-date, garbage, negative or absurd values, or not at all. `unused_port()` and
`down_url()` give the connect-refused upstream.

Counters (`FaultyUpstream.stats()` -> frozen `UpstreamStats`): requests (by `"METHOD /path"`),
responses by status, body bytes, a bounded log of requests with body SHA-256 and outcome,
connections opened/closed/open/max open, requests per connection, stale closes, idle closes,
resets, mid-body resets, scripted disconnects, hangs, rate-limited answers, outage closes.
"""

from ._cli import main, parse_plan_args, plan_to_args
from ._outage import Outage, OutageMode
from ._plan import (
    FaultPlan,
    Latency,
    RateLimit,
    RetryAfter,
    RetryAfterForm,
    Script,
    ScriptStep,
    SlowBody,
    StaleMode,
    Throttle,
)
from ._process import UpstreamProcess, down_url, unused_port
from ._server import FaultyUpstream
from ._stats import RequestRecord, UpstreamStats

__all__ = [
    "FaultPlan",
    "FaultyUpstream",
    "Latency",
    "Outage",
    "OutageMode",
    "RateLimit",
    "RequestRecord",
    "RetryAfter",
    "RetryAfterForm",
    "Script",
    "ScriptStep",
    "SlowBody",
    "StaleMode",
    "Throttle",
    "UpstreamProcess",
    "UpstreamStats",
    "down_url",
    "main",
    "parse_plan_args",
    "plan_to_args",
    "unused_port",
]
