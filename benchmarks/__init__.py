"""Benchmarks (issue 8): what resilience and telemetry cost per request, against raw aiohttp
and its peers, and how fast ``resilient-http analyze`` reads.

Run ``make bench`` (``python -m benchmarks``; ``--help`` for the flags, ``--full`` to scale up,
``--json`` for machines). Modules, in the order the work flows:

- ``server``: the upstream, ``python -m resilient_http.upstream --no-echo [fault flags]`` in a
  separate process; its CPU (``/proc/PID/stat``) and counters (``/__stats__``, ``/__reset__``);
  ``multi_upstream``: N such upstreams on N ports of one process (the 50-host scaling rows);
- ``variants``: the registry of clients (name -> async factory yielding ``fetch(url)``), with
  the connector settings they share;
- ``load``: the driver (N GETs at concurrency C, C worker tasks); ``measure``: one run with the
  server's side; ``runner``: interleaved rounds and per-round ratios; ``worker``: one run in a
  fresh process (``--isolation subprocess``);
- ``scaling``: the scaling table, ``sdk_plain`` against ``aiohttp_same_timeouts`` at other
  concurrencies, host counts, body sizes and under stale connections;
- ``analyze_bench``: spans/s and peak RSS of the analysis on synthetic files, one child each;
- ``report``: machine, goals, tables; ``cli``: flags and order; ``profiling``: cProfile of a
  variant, for the "where does the time go" step of a missed goal.

Method. Per scenario one upstream process; each variant gets one warm-up (1000 GETs), then
``--rounds`` rounds (5) of N=6000 GETs at C=64 each, every variant once per round in an order
rotated by one per round. A variant's throughput ratio to ``aiohttp_tuned`` is computed per
round and the median reported (the goals judge it), next to the same ratio by client CPU per
request, which a noisy neighbour disturbs less. Five short rounds rather than three long ones
(same requests, same time): on these two shared cores a neighbour's burst spoils whole rounds,
and a median of five survives two spoiled rounds where a median of three survives one. The
table warns when the baseline's own throughput moved by more than 15 % between rounds. Each run
builds its client, collects garbage, times only the sending, then closes the client (telemetry
providers are shut down, so no export thread outlives its run). The server's CPU share per run
shows whether the client is the bottleneck (it is when the server stays well below one core
while the client is at ~100 %).

Goals (``benchmarks.report``), each the median over rounds of a per-round throughput ratio
between two variants of the same run: ``sdk_plain`` >= 0.95x ``aiohttp_same_timeouts`` and >=
1.00x ``aiohttp_retry``, ``sdk_metrics_10pct`` >= 1.25x ``otel_contrib`` (contrib
instrumentation, metrics on, 10 % of traces), ``sdk_traces_100pct`` >= 0.45x ``aiohttp_tuned``
(healthy), ``sdk_plain`` >= 0.85x ``aiohttp_tuned`` under stale connections, and in the scaling
table ``sdk_plain`` >= 0.90x ``aiohttp_same_timeouts`` on every row. Besides: every SDK variant
completes every call under faults where plain aiohttp fails some, and the analysis goals
(spans/s, memory).

Isolation: all variants run in this one process, by measurement. Five rounds of six variants
both ways (N=10000, C=64) gave these spreads (max - min of the per-round ratios), in-process vs
a fresh process per run: sdk_plain 0.02 vs 0.21, aiohttp_retry 0.17 vs 0.26, tenacity_wrapper
0.11 vs 0.13, otel_contrib 0.07 vs 0.10, aiohttp_same_timeouts 0.05 vs 0.05. In fresh
processes the baseline's CPU per request was bimodal (75 or 85-91 us, from one process to the
next: memory layout and hash seeds), which moves every ratio of its round; in one process it
was 73-75 us after the first round. Fresh processes also cost ~15 s more per default run.
``--isolation subprocess`` keeps the other mode available.

Fault scenarios (same variants, one upstream each, 3 rounds of 1000 GETs): ``stale`` (the server
closes keep-alive connections after 1-3 requests, unannounced) and ``throttle`` (5 % of calls
meet a 503 without Retry-After, at random, then succeed: the upstream's ``repeat=false`` lets a
throttled request's retry through, and every call GETs its own target, ``/?run=R&call=N``, so
the retry is recognised). A client that retries 503 once therefore has no legitimate failure,
and one that does not retry fails on about 5 % of calls. Reported: success rate (200s per
logical call), throughput and its ratio, attempts per call (server-side requests / client
calls), connections opened.

``aiohttp_same_timeouts`` is the baseline with the SDK's default per-attempt timeouts
(``ClientTimeout(total=30, connect=5, sock_read=10)``): the like-for-like reference of the
``sdk_plain`` goal and of the scaling table. Diagnostic extras, shown in the tables and judging
nothing: ``sdk_plain_aiohttp_timeouts`` (the SDK with aiohttp's default timeouts) prices the
timeouts from the other side; ``otel_floor_10pct`` and ``otel_floor_100pct`` are plain aiohttp
making only the OpenTelemetry SDK calls the telemetry contract needs (an INTERNAL span, a
CLIENT span when sampled, the ``traceparent`` header, the two duration histograms with the
SDK's attributes), with everything cacheable cached: the price of the contract on this
OpenTelemetry SDK (its CPU per request minus ``aiohttp_tuned``'s), which no implementation of
it can avoid. The floor runs on aiohttp's own timers; a client that avoids those (as the SDK
does) may sit slightly above it. The telemetry goals are printed next to their floor.

A variant that cannot run (an extra not installed, an SDK feature not landed) is reported as
unavailable with its reason; no number is ever made up for it.
"""
