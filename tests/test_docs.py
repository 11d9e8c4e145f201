"""The user docs (README.md and docs/*.md) name every setting and every command-line flag, and
the README stays short."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_MAX_LINES = 250


def documentation() -> str:
    """README.md and every docs/*.md, as one text."""
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(page.read_text() for page in pages)


def parsers() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command line the project ships, built as its entry point builds it: the
    ``resilient-http`` command (with each subcommand's parser), the fault-injecting upstream
    and the benchmarks."""
    from benchmarks.cli import build_parser as benchmarks_parser
    from resilient_http.cli import build_parser
    from resilient_http.upstream._cli import build_parser as upstream_parser

    yield from walk("resilient-http", build_parser())
    yield "python -m resilient_http.upstream", upstream_parser()
    yield "python -m benchmarks", benchmarks_parser()


def walk(
    prog: str, parser: argparse.ArgumentParser
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield prog, parser
    for action in parser._actions:  # argparse has no public way to list them
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(f"{prog} {name}", sub)


def flags() -> list[tuple[str, str, argparse.Action]]:
    found = [
        (prog, option, action)
        for prog, parser in parsers()
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]
    assert len(found) > 40  # the walk reached every subcommand
    return found


def mentioned(word: str, text: str) -> bool:
    """``word`` as a whole token: `--json` is not found inside `--json-lines`."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def test_every_setting_is_documented() -> None:
    from resilient_http.config import KNOWN_VARIABLES

    text = documentation()
    assert KNOWN_VARIABLES
    missing = sorted(name for name in KNOWN_VARIABLES if not mentioned(name, text))
    assert missing == []


def test_every_command_and_flag_is_documented() -> None:
    text = documentation()
    programs = {prog for prog, _parser in parsers()}
    assert {"resilient-http demo", "resilient-http analyze", "resilient-http config"} <= programs
    missing = sorted(prog for prog in programs if prog not in text)
    missing += sorted(
        f"{prog} {option}" for prog, option, _action in flags() if not mentioned(option, text)
    )
    choices = {
        f"{prog} {option} {choice}"
        for prog, option, action in flags()
        for choice in action.choices or ()
        if not mentioned(str(choice), text)
    }
    assert missing + sorted(choices) == []


def test_the_command_is_documented_in_the_readme() -> None:
    """What a user of ``resilient-http`` needs is in the README itself, not only in docs/."""
    readme = README.read_text()
    missing = sorted(
        f"{prog} {option}"
        for prog, option, _action in flags()
        if prog.startswith("resilient-http") and not mentioned(option, readme)
    )
    assert missing == []


def test_readme_is_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_readme_has_no_history() -> None:
    text = README.read_text()
    assert re.search(r"\b[Ii]ssue \d+", text) is None
    assert "field note" not in text
    assert "seed note" not in text
