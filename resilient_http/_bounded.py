"""Per-upstream tables that stay bounded by the upstreams in use.

The retry budget and the strategies (``PerUpstream``) keep a state per upstream ``host:port``.
A service that calls ever new hosts (webhook delivery, a crawler) would keep one for each
forever: once a table holds ``PRUNE_FROM`` upstreams, a new one first lets go of the states that
are as good as new (``pruned``), so memory follows the upstreams in use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

__all__ = ["PRUNE_FROM", "pruned"]

#: Upstreams a table keeps before it lets go of those as good as new.
PRUNE_FROM: Final = 1024

_K = TypeVar("_K")
_V = TypeVar("_V")


def pruned(table: dict[_K, _V], forgettable: Callable[[_V], bool]) -> tuple[dict[_K, _V], int]:
    """``table`` without its ``forgettable`` states, as a new dict (telemetry's thread may be
    copying the old one), and the size at which to prune it next: twice what it keeps, at least
    ``PRUNE_FROM``, so that pruning costs O(1) per upstream added."""
    kept = {key: state for key, state in table.items() if not forgettable(state)}
    return kept, max(PRUNE_FROM, 2 * len(kept))
