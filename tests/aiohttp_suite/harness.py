"""Run aiohttp's own test files in a pytest subprocess and read back what passed.

The subprocess is configured by aiohttp's own pytest configuration (``-c``: its ``filterwarnings``,
markers, ``timeout``, ``xfail_strict``), never by this project's pyproject; its ``addopts``
(xdist, coverage, doctests) are cleared and its marker selection given again. Plugin autoload
is off, so pytest-asyncio / pytest-aiohttp / hypothesis installed for our own suite stay out:
aiohttp's tests run with the plugins aiohttp's CI runs them with (its ``aiohttp.pytest_plugin``,
pytest-mock, pytest-timeout) plus ``tests.aiohttp_suite.plugin``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tests.aiohttp_suite.sources import pytest_config

__all__ = [
    "FILES",
    "REQUIRED_PLUGINS",
    "Run",
    "breaker_off_is_known",
    "missing_plugins",
    "run_aiohttp_tests",
]

ROOT = Path(__file__).resolve().parents[2]
FILES = ("tests/test_client_functional.py", "tests/test_client_ws_functional.py")
# Module name -> the distribution of the `aiohttp-tests` extra that provides it.
REQUIRED_PLUGINS = {"pytest_mock": "pytest-mock", "pytest_timeout": "pytest-timeout"}
Mode = Literal["plain", "resilient"]

# The selection of aiohttp's pytest.ini addopts, which is cleared with the rest of them.
_MARKERS = "not dev_mode and not autobahn and not internal"


@dataclass(frozen=True)
class Run:
    """One subprocess run: per test id its outcome, and the crash line of each failure."""

    mode: Mode
    env: dict[str, str]
    outcomes: dict[str, str]
    crashes: dict[str, str]
    sessions: dict[str, Any]
    seconds: float
    returncode: int
    tail: str = field(repr=False)

    @property
    def passed(self) -> set[str]:
        return {test for test, outcome in self.outcomes.items() if outcome == "passed"}

    def count(self, outcome: str) -> int:
        return sum(1 for seen in self.outcomes.values() if seen == outcome)

    def summary(self) -> str:
        counts = ", ".join(
            f"{self.count(o)} {o}"
            for o in ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
            if self.count(o)
        )
        return f"{self.mode} {self.env or ''}: {counts} in {self.seconds:.0f}s".replace("  ", " ")


def usable_warning_filters(ini: Path, section: str) -> list[str]:
    """aiohttp's ``filterwarnings`` lines, less those whose warning class cannot be imported here
    (e.g. ``coverage.exceptions.CoverageWarning``: coverage is not installed, its warning cannot
    occur, and pytest would fail on the filter)."""
    import iniconfig

    lines = iniconfig.IniConfig(ini)[section].get("filterwarnings", "").splitlines()
    usable = []
    for line in filter(None, map(str.strip, lines)):
        parts = line.split(":")
        category = parts[2].strip() if len(parts) > 2 else ""
        module, _, _ = category.rpartition(".")
        if module and importlib.util.find_spec(module.partition(".")[0]) is None:
            continue
        usable.append(line)
    return usable


def missing_plugins() -> list[str]:
    """The distributions of the `aiohttp-tests` extra that are not installed."""
    return [dist for mod, dist in REQUIRED_PLUGINS.items() if importlib.util.find_spec(mod) is None]


def breaker_off_is_known() -> bool:
    """Whether ``RESILIENT_HTTP_BREAKER=off`` is a setting of this SDK (no error, no warning)."""
    import warnings

    import resilient_http as rh

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            rh.ClientConfig.from_env({"RESILIENT_HTTP_BREAKER": "off"})
        except (Warning, rh.ConfigError):
            return False
    return True


def run_aiohttp_tests(
    tests_dir: Path,
    mode: Mode,
    env: dict[str, str] | None = None,
    *,
    files: tuple[str, ...] = FILES,
    extra_args: tuple[str, ...] = (),
    timeout: float = 1800.0,
) -> Run:
    """Run ``files`` (relative to ``tests_dir``, the unpacked sdist) with sessions ``mode``.

    ``env`` is added to a copy of this process's environment from which every
    ``RESILIENT_HTTP_*`` / ``OTEL_*`` variable is removed first.
    """
    env = dict(env or {})
    child_env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RESILIENT_HTTP_", "OTEL_", "PYTEST_"))
    }
    child_env.update(env)
    child_env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    child_env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    ini, section = pytest_config(tests_dir)
    with tempfile.TemporaryDirectory(prefix="aiohttp-suite-") as scratch:
        report = Path(scratch) / "report.json"
        command = [
            sys.executable,
            "-m",
            "pytest",
            *(str(tests_dir / f) for f in files),
            "-c",
            str(ini),
            "--rootdir",
            str(tests_dir),
            "--confcutdir",
            str(tests_dir),
            "-o",
            "addopts=",
            "-o",
            "filterwarnings=" + "\n".join(usable_warning_filters(ini, section)),
            "-m",
            _MARKERS,
            "-p",
            "pytest_mock",
            "-p",
            "pytest_timeout",
            "-p",
            "tests.aiohttp_suite.plugin",
            "-p",
            "no:cacheprovider",
            "--rh-sessions",
            mode,
            "--rh-report",
            str(report),
            "-q",
            "-rN",
            "--no-header",
            *extra_args,
        ]
        started = time.monotonic()
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=child_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        seconds = time.monotonic() - started
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-40:])
        if not report.is_file():
            raise RuntimeError(f"aiohttp's tests wrote no report (exit {done.returncode}):\n{tail}")
        data = json.loads(report.read_text())
    return Run(
        mode=mode,
        env=env,
        outcomes=data["outcomes"],
        crashes=data["crashes"],
        sessions=data["sessions"],
        seconds=seconds,
        returncode=done.returncode,
        tail=tail,
    )
