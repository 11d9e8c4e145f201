"""Fault plans: frozen descriptions of what the upstream does wrong, and their text forms.

Every fault is data here; `_faults.FaultEngine` turns a plan plus a seed into decisions, and the
connection protocol carries them out. The text forms (`parse` / `str`) are the subprocess CLI's
flag values, so a plan crosses a process boundary as `plan_to_args(plan)` and back unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from typing import Any, Literal, Self, cast, get_args

from ._outage import Outage

__all__ = [
    "FaultPlan",
    "Latency",
    "RateLimit",
    "RetryAfter",
    "RetryAfterForm",
    "Script",
    "ScriptStep",
    "SlowBody",
    "StaleMode",
    "Throttle",
]

RetryAfterForm = Literal["seconds", "http-date", "garbage", "negative", "absurd", "none"]
"""How a throttled response spells `Retry-After`: delta-seconds, an HTTP-date, junk, or nothing."""

StaleMode = Literal["close", "reset"]
"""How a stale keep-alive connection dies: `close` sends FIN, `reset` aborts with an RST."""

ScriptStep = int | Literal["close", "reset", "reset-mid-body", "hang"]
"""One scripted answer: a status code (200 means the normal echo) or a connection fault."""

_FAULT_STEPS = frozenset({"close", "reset", "reset-mid-body", "hang"})
_LATENCY_KINDS = ("fixed", "uniform", "lognormal", "tail")


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within [0, 1], got {value!r}")


def _check_status(name: str, value: int) -> None:
    if not 100 <= value <= 599:
        raise ValueError(f"{name} must be an HTTP status 100-599, got {value!r}")


def _parse_bool(name: str, text: str) -> bool:
    """`true` or `false` (any case): the CLI's spelling of a flag inside a fault's options."""
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"{name} must be true or false, got {text!r}")
    return value == "true"


def _options(text: str) -> dict[str, str]:
    """Parse `key=value,key=value` (the CLI's form for nested fault settings)."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {item!r}")
        pairs[key.strip().replace("-", "_")] = value.strip()
    return pairs


@dataclass(frozen=True, slots=True)
class Latency:
    """A distribution of per-response delays in seconds.

    >>> import random
    >>> Latency.parse("uniform:0.01:0.02").sample(random.Random(1)) < 0.02
    True
    """

    kind: Literal["fixed", "uniform", "lognormal", "tail"]
    a: float
    """fixed: the delay; uniform: the low bound; lognormal: the median; tail: the usual delay."""
    b: float = 0.0
    """uniform: the high bound; lognormal: sigma of the underlying normal; tail: the slow one."""
    p: float = 0.0
    """tail: the share of responses that take ``b`` instead of ``a``."""

    def __post_init__(self) -> None:
        if self.kind not in _LATENCY_KINDS:
            raise ValueError(f"latency kind must be one of {_LATENCY_KINDS}, got {self.kind!r}")
        if self.a < 0 or self.b < 0 or not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValueError(f"latency parameters must be finite and >= 0: {self}")
        if self.kind == "uniform" and self.b < self.a:
            raise ValueError(f"uniform latency needs low <= high: {self}")
        _check_probability("tail latency share", self.p)

    @classmethod
    def fixed(cls, seconds: float) -> Latency:
        """Every response waits `seconds`."""
        return cls("fixed", seconds)

    @classmethod
    def uniform(cls, low: float, high: float) -> Latency:
        """Delays drawn uniformly from [low, high]."""
        return cls("uniform", low, high)

    @classmethod
    def lognormal(cls, median: float, sigma: float) -> Latency:
        """Heavy-tailed delays: `median * exp(N(0, sigma))`, like real service latencies."""
        return cls("lognormal", median, sigma)

    @classmethod
    def tail(cls, usual: float, slow: float, share: float) -> Latency:
        """A long tail: `share` of the responses take `slow` seconds, the rest `usual`."""
        return cls("tail", usual, slow, share)

    def sample(self, rng: random.Random) -> float:
        """Draw one delay from `rng`."""
        if self.kind == "fixed":
            return self.a
        if self.kind == "tail":
            return self.b if rng.random() < self.p else self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        if self.a == 0:
            return 0.0
        return rng.lognormvariate(math.log(self.a), self.b)

    @classmethod
    def parse(cls, text: str) -> Latency:
        """`fixed:0.01`, `uniform:0.001:0.01`, `lognormal:MEDIAN:SIGMA`, `tail:USUAL:SLOW:SHARE`."""
        kind, *numbers = text.split(":")
        wanted = {"fixed": 1, "tail": 3}.get(kind, 2)
        if kind not in _LATENCY_KINDS or len(numbers) != wanted:
            raise ValueError(
                "latency must be fixed:S, uniform:LO:HI, lognormal:MEDIAN:SIGMA or "
                f"tail:USUAL:SLOW:SHARE: {text!r}"
            )
        values = [float(number) for number in numbers]
        return cls(cast(Any, kind), *values)

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.a!r}"
        if self.kind == "tail":
            return f"tail:{self.a!r}:{self.b!r}:{self.p!r}"
        return f"{self.kind}:{self.a!r}:{self.b!r}"


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """The `Retry-After` of a throttled answer (forms without a number ignore `seconds`)."""

    form: RetryAfterForm = "seconds"
    seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.form not in get_args(RetryAfterForm):
            raise ValueError(f"retry-after form must be one of {get_args(RetryAfterForm)}")
        if not (math.isfinite(self.seconds) and self.seconds >= 0):
            raise ValueError(f"retry-after seconds must be finite and >= 0, got {self.seconds!r}")

    @classmethod
    def parse(cls, text: str) -> RetryAfter:
        """`FORM[:SECONDS]`, e.g. `seconds:2`, `http-date:5`, `garbage`."""
        form, _, seconds = text.partition(":")
        return cls(cast(Any, form), float(seconds) if seconds else 1.0)

    def __str__(self) -> str:
        return f"{self.form}:{self.seconds!r}"


