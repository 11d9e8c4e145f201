"""The clients being compared: a registry from variant name to an async factory.

Each factory is an async context manager that builds one client and yields a ``Fetch``: GET a
URL, read the body (whole, or streamed in 64 KiB chunks where ``ClientSettings.read_chunk_bytes``
says so), return the status (or raise what the client raises). The load driver calls nothing
else, so every variant does the same work per request.

Connector settings are the same everywhere (``ClientSettings``): ``limit=100`` total (the
SPEC's default), ``limit_per_host`` = the benchmark's concurrency (64 by default; the SPEC's
default of 10 would make every variant wait for the pool and measure the pool instead of the
client), ``keepalive_timeout=15`` and ``ttl_dns_cache=300`` (SPEC defaults), and closed-connection
cleanup exactly where the SDK turns it on. The SDK reads them through ``ClientConfig``; the peers
get the equivalent arguments. The scaling table (``benchmarks.scaling``) changes the limits
per row, for every variant alike. ``httpx`` has no per-host limit: it gets ``max_connections``
and ``max_keepalive_connections`` = ``limit`` (its default of 20 kept-alive connections would
close connections above 20 after every request at c=64).

Timeouts: the peers keep their libraries' defaults (what their users run). Two variants price
the SDK's timeouts from both sides: ``aiohttp_same_timeouts`` is the baseline with the SDK's
default per-attempt ``ClientTimeout(total=30, connect=5, sock_read=10)``, the like-for-like
reference of the ``sdk_plain`` goal and of the scaling table, and the diagnostic
``sdk_plain_aiohttp_timeouts`` is ``sdk_plain`` with aiohttp's default ``ClientTimeout()``
(``total=300, sock_connect=30``, trimmed to the 30 s deadline) through the SDK's ``timeout=``.

Only the SDK's public API is used (``import resilient_http as rh``): its internals are free to
change under the benchmark.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import tenacity
import yarl
from aiohttp_retry import ExponentialRetry, RetryClient
from opentelemetry import propagate
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.trace import SpanKind, set_span_in_context

import resilient_http as rh

from .otel import Providers, make_providers

__all__ = [
    "BASELINE",
    "RETRY_STATUSES",
    "VARIANTS",
    "ClientSettings",
    "Fetch",
    "Variant",
    "VariantUnavailable",
    "session_fetch",
]

Fetch = Callable[[str], Awaitable[int]]
"""GET the URL, read the body, return the status code."""

BASELINE = "aiohttp_tuned"
# Statuses the retrying peers retry, as the SDK does by default (429, 502, 503, 504).
RETRY_STATUSES = frozenset({429, 502, 503, 504})


class VariantUnavailable(Exception):
    """The variant cannot run here (a missing extra, an SDK feature not landed); never faked."""


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Connector and timeout settings shared by every variant (see the module docstring)."""

    limit: int = 100
    limit_per_host: int = 64
    keepalive_timeout: float = 15.0
    ttl_dns_cache: int = 300
    timeout_total: float = 30.0
    timeout_connect: float = 5.0
    timeout_read: float = 10.0
    read_chunk_bytes: int | None = None
    """None: read each body whole (``response.read()``); a size: stream it in chunks of at most
    that many bytes and drop them, as a client of large bodies does (the scaling table's 1 MB
    rows; every variant honours it, so all do the same work per request)."""

    def sdk_config(self) -> rh.ClientConfig:
        """The same settings as the SDK's ``ClientConfig`` (retries at their defaults)."""
        return rh.ClientConfig(
            limit=self.limit,
            limit_per_host=self.limit_per_host,
            keepalive_timeout=self.keepalive_timeout,
            ttl_dns_cache=self.ttl_dns_cache,
            timeout=rh.TimeoutConfig(
                total=self.timeout_total, connect=self.timeout_connect, read=self.timeout_read
            ),
        )

    def connector(self) -> aiohttp.TCPConnector:
        """A plain ``TCPConnector`` with the settings the SDK's connector gets."""
        return aiohttp.TCPConnector(
            limit=self.limit,
            limit_per_host=self.limit_per_host,
            keepalive_timeout=self.keepalive_timeout,
            ttl_dns_cache=self.ttl_dns_cache,
            enable_cleanup_closed=_cleanup_closed_needed(),
        )

    def sdk_timeout(self) -> aiohttp.ClientTimeout:
        """The per-attempt ``ClientTimeout`` the SDK builds from its ``TimeoutConfig``."""
        return aiohttp.ClientTimeout(
            total=self.timeout_total, connect=self.timeout_connect, sock_read=self.timeout_read
        )


