"""What is retried, and how long to wait: failure classification, method and body safety,
``Retry-After`` parsing and full-jitter backoff.

Pure functions and small value types; the attempt loop that uses them (on tenacity) lives in
``_attempts.py`` and the retry budget in ``_budget.py``. aiohttp's exceptions are translated
here, at one border, by ``classify_failure``; ``tests/test_retry.py`` fails when aiohttp grows
a ``ClientError`` subclass this table does not decide.
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import errno
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from aiohttp import payload as aiohttp_payload

__all__ = [
    "IDEMPOTENT_METHODS",
    "FailureKind",
    "RetryReason",
    "SuppressionReason",
    "body_is_replayable",
    "classify_failure",
    "classify_status",
    "full_jitter_backoff",
    "is_idempotent",
    "parse_retry_after",
]

#: RFC 9110 section 9.2.2; POST and PATCH are resent only when proven safe.
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
_THROTTLING_STATUSES: Final = frozenset({429, 503})
#: Retry-After values beyond this are absurd; parsing stops there instead of overflowing.
_RETRY_AFTER_CEILING: Final = 10.0**9


class RetryReason(enum.StrEnum):
    """Why an attempt failed in a way worth retrying (``resilient_http.retry.reason``)."""

    CONNECTION_CLOSED = "connection_closed"
    CONNECT_ERROR = "connect_error"
    TIMEOUT = "timeout"
    THROTTLED = "throttled"
    SERVER_ERROR = "server_error"


class SuppressionReason(enum.StrEnum):
    """Why a retryable failure was not retried (``resilient_http.suppression.reason``)."""

    BUDGET = "budget"
    DEADLINE = "deadline"
    RETRY_AFTER_TOO_LONG = "retry_after_too_long"
    NOT_IDEMPOTENT = "not_idempotent"
    BODY_NOT_REPLAYABLE = "body_not_replayable"


@dataclass(frozen=True, slots=True)
class FailureKind:
    """A retryable failure: its reason, and whether the request may have reached the server.

    ``request_sent=False`` proves the server never saw the request, so even a POST may be
    resent; otherwise only idempotent requests are.
    """

    reason: RetryReason
    request_sent: bool


_CONNECT: Final = FailureKind(RetryReason.CONNECT_ERROR, request_sent=False)
_CONNECT_TIMEOUT: Final = FailureKind(RetryReason.TIMEOUT, request_sent=False)
_CLOSED: Final = FailureKind(RetryReason.CONNECTION_CLOSED, request_sent=True)
_READ_TIMEOUT: Final = FailureKind(RetryReason.TIMEOUT, request_sent=True)
_CLOSED_ERRNOS: Final = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})

# Most specific first; None = never retried. A ClientConnectorError is a connect-stage failure
# (refused, DNS, unreachable): nothing was sent. TLS and certificate errors will fail again.
_EXCEPTION_TABLE: Final[tuple[tuple[type[BaseException], FailureKind | None], ...]] = (
    (aiohttp.ClientSSLError, None),
    (aiohttp.ServerFingerprintMismatch, None),
    (aiohttp.ClientConnectorError, _CONNECT),
    (aiohttp.ConnectionTimeoutError, _CONNECT_TIMEOUT),  # pool wait or connect: not sent
    (aiohttp.SocketTimeoutError, _READ_TIMEOUT),  # no response headers in time
    (aiohttp.ServerTimeoutError, _READ_TIMEOUT),
    (aiohttp.ServerDisconnectedError, _CLOSED),
    (aiohttp.ClientConnectionResetError, _CLOSED),  # also "Cannot write to closing transport"
    (aiohttp.ClientPayloadError, _CLOSED),
    (aiohttp.ClientResponseError, None),  # decided by its status in classify_failure
    (aiohttp.ClientOSError, None),  # decided by its errno in classify_failure
    (aiohttp.ClientConnectionError, _CLOSED),  # e.g. "Connection closed" while sending
    (aiohttp.InvalidURL, None),
    (aiohttp.NonHttpUrlClientError, None),
    (aiohttp.RedirectClientError, None),
    (aiohttp.ClientError, None),  # UploadAbortedError and anything newer: not ours to resend
    (asyncio.TimeoutError, _READ_TIMEOUT),  # an attempt's total timeout
)


def classify_failure(
    exc: BaseException, statuses: frozenset[int] | None = None
) -> FailureKind | None:
    """The retryable failure ``exc`` is, or None when it must not be retried.

    ``statuses`` decides ``ClientResponseError`` raised by ``raise_for_status``.
    Cancellation (a ``BaseException``) is never retried.
    """
    if not isinstance(exc, Exception):
        return None
    if isinstance(exc, aiohttp.ClientResponseError):
        if statuses is None or type(exc) is not aiohttp.ClientResponseError:
            return None
        reason = classify_status(exc.status, statuses)
        return FailureKind(reason, request_sent=True) if reason else None
    if isinstance(exc, aiohttp.ClientOSError) and not isinstance(exc, aiohttp.ClientConnectorError):
        return _CLOSED if exc.errno in _CLOSED_ERRNOS else None
    for exc_type, kind in _EXCEPTION_TABLE:
        if isinstance(exc, exc_type):
            return kind
    return None


def classify_status(status: int, statuses: frozenset[int] | Any) -> RetryReason | None:
    """``throttled`` for 429/503, ``server_error`` for other statuses in ``statuses``."""
    if status not in statuses:
        return None
    return RetryReason.THROTTLED if status in _THROTTLING_STATUSES else RetryReason.SERVER_ERROR


def is_idempotent(method: str, headers: Any = None, idempotent: bool | None = None) -> bool:
    """Whether resending the request cannot do harm twice.

    The caller's ``idempotent=`` wins; otherwise the method decides, and an ``Idempotency-Key``
    header makes POST and PATCH safe to resend.
    """
    if idempotent is not None:
        return idempotent
    if method.upper() in IDEMPOTENT_METHODS:
        return True
    return _has_header(headers, IDEMPOTENCY_KEY_HEADER)


def body_is_replayable(kwargs: Mapping[str, Any]) -> bool:
    """Whether the request body (``data=`` / ``json=``) can be sent again unchanged.

    Bytes, text, JSON and form fields can; a stream, file or async generator cannot, once read.
    """
    data = kwargs.get("data")
    if data is None:
        return True
    if isinstance(data, bytes | bytearray | memoryview | str | dict | list | tuple):
        return True
    # BytesPayload includes StringPayload. FormData may hold files, which are read once.
    return isinstance(data, aiohttp_payload.BytesPayload)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or None when it is absent or unreadable.

    Accepts delta-seconds and an HTTP-date (``now`` is the current Unix time). Dates in the
    past give 0; huge values are clamped to a ceiling instead of overflowing. Never raises.
    """
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text) if len(text) < 10 else min(float(text), _RETRY_AFTER_CEILING)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one is garbage
        return None
    try:
        delay = when.timestamp() - now
    except (OverflowError, OSError, ValueError):
        return None
    if not math.isfinite(delay):
        return None
    return min(max(delay, 0.0), _RETRY_AFTER_CEILING)


def full_jitter_backoff(
    retry_number: int, initial: float, maximum: float, rng: random.Random | None = None
) -> float:
    """A random wait in ``[0, min(maximum, initial * 2 ** (retry_number - 1))]`` ("full jitter")."""
    exponent = min(max(retry_number - 1, 0), 62)  # 2**62 * initial is past any maximum
    ceiling = min(maximum, initial * (2.0**exponent))
    return (rng or _RNG).uniform(0.0, ceiling)


_RNG: Final = random.Random()


def _has_header(headers: Any, name: str) -> bool:
    if not headers:
        return False
    keys = headers.keys() if isinstance(headers, Mapping) else [pair[0] for pair in headers]
    lowered = name.lower()
    return any(str(key).lower() == lowered for key in keys)
