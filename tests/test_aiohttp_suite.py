"""aiohttp's own client tests as a test of ours (SPEC, "Drop-in").

aiohttp's ``tests/test_client_functional.py`` and ``tests/test_client_ws_functional.py``, of the
aiohttp installed, are fetched from its sdist (cached in ``.cache/aiohttp-tests/``) and run in
three pytest subprocesses at once: on plain aiohttp, and with every session they build being a
``ResilientSession``, with retries off (and the breaker, once the SDK has the setting) and with
the defaults. Each difference from plain aiohttp must be a known one
(``tests/aiohttp_suite/differences.py``), documented in docs/drop-in.md, "Differences from aiohttp";
with retries off the only one left is a test that turns aiohttp's private hidden resend back on.
About 45 s for the three on the shared 2-core machine.
``python -m tests.aiohttp_suite`` prints the differences.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.aiohttp_suite.differences import KNOWN, undocumented_changes
from tests.aiohttp_suite.harness import (
    Run,
    breaker_off_is_known,
    missing_plugins,
    run_aiohttp_tests,
)
from tests.aiohttp_suite.sources import Unavailable, aiohttp_tests

pytestmark = pytest.mark.aiohttp_suite

ROOT = Path(__file__).resolve().parent.parent

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
def suite_runs(aiohttp_tests_dir: Path) -> Iterator[dict[str, Future[Run]]]:
    """The three runs at once: each is one pytest process that often waits (aiohttp's tests
    sleep and time out), so on 2 cores they take 43 s together against 90 s one after another.
    Leaving the module waits for every run, so no process outlives it."""
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="aiohttp-suite") as pool:
        yield {
            "plain": pool.submit(run_aiohttp_tests, aiohttp_tests_dir, "plain"),
            "retries_off": pool.submit(
                run_aiohttp_tests, aiohttp_tests_dir, "resilient", retries_off_env()
            ),
            "defaults": pool.submit(run_aiohttp_tests, aiohttp_tests_dir, "resilient"),
        }


@pytest.fixture(scope="module")
def plain_run(suite_runs: dict[str, Future[Run]]) -> Run:
    """aiohttp's tests on plain aiohttp: what the SDK is measured against."""
    return suite_runs["plain"].result()


@pytest.fixture(scope="module")
def resilient_run(suite_runs: dict[str, Future[Run]]) -> Run:
    """aiohttp's tests with every session a ResilientSession, retries off."""
    return suite_runs["retries_off"].result()


@pytest.fixture(scope="module")
def defaults_run(suite_runs: dict[str, Future[Run]]) -> Run:
    """aiohttp's tests with every session a ResilientSession, default settings."""
    return suite_runs["defaults"].result()


def test_the_harness_runs_aiohttps_tests_through_resilient_sessions(
    plain_run: Run, resilient_run: Run
) -> None:
    """Outside the expected failure below: a broken harness must not pass as expected."""
    assert plain_run.count("passed") > 100, f"the harness itself is broken:\n{plain_run.tail}"
    # Every session the tests built was a ResilientSession (each wrapping one real session).
    sessions = resilient_run.sessions
    assert sessions["strays"] == [], "real aiohttp.ClientSession built outside ResilientSession"
    assert sessions["resilient"] == sessions["wrapped"] > 0, sessions


def test_resilient_session_with_retries_off_passes_what_plain_aiohttp_passes(
    plain_run: Run, resilient_run: Run
) -> None:
    changes = undocumented_changes(plain_run, resilient_run, retries_off=True)
    assert changes == {}, f"{plain_run.summary()}\n{resilient_run.summary()}"


def test_resilient_session_with_the_defaults_differs_only_where_documented(
    plain_run: Run, defaults_run: Run
) -> None:
    assert defaults_run.sessions["strays"] == []
    changes = undocumented_changes(plain_run, defaults_run, retries_off=False)
    assert changes == {}, f"{plain_run.summary()}\n{defaults_run.summary()}"


def test_the_docs_document_every_known_difference() -> None:
    docs = (ROOT / "docs" / "drop-in.md").read_text()
    section = docs[docs.index("## Differences from aiohttp") :]
    end = section.find("\n#", 1)
    section = section if end < 0 else section[:end]
    bullets = {bullet.partition(".**")[0]: bullet for bullet in section.split("\n- **")[1:]}
    for test, difference in KNOWN.items():
        assert difference.reason in bullets, difference.reason
        assert f"`{test}`" in bullets[difference.reason], (test, difference.reason)


def test_an_undocumented_or_outdated_difference_is_reported() -> None:
    """The comparison itself, on made-up runs: what the two tests above would fail on."""

    def run(**outcomes: str) -> Run:
        ids = {
            f"tests/test_client_functional.py::{name}[pyloop]": o for name, o in outcomes.items()
        }
        return Run("plain", {}, ids, {}, {}, 0.0, 0, "")

    known = next(name for name, d in KNOWN.items() if d.retries_off)
    plain = run(test_a="passed", test_b="failed", **{known: "passed"})
    assert (
        undocumented_changes(plain, run(test_a="passed", **{known: "failed"}), retries_off=True)
        == {}
    )
    changes = undocumented_changes(
        plain, run(test_a="failed", test_b="passed", **{known: "passed"}), retries_off=True
    )
    assert set(changes) == {
        "lost, not in differences.KNOWN",
        "in differences.KNOWN, but passing now",
        "passing only through ResilientSession",
    }
