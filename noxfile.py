"""The test suite on each aiohttp minor that pyproject.toml admits.

`nox` runs every minor, each in its own virtualenv under .nox/ holding the project with its `dev`
and `aiohttp-tests` extras and the newest patch of that minor; `nox -s "tests(aiohttp='3.12')"`
runs one, and arguments after `--` go to pytest. `make test` runs the minors that .venv's own
aiohttp does not cover (see `python noxfile.py`). Virtualenvs are reused: the install step runs
again only when pyproject.toml changes; `nox --no-reuse-existing-virtualenvs` rebuilds them (e.g.
for a newer aiohttp patch).
tests/test_aiohttp_matrix.py checks AIOHTTP_MINORS against pyproject's aiohttp range.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import nox

# Every aiohttp minor that pyproject.toml's `aiohttp>=...,<...` admits, oldest first.
AIOHTTP_MINORS = ("3.12", "3.13", "3.14")

nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"

PYPROJECT = Path(__file__).with_name("pyproject.toml")

# Prints the aiohttp that the session will test, and fails if it is not of the session's minor.
CHECK_AIOHTTP = """\
import sys, aiohttp
print("aiohttp", aiohttp.__version__, "from", aiohttp.__file__)
if not aiohttp.__version__.startswith(sys.argv[1] + "."):
    sys.exit("not aiohttp " + sys.argv[1])
"""

WRITE_STAMP = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])"


def session_name(minor: str) -> str:
    """The nox session that runs the suite on `minor`, as `nox -s` takes it."""
    return f"tests(aiohttp='{minor}')"


def sessions_not_covered_by(aiohttp_version: str) -> list[str]:
    """The sessions for the minors other than the one of `aiohttp_version`."""
    return [session_name(m) for m in AIOHTTP_MINORS if not aiohttp_version.startswith(m + ".")]


@nox.session
@nox.parametrize("aiohttp", AIOHTTP_MINORS)
def tests(session: nox.Session, aiohttp: str) -> None:
    """The whole pytest suite on the newest patch of one aiohttp minor."""
    requirements = ("-e", ".[dev,aiohttp-tests]", f"aiohttp~={aiohttp}.0")
    # pip would rebuild the editable project on every run; the stamp skips that on a reused venv.
    stamp = Path(session.virtualenv.location, ".installed")
    key = hashlib.sha256(PYPROJECT.read_bytes()).hexdigest() + " " + " ".join(requirements)
    if stamp.is_file() and stamp.read_text() == key:
        session.log(f"{stamp} is current: nothing to install")
    else:
        session.install(*requirements)
        # An install step too: `nox --no-install` (-R) skips both, and the stamp stays stale.
        session.run_install("python", "-c", WRITE_STAMP, str(stamp), key)
    session.run("python", "-c", CHECK_AIOHTTP, aiohttp)
    session.run("python", "-m", "pytest", *session.posargs)


if __name__ == "__main__":
    # `python noxfile.py`, with a venv's interpreter: the sessions its own aiohttp leaves to nox.
    from importlib.metadata import version

    print(*sessions_not_covered_by(version("aiohttp")))
    sys.exit(0)
