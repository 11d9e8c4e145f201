"""The pipeline of an entry point, assembled: the one list of strategies, in SPEC order.

``ResilientSession`` and ``rh.middleware()`` differ only in their innermost stage (a
``ClientSession.request`` per attempt, or aiohttp's middleware handler); everything between
the deadline and that stage is built here, so a new strategy joins both by one edit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from ._breaker import CircuitBreaker
from ._budget import RetryBudget
from ._hedging import Hedging
from ._limiter import AdaptiveLimiter
from ._listeners import SessionListeners
from ._pipeline import AttemptHandler, AttemptStrategy, CallStrategy, Pipeline, build_pipeline
from ._retrying import RetryLoop
from .config import ClientConfig
from .retry import RetryPlan

__all__ = ["assemble"]


def assemble(
    *,
    config: ClientConfig,
    plan: RetryPlan | None,
    listeners: SessionListeners,
    send_attempt: AttemptHandler,
    can_hedge: bool = True,
    clock: Callable[[], float] = time.monotonic,
    closing: asyncio.Event | None = None,
) -> Pipeline:
    """The pipeline around ``send_attempt``; the retry budget follows the default ``plan``'s
    policy (``config.retry`` when retries are off by default). ``can_hedge``: the innermost
    stage can send copies of one attempt side by side (aiohttp's middleware handler cannot).
    ``closing``: set when the session closes (calls waiting to retry then end at once)."""
    policy = plan.policy if plan is not None else config.retry
    budget = RetryBudget(policy.budget_ratio, policy.budget_min_per_second)
    call_strategies: list[CallStrategy] = []
    if config.breaker.enabled:
        breaker = CircuitBreaker(config.breaker, clock)
        listeners.watch_breaker(breaker)
        call_strategies.append(breaker)
    attempt_strategies: list[AttemptStrategy] = []
    if can_hedge and config.hedge_after != "off":
        attempt_strategies.append(Hedging(config.hedge_after, config.hedge_max, budget))
    if config.concurrency == "adaptive":
        limiter = AdaptiveLimiter(_ceiling(config), clock)
        listeners.watch_limiter(limiter)
        attempt_strategies.append(limiter)
    return Pipeline(
        build_pipeline(
            call_strategies=call_strategies,
            retries=RetryLoop(budget, clock=clock, closing=closing),
            attempt_strategies=attempt_strategies,
            send_attempt=send_attempt,
        ),
        listeners,
        clock,
    )


#: An adaptive limit with both pool limits at 0 (unlimited) still needs a top.
_UNLIMITED_CEILING: Final = 1000


def _ceiling(config: ClientConfig) -> int:
    """The most attempts in flight an adaptive limit may allow an upstream: the pool's own."""
    return config.limit_per_host or config.limit or _UNLIMITED_CEILING
