"""The run supervisor's ``poll``, driven directly on an event loop (no Ray cluster needed: poll
and the event log are plain asyncio).

A poll that had to wait gathers a burst of events for POLL_COALESCE_S, but the final event of
a run it follows must not sit out the rest of that window.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest

from ray_nodes.engine import event_log
from ray_nodes.engine.supervisor import Supervisor
from ray_nodes.engine.types import RunSubmission


def _supervisor(*run_ids: str) -> Supervisor:
    sup = Supervisor("test")
    for run_id in run_ids:
        submission = RunSubmission(
            run_id=run_id,
            run_name=f"runs/{run_id}",
            pipeline_id="p",
            spec=b"",
            parameters={},
            artifact_root="/nonexistent",
        )
        asyncio.get_event_loop().run_until_complete(sup.register(submission))
    return sup


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()


def test_a_gathering_poll_returns_when_its_run_ends(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A window far longer than the test's patience: only the run's end can end this poll.
    monkeypatch.setattr(event_log, "POLL_COALESCE_S", 600.0)
    sup = _supervisor("r1")
    run = sup._runs["r1"]

    async def scenario() -> list[tuple[str, str, str]]:
        poll = asyncio.ensure_future(sup.poll({"r1": 0}, 30))
        await asyncio.sleep(0.05)  # the poll waits for a first event
        await sup._emit(run, kind="run", state="RUNNING")
        await sup._emit(run, kind="node", node_id="a", state="RUNNING")
        await asyncio.sleep(0.05)  # the poll is gathering now
        await sup._emit(run, kind="node", node_id="a", state="SUCCEEDED")
        await sup._emit(run, kind="run", state="SUCCEEDED")
        found, unknown = await asyncio.wait_for(poll, 20)
        assert unknown == []
        return [(e.kind, e.node_id, e.state) for e in found["r1"]]

    assert loop.run_until_complete(scenario()) == [
        ("run", "", "RUNNING"),
        ("node", "a", "RUNNING"),
        ("node", "a", "SUCCEEDED"),
        ("run", "", "SUCCEEDED"),
    ]


def test_another_runs_end_does_not_cut_the_window_short(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll for r1 wakes when r2 ends, finds r1 still going, and keeps gathering: the event
    r1 emits after r2's end is in the same reply."""
    monkeypatch.setattr(event_log, "POLL_COALESCE_S", 0.5)
    sup = _supervisor("r1", "r2")
    r1, r2 = sup._runs["r1"], sup._runs["r2"]

    async def scenario() -> list[tuple[str, str, str]]:
        poll = asyncio.ensure_future(sup.poll({"r1": 0}, 30))
        await asyncio.sleep(0.05)
        await sup._emit(r1, kind="node", node_id="a", state="RUNNING")
        await asyncio.sleep(0.05)
        await sup._emit(r2, kind="run", state="FAILED")
        await asyncio.sleep(0.05)
        assert not poll.done()
        await sup._emit(r1, kind="node", node_id="a", state="SUCCEEDED")
        found, _ = await asyncio.wait_for(poll, 20)
        assert set(found) == {"r1"}
        return [(e.kind, e.node_id, e.state) for e in found["r1"]]

    assert loop.run_until_complete(scenario()) == [
        ("node", "a", "RUNNING"),
        ("node", "a", "SUCCEEDED"),
    ]


def test_a_burst_is_gathered_into_one_reply(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_log, "POLL_COALESCE_S", 0.3)
    sup = _supervisor("r1")
    run = sup._runs["r1"]

    async def scenario() -> int:
        poll = asyncio.ensure_future(sup.poll({"r1": 0}, 30))
        await asyncio.sleep(0.05)
        for i in range(50):
            await sup._emit(run, kind="node", node_id=f"n{i}", state="SUCCEEDED")
            await asyncio.sleep(0)
        found, _ = await asyncio.wait_for(poll, 20)
        return len(found["r1"])

    assert loop.run_until_complete(scenario()) == 50


def test_events_already_waiting_are_gathered_too(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll that finds events at once (the caller was busy storing the previous batch)
    still gathers until the oldest is POLL_COALESCE_S old: a chain of quick nodes becomes a
    few batches, not one per round trip."""
    monkeypatch.setattr(event_log, "POLL_COALESCE_S", 0.3)
    sup = _supervisor("r1")
    run = sup._runs["r1"]

    async def scenario() -> list[str]:
        await sup._emit(run, kind="node", node_id="a", state="SUCCEEDED")
        poll = asyncio.ensure_future(sup.poll({"r1": 0}, 30))
        await asyncio.sleep(0.05)
        await sup._emit(run, kind="node", node_id="b", state="SUCCEEDED")
        found, _ = await asyncio.wait_for(poll, 20)
        return [e.node_id for e in found["r1"]]

    assert loop.run_until_complete(scenario()) == ["a", "b"]


def test_events_older_than_the_window_go_out_at_once(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_log, "POLL_COALESCE_S", 600.0)
    sup = _supervisor("r1")
    run = sup._runs["r1"]

    async def scenario() -> list[str]:
        await sup._emit(run, kind="node", node_id="a", state="SUCCEEDED")
        run.log.events[0] = dataclasses.replace(
            run.log.events[0], time=run.log.events[0].time - 601
        )
        found, _ = await asyncio.wait_for(sup.poll({"r1": 0}, 30), 20)
        return [e.node_id for e in found["r1"]]

    assert loop.run_until_complete(scenario()) == ["a"]
