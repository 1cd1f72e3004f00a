"""The node-log store (ray_nodes.logs) and the capture of an attempt's output
(ray_nodes.engine.capture), in this process: chunks, the whole file, offsets, the cap, and the
order of Python writes, logging records and native writes to the descriptors."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path

import pytest

from ray_nodes.engine.capture import captured
from ray_nodes.logs import DEFAULT_MAX_BYTES, LogWriter, log_dir, read_log


def lines_of(root: Path, attempt: int = 1, **kwargs: int) -> list[tuple[str, str]]:
    page = read_log(str(root), "r", "n", attempt, limit=100_000, **kwargs)
    return [(line.stream, line.text) for line in page.lines]


def test_chunks_while_running_then_one_file_with_the_same_offsets(tmp_path: Path) -> None:
    writer = LogWriter(str(tmp_path), "r", "n", 1)
    writer.write("stdout", "one\ntwo")
    writer.flush()
    writer.write("stderr", "three")
    writer.flush()
    directory = Path(log_dir(str(tmp_path), "r", "n", 1))
    assert sorted(p.name for p in directory.iterdir()) == [
        "chunk-000000000000.jsonl",
        "chunk-000000000002.jsonl",
    ]
    page = read_log(str(tmp_path), "r", "n", 1, offset=1, limit=10)
    assert [(line.offset, line.text) for line in page.lines] == [(1, "two"), (2, "three")]
    assert (page.next_offset, page.complete, page.end) == (3, False, None)
    writer.write("stdout", "four")
    end = writer.close()
    assert sorted(p.name for p in directory.iterdir()) == ["end.json", "log.jsonl"]
    assert (end.lines, end.cut_lines) == (4, 0)
    page = read_log(str(tmp_path), "r", "n", 1, offset=3, limit=10)
    assert [(line.offset, line.stream, line.text) for line in page.lines] == [(3, "stdout", "four")]
    assert page.complete
    assert lines_of(tmp_path) == [
        ("stdout", "one"), ("stdout", "two"), ("stderr", "three"), ("stdout", "four")
    ]  # fmt: skip


def test_an_attempt_that_writes_nothing_leaves_no_file(tmp_path: Path) -> None:
    writer = LogWriter(str(tmp_path), "r", "n", 1)
    writer.flush()
    assert writer.close().lines == 0
    assert not (tmp_path / "runs").exists()
    page = read_log(str(tmp_path), "r", "n", 1)
    assert (page.lines, page.complete) == ((), False)  # the server decides from the node


def test_the_cap_keeps_head_and_tail_and_marks_the_cut(tmp_path: Path) -> None:
    writer = LogWriter(str(tmp_path), "r", "n", 1, max_bytes=4000)
    for i in range(1000):
        writer.write("stdout", f"line {i:04d}")
    end = writer.close()
    lines = [text for _, text in lines_of(tmp_path)]
    assert lines[0] == "line 0000"
    assert lines[-1] == "line 0999"
    cut = next(i for i, text in enumerate(lines) if text.startswith("[raypipe]"))
    head, tail = lines[:cut], lines[cut + 1 :]
    assert head == [f"line {i:04d}" for i in range(len(head))]
    assert tail == [f"line {i:04d}" for i in range(1000 - len(tail), 1000)]
    assert end.cut_lines == 1000 - len(head) - len(tail) > 0
    assert f"{end.cut_lines} lines" in lines[cut]
    stored = (Path(log_dir(str(tmp_path), "r", "n", 1)) / "log.jsonl").read_bytes().splitlines()
    head_bytes = sum(len(line) + 1 for line in stored[:cut])
    tail_bytes = sum(len(line) + 1 for line in stored[cut + 1 :])
    line_bytes = len(stored[0]) + 1
    assert 2000 - line_bytes < head_bytes <= 2000  # half the cap each
    assert 2000 - line_bytes < tail_bytes <= 2000
    assert end.lines == len(lines)


def test_a_runaway_line_is_split(tmp_path: Path) -> None:
    writer = LogWriter(str(tmp_path), "r", "n", 1)
    writer.write("stdout", "x" * 40_000)
    writer.close()
    assert [len(text) for _, text in lines_of(tmp_path)] == [16_384, 16_384, 7_232]


def test_python_logging_and_native_writes_in_order(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    libc = ctypes.CDLL(None)
    writer = LogWriter(str(tmp_path), "r", "n", 1)
    logger = logging.getLogger("raypipe.test.chatty")
    with captured(writer):
        print("print to stdout")
        print("print to stderr", file=sys.stderr)
        logger.debug("debug is below INFO: not kept")
        logger.info("an info record")
        logger.warning("a warning record")
        libc.printf(b"printf from C\n")
        libc.fflush(None)
        os.write(2, b"os.write to fd 2\n")
        print("after the native writes", end="")
    writer.close()
    lines = read_log(str(tmp_path), "r", "n", 1).lines
    assert [(line.stream, line.text, line.level) for line in lines] == [
        ("stdout", "print to stdout", ""),
        ("stderr", "print to stderr", ""),
        ("logging", "an info record", "INFO"),
        ("logging", "a warning record", "WARNING"),
        ("stdout", "printf from C", ""),
        ("stderr", "os.write to fd 2", ""),
        ("stdout", "after the native writes", ""),
    ]
    assert lines[2].logger == "raypipe.test.chatty"
    assert [line.time for line in lines] == sorted(line.time for line in lines)
    # Everything still reaches the descriptors it went to before (Ray's worker logs).
    out, err = capfd.readouterr()
    assert "print to stdout" in out
    assert "printf from C" in out
    assert "print to stderr" in err
    assert "os.write to fd 2" in err
    assert "WARNING raypipe.test.chatty: a warning record" in err
    # And after the attempt, nothing more is captured.
    print("after the attempt")
    assert [line.text for line in read_log(str(tmp_path), "r", "n", 1).lines][-1] == (
        "after the native writes"
    )
    assert logging.getLogger().level == logging.WARNING


def test_ten_megabytes_keep_the_default_cap(tmp_path: Path) -> None:
    writer = LogWriter(str(tmp_path), "r", "n", 1)  # DEFAULT_MAX_BYTES: 4 MiB
    line = "y" * 99
    for _ in range(100_000):  # 10 MB of text
        writer.write_lines("stdout", [line], 1.0)
    end = writer.close()
    stored = Path(log_dir(str(tmp_path), "r", "n", 1)) / "log.jsonl"
    assert stored.stat().st_size <= DEFAULT_MAX_BYTES + 1024
    assert end.cut_lines > 0
    assert end.cut_bytes > 10_000_000 - DEFAULT_MAX_BYTES - 2_000_000
    page = read_log(str(tmp_path), "r", "n", 1, limit=100_000)
    cut = [entry for entry in page.lines if entry.stream == "raypipe"]
    assert len(cut) == 1
    assert f"{end.cut_lines} lines" in cut[0].text
