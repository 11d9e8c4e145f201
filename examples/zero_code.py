"""Zero code: a plain aiohttp client, not a line of the SDK in it, gets the SDK's pool, retries
and telemetry from `opentelemetry-instrument`.

pip install 'resilient_http[zero-code]'
OTEL_SERVICE_NAME=zero-code OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \\
    opentelemetry-instrument python examples/zero_code.py

Run as plain `python examples/zero_code.py`, the throttled first answer is what it gets.
"""

import asyncio

import aiohttp
from stand_in_upstream import ThrottledOnce


async def main() -> None:
    # Nothing of the SDK's here: a plain aiohttp.ClientSession.
    async with ThrottledOnce() as upstream, aiohttp.ClientSession() as session:
        async with session.get(upstream.url) as resp:
            body = await resp.text()
            print("GET", resp.status, body, f"after {upstream.answered} answers")
        print("connector:", type(session.connector).__name__)


if __name__ == "__main__":
    asyncio.run(main())
