"""The public surface is pinned: adding or removing a name is a deliberate change here."""

from __future__ import annotations

import re

import resilient_http as rh

EXPECTED_PUBLIC_NAMES = {
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
    from importlib.resources import files

    assert files("resilient_http").joinpath("py.typed").is_file()


def test_exception_tree() -> None:
    assert issubclass(rh.ConfigError, ValueError)
    assert issubclass(rh.ConfigWarning, UserWarning)
