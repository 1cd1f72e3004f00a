"""Node logs through real runs on the session's Ray cluster: what nodes write (their Python
code and the C++ libraries they call), per attempt, read back by GetNodeLogs, followed by
WatchNodeLogs, and through the SDK and the CLI; and the capture inside a real Ray worker."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pandas as pd
import pytest
import ray
import sklearn.datasets

import raypipe
from control_plane.server import ControlPlane
from ray_nodes.engine.capture import captured
from ray_nodes.logs import LogWriter, read_log
from raypipe.v1 import node_log_pb2, pipeline_spec_pb2, run_pb2
from raypipe.v1 import run_service_pb2 as rpb
from tests.integration.conftest import Api, ServerProcess, expect_error
from tests.integration.sdk_fixtures import Cli
from tests.integration.test_runs import Spec, register, start, wait

Stream = node_log_pb2.LogLine.Stream


@ray.remote(num_cpus=1)
def _chatty(root: str) -> tuple[list[tuple[str, str, str]], str, str]:
    """Write through every channel inside a Ray task with the attempt's capture on; return
    the log read back and the files the worker's stdout and stderr went to (Ray's logs)."""
    out_file, err_file = os.readlink("/proc/self/fd/1"), os.readlink("/proc/self/fd/2")
    writer = LogWriter(root, "r", "chatty", 1)
    libc = ctypes.CDLL(None)
    with captured(writer):
        print("chatty: to stdout")
        print("chatty: to stderr", file=sys.stderr)
        logging.getLogger("chatty").info("chatty: info")
        logging.getLogger("chatty").error("chatty: error")
        libc.printf(b"chatty: printf from C\n")
        libc.fflush(None)
        os.write(2, b"chatty: straight to fd 2\n")
    writer.close()
    lines = read_log(root, "r", "chatty", 1).lines
    return [(line.stream, line.level, line.text) for line in lines], out_file, err_file


def test_capture_in_a_ray_worker_keeps_every_channel_and_rays_own_logs(
    ray_head: Any, tmp_path: Path
) -> None:
    if not ray.is_initialized():  # join the session's head, as the engine does
        ray.init(address=ray_head.address, log_to_driver=False, configure_logging=False)
    lines, out_file, err_file = ray.get(_chatty.remote(str(tmp_path)), timeout=60)
    assert lines == [
        ("stdout", "", "chatty: to stdout"),
        ("stderr", "", "chatty: to stderr"),
        ("logging", "INFO", "chatty: info"),
        ("logging", "ERROR", "chatty: error"),
        ("stdout", "", "chatty: printf from C"),
        ("stderr", "", "chatty: straight to fd 2"),
    ]
    # Ray's worker log files still get it all (its dashboard and log monitor read them).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out, err = Path(out_file).read_text(), Path(err_file).read_text()
        if "chatty: printf from C" in out and "chatty: straight to fd 2" in err:
            break
        time.sleep(0.1)
    assert "chatty: to stdout" in out
    assert "chatty: printf from C" in out
    assert "chatty: to stderr" in err
    assert "ERROR chatty: chatty: error" in err


def iris(path: Path) -> Path:
    frame = sklearn.datasets.load_iris(as_frame=True).frame
    frame.to_csv(path, index=False)
    return path


def chatty_spec(data: Path) -> Spec:
    """A LightGBM trainer with verbose=1 (its C++ logger writes to fd 1), one that LightGBM
    refuses (saying why on fd 1 first), and a loader of a missing file retried once."""
    spec = Spec()
    spec.nodes.add(id="load", type="data_loader").params.update({"path": str(data)})
    split = spec.nodes.add(id="split", type="train_test_split", depends_on=["load"])
    split.params.update({"target": "target", "test_size": 0.3, "random_state": 0})
    train = spec.nodes.add(id="train", type="model_trainer", depends_on=["split"])
    train.params.update(
        {
            "backend": "lightgbm",
            "task": "classification",
            "hyperparameters": {"verbose": 1, "n_estimators": 3},
        }
    )
    bad = spec.nodes.add(id="bad", type="model_trainer", depends_on=["split"])
    bad.params.update(
        {
            "backend": "lightgbm",
            "task": "classification",
            "hyperparameters": {"verbose": 1, "objective": "no_such_objective"},
        }
    )
    missing = spec.nodes.add(id="missing", type="data_loader")
    missing.params.update({"path": str(data.with_name("absent.csv"))})
    missing.retry.max_retries = 1
    missing.retry.initial_backoff.FromMilliseconds(10)
    missing.retry.retry_on.append("FileNotFoundError")
    spec.failure_policy = pipeline_spec_pb2.FAILURE_POLICY_CONTINUE_INDEPENDENT
    return spec


def logs(api: Api, name: str, **fields: Any) -> rpb.GetNodeLogsResponse:
    return api.runs.GetNodeLogs(rpb.GetNodeLogsRequest(name=name, **fields))


def test_node_logs_of_a_real_run(run_api: Api, run_plane: ControlPlane, tmp_path: Path) -> None:
    register(run_api, "chatty", chatty_spec(iris(tmp_path / "iris.csv")))
    run = wait(run_api, start(run_api, "chatty").name, timeout=120)
    nodes = {n.node_id: n for n in run.nodes}
    assert nodes["train"].state == run_pb2.NodeExecution.STATE_SUCCEEDED
    assert nodes["missing"].attempt == 2

    train = logs(run_api, f"{run.name}/nodes/train/attempts/1/logs")
    assert train.complete
    assert train.next_offset == len(train.lines) > 0
    assert [line.offset for line in train.lines] == list(range(len(train.lines)))
    lightgbm = [line for line in train.lines if line.text.startswith("[LightGBM]")]
    assert lightgbm, [line.text for line in train.lines]
    assert {line.stream for line in lightgbm} == {Stream.STREAM_STDOUT}

    # Paging: offsets go on where the last page ended, no line twice.
    paged: list[str] = []
    offset = 0
    while True:
        page = logs(run_api, f"{run.name}/nodes/train/attempts/1/logs", offset=offset, limit=2)
        paged += [line.text for line in page.lines]
        offset = page.next_offset
        if page.complete:
            break
        assert len(page.lines) == 2
    assert paged == [line.text for line in train.lines]

    # Each retry is an attempt of its own, with why it failed.
    for attempt in (1, 2):
        failed = logs(run_api, f"{run.name}/nodes/missing/attempts/{attempt}/logs")
        assert failed.complete
        assert failed.lines[0].stream == Stream.STREAM_RAYPIPE
        assert failed.lines[0].text == f"attempt {attempt} failed:"
        assert any("FileNotFoundError" in line.text for line in failed.lines)

    # A failed node's last lines are in its error, and so in the run's error summary.
    bad = nodes["bad"]
    assert bad.state == run_pb2.NodeExecution.STATE_FAILED
    assert any(line.startswith("[LightGBM] [Fatal]") for line in bad.error.log_tail), bad.error
    whole = logs(run_api, f"{run.name}/nodes/bad/attempts/1/logs")
    assert (
        list(bad.error.log_tail)
        == [line.text for line in whole.lines if line.stream != Stream.STREAM_RAYPIPE][-10:]
    )

    # A node that wrote nothing reads as an empty, complete log.
    quiet = logs(run_api, f"{run.name}/nodes/split/attempts/1/logs")
    assert (list(quiet.lines), quiet.complete, quiet.next_offset) == ([], True, 0)

    # Following an ended attempt from an offset gives the rest, once, and ends.
    followed = list(
        run_api.runs.WatchNodeLogs(
            rpb.WatchNodeLogsRequest(name=f"{run.name}/nodes/train/attempts/1/logs", offset=2),
            timeout=30,
        )
    )
    assert [line.offset for m in followed for line in m.lines] == list(range(2, len(train.lines)))
    assert followed[-1].complete


def test_node_log_errors(run_api: Api, tmp_path: Path) -> None:
    register(run_api, "quiet", chatty_spec(iris(tmp_path / "iris.csv")))
    run = wait(run_api, start(run_api, "quiet").name, timeout=120)
    not_found = grpc.StatusCode.NOT_FOUND
    missing_run = expect_error(
        run_api.runs.GetNodeLogs,
        rpb.GetNodeLogsRequest(name="runs/nope/nodes/train/attempts/1/logs"),
        not_found,
    )
    assert missing_run.reason == "RUN_NOT_FOUND"
    node = expect_error(
        run_api.runs.GetNodeLogs,
        rpb.GetNodeLogsRequest(name=f"{run.name}/nodes/nope/attempts/1/logs"),
        not_found,
    )
    assert (node.reason, node.metadata["node"]) == ("NODE_NOT_FOUND", "nope")
    attempt = expect_error(
        run_api.runs.GetNodeLogs,
        rpb.GetNodeLogsRequest(name=f"{run.name}/nodes/missing/attempts/3/logs"),
        not_found,
    )
    assert attempt.reason == "ATTEMPT_NOT_FOUND"
    assert attempt.metadata["attempts"] == "2"
    for name, field in [
        (f"{run.name}/nodes/train/logs", "name"),
        (f"{run.name}/nodes/train/attempts/0/logs", "name"),
        ("", "name"),
    ]:
        bad = expect_error(
            run_api.runs.GetNodeLogs,
            rpb.GetNodeLogsRequest(name=name),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert field in bad.violations, (name, bad.violations)
    for request, field in [
        (rpb.GetNodeLogsRequest(name=f"{run.name}/nodes/train/attempts/1/logs", offset=-1), "offset"),
        (rpb.GetNodeLogsRequest(name=f"{run.name}/nodes/train/attempts/1/logs", limit=10_001), "limit"),
    ]:  # fmt: skip
        bad = expect_error(run_api.runs.GetNodeLogs, request, grpc.StatusCode.INVALID_ARGUMENT)
        assert field in bad.violations
    watched = expect_error(
        lambda r: list(run_api.runs.WatchNodeLogs(r, timeout=10)),
        rpb.WatchNodeLogsRequest(name=f"{run.name}/nodes/nope/attempts/1/logs"),
        not_found,
    )
    assert watched.reason == "NODE_NOT_FOUND"


def test_sdk_and_cli_read_and_follow_node_logs(
    run_api: Api, run_plane: ControlPlane, tmp_path: Path
) -> None:
    register(run_api, "sdklogs", chatty_spec(iris(tmp_path / "iris.csv")))
    run = wait(run_api, start(run_api, "sdklogs").name, timeout=120)
    address = f"127.0.0.1:{run_plane.port}"
    with raypipe.Client(address) as client:
        page = client.get_node_logs(run, "train")
        followed = list(client.follow_node_logs(run, "train", timeout=30))
        assert [line.text for line in followed] == [line.text for line in page.lines]
        last = client.get_node_logs(run.name, "missing")  # the last attempt by default
        assert last.lines[0].text == "attempt 2 failed:"
        first = client.get_node_logs(run.name, "missing", attempt=1)
        assert first.lines[0].text == "attempt 1 failed:"
        with pytest.raises(raypipe.NotFoundError) as info:
            client.get_node_logs(run, "nope")
        assert info.value.reason == "NODE_NOT_FOUND"

    cli = Cli(address)
    result = cli(f"runs logs {run.name} train")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [line.text for line in page.lines]
    timed = cli(f"runs logs {run.name.removeprefix('runs/')} missing --attempt 1 -t")
    assert timed.exit_code == 0, timed.output
    assert " raypipe attempt 1 failed:" in timed.stdout.splitlines()[0]
    follow = cli(f"runs logs {run.name} train -f -o json")
    assert follow.exit_code == 0, follow.output
    assert len(follow.stdout.splitlines()) == len(page.lines)
    recent = cli(f"runs logs {run.name} train --since 1h")
    assert recent.stdout == result.stdout
    assert cli(f"runs logs {run.name} train --since 2999-01-01T00:00:00Z").stdout == ""
    bad = cli(f"runs logs {run.name} train --since yesterday")
    assert bad.exit_code == 2
    assert "--since" in bad.output
    shown = cli(f"runs get {run.name}")
    assert "last lines of its log:" in shown.stdout
    missing = cli(f"runs logs {run.name} nope")
    assert missing.exit_code != 0
    assert "NODE_NOT_FOUND" in missing.output


def test_a_node_killed_by_its_timeout_keeps_what_was_flushed(run_api: Api, tmp_path: Path) -> None:
    """A LightGBM trainer that is still writing when its timeout ends it: the lines flushed
    before (once a second) are kept, and the log reads as complete once the node failed."""
    frame = pd.DataFrame({"x": range(200_000), "target": [i % 2 for i in range(200_000)]})
    frame.to_csv(tmp_path / "big.csv", index=False)
    spec = Spec()
    spec.nodes.add(id="load", type="data_loader").params.update({"path": str(tmp_path / "big.csv")})
    split = spec.nodes.add(id="split", type="train_test_split", depends_on=["load"])
    split.params.update({"target": "target", "test_size": 0.5, "random_state": 0})
    train = spec.nodes.add(id="train", type="model_trainer", depends_on=["split"])
    train.params.update(
        {
            "backend": "lightgbm",
            "task": "classification",
            "hyperparameters": {"verbose": 2, "n_estimators": 100_000, "num_leaves": 2},
        }
    )
    train.timeout.FromSeconds(4)
    register(run_api, "killed", spec)
    run = wait(run_api, start(run_api, "killed").name, timeout=120)
    node = next(n for n in run.nodes if n.node_id == "train")
    assert node.state == run_pb2.NodeExecution.STATE_FAILED, node
    kept = logs(run_api, f"{run.name}/nodes/train/attempts/1/logs", limit=10_000)
    assert kept.complete
    assert any(line.text.startswith("[LightGBM]") for line in kept.lines)


def test_follow_shows_lines_as_the_node_writes_them(run_api: Api, tmp_path: Path) -> None:
    """An MLP that prints its loss each iteration (about 0.05 s apart, 60 of them), followed
    from before it starts: lines arrive in several batches while it runs, each line once, and
    the stream ends with the node."""
    rng = pd.DataFrame(
        {f"x{i}": [(j * (i + 3)) % 97 / 97 for j in range(60_000)] for i in range(10)}
    )
    rng["target"] = (rng["x0"] > 0.5).astype(int)
    rng.to_csv(tmp_path / "mlp.csv", index=False)
    spec = Spec()
    spec.nodes.add(id="load", type="data_loader").params.update({"path": str(tmp_path / "mlp.csv")})
    split = spec.nodes.add(id="split", type="train_test_split", depends_on=["load"])
    split.params.update({"target": "target", "test_size": 0.2, "random_state": 0})
    train = spec.nodes.add(id="train", type="model_trainer", depends_on=["split"])
    train.params.update(
        {
            "backend": "sklearn",
            "task": "classification",
            "estimator": "MLPClassifier",
            "hyperparameters": {
                "verbose": True,
                "max_iter": 60,
                "tol": 0,
                "n_iter_no_change": 1000,
                "hidden_layer_sizes": [64],
            },
        }
    )
    register(run_api, "follow", spec)
    run = start(run_api, "follow")
    arrivals: list[tuple[float, int]] = []
    offsets: list[int] = []
    request = rpb.WatchNodeLogsRequest(name=f"{run.name}/nodes/train/attempts/1/logs")
    last = None
    for message in run_api.runs.WatchNodeLogs(request, timeout=180):
        arrivals.append((time.time(), len(message.lines)))
        offsets += [line.offset for line in message.lines]
        last = message
    assert last is not None
    assert last.complete
    final = wait(run_api, run.name, timeout=60)
    node = next(n for n in final.nodes if n.node_id == "train")
    assert node.state == run_pb2.NodeExecution.STATE_SUCCEEDED
    assert offsets == list(range(len(offsets)))
    lines = logs(run_api, f"{run.name}/nodes/train/attempts/1/logs", limit=10_000).lines
    assert len(lines) == len(offsets)
    iterations = [line for line in lines if line.text.startswith("Iteration ")]
    assert len(iterations) == 60
    ended = node.end_time.ToMicroseconds() / 1e6
    live = [n for at, n in arrivals if n and at < ended]
    assert len(live) >= 2, (arrivals, ended)  # batches came while the node still ran


def test_the_log_survives_a_kill9_of_the_control_plane(ray_head: Any, tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "data",
        "--ray-address",
        ray_head.address,
        "--data-root",
        str(tmp_path),
        env=ray_head.client_env(),
    )
    api = Api.connect(server.start())
    try:
        register(api, "survivor", chatty_spec(iris(tmp_path / "iris.csv")))
        run = wait(api, start(api, "survivor").name, timeout=120)
        name = f"{run.name}/nodes/train/attempts/1/logs"
        before = logs(api, name)
        assert before.complete
        assert before.lines
        api.channel.close()
        server.kill9()
        api = Api.connect(server.start())
        after = logs(api, name)
        assert list(after.lines) == list(before.lines)
        assert after.complete
    finally:
        api.channel.close()
        if server.proc is not None and server.proc.poll() is None:
            server.terminate()
