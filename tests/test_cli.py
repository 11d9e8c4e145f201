"""The command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from resilient_http.analysis import names
from resilient_http.cli import EXTRA_MODULES, SUBCOMMANDS
from tests.analysis.otlp_lines import (
    SECOND,
    T0,
    UPSTREAM,
    histogram_metric,
    histogram_point,
    metrics_request,
    write_lines,
)
from tests.helpers import clean_environ

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resilient_http", *args],
        env=clean_environ(**(env or {})),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_config_prints_values_and_sources() -> None:
    result = run_cli("config", env={"RESILIENT_HTTP_LIMIT": "30"})
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line[0] != "#"}
    assert lines["RESILIENT_HTTP_LIMIT"].split()[1:] == ["30", "(environment)"]
    assert lines["RESILIENT_HTTP_LIMIT_PER_HOST"].split()[1:] == ["10", "(default)"]
    assert "ENABLE_CLEANUP_CLOSED=auto is" in result.stdout


def test_config_json() -> None:
    result = run_cli("config", "--json", env={"RESILIENT_HTTP_RETRY_STATUSES": "none"})
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)["settings"]
    assert settings["RESILIENT_HTTP_RETRY_STATUSES"] == {"value": "none", "source": "environment"}
    assert settings["RESILIENT_HTTP_TIMEOUT_TOTAL"] == {"value": "30", "source": "default"}


@pytest.mark.parametrize(
    ("variable", "value"),
    [("RESILIENT_HTTP_LIMIT", "lots"), ("RESILIENT_HTTP_RETRY_STATUSES", "")],
)
def test_config_bad_variable_exits_2_with_one_line(variable: str, value: str) -> None:
    result = run_cli("config", env={variable: value})
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"resilient-http config: error: {variable}")
    assert "Traceback" not in result.stderr


def test_config_warns_about_unknown_variable() -> None:
    result = run_cli("config", env={"RESILIENT_HTTP_LIMT": "3"})
    assert result.returncode == 0
    assert result.stderr.strip() == (
        "resilient-http config: warning: unknown variable RESILIENT_HTTP_LIMT is ignored; "
        "did you mean RESILIENT_HTTP_LIMIT?"
    )


def test_unknown_subcommand_exits_2() -> None:
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_console_script_is_installed() -> None:
    script = os.path.join(os.path.dirname(sys.executable), "resilient-http")
    result = subprocess.run(
        [script, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("resilient-http ")


def test_analyze_is_wired(tmp_path: Path) -> None:
    from resilient_http.analysis.synthetic import write_synthetic_file

    path = str(tmp_path / "t.jsonl")
    write_synthetic_file(path, spans=500, seed=3)
    result = run_cli("analyze", "--json", path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["files"], report["corrupt_lines"]) == (1, 0)
    assert report["upstreams"]
    missing = run_cli("analyze", path + ".missing")
    assert missing.returncode == 1
    assert len(missing.stderr.splitlines()) == 1


def run_into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -W error ARGS`` with stdout a pipe whose reader has gone (as ``| head -1`` leaves
    it once head exits), block-buffered as a user's stdout is (no PYTHONUNBUFFERED)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = clean_environ()
    env.pop("PYTHONUNBUFFERED", None)
    try:
        return subprocess.run(
            [sys.executable, "-W", "error", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)


DEMO = ("demo", "--scenario", "healthy", "--requests", "5", "--telemetry-file", "{tmp}/d.jsonl")


def small_telemetry(path: Path) -> Path:
    """One upstream's calls: reports smaller than stdout's buffer, so written when it is
    flushed at the end, not while the command runs."""
    request = {**UPSTREAM, names.METHOD: "GET", names.STATUS: 200}
    point = histogram_point(request, [1.0], [10, 0], T0, T0 + SECOND)
    return write_lines(path, [metrics_request([histogram_metric(names.CALL_DURATION, [point])])])


@pytest.mark.parametrize(
    "command",
    [
        ("config",),
        ("analyze", "{file}"),
        ("compare", "{file}", "{file}"),
        DEMO,
    ],
    ids=lambda command: command[0],
)
@pytest.mark.parametrize("json_flag", [(), ("--json",)], ids=["text", "json"])
def test_a_reader_gone_from_stdout_is_exit_0_and_no_message(
    tmp_path: Path, command: tuple[str, ...], json_flag: tuple[str, ...]
) -> None:
    # `resilient-http analyze f.jsonl | head -1`: not an error of the command's.
    file = small_telemetry(tmp_path / "t.jsonl")
    name, *rest = (part.format(file=file, tmp=tmp_path) for part in command)
    done = run_into_closed_pipe("-m", "resilient_http", name, *json_flag, *rest)
    assert (done.returncode, done.stderr) == (0, "")


def test_the_analysis_module_is_exit_0_too_when_its_reader_is_gone(tmp_path: Path) -> None:
    file = small_telemetry(tmp_path / "t.jsonl")
    done = run_into_closed_pipe("-m", "resilient_http.analysis", str(file))
    assert (done.returncode, done.stderr) == (0, "")


def test_the_extras_modules_are_pyprojects() -> None:
    """cli.EXTRA_MODULES, which a plain install checks, lists each extra's packages."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for extra, modules in EXTRA_MODULES.items():
        packages = set()
        for requirement in extras[extra]:
            name = re.match(r"[A-Za-z0-9._-]+", requirement)
            assert name is not None, requirement
            packages.add(name.group().lower())
        assert packages == set(modules), extra
    assert {extra for _, _, extra in SUBCOMMANDS.values()} - {None} <= set(EXTRA_MODULES)
