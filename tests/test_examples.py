"""The examples run as they are, in a subprocess (what a newcomer would do)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import clean_environ

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> list[str]:
    """``python -W error examples/NAME`` in a clean environment: its output lines; it must
    exit 0 and write nothing to stderr."""
    result = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name)],
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


def test_quickstart_runs() -> None:
    lines = run_example("quickstart.py")
    assert lines[0] == "GET 200 {'items': [1, 2, 3]}"
    assert lines[1] == "POST 200 {'created': True}"
    assert lines[2].startswith("PoolStats(limit=30, limit_per_host=10, open=1, idle=1, active=0")


def test_readme_quickstart_is_the_example() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    code = (EXAMPLES / "quickstart.py").read_text()
    body = code[code.index("import asyncio") :]
    assert body.strip() in readme


def test_readme_env_table_matches_the_settings() -> None:
    from resilient_http.config import KNOWN_VARIABLES, describe_environment

    readme = (EXAMPLES.parent / "README.md").read_text()
    rows = {
        line.split("|")[1].strip(" `"): line.split("|")[2].strip()
        for line in readme.splitlines()
        if line.startswith("| `RESILIENT_HTTP_")
    }
    assert set(rows) == KNOWN_VARIABLES
    defaults = {r.variable: r.value for r in describe_environment({})}
    for variable, default in rows.items():
        assert default == (defaults[variable] or "unset"), variable


def test_readme_metric_table_matches_the_instruments() -> None:
    from resilient_http.telemetry import names

    readme = (EXAMPLES.parent / "README.md").read_text()
    section = readme[readme.index("## Telemetry") : readme.index("## Configuration")]
    documented = {
        line.split("|")[1].strip(" `") for line in section.splitlines() if line.startswith("| `")
    }
    assert documented == set(names.SDK_METRICS)


def test_native_session_example_runs() -> None:
    lines = run_example("native_session.py")
    assert lines[0] == "GET 200 {'items': [1, 2, 3]} after 2 answers"  # the 503 was retried
    assert lines[1].startswith("PoolStats(limit=30, limit_per_host=10, open=1, idle=1, active=0")


def test_readme_names_every_example() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    for example in sorted(EXAMPLES.glob("*.py")):
        assert f"examples/{example.name}" in readme, example.name
