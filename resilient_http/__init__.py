"""resilient_http: an asyncio HTTP client SDK on aiohttp with a tuned, observable pool.

>>> import resilient_http as rh
>>> rh.ClientConfig(limit=30).limit_per_host
10

The public names are those in ``__all__``; every other module is private to the SDK.
"""

from . import telemetry, testing
from ._exceptions import CircuitOpenError, ConfigError, ConfigWarning
from ._middleware import create_connector, middleware
from ._version import __version__
from .config import BreakerPolicy, ClientConfig, RetryPolicy, TimeoutConfig
from .pool import HostPoolStats, PoolStats, pool_stats
from .session import RequestContextManager, ResilientSession
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
