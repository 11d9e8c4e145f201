"""Configuration: ``ClientConfig``, ``TimeoutConfig``, ``RetryPolicy``, read from the environment.

This module owns every setting's name, default and validation. The same rules apply to
``ClientConfig(...)`` and to ``ClientConfig.from_env()``: each setting is described once in
``_SETTINGS`` (its variable, its field and its kind), and both paths check values through it,
so an error names the variable (or the field), the bad value and what is expected.
What the settings do is decided elsewhere: the pool in ``pool.py``, retries in ``retry.py``.

>>> config = ClientConfig.from_env({"RESILIENT_HTTP_LIMIT": "30"})
>>> (config.limit, config.limit_per_host)
(30, 10)
>>> ClientConfig(limit=5).limit_per_host   # a default per-host limit follows a smaller total
5
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import warnings
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, TypeVar, cast

from ._config_kinds import (
    CleanupClosed,
    CleanupClosedKind,
    Concurrency,
    ConcurrencyKind,
    HedgeAfter,
    HedgeAfterKind,
    Kind,
    OnOff,
    Ratio,
    Seconds,
    Statuses,
    WholeNumber,
)
from ._exceptions import ConfigError, ConfigWarning

__all__ = [
    "ENV_PREFIX",
    "TELEMETRY_FILE_VARIABLE",
    "THROTTLING_STATUSES",
    "BreakerPolicy",
    "CleanupClosed",
    "ClientConfig",
    "RetryPolicy",
    "SettingReport",
    "TimeoutConfig",
    "describe_environment",
    "read_environment",
]

ENV_PREFIX: Final = "RESILIENT_HTTP_"
#: The one telemetry variable of our own; everything else uses the standard OTEL_* names.
TELEMETRY_FILE_VARIABLE: Final = "RESILIENT_HTTP_TELEMETRY_FILE"


DEFAULT_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
#: The statuses that mean "slow down" (retry reason ``throttled``); other retried ones are
#: ``server_error``. Defined once: retries, the analysis, the demo's checks and the upstream use it.
THROTTLING_STATUSES: Final = frozenset({429, 503})
#: 429 Too Many Requests: a rate limit by its meaning, unlike a 503 (which only asks for less
#: load when it says when to come back). ``retry.asks_for_less_load`` (the adaptive limiter's and
#: the breaker's test) and the analysis read it.
RATE_LIMITED_STATUS: Final = 429
_DEFAULT_LIMIT_PER_HOST: Final = 10


class _FollowsLimit(int):
    """Marks a per-host limit left at its default, so that a smaller total limit may lower it."""

    def __repr__(self) -> str:
        return f"{int(self)} (or limit, when that is smaller)"


_PER_HOST_DEFAULT: Final = _FollowsLimit(_DEFAULT_LIMIT_PER_HOST)


@dataclass(frozen=True, slots=True)
class TimeoutConfig:
    """Timeouts in seconds, all > 0.

    ``total`` bounds one logical call (every attempt and wait); ``connect`` bounds waiting for a
    pooled connection plus connecting, per attempt; ``read`` bounds each socket read, per attempt.
    """

    total: float = 30.0
    connect: float = 5.0
    read: float = 10.0

    def __post_init__(self) -> None:
        _check_fields(self)

    def replace(self, **changes: Any) -> TimeoutConfig:
        """A copy with ``changes`` applied and validated."""
        return _replace(self, changes)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed attempts are retried; immutable, so one policy can be shared by many calls.

    ``max_attempts`` counts attempts in total (1 = no retry). Backoff is exponential with full
    jitter from ``backoff_initial`` up to ``backoff_max`` seconds. ``statuses`` are the response
    codes worth retrying (400-599; empty = none). A ``Retry-After`` longer than
    ``retry_after_max`` seconds is not waited for. The retry budget allows
    ``budget_ratio`` x calls + ``budget_min_per_second`` x 10 retries per 10-second window.

    >>> RetryPolicy(max_attempts=5).replace(statuses={503}).statuses
    frozenset({503})
    """

    max_attempts: int = 3
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    statuses: AbstractSet[int] = DEFAULT_RETRY_STATUSES
    retry_after_max: float = 30.0
    budget_ratio: float = 0.2
    budget_min_per_second: float = 10.0

    def __post_init__(self) -> None:
        _check_fields(self)
        _check_backoff_order(
            self.backoff_initial, self.backoff_max, ("backoff_initial", "backoff_max")
        )

    def replace(self, **changes: Any) -> RetryPolicy:
        """A copy with ``changes`` applied and validated."""
        return _replace(self, changes)


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When an upstream's circuit breaker opens, and for how long.

    ``enabled=False`` turns the breaker off. It opens when, over the last ``window`` seconds,
    at least ``min_calls`` calls ended and the share of them that failed (connect errors,
    timeouts, 5xx other than 501) reached ``failure_ratio``; it then rejects calls for
    ``open_for`` seconds before letting a few probe calls through.

    >>> BreakerPolicy().replace(open_for=1).open_for
    1.0
    """

    enabled: bool = True
    failure_ratio: float = 0.5
    min_calls: int = 20
    window: float = 10.0
    open_for: float = 5.0

    def __post_init__(self) -> None:
        _check_fields(self)

    def replace(self, **changes: Any) -> BreakerPolicy:
        """A copy with ``changes`` applied and validated."""
        return _replace(self, changes)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything the SDK lets a service tune; frozen, with ``replace(**changes)``.

    ``limit`` and ``limit_per_host`` bound the pool (0 = unlimited, as in aiohttp). When
    ``limit_per_host`` is left at its default and a non-zero ``limit`` is below it, the per-host
    limit is lowered to ``limit``; a per-host limit given above the total one is an error.
    ``enable_cleanup_closed="auto"`` turns aiohttp's closed-transport cleanup on only where the
    running Python needs it. ``concurrency="adaptive"`` bounds each upstream's attempts in flight
    by a limit that adapts between 1 and the per-host limit (``"static"``: the pool's limits only).
    ``hedge_after`` (seconds, ``"auto"`` for the upstream's running p95, or ``"off"``) sends up to
    ``hedge_max`` more attempts of an idempotent call that has no answer after that long.

    >>> config = ClientConfig(limit=50, retry=RetryPolicy(max_attempts=5))
    >>> config.replace(limit=20).retry.max_attempts
    5
    """

    limit: int = 100
    limit_per_host: int = _PER_HOST_DEFAULT
    keepalive_timeout: float = 15.0
    ttl_dns_cache: float = 300.0
    enable_cleanup_closed: CleanupClosed = "auto"
    concurrency: Concurrency = "static"
    hedge_after: HedgeAfter = "off"
    hedge_max: int = 1
    timeout: TimeoutConfig = field(default_factory=TimeoutConfig)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    _limit_per_host_given: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_fields(self)
        given = not isinstance(self.limit_per_host, _FollowsLimit)
        per_host = _resolve_limit_per_host(
            self.limit,
            self.limit_per_host if given else None,
            ("limit", "limit_per_host"),
        )
        object.__setattr__(self, "limit_per_host", per_host)
        object.__setattr__(self, "_limit_per_host_given", given)
        if not isinstance(self.timeout, TimeoutConfig):
            raise ConfigError(f"timeout={self.timeout!r}: expected a TimeoutConfig")
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError(f"retry={self.retry!r}: expected a RetryPolicy")
        if not isinstance(self.breaker, BreakerPolicy):
            raise ConfigError(f"breaker={self.breaker!r}: expected a BreakerPolicy")

    def replace(self, **changes: Any) -> ClientConfig:
        """A copy with ``changes`` applied and validated.

        A per-host limit that was never given keeps following ``limit``.
        """
        if "limit_per_host" not in changes and not self._limit_per_host_given:
            changes["limit_per_host"] = _PER_HOST_DEFAULT
        return _replace(self, changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientConfig:
        """Read ``RESILIENT_HTTP_*`` variables (``os.environ`` by default) over the defaults.

        Raises ``ConfigError`` naming the variable, its value and what is expected; warns
        (``ConfigWarning``) once per unknown ``RESILIENT_HTTP_*`` variable, naming the closest
        known one.
        """
        return _read_environment(os.environ if environ is None else environ)[0]


class SettingReport(NamedTuple):
    """One line of ``resilient-http config``: a variable, its effective value and its source."""

    variable: str
    value: str
    source: str


def describe_environment(
    environ: Mapping[str, str] | None = None, *, warn_unknown: bool = True
) -> list[SettingReport]:
    """The effective value of every setting as the text to set it to, and where it came from.

    ``warn_unknown=False`` leaves the unknown-variable warning to ``from_env`` (telemetry
    describes the environment too, and one misspelling deserves one warning).
    """
    env = os.environ if environ is None else environ
    config, sources = _read_environment(env, warn_unknown=warn_unknown)
    reports = [
        SettingReport(s.variable, s.kind.render(s.read(config)), sources[s.variable])
        for s in _SETTINGS
    ]
    telemetry_file = env.get(TELEMETRY_FILE_VARIABLE)
    reports.append(
        SettingReport(
            TELEMETRY_FILE_VARIABLE,
            telemetry_file or "",
            "environment" if telemetry_file else "default (unset)",
        )
    )
    return reports


def read_environment(
    environ: Mapping[str, str], *, warn_unknown: bool = True
) -> tuple[ClientConfig, dict[str, str]]:
    """The config ``environ`` describes and, per variable, where its value came from
    (``environment``, ``default``, ...): ``from_env`` and ``describe_environment`` in one read,
    for readers of exported settings (the tuning analysis) that need both."""
    return _read_environment(environ, warn_unknown=warn_unknown)


@dataclass(frozen=True, slots=True)
class _Setting:
    """One environment variable and the dataclass field it sets."""

    variable: str
    owner: type
    attr: str
    kind: Kind

    @property
    def path(self) -> tuple[str, ...]:
        """Where the field lives inside a ``ClientConfig``."""
        nested = {
            TimeoutConfig: ("timeout",),
            RetryPolicy: ("retry",),
            BreakerPolicy: ("breaker",),
        }.get(self.owner, ())
        return (*nested, self.attr)

    def read(self, config: ClientConfig) -> object:
        value: object = config
        for name in self.path:
            value = getattr(value, name)
        return value


def _setting(name: str, owner: type, attr: str, kind: Kind) -> _Setting:
    return _Setting(ENV_PREFIX + name, owner, attr, kind)


_SECONDS_POSITIVE: Final = Seconds(positive=True)
_SECONDS: Final = Seconds(positive=False)
_SETTINGS: Final[tuple[_Setting, ...]] = (
    _setting("LIMIT", ClientConfig, "limit", WholeNumber(0, " (0 = unlimited)")),
    _setting("LIMIT_PER_HOST", ClientConfig, "limit_per_host", WholeNumber(0, " (0 = unlimited)")),
    _setting("KEEPALIVE_TIMEOUT", ClientConfig, "keepalive_timeout", _SECONDS),
    _setting("TTL_DNS_CACHE", ClientConfig, "ttl_dns_cache", _SECONDS),
    _setting("ENABLE_CLEANUP_CLOSED", ClientConfig, "enable_cleanup_closed", CleanupClosedKind()),
    _setting("CONCURRENCY", ClientConfig, "concurrency", ConcurrencyKind()),
    _setting("HEDGE_AFTER", ClientConfig, "hedge_after", HedgeAfterKind()),
    _setting("HEDGE_MAX", ClientConfig, "hedge_max", WholeNumber(1)),
    _setting("TIMEOUT_TOTAL", TimeoutConfig, "total", _SECONDS_POSITIVE),
    _setting("TIMEOUT_CONNECT", TimeoutConfig, "connect", _SECONDS_POSITIVE),
    _setting("TIMEOUT_READ", TimeoutConfig, "read", _SECONDS_POSITIVE),
    _setting("RETRY_MAX_ATTEMPTS", RetryPolicy, "max_attempts", WholeNumber(1)),
    _setting("RETRY_BACKOFF_INITIAL", RetryPolicy, "backoff_initial", _SECONDS),
    _setting("RETRY_BACKOFF_MAX", RetryPolicy, "backoff_max", _SECONDS),
    _setting("RETRY_STATUSES", RetryPolicy, "statuses", Statuses()),
    _setting("RETRY_AFTER_MAX", RetryPolicy, "retry_after_max", _SECONDS),
    _setting(
        "RETRY_BUDGET_RATIO",
        RetryPolicy,
        "budget_ratio",
        Seconds(positive=False, expected="a number >= 0 (retries per call)"),
    ),
    _setting(
        "RETRY_BUDGET_MIN_PER_SECOND",
        RetryPolicy,
        "budget_min_per_second",
        Seconds(positive=False, expected="a number >= 0 (retries per second)"),
    ),
    _setting("BREAKER", BreakerPolicy, "enabled", OnOff()),
    _setting("BREAKER_FAILURE_RATIO", BreakerPolicy, "failure_ratio", Ratio(above_zero=True)),
    _setting("BREAKER_MIN_CALLS", BreakerPolicy, "min_calls", WholeNumber(1)),
    _setting("BREAKER_WINDOW", BreakerPolicy, "window", _SECONDS_POSITIVE),
    _setting("BREAKER_OPEN_FOR", BreakerPolicy, "open_for", _SECONDS_POSITIVE),
)
_BY_VARIABLE: Final = {s.variable: s for s in _SETTINGS}
KNOWN_VARIABLES: Final = frozenset(_BY_VARIABLE) | {TELEMETRY_FILE_VARIABLE}


def _check_fields(instance: object) -> None:
    """Validate and normalise every field of ``instance`` that a setting describes."""
    owner = type(instance)
    for setting in _SETTINGS:
        if setting.owner is not owner:
            continue
        value = getattr(instance, setting.attr)
        try:
            normalised = setting.kind.check(value)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{owner.__name__}({setting.attr}={value!r}): expected {setting.kind.expected}"
            ) from None
        if normalised is not value:
            object.__setattr__(instance, setting.attr, normalised)


