"""aiohttp's test files for the installed aiohttp, from its source distribution, cached.

Nothing of aiohttp's is copied into this repository: ``pip download --no-deps --no-binary :all:
aiohttp==<version>`` fetches the sdist once, and its ``tests/`` directory and pytest configuration
(``pytest.ini`` from 3.14, ``setup.cfg``'s ``[tool:pytest]`` before) are unpacked to
``.cache/aiohttp-tests/<version>/`` (git-ignored). A complete cache has a ``COMPLETE`` marker,
written last, so an interrupted unpack is redone, not used.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

__all__ = ["CACHE_ROOT", "Unavailable", "aiohttp_tests", "pytest_config"]

ROOT = Path(__file__).resolve().parents[2]
CACHE_ROOT = ROOT / ".cache" / "aiohttp-tests"
_MARKER = "COMPLETE"
# Where aiohttp keeps its pytest configuration, newest layout first, with the section to read.
_CONFIGS = (("pytest.ini", "pytest"), ("setup.cfg", "tool:pytest"))
_DOWNLOAD_TIMEOUT = 300.0


class Unavailable(Exception):
    """The sdist could not be obtained (offline, index unreachable, ...); the message says why."""


def aiohttp_tests(aiohttp_version: str | None = None, cache_root: Path = CACHE_ROOT) -> Path:
    """The directory holding aiohttp's ``tests/`` and pytest configuration for ``aiohttp_version``
    (default: the installed one), downloading the sdist on first use."""
    aiohttp_version = aiohttp_version or version("aiohttp")
    target = cache_root / aiohttp_version
    if (target / _MARKER).is_file():
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_root, prefix=".download-") as scratch:
        sdist = _download(aiohttp_version, Path(scratch))
        unpacked = Path(scratch) / "unpacked"
        _unpack_tests(sdist, unpacked)
        (unpacked / _MARKER).write_text(f"{sdist.name}\n")
        shutil.rmtree(target, ignore_errors=True)
        unpacked.rename(target)
    return target


def _download(aiohttp_version: str, into: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        "--dest",
        str(into),
        f"aiohttp=={aiohttp_version}",
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_DOWNLOAD_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(
            f"pip download aiohttp=={aiohttp_version}: no answer in {exc.timeout}s"
        ) from exc
    sdists = sorted(into.glob("aiohttp-*.tar.gz"))
    if done.returncode != 0 or not sdists:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise Unavailable(f"pip download aiohttp=={aiohttp_version} failed (offline?): {last}")
    return sdists[0]


def _unpack_tests(sdist: Path, into: Path) -> None:
    """Only ``<top>/tests/**`` and the pytest configuration: the sdist's ``aiohttp/`` sources must
    never shadow the installed aiohttp."""
    into.mkdir()
    with tarfile.open(sdist) as archive:
        members = []
        for member in archive.getmembers():
            _, _, inner = member.name.partition("/")
            if not (inner in dict(_CONFIGS) or inner.startswith("tests/")):
                continue
            if not (member.isfile() or member.isdir()):
                continue
            member.name = inner
            members.append(member)
        archive.extractall(into, members=members, filter="data")
    if not (into / "tests" / "conftest.py").is_file():
        raise Unavailable(f"{sdist.name} has no tests/conftest.py")
    try:
        pytest_config(into)
    except FileNotFoundError as exc:
        raise Unavailable(f"{sdist.name}: {exc}") from exc


def pytest_config(tests_dir: Path) -> tuple[Path, str]:
    """aiohttp's pytest configuration file in ``tests_dir`` and the section pytest reads."""
    import iniconfig

    for name, section in _CONFIGS:
        path = tests_dir / name
        if path.is_file() and section in iniconfig.IniConfig(path):
            return path, section
    raise FileNotFoundError(f"no pytest configuration ({', '.join(dict(_CONFIGS))})")
