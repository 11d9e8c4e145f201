"""``ResilientSession``: a drop-in for ``aiohttp.ClientSession`` that owns a tuned, observed pool.

It owns one ``aiohttp.ClientSession`` and its connector, checks the SDK's own arguments of each
call, and hands the call to the session's pipeline (``_pipeline.py``: deadline, retries, attempts).
Pool mechanics live in ``pool.py``, settings in ``config.py``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator
from types import TracebackType
from typing import Any, Final, Literal

import aiohttp
from aiohttp.abc import AbstractCookieJar
from multidict import CIMultiDict, istr
from opentelemetry import metrics, trace
from yarl import URL

from ._assembly import assemble
from ._attempt import AttemptStage
from ._drop_in import (
    SessionAttribute,
    building_wrapped_session,
    timeout_not_given,
    with_deprecated_timeouts,
)
from ._exceptions import ConfigError
from ._listeners import SessionListeners
from .config import ClientConfig, RetryPolicy
from .pool import (
    PoolStats,
    create_connector,
    disable_hidden_resend,
    is_observed,
    pool_stats,
    reuse_trace_config,
)
from .retry import RetryPlan, resolve_plan
from .telemetry.calls import SessionTelemetry, drop_contrib_spans

__all__ = ["RequestContextManager", "ResilientSession"]

StrOrURL = str | URL


class RequestContextManager(Coroutine[Any, Any, aiohttp.ClientResponse]):
    """What ``ResilientSession.request()`` returns: await it, or use it with ``async with``.

    Like aiohttp's own, it is a coroutine (``asyncio.create_task(client.get(url))`` works), and
    ``async with`` releases the connection back to the pool on exit.
    """

    __slots__ = ("_coro", "_resp")

    def __init__(self, coro: Coroutine[Any, Any, aiohttp.ClientResponse]) -> None:
        self._coro = coro
        self._resp: aiohttp.ClientResponse | None = None

    def send(self, value: Any) -> Any:
        """Part of the coroutine protocol: delegated to the request coroutine."""
        return self._coro.send(value)

    def throw(self, *args: Any) -> Any:
        """Part of the coroutine protocol: delegated to the request coroutine."""
        return self._coro.throw(*args)

    def close(self) -> None:
        """Part of the coroutine protocol: delegated to the request coroutine."""
        self._coro.close()

    def __await__(self) -> Generator[Any, None, aiohttp.ClientResponse]:
        return self._coro.__await__()

    async def __aenter__(self) -> aiohttp.ClientResponse:
        self._resp = await self._coro
        return self._resp

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        resp = self._resp
        if resp is not None:
            resp.release()
            await resp.wait_for_close()


class ResilientSession:
    """An asyncio HTTP client session with a tuned pool, for use in place of ``ClientSession``.

    ``config`` defaults to ``ClientConfig.from_env()``. ``retry`` is the session's default retry
    plan (a ``RetryPolicy``, ``False``, or an ``aiohttp_retry`` option; default
    ``config.retry``). ``tracer_provider`` / ``meter_provider`` are the OpenTelemetry providers
    to report to (default: the global ones as they are now; none set = no telemetry work).
    Other keyword arguments go to ``aiohttp.ClientSession`` unchanged (headers, cookies, auth,
    raise_for_status, ...); ``timeout=`` (an ``aiohttp.ClientTimeout``) replaces the per-attempt
    timeouts built from ``config``.
    A ``connector`` given here is used as it is (``connector_owner`` as in aiohttp); otherwise
    the session builds and owns one from ``config``. Create it inside a coroutine, as aiohttp
    requires, and close it (``async with`` or ``await close()``).

    Example, against a local server::

        import asyncio
        from aiohttp import web
        import resilient_http as rh

        async def main() -> None:
            app = web.Application()
            app.router.add_get("/items", lambda request: web.json_response({"items": [1, 2]}))
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            try:
                async with rh.ResilientSession(config=rh.ClientConfig(limit=30)) as client:
                    async with client.get(f"http://127.0.0.1:{port}/items") as resp:
                        print(resp.status, await resp.json())
            finally:
                await runner.cleanup()

        asyncio.run(main())
    """

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        base_url: StrOrURL | None = None,
        connector: aiohttp.BaseConnector | None = None,
        connector_owner: bool = True,
        retry: RetryPolicy | Literal[False] | Any | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        **session_kwargs: Any,
    ) -> None:
        if config is not None and not isinstance(config, ClientConfig):
            raise ConfigError(f"config={config!r}: expected a ClientConfig")
        self.config: Final = config if config is not None else ClientConfig.from_env()
        self._default_plan = resolve_plan(retry, RetryPlan(self.config.retry))
        timeouts = self.config.timeout
        attempt_timeout = session_kwargs.pop("timeout", None)
        if timeout_not_given(attempt_timeout):  # aiohttp.request() passes its sentinel on
            attempt_timeout = None
        elif not isinstance(attempt_timeout, aiohttp.ClientTimeout):
            raise ConfigError(f"timeout={attempt_timeout!r}: expected an aiohttp.ClientTimeout")
        self._attempt_timeout: aiohttp.ClientTimeout = with_deprecated_timeouts(
            attempt_timeout
            or aiohttp.ClientTimeout(
                total=timeouts.total, connect=timeouts.connect, sock_read=timeouts.read
            ),
            attempt_timeout is not None,
            session_kwargs,
        )
        if connector is None:
            connector = create_connector(self.config)
            connector_owner = True
        elif not is_observed(connector):  # still tell a stale pooled connection apart
            given = session_kwargs.get("trace_configs") or ()
            session_kwargs["trace_configs"] = [*given, reuse_trace_config()]
        with building_wrapped_session():
            self._session = aiohttp.ClientSession(
                base_url=base_url,
                connector=connector,
                connector_owner=connector_owner,
                timeout=self._attempt_timeout,
                **session_kwargs,
            )
        disable_hidden_resend(self._session)
        self._base_url = URL(base_url) if base_url is not None else None
        self._deadline = self.config.timeout.total
        telemetry = SessionTelemetry(tracer_provider, meter_provider)
        self._stop_reporting_pool = telemetry.report_pool(connector)
        if telemetry.tracer is not None:
            drop_contrib_spans(self._session)
        self._listeners = SessionListeners(telemetry)
        self._closing = asyncio.Event()
        self._pipeline = assemble(
            config=self.config,
            plan=self._default_plan,
            listeners=self._listeners,
            send_attempt=AttemptStage(self._session).send,
            closing=self._closing,
        )

    # aiohttp.ClientSession's attributes, each read from the session wrapped (aiohttp's meaning).
    ATTRS: Final = aiohttp.ClientSession.ATTRS
    auth: SessionAttribute[aiohttp.BasicAuth | None] = SessionAttribute()
    auto_decompress: SessionAttribute[bool] = SessionAttribute()
    connector: SessionAttribute[aiohttp.BaseConnector | None] = SessionAttribute()
    connector_owner: SessionAttribute[bool] = SessionAttribute()
    cookie_jar: SessionAttribute[AbstractCookieJar] = SessionAttribute()
    headers: SessionAttribute[CIMultiDict[str]] = SessionAttribute()
    json_serialize: SessionAttribute[Callable[[Any], str]] = SessionAttribute()
    loop: SessionAttribute[asyncio.AbstractEventLoop] = SessionAttribute()
    raise_for_status: SessionAttribute[
        bool | Callable[[aiohttp.ClientResponse], Awaitable[None]]
    ] = SessionAttribute()
    requote_redirect_url: SessionAttribute[bool] = SessionAttribute()
    skip_auto_headers: SessionAttribute[frozenset[istr]] = SessionAttribute()
    timeout: SessionAttribute[aiohttp.ClientTimeout] = SessionAttribute()
    trace_configs: SessionAttribute[list[aiohttp.TraceConfig]] = SessionAttribute()
    trust_env: SessionAttribute[bool] = SessionAttribute()
    version: SessionAttribute[aiohttp.HttpVersion] = SessionAttribute()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The underlying ``aiohttp.ClientSession``, sharing the connector."""
        return self._session

    def ws_connect(self, url: StrOrURL, **kwargs: Any) -> Any:
        """``aiohttp.ClientSession.ws_connect``, as aiohttp does it: a websocket is not retried
        (its handshake is one attempt) and not traced by the SDK."""
        return self._session.ws_connect(url, **kwargs)

    def detach(self) -> None:
        """Detach the connector without closing it; the session is closed, as in aiohttp."""
        self._closing.set()
        self._session.detach()
        self._stop_reporting()

    @property
    def closed(self) -> bool:
        """True once the session is closed."""
        return self._session.closed

    # aiohttp's private names that code outside ClientSession's own methods uses. aiohttp's
    # module-level aiohttp.request() builds the session class and calls its `_request` (as does
    # code written for subclasses that override it); tests and pool diagnostics read
    # `_connector`; aiohttp's TestClient writes `_retry_connection`. Each keeps aiohttp's meaning
    # where SPEC allows it.
    def _request(self, method: str, str_or_url: StrOrURL, **kwargs: Any) -> RequestContextManager:
        """``request()``, under the private name ``aiohttp.request()`` calls."""
        return self.request(method, str_or_url, **kwargs)

    @property
    def _connector(self) -> aiohttp.BaseConnector | None:
        """``connector``, under the private name aiohttp's own code and tests read."""
        return self._session.connector

    @property
    def _retry_connection(self) -> bool:
        """aiohttp's switch for its hidden resend on a dead connection: always False here.

        SPEC keeps every attempt visible, so the SDK resends itself (a stale pooled connection
        at once and for free, other failures by the retry policy); writing True, as some
        aiohttp tests do, does not bring aiohttp's unseen resend back (README, "Differences
        from aiohttp"). Writing is accepted because aiohttp's ``TestClient`` writes False.
        """
        return bool(getattr(self._session, "_retry_connection", False))

    @_retry_connection.setter
    def _retry_connection(self, value: bool) -> None:
        return None  # the wrapped session's hidden resend stays off (disable_hidden_resend)

    def pool_stats(self) -> PoolStats:
        """A snapshot of the connection pool (open, idle, active, waiting, per host)."""
        connector = self._session.connector
        if connector is None:  # aiohttp drops its connector on close
            return PoolStats(self.config.limit, self.config.limit_per_host, 0, 0, 0, 0, {})
        return pool_stats(connector)

    async def close(self) -> None:
        """Close the session and, when it owns it, the connector; idempotent. Calls waiting to
        retry end at once with their last failure (an ``aiohttp.ClientError``)."""
        self._closing.set()
        await self._session.close()
        self._stop_reporting()

    def _stop_reporting(self) -> None:
        self._listeners.close()
        if self._stop_reporting_pool is not None:
            self._stop_reporting_pool()
            self._stop_reporting_pool = None

    async def __aenter__(self) -> ResilientSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def request(
        self,
        method: str,
        url: StrOrURL,
        *,
        retry: RetryPolicy | Literal[False] | Any | None = None,
        idempotent: bool | None = None,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> RequestContextManager:
        """Send a request; accepts everything ``aiohttp.ClientSession.request`` accepts, plus:

        - ``retry``: a ``RetryPolicy`` for this call, ``False`` for no retry at all, or an
          ``aiohttp_retry`` option; default: the session's.
        - ``idempotent``: True lets a POST/PATCH be resent after it may have reached the
          server; False stops any request from being resent then. Default: by method, and an
          ``Idempotency-Key`` header counts as True.
        - ``deadline``: seconds for the whole logical call, every attempt and wait included
          (default: ``TIMEOUT_TOTAL``); expiry raises ``asyncio.TimeoutError``.

        A per-call ``timeout=`` (an ``aiohttp.ClientTimeout``, or a number: the total, as aiohttp
        reads it) replaces the per-attempt settings; its ``total`` is trimmed to the time left
        before the deadline.
        """
        if retry is not None:
            kwargs["retry"] = retry
        if idempotent is not None:
            kwargs["idempotent"] = idempotent
        if deadline is not None:
            kwargs["deadline"] = deadline
        return self._prepare(method.upper(), url, kwargs)

    def get(self, url: StrOrURL, **kwargs: Any) -> RequestContextManager:
        """``request("GET", url, ...)``."""
        return self._prepare("GET", url, kwargs)

    def options(self, url: StrOrURL, **kwargs: Any) -> RequestContextManager:
        """``request("OPTIONS", url, ...)``."""
        return self._prepare("OPTIONS", url, kwargs)

    def post(self, url: StrOrURL, **kwargs: Any) -> RequestContextManager:
        """``request("POST", url, ...)``."""
        return self._prepare("POST", url, kwargs)

    def put(self, url: StrOrURL, **kwargs: Any) -> RequestContextManager:
        """``request("PUT", url, ...)``."""
        return self._prepare("PUT", url, kwargs)

    def patch(self, url: StrOrURL, **kwargs: Any) -> RequestContextManager:
        """``request("PATCH", url, ...)``."""
        return self._prepare("PATCH", url, kwargs)

    def delete(self, url: StrOrURL, **kwargs: Any) -> RequestContextManager:
        """``request("DELETE", url, ...)``."""
        return self._prepare("DELETE", url, kwargs)

    def head(self, url: StrOrURL, **kwargs: Any) -> RequestContextManager:
        """``request("HEAD", url, ...)``; like aiohttp, redirects are not followed by default."""
        kwargs.setdefault("allow_redirects", False)
        return self._prepare("HEAD", url, kwargs)

    def _prepare(
        self, method: str, str_or_url: StrOrURL, kwargs: dict[str, Any]
    ) -> RequestContextManager:
        """Check the SDK's own arguments now (a ``ConfigError`` is raised before anything is
        sent) and hand the call to the attempt loop; kept free of extra coroutine layers, as
        every request passes here.
        """
        plan = self._default_plan
        idempotent = None
        seconds = self._deadline
        template = self._attempt_timeout
        if kwargs:  # else a plain call (the common case): the session's settings as they are
            retry = kwargs.pop("retry", None)
            if retry is not None:
                plan = resolve_plan(retry, plan)
            idempotent = kwargs.pop("idempotent", None)
            if idempotent is not None and not isinstance(idempotent, bool):
                raise ConfigError(f"idempotent={idempotent!r}: expected True, False or None")
            deadline = kwargs.pop("deadline", None)
            if deadline is not None:
                seconds = _check_deadline(deadline)
            given = kwargs.pop("timeout", None)
            if not timeout_not_given(given):
                template = _attempt_template(given)
            if kwargs.get("upload_tracker") is not None:
                plan = None  # aiohttp binds a tracker to one request: it cannot be resent
            for name in _ITERABLE_ARGUMENTS:
                value = kwargs.get(name)
                if isinstance(value, Iterator):  # a generator, zip(), map(): read once
                    kwargs[name] = list(value)  # so that every attempt sends all of it
        if plan is not None and not plan.covers(method):
            plan = None
        return RequestContextManager(
            self._pipeline.send(
                method,
                str_or_url,
                str_or_url if self._base_url is None else self._absolute(str_or_url),
                kwargs,
                plan,
                idempotent,
                seconds,
                template,
            )
        )

    def _absolute(self, str_or_url: StrOrURL) -> StrOrURL:
        """The URL aiohttp will request (``base_url`` joined as aiohttp joins it)."""
        assert self._base_url is not None
        url = URL(str_or_url)
        return url if url.absolute else self._base_url.join(url)


# Arguments that aiohttp takes as any iterable (of pairs, or of names). An iterator among them
# would be used up by the first attempt, and a retry sent without its headers or cookies.
_ITERABLE_ARGUMENTS: Final = ("headers", "cookies", "skip_auto_headers", "params")


def _attempt_template(timeout: object) -> aiohttp.ClientTimeout:
    """A per-call ``timeout=``: a ``ClientTimeout``, or a number meaning the total (as aiohttp
    reads it: 0 or less is no total, so only the deadline bounds the attempt)."""
    if isinstance(timeout, aiohttp.ClientTimeout):
        return timeout
    if (
        isinstance(timeout, int | float)
        and not isinstance(timeout, bool)
        and math.isfinite(timeout)
    ):
        return aiohttp.ClientTimeout(total=float(timeout) if timeout > 0 else None)
    raise ConfigError(
        f"timeout={timeout!r}: expected an aiohttp.ClientTimeout or a number of seconds"
    )


def _check_deadline(deadline: object) -> float:
    if isinstance(deadline, bool) or not isinstance(deadline, int | float):
        raise ConfigError(f"deadline={deadline!r}: expected a number of seconds > 0")
    if not math.isfinite(deadline) or deadline <= 0:
        raise ConfigError(f"deadline={deadline!r}: expected a number of seconds > 0")
    return float(deadline)
