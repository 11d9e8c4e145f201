"""``python -m tests.aiohttp_suite [pytest args...]``: aiohttp's client tests three ways.

Plain aiohttp, ``ResilientSession`` with retries off, ``ResilientSession`` with the defaults;
prints each run's counts and duration, then every test whose outcome differs from plain aiohttp
with the first line of its failure (and the documented reason of a documented one). Extra
arguments go to each pytest run (e.g. ``-k cookie``).
"""

from __future__ import annotations

import sys

from tests.aiohttp_suite.differences import KNOWN, function_name
from tests.aiohttp_suite.harness import Run, run_aiohttp_tests
from tests.aiohttp_suite.sources import Unavailable, aiohttp_tests
from tests.test_aiohttp_suite import retries_off_env


def differences(plain: Run, other: Run) -> list[str]:
    lines = []
    for test in sorted(set(plain.outcomes) | set(other.outcomes)):
        before, after = plain.outcomes.get(test, "not run"), other.outcomes.get(test, "not run")
        if before != after:
            cause = other.crashes.get(test) or plain.crashes.get(test, "")
            known = KNOWN.get(function_name(test))
            why = f"[documented: {known.reason}] " if known else ""
            lines.append(f"  {test.rpartition('/')[2]}: {before} -> {after}  {why}{cause}")
    return lines


def main(args: list[str]) -> int:
    try:
        tests_dir = aiohttp_tests()
    except Unavailable as exc:
        print(f"skipped: {exc}")
        return 0
    extra = tuple(args)
    plain = run_aiohttp_tests(tests_dir, "plain", extra_args=extra)
    runs = [
        run_aiohttp_tests(tests_dir, "resilient", retries_off_env(), extra_args=extra),
        run_aiohttp_tests(tests_dir, "resilient", extra_args=extra),
    ]
    print(plain.summary())
    for run in runs:
        print(run.summary(), f"sessions: {run.sessions}" if run.sessions["strays"] else "")
    for run in runs:
        print(f"\n{run.mode} {run.env or 'defaults'} versus plain aiohttp:")
        print("\n".join(differences(plain, run)) or "  no difference")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
