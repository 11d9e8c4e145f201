"""What is retried, and how long to wait: the pure parts of retrying.

Failure classification (aiohttp's exceptions are translated here, at one border, by
``classify_failure``; ``tests/test_retry.py`` fails when aiohttp grows a ``ClientError``
subclass this table does not decide), method and body safety, ``Retry-After`` parsing,
full-jitter backoff, the ``RetryPlan`` a call runs under (with the ``aiohttp_retry`` mapping)
and ``Tried``, the frozen record of one classified attempt that retry strategies read.

Nothing here sends a request or sleeps: the loop in ``_retrying.py`` drives aiohttp, and the
strategies in ``_strategies.py`` decide from these facts.
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import errno
import math
import random
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import aiohttp
from aiohttp import payload as aiohttp_payload

from ._exceptions import ConfigError
from .config import RATE_LIMITED_STATUS, THROTTLING_STATUSES, RetryPolicy
from .telemetry.redact import redact_text

__all__ = [
    "IDEMPOTENT_METHODS",
    "FailureKind",
    "RetryPlan",
    "RetryReason",
    "SuppressionReason",
    "Tried",
    "asks_for_less_load",
    "body_is_replayable",
    "classify_failure",
    "classify_status",
    "describe",
    "full_jitter_backoff",
    "is_idempotent",
    "parse_retry_after",
    "resolve_plan",
]

#: RFC 9110 section 9.2.2; POST and PATCH are resent only when proven safe.
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
#: Retry-After values beyond this are absurd; parsing stops there instead of overflowing.
_RETRY_AFTER_CEILING: Final = 10.0**9
_SERVER_ERRORS: Final = frozenset(range(500, 600))


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
    exc: BaseException, statuses: AbstractSet[int] | None = None
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


def asks_for_less_load(status: int, headers: Mapping[str, str]) -> bool:
    """429, or a 503 that says when to come back (``Retry-After``): the upstream is up and asks
    its clients to slow down, which the adaptive limiter acts on and the breaker leaves alone."""
    if status == RATE_LIMITED_STATUS:
        return True
    return status == 503 and "Retry-After" in headers


def classify_status(status: int, statuses: AbstractSet[int]) -> RetryReason | None:
    """``throttled`` for 429/503, ``server_error`` for other statuses in ``statuses``."""
    if status not in statuses:
        return None
    return RetryReason.THROTTLED if status in THROTTLING_STATUSES else RetryReason.SERVER_ERROR


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
    if isinstance(data, aiohttp.FormData):
        # Fields only (url-encoded): aiohttp encodes them anew for each request. A multipart
        # form may hold files, which are read once.
        return not data.is_multipart
    # BytesPayload includes StringPayload.
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


# --- the plan a call runs under ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """A ``RetryPolicy`` plus what an ``aiohttp_retry`` option adds to it."""

    policy: RetryPolicy
    #: seconds to wait after charged attempt N (aiohttp_retry's own waits); None = full jitter
    backoff: Callable[[int], float] | None = None
    extra_exceptions: tuple[type[BaseException], ...] = ()
    #: methods that may be retried at all (aiohttp_retry's ``methods``); None = every method
    methods: frozenset[str] | None = None

    def covers(self, method: str) -> bool:
        """Whether calls with ``method`` are retried under this plan at all."""
        return self.methods is None or method in self.methods

    def classify(self, exc: BaseException) -> FailureKind | None:
        """The retryable failure ``exc`` is under this plan (its extra exception types included)."""
        kind = classify_failure(exc, self.policy.statuses)  # a frozenset: RetryPolicy made it
        if kind is None and self.extra_exceptions and isinstance(exc, self.extra_exceptions):
            kind = FailureKind(RetryReason.SERVER_ERROR, request_sent=True)
        return kind


def resolve_plan(retry: object, default: RetryPlan | None) -> RetryPlan | None:
    """The plan for ``retry=``: a ``RetryPolicy``, ``False`` (None: no retries at all, not even
    free stale ones), ``None`` (``default``) or an ``aiohttp_retry.RetryOptionsBase``.

    aiohttp_retry options keep their own meaning (attempts, statuses plus
    ``retry_all_server_errors``, exceptions, methods, and their waits as they compute them);
    the SDK's method-safety rules and ``Retry-After`` cap still apply on top.
    """
    if retry is None:
        return default
    if retry is False:
        return None
    if isinstance(retry, RetryPolicy):
        return RetryPlan(retry)
    if isinstance(retry, RetryPlan):
        return retry
    options_type = _aiohttp_retry_options_type()
    if options_type is not None and isinstance(retry, options_type):
        return _plan_from_aiohttp_retry(retry)
    raise ConfigError(
        f"retry={retry!r}: expected a RetryPolicy, False, None or an aiohttp_retry RetryOptionsBase"
    )


def _aiohttp_retry_options_type() -> type | None:
    try:
        from aiohttp_retry import RetryOptionsBase
    except ImportError:  # an optional compatibility: the SDK works without it
        return None
    options_type: type = RetryOptionsBase
    return options_type


def _plan_from_aiohttp_retry(options: Any) -> RetryPlan:
    name = type(options).__name__
    if getattr(options, "evaluate_response_callback", None) is not None:
        raise ConfigError(
            f"retry={name}(evaluate_response_callback=...): resilient_http has no equivalent; "
            f"use statuses= or raise_for_status instead"
        )
    statuses = set(options.statuses)
    if options.retry_all_server_errors:
        statuses |= _SERVER_ERRORS
    try:
        policy = RetryPolicy(max_attempts=max(int(options.attempts), 1), statuses=statuses)
    except ConfigError as error:
        raise ConfigError(f"retry={name}(...): {error}") from None
    return RetryPlan(
        policy,
        backoff=options.get_timeout,
        extra_exceptions=tuple(options.exceptions),
        methods=frozenset(m.upper() for m in options.methods),
    )


# --- one classified attempt ----------------------------------------------------------------------


class Tried(NamedTuple):
    """One physical attempt as the retry strategies see it: frozen facts, no live objects
    beyond the outcome itself (a response's status, or the exception)."""

    number: int
    """Physical attempt number, from 1."""
    charged: int
    """Attempts counted against ``max_attempts`` so far, this one included."""
    outcome: BaseException | int
    """The exception raised, or the response's status code."""
    kind: FailureKind | None
    """What kind of retryable failure it was; None = not retryable (or a success)."""
    stale: bool
    """A reused pooled connection that turned out closed: the pool's fault, retried for free."""
    retry_after: float | None
    """Seconds the upstream asked to wait (``Retry-After`` of a throttled answer), if any."""

    @property
    def error_type(self) -> str:
        """``error.type`` as semconv spells it: the exception class name or the status code."""
        outcome = self.outcome
        return str(outcome) if isinstance(outcome, int) else type(outcome).__name__


def classify_attempt(
    plan: RetryPlan,
    number: int,
    charged: int,
    outcome: BaseException | aiohttp.ClientResponse,
    reused: bool | None,
    now: float,
) -> Tried:
    """Classify one attempt's ``outcome`` under ``plan``; ``now`` is the Unix time, for dates."""
    if isinstance(outcome, BaseException):
        kind = plan.classify(outcome)
        headers = getattr(outcome, "headers", None)  # raise_for_status keeps the headers
        recorded: BaseException | int = outcome
    else:
        reason = classify_status(outcome.status, plan.policy.statuses)
        kind = FailureKind(reason, request_sent=True) if reason else None
        headers = outcome.headers
        recorded = outcome.status
    retry_after = None
    if kind is not None and kind.reason is RetryReason.THROTTLED and headers is not None:
        retry_after = parse_retry_after(headers.get("Retry-After"), now)
    stale = kind is not None and kind.reason is RetryReason.CONNECTION_CLOSED and bool(reused)
    return Tried(number, charged, recorded, kind, stale, retry_after)


def describe(outcome: BaseException | int | None) -> str:
    """An outcome for a note or a log line (exception messages redacted by the caller)."""
    if outcome is None:
        return "no error"
    if isinstance(outcome, int):
        return str(outcome)
    text = redact_text(str(outcome))
    return f"{type(outcome).__name__}: {text}" if text else type(outcome).__name__


def _has_header(headers: Any, name: str) -> bool:
    if not headers:
        return False
    keys = headers.keys() if isinstance(headers, Mapping) else [pair[0] for pair in headers]
    lowered = name.lower()
    return any(str(key).lower() == lowered for key in keys)
