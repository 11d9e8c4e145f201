"""The retry strategies, each called on made-up frozen facts: nothing is sent, nothing sleeps.

Every strategy is a tenacity ``wait_base`` / ``stop_base``: tenacity's own ``RetryCallState``
carries the facts, and the composed wait and stop are called as tenacity would call them.
"""

from __future__ import annotations

import random

import aiohttp
import pytest
import tenacity

import resilient_http as rh
from resilient_http._budget import RetryBudget
from resilient_http._strategies import (
    FACTS,
    RetryFacts,
    StopReason,
    stop_after_charged,
    stop_body_not_replayable,
    stop_budget,
    stop_past_deadline,
    stop_retry_after_too_long,
    stop_unsafe,
    wait_backoff,
    wait_retry_after,
    wait_stale,
)
from resilient_http.retry import (
    FailureKind,
    RetryPlan,
    RetryReason,
    SuppressionReason,
    Tried,
    full_jitter_backoff,
)

THROTTLED = FailureKind(RetryReason.THROTTLED, request_sent=True)
CLOSED = FailureKind(RetryReason.CONNECTION_CLOSED, request_sent=True)
REFUSED = FailureKind(RetryReason.CONNECT_ERROR, request_sent=False)


def tried(
    kind: FailureKind = REFUSED,
    *,
    charged: int = 1,
    stale: bool = False,
    retry_after: float | None = None,
    number: int | None = None,
) -> Tried:
    outcome: BaseException | int = 503 if kind is THROTTLED else aiohttp.ServerDisconnectedError()
    return Tried(number or charged, charged, outcome, kind, stale, retry_after)


def facts(
    *history: Tried,
    method: str = "GET",
    idempotent: bool = True,
    replayable: bool = True,
    expires_at: float = 1000.0,
    plan: RetryPlan | None = None,
) -> RetryFacts:
    return RetryFacts(
        method=method,
        upstream="svc:80",
        plan=plan or RetryPlan(rh.RetryPolicy()),
        is_idempotent=idempotent,
        body_is_replayable=replayable,
        expires_at=expires_at,
        history=history,
    )


def state(given: RetryFacts, upcoming_sleep: float = 0.0) -> tenacity.RetryCallState:
    """tenacity's own call state, carrying ``given`` as the SDK's loop does."""
    retry_state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    retry_state.kwargs[FACTS] = given
    retry_state.attempt_number = given.last.number
    retry_state.upcoming_sleep = upcoming_sleep
    return retry_state


# --- waits -------------------------------------------------------------------------------------


def composed_wait(seed: int = 3) -> tenacity.wait.wait_base:
    return wait_stale() | wait_retry_after() | wait_backoff(random.Random(seed))


def test_a_stale_connection_is_retried_at_once_whatever_else_applies() -> None:
    assert composed_wait()(state(facts(tried(CLOSED, stale=True)))) == 0.0


def test_retry_after_wins_over_backoff() -> None:
    assert composed_wait()(state(facts(tried(THROTTLED, retry_after=7.0)))) == 7.0


def test_backoff_is_full_jitter_drawn_from_the_injected_source() -> None:
    wait = composed_wait(seed=9)
    waits = [wait(state(facts(tried(charged=n)))) for n in (1, 2, 3)]
    rng = random.Random(9)
    assert waits == [full_jitter_backoff(n, 0.1, 5.0, rng) for n in (1, 2, 3)]
    assert 0 <= waits[0] <= 0.1
    assert 0 <= waits[2] <= 0.4


def test_an_aiohttp_retry_plan_waits_its_own_way_and_not_past_its_list() -> None:
    plan = RetryPlan(rh.RetryPolicy(max_attempts=3), backoff=lambda n: [0.0, 0.5, 1.5][n])
    wait = composed_wait()
    assert [wait(state(facts(tried(charged=n), plan=plan))) for n in (1, 2)] == [0.5, 1.5]
    assert wait(state(facts(tried(charged=3), plan=plan))) == 0.0  # exhausted: not asked


def test_waits_are_tenacity_strategies() -> None:
    assert isinstance(composed_wait(), tenacity.wait.wait_base)


# --- stops -------------------------------------------------------------------------------------


def composed_stop(budget: RetryBudget, now: float = 0.0) -> tenacity.stop.stop_base:
    return (
        stop_after_charged()
        | stop_unsafe()
        | stop_body_not_replayable()
        | stop_retry_after_too_long()
        | stop_past_deadline(lambda: now)
        | stop_budget(budget)
    )


def why(given: RetryFacts, upcoming_sleep: float = 0.0, now: float = 0.0) -> StopReason | None:
    stop = composed_stop(RetryBudget(0.0, 10.0, clock=lambda: now), now)
    retry_state = state(given, upcoming_sleep)
    reason = stop.why(retry_state)  # type: ignore[attr-defined]
    assert stop(retry_state) is (reason is not None)  # as tenacity calls it
    return reason  # type: ignore[no-any-return]


def test_a_retryable_failure_with_room_goes_on() -> None:
    assert why(facts(tried(charged=1))) is None


def test_charged_attempts_stop_but_a_stale_retry_is_free() -> None:
    assert why(facts(tried(charged=3))) == StopReason("no retry: attempts exhausted (3 of 3)")
    assert why(facts(tried(CLOSED, charged=3, stale=True))) is None


def test_testing_mode_caps_the_attempts() -> None:
    with rh.testing.set_testing(True, attempts=2):
        assert why(facts(tried(charged=2))) == StopReason("no retry: attempts exhausted (2 of 2)")


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        (facts(tried(CLOSED), method="POST", idempotent=False), "not_idempotent"),
        (facts(tried(CLOSED), replayable=False), "body_not_replayable"),
        (facts(tried(THROTTLED, retry_after=31.0)), "retry_after_too_long"),
    ],
)
def test_safety_and_retry_after_stops(given: RetryFacts, reason: str) -> None:
    assert why(given) == StopReason(
        f"no retry: {reason.replace('_', ' ')}", SuppressionReason(reason)
    )


def test_a_request_that_never_left_may_be_resent_whatever_its_method() -> None:
    assert why(facts(tried(REFUSED), method="POST", idempotent=False, replayable=False)) is None


def test_a_wait_that_ends_at_the_deadline_stops() -> None:
    given = facts(tried(THROTTLED, retry_after=5.0), expires_at=105.0)
    assert why(given, upcoming_sleep=4.9, now=100.0) is None
    assert why(given, upcoming_sleep=5.0, now=100.0) == StopReason(
        "no retry: deadline", SuppressionReason.DEADLINE
    )


def test_the_budget_is_asked_not_charged() -> None:
    budget = RetryBudget(0.0, 0.1, clock=lambda: 0.0)  # one retry per 10 s window
    stop = stop_budget(budget)
    given = facts(tried())
    assert [stop(state(given)) for _ in range(3)] == [False, False, False]
    budget.charge_retry("svc:80")  # what the loop does once it decides to retry
    assert stop.reason(given, 0.0) == StopReason("no retry: budget", SuppressionReason.BUDGET)
    assert stop.reason(facts(tried(CLOSED, stale=True)), 0.0) is None  # free: never stopped


def test_the_first_stop_that_applies_gives_the_reason() -> None:
    given = facts(tried(CLOSED, charged=3), method="POST", idempotent=False)
    assert why(given) == StopReason("no retry: attempts exhausted (3 of 3)")


def test_only_the_sdks_stops_compose_with_reasons() -> None:
    with pytest.raises(TypeError, match="give reasons"):
        stop_unsafe() | tenacity.stop_after_attempt(3)
