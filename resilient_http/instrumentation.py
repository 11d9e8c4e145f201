"""Zero code: ``opentelemetry-instrument python app.py`` gives every plain ``aiohttp.ClientSession``
the SDK's pool, retries, deadline and telemetry.

``ResilientHttpInstrumentor`` is an OpenTelemetry ``BaseInstrumentor``, registered as the
entry point ``resilient_http`` of the ``opentelemetry_instrumentor`` group, so
``opentelemetry-instrument`` loads it as it loads the contrib instrumentations
(``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=resilient_http`` leaves it out). As
``opentelemetry-instrumentation-aiohttp-client`` does for its trace config, it wraps
``aiohttp.ClientSession.__init__`` (with ``wrapt``) and changes only public arguments of each
session the application builds:

- ``connector=``: ``rh.create_connector(config)`` when the application gave none (a connector
  the application built is kept, and ``trace_configs=`` gains the SDK's connection signals,
  which tell a stale pooled connection apart, as in ``ResilientSession``);
- ``middlewares=``: ``rh.middleware(config)`` in front of the application's own (outermost, so
  that every attempt passes them again), unless one of the SDK's middlewares is there already;

and, when it added its middleware, switches the built session's hidden resend off (every
attempt visible, as in ``ResilientSession``; ``pool.disable_hidden_resend``) and removes the
contrib instrumentation's trace config when the SDK traces (no double spans). The session keeps
its type; what aiohttp's middleware API cannot carry is as for ``rh.middleware()`` (README,
"Use it in your service"), and a call given its own ``middlewares=`` runs without the SDK's, as
aiohttp means by it (the call's list replaces the session's).

A ``ResilientSession``'s own inner session is left alone (it runs the SDK's pipeline already).
Settings are read once, at ``instrument()``: ``config=`` (default ``ClientConfig.from_env()``),
``retry=`` (as ``rh.middleware()``'s), ``tracer_provider=`` and ``meter_provider=`` (default:
the global ones when a session is built). Each session gets its own middleware, so its own
retry budget.
Invalid ``RESILIENT_HTTP_*`` settings are logged and leave aiohttp uninstrumented: an application
that does not import the SDK must not fail because of it. ``uninstrument()`` restores
``ClientSession.__init__``, also when another ``wrapt``-based instrumentation has wrapped it
since (the SDK's layer is taken out from under it); under any other wrapper the SDK's layer
stays in place but passes every call through unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import wrapt
from opentelemetry import metrics, trace

# mypy does not find the class through opentelemetry's namespace packages (it is there, and
# in the module's __all__); the ignore is checked by warn_unused_ignores.
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.instrumentation.utils import unwrap

from ._drop_in import is_wrapped_session
from ._exceptions import ConfigError
from ._middleware import is_sdk_middleware, makes_spans, session_middleware
from .config import ClientConfig
from .pool import create_connector, disable_hidden_resend, is_observed, reuse_trace_config
from .retry import RetryPlan, resolve_plan
from .telemetry.calls import SessionTelemetry, drop_contrib_spans

__all__ = ["INSTRUMENTS", "ResilientHttpInstrumentor"]

#: The aiohttp releases the SDK supports (pyproject's range; a test keeps the two equal):
#: ``opentelemetry-instrument`` skips the instrumentor, with a log line, for any other.
INSTRUMENTS: Final = ("aiohttp >= 3.12, < 3.15",)

log: Final = logging.getLogger("resilient_http")


class _State:
    """The instrumentation's state, one per process (in a plain object: the wrapper is a
    descriptor, which a class attribute would bind on every read)."""

    #: what sessions built now get; None = ClientSession.__init__ passes calls through
    settings: _Settings | None = None
    #: the wrapper installed on ClientSession.__init__, while it may be there
    installed: Any = None


@dataclass(frozen=True)
class _Settings:
    config: ClientConfig
    plan: RetryPlan | None
    tracer_provider: trace.TracerProvider | None
    meter_provider: metrics.MeterProvider | None


class ResilientHttpInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Gives every ``aiohttp.ClientSession`` built from now on the SDK's connector and middleware.

    ``ResilientHttpInstrumentor().instrument(config=None, retry=None, tracer_provider=None,
    meter_provider=None)`` does by hand what ``opentelemetry-instrument`` does through the entry
    point; ``uninstrument()`` undoes it for sessions built afterwards.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """The aiohttp versions this instrumentation supports."""
        return INSTRUMENTS

    def _instrument(self, **kwargs: Any) -> None:
        try:
            config = kwargs.get("config") or ClientConfig.from_env()
            plan = resolve_plan(kwargs.get("retry"), RetryPlan(config.retry))
        except ConfigError as exc:
            log.error("resilient_http: aiohttp left uninstrumented: %s", exc)
            return
        _state.settings = _Settings(
            config, plan, kwargs.get("tracer_provider"), kwargs.get("meter_provider")
        )
        if not _in_chain(aiohttp.ClientSession.__dict__["__init__"], _state.installed):
            wrapt.wrap_function_wrapper(aiohttp.ClientSession, "__init__", _resilient_init)
            _state.installed = aiohttp.ClientSession.__dict__["__init__"]

    def _uninstrument(self, **kwargs: Any) -> None:
        _state.settings = None  # from now on a layer left in place passes calls through
        installed, _state.installed = _state.installed, None
        above: Any = None
        layer: Any = aiohttp.ClientSession.__dict__["__init__"]
        while layer is not None and layer is not installed:
            above, layer = layer, getattr(layer, "__wrapped__", None)
        if layer is None:  # not there (any more): nothing to take out
            return
        if above is None:
            unwrap(aiohttp.ClientSession, "__init__")
        elif isinstance(above, _WRAPT_PROXY):
            # Another wrapt-based instrumentation (e.g. the contrib aiohttp one) wrapped ours
            # since: take ours out from under it, so its own unwrap restores aiohttp's.
            above.__wrapped__ = layer.__wrapped__
        else:  # a wrapper that cannot be rewired: ours stays in, passing calls through
            _state.installed = installed


_state: Final = _State()
# What every wrapt wrapper is (wrapt 2 moved it to BaseObjectProxy; wrapt 1 has ObjectProxy).
_WRAPT_PROXY: Final[Any] = getattr(wrapt, "BaseObjectProxy", None) or wrapt.ObjectProxy


def _in_chain(function: object, wanted: object) -> bool:
    """Whether ``wanted`` is ``function`` or one of the layers it wraps (``__wrapped__``)."""
    while wanted is not None and function is not None:
        if function is wanted:
            return True
        function = getattr(function, "__wrapped__", None)
    return False


def _resilient_init(
    wrapped: Callable[..., None],
    instance: aiohttp.ClientSession,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    settings = _state.settings
    if settings is None or is_wrapped_session():
        wrapped(*args, **kwargs)
        return
    telemetry = SessionTelemetry(settings.tracer_provider, settings.meter_provider)
    given = tuple(kwargs.get("middlewares") or ())
    ours = not any(map(is_sdk_middleware, given))
    if ours:
        added = session_middleware(settings.config, settings.plan, telemetry)
        kwargs["middlewares"] = (added, *given)
    connector = kwargs.get("connector")
    if connector is None and _loop_is_running():
        # Outside a running loop aiohttp decides what happens (as without the SDK).
        connector = create_connector(settings.config)
        kwargs["connector"] = connector
        telemetry.report_pool(connector)  # stops with the connector
    elif ours and connector is not None and not is_observed(connector):
        # The application's own connector: aiohttp's connection signals still tell a stale
        # pooled connection apart, for its free retry (as in ResilientSession).
        kwargs["trace_configs"] = [*(kwargs.get("trace_configs") or ()), reuse_trace_config()]
    wrapped(*args, **kwargs)
    if ours:
        disable_hidden_resend(instance)
    # The SDK's spans replace the contrib instrumentation's, whichever middleware makes them.
    sdk_spans = telemetry.tracer is not None if ours else any(map(makes_spans, given))
    if sdk_spans:
        drop_contrib_spans(instance)


def _loop_is_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
