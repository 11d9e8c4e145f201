"""Tuning analysis of OTLP JSON telemetry: streaming reader, statistics, rules, report.

``resilient-http analyze PATH...`` (``command.py``; also ``python -m resilient_http.analysis``)
reads the SDK's telemetry file or the Collector's file exporter output and turns it into
per-upstream figures and ``RESILIENT_HTTP_*`` advice. Modules, in the order data flows:

- ``reader``: files and folders (gzip, rotated files), one JSON line at a time, corrupt lines
  counted;
- ``spans`` / ``metrics``: fold spans and metric streams into bounded per-upstream state
  (DDSketch latency sketches, cumulative/delta metric streams);
- ``grouping`` / ``model``: join both into ``UpstreamReport`` rows (metrics for counts, spans
  for detail; pool wait over all acquisitions);
- ``rules`` (with ``advice``, ``limit_rules``, ``limit_ceiling``, ``overprovision_rule`` and
  ``settings``): the table of tuning rules;
- ``report``: the ``--json`` document and the text/HTML report;
- ``analyze``: the one-pass driver (several processes for large inputs);
- ``synthetic``: synthetic trace files for benchmarks and tests.

Nothing is imported here, so that ``python -m resilient_http.analysis`` starts quickly.
"""
