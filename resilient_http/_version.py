"""The package's version, read from the installed distribution's metadata.

``pyproject.toml`` is the one place the version is written; a copy here would drift from it.
"""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["DISTRIBUTION", "__version__"]

DISTRIBUTION = "resilient-http-sdk"
"""The name ``pip install`` knows (the import package is ``resilient_http``)."""

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # imported from a source tree that was never installed
    # PEP 440's local-version form: sorts below every release, says plainly it is unknown.
    __version__ = "0+unknown"
