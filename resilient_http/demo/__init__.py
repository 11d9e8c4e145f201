"""``resilient-http demo``: the fault-injecting upstream, load through ``ResilientSession``, and
the tuning report computed from the telemetry that load wrote.

Modules: ``scenarios`` (what the upstream does wrong), ``load`` (one upstream process, one
client, N calls), ``telemetry`` (the file and the demo's OTEL_* defaults), ``checks`` (the
report against the upstream's counters), ``output`` (text and JSON), ``command`` (the CLI).
"""

from resilient_http.demo.command import add_arguments, run

__all__ = ["add_arguments", "run"]
