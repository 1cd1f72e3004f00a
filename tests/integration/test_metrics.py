"""/metrics on the HTTP port, scraped and parsed with prometheus_client's own parser: the gRPC
server metrics (go-grpc-middleware's names and labels) move with calls, and raypipe's with
runs, nodes, recorded events and schedule fires."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import raypipe
from control_plane.server import ControlPlane, ServerConfig
from ray_nodes.cluster import LocalHead

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(plane: ControlPlane) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{plane.http_port}/metrics", timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, ray_head: LocalHead) -> Iterator[ControlPlane]:
    tmp: Path = tmp_path_factory.mktemp("metrics")
    cp = ControlPlane(
        ServerConfig(data_dir=tmp / "data", port=0, http_port=0, ray_address=ray_head.address)
    )
    cp.start()
    yield cp
    cp.stop(grace=1)


def test_grpc_server_metrics_move_with_calls(plane: ControlPlane) -> None:
    before = scrape(plane)
    grpc_labels = {"grpc_type": "unary", "grpc_service": "raypipe.v1.PipelineService"}
    with raypipe.Client(f"127.0.0.1:{plane.port}") as client:
        for _ in range(3):
            list(client.list_pipelines())
        with pytest.raises(raypipe.NotFoundError):
            client.get_pipeline("no-such-pipeline")
    after = scrape(plane)
    lp = {**grpc_labels, "grpc_method": "ListPipelines"}
    gp = {**grpc_labels, "grpc_method": "GetPipeline"}
    assert (
        value(after, "grpc_server_started_total", **lp)
        - value(before, "grpc_server_started_total", **lp)
        == 3
    )
    ok = value(after, "grpc_server_handled_total", **lp, grpc_code="OK")
    assert ok - value(before, "grpc_server_handled_total", **lp, grpc_code="OK") == 3
    missing = value(after, "grpc_server_handled_total", **gp, grpc_code="NOT_FOUND")
    assert missing - value(before, "grpc_server_handled_total", **gp, grpc_code="NOT_FOUND") == 1
    timed = value(after, "grpc_server_handling_seconds_count", **lp)
    assert timed - value(before, "grpc_server_handling_seconds_count", **lp) == 3
    assert value(after, "grpc_server_handling_seconds_bucket", **lp, le="+Inf") == timed
    received = value(after, "grpc_server_msg_received_total", **lp)
    assert received - value(before, "grpc_server_msg_received_total", **lp) == 3


def test_run_node_event_and_fire_metrics_move_with_runs(plane: ControlPlane) -> None:
    before = scrape(plane)
    spec = {
        "nodes": [{"id": "a", "type": "noop"}, {"id": "b", "type": "noop", "depends_on": ["a"]}]
    }
    with raypipe.Client(f"127.0.0.1:{plane.port}") as client:
        client.apply(spec, pipeline="metered")
        run = client.wait_run(client.create_run("metered"), timeout=120)
        client.create_schedule("metered", every="1s", schedule_id="metered-every-second")
        deadline = time.monotonic() + 60
        while not list(client.list_runs(schedule="metered-every-second")):
            assert time.monotonic() < deadline, "the schedule never fired"
            time.sleep(0.2)
        client.pause_schedule("metered-every-second")
    assert run.state == run.STATE_SUCCEEDED
    deadline = time.monotonic() + 30
    while True:  # the fired run's record lands a moment after its start
        after = scrape(plane)
        if value(after, "raypipe_scheduler_fire_lateness_seconds_count") > value(
            before, "raypipe_scheduler_fire_lateness_seconds_count"
        ):
            break
        assert time.monotonic() < deadline, "no fire lateness was observed"
        time.sleep(0.2)
    succeeded = value(after, "raypipe_runs", state="SUCCEEDED")
    assert succeeded - value(before, "raypipe_runs", state="SUCCEEDED") >= 1
    nodes = value(after, "raypipe_node_duration_seconds_count", node_type="noop", state="succeeded")
    assert (
        nodes
        - value(before, "raypipe_node_duration_seconds_count", node_type="noop", state="succeeded")
        >= 2
    )
    assert value(after, "raypipe_events_recorded_total") > value(
        before, "raypipe_events_recorded_total"
    )
    assert ("raypipe_tracker_queue", ()) in after
    assert ("raypipe_supervisor_backlog_events", ()) in after
    # Every run state is reported, zero or not, so dashboards need no absent() guards.
    states = {dict(labels)["state"] for name, labels in after if name == "raypipe_runs"}
    assert states == {"PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLING", "CANCELLED"}
