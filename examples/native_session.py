"""Keep your own aiohttp.ClientSession: the SDK's pool, retries and telemetry come in through
a connector and a client middleware.

python examples/native_session.py
"""

import asyncio

import aiohttp
from stand_in_upstream import ThrottledOnce

import resilient_http as rh


async def main() -> None:
    async with ThrottledOnce() as upstream:
        config = rh.ClientConfig(limit=30)  # or ClientConfig.from_env()
        connector = rh.create_connector(config)
        async with aiohttp.ClientSession(
            connector=connector, middlewares=(rh.middleware(config),)
        ) as session:
            async with session.get(upstream.url) as resp:  # the 503 is retried (Retry-After)
                body = await resp.json()
                print("GET", resp.status, body, f"after {upstream.answered} answers")
            print(rh.pool_stats(connector))


if __name__ == "__main__":
    asyncio.run(main())
