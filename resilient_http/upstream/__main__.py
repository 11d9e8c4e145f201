"""`python -m resilient_http.upstream`: see `resilient_http.upstream._cli`."""

from resilient_http.upstream._cli import main

raise SystemExit(main())
