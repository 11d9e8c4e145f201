"""``python -m resilient_http``: the same command line as ``resilient-http``."""

from .cli import main

raise SystemExit(main())
