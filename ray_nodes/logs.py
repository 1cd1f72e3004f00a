"""Node logs in the artifact store: each attempt's lines, written in chunks while the node runs
and as one file when it ends, and read back by offset (the control plane's GetNodeLogs).

Layout, under the artifact root (a directory or an fsspec URL)::

    runs/{run_id}/nodes/{node_id}/attempts/{n}/log/
        chunk-{first:012d}.jsonl   while the attempt runs: one file per flush, never rewritten
        log.jsonl                  when it ends: every kept line, then the chunks are removed
        end.json                   when it ends: {"lines", "cut_lines", "cut_bytes", "end_time"}

A line is one JSON object: ``t`` (Unix seconds), ``s`` (``stdout``, ``stderr``, ``logging``
or ``raypipe`` for the engine's own notes, such as the cut marker), ``m`` (the text, without
its newline) and, for logging records, ``l`` (the level name) and ``n`` (the logger). A line's
offset is its position in the attempt's log, from 0; chunks are named after the offset of
their first line, so a reader finds any offset in the chunks or the whole file alike.

Each attempt keeps at most ``max_bytes`` of text: the first half as it comes (flushed every
``flush_interval`` seconds), the last half in memory until the attempt ends; between them a
``raypipe`` line says how many lines and bytes were cut. An attempt that is killed keeps what
was flushed before, the head only if it was already cut.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fsspec

#: The text kept per attempt unless the run says otherwise: the head and the tail, half each.
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
#: How often a running attempt's new lines are written out.
DEFAULT_FLUSH_INTERVAL_S = 1.0
#: A line longer than this is split, so one runaway line cannot fill the cap on its own.
MAX_LINE_CHARS = 16 * 1024
STREAMS = ("stdout", "stderr", "logging", "raypipe")


@functools.lru_cache(maxsize=16)
def _filesystem_of(protocol_root: str) -> Any:
    return fsspec.core.url_to_fs(protocol_root)[0]


def _filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` (made once per kind of URL) and the path in it."""
    if "://" not in url:
        return _filesystem_of("file:///"), url
    return fsspec.core.url_to_fs(url)


def log_dir(root: str, run_id: str, node_id: str, attempt: int) -> str:
    return f"{root.rstrip('/')}/runs/{run_id}/nodes/{node_id}/attempts/{attempt}/log"


@dataclass(frozen=True)
class LogLine:
    """One line of a node attempt's log."""

    offset: int
    time: float
    stream: str
    text: str
    level: str = ""
    logger: str = ""


@dataclass(frozen=True)
class LogEnd:
    """What ``end.json`` records once an attempt's log is whole."""

    lines: int
    cut_lines: int
    cut_bytes: int
    end_time: float


@dataclass(frozen=True)
class LogPage:
    """Lines from an offset, and where the log stands."""

    lines: tuple[LogLine, ...]
    #: The offset to ask for next: after the last line returned (or ``offset`` when none).
    next_offset: int
    #: The whole log is written (the attempt ended) and ``next_offset`` is past its last line.
    complete: bool
    #: Set once the attempt ended: its end record (how much was cut).
    end: LogEnd | None


def _prefix(t: float, stream: str) -> str:
    """The start of a line's JSON record, up to its text (shared by a batch of lines)."""
    return f'{{"t": {round(t, 6)!r}, "s": "{stream}", "m": '


def _encode(prefix: str, text: str, level: str = "", logger: str = "") -> str:
    """One line's record, as ``json.dumps`` of ``{"t", "s", "m"[, "l", "n"]}`` gives it,
    formatted by hand: this is the capture's hot path."""
    extra = f', "l": {_dumps(level)}' if level else ""
    if logger:
        extra += f', "n": {_dumps(logger)}'
    return f"{prefix}{_dumps(text)}{extra}}}"


