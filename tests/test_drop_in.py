"""``ResilientSession`` as a drop-in for ``aiohttp.ClientSession``: its whole public surface,
with aiohttp's meaning, and the behaviours a caller-supplied connector must keep."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import ssl
import warnings

import aiohttp
import pytest
from aiohttp import web

import resilient_http as rh
from resilient_http.upstream import FaultPlan, FaultyUpstream, RetryAfter, Script, Throttle
from tests.servers import RecordingServer, serving

_NO_RETRY = rh.RetryPolicy(max_attempts=1)


def test_every_public_attribute_of_client_session_is_offered() -> None:
    """Fails when aiohttp grows a public attribute that ResilientSession does not offer."""
    public = {name for name in dir(aiohttp.ClientSession) if not name.startswith("_")}
    missing = sorted(name for name in public if not hasattr(rh.ResilientSession, name))
    assert missing == []


async def test_attributes_mean_what_aiohttp_says(recording_server: RecordingServer) -> None:
    async def raise_for(response: aiohttp.ClientResponse) -> None:
        return None

    trace = aiohttp.TraceConfig()
    async with rh.ResilientSession(
        headers={"X-Team": "payments"},
        raise_for_status=raise_for,
        trace_configs=[trace],
        skip_auto_headers=("User-Agent",),
        json_serialize=json.dumps,
        requote_redirect_url=False,
        trust_env=True,
        auto_decompress=False,
        version=aiohttp.HttpVersion10,
    ) as client:
        wrapped = client.session
        for name in (
            "headers",
            "auth",
            "raise_for_status",
            "skip_auto_headers",
            "json_serialize",
            "requote_redirect_url",
            "trust_env",
            "auto_decompress",
            "version",
            "timeout",
            "cookie_jar",
            "connector",
            "connector_owner",
            "trace_configs",
        ):
            assert getattr(client, name) == getattr(wrapped, name), name
        assert client.headers["X-Team"] == "payments"
        assert client.raise_for_status is raise_for
        assert client.trace_configs == [trace]  # the SDK adds none to a connector of its own
        assert client.timeout == aiohttp.ClientTimeout(total=30, connect=5, sock_read=10)
        assert client.connector is not None
        assert client.connector_owner
        assert client.ATTRS == aiohttp.ClientSession.ATTRS
        async with client.get(recording_server.url("/echo")) as resp:
            assert resp.request_info.headers["X-Team"] == "payments"
    assert client.closed


async def test_a_login_flow_reads_and_sends_cookies() -> None:
    async def login(request: web.Request) -> web.Response:
        response = web.Response(text="in")
        response.set_cookie("sid", "s-42")
        return response

    async def whoami(request: web.Request) -> web.Response:
        return web.Response(text=request.cookies.get("sid", "nobody"))

    app = web.Application()
    app.router.add_post("/login", login)
    app.router.add_get("/whoami", whoami)
    async with serving(app) as base:
        # cookies from an IP address are kept only by an "unsafe" jar, as in aiohttp
        jar = aiohttp.CookieJar(unsafe=True)
        async with rh.ResilientSession(base_url=base, cookie_jar=jar) as client:
            assert client.cookie_jar is jar
            async with client.post("/login") as resp:
                assert await resp.text() == "in"
            assert {cookie.key: cookie.value for cookie in client.cookie_jar} == {"sid": "s-42"}
            async with client.get("/whoami") as resp:
                assert await resp.text() == "s-42"


async def test_ws_connect_and_detach() -> None:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(f"echo {message.data}")
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    async with serving(app) as base:
        client = rh.ResilientSession()
        async with client.ws_connect(f"{base}/ws") as ws:
            await ws.send_str("hi")
            assert (await ws.receive_str()) == "echo hi"
        connector = client.connector
        assert connector is not None
        client.detach()
        assert client.closed
        assert not connector.closed  # detached, not closed: the caller owns it now
        await connector.close()


@pytest.mark.parametrize("retry", [_NO_RETRY, None], ids=["retries-off", "defaults"])
async def test_a_failure_through_a_callers_connector_leaves_nothing_open(
    retry: rh.RetryPolicy | None,
) -> None:
    """The upstream closes every request unanswered; with limit=1, a connection left acquired
    would make the second call hang, and an unclosed socket is an error under -W error."""
    plan = FaultPlan(scripts=(Script(("close",) * 10, path="/x"),))
    async with FaultyUpstream(plan) as upstream:
        connector = aiohttp.TCPConnector(limit=1)
        async with rh.ResilientSession(connector=connector, retry=retry) as client:
            for _ in range(2):
                async with asyncio.timeout(10):  # a safety net: a leak hangs here
                    with pytest.raises(aiohttp.ClientConnectionError):
                        await client.get(f"{upstream.url}/x")
            stats = client.pool_stats()
            assert (stats.active, stats.waiting) == (0, 0)
        assert connector.closed
    gc.collect()  # an unclosed transport would warn (an error here) when collected


@pytest.mark.parametrize("retry", [_NO_RETRY, None], ids=["retries-off", "defaults"])
async def test_plain_http_to_a_tls_port_through_a_callers_connector_leaves_nothing_open(
    retry: rh.RetryPolicy | None,
) -> None:
    """aiohttp's test_error_in_performing_request, outside aiohttp's harness: issue 14 saw a
    socket left open there. Not reproduced here, nor on the code before issue 14's fixes
    (e900516); kept so that such a leak fails (a hang with limit=1, or an unclosed-transport
    warning, an error here)."""
    trustme = pytest.importorskip("trustme", reason="the aiohttp-tests extra provides trustme")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(tls)

    async def ok(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    try:
        connector = aiohttp.TCPConnector(limit=1)
        async with rh.ResilientSession(connector=connector, retry=retry) as client:
            for _ in range(2):  # the second must not hang on a connection left acquired
                async with asyncio.timeout(10):  # a safety net: a leak hangs here
                    with pytest.raises(aiohttp.ClientConnectionError):
                        await client.get(f"http://127.0.0.1:{runner.addresses[0][1]}/")
            assert client.pool_stats().active == 0
    finally:
        await runner.cleanup()
    gc.collect()  # an unclosed transport would warn (an error here) when collected


async def test_a_callers_connector_still_gets_the_free_stale_retry() -> None:
    """With retries off and aiohttp's hidden resend switched off, a stale keep-alive
    connection through a connector the application built is still resent, once, for free."""
    async with FaultyUpstream(FaultPlan(stale_after=1)) as upstream:
        connector = aiohttp.TCPConnector(limit=1)
        with rh.testing.record() as recorder:
            async with rh.ResilientSession(connector=connector, retry=_NO_RETRY) as client:
                for _ in range(2):
                    async with client.get(f"{upstream.url}/x") as resp:
                        assert resp.status == 200
    assert [(r.reason, r.free) for r in recorder.retries] == [("connection_closed", True)]
    assert [a.reused for a in recorder.attempts] == [False, True, False]
    assert upstream.stats().stale_closes == 1


# --- aiohttp's private names that code outside ClientSession uses --------------------------------


def test_aiohttps_timeout_sentinel_is_the_default_of_its_timeout_parameters() -> None:
    """Pins what ResilientSession reads as "not given": the default of ClientSession's
    ``timeout`` parameter, which aiohttp.request() passes on (aiohttp.helpers.sentinel)."""
    for function in (aiohttp.ClientSession.__init__, aiohttp.ClientSession._request):
        default = inspect.signature(function).parameters["timeout"].default
        assert default is aiohttp.helpers.sentinel, function


async def test_aiohttps_sentinel_as_timeout_means_the_sdks_timeouts(
    recording_server: RecordingServer,
) -> None:
    not_given = aiohttp.helpers.sentinel
    async with rh.ResilientSession(timeout=not_given) as client:
        assert client.timeout == aiohttp.ClientTimeout(total=30, connect=5, sock_read=10)
        async with client.get(recording_server.url("/x"), timeout=not_given) as resp:
            assert resp.status == 200


async def test_aiohttp_request_drives_a_resilient_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp.request() builds ``aiohttp.client.ClientSession`` (here, as a service might
    alias it, a ResilientSession) with aiohttp's timeout sentinel, then calls ``_request``."""
    monkeypatch.setattr(aiohttp.client, "ClientSession", rh.ResilientSession)
    plan = FaultPlan(throttle=Throttle(503, first=1, retry_after=RetryAfter("seconds", 0)))
    async with FaultyUpstream(plan) as upstream:
        async with aiohttp.request("GET", f"{upstream.url}/x") as resp:
            assert resp.status == 200  # the 503 was retried
        assert upstream.stats().requests == 2


