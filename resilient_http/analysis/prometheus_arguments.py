"""The arguments of ``analyze --prometheus``, checked before anything is asked: the URL, the
range (``--since``), the selector and the headers. Each bad one raises
``PrometheusArgumentError`` naming its flag (the command's exit status 2); ``promql.py`` and
``prometheus.py`` use the values.
"""

from __future__ import annotations

import re
from typing import Final

from yarl import URL

from resilient_http.telemetry.redact import redact_text, redact_url

__all__ = [
    "QUERY_TIMEOUT_S",
    "PrometheusArgumentError",
    "parse_duration",
    "parse_header",
    "prometheus_url",
    "selector_matchers",
]

#: ``--prometheus-timeout``'s default: how long an answer may keep the analysis waiting
#: (seconds without a byte of it). Above the 2 minutes at which Prometheus
#: (``--query.timeout``), Thanos and Mimir stop a query themselves, so that a slow query ends
#: with their error, which says so, and only a server that hangs ends with this one.
QUERY_TIMEOUT_S: Final = 150.0
# A duration's units in milliseconds, in the order Prometheus requires them.
_UNIT_MS: Final = {
    "y": 31_536_000_000, "w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000,
    "s": 1000, "ms": 1,
}  # fmt: skip
# Prometheus's duration grammar: each unit at most once, from the largest to the smallest
# (it refuses "1d1d" and "30s1m"), in ASCII digits.
_DURATION: Final = re.compile("".join(f"(?:([0-9]+){unit})?" for unit in _UNIT_MS))
# Prometheus refuses a duration longer than Go's time.Duration holds (int64 nanoseconds).
_MAX_DURATION_MS: Final = (2**63 - 1) // 1_000_000
# An HTTP header name is a token (RFC 9110, 5.1); a value holds no control characters but tab.
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE: Final = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")


class PrometheusArgumentError(ValueError):
    """A bad ``--prometheus``, ``--since``, ``--selector`` or ``--prometheus-header`` value
    (the command's exit status 2, and the only error that gets it); the message names the
    flag."""


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration for ``--since`` (``30s``, ``15m``, ``1h30m``), as
    Prometheus reads one; ``PrometheusArgumentError`` naming the flag otherwise."""
    found = _DURATION.fullmatch(text)
    if not text or found is None:
        raise PrometheusArgumentError(
            f"--since {text!r}: not a Prometheus duration (e.g. 30s, 15m, 1h30m: each unit "
            "once, the largest first)"
        )
    counts = [
        (n.lstrip("0"), unit)
        for n, unit in zip(found.groups(), _UNIT_MS.values(), strict=True)
        if n
    ]
    # Summed in whole milliseconds as Python integers, so that a 300-digit count is refused
    # here, not overflowing a float; a count of 20 digits is out of range before int() sees
    # it (which refuses one past 4300 digits with a message of its own).
    too_long = any(len(n) >= 20 for n, _ in counts)
    ms = 0 if too_long else sum(int(n or "0") * unit for n, unit in counts)
    if too_long or ms > _MAX_DURATION_MS:
        raise PrometheusArgumentError(
            f"--since {text!r}: longer than Prometheus allows (at most 292y)"
        )
    if ms <= 0:
        raise PrometheusArgumentError(f"--since {text!r}: the duration must be positive")
    return ms / 1000


def prometheus_url(text: str) -> str:
    """The base URL given as ``--prometheus``: an absolute http or https URL, without a
    trailing ``/``; ``PrometheusArgumentError`` naming it otherwise. Credentials in it are sent
    (aiohttp makes them basic authentication) but never printed: every message shows
    ``redact_url``'s form."""
    shown = redact_url(text)
    try:
        url = URL(text)
    except ValueError as exc:
        reason = redact_text(str(exc))
        raise PrometheusArgumentError(f"--prometheus {shown!r}: not a URL ({reason})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise PrometheusArgumentError(
            f"--prometheus {shown!r}: expected an http:// or https:// URL"
        )
    return text.rstrip("/")


def parse_header(text: str) -> tuple[str, str]:
    """``Name: value`` -> (name, value) for ``--prometheus-header``; ``PrometheusArgumentError``
    otherwise, naming the header but never repeating its value (it may be a credential)."""
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon:
        shown = text.split()[0] if text.split() else text
        raise PrometheusArgumentError(f"--prometheus-header {shown!r}...: expected 'Name: value'")
    if not _HEADER_NAME.fullmatch(name):
        raise PrometheusArgumentError(
            f"--prometheus-header {name!r}: not an HTTP header name (expected 'Name: value')"
        )
    if not _HEADER_VALUE.fullmatch(value):
        raise PrometheusArgumentError(
            f"--prometheus-header {name!r}: the value holds a control character"
        )
    return name, value


def selector_matchers(selector: str) -> str:
    """The matchers inside ``{...}`` (a bare metric name is refused: the queries name their
    own metrics)."""
    text = selector.strip()
    if not text:
        return ""
    if not (text.startswith("{") and text.endswith("}")):
        raise PrometheusArgumentError(
            f"--selector {selector!r}: expected label matchers in braces, e.g. "
            """'{job=~"checkout|search"}'"""
        )
    return text[1:-1].strip().rstrip(",")
