"""``is_api_proxy`` tells the API's global stand-ins from real providers, using no private name."""

from __future__ import annotations

import inspect
import subprocess
import sys

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from resilient_http.telemetry.instruments import is_api_proxy
from tests.helpers import clean_environ


def api_meter_providers() -> set[type]:
    """The concrete ``MeterProvider`` classes the API package defines."""
    found: set[type] = set()
    pending: list[type] = [metrics.MeterProvider]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("opentelemetry.metrics") and not inspect.isabstract(cls):
            found.add(cls)
    return found


def test_the_meter_stand_in_is_the_api_packages_one_provider_besides_noop() -> None:
    # The stand-in is the API's private _ProxyMeterProvider; is_api_proxy does not name it.
    stand_in = metrics._internal._PROXY_METER_PROVIDER
    assert api_meter_providers() == {metrics.NoOpMeterProvider, type(stand_in)}
    assert is_api_proxy(stand_in)
    assert not is_api_proxy(metrics.NoOpMeterProvider())
    assert not is_api_proxy(MeterProvider())


def test_the_tracer_stand_in_is_public() -> None:
    assert is_api_proxy(trace.ProxyTracerProvider())
    assert not is_api_proxy(trace.NoOpTracerProvider())
    assert not is_api_proxy(TracerProvider())


def test_before_any_provider_is_set_the_globals_are_stand_ins() -> None:
    code = (
        "from opentelemetry import metrics, trace\n"
        "from resilient_http.telemetry.instruments import is_api_proxy\n"
        "print(is_api_proxy(metrics.get_meter_provider()), "
        "is_api_proxy(trace.get_tracer_provider()))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        env=clean_environ(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.split() == ["True", "True"]