class LogWriter:
    """Collects one attempt's lines and writes them to the artifact store (thread-safe)."""

    def __init__(
        self,
        root: str,
        run_id: str,
        node_id: str,
        attempt: int,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._dir = log_dir(root, run_id, node_id, attempt)
        self._fs, self._path = _filesystem(self._dir)
        self._made = False  # the directory is made with the first chunk: no file for no output
        self._head_budget = max_bytes // 2
        self._tail_budget = max_bytes - self._head_budget
        self._lock = threading.Lock()
        self._pending: list[str] = []  # encoded lines not yet flushed
        self._flushed = 0  # lines written in chunks
        self._head: list[str] = []  # every head line, for the whole file at the end
        self._head_bytes = 0
        self._tail: collections.deque[tuple[str, int]] = collections.deque()
        self._tail_bytes = 0
        self._cut_lines = 0
        self._cut_bytes = 0
        self._chunks: list[str] = []
        self._closed = False

    def write(
        self, stream: str, text: str, *, level: str = "", logger: str = "", t: float | None = None
    ) -> None:
        """Add a line (a longer text is split at its newlines and at MAX_LINE_CHARS)."""
        prefix = _prefix(time.time() if t is None else t, stream)
        for part in _split(text):
            self._add(_encode(prefix, part, level, logger))

    def write_lines(self, stream: str, lines: list[str], t: float) -> None:
        """Add lines that hold no newline, all at time ``t``."""
        prefix = _prefix(t, stream)
        for line in lines:
            if len(line) > MAX_LINE_CHARS or "\r" in line:
                for part in _split(line):
                    self._add(_encode(prefix, part))
            else:
                self._add(_encode(prefix, line))

    def _add(self, encoded: str) -> None:
        size = len(encoded.encode()) + 1
        with self._lock:
            if self._closed:
                return
            if (
                not self._cut_lines
                and not self._tail
                and self._head_bytes + size <= self._head_budget
            ):
                self._head.append(encoded)
                self._head_bytes += size
                self._pending.append(encoded)
                return
            self._tail.append((encoded, size))
            self._tail_bytes += size
            while self._tail and self._tail_bytes > self._tail_budget:
                _, dropped = self._tail.popleft()
                self._tail_bytes -= dropped
                self._cut_lines += 1
                self._cut_bytes += dropped

    def flush(self) -> None:
        """Write the lines added since the last flush as one chunk (the capture calls it every
        DEFAULT_FLUSH_INTERVAL_S while the attempt runs)."""
        with self._lock:
            lines, self._pending = self._pending, []
            first = self._flushed
            self._flushed += len(lines)
        if lines:
            self._makedirs()
            name = f"{self._path}/chunk-{first:012d}.jsonl"
            with self._fs.open(name, "w") as f:
                f.write("\n".join(lines) + "\n")
            with self._lock:
                self._chunks.append(name)

    def tail(self, count: int = 10) -> tuple[str, ...]:
        """The texts of the last ``count`` lines written (for a failure's summary)."""
        with self._lock:
            if self._tail:
                last = [encoded for encoded, _ in list(self._tail)[-count:]]
            else:
                last = self._head[-count:]
        return tuple(json.loads(encoded)["m"] for encoded in last)

    def _makedirs(self) -> None:
        if not self._made:
            self._fs.makedirs(self._path, exist_ok=True)
            self._made = True

    def close(self) -> LogEnd:
        """Write the whole log (head, the cut marker, tail) and its end record; remove chunks.
        An attempt that wrote nothing leaves no file at all."""
        with self._lock:
            self._closed = True
            lines = list(self._head)
            if self._cut_lines:
                note = (
                    f"[raypipe] {self._cut_lines} lines ({self._cut_bytes} bytes) cut here: the "
                    f"log keeps its first and last {self._head_budget} bytes"
                )
                lines.append(_encode(_prefix(time.time(), "raypipe"), note))
            lines += [encoded for encoded, _ in self._tail]
            chunks = list(self._chunks)
            end = LogEnd(len(lines), self._cut_lines, self._cut_bytes, time.time())
        if not lines:
            return end
        self._makedirs()
        with self._fs.open(f"{self._path}/log.jsonl", "w") as f:
            f.write("".join(line + "\n" for line in lines))
        with self._fs.open(f"{self._path}/end.json", "w") as f:
            json.dump(end.__dict__, f)
        for chunk in chunks:
            with contextlib.suppress(FileNotFoundError):
                self._fs.rm(chunk)
        return end


_dumps = json.JSONEncoder(ensure_ascii=False).encode


def _split(text: str) -> Iterator[str]:
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if len(line) <= MAX_LINE_CHARS:
            yield line
            continue
        for i in range(0, len(line), MAX_LINE_CHARS):
            yield line[i : i + MAX_LINE_CHARS]


def _decode(offset: int, encoded: str) -> LogLine:
    r = json.loads(encoded)
    return LogLine(offset, float(r["t"]), str(r["s"]), str(r["m"]), r.get("l", ""), r.get("n", ""))


def log_text(lines: Iterable[LogLine]) -> str:
    """Lines as plain text, one per line: the time (UTC), the stream (a logging record's level
    and logger), the text."""
    out = []
    for line in lines:
        stamp = datetime.fromtimestamp(line.time, UTC).isoformat(timespec="milliseconds")
        where = f"{line.level} {line.logger}:" if line.stream == "logging" else line.stream
        out.append(f"{stamp.replace('+00:00', 'Z')} {where} {line.text}\n")
    return "".join(out)


def attempts_with_logs(root: str, run_id: str, node_id: str) -> list[int]:
    """The attempts of a node that have a log directory, in order."""
    fs, path = _filesystem(f"{root.rstrip('/')}/runs/{run_id}/nodes/{node_id}/attempts")
    try:
        names = [str(p).rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    except FileNotFoundError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def read_log(
    root: str, run_id: str, node_id: str, attempt: int, *, offset: int = 0, limit: int = 1000
) -> LogPage:
    """Up to ``limit`` lines from ``offset``: from the whole file once the attempt ended,
    else from its chunks. A log that does not exist (yet) reads as empty and not complete."""
    fs, path = _filesystem(log_dir(root, run_id, node_id, attempt))
    for _ in range(3):  # the writer may replace the chunks by the whole file meanwhile
        end = _end(fs, path)
        if end is not None:
            with fs.open(f"{path}/log.jsonl", "r") as f:
                lines = [
                    _decode(i, line.rstrip("\n"))
                    for i, line in enumerate(f)
                    if offset <= i < offset + limit
                ]
            next_offset = offset + len(lines)
            return LogPage(tuple(lines), next_offset, next_offset >= end.lines, end)
        try:
            lines = _from_chunks(fs, path, offset, limit)
        except FileNotFoundError:
            continue
        return LogPage(tuple(lines), offset + len(lines), False, None)
    return LogPage((), offset, False, None)


def _end(fs: Any, path: str) -> LogEnd | None:
    try:
        with fs.open(f"{path}/end.json", "r") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    return LogEnd(
        int(data["lines"]), int(data["cut_lines"]), int(data["cut_bytes"]), float(data["end_time"])
    )


def _from_chunks(fs: Any, path: str, offset: int, limit: int) -> list[LogLine]:
    try:
        names = sorted(
            str(p)
            for p in fs.ls(path, detail=False)
            if str(p).rsplit("/", 1)[-1].startswith("chunk-")
        )
    except FileNotFoundError:
        return []
    out: list[LogLine] = []
    for i, name in enumerate(names):
        first = int(name.rsplit("chunk-", 1)[1].split(".")[0])
        following = (
            int(names[i + 1].rsplit("chunk-", 1)[1].split(".")[0]) if i + 1 < len(names) else None
        )
        if following is not None and following <= offset:
            continue
        with fs.open(name, "r") as f:
            for j, line in enumerate(f):
                at = first + j
                if at >= offset and len(out) < limit:
                    out.append(_decode(at, line.rstrip("\n")))
        if len(out) >= limit:
            break
    return out