def _resolve_limit_per_host(limit: int, limit_per_host: int | None, names: tuple[str, str]) -> int:
    """The per-host limit to use; ``None`` means "left at its default"."""
    if limit_per_host is None:
        if 0 < limit < _DEFAULT_LIMIT_PER_HOST:
            return limit
        return _DEFAULT_LIMIT_PER_HOST
    if limit and limit_per_host > limit:
        raise ConfigError(
            f"{names[1]}={limit_per_host} with {names[0]}={limit}: expected at most {names[0]} "
            f"(or 0 = unlimited): a per-host limit above the total can never be reached"
        )
    return limit_per_host


def _check_backoff_order(initial: float, maximum: float, names: tuple[str, str]) -> None:
    if initial > maximum:
        raise ConfigError(
            f"{names[0]}={initial:g} with {names[1]}={maximum:g}: expected {names[0]} <= {names[1]}"
        )


_C = TypeVar("_C", TimeoutConfig, RetryPolicy, BreakerPolicy, ClientConfig)


def _replace(instance: _C, changes: dict[str, Any]) -> _C:
    allowed = {f.name for f in dataclasses.fields(instance) if f.init}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ConfigError(
            f"{type(instance).__name__}.replace() got unknown setting {unknown[0]!r}: "
            f"expected one of {', '.join(sorted(allowed))}"
        )
    return dataclasses.replace(instance, **changes)


