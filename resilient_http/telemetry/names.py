"""Names of the telemetry contract (SPEC "Telemetry contract"): scopes, attributes, metrics.

Written by ``telemetry/`` and read by ``analysis/``; kept in one place so that a renamed
attribute or metric is a one-line change here, and producer and reader cannot disagree.
"""

from __future__ import annotations

__all__ = [
    "ACTIVE_REQUESTS",
    "ADDRESS",
    "AIOHTTP_SCOPE",
    "ATTEMPTS",
    "ATTEMPT_DURATION",
    "ATTEMPT_SCOPES",
    "BREAKER_EVENT",
    "BREAKER_PREVIOUS_STATE",
    "BREAKER_REJECTED",
    "BREAKER_STATE",
    "CALL_DURATION",
    "CONCURRENCY_LIMIT",
    "CONFIG_FROM_ENVIRONMENT",
    "CONFIG_PREFIX",
    "CONNECTIONS_ACQUIRED",
    "CONNECTION_DURATION",
    "CONNECTION_IDLE_TIME",
    "CONNECTION_IN_USE",
    "CONNECTION_REQUESTS",
    "CONNECTION_STATE",
    "ERROR_TYPE",
    "HEDGE",
    "HEDGES",
    "HEDGE_OUTCOME",
    "LIMIT_SCOPE",
    "METHOD",
    "OPEN_CONNECTIONS",
    "POOL_ID",
    "POOL_LIMIT",
    "POOL_WAIT",
    "PORT",
    "RESEND_COUNT",
    "RETRIES",
    "RETRIES_SUPPRESSED",
    "RETRY_DELAY",
    "RETRY_EVENT",
    "RETRY_REASON",
    "REUSED",
    "SDK_METRICS",
    "SDK_SCOPE",
    "STATUS",
    "SUPPRESSION_REASON",
    "config_attribute",
]

# Instrumentation scopes. CLIENT attempt spans may come from the contrib aiohttp instrumentation.
SDK_SCOPE = "resilient_http"
AIOHTTP_SCOPE = "opentelemetry.instrumentation.aiohttp_client"
ATTEMPT_SCOPES = frozenset({SDK_SCOPE, AIOHTTP_SCOPE})

# Attributes (semantic conventions and the SDK's own).
METHOD = "http.request.method"
ADDRESS = "server.address"
PORT = "server.port"
STATUS = "http.response.status_code"
ERROR_TYPE = "error.type"
RESEND_COUNT = "http.request.resend_count"
ATTEMPTS = "resilient_http.attempts"
CONNECTION_STATE = "http.connection.state"
REUSED = "resilient_http.connection.reused"
# On CLIENT attempt spans, as the pool saw the connection it handed out: seconds it lay idle
# before this reuse and requests it had served before this one (reuses only), and connections
# to the upstream in use once it was acquired (this one included). docs/telemetry.md#connections
CONNECTION_IDLE_TIME = "resilient_http.connection.idle_time"
CONNECTION_REQUESTS = "resilient_http.connection.requests"
CONNECTION_IN_USE = "resilient_http.connection.in_use"
RETRY_REASON = "resilient_http.retry.reason"
RETRY_DELAY = "resilient_http.retry.delay"
SUPPRESSION_REASON = "resilient_http.suppression.reason"
LIMIT_SCOPE = "resilient_http.pool.limit.scope"
BREAKER_STATE = "resilient_http.breaker.state"  # also the gauge's name, as SPEC has it
BREAKER_PREVIOUS_STATE = "resilient_http.breaker.previous_state"
HEDGE = "resilient_http.hedge"
HEDGE_OUTCOME = "resilient_http.hedge.outcome"
# One pool of a process on the pool-limit gauge: pools with different limits stay apart.
POOL_ID = "resilient_http.pool.id"

# Resource attributes written by configure_telemetry(): every setting's effective value, as
# `resilient-http config` prints it, under CONFIG_PREFIX + the variable's name without
# RESILIENT_HTTP_, lower case (resilient_http.config.keepalive_timeout = "15"); and the
# variables that were set in the environment (the others are defaults).
CONFIG_PREFIX = "resilient_http.config."
CONFIG_FROM_ENVIRONMENT = "resilient_http.config.from_environment"

# Span events recorded on the logical span: each retry, each breaker transition.
RETRY_EVENT = "resilient_http.retry"
BREAKER_EVENT = "resilient_http.breaker"

# Metrics.
ATTEMPT_DURATION = "http.client.request.duration"
OPEN_CONNECTIONS = "http.client.open_connections"
CONNECTION_DURATION = "http.client.connection.duration"
ACTIVE_REQUESTS = "http.client.active_requests"
CALL_DURATION = "resilient_http.request.duration"
POOL_WAIT = "resilient_http.pool.wait.duration"
CONNECTIONS_ACQUIRED = "resilient_http.connection.acquired"
RETRIES = "resilient_http.retries"
RETRIES_SUPPRESSED = "resilient_http.retries.suppressed"
POOL_LIMIT = "resilient_http.pool.limit"
BREAKER_REJECTED = "resilient_http.breaker.rejected"
CONCURRENCY_LIMIT = "resilient_http.concurrency.limit"
HEDGES = "resilient_http.hedges"
#: Every metric the SDK emits (instruments.py makes exactly these; a test pins the README table).
SDK_METRICS = frozenset(
    {
        ATTEMPT_DURATION,
        OPEN_CONNECTIONS,
        CONNECTION_DURATION,
        ACTIVE_REQUESTS,
        CALL_DURATION,
        POOL_WAIT,
        CONNECTIONS_ACQUIRED,
        RETRIES,
        RETRIES_SUPPRESSED,
        POOL_LIMIT,
        BREAKER_STATE,
        BREAKER_REJECTED,
        CONCURRENCY_LIMIT,
        HEDGES,
    }
)


def config_attribute(variable: str) -> str:
    """The resource attribute of ``RESILIENT_HTTP_KEEPALIVE_TIMEOUT``:
    ``resilient_http.config.keepalive_timeout``."""
    return CONFIG_PREFIX + variable.removeprefix("RESILIENT_HTTP_").lower()
