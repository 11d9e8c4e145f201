"""The one warning for a dependency's private name that changed (aiohttp's have ``pool.py``'s own).

Where the SDK uses a private name of a dependency, it checks the name's shape first and, where it
is missing or changed, keeps working without what the name bought. ``warn_changed_internal`` says
so once per process and internal: a ``RuntimeWarning`` naming the dependency's version, the
internal and what is lost.
"""

from __future__ import annotations

import warnings
from importlib import metadata

__all__ = ["warn_changed_internal"]

# Internals already warned about in this process; tests reset it.
_warned: set[str] = set()


def warn_changed_internal(distribution: str, internal: str, consequence: str) -> None:
    """Warn once that ``internal`` of ``distribution`` is missing or changed: ``consequence``."""
    if internal in _warned:
        return
    _warned.add(internal)
    try:
        version = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        version = "(version unknown)"
    warnings.warn(
        f"{distribution} {version}: {internal} is missing or changed; {consequence}",
        RuntimeWarning,
        stacklevel=3,
    )
