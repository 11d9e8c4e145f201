"""The settings in force when the telemetry was recorded, as far as the advice needs them.

The telemetry carries the pool limits (``resilient_http.pool.limit``) but not the keep-alive,
timeout or retry settings. Those are read from the analysing process's ``RESILIENT_HTTP_*``
environment (the demo analyses its own run) or default to the SPEC's defaults; evidence text
says which, so advice based on an assumed value is visibly so.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["PREFIX", "Settings", "fmt"]

PREFIX = "RESILIENT_HTTP_"


@dataclass(frozen=True)
class Settings:
    """The settings in force, where the telemetry does not say (SPEC defaults)."""

    limit: int = 100
    limit_per_host: int = 10
    keepalive_timeout: float = 15.0
    timeout_read: float = 10.0
    retry_after_max: float = 30.0
    retry_budget_ratio: float = 0.2
    from_environment: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults, overridden by parseable ``RESILIENT_HTTP_*`` values of ``environ``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}  # checked per field by the casts below
        for name, cast in (
            ("limit", int),
            ("limit_per_host", int),
            ("keepalive_timeout", float),
            ("timeout_read", float),
            ("retry_after_max", float),
            ("retry_budget_ratio", float),
        ):
            raw = env.get(PREFIX + name.upper())
            if raw is None:
                continue
            try:
                value = cast(raw)
            except ValueError:
                continue  # `resilient-http config` reports bad values; advice uses the default
            if math.isfinite(value) and value >= 0:
                values[name] = value
        return replace(cls(from_environment=frozenset(values)), **values)

    def describe(self, name: str, value: float, unit: str = "") -> str:
        """``15 s (default)`` or ``5 s (environment)``, for evidence text."""
        origin = "environment" if name in self.from_environment else "default"
        return f"{fmt(value)}{unit} ({origin})"


def fmt(value: float | None) -> str:
    """Numbers for people: 5 not 5.0, 0.123 not 0.12345678, n/a for unknown."""
    if value is None:
        return "n/a"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
