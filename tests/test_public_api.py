"""The public surface is pinned: adding or removing a name is a deliberate change here."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import resilient_http as rh

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