@dataclass(frozen=True, slots=True)
class Throttle:
    """Answer some requests with `status` (429/503): the first k, every n-th, or at random.

    Request numbers count ordinary requests since the plan was installed, from 1.

    With `repeat=False` a throttled request's retry goes through: the throttle never answers
    the same request twice in a row. "The same request" is the same method, target (path and
    query) and client (the client-id header, else the peer address); the next such request
    that reaches the throttle passes it (earlier faults still apply to it). The draws are made
    exactly as with `repeat=True`, so the seed picks the same requests; only the passes differ.
    Concurrent calls that share method, target and client share one pass: give each logical
    call its own target (`/?call=N`) or client id when "once per call" must hold exactly.
    """

    status: int = 503
    probability: float = 0.0
    first: int = 0
    every: int = 0
    retry_after: RetryAfter = field(default_factory=RetryAfter)
    repeat: bool = True
    """False: a request just throttled is let through the next time it comes (its retry)."""

    def __post_init__(self) -> None:
        _check_status("throttle status", self.status)
        _check_probability("throttle probability", self.probability)
        if self.first < 0 or self.every < 0:
            raise ValueError("throttle first/every must be >= 0")

    @classmethod
    def parse(cls, text: str) -> Throttle:
        """`status=503,probability=0.1,first=2,every=10,retry_after=http-date:3,repeat=false`."""
        opts = _options(text)
        retry_after = RetryAfter.parse(opts.pop("retry_after")) if "retry_after" in opts else None
        throttle = cls(
            status=int(opts.pop("status", "503")),
            probability=float(opts.pop("probability", "0")),
            first=int(opts.pop("first", "0")),
            every=int(opts.pop("every", "0")),
            retry_after=retry_after or RetryAfter(),
            repeat=_parse_bool("throttle repeat", opts.pop("repeat", "true")),
        )
        if opts:
            raise ValueError(f"unknown throttle options: {sorted(opts)}")
        return throttle

    def __str__(self) -> str:
        return (
            f"status={self.status},probability={self.probability!r},first={self.first},"
            f"every={self.every},retry_after={self.retry_after},"
            f"repeat={str(self.repeat).lower()}"
        )


