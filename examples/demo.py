"""`make run`: raypipe's main job end to end on the embedded defaults.

Starts the control plane (`raypipe serve`: a local Ray head as its own process, SQLite under
`.raypipe/`), writes a small real dataset (scikit-learn's bundled breast-cancer data, with a
few missing values and duplicate rows so the cleaning step has work), applies the example
pipelines, runs each with live progress, prints the metrics, where the model was saved, the
Ray dashboard's URL and the web UI's, and shuts everything down. From a terminal it first
prints each run's page in the web UI and keeps the server up until Ctrl-C, so you can look at
them; without one (CI) it ends at once. Running it again reuses what is there: `apply` only
creates a new version when a pipeline file changed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

import raypipe
from raypipe.v1 import run_pb2

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".raypipe"
RAYPIPE = ".venv/bin/raypipe"
SERVER_DIR = ".raypipe/server"
#: How a newcomer gets into the head's dashboard and Ray's CLI (see docs/quickstart.md).
SIGN_IN = f"{RAYPIPE} dashboard --data-dir {SERVER_DIR}"
RAY_CLI = f'eval "$({RAYPIPE} ray-env --data-dir {SERVER_DIR})"'
PIPELINES = {
    "cancer-xgb": ROOT / "examples" / "pipelines" / "tabular_xgboost.yaml",
    "cancer-lightning": ROOT / "examples" / "pipelines" / "tabular_lightning.yaml",
}


def write_dataset(path: Path) -> None:
    """The breast-cancer data as CSV, with 1% missing values in three columns and 12
    duplicated rows (deterministic), so cleaning and imputation are exercised."""
    frame = load_breast_cancer(as_frame=True).frame
    rng = np.random.default_rng(7)
    for column in ("mean radius", "mean texture", "worst area"):
        frame.loc[rng.choice(frame.index, size=6, replace=False), column] = np.nan
    frame = __import__("pandas").concat([frame, frame.sample(12, random_state=7)])
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    print(f"wrote {len(frame)} rows x {frame.shape[1]} columns to {path.relative_to(ROOT)}")


@dataclass(frozen=True)
class Server:
    """The demo's `raypipe serve`: its process, gRPC address, the Ray dashboard's URL and the
    web UI's (``http://host:port/``, on its HTTP port)."""

    proc: subprocess.Popen[str]
    address: str
    dashboard: str
    web_ui: str


def start_server() -> Server:
    """`raypipe serve` in a child process, once it listens."""
    log = open(WORK / "server.log", "a")  # noqa: SIM115 - the server writes to it until it stops
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "raypipe.cli",
            "serve",
            "--port",
            "0",
            "--http-port",
            "0",
            "--data-dir",
            str(ROOT / SERVER_DIR),
            "--data-root",
            str(WORK / "data"),
            "--stop-ray-on-exit",
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the server is ready (Ray started: seconds)
    match = re.search(r"listening on (\S+)(?: \(Ray dashboard: (\S+)\))?", line)
    if not match:
        raise SystemExit(f"raypipe serve did not start; see {WORK / 'server.log'}")
    address, dashboard = match.group(1), match.group(2) or ""
    print(f"control plane listening on {address}")
    http = proc.stdout.readline().strip()  # serve's HTTP API line
    if http.startswith("HTTP API"):
        print(http)
    ui = proc.stdout.readline().strip()  # serve's web UI line: Web UI: http://host:port/
    web_ui = ui.removeprefix("Web UI: ") if ui.startswith("Web UI: ") else ""
    if web_ui:
        print(f"Web UI: {web_ui} (watch the runs there while the demo runs)")
    if dashboard:
        proc.stdout.readline()  # serve's sign-in hint; the demo prints its own, with paths
        print(f"Ray dashboard: {dashboard}; open it signed in while the demo runs: {SIGN_IN}")
    return Server(proc, address, dashboard, web_ui)


def summarize(client: raypipe.Client, pipeline_id: str) -> tuple[bool, str]:
    """Print the pipeline's latest run; returns whether it succeeded, and its name."""
    run = next(iter(client.list_runs(pipeline=pipeline_id, page_size=1)))
    state = run_pb2.Run.State.Name(run.state).removeprefix("STATE_")
    print(f"\n{pipeline_id}: run {run.name} {state}")
    for node in run.nodes:
        scores = {
            k: v
            for k, v in node.metrics.items()
            if node.node_id == "evaluate"
            and "." not in k
            and k not in ("seconds", "rows_test")
            and not k.endswith(("_seconds", "_bytes", "rows_in", "rows_out"))
        }
        if scores:
            print("  test metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(scores.items())))
        for artifact in node.artifacts:
            if artifact.name in ("model", "feature_importances"):
                print(f"  {artifact.name}: {artifact.uri}")
        for note in node.notes:
            print(f"  {node.node_id}: {note}")
    if run.error.message:
        print(f"  error: {run.error.message}")
    return run.state == run_pb2.Run.State.STATE_SUCCEEDED, run.name


def interactive() -> bool:
    """Whether someone is at a terminal to look at the runs (not CI, not a pipe)."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def show_in_web_ui(server: Server, runs: dict[str, str]) -> None:
    """The web UI's URL; from a terminal, each run's page too, and the server stays up until
    Ctrl-C (or until it stops by itself)."""
    if not server.web_ui:
        return
    print(f"\nWeb UI: {server.web_ui}")
    if not interactive():
        return
    for pipeline_id, run_name in runs.items():  # run_name: runs/{id}, the UI's /runs/{id}
        print(f"  {pipeline_id}: {server.web_ui}{run_name}")
    print(
        "The server stays up so you can look at these runs in the web UI; press Ctrl-C to stop it.",
        flush=True,
    )
    try:
        server.proc.wait()
    except KeyboardInterrupt:
        print()


def main() -> int:
    WORK.mkdir(exist_ok=True)
    write_dataset(WORK / "data" / "breast_cancer.csv")
    server = start_server()
    proc, address, dashboard = server.proc, server.address, server.dashboard
    ok = True
    runs: dict[str, str] = {}  # pipeline id -> its run's name
    try:
        with raypipe.Client(address, timeout=60) as client:
            for pipeline_id, path in PIPELINES.items():
                if not path.exists():
                    continue
                result = client.apply(raypipe.load_spec(path), pipeline=pipeline_id)
                number = result.version.version_number
                print(
                    f"{pipeline_id}: "
                    + ("created pipeline, " if result.pipeline_created else "")
                    + (
                        f"created version {number}"
                        if result.version_created
                        else f"unchanged (version {number})"
                    )
                )
                # The CLI draws the DAG's nodes live while the run goes.
                code = subprocess.call(
                    [
                        sys.executable,
                        "-m",
                        "raypipe.cli",
                        "--address",
                        address,
                        "run",
                        pipeline_id,
                        "--watch",
                    ],
                    cwd=ROOT,
                    env={**os.environ},
                )
                succeeded, runs[pipeline_id] = summarize(client, pipeline_id)
                ok = succeeded and ok and code == 0
        if dashboard:
            print(
                f"\nThe Ray dashboard ({dashboard}) stops with the demo. For one that stays up, "
                f"start the control plane yourself ({RAYPIPE} serve --data-dir {SERVER_DIR}), "
                f"then {SIGN_IN} (Ray's CLI: {RAY_CLI})"
            )
        show_in_web_ui(server, runs)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        print("control plane and local Ray head stopped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
