"""``raypipe schedules …`` through a real gRPC server on SQLite and PostgreSQL: every command
in every output format, the errors with their fields and exit codes; ``trigger --watch`` on
Ray, and ``runs list --schedule``.

The server of most tests serves the real PipelineService and ScheduleService; its runs are
started by the scheduler tests' FakeStarter (stored PENDING in the real database, no Ray) and
its firing loop is not started, so that nothing fires by itself while a test looks.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
import pytest
import yaml

from control_plane.pipelines.service import PipelineService
from control_plane.schedules.scheduler import Scheduler
from control_plane.schedules.service import ScheduleService
from control_plane.schedules.timing import Clock, FakeClock, SystemClock
from control_plane.storage.schedules import ScheduleRepository
from control_plane.storage.sql import open_repository
from ray_nodes.registry import default_registry
from raypipe._cli_common import EXIT_ERROR, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_USAGE
from raypipe.v1 import pipeline_service_pb2_grpc, schedule_service_pb2_grpc
from tests.integration.sdk_fixtures import (  # noqa: F401 - fixtures
    NOOP_EXAMPLE,
    Cli,
    run_address_fixture,
    run_cli_fixture,
)
from tests.schedule_fakes import FakeStarter

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def serving(db_url: str, clock: Clock) -> Iterator[tuple[Cli, Scheduler]]:
    """The server on ``db_url`` with pipeline ``demo`` applied; its scheduler runs a pass only
    when the test calls ``run_once``."""
    repo = open_repository(db_url)
    schedules = ScheduleRepository.of(repo)
    scheduler = Scheduler(schedules, FakeStarter(repo, clock), clock)  # its loop never starts
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pipeline_service_pb2_grpc.add_PipelineServiceServicer_to_server(
        PipelineService(repo, default_registry()), server
    )
    schedule_service_pb2_grpc.add_ScheduleServiceServicer_to_server(
        ScheduleService(repo, schedules, scheduler), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        cli = Cli(f"127.0.0.1:{port}")
        assert cli(f"apply {NOOP_EXAMPLE} --pipeline demo").exit_code == 0
        yield cli, scheduler
    finally:
        server.stop(0).wait()
        repo.close()


@pytest.fixture(name="cli")
def schedules_cli_fixture(db_url: str) -> Iterator[Cli]:
    with serving(db_url, SystemClock()) as (cli, _):
        yield cli


def squeezed(text: str) -> list[str]:
    """A details table's lines with runs of spaces as one."""
    return [" ".join(line.split()) for line in text.splitlines()]


def ok(cli: Cli, command: str | list[str]) -> str:
    result = cli(command)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_create_paused(cli: Cli) -> None:
    created = ok(cli, "schedules create demo --id later --cron '0 3 * * *' --paused")
    assert created == "created schedule later (paused)\n"
    got = json.loads(ok(cli, "schedules get later -o json"))
    assert got["paused"] is True
    assert got["pause_note"] == "created paused"
    assert "next_fire_time" not in got


def test_create_list_and_get_in_every_format(cli: Cli) -> None:
    created = ok(
        cli,
        "schedules create demo --id nightly --cron '30 2 * * 1-5' --time-zone Europe/Berlin "
        "-p pause=0.2 --overlap-policy buffer_one --catchup-policy all --catchup-window 6h "
        "--jitter 30s --retries 2 --retry-backoff 10s --max-runs 100 --display-name Nightly",
    )
    assert created.startswith("created schedule nightly (next fire ")
    every = json.loads(
        ok(cli, f"schedules create demo --interval 15m --version 1 --start {rfc3339(NOW)} -o json")
    )
    assert every["name"].startswith("schedules/")
    assert every["interval"] == {"every": "900s"}
    assert every["pipeline_version"] == "pipelines/demo/versions/1"
    once = yaml.safe_load(
        ok(
            cli,
            f"schedules create demo --id once --at {rfc3339(NOW + dt.timedelta(days=2))} -o yaml",
        )
    )
    assert once["once"]["at"] == rfc3339(NOW + dt.timedelta(days=2))

    lines = ok(cli, "schedules list").splitlines()
    assert lines[0].split() == [
        "SCHEDULE", "PIPELINE", "TRIGGER", "TIME", "ZONE", "STATE", "NEXT", "FIRE", "LAST", "FIRE"
    ]  # fmt: skip
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"nightly", every["name"].removeprefix("schedules/"), "once"}
    assert rows["nightly"].split()[1:8] == ["demo", "cron", "30", "2", "*", "*", "1-5"]
    assert "Europe/Berlin" in rows["nightly"]
    assert "ACTIVE" in rows["nightly"]
    assert "demo v1" in rows[every["name"].removeprefix("schedules/")]
    assert "every 15m" in rows[every["name"].removeprefix("schedules/")]

    listed = json.loads(ok(cli, "schedules list -o json --pipeline demo"))
    assert [s["name"] for s in listed] == ["schedules/once", every["name"], "schedules/nightly"]
    assert yaml.safe_load(ok(cli, "-o yaml schedules list")) == listed
    assert len(json.loads(ok(cli, "schedules list --limit 1 -o json"))) == 1

    got = squeezed(ok(cli, "schedules get nightly"))
    for line in (
        "trigger cron 30 2 * * 1-5",
        "time zone Europe/Berlin",
        "parameters pause=0.2",
        "overlap buffer_one",
        "catch-up all",
        "catch-up window 6h",
        "jitter 30s",
        "retry 2 retries, first after 10s",
        "max runs 100",
    ):
        assert line in got, (line, got)
    as_json = json.loads(ok(cli, "schedules get schedules/nightly -o json"))
    assert as_json["retry"] == {"max_retries": 2, "initial_backoff": "10s"}
    assert as_json["display_name"] == "Nightly"


