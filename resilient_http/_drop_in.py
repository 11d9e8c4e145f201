"""``aiohttp.ClientSession``'s own attributes on ``ResilientSession``, with aiohttp's meaning.

Each is read from the ``aiohttp.ClientSession`` the ``ResilientSession`` wraps (``session``), so
it means exactly what aiohttp says it means, on every aiohttp version the SDK supports; its
docstring is aiohttp's. ``tests/test_drop_in.py`` fails when aiohttp grows a public attribute
that ``ResilientSession`` does not offer.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar, overload

import aiohttp

__all__ = ["SessionAttribute"]

T = TypeVar("T")


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
