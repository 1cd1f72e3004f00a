"""The conformance scenario (tests/conformance/scenario.json) with the Python SDK, the
TypeScript client on Node and the Go client, against a real `raypipe serve` process on the
session's Ray cluster; and each language's quickstart example against the same server.

`make test` builds the TypeScript and Go runners first (`make clients`).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.auth import Role, append_token
from ray_nodes.cluster import LocalHead
from tests.conformance import run_all
from tests.integration.conftest import ServerProcess
from tests.tls_certs import Ca

LANGUAGES = ["python", "typescript", "go"]
#: The TypeScript runner again through @raypipe/client/web: Connect over fetch, the HTTP port.
RUNNERS = [*LANGUAGES, "typescript-web"]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, ray_head: LocalHead
) -> Iterator[ServerProcess]:
    """A `raypipe serve` child process (SQLite and MLflow in its data dir), gRPC and HTTP."""
    data = tmp_path_factory.mktemp("conformance") / "data"
    process = ServerProcess(data, "--ray-address", ray_head.address, env=ray_head.client_env())
    process.start()
    assert process.http_address.startswith("http://127.0.0.1:")
    yield process
    process.terminate()


@pytest.fixture(scope="module")
def served(server: ServerProcess) -> str:
    return server.address


def test_every_client_passes_every_step_against_a_tls_and_token_server(
    tmp_path_factory: pytest.TempPathFactory, ray_head: LocalHead
) -> None:
    """The scenario again, each client with TLS (the test's CA) and a bearer token (an
    editor's: every step is within its role), read from RAYPIPE_TLS_CA and RAYPIPE_TOKEN."""
    tmp = tmp_path_factory.mktemp("conformance-tls")
    ca = Ca(tmp / "pki")
    cert = ca.issue("raypipe-server", file_stem="server")
    tokens = tmp / "tokens.yaml"
    token = append_token(tokens, "conformance", Role.EDITOR)
    process = ServerProcess(
        tmp / "data",
        "--ray-address",
        ray_head.address,
        "--tls-cert",
        str(cert.cert),
        "--tls-key",
        str(cert.key),
        "--auth-tokens",
        str(tokens),
        env=ray_head.client_env(),
    )
    process.start()
    try:
        assert process.http_address.startswith("https://127.0.0.1:")
        results = run_all.run(
            process.address, http_address=process.http_address, token=token, tls_ca=str(ca.path)
        )
        report = run_all.table(results, run_all.step_ids())
        print(report)
        assert [r.language for r in results] == RUNNERS
        assert all(r.passed for r in results), report
        assert token not in process.log.read_text()
    finally:
        process.terminate()


def test_every_client_passes_every_step(server: ServerProcess) -> None:
    results = run_all.run(server.address, http_address=server.http_address)
    steps = run_all.step_ids()
    report = run_all.table(results, steps)
    assert [r.language for r in results] == RUNNERS
    for result in results:
        assert result.passed, f"{result.language} failed the conformance scenario:\n{report}"
        assert result.steps == dict.fromkeys(steps, "ok"), report
        assert result.summary == (len(steps), 0), report


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_failing_step_fails_the_runner_and_names_the_language(
    served: str, language: str, tmp_path: Path
) -> None:
    """A scenario whose expectation is wrong: each runner must report that step as failed."""
    scenario = json.loads(run_all.SCENARIO.read_text())
    steps = {step["id"]: step for step in scenario["steps"]}
    wrong = copy.deepcopy(steps["get_missing_run"])
    wrong["expect"]["reason"] = "NOT_THE_REASON"
    scenario["steps"] = [steps["health"], wrong]
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps(scenario))

    [result] = run_all.run(served, scenario=path, languages=[language])
    assert result.returncode == 1, result.output
    assert result.steps["health"] == "ok", result.output
    outcome = result.steps["get_missing_run"]
    assert outcome.startswith("FAIL"), result.output
    assert "RUN_NOT_FOUND" in outcome, result.output
    assert result.summary == (1, 1), result.output
    report = run_all.table([result], ["health", "get_missing_run"])
    assert f"{language} get_missing_run: FAIL" in report
    assert f"{language}: 1 passed, 1 failed (FAILED)" in report


EXAMPLES = {
    "typescript": ["node", str(run_all.TS_BUILD / "examples" / "quickstart.js")],
    "go": [str(run_all.GO_BIN / "quickstart")],
}


@pytest.mark.parametrize("language", sorted(EXAMPLES))
def test_the_quickstart_example_runs_the_diamond(served: str, language: str) -> None:
    argv = EXAMPLES[language]
    env = {**os.environ, "RAYPIPE_ADDRESS": served}
    outputs = []
    for _ in range(2):  # the second apply finds the same spec: no new version
        done = subprocess.run(
            argv,
            cwd=run_all.ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"{language} quickstart failed:\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout.splitlines())
    first, second = outputs
    pipeline = f"pipelines/quickstart-{'ts' if language == 'typescript' else 'go'}"
    assert first[0] == f"applied {pipeline}: {pipeline}/versions/1 (new)"
    assert second[0] == f"applied {pipeline}: {pipeline}/versions/1 (unchanged)"
    for lines in outputs:
        run_name = lines[1].removeprefix("started ")
        assert lines[-1] == f"{run_name} STATE_SUCCEEDED"
        events = [line.split() for line in lines if line.startswith("  ")]
        assert events[0][0] == "snapshot:", lines
        for node in ("extract", "left", "right", "join"):
            seen = [state for name, state in (e[:2] for e in events) if name == node]
            # The first node may already run when the stream's snapshot is taken.
            allowed = [["STATE_RUNNING", "STATE_SUCCEEDED"]]
            if node == "extract":
                allowed.append(["STATE_SUCCEEDED"])
            assert seen in allowed, (node, lines)
        assert events[-1] == ["run", "STATE_SUCCEEDED"]
