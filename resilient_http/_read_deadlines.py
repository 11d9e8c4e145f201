"""Socket-read deadlines checked by one timer per time slot instead of one timer per response.

aiohttp gives every response its own ``sock_read`` timer, and cancels and replaces it for every
chunk received; each timer is an object in the event loop's heap, ordered by Python-level
comparisons, and cancelled ones stay there until swept. Here a response only joins the set of
its deadline's slot: every deadline in a slot shares the one timer set for the slot's end, a
chunk just moves the response's deadline, and a slot that comes due re-files the deadlines that
moved. A read therefore times out between ``timeout`` and ``timeout + slot`` after the last data,
where a slot is ``timeout / 8`` rounded down to a power of two seconds (1 s for the default
10 s): the same order of precision as aiohttp's own rounding of timeouts of 5 s and more up to
whole seconds.

Pure asyncio, no aiohttp: ``pool.py`` connects it to aiohttp's protocol.
"""

from __future__ import annotations

import asyncio
import math
from typing import Final, Protocol

__all__ = ["ReadDeadlines", "Reader", "slot_width"]

# Slots per timeout: a read times out at most 1/8 of its timeout late.
_SLOTS_PER_TIMEOUT: Final = 8
Slot = tuple[float, int]
"""(slot width in seconds, slot number): the slot ends at ``width * number``."""


class Reader(Protocol):
    """What a connection exposes to have its reads timed."""

    rh_read_deadline: float
    rh_read_slot: Slot | None

    def rh_read_timeout(self) -> float | None:
        """The current read timeout in seconds (None or 0: none)."""

    def rh_read_timed_out(self) -> None:
        """The deadline passed with no data: fail the read."""


def slot_width(timeout: float) -> float:
    """The slot width for ``timeout``: ``timeout / 8`` rounded down to a power of two."""
    return 2.0 ** math.floor(math.log2(timeout / _SLOTS_PER_TIMEOUT))


class ReadDeadlines:
    """The read deadlines of one connector's connections, by slot; event loop thread only."""

    __slots__ = ("_loop", "_slots", "_widths")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slots: dict[Slot, set[Reader]] = {}
        self._widths: dict[float, float] = {}  # timeouts are few (settings): computed once each

    def watch(self, reader: Reader, timeout: float) -> None:
        """Time ``reader``'s read out ``timeout`` seconds from now unless it moves its deadline."""
        deadline = self._loop.time() + timeout
        reader.rh_read_deadline = deadline
        slot = self._slot(deadline, timeout)
        current = reader.rh_read_slot
        if current is not None:
            if current[0] * current[1] <= slot[0] * slot[1]:
                return  # a later deadline: the slot coming due re-files it (no timer work now)
            self.unwatch(reader)  # a shorter timeout: its slot ends earlier
        self._file(reader, slot)

    def unwatch(self, reader: Reader) -> None:
        """Stop timing ``reader``'s read (done, paused or closed)."""
        slot = reader.rh_read_slot
        if slot is not None:
            reader.rh_read_slot = None
            members = self._slots.get(slot)
            if members is not None:
                members.discard(reader)

    def _slot(self, deadline: float, timeout: float) -> Slot:
        """The slot a ``deadline`` set by ``timeout`` falls in (the first ending at or after it)."""
        width = self._widths.get(timeout)
        if width is None:
            width = self._widths[timeout] = slot_width(timeout)
        return width, math.ceil(deadline / width)

    def _file(self, reader: Reader, slot: Slot) -> None:
        members = self._slots.get(slot)
        if members is None:
            members = self._slots[slot] = set()
            self._loop.call_at(slot[0] * slot[1], self._due, slot)
        members.add(reader)
        reader.rh_read_slot = slot

    def _due(self, slot: Slot) -> None:
        members = self._slots.pop(slot, None)
        if not members:
            return
        now = self._loop.time()
        for reader in members:
            reader.rh_read_slot = None
            if reader.rh_read_deadline <= now:
                reader.rh_read_timed_out()
                continue
            timeout = reader.rh_read_timeout()
            if timeout:  # data came since it was filed: file it by its moved deadline
                self._file(reader, self._slot(reader.rh_read_deadline, timeout))
