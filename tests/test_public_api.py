"""The public surface is pinned: adding or removing a name is a deliberate change here."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import resilient_http as rh
from tests.helpers import clean_environ, run_python

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_PUBLIC_NAMES = {
    "BreakerPolicy",
    "CircuitOpenError",
    "ClientConfig",
    "ConfigError",
    "ConfigWarning",
    "HostPoolStats",
    "PoolStats",
    "RequestContextManager",
    "ResilientSession",
    "RetryPolicy",
    "TelemetryHandle",
    "TimeoutConfig",
    "__version__",
    "configure_telemetry",
    "create_connector",
    "middleware",
    "pool_stats",
    "telemetry",
    "testing",
}


def test_all_is_pinned() -> None:
    assert set(rh.__all__) == EXPECTED_PUBLIC_NAMES
    assert len(rh.__all__) == len(set(rh.__all__))
    for name in rh.__all__:
        assert hasattr(rh, name), name


def test_public_names_have_docstrings() -> None:
    for name in rh.__all__:
        if name != "__version__":
            assert getattr(rh, name).__doc__, name


def test_version_and_typed_marker() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", rh.__version__)
    # Written once, in pyproject.toml; the package reads it from the installed metadata.
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert rh.__version__ == version("resilient-http-sdk") == pyproject["project"]["version"]
    from importlib.resources import files

    assert files("resilient_http").joinpath("py.typed").is_file()


def test_exception_tree() -> None:
    assert issubclass(rh.ConfigError, ValueError)
    assert issubclass(rh.ConfigWarning, UserWarning)


def test_testing_surface_is_pinned() -> None:
    assert set(rh.testing.__all__) == {
        "AttemptEvent",
        "BreakerEvent",
        "Event",
        "HedgeEvent",
        "QueuedEvent",
        "Recorder",
        "RejectionEvent",
        "RetryEvent",
        "SuppressionEvent",
        "TestingHandle",
        "active_recorders",
        "is_testing",
        "record",
        "set_testing",
        "testing_attempts",
    }
    for name in rh.testing.__all__:
        assert getattr(rh.testing, name).__doc__, name


def test_telemetry_surface_is_pinned() -> None:
    assert set(rh.telemetry.__all__) == {"OTLPJsonFileMetricExporter", "OTLPJsonFileSpanExporter"}
    for name in rh.telemetry.__all__:
        assert getattr(rh.telemetry, name).__doc__, name


async def test_recorder_sees_only_the_calls_made_inside_it() -> None:
    from resilient_http.upstream import FaultPlan, FaultyUpstream

    async with FaultyUpstream(FaultPlan()) as upstream, rh.ResilientSession() as client:
        async with client.get(f"{upstream.url}/before") as resp:
            await resp.read()
        with rh.testing.record() as outer:
            with rh.testing.record() as inner:
                async with client.get(f"{upstream.url}/inside") as resp:
                    await resp.read()
            async with client.get(f"{upstream.url}/outer-only") as resp:
                await resp.read()
        async with client.get(f"{upstream.url}/after") as resp:
            await resp.read()
    assert [(a.number, a.status) for a in inner.attempts] == [(1, 200)]
    assert [(a.number, a.status) for a in outer.attempts] == [(1, 200), (1, 200)]
    assert outer.retries == []
    assert outer.suppressions == []


_WITHOUT_THE_SDK = """
import asyncio, sys
import resilient_http as rh
from resilient_http.upstream import FaultyUpstream

async def main():
    async with FaultyUpstream() as upstream, rh.ResilientSession() as client:
        async with client.get(upstream.url) as resp:
            print(resp.status)

asyncio.run(main())
print(sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk")))
print("OTLPJsonFileSpanExporter" in dir(rh.telemetry), "configure_telemetry" in dir(rh))
"""


async def test_an_application_that_never_exports_does_not_load_the_opentelemetry_sdk() -> None:
    """The SDK reads some OTEL_* variables when imported and raises on a bad one: an application
    that never configures telemetry neither pays for it nor fails on it."""
    code, out, err = await run_python(
        "-c",
        _WITHOUT_THE_SDK,
        cwd=ROOT,
        env=clean_environ(OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT="not-a-number"),
    )
    assert code == 0, err
    assert out.splitlines() == ["200", "[]", "True True"]
