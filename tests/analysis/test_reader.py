"""The streaming reader: input discovery, corrupt lines, gzip, byte ranges, pipes."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import os
import struct
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_http.analysis.reader import (
    STDIN,
    InputError,
    ReadCounts,
    find_input_files,
    iter_json_lines,
)


def test_folders_are_searched_recursively_for_telemetry_names(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    wanted = [
        tmp_path / "traces.json",
        tmp_path / "metrics.jsonl",
        nested / "data-2024-05-01T10-00-00.000.json",  # the Collector's rotated backup
        nested / "data.jsonl.1",  # logrotate
        nested / "data.jsonl.2.gz",
        tmp_path / "a" / "UPPER.JSONL",
    ]
    ignored = [tmp_path / "notes.txt", tmp_path / ".hidden.jsonl", nested / "data.json.tmp"]
    for path in wanted + ignored:
        path.write_text("{}\n")

    assert find_input_files([tmp_path]) == sorted(wanted)


def test_named_files_are_read_whatever_their_name_and_only_once(tmp_path: Path) -> None:
    odd = tmp_path / "telemetry.out"
    odd.write_text("{}\n")
    assert find_input_files([odd, tmp_path, odd]) == [odd]


def test_a_dash_is_standard_input_and_dot_slash_dash_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-").write_text("{}\n")
    assert find_input_files(["-", "./-", "-"]) == [STDIN, tmp_path / "-"]


def test_missing_path_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^no such file or directory: .*missing$"):
        find_input_files([tmp_path, tmp_path / "missing"])


def test_corrupt_and_truncated_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"broken": \n\xff\xfe\n{"b": 2}\n{"truncated": [1, 2')

    counts = ReadCounts()
    values = list(iter_json_lines(path, counts))

    assert values == [{"a": 1}, {"b": 2}]
    assert counts.lines == 6  # every line read, the blank one too
    assert counts.corrupt_lines == 3  # blank lines are not corrupt


def test_gzip_files_are_detected_by_content(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"  # no .gz suffix
    path.write_bytes(gzip.compress(b'{"a": 1}\n{"b": 2}\n'))
    counts = ReadCounts()
    assert list(iter_json_lines(path, counts)) == [{"a": 1}, {"b": 2}]
    assert counts.lines == 2


def test_truncated_gzip_keeps_what_was_read(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(b'{"n": %d}\n' % n for n in range(2000)))
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])

    counts = ReadCounts()
    values = list(iter_json_lines(path, counts))

    assert 0 < len(values) < 2000
    assert values == [{"n": n} for n in range(len(values))]
    assert counts.corrupt_lines == 1


@settings(max_examples=60, deadline=None, derandomize=True)  # the same examples every run
@given(
    lines=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=6),
)
def test_byte_ranges_read_every_line_exactly_once(
    tmp_path_factory: pytest.TempPathFactory, lines: list[int], cuts: list[int]
) -> None:
    # Lines of varied length (padding), cut at arbitrary offsets, even inside a line.
    path = tmp_path_factory.mktemp("ranges") / "t.jsonl"
    content = b"".join(
        b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * width) for i, width in enumerate(lines)
    )
    path.write_bytes(content)
    bounds = sorted({c for c in cuts if 0 < c < len(content)})
    ranges = list(zip([0, *bounds], [*bounds, None], strict=True))

    counts = ReadCounts()
    seen = [v["n"] for start, end in ranges for v in iter_json_lines(path, counts, start, end)]

    assert seen == list(range(len(lines)))
    assert counts.lines == len(lines)


@contextlib.contextmanager
def pipe_written(content: bytes) -> Iterator[Path]:
    """A pipe's read end by name (as ``<(gzip -c x)`` gives it), written by a thread: its first
    byte alone, taken by the reader before the rest is written (the gzip magic split over two
    reads), then the rest (less than a pipe holds: the writer never blocks)."""
    read_end, write_end = os.pipe()

    def unread_bytes() -> int:
        (count,) = struct.unpack("i", fcntl.ioctl(read_end, termios.FIONREAD, b"\0" * 4))
        return int(count)

    def write() -> None:
        with open(write_end, "wb", buffering=0) as out:
            out.write(content[:1])
            deadline = time.monotonic() + 10
            while unread_bytes() and time.monotonic() < deadline:
                time.sleep(0.001)
            out.write(content[1:])

    writer = threading.Thread(target=write)
    writer.start()
    try:
        yield Path(f"/dev/fd/{read_end}")
    finally:
        writer.join()
        os.close(read_end)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_a_pipe_is_read_whole(compress: bool) -> None:
    # A pipe cannot seek and gives its bytes once: telling gzip from text must not lose them.
    content = b"".join(b'{"n": %d}\n' % n for n in range(3000))
    counts = ReadCounts()
    with pipe_written(gzip.compress(content) if compress else content) as pipe:
        values = list(iter_json_lines(pipe, counts))
    assert values == [{"n": n} for n in range(3000)]
    assert (counts.lines, counts.corrupt_lines) == (3000, 0)