def test_get_shows_a_capped_catch_up(db_url: str) -> None:
    t0 = dt.datetime(2026, 6, 1, 8, 0, tzinfo=dt.UTC)
    clock = FakeClock(t0)
    with serving(db_url, clock) as (cli, scheduler):
        for schedule_id, window in (("big", "3h"), ("small", "1h")):
            ok(
                cli,
                f"schedules create demo --id {schedule_id} --cron '* * * * *' "
                f"--catchup-policy all --catchup-window {window} --overlap-policy skip",
            )
        assert not any(
            line.startswith("catch-up note") for line in squeezed(ok(cli, "schedules get big"))
        )
        clock.set(t0 + dt.timedelta(hours=3))  # down for three hours: 180 missed fires
        scheduler.run_once()
        got = squeezed(ok(cli, "schedules get big"))
        notes = [line for line in got if line.startswith("catch-up note ")]
        assert len(notes) == 1, got
        assert "catch-up capped at 100 runs; 80 older missed fires were skipped" in notes[0]
        assert json.loads(ok(cli, "schedules get big -o json"))["catchup_note"] in notes[0]
        # 60 fires in the hour's window: under the cap, no note
        assert not any(
            line.startswith("catch-up note") for line in squeezed(ok(cli, "schedules get small"))
        )


def test_update_pause_resume_and_delete(cli: Cli) -> None:
    ok(
        cli,
        f"schedules create demo --id s --interval 1h --end {rfc3339(NOW + dt.timedelta(days=9))}",
    )
    etag = json.loads(ok(cli, "schedules get s -o json"))["etag"]

    updated = json.loads(
        ok(cli, "schedules update s --cron @daily --clear end --version 1 --jitter 5s -o json")
    )
    assert "interval" not in updated, "a new trigger replaces the old one"
    assert updated["cron"] == {"expression": "@daily"}
    assert "end_time" not in updated
    assert updated["pipeline_version"] == "pipelines/demo/versions/1"
    assert updated["jitter"] == "5s"
    stale = cli(f"schedules update s --max-runs 3 --etag {etag}")
    assert stale.exit_code == EXIT_ERROR, "ABORTED: it changed since that etag"
    assert stale.stderr.startswith("error: ETAG_MISMATCH: ")
    said = ok(cli, "schedules update s --max-runs 3 -p pause=1")
    assert said.startswith("updated schedule s (next fire ")
    assert json.loads(ok(cli, "schedules get s -o json"))["parameters"] == {"pause": 1}

    assert ok(cli, "schedules pause s --note 'db migration'") == "paused schedule s\n"
    assert "PAUSED" in ok(cli, "schedules list")
    assert "pause note db migration" in squeezed(ok(cli, "schedules get s"))
    resumed = json.loads(ok(cli, "schedules resume s --note done -o json"))
    assert resumed.get("paused", False) is False
    assert resumed["pause_note"] == "done"
    assert ok(cli, "schedules delete s") == "deleted schedule s\n"
    assert cli("schedules get s").exit_code == EXIT_NOT_FOUND


def test_trigger_and_backfill(cli: Cli) -> None:
    start = NOW - dt.timedelta(hours=2)
    ok(
        cli,
        f"schedules create demo --id s --interval 10m --start {rfc3339(start)} "
        "--overlap-policy allow_all",
    )
    assert ok(cli, "schedules pause s").strip() == "paused schedule s"
    started = ok(cli, "schedules trigger s")
    assert started.startswith("started runs/")
    assert started.rstrip().endswith("(pipelines/demo/versions/1)")
    run = json.loads(ok(cli, "schedules trigger s -o json"))
    assert run["schedule"] == "schedules/s"

    window = f"--start {rfc3339(start)} --end {rfc3339(start + dt.timedelta(minutes=30))}"
    first = ok(cli, f"schedules backfill s {window}")
    assert first.splitlines()[0].split() == ["RUN", "SCHEDULED", "STATE"]
    assert len(first.splitlines()) == 5
    assert (
        first.splitlines()[-1] == "3 started, 0 had a run already, 0 skipped by the overlap policy"
    )
    again = json.loads(ok(cli, f"schedules backfill s {window} -o json"))
    assert again.get("runs", []) == []
    assert len(again["existing"]) == 3
    assert ok(cli, f"schedules backfill s {window}").strip() == (
        "0 started, 3 had a run already, 0 skipped by the overlap policy"
    )


