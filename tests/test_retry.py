"""retry.py and _budget.py: classification, safety, Retry-After, backoff, budget (pure logic)."""

from __future__ import annotations

import asyncio
import errno
import io
import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from resilient_http._budget import RetryBudget
from resilient_http.retry import (
    FailureKind,
    RetryReason,
    body_is_replayable,
    classify_failure,
    classify_status,
    full_jitter_backoff,
    is_idempotent,
    parse_retry_after,
)
from tests.helpers import FakeClock

STATUSES = frozenset({429, 502, 503, 504})


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    sub: type
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


def _instance(exc_type: type[BaseException]) -> BaseException:
    """A real instance of each aiohttp error, built the way aiohttp builds it."""
    key = aiohttp.client_reqrep.ConnectionKey("h", 80, False, True, None, None, None)
    os_error = OSError(errno.ECONNREFUSED, "refused")
    url = URL("http://h/")
    info = aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url)
    if issubclass(exc_type, aiohttp.client_exceptions.UnixClientConnectorError):
        return exc_type("/tmp/sock", key, os_error)
    if issubclass(exc_type, aiohttp.ClientConnectorCertificateError):
        return exc_type(key, Exception("cert"))
    if issubclass(exc_type, aiohttp.ClientConnectorError):
        return exc_type(key, os_error)
    if issubclass(exc_type, aiohttp.ClientResponseError):
        return exc_type(info, (), status=503)
    if issubclass(exc_type, aiohttp.ServerFingerprintMismatch):
        return exc_type(b"a", b"b", "h", 80)
    if issubclass(exc_type, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return exc_type("ftp://h/")
    return exc_type()


EXPECTED: dict[type[BaseException], FailureKind] = {
    aiohttp.ClientConnectorError: FailureKind(RetryReason.CONNECT_ERROR, request_sent=False),
    aiohttp.ClientConnectorDNSError: FailureKind(RetryReason.CONNECT_ERROR, request_sent=False),
    aiohttp.ClientProxyConnectionError: FailureKind(RetryReason.CONNECT_ERROR, request_sent=False),
    aiohttp.client_exceptions.UnixClientConnectorError: FailureKind(
        RetryReason.CONNECT_ERROR, request_sent=False
    ),
    aiohttp.ConnectionTimeoutError: FailureKind(RetryReason.TIMEOUT, request_sent=False),
    aiohttp.SocketTimeoutError: FailureKind(RetryReason.TIMEOUT, request_sent=True),
    aiohttp.ServerTimeoutError: FailureKind(RetryReason.TIMEOUT, request_sent=True),
    aiohttp.ServerDisconnectedError: FailureKind(RetryReason.CONNECTION_CLOSED, request_sent=True),
    aiohttp.ClientConnectionResetError: FailureKind(
        RetryReason.CONNECTION_CLOSED, request_sent=True
    ),
    aiohttp.ClientPayloadError: FailureKind(RetryReason.CONNECTION_CLOSED, request_sent=True),
    aiohttp.ClientConnectionError: FailureKind(RetryReason.CONNECTION_CLOSED, request_sent=True),
    aiohttp.ServerConnectionError: FailureKind(RetryReason.CONNECTION_CLOSED, request_sent=True),
    aiohttp.ClientResponseError: FailureKind(RetryReason.THROTTLED, request_sent=True),
}
NEVER_RETRIED: set[type[BaseException]] = {
    aiohttp.ClientError,
    aiohttp.ClientSSLError,
    aiohttp.ClientConnectorSSLError,
    aiohttp.ClientConnectorCertificateError,
    aiohttp.ServerFingerprintMismatch,
    aiohttp.ClientOSError,  # without a connection-closed errno
    aiohttp.ContentTypeError,
    aiohttp.WSServerHandshakeError,
    aiohttp.ClientHttpProxyError,
    aiohttp.TooManyRedirects,
    aiohttp.InvalidURL,
    aiohttp.InvalidUrlClientError,
    aiohttp.InvalidUrlRedirectClientError,
    aiohttp.NonHttpUrlClientError,
    aiohttp.NonHttpUrlRedirectClientError,
    aiohttp.RedirectClientError,
} | (
    # aiohttp 3.14 added it; older minors of the supported range do not have it
    {aiohttp.client_exceptions.UploadAbortedError}
    if hasattr(aiohttp.client_exceptions, "UploadAbortedError")
    else set()
)


def test_every_aiohttp_client_error_is_decided() -> None:
    """Fails when aiohttp adds an error class that nobody decided about."""
    every = _all_subclasses(aiohttp.ClientError) | {aiohttp.ClientError}
    every = {c for c in every if c.__module__.startswith("aiohttp")}
    assert every == set(EXPECTED) | NEVER_RETRIED


@pytest.mark.parametrize("exc_type", sorted(EXPECTED, key=str))
def test_retryable_classes(exc_type: type[BaseException]) -> None:
    assert classify_failure(_instance(exc_type), STATUSES) == EXPECTED[exc_type]


@pytest.mark.parametrize("exc_type", sorted(NEVER_RETRIED, key=str))
def test_never_retried_classes(exc_type: type[BaseException]) -> None:
    assert classify_failure(_instance(exc_type), STATUSES) is None


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.ECONNRESET, RetryReason.CONNECTION_CLOSED),
        (errno.EPIPE, RetryReason.CONNECTION_CLOSED),
    ],
)
def test_client_os_error_by_errno(code: int, kind: RetryReason) -> None:
    failure = classify_failure(aiohttp.ClientOSError(code, "x"), STATUSES)
    assert failure == FailureKind(kind, request_sent=True)
    assert classify_failure(aiohttp.ClientOSError(errno.ENOENT, "x"), STATUSES) is None


