"""The fault engine: a `FaultPlan` plus seeded randomness in, one `Action` per request out.

No I/O here: the connection protocol carries actions out. Separate `random.Random` streams
(connections, faults, latency, Retry-After junk), all derived from the plan's seed, keep one
fault's draws from shifting another's when a plan gains a fault.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..config import THROTTLING_STATUSES
from ._http import http_date
from ._plan import FaultPlan, RetryAfter, RetryAfterForm, ScriptStep

__all__ = ["Action", "FaultEngine"]

ActionKind = Literal["respond", "close", "reset", "reset_mid_body", "hang"]

# Values a sloppy upstream really sends; clients must neither crash nor sleep long on them.
_GARBAGE_RETRY_AFTER = (
    "soon",
    "1.5",
    "0x10",
    "NaN",
    "inf",
    "",
    "Thu, 32 Foo 2024 25:61:61 GMT",
    "120 seconds",
)
_ABSURD_RETRY_AFTER = "99999999999"
# Throttled requests owed a pass (`Throttle(repeat=False)`) whose retry never came (a client
# that does not retry leaves one per throttle): the oldest are forgotten past this many.
_MAX_OWED_PASSES = 65_536

RequestKey = tuple[str, str, str]
"""(method, target, client): what makes a later request "the same request" for the throttle."""


@dataclass(frozen=True, slots=True)
class Action:
    """What to do with one request."""

    kind: ActionKind = "respond"
    status: int = 200
    headers: bytes = b""
    """Extra pre-formatted header lines (Retry-After)."""
    delay: float = 0.0
    """Seconds to wait before the first byte of the answer."""
    slow_chunks: int = 0
    """0: send the body at once; else in this many pieces, `slow_delay` seconds apart."""
    slow_delay: float = 0.0
    is_rate_limited: bool = False
    is_over_capacity: bool = False

    @property
    def outcome(self) -> str:
        """The label recorded in the request log."""
        return str(self.status) if self.kind == "respond" else self.kind


RESPOND_OK = Action()
_HANG, _CLOSE, _RESET = Action("hang"), Action("close"), Action("reset")


class FaultEngine:
    """Decides, request by request, which fault (if any) a plan calls for."""

    def __init__(
        self, plan: FaultPlan, *, clock: Callable[[], float], wall_clock: Callable[[], float]
    ) -> None:
        self.plan = plan
        self._clock = clock
        self._wall_clock = wall_clock
        seed = plan.seed
        self._connection_rng = random.Random(f"{seed}:connections")
        self._fault_rng = random.Random(f"{seed}:faults")
        self._latency_rng = random.Random(f"{seed}:latency")
        self._retry_after_rng = random.Random(f"{seed}:retry-after")
        self._requests = 0
        self._script_used: dict[tuple[int, str], int] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last refill)
        # Requests throttled under `repeat=False` whose next arrival passes; insertion-ordered.
        self._owed_passes: dict[RequestKey, None] = {}
        # The benchmark's path: no per-request fault means no draws and a shared action.
        self._is_healthy = not (
            plan.latency
            or plan.hang_probability
            or plan.rate_limit
            or plan.scripts
            or plan.throttle
            or plan.reset_probability
            or plan.reset_mid_body_probability
            or plan.slow_body
            or plan.capacity
        )

    def connection_budget(self) -> int | None:
        """Requests a new connection may carry before the stale close (None: unlimited)."""
        budget = self.plan.stale_after
        if isinstance(budget, tuple):
            return self._connection_rng.randint(*budget)
        return budget

    def decide(
        self,
        path: str,
        client: str,
        *,
        method: str = "GET",
        target: str | None = None,
        in_flight: int = 1,
    ) -> Action:
        """The action for the next request (stale closes are the connection's business).

        `method` and `target` (path plus query; None: `path`) only matter to a throttle with
        `repeat=False`, which lets the retry of a throttled request through. `in_flight` is the
        number of requests being answered, this one included (for `capacity`).
        """
        self._requests += 1
        if self._is_healthy:
            return RESPOND_OK
        plan, rng, number = self.plan, self._fault_rng, self._requests
        if plan.capacity is not None and in_flight > plan.capacity:
            # At once, without latency: an overloaded server sheds load before doing the work.
            retry_after = plan.capacity_retry_after
            headers = self._retry_after_header(retry_after.form, retry_after.seconds)
            return Action("respond", 503, headers, is_over_capacity=True)
        if plan.hang_probability and rng.random() < plan.hang_probability:
            return _HANG
        if plan.rate_limit is not None:
            wait = self._take_token(client)
            if wait is not None:
                limit = plan.rate_limit
                action = self._shape(
                    "respond", limit.status, RetryAfter(limit.retry_after, math.ceil(wait))
                )
                return dataclasses.replace(action, is_rate_limited=True)
        for index, script in enumerate(plan.scripts):
            if script.path is not None and script.path != path:
                continue
            key = (index, client if script.per_client else "")
            used = self._script_used.get(key, 0)
            if used < len(script.steps):
                self._script_used[key] = used + 1
                return self._scripted(script.steps[used], script.retry_after)
        throttle = plan.throttle
        if throttle is not None:
            is_throttled = bool(
                number <= throttle.first
                or (throttle.every and number % throttle.every == 0)
                or (throttle.probability and rng.random() < throttle.probability)
            )
            if not throttle.repeat:
                request_key = (method, target or path, client)
                is_throttled = self._throttle_unless_owed_a_pass(request_key, is_throttled)
            if is_throttled:
                return self._shape("respond", throttle.status, throttle.retry_after)
        if plan.reset_probability and rng.random() < plan.reset_probability:
            return _RESET
        if plan.reset_mid_body_probability and rng.random() < plan.reset_mid_body_probability:
            return self._shape("reset_mid_body", 200, None)
        return self._shape("respond", 200, None)

    def _throttle_unless_owed_a_pass(self, key: RequestKey, is_drawn: bool) -> bool:
        """`Throttle(repeat=False)`: a drawn request is throttled unless the previous arrival
        of the same request was; either way this arrival uses up the pass owed to `key`."""
        owed = self._owed_passes
        was_throttled = key in owed
        if was_throttled:
            del owed[key]
        if not is_drawn or was_throttled:
            return False
        owed[key] = None
        if len(owed) > _MAX_OWED_PASSES:
            del owed[next(iter(owed))]
        return True

    def _scripted(self, step: ScriptStep, retry_after: RetryAfter) -> Action:
        if isinstance(step, int):
            return self._shape("respond", step, retry_after)
        if step == "reset-mid-body":
            return self._shape("reset_mid_body", 200, None)
        return {"hang": _HANG, "close": _CLOSE, "reset": _RESET}[step]

    def _shape(self, kind: ActionKind, status: int, retry_after: RetryAfter | None) -> Action:
        """Add Retry-After (throttling statuses only), latency and a slow body."""
        plan = self.plan
        headers = b""
        if retry_after is not None and status in THROTTLING_STATUSES:
            headers = self._retry_after_header(retry_after.form, retry_after.seconds)
        delay = plan.latency.sample(self._latency_rng) if plan.latency is not None else 0.0
        slow_chunks, slow_delay = 0, 0.0
        slow = plan.slow_body
        if (
            kind == "respond"
            and slow is not None
            and (slow.probability >= 1 or self._fault_rng.random() < slow.probability)
        ):
            slow_chunks, slow_delay = slow.chunks, slow.delay
        if kind == "respond" and status == 200 and not (headers or delay or slow_chunks):
            return RESPOND_OK
        return Action(kind, status, headers, delay, slow_chunks, slow_delay)

    def _retry_after_header(self, form: RetryAfterForm, seconds: float) -> bytes:
        whole = math.ceil(seconds)
        if form == "none":
            return b""
        if form == "seconds":
            value = str(whole)
        elif form == "http-date":
            value = http_date(self._wall_clock() + whole)
        elif form == "garbage":
            value = self._retry_after_rng.choice(_GARBAGE_RETRY_AFTER)
        elif form == "negative":
            value = str(-max(1, whole))
        else:
            value = _ABSURD_RETRY_AFTER
        return b"Retry-After: %s\r\n" % value.encode("latin-1")

    def _take_token(self, client: str) -> float | None:
        """Token bucket per client: None if a token was taken, else seconds until one refills."""
        limit = self.plan.rate_limit
        assert limit is not None
        now = self._clock()
        tokens, last = self._buckets.get(client, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - last) * limit.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            return None
        self._buckets[client] = (tokens, now)
        return (1.0 - tokens) / limit.rate