def test_bad_input_names_the_field_with_its_exit_code(cli: Cli) -> None:
    def refused(command: str, code: int, *texts: str) -> None:
        result = cli(command)
        assert result.exit_code == code, (command, result.output)
        for text in texts:
            assert text in result.stderr, (command, text, result.stderr)

    refused("schedules create demo --cron '61 * * * *'", EXIT_INVALID, "schedule.cron.expression")
    refused(
        "schedules create demo --cron '0 0 3 * * *'",
        EXIT_INVALID,
        "error: ",
        "  schedule.cron.expression: ",
        "6 fields",
    )
    refused(
        "schedules create demo --cron @daily --time-zone Mars/Olympus",
        EXIT_INVALID,
        "schedule.time_zone",
    )
    refused(
        "schedules create demo --interval 1h -p nope=1", EXIT_INVALID, "schedule.parameters['nope']"
    )
    refused("schedules create demo", EXIT_INVALID, "schedule.trigger")
    refused("schedules create demo --id Bad_Id --cron @daily", EXIT_INVALID, "schedule_id")
    refused(
        f"schedules create demo --at {rfc3339(NOW - dt.timedelta(days=1))}",
        EXIT_INVALID,
        "schedule.once.at",
    )
    refused("schedules create ghost --cron @daily", EXIT_NOT_FOUND, "PIPELINE_NOT_FOUND")
    refused("schedules create demo --cron @daily --version 9", EXIT_NOT_FOUND)

    # Checked before any call: usage errors (2) that name the option.
    refused(
        "schedules create demo --cron @daily --interval 1h", EXIT_USAGE, "--cron and --interval"
    )
    refused("schedules create demo --interval 5x", EXIT_USAGE, "--interval", "not a duration")
    refused("schedules create demo --at 2030-01-01T08:00", EXIT_USAGE, "--at", "no zone")
    refused("schedules create demo --at tomorrow", EXIT_USAGE, "--at", "not a time")
    refused("schedules create demo --cron @daily --version latest", EXIT_USAGE, "--version")
    refused("schedules create demo --cron @daily -p novalue", EXIT_USAGE, "key=value")
    refused(
        "schedules create demo --cron @daily --overlap-policy never", EXIT_USAGE, "--overlap-policy"
    )

    ok(cli, "schedules create demo --id s --cron @daily")
    refused("schedules update s", EXIT_USAGE, "nothing to change")
    refused("schedules update s --clear jitter --jitter 1s", EXIT_USAGE, "--clear jitter")
    refused("schedules update s --cron 'x y'", EXIT_INVALID, "schedule.cron.expression")
    for command in ("get", "delete", "pause", "resume", "trigger", "update --cron @hourly"):
        refused(f"schedules {command} ghost", EXIT_NOT_FOUND, "error: ")
    hour_ago = rfc3339(NOW - dt.timedelta(hours=1))
    refused(f"schedules backfill ghost --start {hour_ago} --end {rfc3339(NOW)}", EXIT_NOT_FOUND)
    refused("schedules backfill s --start x --end y", EXIT_USAGE, "--start")


def test_trigger_watch_on_ray_then_runs_list_by_schedule(run_cli: Cli) -> None:
    assert run_cli(f"apply {NOOP_EXAMPLE} --pipeline sched-demo").exit_code == 0
    ok(run_cli, "schedules create sched-demo --id yearly --cron '0 0 1 1 *' -p pause=0.05")
    watched = run_cli("schedules trigger yearly --watch")
    assert watched.exit_code == 0, watched.output
    assert "SUCCEEDED" in watched.stdout
    runs = json.loads(ok(run_cli, "runs list --pipeline sched-demo -o json"))
    assert [r["schedule"] for r in runs] == ["schedules/yearly"]
    assert runs[0]["parameters"] == {"pause": 0.05}

    # runs list --schedule: only the runs the schedule started, with the other filters too
    assert run_cli("run sched-demo -p pause=0.05 --watch").exit_code == 0  # not scheduled
    assert len(json.loads(ok(run_cli, "runs list --pipeline sched-demo -o json"))) == 2
    scheduled = json.loads(ok(run_cli, "runs list --schedule yearly -o json"))
    assert [r["name"] for r in scheduled] == [runs[0]["name"]]
    both = "runs list --schedule schedules/yearly --pipeline sched-demo --version 1"
    assert json.loads(ok(run_cli, f"{both} --state succeeded -o json")) == scheduled
    assert json.loads(ok(run_cli, f"{both} --state failed -o json")) == []
    assert json.loads(ok(run_cli, "runs list --schedule ghost -o json")) == []
    table = ok(run_cli, "runs list --schedule yearly").splitlines()
    assert len(table) == 2
    assert table[1].split()[:2] == [runs[0]["name"].removeprefix("runs/"), "sched-demo"]
