"""Every error and warning the SDK defines, in one place.

Requests keep aiohttp's own exceptions: a call that fails after its retries raises the last aiohttp
exception, with one PEP 678 note per attempt, so ``except aiohttp.ClientError`` keeps working.
Limits on retrying (budget, deadline, a body that cannot be replayed) never raise errors of
their own: the failure is returned or raised as it was, with a note saying why it was not retried.
The SDK adds only these::

    ValueError
     └── ConfigError                  invalid setting or argument, raised before anything is sent
    UserWarning
     └── ConfigWarning                a setting that is suspicious but usable (typo, ignored option)
"""

from __future__ import annotations

__all__ = ["ConfigError", "ConfigWarning"]


class ConfigError(ValueError):
    """An invalid setting or argument; the message names it, the bad value and what is expected."""


class ConfigWarning(UserWarning):
    """A setting that works but is probably not what was meant (a typo, an ignored option)."""