async def test_private_connector_is_the_connector() -> None:
    async with rh.ResilientSession() as client:
        assert client._connector is client.connector is not None


async def test_writing_retry_connection_keeps_the_hidden_resend_off() -> None:
    """aiohttp's TestClient writes False; True does not bring aiohttp's unseen resend back."""
    async with rh.ResilientSession() as client:
        client._retry_connection = True
        assert client._retry_connection is False
        assert client.session._retry_connection is False


async def test_request_takes_method_and_url_as_keywords(recording_server: RecordingServer) -> None:
    """aiohttp's own parameter names, which wrapper code passes by keyword."""
    signature = inspect.signature(aiohttp.ClientSession.request)
    assert list(signature.parameters)[1:3] == ["method", "url"]
    async with (
        rh.ResilientSession() as client,
        client.request(method="GET", url=recording_server.url()) as resp,
    ):
        assert resp.status == 200


async def test_a_retry_sends_headers_and_cookies_given_as_iterators() -> None:
    """aiohttp takes any iterable of pairs (or of names): a generator is read once, and the
    retry of a 503 must send what the first attempt sent."""
    seen: list[tuple[str | None, str | None, str | None]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(
            (
                request.headers.get("Authorization"),
                request.cookies.get("sid"),
                request.headers.get("User-Agent"),
            )
        )
        return web.Response(status=503 if len(seen) == 1 else 200)

    app = web.Application()
    app.router.add_get("/", answer)
    async with serving(app) as url, rh.ResilientSession() as client:
        with rh.testing.set_testing(True):
            async with client.get(
                url,
                headers=zip(["Authorization"], ["Bearer t0k"], strict=True),
                cookies=(pair for pair in [("sid", "abc")]),
                skip_auto_headers=(name for name in ["User-Agent"]),
            ) as resp:
                assert resp.status == 200
    assert seen == [("Bearer t0k", "abc", None)] * 2


async def test_a_url_encoded_form_is_sent_again_on_a_retry() -> None:
    bodies: list[bytes] = []

    async def answer(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response(status=503 if len(bodies) == 1 else 200)

    app = web.Application()
    app.router.add_put("/", answer)
    async with serving(app) as url, rh.ResilientSession() as client:
        with rh.testing.set_testing(True):
            async with client.put(url, data=aiohttp.FormData({"a": "1"})) as resp:
                assert resp.status == 200
    assert bodies == [b"a=1", b"a=1"]


async def test_aiohttps_deprecated_timeout_arguments_keep_their_meaning(
    recording_server: RecordingServer,
) -> None:
    """read_timeout= is the total and conn_timeout= the connect timeout, with aiohttp's
    DeprecationWarning each; with timeout= too they conflict, as in aiohttp."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = rh.ResilientSession(read_timeout=0.05, conn_timeout=2)
    assert [str(w.message) for w in caught if w.category is DeprecationWarning] == [
        "read_timeout is deprecated, use timeout argument instead",
        "conn_timeout is deprecated, use timeout argument instead",
    ]
    async with client:
        assert (client.timeout.total, client.timeout.connect) == (0.05, 2)
        with pytest.raises(asyncio.TimeoutError):
            await client.get(recording_server.url("/held"), retry=False)
        recording_server.release()
    with pytest.raises(ValueError, match="conflict with timeout="):
        rh.ResilientSession(read_timeout=1, timeout=aiohttp.ClientTimeout())
