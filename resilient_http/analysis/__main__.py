"""``python -m resilient_http.analysis PATH...``: the analyze command without the full CLI."""

from resilient_http.analysis.command import main

raise SystemExit(main())
