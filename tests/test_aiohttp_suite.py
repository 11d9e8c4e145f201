"""aiohttp's own client tests as a test of ours (SPEC, "Drop-in").

aiohttp's ``tests/test_client_functional.py`` and ``tests/test_client_ws_functional.py``, of the
aiohttp installed, are fetched from its sdist (cached in ``.cache/aiohttp-tests/``) and run in a
pytest subprocess twice: on plain aiohttp, and with every session they build being a
``ResilientSession`` with retries off (and the breaker, once the SDK has the setting). Exactly
the same tests must pass. About 25 s per run on the shared 2-core machine.
``python -m tests.aiohttp_suite`` prints the differences, with the defaults too.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from tests.aiohttp_suite.harness import (
    Run,
    breaker_off_is_known,
    missing_plugins,
    run_aiohttp_tests,
)
from tests.aiohttp_suite.sources import Unavailable, aiohttp_tests

pytestmark = pytest.mark.aiohttp_suite

RETRIES_OFF = {"RESILIENT_HTTP_RETRY_MAX_ATTEMPTS": "1"}


def retries_off_env() -> dict[str, str]:
    """Retries off, and the breaker off when ``RESILIENT_HTTP_BREAKER`` is a known setting."""
    if breaker_off_is_known():
        return {**RETRIES_OFF, "RESILIENT_HTTP_BREAKER": "off"}
    return dict(RETRIES_OFF)


@pytest.fixture(scope="module")
def aiohttp_tests_dir() -> Path:
    missing = missing_plugins()
    if missing:
        pytest.skip(
            f"aiohttp's tests need {', '.join(missing)} (the aiohttp-tests extra): "
            "pip install -e '.[dev,aiohttp-tests]', as `make pytest` does"
        )
    try:
        return aiohttp_tests()
    except Unavailable as exc:
        pytest.skip(f"aiohttp {version('aiohttp')}'s test files are not available: {exc}")


@pytest.fixture(scope="module")
def plain_run(aiohttp_tests_dir: Path) -> Run:
    """aiohttp's tests on plain aiohttp: what the SDK is measured against."""
    return run_aiohttp_tests(aiohttp_tests_dir, "plain")


@pytest.fixture(scope="module")
def resilient_run(aiohttp_tests_dir: Path) -> Run:
    """aiohttp's tests with every session a ResilientSession, retries off."""
    return run_aiohttp_tests(aiohttp_tests_dir, "resilient", retries_off_env())


def test_the_harness_runs_aiohttps_tests_through_resilient_sessions(
    plain_run: Run, resilient_run: Run
) -> None:
    """Outside the expected failure below: a broken harness must not pass as expected."""
    assert plain_run.count("passed") > 100, f"the harness itself is broken:\n{plain_run.tail}"
    # Every session the tests built was a ResilientSession (each wrapping one real session).
    sessions = resilient_run.sessions
    assert sessions["strays"] == [], "real aiohttp.ClientSession built outside ResilientSession"
    assert sessions["resilient"] == sessions["wrapped"] > 0, sessions


@pytest.mark.xfail(
    raises=AssertionError,
    strict=True,
    reason="known differences: aiohttp.request() builds ClientSession(timeout=<sentinel>) and "
    "calls its private _request; tests read the private _connector or set _retry_connection "
    "on the session; remove this mark once it passes",
)
def test_resilient_session_with_retries_off_passes_what_plain_aiohttp_passes(
    plain_run: Run, resilient_run: Run
) -> None:
    lost = {
        test: resilient_run.crashes.get(test, resilient_run.outcomes.get(test, "not run"))
        for test in sorted(plain_run.passed - resilient_run.passed)
    }
    gained = sorted(resilient_run.passed - plain_run.passed)
    assert (lost, gained) == ({}, []), f"{plain_run.summary()}\n{resilient_run.summary()}"
