"""Keep your own aiohttp.ClientSession: the SDK's pool, retries and telemetry come in through
a connector and a client middleware.

python examples/native_session.py
"""

import asyncio

import aiohttp
from aiohttp import web

import resilient_http as rh

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
        config = rh.ClientConfig(limit=30)  # or ClientConfig.from_env()
        connector = rh.create_connector(config)
        async with aiohttp.ClientSession(
            connector=connector, middlewares=(rh.middleware(config),)
        ) as session:
            async with session.get(url) as resp:  # the 503 is retried after its Retry-After
                print("GET", resp.status, await resp.json(), f"after {answered} answers")
            print(rh.pool_stats(connector))
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
