"""Which retry plan a call runs under: ``retry=`` given as a ``RetryPolicy``, ``False``, ``None``
(the session's default) or an ``aiohttp_retry.RetryOptionsBase`` for users coming from it.

aiohttp_retry options keep their own meaning (attempts, statuses plus
``retry_all_server_errors``, exceptions, methods, and their waits as they compute them), while
the SDK's method-safety rules and ``Retry-After`` cap still apply on top.
"""

from __future__ import annotations

from typing import Any, Final

from ._attempts import RetryPlan
from ._exceptions import ConfigError
from .config import RetryPolicy

__all__ = ["resolve_plan"]

_SERVER_ERRORS: Final = frozenset(range(500, 600))


def resolve_plan(retry: object, default: RetryPlan | None) -> RetryPlan | None:
    """The plan for ``retry=``; None means no retries at all (not even free stale ones)."""
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
