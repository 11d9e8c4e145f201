"""noxfile.py's aiohttp minors are exactly those that pyproject.toml's aiohttp range admits."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

import noxfile

ROOT = Path(__file__).resolve().parent.parent


def aiohttp_specifier() -> SpecifierSet:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (requirement,) = (
        req
        for req in map(Requirement, project["dependencies"])
        if canonicalize_name(req.name) == "aiohttp"
    )
    return requirement.specifier


def admitted_minors(specifier: SpecifierSet) -> list[str]:
    """The minors from the `>=` bound up to the `<` cap that the whole specifier admits."""
    (lower,) = (Version(s.version) for s in specifier if s.operator == ">=")
    (cap,) = (Version(s.version) for s in specifier if s.operator == "<")
    assert lower.major == cap.major, f"{specifier}: a range over several majors"
    assert cap.micro == 0, f"{specifier}: the cap is not a minor"
    return [
        f"{lower.major}.{minor}"
        for minor in range(lower.minor, cap.minor)
        if specifier.contains(Version(f"{lower.major}.{minor}.{lower.micro}"))
        or specifier.contains(Version(f"{lower.major}.{minor}.{10**6}"))
    ]


def test_noxfile_covers_exactly_the_aiohttp_minors_pyproject_admits() -> None:
    specifier = aiohttp_specifier()
    assert list(noxfile.AIOHTTP_MINORS) == admitted_minors(specifier), str(specifier)


def test_admitted_minors_reads_bounds_and_exclusions() -> None:
    assert admitted_minors(SpecifierSet(">=3.12,<3.15")) == ["3.12", "3.13", "3.14"]
    assert admitted_minors(SpecifierSet(">=3.12.4,<3.14")) == ["3.12", "3.13"]
    assert admitted_minors(SpecifierSet(">=3.12,<3.15,!=3.13.*")) == ["3.12", "3.14"]


def test_make_test_leaves_nox_only_the_minors_that_dot_venv_does_not_run() -> None:
    assert noxfile.sessions_not_covered_by("3.14.5") == [
        "tests(aiohttp-3.12)",
        "tests(aiohttp-3.13)",
    ]
    assert noxfile.sessions_not_covered_by("3.11.18") == [
        noxfile.session_name(minor) for minor in noxfile.AIOHTTP_MINORS
    ]


def python_classifiers() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    prefix = "Programming Language :: Python :: "
    return [c.removeprefix(prefix) for c in project["classifiers"] if c.startswith(prefix)]


def test_the_matrix_runs_every_python_the_classifiers_name() -> None:
    """Each aiohttp minor's session runs on a Python of its own: together they cover exactly
    the Python minors pyproject.toml claims, from its requires-python bound up."""
    assert set(noxfile.PYTHONS) == set(noxfile.AIOHTTP_MINORS)
    pythons = sorted(set(noxfile.PYTHONS.values()), key=Version)
    assert pythons == python_classifiers()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert SpecifierSet(project["requires-python"]).contains(pythons[0] + ".0")
    assert not SpecifierSet(project["requires-python"]).contains(
        f"3.{int(pythons[0].split('.')[1]) - 1}.0"
    )


def test_the_interpreter_falls_back_to_nox_s_own() -> None:
    own = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert noxfile.interpreter("2.1") == (sys.executable, own)
    assert noxfile.interpreter("3.12")[1] in ("3.12", own)
