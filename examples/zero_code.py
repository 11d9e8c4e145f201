"""Zero code: a plain aiohttp client, not a line of the SDK in it, gets the SDK's pool, retries
and telemetry from `opentelemetry-instrument`.

pip install 'resilient_http[zero-code]'
OTEL_SERVICE_NAME=zero-code OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \\
    opentelemetry-instrument python examples/zero_code.py

Run as plain `python examples/zero_code.py`, the throttled first answer is what it gets.
"""

import asyncio

import aiohttp
from aiohttp import web

answered = 0


async def flaky(request: web.Request) -> web.Response:
    """Throttles the first call (503, Retry-After: 0), then answers."""
    global answered
    answered += 1
    if answered == 1:
        return web.Response(status=503, headers={"Retry-After": "0"})
    return web.json_response({"items": [1, 2, 3]})


async def serve() -> web.AppRunner:
    """A stand-in upstream on 127.0.0.1 (any free port)."""
    app = web.Application()
    app.router.add_get("/items", flaky)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def main() -> None:
    runner = await serve()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/items"
    try:
        async with aiohttp.ClientSession() as session:  # nothing of the SDK's here
            async with session.get(url) as resp:
                print("GET", resp.status, await resp.text(), f"after {answered} answers")
            print("connector:", type(session.connector).__name__)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
