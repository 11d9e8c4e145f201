"""A timed outage: the upstream goes down for a few seconds, then recovers at the same address.

`Outage` is the plan's description (its text form is the CLI's `--outage` value); `OutageSwitch`
is the server's timer pair that takes the upstream down and brings it back. The window starts
at the first ordinary request, so it falls at the same point of a load whatever the start-up
took. Two ways to be down:

- `refuse`: the listener closes (connects are refused) and so do idle keep-alive connections;
  a request that arrives on a connection still open is closed unanswered (an outage close);
- `hang`: connections are still accepted, but requests that arrive while down are never
  answered; at recovery their connections are closed, as a restarted process would.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

__all__ = ["Outage", "OutageMode", "OutageSwitch"]

OutageMode = Literal["refuse", "hang"]


@dataclass(frozen=True, slots=True)
class Outage:
    """Down for `duration` seconds, `after` seconds after the first ordinary request."""

    mode: OutageMode = "refuse"
    after: float = 1.0
    duration: float = 2.0

    def __post_init__(self) -> None:
        if self.mode not in get_args(OutageMode):
            raise ValueError(f"outage mode must be one of {get_args(OutageMode)}")
        for name in ("after", "duration"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"outage {name} must be finite and >= 0, got {value!r}")

    @classmethod
    def parse(cls, text: str) -> Outage:
        """`MODE:AFTER:DURATION`, e.g. `refuse:0.3:2` or `hang:1:6`."""
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"outage must be MODE:AFTER:DURATION, got {text!r}")
        mode, after, duration = parts
        return cls(cast(Any, mode), float(after), float(duration))

    def __str__(self) -> str:
        return f"{self.mode}:{self.after!r}:{self.duration!r}"


class OutageSwitch:
    """Takes a server down and up again on the event loop's timers, once per plan."""

    def __init__(
        self,
        outage: Outage | None,
        go_down: Callable[[Outage], None],
        come_back: Callable[[Outage], None],
    ) -> None:
        self._outage = outage
        self._go_down = go_down
        self._come_back = come_back
        self._timers: list[asyncio.TimerHandle] = []
        self.is_armed = False
        self.is_down = False

    def request_arrived(self) -> None:
        """Start the window's clock at the first ordinary request (later calls do nothing)."""
        outage = self._outage
        if outage is None or self.is_armed:
            return
        self.is_armed = True
        loop = asyncio.get_running_loop()
        if outage.after:
            self._timers.append(loop.call_later(outage.after, self._down))
        else:
            self._down()  # at once: the first request meets the outage already
        self._timers.append(loop.call_later(outage.after + outage.duration, self._up))

    def cancel(self) -> None:
        """Forget the pending timers (a new plan, or the server closing)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _down(self) -> None:
        assert self._outage is not None
        self.is_down = True
        self._go_down(self._outage)

    def _up(self) -> None:
        assert self._outage is not None
        self.is_down = False
        self._come_back(self._outage)
