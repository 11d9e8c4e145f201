"""``TelemetryHandle``: shutting down what ``configure_telemetry`` set up, once, in bounded time.

Why it is more than ``provider.shutdown()``: with the collector down, the SDK's final flush waits
for the OTLP exporters' retries (backoff of about 1, 2, 4 s, until ``OTEL_EXPORTER_OTLP_TIMEOUT``,
10 s by default), because the batching processor and the periodic reader only shut their
exporter down, which is what ends such a wait, after the final export returned. And the
providers' own exit hooks (``shutdown_on_exit``) flush again at interpreter exit, from the main
thread, so an application that had already given up waiting still took 12 s to exit, logging the
exporters' retries and the MeterProvider's "shutdown can only be called once".

So the providers are built without exit hooks, and the handle shuts them down once: when
``shutdown``/``aclose`` is called, else from one ``atexit`` hook with a short budget. Each provider
is shut down on a closer thread of its own, started with the handle (Python 3.12+ cannot start
threads in an ``atexit`` hook). Within the budget the final flush runs as usual; at its end the
OTLP exporters are shut down (from one more such thread), which ends a retry wait at once (what
is left of that batch is dropped and reported as a failed export). An export still in flight
after that (a collector that accepts connections and never answers) is left to its daemon thread,
so the process exits anyway.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Final, Protocol

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from .export_failures import QuietExporterLogs

__all__ = ["TelemetryHandle"]

log: Final = logging.getLogger("resilient_http")
# What the atexit hook gives the final flush when the application never shut telemetry down:
# a process must exit within a second of its last line even with the collector down.
EXIT_FLUSH_SECONDS: Final = 0.25
# How long a closer may take to return once its retry waits are cut off; the final attempts
# against a collector that refuses connections fail in milliseconds.
_CUT_OFF_GRACE_SECONDS: Final = 0.2


class Exporter(Protocol):
    """What the handle cuts off: an exporter whose ``shutdown()`` ends a retry wait."""

    def shutdown(self) -> None:
        """Stop exporting."""


class _Closer:
    """A daemon thread, started early, that runs ``close`` once it is told to."""

    def __init__(self, close: Callable[[], None], name: str) -> None:
        self._close = close
        self._start = threading.Event()
        self.finished = threading.Event()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def start(self) -> None:
        self._start.set()

    def _run(self) -> None:
        self._start.wait()
        try:
            self._close()
        except Exception:  # a failing exporter must not break the application's exit
            log.warning("telemetry shutdown failed", exc_info=True)
        finally:
            self.finished.set()


class TelemetryHandle:
    """What ``configure_telemetry`` set up; ``shutdown``/``aclose`` flush and stop it.

    Usable as a context manager (sync or async). Neither call blocks past its ``timeout`` (and a
    fifth of a second to cut retries off), even when the collector is down, and the process
    exits promptly afterwards. When the application
    never calls either, telemetry is flushed at interpreter exit, for at most a quarter second.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        telemetry_file: str | None,
        quieted: QuietExporterLogs | None,
        *,
        cut_offs: Sequence[Exporter] = (),
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        #: where OTLP JSON lines are written, or None
        self.telemetry_file = telemetry_file
        self._quieted = quieted
        self._cut_offs = tuple(cut_offs)
        self._lock = threading.Lock()
        self._done = False
        self._closers: list[_Closer] = []
        if tracer_provider is not None:
            self._closers.append(_Closer(tracer_provider.shutdown, "resilient_http-close-traces"))
        if meter_provider is not None:
            self._closers.append(_Closer(meter_provider.shutdown, "resilient_http-close-metrics"))
        # On a thread of its own too: an exporter's shutdown may wait (for its export lock).
        self._cutter = _Closer(self._cut_off, "resilient_http-cut-off") if self._cut_offs else None
        if self._closers:
            atexit.register(self._close_at_exit)

    @property
    def closed(self) -> bool:
        """Whether ``shutdown``/``aclose`` (or the exit hook) has shut telemetry down."""
        return self._done

    @property
    def enabled(self) -> bool:
        """False when ``OTEL_SDK_DISABLED`` turned telemetry off (nothing is exported)."""
        return self.tracer_provider is not None or self.meter_provider is not None

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flush and shut down; True if that finished within ``timeout`` seconds.

        Only the first call (or the exit hook) does anything; later calls return True.
        """
        atexit.unregister(self._close_at_exit)
        return self._close(timeout)

    # SPEC names the parameter: it bounds a thread's work, not this coroutine.
    async def aclose(self, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
        """``shutdown`` on a worker thread, so the event loop keeps running meanwhile."""
        return await asyncio.to_thread(self.shutdown, timeout)

    def _close_at_exit(self) -> None:
        self._close(EXIT_FLUSH_SECONDS)

    def _close(self, timeout: float) -> bool:
        with self._lock:
            if self._done:
                return True
            self._done = True
        for closer in self._closers:
            closer.start()
        if self._closers_finish_by(time.monotonic() + timeout):
            self._unquiet()
            return True
        if self._cutter is not None:
            self._cutter.start()
        if self._closers_finish_by(time.monotonic() + _CUT_OFF_GRACE_SECONDS):
            self._unquiet()
        else:
            # The exporters' lines stay muted: the closers may still log from their threads.
            log.warning("telemetry was not flushed within %.1f s; some of it may be lost", timeout)
        return False

    def _cut_off(self) -> None:
        for exporter in self._cut_offs:
            exporter.shutdown()  # ends a retry wait at once

    def _closers_finish_by(self, deadline: float) -> bool:
        return all(c.finished.wait(max(0.0, deadline - time.monotonic())) for c in self._closers)

    def _unquiet(self) -> None:
        if self._quieted is not None:
            self._quieted.remove()

    def __enter__(self) -> TelemetryHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    async def __aenter__(self) -> TelemetryHandle:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
