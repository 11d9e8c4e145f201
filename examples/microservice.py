"""A small aiohttp.web service that fans out to two upstreams through one shared ResilientSession.

Configured only by the environment:
    UPSTREAM_A_URL, UPSTREAM_B_URL   the two upstreams (required), e.g. http://127.0.0.1:8081
    SERVICE_HOST, SERVICE_PORT       where to listen (default 127.0.0.1:8080; port 0 = any free)
    RESILIENT_HTTP_*                 pool and retry settings (see `resilient-http config`)
    OTEL_*                           telemetry, read by `rh.configure_telemetry()`

`GET /fanout` calls `A/a` and `B/b` at once and answers with both results (502 when one failed).
Every request is traced end to end: a SERVER span from the middleware below (continuing the
caller's W3C `traceparent`), the SDK's INTERNAL span per upstream call, and a CLIENT span per
physical attempt, all in one trace. The service prints `listening http://HOST:PORT` once bound
and stops on SIGTERM or Ctrl-C, flushing its telemetry.

Against the demo upstream, with the bundled collector stack (`make stack-up`) receiving OTLP on
its default endpoint, http://localhost:4318:

    python -m resilient_http.upstream --port 8081 --stale-after 3 &
    python -m resilient_http.upstream --port 8082 --throttle status=503,probability=0.2 &
    UPSTREAM_A_URL=http://127.0.0.1:8081 UPSTREAM_B_URL=http://127.0.0.1:8082 \\
        OTEL_SERVICE_NAME=fanout python examples/microservice.py &
    curl http://127.0.0.1:8080/fanout     # then find the trace in Jaeger: http://localhost:16686

Without a collector, add OTEL_TRACES_EXPORTER=console (spans on stdout) or
RESILIENT_HTTP_TELEMETRY_FILE=fanout.jsonl (then `resilient-http analyze fanout.jsonl`).
The middleware is hand-written because `opentelemetry-instrumentation-aiohttp-server` is not a
dependency of the project; it does what that instrumentation's middleware does for this app.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

import resilient_http as rh

SESSION = web.AppKey("session", rh.ResilientSession)
UPSTREAMS = web.AppKey("upstreams", dict[str, str])
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

tracer = trace.get_tracer("examples.microservice")  # a proxy until configure_telemetry() runs


@web.middleware
async def server_spans(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One SERVER span per request, continuing the caller's trace (W3C traceparent)."""
    resource = request.match_info.route.resource  # None when no route matched (a 404)
    route = resource.canonical if resource is not None else None
    host, _, port = request.host.partition(":")
    attributes: dict[str, Any] = {
        "http.request.method": request.method,
        "url.path": request.path,
        "url.scheme": request.scheme,
        "server.address": host,
    }
    if route is not None:
        attributes["http.route"] = route
    if port.isdigit():
        attributes["server.port"] = int(port)
    with tracer.start_as_current_span(
        f"{request.method} {route}" if route is not None else request.method,
        context=propagate.extract(request.headers),
        kind=SpanKind.SERVER,
        attributes=attributes,
        # Set below from the type alone: exception messages may carry URLs with secrets.
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # aiohttp's way of answering 404, 405...
            response = exc
        except Exception as exc:
            span.set_attributes(
                {"http.response.status_code": 500, "error.type": type(exc).__name__}
            )
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            span.set_attribute("error.type", str(response.status))
            span.set_status(Status(StatusCode.ERROR))
        if isinstance(response, web.HTTPException):
            raise response
        return response


async def fanout(request: web.Request) -> web.Response:
    """Call both upstreams at once; 200 with both answers, 502 when one of them failed."""
    client = request.app[SESSION]
    upstreams = request.app[UPSTREAMS]
    names = list(upstreams)
    results = await asyncio.gather(*(call(client, upstreams[name]) for name in names))
    body = dict(zip(names, results, strict=True))
    failed = any(result["status"] != 200 for result in results)
    return web.json_response(body, status=502 if failed else 200)


async def call(client: rh.ResilientSession, url: str) -> dict[str, Any]:
    """One upstream call (retried by the SDK as configured); failures become data."""
    try:
        async with client.get(url) as resp:
            return {"status": resp.status, "body": await resp.json(content_type=None)}
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {"status": None, "error": type(exc).__name__}


async def shared_session(app: web.Application) -> AsyncIterator[None]:
    """One ResilientSession for the whole app: made on startup, closed on cleanup."""
    async with rh.ResilientSession() as client:  # settings from RESILIENT_HTTP_*
        app[SESSION] = client
        yield


def make_app(upstream_a: str, upstream_b: str) -> web.Application:
    """The service: `GET /fanout` calling `upstream_a/a` and `upstream_b/b`."""
    app = web.Application(middlewares=[server_spans])
    app[UPSTREAMS] = {"a": upstream_a.rstrip("/") + "/a", "b": upstream_b.rstrip("/") + "/b"}
    app.cleanup_ctx.append(shared_session)
    app.router.add_get("/fanout", fanout)
    return app


async def main() -> None:
    handle = rh.configure_telemetry()  # before the session is made: it reports to these
    try:
        app = make_app(os.environ["UPSTREAM_A_URL"], os.environ["UPSTREAM_B_URL"])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            host = os.environ.get("SERVICE_HOST", "127.0.0.1")
            site = web.TCPSite(runner, host, int(os.environ.get("SERVICE_PORT", "8080")))
            await site.start()
            port = runner.addresses[0][1]
            print(f"listening http://{host}:{port}", flush=True)
            await _stopped()
        finally:
            await runner.cleanup()  # closes the shared session
    finally:
        await handle.aclose()  # flush the last spans and metrics


async def _stopped() -> None:
    """Wait for SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
