"""The stand-in upstream that examples/native_session.py and examples/zero_code.py call: on
127.0.0.1 (any free port), GET /items throttles its first call (503, Retry-After: 0), then
answers, so that a client with the SDK's retries gets the answer and a plain one the 503.
"""

from aiohttp import web


class ThrottledOnce:
    """``async with ThrottledOnce() as upstream``: ``upstream.url`` is /items' address and
    ``upstream.answered`` counts the calls it has answered."""

    def __init__(self) -> None:
        self.answered = 0
        self.url = ""
        app = web.Application()
        app.router.add_get("/items", self._items)
        self._runner = web.AppRunner(app)

    async def _items(self, request: web.Request) -> web.Response:
        self.answered += 1
        if self.answered == 1:
            return web.Response(status=503, headers={"Retry-After": "0"})
        return web.json_response({"items": [1, 2, 3]})

    async def __aenter__(self) -> "ThrottledOnce":
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/items"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._runner.cleanup()
