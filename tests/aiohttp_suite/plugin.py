"""pytest plugin for the subprocess that runs aiohttp's own tests (``harness.py`` loads it).

``--rh-sessions=resilient`` makes every session the tests build a ``ResilientSession``:
``aiohttp.ClientSession``, ``aiohttp.client.ClientSession`` (used by ``aiohttp.request()``) and
the name inside ``aiohttp.test_utils`` (``TestClient``, so the ``aiohttp_client`` fixture) are
replaced by a stand-in class whose call builds ``ResilientSession(*args, **kwargs)``, the
arguments as given. The stand-in is honest about types: ``isinstance(x, aiohttp.ClientSession)``
is what it is for the real class (False for a ``ResilientSession``), and its class attributes
are read from the real class. Inside ``ResilientSession``'s own construction the stand-in builds
a real ``aiohttp.ClientSession`` (the one it wraps). A real session built anywhere else is
recorded as a stray (``strays`` in the report): then not every session was a ResilientSession.

``--rh-sessions=plain`` patches nothing: the baseline, through the same harness.

``--rh-report=PATH`` writes JSON: the outcome of every test (passed, failed, error, skipped,
xfailed, xpassed), the crash line of each failure, and the session counts.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.client
import aiohttp.test_utils
import pytest

_REAL: type[aiohttp.ClientSession] = aiohttp.ClientSession
_building = contextvars.ContextVar("building_resilient_session", default=False)
_current_test = contextvars.ContextVar[str]("current_test", default="")


class _Counts:
    resilient = 0
    wrapped = 0
    strays: list[str] = []  # noqa: RUF012 - one process, one run


def _resilient_session(*args: Any, **kwargs: Any) -> Any:
    import resilient_http as rh

    token = _building.set(True)
    try:
        session = rh.ResilientSession(*args, **kwargs)
    finally:
        _building.reset(token)
    _Counts.resilient += 1
    return session


class _StandInMeta(type):
    """Calls build a ResilientSession; type checks and class attributes are the real class's."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if _building.get():
            _Counts.wrapped += 1
            return _REAL(*args, **kwargs)
        return _resilient_session(*args, **kwargs)

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, _REAL)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, _REAL)

    def __getattr__(cls, name: str) -> Any:
        return getattr(_REAL, name)


class ClientSessionStandIn(metaclass=_StandInMeta):
    """Stands for ``aiohttp.ClientSession`` while aiohttp's tests run."""


_TARGETS = (aiohttp, aiohttp.client, aiohttp.test_utils)


def _patch() -> Iterator[None]:
    # The SDK reads aiohttp (e.g. ClientSession's signature) when imported: the real one.
    import resilient_http  # noqa: F401

    real_init = _REAL.__init__

    def counting_init(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        if not _building.get():
            _Counts.strays.append(_current_test.get() or "<outside a test>")
        real_init(self, *args, **kwargs)

    saved = [(module, module.ClientSession) for module in _TARGETS]
    for module, _ in saved:
        setattr(module, "ClientSession", ClientSessionStandIn)  # noqa: B010
    _REAL.__init__ = counting_init  # type: ignore[method-assign]
    try:
        yield
    finally:
        _REAL.__init__ = real_init  # type: ignore[method-assign]
        for module, real in saved:
            setattr(module, "ClientSession", real)  # noqa: B010


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("resilient_http", "aiohttp's tests through ResilientSession")
    group.addoption("--rh-sessions", choices=("plain", "resilient"), default="plain")
    group.addoption("--rh-report", default=None, help="write outcomes as JSON to this path")


class _Recorder:
    def __init__(self, mode: str, report: Path | None) -> None:
        self.mode = mode
        self.report = report
        self.outcomes: dict[str, str] = {}
        self.crashes: dict[str, str] = {}
        self._patching: Iterator[None] | None = None

    def start(self) -> None:
        if self.mode == "resilient":
            self._patching = _patch()
            next(self._patching)

    def stop(self) -> None:
        if self._patching is not None:
            next(self._patching, None)
            self._patching = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        token = _current_test.set(item.nodeid)
        try:
            return (yield)
        finally:
            _current_test.reset(token)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nodeid = report.nodeid
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        elif report.failed:
            outcome = "failed" if report.when == "call" else "error"
        elif report.skipped:
            outcome = "skipped"
        else:
            outcome = "passed"
        # A test's outcome is that of its worst phase (a call that passed, then a teardown
        # error: error); of equals, the first.
        previous = self.outcomes.get(nodeid)
        if previous is None or _RANK[outcome] > _RANK[previous]:
            self.outcomes[nodeid] = outcome
        if report.failed and nodeid not in self.crashes:
            self.crashes[nodeid] = f"{report.when}: {_crash_line(report)}"

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.stop()
        if self.report is None:
            return
        data = {
            "mode": self.mode,
            "aiohttp": aiohttp.__version__,
            "outcomes": self.outcomes,
            "crashes": self.crashes,
            "sessions": {
                "resilient": _Counts.resilient,
                "wrapped": _Counts.wrapped,
                "strays": _Counts.strays,
            },
        }
        self.report.write_text(json.dumps(data, indent=1, sort_keys=True))


_RANK = {"passed": 0, "skipped": 1, "xfailed": 1, "xpassed": 1, "failed": 2, "error": 2}


def _crash_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None) or str(report.longrepr)
    first = message.strip().splitlines()[0] if message.strip() else "?"
    return first[:300]


def pytest_configure(config: pytest.Config) -> None:
    report = config.getoption("--rh-report")
    recorder = _Recorder(config.getoption("--rh-sessions"), Path(report) if report else None)
    config.pluginmanager.register(recorder, "resilient_http_recorder")
    recorder.start()
