"""``make stack-up`` / ``stack-down`` on a machine without Docker Compose v2: one line saying
what is missing, not docker's own error. make runs for real, with a PATH that has no docker, or
a docker whose ``compose`` subcommand does not exist (Docker without the Compose v2 plugin)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import clean_environ
from tests.stack_checks import REPO_ROOT

MESSAGE = (
    "the collector stack needs Docker with Compose v2 ('docker compose'), "
    "which is not installed here"
)
# What docker prints for `docker compose` when the plugin is missing.
DOCKER_WITHOUT_COMPOSE = """#!/bin/sh
echo "docker: 'compose' is not a docker command." >&2
echo "See 'docker --help'" >&2
exit 1
"""


@pytest.mark.parametrize("target", ["stack-up", "stack-down"])
@pytest.mark.parametrize("docker", ["absent", "without compose"])
def test_without_compose_v2_make_says_so_in_one_line(
    tmp_path: Path, target: str, docker: str
) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    if docker == "without compose":
        fake = tmp_path / "docker"
        fake.write_text(DOCKER_WITHOUT_COMPOSE)
        fake.chmod(0o755)
    # Only tmp_path on PATH: make's recipes run /bin/sh, and no docker is found but ours. A
    # top-level make, as a user's: none of the variables of the make that may run this suite
    # (`make test` sets MAKELEVEL, and its errors then read "make[1]: ***").
    env = {
        name: value
        for name, value in clean_environ(PATH=str(tmp_path)).items()
        if name not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")
    }
    result = subprocess.run(
        [make, "--no-print-directory", "-s", "-C", str(REPO_ROOT), target],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    first, *rest = result.stderr.splitlines()
    assert first == f"make {target}: {MESSAGE}"
    assert [line for line in rest if not line.startswith("make: ***")] == []
