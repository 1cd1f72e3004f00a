"""Capture of one node attempt's output, inside its Ray task.

Two levels, so that every line is kept with its stream and in the order it was written:

- Python level: for the attempt, ``sys.stdout`` and ``sys.stderr`` are replaced by streams that
  record each line, with its time, in the thread that writes it, and ``logging`` records are
  taken by a handler on the root logger with their level and logger name (the root logger's
  level is lowered to INFO for the attempt when it was higher, so libraries' INFO progress is
  kept). ``print``, ``warnings`` and logging are therefore in their exact order.
- Descriptor level, for what a Python-level capture misses: C and C++ code writing to fds 1 and
  2 directly (XGBoost's, LightGBM's and CatBoost's native loggers, ``printf`` in an extension,
  ``os.write``), and subprocesses that inherit the descriptors. For the attempt fds 1 and 2 are
  pipes, read by one thread per worker; before a Python-level line is recorded, whatever the
  pipes already hold is read first, so a native write that happened before it comes before it.
  (C's stdio buffers its output when fd 1 is not a terminal: such text is recorded when the
  library flushes it, as a terminal would show it then too.)

Everything is also written to the descriptors it would have gone to (Ray's worker log files),
so Ray's logs and dashboard show the output as before; logging records are written there
formatted.

A Ray worker runs one task at a time, so swapping the process's descriptors for an attempt
captures that attempt alone (the node's own threads included). The pipes, the reader and the
flusher are made once per worker process and reused by every attempt, so an attempt that
prints nothing costs a few descriptor swaps.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import select
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

from ray_nodes.logs import DEFAULT_FLUSH_INTERVAL_S, LogWriter


class _LineStream(io.TextIOBase):
    """A text stream that records whole lines to the attempt's writer and copies its text to
    the descriptor the stream wrote to before."""

    def __init__(self, capture: _Capture, stream: str, original: TextIO, fd: int) -> None:
        self._capture = capture
        self._stream = stream
        self._original = original
        self._fd = fd
        self._partial = ""

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", "utf-8") or "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._original.fileno()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if "\n" not in text:  # print() writes its text, then "\n": one line, one record
            self._partial += text
            if len(self._partial) > 65536:
                self.flush()
            return len(text)
        *lines, rest = (self._partial + text).split("\n")
        self._partial = rest
        with contextlib.suppress(OSError):
            os.write(self._fd, ("\n".join(lines) + "\n").encode(self.encoding, errors="replace"))
        self._capture.record(self._stream, lines)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            line, self._partial = self._partial, ""
            with contextlib.suppress(OSError):
                os.write(self._fd, line.encode(self.encoding, errors="replace"))
            self._capture.record(self._stream, [line])


class _RecordHandler(logging.Handler):
    """Logging records into the attempt's log, and formatted to the worker's stderr."""

    def __init__(self, capture: _Capture) -> None:
        super().__init__(logging.NOTSET)
        self._capture = capture
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            self._capture.record_log(message, record.levelname, record.name, record.created)
            os.write(self._capture.saved[2], (self.format(record) + "\n").encode(errors="replace"))
        except Exception:  # logging must never break the node
            self.handleError(record)


class _Capture:
    """The worker process's capture machinery, made on first use."""

    _instance: _Capture | None = None
    _make_lock = threading.Lock()

    @classmethod
    def get(cls) -> _Capture:
        with cls._make_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.writer: LogWriter | None = None
        self.saved = {1: os.dup(1), 2: os.dup(2)}
        self.pipes: dict[int, tuple[int, int]] = {}
        for fd in (1, 2):
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            self.pipes[fd] = (read_end, write_end)
        self.reads = [self.pipes[1][0], self.pipes[2][0]]
        self.partial = {1: b"", 2: b""}
        self.names = {1: "stdout", 2: "stderr"}
        threading.Thread(target=self._pump, name="raypipe-log-pipes", daemon=True).start()
        threading.Thread(target=self._flush_loop, name="raypipe-log-flush", daemon=True).start()

    # --- the descriptor level --------------------------------------------------------------
    def _pump(self) -> None:
        while True:
            with contextlib.suppress(InterruptedError):
                select.select(self.reads, [], [])
            self.drain()

    def drain(self) -> None:
        """Record whatever the pipes hold now (non-blocking), in the lock."""
        with self.lock:
            for fd, (read_end, _) in self.pipes.items():
                while True:
                    try:
                        data = os.read(read_end, 65536)
                    except BlockingIOError:
                        break
                    if not data:
                        break
                    with contextlib.suppress(OSError):
                        os.write(self.saved[fd], data)
                    *lines, self.partial[fd] = (self.partial[fd] + data).split(b"\n")
                    if lines and self.writer is not None:
                        text = [line.decode(errors="replace") for line in lines]
                        self.writer.write_lines(self.names[fd], text, time.time())

    # --- the Python level ------------------------------------------------------------------
    def _pending(self) -> bool:
        """Whether native output waits in the pipes (one poll, no read)."""
        return bool(select.select(self.reads, [], [], 0)[0])

    def record(self, stream: str, lines: list[str]) -> None:
        with self.lock:
            if self._pending():
                self.drain()  # native output already written comes first
            if self.writer is not None:
                self.writer.write_lines(stream, lines, time.time())

    def record_log(self, message: str, level: str, logger: str, created: float) -> None:
        with self.lock:
            if self._pending():
                self.drain()
            if self.writer is not None:
                self.writer.write("logging", message, level=level, logger=logger, t=created)

    def _flush_loop(self) -> None:
        while True:
            time.sleep(DEFAULT_FLUSH_INTERVAL_S)
            with self.lock:
                writer = self.writer
            if writer is not None:
                with contextlib.suppress(Exception):  # a store hiccup must not kill the node
                    writer.flush()

    # --- an attempt ------------------------------------------------------------------------
    @contextlib.contextmanager
    def attempt(self, writer: LogWriter) -> Iterator[None]:
        """Send the process's output to ``writer`` for the block, then back where it went."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        with self.lock:
            self.writer = writer
            for fd in (1, 2):
                os.dup2(self.pipes[fd][1], fd)
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout = _LineStream(self, "stdout", stdout, self.saved[1])  # type: ignore[assignment]
        sys.stderr = _LineStream(self, "stderr", stderr, self.saved[2])  # type: ignore[assignment]
        root = logging.getLogger()
        handler = _RecordHandler(self)
        level = root.level
        root.addHandler(handler)
        if level > logging.INFO:
            root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.removeHandler(handler)
            root.setLevel(level)
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            sys.stdout, sys.stderr = stdout, stderr
            with self.lock:
                for fd in (1, 2):
                    os.dup2(self.saved[fd], fd)
                self.drain()  # what reached the pipes before the swap back
                for fd in (1, 2):
                    if self.partial[fd]:
                        rest = self.partial[fd].decode(errors="replace")
                        writer.write_lines(self.names[fd], [rest], time.time())
                    self.partial[fd] = b""
                self.writer = None


def captured(writer: LogWriter) -> contextlib.AbstractContextManager[None]:
    """Send the attempt's stdout, stderr and logging records to ``writer`` for the block."""
    return _Capture.get().attempt(writer)
