"""ClientConfig, TimeoutConfig and RetryPolicy: defaults, validation, environment parsing."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import resilient_http as rh
from resilient_http.config import KNOWN_VARIABLES, describe_environment

P = "RESILIENT_HTTP_"


def test_defaults_match_spec_table() -> None:
    config = rh.ClientConfig()
    assert (config.limit, config.limit_per_host) == (100, 10)
    assert (config.keepalive_timeout, config.ttl_dns_cache) == (15.0, 300.0)
    assert config.enable_cleanup_closed == "auto"
    assert config.timeout == rh.TimeoutConfig(total=30.0, connect=5.0, read=10.0)
    assert config.retry == rh.RetryPolicy(
        max_attempts=3,
        backoff_initial=0.1,
        backoff_max=5.0,
        statuses=frozenset({429, 502, 503, 504}),
        retry_after_max=30.0,
        budget_ratio=0.2,
        budget_min_per_second=10.0,
    )
    assert rh.ClientConfig.from_env({}) == config


@pytest.mark.parametrize(
    ("variable", "text", "path", "expected"),
    [
        ("LIMIT", "30", ("limit",), 30),
        ("LIMIT", "0", ("limit",), 0),
        ("LIMIT_PER_HOST", "20", ("limit_per_host",), 20),
        ("LIMIT_PER_HOST", "0", ("limit_per_host",), 0),
        ("KEEPALIVE_TIMEOUT", "2.5", ("keepalive_timeout",), 2.5),
        ("TTL_DNS_CACHE", "60", ("ttl_dns_cache",), 60.0),
        ("ENABLE_CLEANUP_CLOSED", "auto", ("enable_cleanup_closed",), "auto"),
        ("ENABLE_CLEANUP_CLOSED", "TRUE", ("enable_cleanup_closed",), True),
        ("ENABLE_CLEANUP_CLOSED", "false", ("enable_cleanup_closed",), False),
        ("TIMEOUT_TOTAL", "12", ("timeout", "total"), 12.0),
        ("TIMEOUT_CONNECT", "0.5", ("timeout", "connect"), 0.5),
        ("TIMEOUT_READ", " 3 ", ("timeout", "read"), 3.0),
        ("RETRY_MAX_ATTEMPTS", "1", ("retry", "max_attempts"), 1),
        ("RETRY_BACKOFF_INITIAL", "0", ("retry", "backoff_initial"), 0.0),
        ("RETRY_BACKOFF_MAX", "1e1", ("retry", "backoff_max"), 10.0),
        ("RETRY_STATUSES", "503, 429", ("retry", "statuses"), frozenset({429, 503})),
        ("RETRY_STATUSES", "none", ("retry", "statuses"), frozenset()),
        ("RETRY_AFTER_MAX", "0", ("retry", "retry_after_max"), 0.0),
        ("RETRY_BUDGET_RATIO", "0.5", ("retry", "budget_ratio"), 0.5),
        ("RETRY_BUDGET_MIN_PER_SECOND", "0.25", ("retry", "budget_min_per_second"), 0.25),
        ("CONCURRENCY", " Adaptive", ("concurrency",), "adaptive"),
        ("HEDGE_AFTER", "AUTO", ("hedge_after",), "auto"),
        ("HEDGE_AFTER", "0.25", ("hedge_after",), 0.25),
        ("HEDGE_MAX", "3", ("hedge_max",), 3),
        ("BREAKER", "OFF", ("breaker", "enabled"), False),
        ("BREAKER", "on", ("breaker", "enabled"), True),
        ("BREAKER_FAILURE_RATIO", "1", ("breaker", "failure_ratio"), 1.0),
        ("BREAKER_MIN_CALLS", "1", ("breaker", "min_calls"), 1),
        ("BREAKER_WINDOW", "0.5", ("breaker", "window"), 0.5),
        ("BREAKER_OPEN_FOR", "30", ("breaker", "open_for"), 30.0),
    ],
)
def test_each_variable_is_read(
    variable: str, text: str, path: tuple[str, ...], expected: object
) -> None:
    value: object = rh.ClientConfig.from_env({P + variable: text})
    for name in path:
        value = getattr(value, name)
    assert value == expected


BAD_VALUES = [
    ("LIMIT", "abc", "a whole number >= 0"),
    ("LIMIT", "-1", "a whole number >= 0"),
    ("LIMIT", "2.5", "a whole number >= 0"),
    ("LIMIT_PER_HOST", "ten", "a whole number >= 0"),
    ("KEEPALIVE_TIMEOUT", "-3", "seconds >= 0"),
    ("KEEPALIVE_TIMEOUT", "nan", "seconds >= 0"),
    ("TTL_DNS_CACHE", "inf", "seconds >= 0"),
    ("ENABLE_CLEANUP_CLOSED", "yes please", "'auto', 'true' or 'false'"),
    ("TIMEOUT_TOTAL", "0", "seconds > 0"),
    ("TIMEOUT_CONNECT", "-1", "seconds > 0"),
    ("TIMEOUT_READ", "soon", "seconds > 0"),
    ("RETRY_MAX_ATTEMPTS", "0", "a whole number >= 1"),
    ("RETRY_BACKOFF_INITIAL", "-0.1", "seconds >= 0"),
    ("RETRY_BACKOFF_MAX", "x", "seconds >= 0"),
    ("RETRY_STATUSES", "200", "status codes 400-599"),
    ("RETRY_STATUSES", "600", "status codes 400-599"),
    ("RETRY_STATUSES", "429,,503", "status codes 400-599"),
    ("RETRY_STATUSES", "429;503", "status codes 400-599"),
    ("RETRY_AFTER_MAX", "-5", "seconds >= 0"),
    ("RETRY_BUDGET_RATIO", "-0.2", "a number >= 0"),
    ("RETRY_BUDGET_MIN_PER_SECOND", "lots", "a number >= 0"),
    ("CONCURRENCY", "dynamic", "'static' or 'adaptive'"),
    ("HEDGE_AFTER", "0", "'off', 'auto' or a number of seconds > 0"),
    ("HEDGE_AFTER", "soon", "'off', 'auto' or a number of seconds > 0"),
    ("HEDGE_MAX", "0", "a whole number >= 1"),
    ("BREAKER", "true", "'on' or 'off'"),
    ("BREAKER_FAILURE_RATIO", "0", "a number > 0 and <= 1"),
    ("BREAKER_FAILURE_RATIO", "1.5", "a number > 0 and <= 1"),
    ("BREAKER_FAILURE_RATIO", "nan", "a number > 0 and <= 1"),
    ("BREAKER_MIN_CALLS", "0", "a whole number >= 1"),
    ("BREAKER_WINDOW", "0", "seconds > 0"),
    ("BREAKER_OPEN_FOR", "-1", "seconds > 0"),
]


@pytest.mark.parametrize(("variable", "text", "expected"), BAD_VALUES)
def test_bad_variable_names_variable_value_and_expectation(
    variable: str, text: str, expected: str
) -> None:
    with pytest.raises(rh.ConfigError) as caught:
        rh.ClientConfig.from_env({P + variable: text})
    message = str(caught.value)
    assert message.startswith(f"{P}{variable}={text!r}: expected ")
    assert expected in message


def test_every_variable_is_covered_by_the_error_table() -> None:
    settings = {P + variable for variable, _, _ in BAD_VALUES}
    assert settings == KNOWN_VARIABLES - {P + "TELEMETRY_FILE"}


@pytest.mark.parametrize("variable", sorted(KNOWN_VARIABLES - {P + "TELEMETRY_FILE"}))
@pytest.mark.parametrize("text", ["", "   "])
def test_empty_variable_is_an_error(variable: str, text: str) -> None:
    with pytest.raises(rh.ConfigError, match=f"^{variable} is set but empty: expected "):
        rh.ClientConfig.from_env({variable: text})


def test_config_error_is_a_value_error() -> None:
    assert issubclass(rh.ConfigError, ValueError)


@pytest.mark.parametrize(
    ("env", "limit", "per_host"),
    [
        ({"LIMIT": "5"}, 5, 5),  # default per-host follows a smaller total
        ({"LIMIT": "0"}, 0, 10),  # unlimited total keeps the per-host default
        ({"LIMIT": "30"}, 30, 10),
        ({"LIMIT": "5", "LIMIT_PER_HOST": "5"}, 5, 5),
        ({"LIMIT": "5", "LIMIT_PER_HOST": "0"}, 5, 0),  # unlimited per host, bounded by total
        ({"LIMIT": "0", "LIMIT_PER_HOST": "50"}, 0, 50),
    ],
)
def test_limit_rules(env: dict[str, str], limit: int, per_host: int) -> None:
    config = rh.ClientConfig.from_env({P + k: v for k, v in env.items()})
    assert (config.limit, config.limit_per_host) == (limit, per_host)
    kwargs: dict[str, Any] = {k.lower(): int(v) for k, v in env.items()}
    assert rh.ClientConfig(**kwargs) == config


def test_per_host_above_total_is_an_error_in_both_forms() -> None:
    with pytest.raises(rh.ConfigError, match=f"{P}LIMIT_PER_HOST=8 with {P}LIMIT=5: expected"):
        rh.ClientConfig.from_env({P + "LIMIT": "5", P + "LIMIT_PER_HOST": "8"})
    with pytest.raises(rh.ConfigError, match="limit_per_host=10 with limit=5"):
        rh.ClientConfig(limit=5, limit_per_host=10)


def test_backoff_initial_above_max_is_an_error() -> None:
    with pytest.raises(rh.ConfigError, match=f"{P}RETRY_BACKOFF_INITIAL=6 with"):
        rh.ClientConfig.from_env({P + "RETRY_BACKOFF_INITIAL": "6"})
    with pytest.raises(rh.ConfigError, match="backoff_initial=2 with backoff_max=1"):
        rh.RetryPolicy(backoff_initial=2, backoff_max=1)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: rh.ClientConfig(limit=-1), r"ClientConfig\(limit=-1\): expected a whole"),
        (lambda: rh.ClientConfig(limit=True), r"ClientConfig\(limit=True\)"),
        (lambda: rh.ClientConfig(limit="3"), r"ClientConfig\(limit='3'\)"),  # type: ignore[arg-type]
        (lambda: rh.ClientConfig(enable_cleanup_closed=1), "enable_cleanup_closed=1"),  # type: ignore[arg-type]
        (lambda: rh.ClientConfig(keepalive_timeout=math.nan), "keepalive_timeout=nan"),
        (lambda: rh.ClientConfig(timeout=30), r"timeout=30: expected a TimeoutConfig"),  # type: ignore[arg-type]
        (lambda: rh.ClientConfig(retry=False), r"retry=False: expected a RetryPolicy"),  # type: ignore[arg-type]
        (lambda: rh.TimeoutConfig(total=0), r"TimeoutConfig\(total=0\): expected .* > 0"),
        (lambda: rh.TimeoutConfig(read=-1), r"TimeoutConfig\(read=-1\)"),
        (lambda: rh.RetryPolicy(max_attempts=0), r"RetryPolicy\(max_attempts=0\)"),
        (lambda: rh.RetryPolicy(statuses={200}), r"RetryPolicy\(statuses=\{200\}\)"),
        (lambda: rh.RetryPolicy(statuses="503"), r"RetryPolicy\(statuses='503'\)"),  # type: ignore[arg-type]
        (lambda: rh.RetryPolicy(statuses=[True]), r"RetryPolicy\(statuses=\[True\]\)"),  # type: ignore[arg-type]
        (lambda: rh.RetryPolicy(budget_ratio=-1), r"RetryPolicy\(budget_ratio=-1\)"),
    ],
)
def test_constructor_validation(factory: object, message: str) -> None:
    with pytest.raises(rh.ConfigError, match=message):
        factory()  # type: ignore[operator]


def test_frozen_and_replace() -> None:
    config = rh.ClientConfig(limit=50, retry=rh.RetryPolicy(max_attempts=5))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.limit = 3  # type: ignore[misc]
    changed = config.replace(limit=20)
    assert (changed.limit, changed.retry.max_attempts, config.limit) == (20, 5, 50)
    assert rh.RetryPolicy().replace(statuses=[503, 503]).statuses == frozenset({503})
    assert rh.TimeoutConfig().replace(total=1).total == 1.0
    with pytest.raises(rh.ConfigError, match="replace\\(\\) got unknown setting 'limt'"):
        config.replace(limt=3)
    with pytest.raises(rh.ConfigError, match="limit=-2"):
        config.replace(limit=-2)


def test_replace_keeps_a_default_per_host_limit_following_the_total() -> None:
    small = rh.ClientConfig(limit=5)
    assert small.limit_per_host == 5
    assert small.replace(limit=50).limit_per_host == 10
    assert rh.ClientConfig().replace(limit=4).limit_per_host == 4
    explicit = rh.ClientConfig(limit=50, limit_per_host=20)
    with pytest.raises(rh.ConfigError, match="limit_per_host=20 with limit=10"):
        explicit.replace(limit=10)


def test_unknown_variable_warns_once_naming_the_closest(recwarn: pytest.WarningsRecorder) -> None:
    warnings.simplefilter("always")
    config = rh.ClientConfig.from_env({P + "LIMT": "3", P + "RETRY_MAX_ATEMPTS": "9"})
    messages = sorted(str(w.message) for w in recwarn if w.category is rh.ConfigWarning)
    assert messages == [
        f"unknown variable {P}LIMT is ignored; did you mean {P}LIMIT?",
        f"unknown variable {P}RETRY_MAX_ATEMPTS is ignored; did you mean {P}RETRY_MAX_ATTEMPTS?",
    ]
    assert config == rh.ClientConfig()


def test_telemetry_file_variable_is_known(recwarn: pytest.WarningsRecorder) -> None:
    rh.ClientConfig.from_env({P + "TELEMETRY_FILE": "/tmp/x.jsonl"})
    assert not [w for w in recwarn if w.category is rh.ConfigWarning]


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(P + "LIMIT", "42")
    assert rh.ClientConfig.from_env().limit == 42


def test_describe_environment_reports_sources() -> None:
    reports = {r.variable: r for r in describe_environment({P + "LIMIT": "4"})}
    assert reports[P + "LIMIT"].value == "4"
    assert reports[P + "LIMIT"].source == "environment"
    assert reports[P + "LIMIT_PER_HOST"].value == "4"
    assert reports[P + "LIMIT_PER_HOST"].source == f"default, lowered to {P}LIMIT"
    assert reports[P + "RETRY_STATUSES"].value == "429,502,503,504"
    assert reports[P + "RETRY_BACKOFF_INITIAL"].value == "0.1"
    assert reports[P + "TELEMETRY_FILE"].source == "default (unset)"
    assert set(reports) == KNOWN_VARIABLES


def test_rendered_values_read_back_to_the_same_config() -> None:
    env = {
        P + "RETRY_STATUSES": "none",
        P + "KEEPALIVE_TIMEOUT": "2.5",
        P + "ENABLE_CLEANUP_CLOSED": "false",
    }
    config = rh.ClientConfig.from_env(env)
    rendered = {r.variable: r.value for r in describe_environment(env) if r.value}
    assert rh.ClientConfig.from_env(rendered) == config


@given(st.dictionaries(st.sampled_from(sorted(KNOWN_VARIABLES)), st.text(max_size=12)))
def test_any_environment_gives_a_config_or_a_config_error(env: dict[str, str]) -> None:
    try:
        config = rh.ClientConfig.from_env(env)
    except rh.ConfigError as error:
        message = str(error)
    else:
        assert config.limit_per_host <= config.limit or config.limit == 0
        return
    assert any(variable in message for variable in env)
