"""``analyze`` throughput: spans per second and peak RSS on synthetic OTLP JSON trace files.

Every step runs in its own child process, so each peak RSS belongs to one analysis alone and
the benchmark's own heap (the HTTP client runs) never counts: a generator child writes the file
(``write_synthetic_file``), then one child per ``jobs`` setting runs ``analyze_paths`` and
reports its own timing and memory. Peak RSS is the largest single process of the analysis: the
child's ``VmHWM`` (``/proc/self/status``) or, with ``jobs`` > 1, a reading process's
``ru_maxrss`` (``RUSAGE_CHILDREN``, read in the child after its pool has been reaped), whichever
is larger. Not the parent's ``RUSAGE_CHILDREN`` or ``wait4``: Linux carries a process's RSS
high-water mark across ``exec``, so every child would report at least this benchmark process's
own size (measured: 65.6 MB for 10k and 100k spans alike). With ``jobs`` > 1 the reading
processes run side by side, so the total in use is larger than the figure; the growth between
sizes is what the goal judges.

Spans per second = spans / the seconds ``analyze_paths`` took inside the child (interpreter
start and imports are left out; the file was just written, so it is read from the page cache:
this measures the analyzer, not the disk).

``python -m benchmarks.analyze_bench generate PATH SPANS SEED`` and ``... run PATH JOBS`` are
the two child entry points.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["AnalyzeResult", "run_analyze_bench"]

_SEED = 8


@dataclass(frozen=True, slots=True)
class AnalyzeResult:
    """One analysis of one synthetic file."""

    spans: int
    jobs: str
    """``"default"`` (the analyzer picks, one process per core for large inputs) or a number."""
    file_mb: float
    seconds: float
    spans_per_s: float
    peak_rss_mb: float
    """The larger of the two below."""
    main_rss_mb: float
    """High-water RSS of the analysing process itself."""
    worker_rss_mb: float
    """Largest high-water RSS of its reading processes (0 when it read alone)."""
    upstreams: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def run_analyze_bench(
    sizes: Sequence[int], job_settings: Sequence[int | None], progress: Callable[[str], None]
) -> list[AnalyzeResult]:
    """Generate one file per size (in a temporary folder, removed afterwards) and analyse it
    once per ``jobs`` setting (None = the analyzer's default)."""
    results: list[AnalyzeResult] = []
    with tempfile.TemporaryDirectory(prefix="rh-bench-analyze-") as folder:
        for spans in sizes:
            path = Path(folder) / f"spans-{spans}.jsonl"
            progress(f"analyze: generating {spans} spans")
            _child(["generate", str(path), str(spans), str(_SEED)])
            size_mb = path.stat().st_size / 1e6
            for jobs in job_settings:
                label = "default" if jobs is None else str(jobs)
                progress(f"analyze: {spans} spans, jobs={label}")
                answer = _child(["run", str(path), label])
                seconds = float(answer["seconds"])
                main_mb, worker_mb = answer["vmhwm_kb"] / 1024, answer["children_maxrss_kb"] / 1024
                results.append(
                    AnalyzeResult(
                        spans=spans,
                        jobs=label,
                        file_mb=size_mb,
                        seconds=seconds,
                        spans_per_s=spans / seconds if seconds > 0 else 0.0,
                        peak_rss_mb=max(main_mb, worker_mb),
                        main_rss_mb=main_mb,
                        worker_rss_mb=worker_mb,
                        upstreams=int(answer["upstreams"]),
                    )
                )
            path.unlink()
    return results


def _child(args: list[str]) -> dict[str, Any]:
    """Run this module as a child; returns its JSON answer."""
    command = [sys.executable, "-m", "benchmarks.analyze_bench", *args]
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {completed.returncode}")
    answer: dict[str, Any] = json.loads(completed.stdout)
    return answer


def _vmhwm_kb() -> int:
    """This process's RSS high-water mark since its exec, in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _main(argv: Sequence[str]) -> int:
    command, path, *rest = argv
    if command == "generate":
        from resilient_http.analysis.synthetic import write_synthetic_file

        truth = write_synthetic_file(path, spans=int(rest[0]), seed=int(rest[1]))
        print(json.dumps({"spans": truth.spans, "lines": truth.lines}))
        return 0
    from resilient_http.analysis.analyze import analyze_paths

    jobs = None if rest[0] == "default" else int(rest[0])
    started = time.perf_counter()
    analysis = analyze_paths([path], jobs=jobs)
    seconds = time.perf_counter() - started
    answer = {
        "seconds": seconds,
        "upstreams": len(analysis.upstreams),
        "vmhwm_kb": _vmhwm_kb(),
        # The reading processes, all reaped when analyze_paths returned (Linux: KiB).
        "children_maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
