"""rh.testing: process-wide testing mode, restored by its handle."""

from __future__ import annotations

import pytest

import resilient_http as rh


def test_set_testing_and_restore() -> None:
    assert not rh.testing.is_testing()
    with rh.testing.set_testing(True, attempts=2):
        assert rh.testing.is_testing()
        assert rh.testing.testing_attempts() == 2
        with rh.testing.set_testing(False):
            assert not rh.testing.is_testing()
        assert rh.testing.testing_attempts() == 2
    assert not rh.testing.is_testing()
    assert rh.testing.testing_attempts() is None


@pytest.mark.parametrize("attempts", [0, -1, True])
def test_bad_attempts(attempts: int) -> None:
    with pytest.raises(rh.ConfigError, match="attempts="):
        rh.testing.set_testing(True, attempts=attempts)
    assert not rh.testing.is_testing()
