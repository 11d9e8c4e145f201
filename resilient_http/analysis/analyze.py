"""One pass over the input: read lines, feed spans and metrics to their aggregators, build the
report rows and run the rules. The command line is ``command.py``; this is its library form.

Large inputs are read by several processes: plain files are cut into byte ranges (each line
belongs to the range it starts in), gzip files go whole to one process, and the partial results
merge exactly (DDSketch sketches merge, counts add, metric streams keep their latest point).
Streams (standard input, a pipe, a FIFO) are read whole by this process, which alone holds
them, while the others read the files. Results are merged in input order, so the report does
not depend on the number of processes.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from resilient_http.analysis.metrics import MetricStore
from resilient_http.analysis.model import build_pool_limits, build_reports, build_settings
from resilient_http.analysis.reader import (
    InputError,
    ReadCounts,
    find_input_files,
    is_gzip,
    is_stream,
    iter_json_lines,
)
from resilient_http.analysis.report import Analysis
from resilient_http.analysis.rules import evaluate_rules
from resilient_http.analysis.settings import Settings
from resilient_http.analysis.spans import SpanAggregator

__all__ = ["NoTelemetryError", "analysis_of", "analyze_paths"]

# Below this much input, starting processes costs more than it saves (8 MB is ~13k spans).
PARALLEL_MIN_BYTES = 8 << 20
# Processes at most: one per core, and a few are enough to saturate a disk.
MAX_JOBS = 4
RANGES_PER_JOB = 4
MIN_RANGE_BYTES = 4 << 20

# A line whose structure is wrong (a string where a list belongs, a number no float holds...)
# raises one of these while being folded in; it is counted as corrupt. Spans and metric points
# of that line read before the fault stay counted.
_MALFORMED = (AttributeError, KeyError, TypeError, ValueError, IndexError, OverflowError)

# (file, first byte, end byte or None for "to the end")
_Task = tuple[Path, int, int | None]


class NoTelemetryError(InputError):
    """Nothing usable was read: no resilient_http spans or metrics in the input."""


@dataclass
class _Part:
    """What one range of the input holds."""

    counts: ReadCounts = field(default_factory=ReadCounts)
    spans: SpanAggregator = field(default_factory=SpanAggregator)
    metrics: MetricStore = field(default_factory=MetricStore)


def analyze_paths(
    paths: Iterable[str | Path], settings: Settings | None = None, *, jobs: int | None = None
) -> Analysis:
    """Read ``paths`` (files or folders) and analyse them.

    ``settings`` replaces the settings the telemetry carries (tests). ``jobs`` is the number
    of reading processes (None: one per core for large inputs).
    Raises ``InputError`` for a missing or unreadable path and ``NoTelemetryError`` when no
    upstream could be found; both carry a one-line message.
    """
    path_list = list(paths)
    files = find_input_files(path_list)
    whole = _read(files, _job_count(files, jobs))
    whole.counts.files = len(files)
    counts = whole.counts
    analysis = analysis_of(whole.metrics, whole.spans, counts, settings)
    if analysis is None:
        where = ", ".join(str(p) for p in path_list)
        raise NoTelemetryError(
            f"no resilient_http spans or metrics found in {where} ({counts.files} file(s), "
            f"{counts.lines} line(s), {counts.corrupt_lines} corrupt)"
        )
    return analysis


def analysis_of(
    store: MetricStore, spans: SpanAggregator, counts: ReadCounts, settings: Settings | None
) -> Analysis | None:
    """The report rows and the advice from folded metrics and spans, wherever they were read
    (files here, Prometheus in ``prometheus.py``); None when no upstream is in them.
    ``settings`` None: those the telemetry carries (else the defaults)."""
    upstreams, hosts = build_reports(store, spans)
    if not upstreams:
        return None
    limits = build_pool_limits(store)
    settings = settings or build_settings(store)
    return Analysis(
        counts=counts,
        upstreams=upstreams,
        hosts=hosts,
        limits=limits,
        recommendations=evaluate_rules(hosts, limits, settings),
        settings=settings,
        spans=spans.spans,
        metric_points=store.points,
    )


def _job_count(files: list[Path], jobs: int | None) -> int:
    if jobs is not None:
        return max(1, jobs)
    size = sum(_size(f) for f in files)
    if size < PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(_cpus(), MAX_JOBS))


def _cpus() -> int:
    # The CPUs this process may run on (a container's limit), not the machine's.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def _read(files: list[Path], jobs: int) -> _Part:
    tasks = _tasks(files, jobs)
    if jobs <= 1 or len(tasks) <= 1:
        parts: Iterable[_Part] = map(_read_task, tasks)
    else:
        parts = _read_in_processes(tasks, jobs)
    whole = _Part()
    for part in parts:  # in task order: the later part's cumulative points win on equal times
        whole.counts.add(part.counts)
        whole.spans.merge(part.spans)
        whole.metrics.merge(part.metrics)
    return whole


def _tasks(files: list[Path], jobs: int) -> list[_Task]:
    if jobs <= 1:
        return [(f, 0, None) for f in files]
    plain = {f: _size(f) for f in files if not is_stream(f) and not is_gzip(f)}
    # A few ranges per process, so that one slow range does not leave the others idle.
    chunk = max(sum(plain.values()) // (jobs * RANGES_PER_JOB) + 1, MIN_RANGE_BYTES)
    tasks: list[_Task] = []
    for f in files:
        size = plain.get(f)
        if size is None:
            tasks.append((f, 0, None))
            continue
        starts = list(range(0, size, chunk)) or [0]
        tasks.extend((f, s, s + chunk if s + chunk < size else None) for s in starts)
    return tasks


def _read_in_processes(tasks: list[_Task], jobs: int) -> Iterator[_Part]:
    # fork starts in milliseconds and shares the imported modules; it is only safe while this
    # process runs a single thread (otherwise a lock held by another thread stays locked in the
    # child). Elsewhere (or with threads, e.g. inside the demo) spawn is used.
    methods = multiprocessing.get_all_start_methods()
    method = "fork" if "fork" in methods and threading.active_count() == 1 else "spawn"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        # A stream is read here, in its turn, while the pool reads the files: it cannot be
        # read twice, and another process may not even see it (/dev/stdin, /dev/fd/63 name
        # this process's descriptors).
        futures = [None if is_stream(task[0]) else pool.submit(_read_task, task) for task in tasks]
        for task, future in zip(tasks, futures, strict=True):
            yield _read_task(task) if future is None else future.result()


def _read_task(task: _Task) -> _Part:
    path, start, end = task
    part = _Part()
    counts, spans, store = part.counts, part.spans, part.metrics
    with _gc_paused():
        for request in iter_json_lines(path, counts, start, end):
            if type(request) is not dict:  # valid JSON, but not an OTLP request object
                counts.corrupt_lines += 1
            else:
                try:
                    if "resourceSpans" in request:
                        counts.trace_lines += 1
                        spans.add_request(request)
                    elif "resourceMetrics" in request:
                        counts.metric_lines += 1
                        store.add_request(request)
                    else:
                        counts.other_lines += 1
                except _MALFORMED:
                    counts.corrupt_lines += 1
            # Drop the line before the loop asks for the next one: the reader then decodes it
            # into the memory this one held (see iter_json_lines), not into fresh memory.
            del request
    spans.drop_caches()  # lookup caches: not needed by the merge, and not worth pickling
    return part


def _size(path: Path) -> int:
    if is_stream(path):  # its size is not known before it is read
        return 0
    try:
        return path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


@contextmanager
def _gc_paused() -> Iterator[None]:
    # Each line decodes into thousands of small dicts and lists that die by reference counting;
    # the cyclic collector only re-scans them (about a third of the parse time). Paused for the
    # read loop only, and restored even on error.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
