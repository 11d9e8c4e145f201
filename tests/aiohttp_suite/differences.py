"""Where ``ResilientSession`` is known to differ from plain aiohttp in aiohttp's own tests.

Each entry is an aiohttp test function (every parametrization of it) with the
docs/drop-in.md "Differences from aiohttp" bullet that gives the reason, and whether it remains
with retries off. ``tests/test_aiohttp_suite.py`` checks that the differences measured are
exactly these (an undocumented difference fails, and so does an entry that no longer differs)
and that docs/drop-in.md names each test under its bullet. Entries for tests that the aiohttp
version under test does not have are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tests.aiohttp_suite.harness import Run

__all__ = ["KNOWN", "Difference", "function_name", "lost", "undocumented_changes"]


@dataclass(frozen=True)
class Difference:
    """Why an aiohttp test fails through ``ResilientSession`` though it passes on aiohttp."""

    reason: str
    """The bold title of the docs/drop-in.md bullet that explains it."""
    retries_off: bool
    """Whether it fails with retries off too (else only with the defaults)."""


KNOWN: Final = {
    # A connect timeout is retried (3 attempts): the test counts connect() calls.
    "test_connection_timeout_error": Difference("Retries", retries_off=False),
    # A read timeout before the headers is retried: the test expects it at once.
    "test_read_timeout_closes_connection": Difference("Retries", retries_off=False),
    # The test sets aiohttp's private _retry_connection=True to bring back aiohttp's hidden
    # resend of a PUT whose fresh connection the server closed, and expects a file body to be
    # sent again. (aiohttp 3.14's tests only.)
    "test_file_upload_retry_persistent_connection": Difference("No hidden resend", True),
}


def function_name(test_id: str) -> str:
    """``test_x`` of ``path/file.py::test_x[param]``."""
    return test_id.rpartition("::")[2].partition("[")[0]


def lost(plain: Run, other: Run) -> dict[str, str]:
    """Tests that pass on plain aiohttp but not in ``other``: their crash line or outcome."""
    return {
        test: other.crashes.get(test, other.outcomes.get(test, "not run"))
        for test in sorted(plain.passed - other.passed)
    }


def undocumented_changes(plain: Run, other: Run, *, retries_off: bool) -> dict[str, object]:
    """What differs from ``KNOWN``: tests lost without an entry, entries that no longer
    differ, and tests that pass only through ``ResilientSession``. Empty when all is known."""
    expected = {
        test
        for test in plain.passed
        if function_name(test) in KNOWN
        and (KNOWN[function_name(test)].retries_off or not retries_off)
    }
    measured = lost(plain, other)
    changes: dict[str, object] = {}
    unexplained = {t: why for t, why in measured.items() if t not in expected}
    if unexplained:
        changes["lost, not in differences.KNOWN"] = unexplained
    stale = sorted(expected - set(measured))
    if stale:
        changes["in differences.KNOWN, but passing now"] = stale
    gained = sorted(other.passed - plain.passed)
    if gained:
        changes["passing only through ResilientSession"] = gained
    return changes
