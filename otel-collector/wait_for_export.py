"""Wait until the collector's file exporter has written data newer than a marker file.

Used by `make demo-stack`: the collector batches (1 s) before writing otel-collector/data/, so
the analysis waits for this run's metrics instead of sleeping a guessed time.

    python otel-collector/wait_for_export.py MARKER FILE [TIMEOUT_SECONDS]
"""

import sys
import time
from pathlib import Path


def main() -> int:
    marker, target = Path(sys.argv[1]), Path(sys.argv[2])
    deadline = time.monotonic() + (float(sys.argv[3]) if len(sys.argv) > 3 else 30.0)
    started = marker.stat().st_mtime
    while time.monotonic() < deadline:
        if target.exists() and target.stat().st_mtime > started:
            return 0
        time.sleep(0.2)  # polling a file written by another container: no event to wait on
    print(f"no new data in {target} after waiting; is the collector running?", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
