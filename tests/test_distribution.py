"""The release as a user gets it: ``make dist``'s sdist and wheel (the wheel built from the
sdist), the wheel installed with pip into a clean venv without extras, and there a real call
through ``ResilientSession`` and every ``resilient-http`` subcommand, as child processes.

Slow on purpose (marked ``distribution``; about 30 s, most of it pip): the build runs setuptools
in an isolated environment and the install resolves the dependencies from the package index
(pip's cache serves repeated runs). One build and one venv serve every test here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from resilient_http.analysis.analyze import analyze_paths
from resilient_http.cli import SUBCOMMANDS
from tests.helpers import clean_environ

pytestmark = pytest.mark.distribution

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# Arguments that take each subcommand past its parser (where a missing extra would bite).
# Every subcommand of the CLI must be listed: a new one fails here until it is.
PLAIN_INSTALL_RUNS: dict[str, list[str]] = {
    "config": [],
    "demo": ["--requests", "1"],
    "analyze": ["telemetry.jsonl"],
    "compare": ["before.jsonl", "after.jsonl"],
}

# A service's first call, in the clean venv: an aiohttp server on 127.0.0.1 in the same
# process, one GET through ResilientSession, spans and metrics to the telemetry file (argv[1]).
SMOKE_SCRIPT = """
import asyncio
import json
import sys

from aiohttp import web

import resilient_http as rh


async def items(request: web.Request) -> web.Response:
    return web.json_response({"items": [1, 2, 3]})


async def main() -> None:
    app = web.Application()
    app.router.add_get("/items", items)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    handle = rh.configure_telemetry(telemetry_file=sys.argv[1])
    try:
        async with rh.ResilientSession() as client:
            async with client.get(f"http://127.0.0.1:{port}/items") as resp:
                body = await resp.json()
                status = resp.status
    finally:
        await handle.aclose()
        await runner.cleanup()
    print(json.dumps({"status": status, "body": body, "version": rh.__version__,
                      "module": rh.__file__}))


asyncio.run(main())
"""


@dataclass(frozen=True)
class Dist:
    """What ``python -m build`` wrote."""

    sdist: Path
    wheel: Path


@dataclass(frozen=True)
class PlainInstall:
    """A clean venv holding the wheel and its dependencies, no extras."""

    venv: Path
    work: Path
    """An empty folder to run in, outside the repository (no source tree on ``sys.path``)."""

    def run(self, program: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``program`` of the venv's ``bin/`` with ``args``, without RESILIENT_HTTP_*/OTEL_*."""
        return _run([str(self.venv / "bin" / program), *args], cwd=self.work, env=_env(**env))


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """The sdist and wheel, built as ``make dist`` builds them."""
    out = tmp_path_factory.mktemp("dist")
    built = _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=out)
    assert built.returncode == 0, built.stdout + built.stderr
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Dist(sdist, wheel)


@pytest.fixture(scope="session")
def plain_install(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> PlainInstall:
    """``pip install`` of the wheel alone into a new venv."""
    venv = tmp_path_factory.mktemp("venv")
    # Without its own pip (ensurepip takes seconds): this process's pip installs into it, so
    # the venv holds nothing but the wheel and what the wheel requires.
    created = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv)
    assert created.returncode == 0, created.stderr
    python = str(venv / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", str(dist.wheel)]
    installed = _run(pip, cwd=venv)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return PlainInstall(venv, tmp_path_factory.mktemp("work"))


def test_the_distribution_is_named_licensed_and_versioned(dist: Dist) -> None:
    version = PYPROJECT["version"]
    assert dist.wheel.name == f"resilient_http_sdk-{version}-py3-none-any.whl"
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = wheel.namelist()
        info = f"resilient_http_sdk-{version}.dist-info"
        metadata = wheel.read(f"{info}/METADATA").decode()
        license_text = wheel.read(f"{info}/licenses/LICENSE").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert "Name: resilient-http-sdk\n" in metadata
    assert f"Version: {version}\n" in metadata
    assert "License-Expression: Apache-2.0\n" in metadata
    assert "Apache License\n                           Version 2.0, January 2004" in license_text
    assert license_text == (ROOT / "LICENSE").read_text()
    assert "resilient-http = resilient_http.cli:main" in entry_points
    assert "resilient_http/py.typed" in names
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/"))]
    with tarfile.open(dist.sdist) as sdist:
        members = {
            Path(m).relative_to(f"resilient_http_sdk-{version}").as_posix()
            for m in sdist.getnames()
            if "/" in m
        }
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml"} <= members
    assert not [m for m in members if m.startswith("tests/")]  # a partial copy would not run


def test_the_sdk_makes_a_call_in_a_plain_install(
    plain_install: PlainInstall, tmp_path: Path
) -> None:
    script = tmp_path / "smoke.py"
    script.write_text(SMOKE_SCRIPT)
    telemetry_file = tmp_path / "telemetry.jsonl"
    # No collector here: the standard OTLP default would try localhost:4318 and warn.
    result = plain_install.run(
        "python",
        "-W",
        "error",
        str(script),
        str(telemetry_file),
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    outcome = json.loads(result.stdout)
    assert (outcome["status"], outcome["body"]) == (200, {"items": [1, 2, 3]})
    assert outcome["version"] == PYPROJECT["version"]  # from the installed metadata
    assert Path(outcome["module"]).is_relative_to(plain_install.venv)  # not this source tree
    # Written without orjson (a `cli` extra package), readable by the analysis all the same.
    (row,) = analyze_paths([telemetry_file]).upstreams
    assert (row.requests, row.attempts, row.errors) == (1, 1, 0)


def test_every_subcommand_works_or_names_its_extra(plain_install: PlainInstall) -> None:
    assert set(PLAIN_INSTALL_RUNS) == set(SUBCOMMANDS)
    for name, args in PLAIN_INSTALL_RUNS.items():
        result = plain_install.run("resilient-http", name, *args)
        extra = SUBCOMMANDS[name][2]
        if extra is None:
            assert result.returncode == 0, (name, result.stderr)
            continue
        assert (name, result.returncode, result.stdout) == (name, 2, "")
        assert result.stderr == (
            f"resilient-http {name}: error: needs the '{extra}' extra (rich, orjson, ddsketch "
            f"not installed): pip install 'resilient-http-sdk[{extra}]'\n"
        )
    standalone = plain_install.run("python", "-m", "resilient_http.analysis", "telemetry.jsonl")
    assert standalone.returncode == 2
    assert standalone.stderr.startswith("resilient-http analyze: error: needs the 'cli' extra")
    assert "Traceback" not in standalone.stderr


def test_config_and_version_in_a_plain_install(plain_install: PlainInstall) -> None:
    config = plain_install.run("resilient-http", "config", RESILIENT_HTTP_LIMIT="30")
    assert config.returncode == 0, config.stderr
    assert config.stderr == ""
    rows = {line.split()[0]: line.split()[1:] for line in config.stdout.splitlines()}
    assert rows["RESILIENT_HTTP_LIMIT"] == ["30", "(environment)"]
    assert rows["RESILIENT_HTTP_LIMIT_PER_HOST"] == ["10", "(default)"]
    version = plain_install.run("resilient-http", "--version")
    assert version.stdout == f"resilient-http {PYPROJECT['version']}\n"


def _env(**extra: str) -> dict[str, str]:
    # PYTHONPATH could put this source tree in front of the installed package.
    env = clean_environ(**extra)
    env.pop("PYTHONPATH", None)
    return env


def _run(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # The timeout is a safety net: building and installing take well under a minute here.
    return subprocess.run(
        argv,
        cwd=cwd,
        env=_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