def test_timeouts_and_cancellation() -> None:
    assert classify_failure(TimeoutError(), STATUSES) == FailureKind(
        RetryReason.TIMEOUT, request_sent=True
    )
    assert classify_failure(asyncio.CancelledError(), STATUSES) is None
    assert classify_failure(KeyboardInterrupt(), STATUSES) is None
    assert classify_failure(ValueError("x"), STATUSES) is None


def test_response_error_status_decides() -> None:
    error = _instance(aiohttp.ClientResponseError)
    assert isinstance(error, aiohttp.ClientResponseError)
    error.status = 404
    assert classify_failure(error, STATUSES) is None
    error.status = 502
    assert classify_failure(error, STATUSES) == FailureKind(RetryReason.SERVER_ERROR, True)
    assert classify_failure(error, None) is None


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (429, RetryReason.THROTTLED),
        (503, RetryReason.THROTTLED),
        (502, RetryReason.SERVER_ERROR),
        (504, RetryReason.SERVER_ERROR),
        (500, None),
        (200, None),
    ],
)
def test_classify_status(status: int, reason: RetryReason | None) -> None:
    assert classify_status(status, STATUSES) is reason


@pytest.mark.parametrize(
    ("method", "headers", "flag", "expected"),
    [
        ("GET", None, None, True),
        ("head", None, None, True),
        ("PUT", None, None, True),
        ("DELETE", None, None, True),
        ("OPTIONS", None, None, True),
        ("TRACE", None, None, True),
        ("POST", None, None, False),
        ("PATCH", {}, None, False),
        ("POST", {"idempotency-key": "k1"}, None, True),
        ("PATCH", [("Idempotency-Key", "k1")], None, True),
        ("POST", None, True, True),
        ("GET", None, False, False),
    ],
)
def test_is_idempotent(method: str, headers: object, flag: bool | None, expected: bool) -> None:
    assert is_idempotent(method, headers, flag) is expected


async def _agen() -> object:
    yield b"x"


def _multipart_form() -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("upload", io.BytesIO(b"x"), filename="x.bin")  # a file: read once
    return form


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, True),
        ({"data": b"x"}, True),
        ({"data": "x"}, True),
        ({"data": {"a": "1"}}, True),
        ({"data": [("a", "1")]}, True),
        ({"json": {"a": 1}}, True),
        ({"data": aiohttp.payload.BytesPayload(b"x")}, True),
        ({"data": io.BytesIO(b"x")}, False),
        ({"data": aiohttp.FormData({"a": "1"})}, True),
        ({"data": _multipart_form()}, False),
    ],
)
def test_body_is_replayable(kwargs: dict[str, object], expected: bool) -> None:
    assert body_is_replayable(kwargs) is expected


def test_async_generator_body_is_not_replayable() -> None:
    gen = _agen()
    assert body_is_replayable({"data": gen}) is False
    gen.aclose().close()  # type: ignore[attr-defined]


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        (format_datetime(datetime.fromtimestamp(NOW + 7, UTC), usegmt=True), 7.0),
        (format_datetime(datetime.fromtimestamp(NOW - 60, UTC), usegmt=True), 0.0),
        ("99999999999999999999999", 1e9),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: not an HTTP-date
        ("Thu, 99 Foo 99999 99:99:99 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@given(st.one_of(st.none(), st.text(max_size=64), st.from_regex(r"\d{1,40}", fullmatch=True)))
def test_parse_retry_after_never_raises_and_is_bounded(value: str | None) -> None:
    delay = parse_retry_after(value, NOW)
    assert delay is None or 0.0 <= delay <= 1e9


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    )
)
def test_parse_retry_after_any_http_date(when: datetime) -> None:
    delay = parse_retry_after(format_datetime(when, usegmt=True), NOW)
    assert delay is not None
    assert 0.0 <= delay <= 1e9


def test_full_jitter_backoff_draws_within_the_exponential_cap() -> None:
    rng = random.Random(7)
    for retry_number, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (6, 3.2), (7, 5.0), (500, 5.0)]:
        draws = [full_jitter_backoff(retry_number, 0.1, 5.0, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8  # full jitter: the whole range is used


def charging(budget: RetryBudget) -> Callable[[str], bool]:
    """``allows_retry`` then, when allowed, ``charge_retry``: what the retry loop does."""

    def allow(upstream: str) -> bool:
        allowed = budget.allows_retry(upstream)
        if allowed:
            budget.charge_retry(upstream)
        return allowed

    return allow


def test_budget_allows_ratio_of_calls_plus_floor() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_second=0.5, clock=clock)  # floor: 5 per window
    allow = charging(budget)
    for _ in range(50):
        budget.record_call("a:80")
    allowed = sum(allow("a:80") for _ in range(100))
    assert allowed == 15  # 0.2 * 50 + 0.5 * 10
    assert allow("b:80")  # per upstream


def test_budget_window_slides_and_recovers() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.3, clock=clock)  # 3 per window
    allow = charging(budget)
    assert [allow("a:80") for _ in range(4)] == [True, True, True, False]
    clock.now += 5
    assert not allow("a:80")
    clock.now += 5  # the retries of second 1000 left the window
    assert [allow("a:80") for _ in range(4)] == [True, True, True, False]
    clock.now += 1000
    assert allow("a:80")
