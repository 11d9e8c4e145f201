"""The settings in force when the telemetry was recorded, as the SDK exported them.

``configure_telemetry()`` writes every setting's effective value and the variables set in the
environment as resource attributes (``telemetry.names.CONFIG_PREFIX``). The analysis rebuilds
that environment and reads it with ``config.py``'s own reader, so a value means here exactly
what it meant to the SDK (``RESILIENT_HTTP_LIMIT=5`` lowers the per-host limit to 5 in both
places) and each value keeps its source. Without those attributes (telemetry from a service
with its own providers, or older files) the SPEC defaults are assumed, and evidence text says
so. Pool limits themselves come from the pool-limit gauges, per pool (``model.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from resilient_http._exceptions import ConfigError
from resilient_http.analysis import names
from resilient_http.config import (
    ENV_PREFIX,
    KNOWN_VARIABLES,
    ClientConfig,
    describe_environment,
    read_environment,
)

__all__ = ["ASSUMED", "PREFIX", "Settings", "fmt"]

PREFIX = ENV_PREFIX
#: The source of a setting the telemetry does not carry.
ASSUMED = "assumed default: not in the telemetry"


@dataclass(frozen=True)
class Settings:
    """A ``ClientConfig`` and, per variable, where its value came from.

    ``sources`` maps ``RESILIENT_HTTP_*`` names to ``environment``, ``default``, ... as
    ``resilient-http config`` says them; empty when the telemetry did not carry the settings.
    ``per_upstream`` holds the settings of the processes that called one upstream
    (``host:port``), where they differ from these.
    """

    config: ClientConfig = field(default_factory=ClientConfig)
    sources: Mapping[str, str] = field(default_factory=dict)
    per_upstream: Mapping[str, Settings] = field(default_factory=dict)
    values: Mapping[str, str] = field(default_factory=dict)
    """Each variable's value as the text to set it to (``resilient-http config``'s form)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """The settings ``environ`` gives a service (``config.py``'s reader; raises
        ``ConfigError`` as it does)."""
        config, sources = read_environment(environ, warn_unknown=False)
        values = {r.variable: r.value for r in describe_environment(environ, warn_unknown=False)}
        return cls(config, sources, values=values)

    @classmethod
    def from_resource(cls, attributes: Mapping[str, Any]) -> Settings | None:
        """The settings a resource carries (None when it carries none, or invalid ones)."""
        given = attributes.get(names.CONFIG_FROM_ENVIRONMENT)
        if given is None:
            return None
        variables = (given,) if isinstance(given, str) else tuple(given)
        environ = {
            str(variable): str(attributes[names.config_attribute(str(variable))])
            for variable in variables
            if variable in KNOWN_VARIABLES and names.config_attribute(str(variable)) in attributes
        }
        try:
            return cls.from_env(environ)
        except ConfigError:
            return None

    def for_upstream(self, upstream: str) -> Settings:
        """The settings of the processes that called ``upstream``."""
        return self.per_upstream.get(upstream, self)

    @property
    def limit(self) -> int:
        """``RESILIENT_HTTP_LIMIT`` (0 = unlimited)."""
        return self.config.limit

    @property
    def limit_per_host(self) -> int:
        """``RESILIENT_HTTP_LIMIT_PER_HOST``, lowered to ``LIMIT`` as the SDK lowers it."""
        return self.config.limit_per_host

    @property
    def keepalive_timeout(self) -> float:
        """``RESILIENT_HTTP_KEEPALIVE_TIMEOUT``."""
        return self.config.keepalive_timeout

    @property
    def timeout_read(self) -> float:
        """``RESILIENT_HTTP_TIMEOUT_READ``."""
        return self.config.timeout.read

    @property
    def retry_after_max(self) -> float:
        """``RESILIENT_HTTP_RETRY_AFTER_MAX``."""
        return self.config.retry.retry_after_max

    @property
    def retry_budget_ratio(self) -> float:
        """``RESILIENT_HTTP_RETRY_BUDGET_RATIO``."""
        return self.config.retry.budget_ratio

    @property
    def concurrency(self) -> str:
        """``RESILIENT_HTTP_CONCURRENCY``: static or adaptive."""
        return self.config.concurrency

    def to_json(self) -> dict[str, dict[str, str]]:
        """``{variable: {"value", "source"}}`` for the ``--json`` document (empty when the
        telemetry did not carry the settings)."""
        return {
            variable: {"value": value, "source": self.source(variable)}
            for variable, value in self.values.items()
            if variable in self.sources
        }

    def source(self, variable: str) -> str:
        """Where ``variable``'s value came from."""
        return self.sources.get(variable, ASSUMED)

    def describe(self, name: str, value: float, unit: str = "") -> str:
        """``15 s (default)`` or ``5 s (environment)``, for evidence text; ``name`` is the
        variable without ``RESILIENT_HTTP_``, in any case."""
        return f"{fmt(value)}{unit} ({self.source(PREFIX + name.upper())})"


def fmt(value: float | None) -> str:
    """Numbers for people: 5 not 5.0, 0.123 not 0.12345678, n/a for unknown."""
    if value is None:
        return "n/a"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
