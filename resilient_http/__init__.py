"""resilient_http: an asyncio HTTP client SDK on aiohttp with a tuned, observable pool.

>>> import resilient_http as rh
>>> rh.ClientConfig(limit=30).limit_per_host
10

The public names are those in ``__all__``; every other module is private to the SDK.
"""

from typing import TYPE_CHECKING, Any, Final

from . import telemetry, testing
from ._exceptions import CircuitOpenError, ConfigError, ConfigWarning
from ._middleware import create_connector, middleware
from ._version import __version__
from .config import BreakerPolicy, ClientConfig, RetryPolicy, TimeoutConfig
from .pool import HostPoolStats, PoolStats, pool_stats
from .session import RequestContextManager, ResilientSession

if TYPE_CHECKING:
    from .telemetry.setup import TelemetryHandle, configure_telemetry

__all__ = [
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
]


# Telemetry set-up needs the OpenTelemetry SDK: imported on first use (see telemetry/__init__).
_TELEMETRY_SETUP: Final = ("TelemetryHandle", "configure_telemetry")


def __getattr__(name: str) -> Any:
    if name in _TELEMETRY_SETUP:
        from .telemetry import setup

        return getattr(setup, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
