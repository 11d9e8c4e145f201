"""The test suite on each aiohttp minor that pyproject.toml admits, and on each Python minor.

`nox` runs every aiohttp minor, each in its own virtualenv under .nox/ holding the project with its
`dev` and `aiohttp-tests` extras and the newest patch of that minor; `nox -s
"tests(aiohttp-3.12)"` runs one, and arguments after `--` go to pytest. Each aiohttp minor runs
on a Python minor of its own (PYTHONS), so the same sessions cover the Pythons the project
supports; where that Python is not installed (neither on PATH nor under pyenv), the session runs
on nox's own interpreter and says so. `make test` runs the minors that .venv's own
aiohttp does not cover (see `python noxfile.py`). Virtualenvs are reused: the install step runs
again only when pyproject.toml changes; `nox --no-reuse-existing-virtualenvs` rebuilds them (e.g.
for a newer aiohttp patch).
tests/test_aiohttp_matrix.py checks AIOHTTP_MINORS against pyproject's aiohttp range, and
PYTHONS against its Python classifiers.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import sys
from pathlib import Path

import nox

# Every aiohttp minor that pyproject.toml's `aiohttp>=...,<...` admits, oldest first.
AIOHTTP_MINORS = ("3.12", "3.13", "3.14")
# The Python minor each aiohttp minor runs on. The newest aiohttp runs on the oldest Python, as in
# `make test`'s own .venv (this machine's Python); the others cover the newer Pythons.
PYTHONS = {"3.12": "3.12", "3.13": "3.13", "3.14": "3.11"}

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

# Prints the Python the session runs on, and fails if it is not the one the session asked for.
CHECK_PYTHON = """\
import sys
print("Python", sys.version.split()[0], "from", sys.executable)
if "%d.%d" % sys.version_info[:2] != sys.argv[1]:
    sys.exit(f"not Python {sys.argv[1]}: delete {sys.argv[2]} (make clean) to make it anew")
"""

WRITE_STAMP = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])"


def session_name(minor: str) -> str:
    """The nox session that runs the suite on aiohttp `minor`, as `nox -s` takes it."""
    return f"tests(aiohttp-{minor})"


def interpreter(python: str) -> tuple[str, str]:
    """The interpreter of Python `python` (e.g. "3.12") and its minor: pyenv's newest patch,
    else one on PATH (not a pyenv shim, which fails for a version that is not selected), else
    nox's own interpreter (whose minor may differ)."""
    pattern = os.path.expanduser(f"~/.pyenv/versions/{python}.*/bin/python{python}")
    # ~/.pyenv/versions/3.12.10/bin/python3.12: the newest patch, compared as numbers
    pyenv = sorted(glob.glob(pattern), key=lambda p: _numbers(Path(p).parents[1].name))
    if pyenv:
        return pyenv[-1], python
    on_path = shutil.which(f"python{python}")
    if on_path and "shims" not in Path(on_path).parts:
        return on_path, python
    return sys.executable, f"{sys.version_info[0]}.{sys.version_info[1]}"


def _numbers(version: str) -> list[int]:
    return [int(part) for part in version.split(".") if part.isdigit()]


def sessions_not_covered_by(aiohttp_version: str) -> list[str]:
    """The sessions for the minors other than the one of `aiohttp_version`."""
    return [session_name(m) for m in AIOHTTP_MINORS if not aiohttp_version.startswith(m + ".")]


@nox.session
@nox.parametrize(
    ("python", "aiohttp"),
    [nox.param(interpreter(PYTHONS[m])[0], m, id=f"aiohttp-{m}") for m in AIOHTTP_MINORS],
)
def tests(session: nox.Session, aiohttp: str) -> None:
    """The whole pytest suite on the newest patch of one aiohttp minor."""
    wanted, found = PYTHONS[aiohttp], interpreter(PYTHONS[aiohttp])[1]
    if found != wanted:
        session.warn(f"Python {wanted} is not installed here: aiohttp {aiohttp} runs on {found}")
    # A reused virtualenv keeps the Python it was made with (nox does not check).
    session.run("python", "-c", CHECK_PYTHON, found, session.virtualenv.location)
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
