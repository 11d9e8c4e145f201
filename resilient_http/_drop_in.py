"""``aiohttp.ClientSession``'s own attributes on ``ResilientSession``, with aiohttp's meaning.

Each is read from the ``aiohttp.ClientSession`` the ``ResilientSession`` wraps (``session``), so
it means exactly what aiohttp says it means, on every aiohttp version the SDK supports; its
docstring is aiohttp's. ``tests/test_drop_in.py`` fails when aiohttp grows a public attribute
that ``ResilientSession`` does not offer.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final, Generic, Protocol, TypeVar, overload

import aiohttp

from ._exceptions import ConfigError

__all__ = [
    "SessionAttribute",
    "building_wrapped_session",
    "is_wrapped_session",
    "timeout_not_given",
    "with_deprecated_timeouts",
]

T = TypeVar("T")


def _timeout_default() -> object:
    """What ``aiohttp.ClientSession(timeout=...)`` takes as "not given": its parameter's default
    (aiohttp's private ``aiohttp.helpers.sentinel`` today). aiohttp's own ``aiohttp.request()``
    passes it on explicitly (``timeout=kwargs.pop("timeout", sentinel)``), and so may any code
    that forwards its caller's arguments. Read from the public signature rather than imported by
    its private name, so a renamed sentinel is still recognised; tests/test_drop_in.py pins that
    the two are the same object."""
    parameter = inspect.signature(aiohttp.ClientSession.__init__).parameters.get("timeout")
    return None if parameter is None else parameter.default


_TIMEOUT_DEFAULT: Final = _timeout_default()


# True while a ResilientSession builds the aiohttp.ClientSession it wraps, so that the zero-code
# instrumentation (instrumentation.py), which extends every aiohttp.ClientSession built, leaves
# that one alone: it already runs the SDK's pipeline.
_building_wrapped: ContextVar[bool] = ContextVar("building_wrapped_session", default=False)


@contextmanager
def building_wrapped_session() -> Iterator[None]:
    """Mark the ``aiohttp.ClientSession`` built inside the block as a ``ResilientSession``'s."""
    token = _building_wrapped.set(True)
    try:
        yield
    finally:
        _building_wrapped.reset(token)


def is_wrapped_session() -> bool:
    """Whether the ``aiohttp.ClientSession`` being built now is a ``ResilientSession``'s."""
    return _building_wrapped.get()


def timeout_not_given(timeout: object) -> bool:
    """Whether a ``timeout=`` argument means "not given" to aiohttp: None or the parameter's
    default (per session and per call, aiohttp uses the same sentinel for both)."""
    return timeout is None or timeout is _TIMEOUT_DEFAULT


_DEPRECATED: Final = "{} is deprecated, use timeout argument instead"  # aiohttp's own words


def with_deprecated_timeouts(
    timeout: aiohttp.ClientTimeout, given: bool, kwargs: dict[str, Any]
) -> aiohttp.ClientTimeout:
    """aiohttp's deprecated ``read_timeout=`` (the total) and ``conn_timeout=`` (connect) session
    arguments, taken out of ``kwargs`` and applied to ``timeout`` as aiohttp applies them: with a
    DeprecationWarning, and a conflict (ValueError) when ``timeout=`` was ``given`` too."""
    read_timeout = kwargs.pop("read_timeout", _TIMEOUT_DEFAULT)
    conn_timeout = kwargs.pop("conn_timeout", None)
    if read_timeout is _TIMEOUT_DEFAULT and conn_timeout is None:
        return timeout
    if given:
        raise ConfigError(
            "read_timeout= and conn_timeout= conflict with timeout=: set timeout.total and "
            "timeout.connect instead"
        )
    total, connect = timeout.total, timeout.connect
    if read_timeout is not _TIMEOUT_DEFAULT:
        warnings.warn(_DEPRECATED.format("read_timeout"), DeprecationWarning, stacklevel=3)
        total = read_timeout
    if conn_timeout is not None:
        warnings.warn(_DEPRECATED.format("conn_timeout"), DeprecationWarning, stacklevel=3)
        connect = conn_timeout
    return aiohttp.ClientTimeout(
        total=total,
        connect=connect,
        sock_read=timeout.sock_read,
        sock_connect=timeout.sock_connect,
        ceil_threshold=timeout.ceil_threshold,
    )


class _Wrapper(Protocol):
    @property
    def session(self) -> aiohttp.ClientSession:
        """The ``aiohttp.ClientSession`` wrapped."""
        ...


class SessionAttribute(Generic[T]):
    """A read-only attribute that is the wrapped ``aiohttp.ClientSession``'s of the same name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name
        self.__doc__ = getattr(aiohttp.ClientSession, name).__doc__ or f"aiohttp's ``{name}``."

    @overload
    def __get__(self, wrapper: None, owner: type) -> SessionAttribute[T]: ...

    @overload
    def __get__(self, wrapper: _Wrapper, owner: type) -> T: ...

    def __get__(self, wrapper: _Wrapper | None, owner: type) -> Any:
        if wrapper is None:
            return self
        return getattr(wrapper.session, self._name)
