"""The answers of Prometheus's HTTP API, checked: the one place where their ``data`` is read.

Each result row is parsed and checked once, here, into a ``Series`` whose labels are strings and
whose values are finite numbers, so that the analysis past this module never meets a missing
key, a value that is not a number, or a row of the wrong shape (a proxy, a half-compatible
server, a bug). An answer Prometheus would not give raises ``UnexpectedAnswer`` saying what was
wrong; ``promql.Source`` names the URL and the endpoint around it. Only the shapes the analysis
asks for are accepted: an instant vector, a range vector (a matrix), label values, rule groups.
"""

from __future__ import annotations

import math
from typing import Any, Final, Literal, NamedTuple

import orjson

__all__ = [
    "ResultType",
    "Sample",
    "Series",
    "UnexpectedAnswer",
    "label_values",
    "result_rows",
    "rule_intervals",
]

Sample = tuple[float, float]  # (Unix seconds, value)
ResultType = Literal["vector", "matrix"]

# Prometheus keeps times as int64 milliseconds: a sample time beyond that is no Prometheus's
# (and a larger one would overflow the nanoseconds the analysis counts in).
_MAX_TIME_S: Final = 2**63 / 1000
# How much of an unexpected row a message shows.
_SHOWN_CHARS: Final = 120
_ROW_SHAPES: Final = {
    "vector": '{"metric": {label: "value"}, "value": [time, "finite number"]}',
    "matrix": '{"metric": {label: "value"}, "values": [[time, "finite number"], ...]}',
}


class UnexpectedAnswer(Exception):
    """An answer no Prometheus gives; the message says what is wrong with it."""


class Series(NamedTuple):
    """One result row: its labels and its value (instant) or samples (range). A named tuple:
    a fleet's answers hold hundreds of thousands of rows."""

    labels: dict[str, str]
    value: float = 0.0
    samples: tuple[Sample, ...] = ()


def result_rows(data: Any, expected: ResultType) -> list[Series]:
    """The rows of a query answer's ``data``, which must be a result of type ``expected`` (what
    Prometheus answers to the query asked: a vector to an instant vector, a matrix to a range
    vector or a subquery)."""
    if type(data) is not dict:
        raise UnexpectedAnswer(f'"data" is not an object but {_shown(data)}')
    found, rows = data.get("resultType"), data.get("result")
    if found != expected:
        raise UnexpectedAnswer(f"a result of type {_shown(found)} where a {expected} was asked")
    if type(rows) is not list:
        raise UnexpectedAnswer(f'"result" is not a list but {_shown(rows)}')
    return _vector(rows) if expected == "vector" else [_range_row(row) for row in rows]


def label_values(data: Any) -> list[str]:
    """The values of ``/api/v1/label/NAME/values``: a list of strings."""
    if type(data) is not list or not all(type(value) is str for value in data):
        raise UnexpectedAnswer(f'"data" is not a list of label values but {_shown(data)}')
    return data


def rule_intervals(data: Any) -> dict[str, float]:
    """The evaluation interval (seconds) of each rule group ``/api/v1/rules`` lists with one
    (a positive number)."""
    groups = data.get("groups") if type(data) is dict else None
    if type(groups) is not list or not all(type(group) is dict for group in groups):
        raise UnexpectedAnswer(f'"data" is not {{"groups": [{{...}}, ...]}} but {_shown(data)}')
    return {
        group["name"]: float(interval)
        for group in groups
        if type(group.get("name")) is str
        and _is_number(interval := group.get("interval"))
        and 0 < interval <= _MAX_TIME_S
    }


def _vector(rows: list[Any]) -> list[Series]:
    # The hot path of a fleet's answers (hundreds of thousands of rows): checks by exact type,
    # and tuple.__new__ straight (the named tuple's own __new__ is Python code, a third of the
    # time of reading an answer).
    new, empty, text, isfinite = tuple.__new__, (), str, math.isfinite
    parsed: list[Series] = []
    append = parsed.append
    for row in rows:
        try:
            labels, pair = row["metric"], row["value"]
            _, number = pair
            value = float(number)
        except (KeyError, TypeError, ValueError, OverflowError):
            raise UnexpectedAnswer(_bad_row(row, "vector")) from None
        if (
            type(labels) is not dict
            or type(pair) is not list
            or type(number) is not text
            or not isfinite(value)
        ):
            raise UnexpectedAnswer(_bad_row(row, "vector"))
        for label in labels.values():
            if type(label) is not text:
                raise UnexpectedAnswer(_bad_row(row, "vector"))
        append(new(Series, (labels, value, empty)))
    return parsed


def _range_row(row: Any) -> Series:
    # Range answers are few and small (raw samples of a reset series, a subquery's steps).
    labels = row.get("metric") if type(row) is dict else None
    pairs = row.get("values") if type(row) is dict else None
    if (
        type(labels) is not dict
        or not all(type(label) is str for label in labels.values())
        or type(pairs) is not list
    ):
        raise UnexpectedAnswer(_bad_row(row, "matrix"))
    return Series(labels, samples=tuple(_sample(pair, row) for pair in pairs))


def _sample(pair: Any, row: Any) -> Sample:
    if type(pair) is list and len(pair) == 2:
        at, number = pair
        # The time compared before float(): an integer past a float's range would overflow.
        if _is_number(at) and abs(at) <= _MAX_TIME_S and type(number) is str:
            try:
                value = float(number)
            except ValueError:
                value = math.nan
            if math.isfinite(value):
                return float(at), value
    raise UnexpectedAnswer(_bad_row(row, "matrix"))


def _is_number(value: Any) -> bool:
    """A JSON number (not a boolean, which Python counts as an int)."""
    return type(value) in (int, float)


def _bad_row(row: Any, kind: ResultType) -> str:
    return f"a {kind} row that is not {_ROW_SHAPES[kind]}: {_shown(row)}"


def _shown(value: Any) -> str:
    """``value`` as the answer wrote it (JSON), cut short for a one-line message."""
    text = orjson.dumps(value).decode()
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."
