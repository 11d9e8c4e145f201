"""Shared fixtures: a clean environment, and real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.otlp_receiver import OTLPReceiver
from tests.servers import RecordingServer


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no RESILIENT_HTTP_* or OTEL_* variables from the machine they run on."""
    for name in list(os.environ):
        if name.startswith(("RESILIENT_HTTP_", "OTEL_")):
            monkeypatch.delenv(name)


@pytest.fixture
async def receiver() -> AsyncIterator[OTLPReceiver]:
    """A real OTLP/HTTP receiver on 127.0.0.1 (point OTEL_EXPORTER_OTLP_ENDPOINT at its url)."""
    server = OTLPReceiver()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def recording_server() -> AsyncIterator[RecordingServer]:
    """An aiohttp server that records connections and can hold requests at a gate."""
    server = RecordingServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()
