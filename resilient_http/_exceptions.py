"""Every error and warning the SDK defines, in one place.

Requests keep aiohttp's own exceptions: a call that fails after its retries raises the last aiohttp
exception, with one PEP 678 note per attempt, so ``except aiohttp.ClientError`` keeps working.
Limits on retrying (budget, deadline, a body that cannot be replayed) never raise errors of
their own: the failure is returned or raised as it was, with a note saying why it was not retried.
The SDK adds only these::

    ValueError
     └── ConfigError                  invalid setting or argument, raised before anything is sent
    aiohttp.ClientConnectionError
     └── CircuitOpenError             the upstream's circuit breaker is open: nothing was sent
    UserWarning
     └── ConfigWarning                a setting that is suspicious but usable (typo, ignored option)
"""

from __future__ import annotations

import aiohttp

__all__ = ["CircuitOpenError", "ConfigError", "ConfigWarning"]


class ConfigError(ValueError):
    """An invalid setting or argument; the message names it, the bad value and what is expected."""


class ConfigWarning(UserWarning):
    """A setting that works but is probably not what was meant (a typo, an ignored option)."""


class CircuitOpenError(aiohttp.ClientConnectionError):
    """The upstream's circuit breaker is open: the call failed at once, with no connection and
    no attempt (a note says when the breaker lets a probe through). ``upstream`` is its
    ``host:port``; ``retry_in`` the seconds until the next probe may go (0 while probes are
    already in flight)."""

    def __init__(self, upstream: str, retry_in: float) -> None:
        super().__init__(f"circuit breaker open for {upstream}")
        self.upstream = upstream
        self.retry_in = retry_in

    def __reduce__(self) -> tuple[type[CircuitOpenError], tuple[str, float]]:
        return (type(self), (self.upstream, self.retry_in))
