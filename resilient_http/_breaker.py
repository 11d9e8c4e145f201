"""The circuit breaker: a call strategy with one circuit per upstream (``host:port``).

A circuit is closed, open or half-open (shared/SPEC.md, "Resilience strategies beyond
retries"):

- **closed**: calls go through; each one that ends is counted in a sliding window of
  ``BreakerPolicy.window`` seconds (ten buckets). A failure is a connect error, a timeout or a
  5xx other than 501 (``is_failure``); 4xx, 429 and everything else are not. When at least
  ``min_calls`` calls ended in the window and the share that failed reaches ``failure_ratio``,
  the circuit opens.
- **open**: calls fail at once with ``CircuitOpenError``: no connection, no attempt, nothing
  charged to the retry budget (the breaker sits outside the retries, so a rejection is never
  retried either).
- **half-open**, ``open_for`` seconds after opening: up to ``PROBES_PER_OPENING`` calls go through
  as probes while the rest are still rejected. The first probe to succeed closes the circuit
  (with an empty window); the first to fail opens it again. A probe that ends neither way
  (cancelled, or an error that is not the upstream's) gives its place back.

The breaker reads the clock and the call's outcome and reports transitions and rejections to
the call's observer; it knows nothing of retries, the pool or telemetry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Final

import aiohttp

from ._events import BreakerEvent, RejectionEvent
from ._exceptions import CircuitOpenError
from ._per_upstream import PerUpstream
from ._pipeline import Call, CallHandler
from .config import BreakerPolicy
from .retry import RetryReason, asks_for_less_load, classify_failure

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "PROBES_PER_OPENING",
    "BreakerState",
    "CircuitBreaker",
    "is_failure",
]

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"
#: Probe calls let through per half-open period (SPEC: at most 5).
PROBES_PER_OPENING: Final = 5
_BUCKETS: Final = 10
_FAILING_REASONS: Final = frozenset({RetryReason.CONNECT_ERROR, RetryReason.TIMEOUT})


def is_failure(
    status: int | None, error: BaseException | None, headers: Mapping[str, str] | None = None
) -> bool | None:
    """Whether a call's outcome counts against its upstream: True (a failure), False (a
    success), None (not counted: cancellation, an error that says nothing of the upstream's
    health, such as a stale connection or an invalid URL, or a 503 asking for less load)."""
    if error is None:
        assert status is not None
        if status == 503 and headers is not None and asks_for_less_load(status, headers):
            return None
        return status >= 500 and status != 501
    if (
        isinstance(error, aiohttp.ClientResponseError)
        and type(error) is aiohttp.ClientResponseError
    ):
        # raised by raise_for_status: judged as the response would be
        return is_failure(error.status, None, error.headers or {})
    kind = classify_failure(error)
    if kind is not None and kind.reason in _FAILING_REASONS:
        return True
    return None


class BreakerState:
    """An upstream's circuit: its state and its sliding window of call outcomes."""

    __slots__ = (
        "_calls",
        "_epochs",
        "_failures",
        "_width",
        "head_epoch",
        "head_slot",
        "host",
        "label",
        "opened_at",
        "period",
        "port",
        "probes",
        "state",
    )

    def __init__(self, label: str, host: str, port: int | None, window: float) -> None:
        self.label = label
        self.host = host
        self.port = port
        self.state: str = CLOSED
        self.opened_at = 0.0
        #: probe places taken in the current half-open period
        self.probes = 0
        #: which half-open period this is (a probe from an earlier one no longer counts)
        self.period = 0
        self._width = window / _BUCKETS
        self._epochs = [-1] * _BUCKETS
        self._calls = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS
        #: the bucket counted last: most calls land in it (``succeeded`` checks it first)
        self.head_epoch = -1
        self.head_slot = 0

    def succeeded(self, now: float) -> None:
        """Add one successful call to the window (every call of a healthy upstream: kept to
        attribute reads and one addition when it lands in the bucket counted last)."""
        if int(now / self._width) == self.head_epoch:
            self._calls[self.head_slot] += 1
        else:
            self.count(now, False)

    def count(self, now: float, failed: bool) -> None:
        """Add one ended call to the window."""
        epoch = int(now / self._width)
        slot = epoch % _BUCKETS
        if self._epochs[slot] != epoch:  # the bucket last held calls of an older turn
            self._epochs[slot] = epoch
            self._calls[slot] = 0
            self._failures[slot] = 0
        self.head_epoch, self.head_slot = epoch, slot
        self._calls[slot] += 1
        if failed:
            self._failures[slot] += 1

    def totals(self, now: float) -> tuple[int, int]:
        """(failed calls, calls) in the window that ends now."""
        oldest = int(now / self._width) - _BUCKETS
        calls = failures = 0
        for slot in range(_BUCKETS):
            if self._epochs[slot] > oldest:
                calls += self._calls[slot]
                failures += self._failures[slot]
        return failures, calls

    def is_empty(self, now: float) -> bool:
        """Whether no call ended within the window that ends ``now`` (as good as new)."""
        return int(now / self._width) - self.head_epoch >= _BUCKETS

    def clear(self) -> None:
        """Empty the window (a circuit starts counting afresh when it closes)."""
        self._epochs = [-1] * _BUCKETS