def _cleanup_closed_needed() -> bool:
    """Whether aiohttp wants closed-transport cleanup on this Python: the SDK's connector turns
    it on exactly then, so the peers' connectors do too. aiohttp's own flag is read here
    rather than the SDK's helper, which is not public API; releases without the flag (before
    3.10.6) used this version condition."""
    needed = getattr(aiohttp.connector, "NEEDS_CLEANUP_CLOSED", None)
    if isinstance(needed, bool):
        return needed
    version = sys.version_info
    return (3, 13, 0) <= version < (3, 13, 1) or version < (3, 12, 8)


VariantFactory = Callable[[ClientSettings], contextlib.AbstractAsyncContextManager[Fetch]]


@dataclass(frozen=True, slots=True)
class Variant:
    """One registered client: its factory and a one-line description for the table."""

    name: str
    factory: VariantFactory
    description: str
    extra: bool = False
    """True for diagnostic variants that are not part of issue 8's list."""


async def _read_status(response: aiohttp.ClientResponse, chunk_bytes: int | None) -> int:
    """Read the body (whole, or streamed in chunks: ``ClientSettings.read_chunk_bytes``)."""
    if chunk_bytes is None:
        await response.read()
    else:
        async for _chunk in response.content.iter_chunked(chunk_bytes):
            pass
    return response.status


def session_fetch(session: Any, settings: ClientSettings) -> Fetch:
    """The ``Fetch`` of ``session``: an aiohttp.ClientSession, a RetryClient or a
    ResilientSession (all three give ``get(url)`` as an async context manager that releases
    the connection on exit), reading bodies as ``settings`` says."""
    chunk_bytes = settings.read_chunk_bytes

    async def fetch(url: str) -> int:
        async with session.get(url) as response:
            return await _read_status(response, chunk_bytes)

    return fetch


@contextlib.asynccontextmanager
async def aiohttp_tuned(settings: ClientSettings) -> AsyncIterator[Fetch]:
    """The baseline: a plain ``ClientSession`` on the shared connector settings."""
    async with aiohttp.ClientSession(connector=settings.connector()) as session:
        yield session_fetch(session, settings)


@contextlib.asynccontextmanager
async def aiohttp_same_timeouts(settings: ClientSettings) -> AsyncIterator[Fetch]:
    """The baseline with the SDK's default per-attempt timeouts, ``ClientTimeout(total=30,
    connect=5, sock_read=10)``: plain aiohttp doing the timing work the SDK does."""
    connector = settings.connector()
    async with aiohttp.ClientSession(connector=connector, timeout=settings.sdk_timeout()) as s:
        yield session_fetch(s, settings)


@contextlib.asynccontextmanager
async def aiohttp_retry(settings: ClientSettings) -> AsyncIterator[Fetch]:
    """``aiohttp_retry.RetryClient`` with ``ExponentialRetry(attempts=3)``."""
    session = aiohttp.ClientSession(connector=settings.connector())
    client = RetryClient(client_session=session, retry_options=ExponentialRetry(attempts=3))
    try:
        yield session_fetch(client, settings)
    finally:
        await client.close()


def _last_outcome(state: tenacity.RetryCallState) -> int:
    # After the last attempt: return the last status (as the SDK and aiohttp_retry do) or
    # re-raise the last exception, instead of tenacity's RetryError.
    assert state.outcome is not None
    status: int = state.outcome.result()
    return status


@contextlib.asynccontextmanager
async def tenacity_wrapper(settings: ClientSettings) -> AsyncIterator[Fetch]:
    """``session.get`` under tenacity: 3 attempts, full-jitter backoff, retrying connection
    errors and the SDK's retry statuses. The decorator form, because one ``AsyncRetrying``
    shared by concurrent calls would share its per-call state; the decorator copies itself
    per call, which is the cost being measured."""
    chunk_bytes = settings.read_chunk_bytes
    async with aiohttp.ClientSession(connector=settings.connector()) as session:

        @tenacity.retry(
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=5),
            retry=(
                tenacity.retry_if_exception_type(aiohttp.ClientError)
                | tenacity.retry_if_result(RETRY_STATUSES.__contains__)
            ),
            retry_error_callback=_last_outcome,
        )
        async def fetch(url: str) -> int:
            async with session.get(url) as response:
                return await _read_status(response, chunk_bytes)

        yield fetch


@contextlib.asynccontextmanager
async def otel_contrib(settings: ClientSettings) -> AsyncIterator[Fetch]:
    """aiohttp with the contrib instrumentation's trace config (its default semconv mode) given
    both providers: a span per request, 10 % sampled (ParentBased), and its metrics on (the
    ``http.client.duration`` histogram, recorded for every request); discarding exporters.
    ``tests/test_benchmarks.py`` checks both, since the ``sdk_metrics_10pct`` goal is relative
    to this variant."""
    providers = make_providers(0.1)
    trace_config = create_trace_config(
        tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider
    )
    try:
        async with aiohttp.ClientSession(
            connector=settings.connector(), trace_configs=[trace_config]
        ) as session:
            yield session_fetch(session, settings)
    finally:
        providers.shutdown()


