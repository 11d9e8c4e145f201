"""Redaction: userinfo and sensitive query values never leave the process."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient_http.telemetry.redact import SENSITIVE_QUERY_KEYS, redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://svc/items", "http://svc/items"),
        ("http://svc/items?page=2", "http://svc/items?page=2"),
        ("https://u:pw@svc/x", "https://svc/x"),
        ("https://u@svc/x", "https://svc/x"),
        ("http://svc/x?token=t0k&page=2", "http://svc/x?token=REDACTED&page=2"),
        ("http://svc/x?API_KEY=k&Sig=s", "http://svc/x?API_KEY=REDACTED&Sig=REDACTED"),
        (
            "https://b.s3.amazonaws.com/o?X-Amz-Signature=abc&X-Amz-Credential=AK%2F1&x=1",
            "https://b.s3.amazonaws.com/o?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&x=1",
        ),
        ("http://svc/cb?code=xyz&state=1", "http://svc/cb?code=REDACTED&state=1"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_finds_urls_in_messages() -> None:
    message = "Cannot connect to host https://me:pw@svc:443/a?password=hunter2 ssl:default"
    assert redact_text(message) == (
        "Cannot connect to host https://svc/a?password=REDACTED ssl:default"
    )
    assert redact_text("no url here") == "no url here"


def test_unparseable_url_is_still_redacted() -> None:
    assert redact_url("http://u:p@[bad/x?secret=1&a=2") == "http://[bad/x?secret=REDACTED&a=2"


@given(
    key=st.sampled_from(sorted(SENSITIVE_QUERY_KEYS)),
    secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=20),
    user=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=6, max_size=12),
)
def test_planted_secrets_never_survive(key: str, secret: str, user: str) -> None:
    url = f"https://{user}:pw@svc.example/p?{key.upper()}={secret}&q=1"
    redacted = redact_url(url)
    assert secret not in redacted
    assert user not in redacted
    assert secret not in redact_text(f"error at {url}: refused")