@dataclass(frozen=True, slots=True)
class Script:
    """Scripted answers, e.g. `Script((503, 503))`: 503, 503, then normal 200s.

    `path` limits the script to one path (None: any). With `per_client`, every client (the
    client-id header, else the peer address) gets its own copy of the steps.
    """

    steps: tuple[ScriptStep, ...]
    path: str | None = None
    per_client: bool = False
    retry_after: RetryAfter = field(default_factory=lambda: RetryAfter("seconds", 0.0))

    def __post_init__(self) -> None:
        for step in self.steps:
            if isinstance(step, int):
                _check_status("script status", step)
            elif step not in _FAULT_STEPS:
                raise ValueError(f"script step must be a status or one of {sorted(_FAULT_STEPS)}")

    @classmethod
    def parse(cls, text: str) -> Script:
        """`[PATH=]STEP,STEP...[;per-client][;retry-after=FORM:S]`, e.g. `/a=503,reset,200`."""
        head, *flags = text.split(";")
        path, sep, steps_text = head.rpartition("=")
        steps = tuple(
            int(step) if step.isdigit() else cast(ScriptStep, step)
            for step in (part.strip() for part in steps_text.split(","))
            if step
        )
        per_client, retry_after = False, RetryAfter("seconds", 0.0)
        for flag in (flag.strip() for flag in flags):
            if flag == "per-client":
                per_client = True
            elif flag.startswith("retry-after="):
                retry_after = RetryAfter.parse(flag.removeprefix("retry-after="))
            else:
                raise ValueError(f"unknown script option {flag!r}")
        return cls(steps, path if sep else None, per_client, retry_after)

    def __str__(self) -> str:
        steps = ",".join(str(step) for step in self.steps)
        head = f"{self.path}={steps}" if self.path is not None else steps
        flags = ";per-client" if self.per_client else ""
        return f"{head}{flags};retry-after={self.retry_after}"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket per client: `rate` tokens a second, up to `burst`; empty answers 429.

    The Retry-After value (for `seconds` and `http-date`) is the wait until the next token,
    rounded up to whole seconds.
    """

    rate: float
    burst: int = 1
    status: int = 429
    retry_after: RetryAfterForm = "seconds"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0) or self.burst < 1:
            raise ValueError(f"rate limit needs rate > 0 and burst >= 1: {self}")
        _check_status("rate limit status", self.status)
        RetryAfter(self.retry_after)  # validates the form

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """`rate=5,burst=2[,status=429][,retry_after=http-date]`."""
        opts = _options(text)
        limit = cls(
            rate=float(opts.pop("rate")),
            burst=int(opts.pop("burst", "1")),
            status=int(opts.pop("status", "429")),
            retry_after=cast(RetryAfterForm, opts.pop("retry_after", "seconds")),
        )
        if opts:
            raise ValueError(f"unknown rate limit options: {sorted(opts)}")
        return limit

    def __str__(self) -> str:
        return (
            f"rate={self.rate!r},burst={self.burst},status={self.status},"
            f"retry_after={self.retry_after}"
        )


@dataclass(frozen=True, slots=True)
class SlowBody:
    """Send the body in `chunks` pieces, waiting `delay` seconds before each one."""

    chunks: int = 4
    delay: float = 0.05
    probability: float = 1.0

    def __post_init__(self) -> None:
        if self.chunks < 1 or not (math.isfinite(self.delay) and self.delay >= 0):
            raise ValueError(f"slow body needs chunks >= 1 and delay >= 0: {self}")
        _check_probability("slow body probability", self.probability)

    @classmethod
    def parse(cls, text: str) -> SlowBody:
        """`chunks=4,delay=0.05[,probability=1]`."""
        opts = _options(text)
        slow = cls(
            chunks=int(opts.pop("chunks", "4")),
            delay=float(opts.pop("delay", "0.05")),
            probability=float(opts.pop("probability", "1")),
        )
        if opts:
            raise ValueError(f"unknown slow body options: {sorted(opts)}")
        return slow

    def __str__(self) -> str:
        return f"chunks={self.chunks},delay={self.delay!r},probability={self.probability!r}"


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Everything one upstream does wrong; the default plan is a healthy, fast upstream.

    Per request the faults are tried in this order, first match wins: an `outage` in progress,
    stale keep-alive close (request N+1 on a connection, or a reuse after `stale_idle`),
    capacity, hang, rate limit, scripts, throttle, reset before responding, reset mid-body;
    then latency and a slow body shape the response; `close_after` announces the close on its
    last answer. Each kind of draw has its own `random.Random` stream derived from `seed`, so
    adding latency does not move the resets.
    """

    seed: int = 0
    latency: Latency | None = None
    stale_after: int | tuple[int, int] | None = None
    """Serve N requests per connection (or N drawn from [lo, hi] per connection), then close the
    connection without answering when request N+1 arrives. Responses never say
    `Connection: close`: the client must believe the connection is reusable."""
    stale_mode: StaleMode = "close"
    idle_timeout: float | None = None
    """Close (FIN) a keep-alive connection after this many idle seconds."""
    stale_idle: float | None = None
    """An idle timeout that crosses a reuse (the production race): a request that arrives on a
    connection idle for at least this many seconds is closed unanswered (FIN, or RST with
    `stale_mode="reset"`), as if the upstream's idle close and the client's reuse crossed on
    the wire. (`idle_timeout` closes first, which a client on loopback notices before reuse.)"""
    close_after: int | None = None
    """A per-connection request cap that is announced: the N-th answer on a connection says
    `Connection: close` and the connection is closed after it (nginx's `keepalive_requests`).
    The unannounced cap is `stale_after`."""
    capacity: int | None = None
    """Capacity throttling: a request that arrives while more than this many requests are
    being answered (all connections) gets 503 at once, with `capacity_retry_after`."""
    capacity_retry_after: RetryAfter = field(default_factory=lambda: RetryAfter("seconds", 0.0))
    reset_probability: float = 0.0
    reset_mid_body_probability: float = 0.0
    hang_probability: float = 0.0
    """Read the request and never answer (the connection stays open until the client gives up)."""
    throttle: Throttle | None = None
    scripts: tuple[Script, ...] = ()
    rate_limit: RateLimit | None = None
    slow_body: SlowBody | None = None
    client_id_header: str = "X-Client-Id"
    """Request header naming the client for rate limits and per-client scripts (else the peer)."""
    echo: bool = True
    """Answer 200s with a JSON echo of the request; False sends one pre-built body (benchmarks)."""
    outage: Outage | None = None
    """Go down for a few seconds (refusing connections, or hanging), then recover."""

    def __post_init__(self) -> None:
        for name in ("reset_probability", "reset_mid_body_probability", "hang_probability"):
            _check_probability(name, getattr(self, name))
        low, high = (
            self.stale_after if isinstance(self.stale_after, tuple) else (self.stale_after,) * 2
        )
        if low is not None and (high is None or not 1 <= low <= high):
            raise ValueError(f"stale_after must be N >= 1 or (lo, hi) with 1 <= lo <= hi: {low}")
        if self.stale_mode not in get_args(StaleMode):
            raise ValueError(f"stale_mode must be one of {get_args(StaleMode)}")
        for name in ("idle_timeout", "stale_idle"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        for name in ("close_after", "capacity"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value!r}")
        if not self.client_id_header:
            raise ValueError("client_id_header must not be empty")

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)
