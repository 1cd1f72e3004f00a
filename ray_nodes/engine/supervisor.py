"""The run supervisor: one detached asyncio actor per Ray cluster that drives every run.

Each run is one call of :meth:`Supervisor.drive`, named ``run/{run_id}``, and each node task
it submits is named ``{pipeline}/{node_id}``; a run's record keeps each node's Ray task id,
which ``ray get tasks <id>`` (or the dashboard) resolves. (The node tasks cannot be children
of ``run/{run_id}``: Ray gives every task an async actor submits the actor's creation task as
parent; and a per-run ``runtime_env`` label would split Ray's worker pool by run.) The actor is
created once and lives in Ray, not in the control plane: a run keeps going, and its events
are kept, while the control plane is down. Events are held until the control plane
acknowledges them (after it has stored them), so a restarted control plane loses none.

Nodes leave clusters. While nodes of its runs wait to be placed, the actor checks every
:data:`CAPACITY_CHECK_S` that some alive node could still hold each one: a node whose every
eligible Ray node has gone (the only GPU worker left) fails naming the resource instead of
waiting forever, as plain Ray would; on a cluster with an autoscaler that may add such a
node, it first waits up to the run's ``capacity_wait_s``, and fails sooner once the
autoscaler reports that it can add none (compiler.Autoscaling).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from ray.exceptions import RayTaskError, TaskCancelledError

from ray_nodes.engine.artifacts import store_output
from ray_nodes.engine.compiler import (
    RESOURCE_ERROR,
    CompiledNode,
    autoscaling,
    cluster_capacity,
    compile_run,
    describe_capacity,
    missing_resources,
)
from ray_nodes.engine.event_log import EventLog, RunLog
from ray_nodes.engine.harvester import Harvester
from ray_nodes.engine.task import NodeError, NodeOutcome, execute_node, load_reused
from ray_nodes.engine.types import (
    TERMINAL_NODE_STATES,
    EngineEvent,
    NodeFailure,
    NodeState,
    RunState,
    RunSubmission,
)
from ray_nodes.errors import RayNodesError

log = logging.getLogger("raypipe.supervisor")

#: How long cancelled nodes get to stop on their own (KeyboardInterrupt) before their
#: worker is killed.
CANCEL_GRACE_S = 2.0
#: How long a run that did not succeed may take to store its succeeded nodes' outputs.
STORE_OUTPUTS_TIMEOUT_S = 600.0
#: How long a running node's report waits for its upstream nodes' ends to be reported first.
UPSTREAM_REPORT_WAIT_S = 5.0
#: How often the nodes waiting to be placed are checked against the cluster's nodes.
CAPACITY_CHECK_S = 2.0

_execute = ray.remote(num_returns=2)(execute_node)
_load = ray.remote(load_reused)
# Ray's stubs model positional arguments only; store_output's are keyword-only.
_store_later: Any = ray.remote(store_output)  # type: ignore[arg-type]


@dataclass
class _Node:
    plan: CompiledNode
    state: NodeState = NodeState.PENDING
    attempt: int = 0
    started_at: float = 0.0
    out_ref: Any = None
    info_ref: Any = None
    failure: NodeFailure | None = None
    cancel_sent: bool = False
    output_stored: bool = True
    #: Why no node of the cluster can run it any more (set by the capacity check).
    stranded: NodeFailure | None = None
    #: When the capacity check first found no alive node for it (monotonic; 0: it fits).
    unplaceable_since: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Run:
    submission: RunSubmission
    nodes: dict[str, _Node]
    log: RunLog = field(default_factory=RunLog)
    terminal: bool = False
    driven: bool = False
    cancelled: bool = False
    failed: NodeFailure | None = None


class Supervisor:
    """Drives runs; see the module docstring. All methods run on the actor's event loop."""

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self._runs: dict[str, _Run] = {}
        self._log = EventLog()
        self._harvester = Harvester()
        self._capacity_watch: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Future[None]] = set()  # stranded nodes' cancels in flight
        # The harvester's ray.get calls are on results ray.wait found ready (timeout=0): they
        # never block the loop, so Ray's warning about blocking gets would only mislead.
        os.environ.setdefault("RAY_WARN_BLOCKING_GET_INSIDE_ASYNC", "0")

    # --- the control plane's calls ---------------------------------------------------------
    async def register(self, submission: RunSubmission) -> bool:
        """Record a run before it is driven; False if it was known already (idempotent)."""
        if submission.run_id in self._runs:
            return False
        run = _Run(submission, {})
        self._runs[submission.run_id] = run
        self._log.add(submission.run_id, run.log)
        return True

    async def drive(self, run_id: str) -> str:
        """Execute a registered run to its end; a run already driven returns at once."""
        run = self._runs.get(run_id)
        if run is None or run.driven:
            return "known"
        run.driven = True
        submission = run.submission
        try:
            compiled = compile_run(submission, namespace=self._namespace)
        except Exception as e:  # an invalid spec slipped through, or a node type is missing
            failure = NodeFailure("", f"{type(e).__module__}.{type(e).__qualname__}", str(e))
            run.terminal = True
            await self._emit(run, kind="run", state=RunState.FAILED, error=failure, message=str(e))
            return "failed"
        run.nodes = {n.node_id: _Node(n) for n in compiled.nodes}
        await self._emit(run, kind="run", state=RunState.RUNNING, message="handed to Ray")
        for node_id in compiled.impossible:
            run.nodes[node_id].state = NodeState.FAILED
        await self._submit(run, compiled)
        if self._capacity_watch is None or self._capacity_watch.done():
            self._capacity_watch = asyncio.ensure_future(self._watch_capacity())
        await asyncio.gather(*(self._follow(run, node) for node in run.nodes.values()))
        await self._finish(run)
        return "done"

    async def cancel(self, run_id: str) -> bool:
        run = self._runs.get(run_id)
        if run is None or run.terminal:
            return False
        run.cancelled = True
        await self._cancel_nodes(run)
        return True

    async def poll(
        self, cursors: Mapping[str, int], timeout_s: float
    ) -> tuple[dict[str, list[EngineEvent]], list[str]]:
        """Events after each cursor, waiting up to ``timeout_s`` (see :meth:`EventLog.poll`)."""
        return await self._log.poll(cursors, timeout_s)

    async def ack(self, run_id: str, seq: int) -> None:
        """Events up to ``seq`` are stored; a run whose whole history is stored is forgotten."""
        if self._log.ack(run_id, seq):
            self._runs.pop(run_id, None)

    async def known_runs(self) -> list[str]:
        return list(self._runs)

    async def ping(self) -> str:
        return "ok"

    # --- the node tasks' calls -------------------------------------------------------------
    async def attempts_made(self, run_id: str, node_id: str) -> int:
        """The highest attempt of the node reported so far (0 if none): a task that Ray runs
        again after a system failure (its worker or node died) numbers its attempts on."""
        run = self._runs.get(run_id)
        node = run.nodes.get(node_id) if run else None
        return node.attempt if node is not None else 0

    async def node_started(
        self,
        run_id: str,
        node_id: str,
        attempt: int,
        task_id: str,
        at: float,
        ray_node_id: str = "",
        ray_node_address: str = "",
    ) -> None:
        run = self._runs.get(run_id)
        node = run.nodes.get(node_id) if run else None
        if run is None or node is None or node.state in TERMINAL_NODE_STATES:
            return  # late: the node's end already reported its RUNNING state change
        await self._upstream_reported(run, node)
        if node.state in TERMINAL_NODE_STATES:
            return
        await self._running(run, node, attempt, at, task_id, ray_node_id, ray_node_address)

    async def node_progress(
        self, run_id: str, node_id: str, attempt: int, metrics: dict[str, float], message: str
    ) -> None:
        run = self._runs.get(run_id)
        if run is None or run.terminal:
            return
        await self._emit(
            run, kind="progress", node_id=node_id, attempt=attempt, metrics=metrics, message=message
        )

    # --- internals -------------------------------------------------------------------------
    async def _emit(self, run: _Run, **fields: Any) -> None:
        await self._log.emit(run.log, **fields)

    async def _submit(self, run: _Run, compiled: Any) -> None:
        sub = run.submission
        for plan in compiled.nodes:  # topological order: upstream refs exist
            node = run.nodes[plan.node_id]
            if compiled.impossible and compiled.fail_fast:
                break  # the run fails before anything starts
            if node.state == NodeState.FAILED or any(
                run.nodes[u].out_ref is None for u in plan.upstream
            ):
                continue  # impossible, or downstream of an impossible node
            if plan.node_id in sub.reuse:
                node.out_ref, node.info_ref = _load.options(  # type: ignore[misc]
                    name=f"{sub.pipeline_id}/{plan.node_id}", num_cpus=0.1, num_returns=2
                ).remote(sub.reuse[plan.node_id][1])
                continue
            # Inputs first, in the order run() takes them; then the small info objects of
            # ordering-only upstream nodes, so Ray still waits for them without moving their
            # (possibly large) outputs into this worker.
            args = [run.nodes[u].out_ref for u in plan.inputs]
            for up in plan.upstream:
                if up not in plan.inputs:
                    upstream = run.nodes[up]
                    args.append(
                        upstream.info_ref if upstream.info_ref is not None else upstream.out_ref
                    )
            refs = _execute.options(
                name=f"{sub.pipeline_id}/{plan.node_id}", **plan.ray_options
            ).remote(plan.task_plan, *args)
            node.out_ref, node.info_ref = refs

    async def _follow(self, run: _Run, node: _Node) -> None:
        plan = node.plan
        try:
            await self._settle(run, node)
        finally:
            node.done.set()
        if node.state == NodeState.FAILED and run.failed is None:
            run.failed = node.failure
            if plan.fail_fast:
                await self._cancel_nodes(run)

    async def _settle(self, run: _Run, node: _Node) -> None:
        plan = node.plan
        if node.state == NodeState.FAILED:  # impossible resources, found before submission
            node.failure = plan.impossible_failure
            assert node.failure is not None
            await self._emit(
                run,
                kind="node",
                node_id=plan.node_id,
                state=NodeState.FAILED,
                error=node.failure,
                message=node.failure.message,
                end_time=time.time(),
            )
            return
        for up in plan.upstream:
            await run.nodes[up].done.wait()
        ups = [run.nodes[u].state for u in plan.upstream]
        if node.out_ref is None or any(s in (NodeState.FAILED, NodeState.SKIPPED) for s in ups):
            if run.cancelled or (
                node.out_ref is None
                and not any(s in (NodeState.FAILED, NodeState.SKIPPED) for s in ups)
            ):
                await self._end(
                    run, node, NodeState.CANCELLED, "never started: the run was cancelled"
                )
            else:
                await self._end(run, node, NodeState.SKIPPED, "an upstream node failed")
            return
        if any(s == NodeState.CANCELLED for s in ups):
            await self._end(run, node, NodeState.CANCELLED, "an upstream node was cancelled")
            return
        if run.cancelled:  # became ready after the cancel: stop it before (or as) it starts
            await self._stop_task(node)
        if plan.node_id in run.submission.reuse:
            source, _ = run.submission.reuse[plan.node_id]
            try:
                await self._harvester.result(node.info_ref)  # not the output itself
            except Exception as e:
                await self._fail(run, node, e)
                return
            node.state = NodeState.CACHED
            await self._emit(
                run,
                kind="node",
                node_id=plan.node_id,
                state=NodeState.CACHED,
                cached_from=source,
                artifacts=run.submission.reuse[plan.node_id][1],
                end_time=time.time(),
                message=f"node {plan.node_id} reused the output of run {source}",
            )
            return
        try:
            info = await self._await_info(run, node)
        except _Timeout as t:
            await self._fail(run, node, t.error)
            return
        except Exception as e:
            if node.stranded is not None:
                await self._fail_with(run, node, node.stranded)
            elif run.cancelled or node.cancel_sent or isinstance(e, TaskCancelledError):
                await self._end(run, node, NodeState.CANCELLED, "cancelled")
            else:
                await self._fail(run, node, e)
            return
        await self._running(
            run,
            node,
            info.attempt,
            info.start_time,
            info.ray_task_id,
            info.ray_node_id,
            info.ray_node_address,
        )
        node.output_stored = info.output_stored
        node.state = NodeState.SUCCEEDED
        await self._emit(
            run,
            kind="node",
            node_id=plan.node_id,
            state=NodeState.SUCCEEDED,
            attempt=info.attempt,
            metrics=info.metrics,
            artifacts=info.artifacts,
            notes=tuple(dict.fromkeys((*plan.notes, *info.notes))),
            ray_task_id=info.ray_task_id,
            ray_node_id=info.ray_node_id,
            ray_node_address=info.ray_node_address,
            start_time=info.start_time,
            end_time=info.end_time,
            message=f"node {plan.node_id} succeeded",
        )

    async def _await_info(self, run: _Run, node: _Node) -> NodeOutcome:
        timeout = node.plan.timeout_s
        if not timeout:
            return await self._harvester.result(node.info_ref)  # type: ignore[no-any-return]
        waiter = asyncio.ensure_future(self._harvester.result(node.info_ref))
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=0.2)
            if done:
                return waiter.result()
            if node.state == NodeState.RUNNING and time.time() - node.started_at > timeout:
                await self._stop_task(node)
                raise _Timeout(
                    TimeoutError(
                        f"node {node.plan.node_id} ran longer than its timeout of {timeout:g} s"
                    )
                )

    async def _upstream_reported(self, run: _Run, node: _Node) -> None:
        """Wait until every upstream node's final state change is emitted, so that watchers
        never see a node running before the nodes it depends on have ended.

        A running node's upstream tasks have finished (Ray ran it on their results), so their
        results are ready: the harvester is woken to collect them at once rather than at its
        next poll.
        """
        pending = [run.nodes[u].done for u in node.plan.upstream if not run.nodes[u].done.is_set()]
        if not pending:
            return
        self._harvester.wake()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(done.wait() for done in pending)), UPSTREAM_REPORT_WAIT_S
            )
        except TimeoutError:
            log.warning(
                "run %s: node %s runs while an upstream node's end is not reported yet",
                run.submission.run_id,
                node.plan.node_id,
            )

    async def _running(
        self,
        run: _Run,
        node: _Node,
        attempt: int,
        start_time: float,
        task_id: str,
        ray_node_id: str = "",
        ray_node_address: str = "",
    ) -> None:
        """The RUNNING state change of an attempt that ended before it reported one (see
        :mod:`ray_nodes.engine.task`), so that watchers see every state change."""
        if node.state == NodeState.RUNNING and node.attempt >= attempt:
            return  # reported already (or a late report of an earlier attempt)
        node.state, node.attempt, node.started_at = NodeState.RUNNING, attempt, start_time
        await self._emit(
            run,
            kind="node",
            node_id=node.plan.node_id,
            state=NodeState.RUNNING,
            attempt=attempt,
            ray_task_id=task_id,
            ray_node_id=ray_node_id,
            ray_node_address=ray_node_address,
            start_time=start_time,
            message=f"node {node.plan.node_id} running (attempt {attempt})",
        )

    async def _fail(self, run: _Run, node: _Node, exc: BaseException) -> None:
        cause = exc.cause if isinstance(exc, RayTaskError) else exc
        if isinstance(cause, NodeError) and cause.attempt and cause.start_time:
            await self._running(
                run, node, cause.attempt, cause.start_time, cause.ray_task_id, *cause.ray_node
            )
        await self._fail_with(run, node, _failure(node.plan.node_id, exc))

    async def _fail_with(self, run: _Run, node: _Node, failure: NodeFailure) -> None:
        node.failure = failure
        node.state = NodeState.FAILED
        await self._emit(
            run,
            kind="node",
            node_id=node.plan.node_id,
            state=NodeState.FAILED,
            attempt=node.attempt,
            error=failure,
            end_time=time.time(),
            message=f"node {node.plan.node_id} failed: {failure.message}",
        )

    async def _end(self, run: _Run, node: _Node, state: NodeState, message: str) -> None:
        node.state = state
        await self._emit(
            run,
            kind="node",
            node_id=node.plan.node_id,
            state=state,
            attempt=node.attempt,
            end_time=time.time(),
            message=f"node {node.plan.node_id} {state.lower()}: {message}",
        )

    async def _stop_task(self, node: _Node) -> None:
        """Interrupt a node's task, then kill its worker if it ignores the interrupt.

        Only tasks whose upstream nodes have all finished are cancelled: a task still waiting
        for its arguments fails by itself once an upstream is cancelled (and cancelling such a
        task can crash the owner in Ray 2.60).
        """
        if node.cancel_sent:
            return
        node.cancel_sent = True
        ray.cancel(node.out_ref, force=False)
        waiter = asyncio.ensure_future(_settled(node.info_ref))
        done, _ = await asyncio.wait({waiter}, timeout=CANCEL_GRACE_S)
        if not done:  # the node ignores KeyboardInterrupt: kill its worker
            try:
                ray.cancel(node.out_ref, force=True)
            except Exception:
                log.debug("force cancel failed", exc_info=True)

    async def _watch_capacity(self) -> None:
        """While runs are driven: fail the nodes that no alive node of the cluster can hold
        any more (see the module's docstring)."""
        while any(not run.terminal for run in self._runs.values()):
            await asyncio.sleep(CAPACITY_CHECK_S)
            waiting = [
                (run, node)
                for run in self._runs.values()
                if not run.terminal and not run.cancelled
                for node in run.nodes.values()
                if node.state not in TERMINAL_NODE_STATES
                and node.stranded is None
                and node.out_ref is not None
                and node.plan.node_id not in run.submission.reuse
                and all(run.nodes[u].done.is_set() for u in node.plan.upstream)
            ]
            if not waiting:
                continue
            try:
                capacity = await asyncio.to_thread(cluster_capacity)
                scaler = await asyncio.to_thread(autoscaling)
            except Exception:
                log.warning("reading the cluster's nodes failed; checking again", exc_info=True)
                continue
            now = time.monotonic()
            for run, node in waiting:
                demand = node.plan.demand
                why = missing_resources(demand, capacity)
                if why is None:
                    node.unplaceable_since = 0.0
                    continue
                node.unplaceable_since = node.unplaceable_since or now
                waited = now - node.unplaceable_since
                if scaler is None:
                    reason = "the nodes that could run it have left the cluster"
                elif scaler.may_add(demand):
                    if waited < run.submission.capacity_wait_s:
                        continue  # the autoscaler may add a node that can hold it
                    reason = f"the autoscaler added no node that holds it in {waited:.0f} s"
                else:  # it refuses the demand
                    reason = "the cluster's autoscaler can add no node that holds it"
                node.stranded = NodeFailure(
                    node.plan.node_id,
                    RESOURCE_ERROR,
                    f"node {node.plan.node_id!r} asks for {why} ({describe_capacity(capacity)}): "
                    + reason,
                )
                log.warning("run %s: %s", run.submission.run_id, node.stranded.message)
                stopping = asyncio.ensure_future(self._stop_task(node))  # _settle reports it
                self._stopping.add(stopping)
                stopping.add_done_callback(self._stopping.discard)

    async def _cancel_nodes(self, run: _Run) -> None:
        ready = [
            n
            for n in run.nodes.values()
            if n.state not in TERMINAL_NODE_STATES
            and n.out_ref is not None
            and all(run.nodes[u].done.is_set() for u in n.plan.upstream)
        ]
        await asyncio.gather(*(self._stop_task(n) for n in ready), return_exceptions=True)

    async def _finish(self, run: _Run) -> None:
        states = {n.state for n in run.nodes.values()}
        if run.cancelled:
            state, error = (
                RunState.CANCELLED,
                NodeFailure("", "raypipe.RunCancelled", "the run was cancelled"),
            )
        elif states <= {NodeState.SUCCEEDED, NodeState.CACHED}:
            state, error = RunState.SUCCEEDED, None
        else:
            state = RunState.FAILED
            error = run.failed or NodeFailure("", "raypipe.RunFailed", "a node did not succeed")
            if error.node_id:
                error = replace(error, message=f"node {error.node_id} failed: {error.message}")
        if state != RunState.SUCCEEDED:
            await self._store_outputs(run)
        run.terminal = True
        await self._emit(run, kind="run", state=state, error=error, message=f"run {state.lower()}")

    async def _store_outputs(self, run: _Run) -> None:
        """Write the outputs of the nodes that succeeded, which the run kept only in Ray's
        object store (``keep_outputs`` ``on_failure``), so that RetryRun can reuse them. One
        task each, in parallel, before the run's final state is reported."""
        sub = run.submission
        pending = [
            n
            for n in run.nodes.values()
            if n.state == NodeState.SUCCEEDED and not n.output_stored and n.out_ref is not None
        ]
        if not pending:
            return
        refs = [
            _store_later.options(
                name=f"{sub.pipeline_id}/{n.plan.node_id}/store", num_cpus=0, max_retries=1
            ).remote(
                n.out_ref,
                root=sub.artifact_root,
                run_id=sub.run_id,
                node_id=n.plan.node_id,
                kind=n.plan.task_plan.output_kind,
            )
            for n in pending
        ]
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*refs, return_exceptions=True), STORE_OUTPUTS_TIMEOUT_S
            )
        except TimeoutError:
            results = [TimeoutError("storing took too long")] * len(pending)
        for node, result in zip(pending, results, strict=True):
            node_id = node.plan.node_id
            if isinstance(result, BaseException):
                message = (
                    f"could not store the output of node {node_id} ({result}); "
                    "a retry of this run will execute it again"
                )
                await self._emit(run, kind="progress", node_id=node_id, message=message)
                continue
            node.output_stored = True
            await self._emit(
                run,
                kind="progress",
                node_id=node_id,
                artifacts=(result,),
                message=f"stored the output of node {node_id}, for a retry of this run",
            )


class _Timeout(RayNodesError):
    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


async def _settled(ref: Any) -> None:
    try:
        await ref
    except Exception:
        return


def _failure(node_id: str, exc: BaseException) -> NodeFailure:
    """The user's exception behind Ray's wrapping: type, message, traceback from the task."""
    cause: BaseException = exc
    if isinstance(exc, RayTaskError):
        cause = exc.cause if exc.cause is not None else exc
    if isinstance(cause, NodeError):
        return NodeFailure(node_id, cause.type_name, cause.message, cause.tb, cause.log_tail)
    kind = type(cause)
    return NodeFailure(node_id, f"{kind.__module__}.{kind.__qualname__}", str(cause), "")
