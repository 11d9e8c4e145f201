"""Each attempt's total timeout on shared slot timers, instead of aiohttp's timer per request.

aiohttp's ``ClientTimeout(total=...)`` costs a ``TimeoutHandle`` and a timer in the event
loop's heap per request, cancelled when the connection is released, and a ``TimerContext``
entered around the request and around every body read: about 8 us, 8 % of a plain GET on
this project's benchmark (``aiohttp_tuned`` with and without its default ``total``). So the
attempt runner hands aiohttp the attempt's timeout without its ``total`` (``untimed()``) and
bounds the attempt here, with the same effect as aiohttp's:

- until the response arrives, expiry cancels the task making the request, and the attempt
  raises ``asyncio.TimeoutError`` (a cancellation from elsewhere still propagates as one);
- then the deadline moves to the response until its connection is released (body read to
  the end, or the response released or closed): expiry fails the body read with
  ``asyncio.TimeoutError`` and the connection is closed rather than reused.

Deadlines share one timer per slot of ``1/64`` of the timeout (``_deadlines.py``), so an
attempt times out at most that much late: 0.25 s for 30 s, 16 ms for 1 s. aiohttp itself
rounds timeouts of 5 s and more up to the next whole second.
"""

from __future__ import annotations

import asyncio
from typing import Final

import aiohttp

from ._deadlines import Slot, SlotDeadlines

__all__ = ["AttemptTimeouts", "Expiry", "total_seconds", "untimed"]

_SLOTS_PER_TIMEOUT: Final = 64
#: what aiohttp is told for ``ceil_threshold``: never round the connect timeout up
_CEIL_OFF: Final = float("inf")
_SHORTEST: Final = 0.001  # a deadline already past still gets an attempt this long


class Expiry:
    """One attempt's total deadline; a ``Timed`` for ``SlotDeadlines``.

    Called (as a connection callback) when the response's connection is released.
    """

    __slots__ = (
        "cancelling",
        "deadlines",
        "fired",
        "response",
        "rh_deadline",
        "rh_slot",
        "task",
        "total",
    )

    def __init__(self, deadlines: SlotDeadlines, task: asyncio.Task[object], total: float) -> None:
        self.deadlines = deadlines
        self.task: asyncio.Task[object] | None = task
        self.cancelling = task.cancelling()  # a cancellation already pending is not ours
        self.total = total
        self.fired = False  # the task was cancelled by this deadline
        self.response: aiohttp.ClientResponse | None = None  # once the attempt returned it
        self.rh_deadline = 0.0
        self.rh_slot: Slot | None = None

    def rh_timeout(self) -> float:
        return self.total

    def rh_timed_out(self) -> None:
        response = self.response
        if response is not None:
            _fail_body(response)
        elif self.task is not None:
            self.fired = True
            self.task.cancel()

    def __call__(self) -> None:
        self.deadlines.unwatch(self)


class AttemptTimeouts:
    """The total timeouts of one session's attempts; event loop thread only.

    Around each ``await`` of aiohttp's request: ``start()`` before it, then ``failed()`` or
    ``returned()``.
    """

    __slots__ = ("_deadlines",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._deadlines = SlotDeadlines(loop, _SLOTS_PER_TIMEOUT)

    def start(self, total: float) -> Expiry:
        """An attempt bounded by ``total`` seconds starts in the current task."""
        task = asyncio.current_task()
        if task is None:  # as aiohttp's own timer context requires
            raise RuntimeError("resilient_http requests must run inside an asyncio task")
        expiry = Expiry(self._deadlines, task, total)
        self._deadlines.watch(expiry, total)
        return expiry

    def failed(self, expiry: Expiry, raised: BaseException) -> BaseException:
        """The attempt raised ``raised``: what it raises instead (``asyncio.TimeoutError``
        when the deadline cancelled it, as ``asyncio.timeout()`` decides)."""
        self._deadlines.unwatch(expiry)
        # uncancel() first, whatever was raised: the cancellation was ours to take back
        task = expiry.task
        if (
            expiry.fired
            and task is not None
            and task.uncancel() <= expiry.cancelling
            and isinstance(raised, asyncio.CancelledError)
        ):
            timeout = TimeoutError()
            timeout.__cause__ = raised
            return timeout
        return raised

    def returned(self, expiry: Expiry, response: aiohttp.ClientResponse) -> None:
        """The attempt returned ``response``: its deadline bounds the body until released."""
        connection = response.connection
        if expiry.fired and expiry.task is not None:  # cancelled too late to stop the request
            expiry.task.uncancel()
            expiry.fired = False
            if connection is not None:
                _fail_body(response)
        if connection is None:  # the body is complete (or there is none): nothing to bound
            self._deadlines.unwatch(expiry)
            return
        expiry.response = response
        expiry.task = None  # not cancelled from now on: a finished task is not kept alive
        connection.add_callback(expiry)


def _fail_body(response: aiohttp.ClientResponse) -> None:
    # What aiohttp does on a read timeout: the reader raises, the connection will be closed.
    timeout = TimeoutError()
    connection = response.connection
    if connection is not None and connection.protocol is not None:
        connection.protocol.set_exception(timeout)
    response.content.set_exception(timeout)


def total_seconds(template: aiohttp.ClientTimeout, left: float) -> float:
    """An attempt's total timeout: ``template.total`` (unset or 0: none) cut to the ``left``
    seconds before the call's deadline."""
    total = template.total
    return max(left if not total or total > left else total, _SHORTEST)


def untimed(template: aiohttp.ClientTimeout) -> aiohttp.ClientTimeout:
    """What aiohttp is given: ``template`` without ``total`` (bounded here) or rounding."""
    return aiohttp.ClientTimeout(
        connect=template.connect,
        sock_read=template.sock_read,
        sock_connect=template.sock_connect,
        ceil_threshold=_CEIL_OFF,
    )