def _default(owner: type, attr: str) -> Any:
    # slots=True turns class attributes into slot descriptors: read defaults from the fields.
    return next(f.default for f in dataclasses.fields(owner) if f.name == attr)


def _warn_unknown_variables(environ: Mapping[str, str]) -> None:
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in KNOWN_VARIABLES:
            closest = difflib.get_close_matches(name, sorted(KNOWN_VARIABLES), n=1, cutoff=0)
            warnings.warn(
                f"unknown variable {name} is ignored; did you mean {closest[0]}?",
                ConfigWarning,
                stacklevel=4,
            )


def _parse_variable(setting: _Setting, text: str) -> object:
    if not text.strip():
        raise ConfigError(f"{setting.variable} is set but empty: expected {setting.kind.expected}")
    try:
        return setting.kind.check(setting.kind.parse(text))
    except (ValueError, KeyError):
        raise ConfigError(
            f"{setting.variable}={text!r}: expected {setting.kind.expected}"
        ) from None


def _read_environment(
    environ: Mapping[str, str], *, warn_unknown: bool = True
) -> tuple[ClientConfig, dict[str, str]]:
    """The config the variables describe, and where each setting came from."""
    if warn_unknown:
        _warn_unknown_variables(environ)
    values: dict[type, dict[str, object]] = {
        TimeoutConfig: {},
        RetryPolicy: {},
        BreakerPolicy: {},
        ClientConfig: {},
    }
    sources = {s.variable: "default" for s in _SETTINGS}
    for setting in _SETTINGS:
        text = environ.get(setting.variable)
        if text is not None:
            values[setting.owner][setting.attr] = _parse_variable(setting, text)
            sources[setting.variable] = "environment"

    top, retry = values[ClientConfig], values[RetryPolicy]
    limit_var, per_host_var = ENV_PREFIX + "LIMIT", ENV_PREFIX + "LIMIT_PER_HOST"
    limit = cast(int, top.get("limit", _default(ClientConfig, "limit")))
    given_per_host = cast("int | None", top.get("limit_per_host"))
    per_host = _resolve_limit_per_host(limit, given_per_host, (limit_var, per_host_var))
    if given_per_host is None and per_host != _DEFAULT_LIMIT_PER_HOST:
        sources[per_host_var] = f"default, lowered to {limit_var}"
    _check_backoff_order(
        cast(float, retry.get("backoff_initial", _default(RetryPolicy, "backoff_initial"))),
        cast(float, retry.get("backoff_max", _default(RetryPolicy, "backoff_max"))),
        (ENV_PREFIX + "RETRY_BACKOFF_INITIAL", ENV_PREFIX + "RETRY_BACKOFF_MAX"),
    )
    config = ClientConfig(
        **cast(dict[str, Any], top),
        timeout=TimeoutConfig(**cast(dict[str, Any], values[TimeoutConfig])),
        retry=RetryPolicy(**cast(dict[str, Any], retry)),
        breaker=BreakerPolicy(**cast(dict[str, Any], values[BreakerPolicy])),
    )
    return config, sources