class CircuitBreaker:
    """The breaker of one session: one ``BreakerState`` per upstream, on one policy."""

    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        window = policy.window
        self._circuits = PerUpstream(
            lambda label, host, port: BreakerState(label, host, port, window),
            lambda circuit: circuit.state == CLOSED and circuit.is_empty(self._clock()),
        )
        self._proceed: CallHandler | None = None

    def circuits(self) -> list[BreakerState]:
        """Every upstream's circuit (a copy of the list: telemetry reads it from its thread)."""
        return self._circuits.values()

    def bind(self, proceed: CallHandler) -> CallHandler:
        """The call handler that guards ``proceed``."""
        self._proceed = proceed
        return self.run

    async def run(self, call: Call) -> aiohttp.ClientResponse:
        """Reject the call at once, or let it through (as a probe when half-open) and count
        how it ended."""
        proceed = self._proceed
        assert proceed is not None, "bind() first"
        circuits = self._circuits
        circuit = circuits.by_target.get(call.target) or circuits.add(call.target)
        # the half-open period the call probes in; None: not a probe
        probe = self._admit(call, circuit) if circuit.state != CLOSED else None
        try:
            response = await proceed(call)
        except Exception as error:
            self._ended(call, circuit, probe, is_failure(None, error))
            raise
        except BaseException:  # cancelled: says nothing of the upstream
            self._ended(call, circuit, probe, None)
            raise
        status = response.status
        if (status < 500 or status == 501) and probe is None and circuit.state == CLOSED:
            circuit.succeeded(self._clock())  # the common case, without _ended()'s checks
        else:
            self._ended(call, circuit, probe, is_failure(status, None, response.headers))
        return response

    def _admit(self, call: Call, circuit: BreakerState) -> int:
        """For a circuit that is not closed: the half-open period the call is let through in,
        as a probe; raises ``CircuitOpenError`` to reject it."""
        now = self._clock()
        if circuit.state == OPEN:
            reopens_at = circuit.opened_at + self.policy.open_for
            if now < reopens_at:
                self._reject(call, circuit, reopens_at - now)
            circuit.state = HALF_OPEN
            circuit.probes = 0
            circuit.period += 1
            self._report(call, circuit, OPEN, 0, 0)
        if circuit.probes >= PROBES_PER_OPENING:
            self._reject(call, circuit, 0.0)
        circuit.probes += 1
        return circuit.period

    def _reject(self, call: Call, circuit: BreakerState, retry_in: float) -> None:
        observer = call.observer
        if observer is not None:
            observer.rejected(RejectionEvent(call.method, circuit.label, retry_in))
        error = CircuitOpenError(circuit.label, retry_in)
        when = f"next probe in {retry_in:.3f} s" if retry_in > 0 else "probes in flight"
        error.add_note(f"no attempt: {call.method} {circuit.label} circuit breaker open ({when})")
        raise error

    def _ended(
        self, call: Call, circuit: BreakerState, probe: int | None, failed: bool | None
    ) -> None:
        state = circuit.state
        if state == OPEN:
            return  # a call let through before it opened: the opening already counted it
        if probe == circuit.period and state == HALF_OPEN:
            if failed is None:
                circuit.probes -= 1  # its place goes to another probe
            elif failed:
                circuit.state = OPEN
                circuit.opened_at = self._clock()
                self._report(call, circuit, HALF_OPEN, 0, 0)
            else:
                circuit.state = CLOSED
                circuit.clear()
                self._report(call, circuit, HALF_OPEN, 0, 0)
            return
        if state == HALF_OPEN or failed is None:
            return  # only probes decide a half-open circuit
        now = self._clock()
        circuit.count(now, failed)
        if failed:
            failures, calls = circuit.totals(now)
            policy = self.policy
            if calls >= policy.min_calls and failures >= policy.failure_ratio * calls:
                circuit.state = OPEN
                circuit.opened_at = now
                self._report(call, circuit, CLOSED, failures, calls)

    def _report(
        self, call: Call, circuit: BreakerState, previous: str, failures: int, calls: int
    ) -> None:
        observer = call.observer
        if observer is not None:
            observer.breaker_changed(
                BreakerEvent(call.method, circuit.label, previous, circuit.state, failures, calls)
            )
