"""The demo's telemetry: where the file goes, and the OTEL_* defaults of the demo's own process.

The demo reports from a telemetry file, so it always writes one (unless ``OTEL_SDK_DISABLED``
turns telemetry off); OTLP export is added only when an OTLP endpoint is given. It never
truncates or appends to a file it was not given with ``--telemetry-file``: the default file
(``RESILIENT_HTTP_TELEMETRY_FILE``, often a service's own telemetry) is used only when it does
not exist yet (``create_telemetry_file``). Three
defaults apply to the demo's process while ``configure_telemetry()`` reads the environment,
each only where the user did not set the variable:

- ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER=none`` when no OTLP endpoint is set: the
  standard default (``otlp`` to localhost:4318) would make a demo on a fresh machine try, fail
  and warn about a collector that is not there;
- ``OTEL_METRIC_EXPORT_INTERVAL=100`` (ms): pool gauges (open and active connections) are read
  at each collection; with the 60 s default a run of a few seconds would be sampled once, at
  shutdown, when the pool is idle, and the report could not see how busy the pool was;
- ``OTEL_SERVICE_NAME=resilient-http-demo``, so the demo's traces are easy to find in Jaeger.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import resilient_http as rh
from resilient_http.config import TELEMETRY_FILE_VARIABLE

__all__ = [
    "DEFAULT_TELEMETRY_FILE",
    "create_telemetry_file",
    "otlp_endpoint",
    "sdk_disabled",
    "start_telemetry",
]

DEFAULT_TELEMETRY_FILE = "resilient-http-demo.jsonl"
METRIC_EXPORT_INTERVAL_MS = "100"
SERVICE_NAME = "resilient-http-demo"
_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"


def create_telemetry_file(flag: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """Create the file the demo writes its telemetry to; returns its absolute path (printed, so
    it can be pasted anywhere).

    ``--telemetry-file`` is started fresh: the user named it. Without it, the file is
    ``RESILIENT_HTTP_TELEMETRY_FILE``, else ``./resilient-http-demo.jsonl``, when that does not
    exist yet; otherwise the first free ``./resilient-http-demo-N.jsonl`` (N = 2, 3, ...), so
    neither a service's telemetry nor an earlier demo's file is lost. Raises ``OSError`` when
    the file cannot be created.
    """
    if flag:
        path = _absolute(flag)
        # Truncated here, before the exporters open it (they append): one run, one file.
        with open(path, "wb"):
            pass
        return path
    env = os.environ if environ is None else environ
    default = Path(DEFAULT_TELEMETRY_FILE)
    first = env.get(TELEMETRY_FILE_VARIABLE) or default
    numbered = (default.with_stem(f"{default.stem}-{n}") for n in itertools.count(2))
    for candidate in itertools.chain([first, default], numbered):
        path = _absolute(candidate)
        try:
            # "x": created only if absent, in one step, so a file that appears meanwhile (a
            # service starting) is not truncated either.
            with open(path, "xb"):
                pass
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable: the numbered names never run out")


def sdk_disabled(environ: Mapping[str, str] | None = None) -> bool:
    """``OTEL_SDK_DISABLED=true`` (other values are ``configure_telemetry``'s to judge)."""
    env = os.environ if environ is None else environ
    return env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def otlp_endpoint(signal: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The OTLP endpoint given for ``signal`` (``TRACES`` / ``METRICS``), or None."""
    env = os.environ if environ is None else environ
    return env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or env.get(_ENDPOINT) or None


def start_telemetry(path: Path) -> rh.TelemetryHandle:
    """Install the providers: the file ``create_telemetry_file`` made, plus OTLP when an
    endpoint is set. Raises ``rh.ConfigError`` for invalid ``OTEL_*`` values."""
    with _demo_defaults():
        return rh.configure_telemetry(telemetry_file=str(path))


def _absolute(path: str | Path) -> Path:
    return Path(path).expanduser().absolute()


@contextmanager
def _demo_defaults() -> Iterator[None]:
    """Apply the defaults above to ``os.environ`` while telemetry is configured, then restore
    it (exporters and processors read the environment when they are built)."""
    defaults = {
        "OTEL_METRIC_EXPORT_INTERVAL": METRIC_EXPORT_INTERVAL_MS,
        "OTEL_SERVICE_NAME": SERVICE_NAME,
    }
    for signal in ("TRACES", "METRICS"):
        if otlp_endpoint(signal) is None:
            defaults[f"OTEL_{signal}_EXPORTER"] = "none"
    added = [name for name in defaults if name not in os.environ]
    for name in added:
        os.environ[name] = defaults[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
