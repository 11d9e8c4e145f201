"""Names the analysis reads: the SDK's telemetry contract, defined once in ``telemetry.names``."""

from __future__ import annotations

from ..telemetry.names import *  # noqa: F403
from ..telemetry.names import __all__ as __all__
