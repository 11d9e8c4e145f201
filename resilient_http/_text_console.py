"""The rich console every subcommand prints its text on (rich comes with the ``cli`` extra).

rich's own ``Console`` ends the process, exit status 1, when the reader of stdout has gone
(``resilient-http analyze x.jsonl | head -1``). This one raises ``BrokenPipeError`` instead, so
that ``cli.run_subcommand`` treats it as it treats a plain ``print``'s: exit 0, nothing more.
"""

from __future__ import annotations

import errno
import os

from rich.console import Console

__all__ = ["TextConsole"]


class TextConsole(Console):
    """A rich ``Console`` on which a broken pipe is a ``BrokenPipeError`` (see the module)."""

    def on_broken_pipe(self) -> None:
        """Write nothing more, and let the error reach ``cli.run_subcommand``."""
        # Quiet first: a progress bar or live display stopped on the way out would write again.
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
