"""``prometheus_answers``: every row of an answer checked once, what is wrong said in a line."""

from __future__ import annotations

from typing import Any

import pytest

from resilient_http.analysis.prometheus_answers import (
    ResultType,
    Series,
    UnexpectedAnswer,
    label_values,
    result_rows,
    rule_intervals,
)


def _data(kind: str, *rows: Any) -> dict[str, Any]:
    return {"resultType": kind, "result": list(rows)}


def test_rows_are_parsed_as_prometheus_writes_them() -> None:
    vector = _data("vector", {"metric": {"job": "a"}, "value": [1700000000.5, "2.5"]})
    assert result_rows(vector, "vector") == [Series({"job": "a"}, 2.5)]
    matrix = _data("matrix", {"metric": {}, "values": [[1700000000, "1"], [1700000015.5, "3"]]})
    assert result_rows(matrix, "matrix") == [
        Series({}, samples=((1700000000.0, 1.0), (1700000015.5, 3.0)))
    ]
    assert label_values(["checkout", "search"]) == ["checkout", "search"]
    groups = {"groups": [{"name": "g", "interval": 60}, {"name": "h", "rules": []}]}
    assert rule_intervals(groups) == {"g": 60.0}


@pytest.mark.parametrize(
    ("data", "expected", "wrong"),
    [
        (None, "vector", '"data" is not an object but null'),
        (_data("scalar", 1, "1"), "vector", 'a result of type "scalar" where a vector'),
        ({"resultType": "vector", "result": {}}, "vector", '"result" is not a list but {}'),
        (_data("vector", []), "vector", "a vector row that is not {"),
        (_data("vector", {"metric": {}, "value": [1, 2]}), "vector", '"value":[1,2]'),
        (_data("vector", {"metric": {}, "value": {"1": 0, "2": 0}}), "vector", '"2":0'),
        (_data("vector", {"metric": {}, "value": [1, "-Inf"]}), "vector", '"-Inf"'),
        (_data("vector", {"metric": [], "value": [1, "1"]}), "vector", '"metric":[]'),
        (_data("matrix", {"metric": {}, "values": [["1", "1"]]}), "matrix", '[["1","1"]]'),
        (_data("matrix", {"metric": {}, "values": [[10**19, "1"]]}), "matrix", "[[1000"),
        (_data("matrix", {"metric": {}, "values": [[True, "1"]]}), "matrix", "[[true"),
        (_data("matrix", {"metric": {}, "values": [[1, "x"]]}), "matrix", '[[1,"x"]]'),
        (_data("matrix", {"metric": {}, "values": [[1, "1", 2]]}), "matrix", '[[1,"1",2]]'),
        (_data("matrix", {"metric": {"a": None}, "values": []}), "matrix", '{"a":null}'),
        (_data("matrix", {"metric": {}}), "matrix", "a matrix row that is not {"),
    ],
)
def test_an_answer_no_prometheus_gives_says_what_is_wrong(
    data: Any, expected: ResultType, wrong: str
) -> None:
    with pytest.raises(UnexpectedAnswer) as raised:
        result_rows(data, expected)
    assert wrong in str(raised.value)


def test_a_long_row_is_cut_short_in_the_message() -> None:
    row = {"metric": {"job": "x" * 1000}, "value": [1, "oops"]}
    with pytest.raises(UnexpectedAnswer) as raised:
        result_rows(_data("vector", row), "vector")
    # 120 characters of the row as JSON, the last three "...".
    assert str(raised.value).endswith(': {"metric":{"job":"' + "x" * 99 + "...")


@pytest.mark.parametrize("data", [None, {"a": 1}, ["a", 1]])
def test_label_values_are_strings(data: Any) -> None:
    with pytest.raises(UnexpectedAnswer, match="not a list of label values"):
        label_values(data)


@pytest.mark.parametrize("data", [None, {"groups": {}}, {"groups": [1]}])
def test_rule_groups_are_objects(data: Any) -> None:
    with pytest.raises(UnexpectedAnswer, match="groups"):
        rule_intervals(data)