@contextlib.asynccontextmanager
async def httpx_client(settings: ClientSettings) -> AsyncIterator[Fetch]:
    """``httpx.AsyncClient`` with the same connection limits (needs the ``bench`` extra)."""
    # Imported by name: the bench extra is optional, and mypy must not need it installed.
    try:
        httpx: Any = importlib.import_module("httpx")
    except ImportError as exc:
        raise VariantUnavailable("httpx not installed (pip install -e '.[bench]')") from exc
    if importlib.util.find_spec("sniffio") is None:
        # Without sniffio, httpcore imports a module on every lock acquisition: an artefact of
        # a missing package, not httpx's cost.
        raise VariantUnavailable("sniffio not installed (pip install -e '.[bench]')")
    # limit=0 is "unlimited" for aiohttp and the SDK; httpx spells that None.
    limit = settings.limit or None
    limits = httpx.Limits(
        max_connections=limit,
        max_keepalive_connections=limit,
        keepalive_expiry=settings.keepalive_timeout,
    )
    chunk_bytes = settings.read_chunk_bytes
    async with httpx.AsyncClient(limits=limits) as client:

        async def fetch(url: str) -> int:
            if chunk_bytes is None:
                response = await client.get(url)  # reads the whole body
            else:
                async with client.stream("GET", url) as response:
                    async for _chunk in response.aiter_bytes(chunk_bytes):
                        pass
            status: int = response.status_code
            return status

        yield fetch


@contextlib.asynccontextmanager
async def sdk_plain(settings: ClientSettings) -> AsyncIterator[Fetch]:
    """``ResilientSession``: retries on (defaults), no telemetry providers."""
    async with rh.ResilientSession(config=settings.sdk_config()) as client:
        yield session_fetch(client, settings)


def _sdk_strategies(on: bool) -> VariantFactory:
    """``sdk_plain`` with the circuit breaker, adaptive concurrency and hedging (``auto``) all
    on, or all off: against a healthy upstream the three should cost next to nothing."""

    @contextlib.asynccontextmanager
    async def factory(settings: ClientSettings) -> AsyncIterator[Fetch]:
        config = settings.sdk_config().replace(
            breaker=rh.BreakerPolicy(enabled=on),
            concurrency="adaptive" if on else "static",
            hedge_after="auto" if on else "off",
        )
        async with rh.ResilientSession(config=config) as client:
            yield session_fetch(client, settings)

    return factory


@contextlib.asynccontextmanager
async def sdk_plain_aiohttp_timeouts(settings: ClientSettings) -> AsyncIterator[Fetch]:
    """``sdk_plain`` with aiohttp's default ``ClientTimeout`` as the per-attempt timeout (the
    SPEC's ``timeout=`` override): the SDK minus its connect/sock_read timer handles."""
    timeout = aiohttp.ClientTimeout()
    async with rh.ResilientSession(config=settings.sdk_config(), timeout=timeout) as client:
        yield session_fetch(client, settings)


def _sdk_with_telemetry(sampling_ratio: float) -> VariantFactory:
    @contextlib.asynccontextmanager
    async def factory(settings: ClientSettings) -> AsyncIterator[Fetch]:
        providers = make_providers(sampling_ratio)
        try:
            async with _telemetry_session(settings, providers) as client:
                yield session_fetch(client, settings)
        finally:
            providers.shutdown()

    return factory


def _telemetry_session(settings: ClientSettings, providers: Providers) -> rh.ResilientSession:
    kwargs: dict[str, Any] = {
        "tracer_provider": providers.tracer_provider,
        "meter_provider": providers.meter_provider,
    }
    try:
        return rh.ResilientSession(config=settings.sdk_config(), **kwargs)
    except TypeError as exc:
        # Until the telemetry arguments land, aiohttp rejects them as unknown keywords. Any
        # other TypeError is a real bug and propagates.
        if "tracer_provider" in str(exc) or "meter_provider" in str(exc):
            raise VariantUnavailable("telemetry not landed") from exc
        raise


