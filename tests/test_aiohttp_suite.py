"""aiohttp's own client tests as a test of ours (issue 14, item 2; SPEC, "Drop-in").

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


@pytest.mark.xfail(
    raises=AssertionError,
    strict=True,
    reason="issue 14 item 1 (SDK): aiohttp.request() on a ResilientSession, private "
    "_connector, _retry_connection set on the wrapper; remove this mark once it passes",
)
def test_resilient_session_with_retries_off_passes_what_plain_aiohttp_passes(
    aiohttp_tests_dir: Path,
) -> None:
    plain = run_aiohttp_tests(aiohttp_tests_dir, "plain")
    assert plain.count("passed") > 100, f"the harness itself is broken:\n{plain.tail}"
    resilient = run_aiohttp_tests(aiohttp_tests_dir, "resilient", retries_off_env())

    # Every session the tests built was a ResilientSession (each wrapping one real session).
    sessions = resilient.sessions
    assert sessions["strays"] == [], "real aiohttp.ClientSession built outside ResilientSession"
    assert sessions["resilient"] == sessions["wrapped"] > 0, sessions

    lost = {
        test: resilient.crashes.get(test, resilient.outcomes.get(test, "not run"))
        for test in sorted(plain.passed - resilient.passed)
    }
    gained = sorted(resilient.passed - plain.passed)
    assert (lost, gained) == ({}, []), f"{plain.summary()}\n{resilient.summary()}"
