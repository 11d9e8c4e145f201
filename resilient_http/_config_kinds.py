"""Kinds of setting: how each one is parsed from an environment variable, checked and shown.

``config.py`` pairs every setting with one of these; a kind knows nothing of names or sources.
``check`` is shared by ``ClientConfig(...)`` and ``from_env``, so both accept the same values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from typing import Final, Literal, TypeAlias, cast

__all__ = [
    "CleanupClosed",
    "CleanupClosedKind",
    "Concurrency",
    "ConcurrencyKind",
    "HedgeAfter",
    "HedgeAfterKind",
    "Kind",
    "OnOff",
    "Ratio",
    "Seconds",
    "Statuses",
    "WholeNumber",
]

CleanupClosed: TypeAlias = Literal["auto"] | bool
Concurrency: TypeAlias = Literal["static", "adaptive"]
HedgeAfter: TypeAlias = Literal["off", "auto"] | float


class Kind:
    expected: str

    def parse(self, text: str) -> object:
        raise NotImplementedError

    def check(self, value: object) -> object:
        """The value, normalised; ValueError when it is not acceptable."""
        raise NotImplementedError

    def render(self, value: object) -> str:
        return str(value)


class WholeNumber(Kind):
    def __init__(self, minimum: int, note: str = "") -> None:
        self.minimum = minimum
        self.expected = f"a whole number >= {minimum}{note}"

    def parse(self, text: str) -> object:
        return int(text.strip(), 10)

    def check(self, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or value < self.minimum:
            raise ValueError
        return value


class Seconds(Kind):
    """A finite, non-negative number (``positive`` also rules out 0)."""

    def __init__(self, *, positive: bool, expected: str = "") -> None:
        self.positive = positive
        self.expected = expected or f"a number of seconds {'> 0' if positive else '>= 0'}"

    def parse(self, text: str) -> object:
        return float(text.strip())

    def check(self, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError
        if not math.isfinite(value) or value < 0 or (self.positive and value == 0):
            raise ValueError
        return float(value)

    def render(self, value: object) -> str:
        return f"{cast(float, value):g}"


class Statuses(Kind):
    expected = "a comma-separated list of status codes 400-599, or 'none'"

    def parse(self, text: str) -> object:
        if text.strip().lower() == "none":
            return frozenset()
        items = [item.strip() for item in text.split(",")]
        if any(not item for item in items):
            raise ValueError
        return [int(item, 10) for item in items]

    def check(self, value: object) -> object:
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise ValueError
        statuses = frozenset(value)
        for status in statuses:
            if isinstance(status, bool) or not isinstance(status, int):
                raise ValueError
            if not 400 <= status <= 599:
                raise ValueError
        return statuses

    def render(self, value: object) -> str:
        statuses = sorted(cast(AbstractSet[int], value))
        return ",".join(map(str, statuses)) if statuses else "none"


class CleanupClosedKind(Kind):
    expected = "'auto', 'true' or 'false'"
    _WORDS: Final[Mapping[str, CleanupClosed]] = {"auto": "auto", "true": True, "false": False}

    def parse(self, text: str) -> object:
        return self._WORDS[text.strip().lower()]

    def check(self, value: object) -> object:
        if not (value == "auto" or isinstance(value, bool)):
            raise ValueError
        return value

    def render(self, value: object) -> str:
        return value if isinstance(value, str) else str(value).lower()


class Ratio(Kind):
    """A share between 0 and 1; ``above_zero`` also rules out 0."""

    def __init__(self, *, above_zero: bool) -> None:
        self.above_zero = above_zero
        self.expected = f"a number {'> 0' if above_zero else '>= 0'} and <= 1"

    def parse(self, text: str) -> object:
        return float(text.strip())

    def check(self, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError
        if not 0 <= value <= 1 or (self.above_zero and value == 0):
            raise ValueError  # NaN fails both comparisons
        return float(value)

    def render(self, value: object) -> str:
        return f"{cast(float, value):g}"


class OnOff(Kind):
    """A switch: ``on`` / ``off`` in the environment, a bool in code."""

    expected = "'on' or 'off'"
    _WORDS: Final[Mapping[str, bool]] = {"on": True, "off": False}

    def parse(self, text: str) -> object:
        return self._WORDS[text.strip().lower()]

    def check(self, value: object) -> object:
        if not isinstance(value, bool):
            raise ValueError
        return value

    def render(self, value: object) -> str:
        return "on" if value else "off"


class ConcurrencyKind(Kind):
    expected = "'static' or 'adaptive'"

    def parse(self, text: str) -> object:
        return text.strip().lower()

    def check(self, value: object) -> object:
        if value not in ("static", "adaptive"):
            raise ValueError
        return value


class HedgeAfterKind(Kind):
    expected = "'off', 'auto' or a number of seconds > 0"

    def parse(self, text: str) -> object:
        word = text.strip().lower()
        return word if word in ("off", "auto") else float(word)

    def check(self, value: object) -> object:
        if value in ("off", "auto"):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError
        if not math.isfinite(value) or value <= 0:
            raise ValueError
        return float(value)

    def render(self, value: object) -> str:
        return value if isinstance(value, str) else f"{cast(float, value):g}"