def _otel_floor(sampling_ratio: float) -> VariantFactory:
    """The OpenTelemetry SDK's own price for the SDK's telemetry contract, on plain aiohttp.

    Per call, only the OpenTelemetry calls the contract needs, with everything cacheable
    cached: an INTERNAL span, a CLIENT span when sampled, a ``traceparent`` header, and the two
    duration histograms (attempt and logical call) with the same four attributes the SDK
    records. No retries, pool accounting or redaction: what no implementation of the contract
    can avoid, so ``sdk_metrics_10pct`` / ``sdk_traces_100pct`` can be read against it.
    """

    @contextlib.asynccontextmanager
    async def factory(settings: ClientSettings) -> AsyncIterator[Fetch]:
        providers = make_providers(sampling_ratio)
        tracer = providers.tracer_provider.get_tracer("benchmarks.floor")
        meter = providers.meter_provider.get_meter("benchmarks.floor")
        attempt_duration = meter.create_histogram("http.client.request.duration", unit="s")
        call_duration = meter.create_histogram("resilient_http.request.duration", unit="s")
        targets: dict[str, tuple[str, dict[str, Any]]] = {}
        outcomes: dict[tuple[str, int], dict[str, Any]] = {}
        perf_counter = time.perf_counter
        chunk_bytes = settings.read_chunk_bytes
        try:
            async with aiohttp.ClientSession(connector=settings.connector()) as session:

                async def fetch(url: str) -> int:
                    started = perf_counter()
                    target = targets.get(url)
                    if target is None:
                        parsed = yarl.URL(url)
                        host = parsed.host or ""
                        attributes = {
                            "http.request.method": "GET",
                            "url.full": url,
                            "server.address": host,
                            "server.port": parsed.port,
                        }
                        target = targets[url] = (f"GET {host}", attributes)
                    call = tracer.start_span(
                        target[0], kind=SpanKind.INTERNAL, attributes=target[1]
                    )
                    context = set_span_in_context(call)
                    attempt = None
                    if call.is_recording():
                        attempt = tracer.start_span(
                            "GET", context=context, kind=SpanKind.CLIENT, attributes=target[1]
                        )
                        context = set_span_in_context(attempt)
                    headers: dict[str, str] = {}
                    propagate.inject(headers, context=context)
                    async with session.get(url, headers=headers) as response:
                        key = (url, response.status)
                        outcome = outcomes.get(key)
                        if outcome is None:
                            outcome = outcomes[key] = {
                                "http.request.method": "GET",
                                "server.address": target[1]["server.address"],
                                "server.port": target[1]["server.port"],
                                "http.response.status_code": response.status,
                            }
                        ended = perf_counter() - started
                        attempt_duration.record(ended, outcome)
                        if attempt is not None:
                            attempt.set_attribute("http.response.status_code", response.status)
                            attempt.end()
                        call_duration.record(ended, outcome)
                        if call.is_recording():
                            call.set_attribute("http.response.status_code", response.status)
                        call.end()
                        return await _read_status(response, chunk_bytes)

                yield fetch
        finally:
            providers.shutdown()

    return factory


_ALL = (
    Variant("aiohttp_tuned", aiohttp_tuned, "plain ClientSession (baseline)"),
    Variant("aiohttp_retry", aiohttp_retry, "RetryClient, ExponentialRetry(attempts=3)"),
    Variant("tenacity_wrapper", tenacity_wrapper, "tenacity @retry around session.get"),
    Variant("otel_contrib", otel_contrib, "contrib trace config, metrics, 10% sampling"),
    Variant("httpx", httpx_client, "httpx.AsyncClient, same limits"),
    Variant(
        "aiohttp_same_timeouts",
        aiohttp_same_timeouts,
        "baseline + the SDK's per-attempt ClientTimeout(30, connect=5, sock_read=10)",
    ),
    Variant("sdk_plain", sdk_plain, "ResilientSession, retries on, no telemetry"),
    Variant(
        "sdk_strategies_off",
        _sdk_strategies(False),
        "sdk_plain with breaker off, static concurrency, no hedging",
    ),
    Variant(
        "sdk_strategies_on",
        _sdk_strategies(True),
        "sdk_plain with breaker on, adaptive concurrency, hedging auto",
    ),
    Variant(
        "sdk_metrics_10pct", _sdk_with_telemetry(0.1), "ResilientSession, metrics, 10% sampling"
    ),
    Variant(
        "sdk_traces_100pct", _sdk_with_telemetry(1.0), "ResilientSession, metrics, 100% sampling"
    ),
    Variant(
        "sdk_plain_aiohttp_timeouts",
        sdk_plain_aiohttp_timeouts,
        "sdk_plain with aiohttp's default ClientTimeout",
        extra=True,
    ),
    Variant(
        "otel_floor_10pct",
        _otel_floor(0.1),
        "aiohttp + only the OTel SDK calls of the telemetry contract, 10% sampling",
        extra=True,
    ),
    Variant(
        "otel_floor_100pct",
        _otel_floor(1.0),
        "aiohttp + only the OTel SDK calls of the telemetry contract, 100% sampling",
        extra=True,
    ),
)
VARIANTS: dict[str, Variant] = {variant.name: variant for variant in _ALL}
