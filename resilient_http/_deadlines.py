"""Deadlines checked by one timer per time slot instead of one timer per request.

aiohttp gives every request a timer for its ``total`` timeout and every response one for
``sock_read``, cancelled and replaced for every chunk received; each timer is an object in the
event loop's heap, ordered by Python-level comparisons, and cancelled ones stay there until
swept. Here a deadline only joins the set of its slot: every deadline in a slot shares the one
timer set for the slot's end, a deadline that moves (a chunk received) just updates a number,
and a slot that comes due re-files the deadlines that moved. A deadline is therefore met
between ``timeout`` and ``timeout + slot`` after it was set, where a slot is ``timeout /
slots_per_timeout`` rounded down to a power of two seconds.

Pure asyncio, no aiohttp: ``pool.py`` times socket reads with it, ``_attempt_timeouts.py``
each attempt's total.
"""

from __future__ import annotations

import asyncio
import math
from typing import Final, Protocol

__all__ = ["Slot", "SlotDeadlines", "Timed", "slot_width"]

Slot = tuple[float, int]
"""(slot width in seconds, slot number): the slot ends at ``width * number``."""
_DEFAULT_SLOTS: Final = 8


class Timed(Protocol):
    """Something with a deadline: a socket read, an attempt."""

    rh_deadline: float
    rh_slot: Slot | None

    def rh_timeout(self) -> float | None:
        """The timeout the deadline was set by, to file it again when it moved (None or 0:
        no longer timed)."""

    def rh_timed_out(self) -> None:
        """The deadline passed: fail what it bounds."""


def slot_width(timeout: float, slots_per_timeout: int = _DEFAULT_SLOTS) -> float:
    """The slot width for ``timeout``: ``timeout / slots_per_timeout`` rounded down to a power
    of two."""
    return 2.0 ** math.floor(math.log2(timeout / slots_per_timeout))


class SlotDeadlines:
    """Deadlines by slot, for one event loop; event loop thread only.

    ``slots_per_timeout`` sets the precision: a deadline is met at most ``1 /
    slots_per_timeout`` of its timeout late.
    """

    __slots__ = ("_loop", "_slots", "_slots_per_timeout", "_widths")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, slots_per_timeout: int = _DEFAULT_SLOTS
    ) -> None:
        self._loop = loop
        self._slots_per_timeout = slots_per_timeout
        self._slots: dict[Slot, set[Timed]] = {}
        self._widths: dict[float, float] = {}  # few distinct timeouts (settings): memoized

    def watch(self, timed: Timed, timeout: float) -> None:
        """Time ``timed`` out ``timeout`` seconds from now unless its deadline moves."""
        deadline = self._loop.time() + timeout
        timed.rh_deadline = deadline
        slot = self._slot(deadline, timeout)
        current = timed.rh_slot
        if current is not None:
            if current[0] * current[1] <= slot[0] * slot[1]:
                return  # a later deadline: the slot coming due re-files it (no timer work now)
            self.unwatch(timed)  # a shorter timeout: its slot ends earlier
        self._file(timed, slot)

    def unwatch(self, timed: Timed) -> None:
        """Stop timing ``timed`` (done, paused or closed)."""
        slot = timed.rh_slot
        if slot is not None:
            timed.rh_slot = None
            members = self._slots.get(slot)
            if members is not None:
                members.discard(timed)

    def _slot(self, deadline: float, timeout: float) -> Slot:
        """The slot a ``deadline`` set by ``timeout`` falls in (the first ending at or after it)."""
        width = self._widths.get(timeout)
        if width is None:
            if len(self._widths) > _MAX_WIDTHS:  # timeouts trimmed to a deadline: many values
                self._widths.clear()
            width = self._widths[timeout] = slot_width(timeout, self._slots_per_timeout)
        return width, math.ceil(deadline / width)

    def _file(self, timed: Timed, slot: Slot) -> None:
        members = self._slots.get(slot)
        if members is None:
            members = self._slots[slot] = set()
            self._loop.call_at(slot[0] * slot[1], self._due, slot)
        members.add(timed)
        timed.rh_slot = slot

    def _due(self, slot: Slot) -> None:
        members = self._slots.pop(slot, None)
        if not members:
            return
        now = self._loop.time()
        for timed in members:
            timed.rh_slot = None
            if timed.rh_deadline <= now:
                timed.rh_timed_out()
                continue
            timeout = timed.rh_timeout()
            if timeout:  # it moved since it was filed: file it by its new deadline
                self._file(timed, self._slot(timed.rh_deadline, timeout))


_MAX_WIDTHS: Final = 1024
