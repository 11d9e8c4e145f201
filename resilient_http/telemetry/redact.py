"""Redaction of URLs and of text that may contain them: the one place secrets are removed.

Spans, span events, recorded exceptions, log lines and exception notes all pass URLs (and
messages that embed URLs, as aiohttp's errors do) through ``redact_url`` / ``redact_text``.
Userinfo is dropped; the values of sensitive query keys become ``REDACTED``.

>>> redact_url("https://user:pw@api.example.com/v1?token=abc&page=2")
'https://api.example.com/v1?token=REDACTED&page=2'
"""

from __future__ import annotations

import re
from typing import Final

from yarl import URL

__all__ = ["REDACTED", "SENSITIVE_QUERY_KEYS", "redact_text", "redact_url"]

REDACTED: Final = "REDACTED"

#: Query keys whose values are secrets (compared case-insensitively), including the signed-URL
#: parameters of AWS S3 (SigV2 and SigV4), Google Cloud Storage and Azure SAS.
SENSITIVE_QUERY_KEYS: Final = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "key",
        "secret",
        "client_secret",
        "password",
        "signature",
        "sig",
        "code",
        "awsaccesskeyid",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
    }
)

# Anything that looks like an absolute URL inside free text (aiohttp error messages, reprs).
_URL_IN_TEXT: Final = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>)\]]+")
# A query pair whose key is sensitive, for URLs too malformed for yarl to parse.
_SENSITIVE_PAIR: Final = re.compile(
    r"(?i)([?&;](?:" + "|".join(map(re.escape, sorted(SENSITIVE_QUERY_KEYS))) + r")=)[^&#\s]*"
)
_USERINFO: Final = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#@]*@")


def redact_url(url: str | URL) -> str:
    """``url`` without userinfo and with the values of sensitive query keys replaced."""
    text = str(url)
    if "@" not in text and "=" not in text:
        return text  # nothing that could be a secret: the common case, kept cheap
    try:
        parsed = url if isinstance(url, URL) else URL(text)
    except (ValueError, TypeError):
        return _redact_unparsed(text)
    if parsed.user is not None or parsed.password is not None:
        parsed = parsed.with_user(None)
    if parsed.query_string and any(k.lower() in SENSITIVE_QUERY_KEYS for k in parsed.query):
        pairs = [
            (k, REDACTED if k.lower() in SENSITIVE_QUERY_KEYS else v)
            for k, v in parsed.query.items()
        ]
        parsed = parsed.with_query(pairs)
    return str(parsed)


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (for exception messages and log lines)."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)


def _redact_unparsed(text: str) -> str:
    return _SENSITIVE_PAIR.sub(rf"\g<1>{REDACTED}", _USERINFO.sub(r"\g<1>", text))
