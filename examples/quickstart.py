"""The README quickstart, runnable as is: a local server, then requests through ResilientSession.

python examples/quickstart.py
"""

import asyncio

from aiohttp import web

import resilient_http as rh


async def list_items(request: web.Request) -> web.Response:
    return web.json_response({"items": [1, 2, 3]})


async def create_item(request: web.Request) -> web.Response:
    return web.json_response({"created": True})


async def serve_items() -> web.AppRunner:
    """A stand-in upstream on 127.0.0.1 (any free port)."""
    app = web.Application()
    app.router.add_get("/items", list_items)
    app.router.add_post("/items", create_item)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def main() -> None:
    runner = await serve_items()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/items"
    # Settings come from RESILIENT_HTTP_* variables; arguments override them.
    config = rh.ClientConfig.from_env().replace(limit=30)
    try:
        async with rh.ResilientSession(config=config) as client:
            async with client.get(url, params={"q": 1}) as resp:
                print("GET", resp.status, await resp.json())
            resp = await client.post(url, json={"name": "x"})
            print("POST", resp.status, await resp.json())
            print(client.pool_stats())
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
