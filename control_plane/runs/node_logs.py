"""GetNodeLogs and WatchNodeLogs: a node attempt's log, read from the artifact store where the
node's task wrote it (ray_nodes.logs), by offset, and followed while the attempt runs."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf import timestamp_pb2

from control_plane import names
from control_plane.errors import InvalidArgumentError, NotFoundError
from control_plane.runs.events import TERMINAL_NODE_STATES
from control_plane.storage.repository import Repository
from ray_nodes.logs import LogLine, LogPage, attempts_with_logs, read_log
from raypipe.v1 import node_log_pb2, run_pb2

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
#: How often a follower looks for new lines; a running attempt flushes them every second.
FOLLOW_POLL_S = 0.25

_NAME = re.compile(r"runs/([^/]+)/nodes/([^/]+)/attempts/([^/]+)/logs")
_STREAMS = {
    "stdout": node_log_pb2.LogLine.STREAM_STDOUT,
    "stderr": node_log_pb2.LogLine.STREAM_STDERR,
    "logging": node_log_pb2.LogLine.STREAM_LOGGING,
    "raypipe": node_log_pb2.LogLine.STREAM_RAYPIPE,
}


@dataclass(frozen=True)
class AttemptLog:
    """A node attempt whose log can be read."""

    run_id: str
    node_id: str
    attempt: int


def parse_log_name(value: str, field: str = "name") -> tuple[str, str, int]:
    """``runs/{run}/nodes/{node}/attempts/{n}/logs`` -> (run id, node id, n)."""
    expected = "expected runs/{run_id}/nodes/{node_id}/attempts/{n}/logs"
    if not value:
        raise InvalidArgumentError.for_field(field, f"is required ({expected})")
    match = _NAME.fullmatch(value)
    if match is None:
        raise InvalidArgumentError.for_field(
            field, f"{value!r} is not a node log name ({expected})"
        )
    run_id = names.parse_run_name(f"runs/{match.group(1)}", field)
    node_id, attempt = match.group(2), match.group(3)
    if not attempt.isdigit() or int(attempt) < 1:
        raise InvalidArgumentError.for_field(
            field, f"{attempt!r} is not an attempt number (1 for the first attempt)"
        )
    return run_id, node_id, int(attempt)


class NodeLogs:
    """Reads node attempts' logs for the RunService."""

    def __init__(self, repository: Repository, artifact_root: Callable[[], str]) -> None:
        self._repo = repository
        self._root = artifact_root

    def resolve(self, name: str) -> tuple[AttemptLog, run_pb2.NodeExecution]:
        """The attempt a log name names, and its node's record; NOT_FOUND for an unknown run,
        node or attempt."""
        run_id, node_id, attempt = parse_log_name(name)
        run = self._repo.get_run(run_id)  # RUN_NOT_FOUND
        node = next((n for n in run.nodes if n.node_id == node_id), None)
        run_name = f"runs/{run_id}"
        if node is None:
            raise NotFoundError(
                f"run '{run_name}' has no node '{node_id}'",
                reason="NODE_NOT_FOUND",
                metadata={"run": run_name, "node": node_id},
            )
        attempts = max(node.attempt, *attempts_with_logs(self._root(), run_id, node_id), 0)
        # The first attempt of a node that has not started yet can be followed already.
        upcoming = attempt == 1 and node.state not in TERMINAL_NODE_STATES
        if attempt > attempts and not upcoming:
            started = "has not started" if attempts == 0 else f"has {attempts} attempt(s)"
            raise NotFoundError(
                f"node '{node_id}' of run '{run_name}' {started}; there is no attempt {attempt}",
                reason="ATTEMPT_NOT_FOUND",
                metadata={
                    "run": run_name,
                    "node": node_id,
                    "attempt": str(attempt),
                    "attempts": str(attempts),
                },
            )
        return AttemptLog(run_id, node_id, attempt), node

    def page(self, name: str, offset: int, limit: int) -> tuple[LogPage, bool]:
        """Lines of the attempt from ``offset``, and whether the log is complete there."""
        _check_offset(offset)
        if limit < 0 or limit > MAX_LIMIT:
            raise InvalidArgumentError.for_field(
                "limit", f"must be between 0 and {MAX_LIMIT} (0 means {DEFAULT_LIMIT}), not {limit}"
            )
        where, node = self.resolve(name)
        return self._read(where, node, offset, limit or DEFAULT_LIMIT)

    def _read(
        self, where: AttemptLog, node: run_pb2.NodeExecution | None, offset: int, limit: int
    ) -> tuple[LogPage, bool]:
        """A page, with ``node`` as read before it: a task writes its log whole before its
        end is recorded, so an attempt that was over then has its last line written now."""
        over = node is None or where.attempt < node.attempt or node.state in TERMINAL_NODE_STATES
        page = read_log(
            self._root(), where.run_id, where.node_id, where.attempt, offset=offset, limit=limit
        )
        # An attempt that ended without writing its log whole (it printed nothing, or was
        # killed) is complete once its flushed lines are read.
        complete = page.complete or (over and page.end is None and len(page.lines) < limit)
        return page, complete

    def _node(self, where: AttemptLog) -> run_pb2.NodeExecution | None:
        nodes = self._repo.get_run(where.run_id, node_ids=[where.node_id]).nodes
        return next((n for n in nodes if n.node_id == where.node_id), None)

    def follow(
        self, name: str, offset: int, is_active: Callable[[], bool], closed: Callable[[], bool]
    ) -> Iterator[tuple[LogPage, bool]]:
        """Pages from ``offset`` until the log is complete: each one with new lines at once,
        and an empty last one if the end comes without them."""
        _check_offset(offset)
        where, first = self.resolve(name)
        node: run_pb2.NodeExecution | None = first
        while is_active():
            page, complete = self._read(where, node, offset, DEFAULT_LIMIT)
            if page.lines or complete:
                yield page, complete
            if complete:
                return
            offset = page.next_offset
            if not page.lines:
                if closed():
                    return
                time.sleep(FOLLOW_POLL_S)
            node = self._node(where)


def _check_offset(offset: int) -> None:
    if offset < 0:
        raise InvalidArgumentError.for_field("offset", f"must be 0 or more, not {offset}")


def page_fields(page: LogPage, complete: bool) -> dict[str, Any]:
    """The fields GetNodeLogsResponse and WatchNodeLogsResponse share, for a page."""
    return {
        "lines": [line_message(line) for line in page.lines],
        "next_offset": page.next_offset,
        "complete": complete,
        "cut_lines": page.end.cut_lines if page.end else 0,
        "cut_bytes": page.end.cut_bytes if page.end else 0,
    }


def line_message(line: LogLine) -> node_log_pb2.LogLine:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(round(line.time * 1e9))
    return node_log_pb2.LogLine(
        offset=line.offset,
        time=stamp,
        stream=_STREAMS.get(line.stream, node_log_pb2.LogLine.STREAM_UNSPECIFIED),
        text=line.text,
        level=line.level,
        logger=line.logger,
    )
