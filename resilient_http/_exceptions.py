"""Every error and warning the SDK defines, in one place.

Requests keep aiohttp's own exceptions: a call that fails after its retries raises the last aiohttp
exception, with one PEP 678 note per attempt, so ``except aiohttp.ClientError`` keeps working.
The SDK adds only these::

    ValueError
     └── ConfigError                  invalid setting or argument, raised before anything is sent
    aiohttp.ClientError
     └── ResilientHTTPError           base of the errors a request made through the SDK can raise
          └── BodyNotReplayableError  a retry would need a body that was already consumed
    UserWarning
     └── ConfigWarning                a setting that is suspicious but usable (typo, ignored option)
"""

from __future__ import annotations

import aiohttp

__all__ = ["BodyNotReplayableError", "ConfigError", "ConfigWarning", "ResilientHTTPError"]


class ConfigError(ValueError):
    """An invalid setting or argument; the message names it, the bad value and what is expected."""


class ConfigWarning(UserWarning):
    """A setting that works but is probably not what was meant (a typo, an ignored option)."""


class ResilientHTTPError(aiohttp.ClientError):
    """Base of the SDK's own request errors; a subclass of ``aiohttp.ClientError``."""


class BodyNotReplayableError(ResilientHTTPError):
    """The request should be retried, but its body was a stream that has already been consumed."""
