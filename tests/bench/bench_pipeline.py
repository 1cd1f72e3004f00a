"""The tabular pipeline through the node library against a plain one-process script.

Data: a generated CSV of 1,000,000 rows x 20 columns (19 float features with missing values
in five of them, a binary label; 2% of the rows duplicate earlier ones).

Steps, the same on both sides: load -> drop duplicates and fill missing values with means ->
stratified train/test split -> standard scaling -> XGBoost (2 threads) -> accuracy, precision,
recall, f1, ROC AUC on the test set (predicting with 2 threads) -> save the model (XGBoost
JSON) with a SHA-256. The training and evaluating nodes ask for 2 CPUs, as many threads as the
script gives XGBoost.

* Plain: one Python process with pandas, scikit-learn and XGBoost.
* Pipeline: the node classes, each run as a Ray task with its inputs passed as ObjectRefs
  (as the run engine does), on a local Ray with 2 CPUs; the preprocessor fans out.

Each side runs in its own child process, so that its memory can be measured on its own: the
peak, over the run, of the summed proportional set size (PSS, which counts shared memory
such as Ray's object store once) of the child and all its descendants (Ray's raylet, GCS and
workers), sampled every 100 ms. Figures are reported as the peak above the idle process tree
(after imports; for the pipeline, after ``ray.init``) and as the total.

Timing and memory are measured in separate runs, since sampling /proc takes CPU. The pipeline
runs "cold" (right after ``ray.init``: worker processes start and import pandas and XGBoost)
and then "warm" (workers reused, as on a running server); the ratio uses the warm runs, the
cold one is printed too. Memory is measured on a cold run from a fresh Ray, so the object
store starts empty. Last, the preprocessor node alone on the loaded data
with 1 and 2 partitions (the speed-up), and pandas doing the same for reference.

Run with ``python -m tests.bench bench_pipeline`` (``make bench`` runs every benchmark).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.bench._config import repeats, sized

ROWS = sized(1_000_000, 20_000)
FEATURES = 19
SEED = 7
XGB_PARAMS = {"n_estimators": 60, "max_depth": 6, "learning_rate": 0.2, "tree_method": "hist"}
PREPROCESS = {"drop_duplicates": True, "fill_missing": "mean"}
#: fill_missing methods whose preprocessing speed-up is measured: the pipeline's, and a
#: costlier one (value counts of every column with missing values).
FILLS = ("mean", "most_frequent")
REPEATS = repeats(3)


# -- measuring ---------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _session_members(sessions: set[int]) -> list[int]:
    """Processes whose session id is in ``sessions`` (a Ray head started by ``ray start``
    runs in its own session: GCS, raylet and the workers the raylet starts)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sessions:
            members.append(int(entry))
    return members


def tree_pss(pid: int | None = None, sessions: set[int] | None = None) -> int:
    """Summed PSS in bytes of a process and all its descendants, and of every process of
    ``sessions``."""
    pids = set(_tree(pid or os.getpid()))
    if sessions:
        pids.update(_session_members(sessions))
    return sum(_pss(p) for p in pids)


class PeakSampler:
    """Samples :func:`tree_pss` of this process in a thread; :meth:`phase` measures a block."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        #: Process sessions measured besides this process's tree (a separately started Ray).
        self.sessions: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, tree_pss(sessions=self.sessions))

    @contextmanager
    def phase(self, into: dict[str, float]) -> Iterator[None]:
        """Records ``seconds``, ``idle_bytes``, ``peak_bytes`` of the block into ``into``."""
        idle = tree_pss(sessions=self.sessions)
        self.peak = idle
        started = time.perf_counter()
        yield
        into["seconds"] = time.perf_counter() - started
        self.peak = max(self.peak, tree_pss(sessions=self.sessions))
        into["idle_bytes"] = float(idle)
        into["peak_bytes"] = float(self.peak)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


# -- data --------------------------------------------------------------------------------------


def generate_csv(path: Path) -> None:
    """The benchmark's CSV (written with pyarrow: pandas' writer takes ~15 s for it)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(SEED)
    X = rng.normal(size=(ROWS, FEATURES)).round(4)
    noise = rng.normal(scale=0.7, size=ROWS)
    label = (X[:, 0] + X[:, 1] * X[:, 2] - 0.5 * X[:, 3] + noise > 0).astype(np.int64)
    for j in range(5):
        X[rng.random(ROWS) < 0.01, j * 3] = np.nan
    n_dup = ROWS // 50
    source = rng.integers(0, ROWS - n_dup, n_dup)
    X[ROWS - n_dup :] = X[source]
    label[ROWS - n_dup :] = label[source]
    columns = [pa.array(X[:, j], from_pandas=True) for j in range(FEATURES)] + [pa.array(label)]
    names = [f"f{j}" for j in range(FEATURES)] + ["label"]
    pacsv.write_csv(pa.table(columns, names=names), path)


# -- the two sides -----------------------------------------------------------------------------


def plain(csv: Path, out: Path, sampler: PeakSampler | None = None) -> dict[str, Any]:
    """The plain script: every step in this process."""
    import hashlib

    import pandas as pd
    import xgboost
    from sklearn import metrics as skm
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    result: dict[str, Any] = {}
    steps: dict[str, float] = {}
    mark = [time.perf_counter()]

    def lap(step: str) -> None:  # the step's seconds, named as the pipeline's nodes are
        now = time.perf_counter()
        steps[step], mark[0] = now - mark[0], now

    with measured(sampler, result):
        df = pd.read_csv(csv)
        lap("load")
        df = df.drop_duplicates()
        df = df.fillna(df.mean(numeric_only=True))
        lap("clean")
        X, y = df.drop(columns=["label"]), df["label"]
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.25, random_state=SEED, stratify=y
        )
        lap("split")
        scaler = StandardScaler().set_output(transform="pandas").fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
        lap("scale")
        model = xgboost.XGBClassifier(n_jobs=2, random_state=0, **XGB_PARAMS)
        model.fit(X_train, y_train)
        lap("train")
        predicted = model.predict(X_test)
        result["metrics"] = {
            "accuracy": skm.accuracy_score(y_test, predicted),
            "precision": skm.precision_score(y_test, predicted),
            "recall": skm.recall_score(y_test, predicted),
            "f1": skm.f1_score(y_test, predicted),
            "roc_auc": skm.roc_auc_score(y_test, model.predict_proba(X_test)[:, 1]),
        }
        lap("evaluate")
        out.mkdir(parents=True, exist_ok=True)
        model.save_model(out / "model.json")
        digest = hashlib.sha256((out / "model.json").read_bytes()).hexdigest()
        (out / "manifest.json").write_text(json.dumps({"sha256": digest}))
        lap("save")
    result["steps"] = steps
    return result


@contextmanager
def measured(sampler: PeakSampler | None, into: dict[str, Any]) -> Iterator[None]:
    """Time a block; with a sampler, measure its memory too."""
    if sampler is None:
        started = time.perf_counter()
        yield
        into["seconds"] = time.perf_counter() - started
    else:
        with sampler.phase(into):
            yield


def _pipeline_once(csv: Path, artifacts: Path, run: str) -> dict[str, float]:
    import ray

    from ray_nodes.data import output_of
    from ray_nodes.node import NodeContext
    from ray_nodes.nodes.data_loader import DataLoaderNode
    from ray_nodes.nodes.data_preprocessor import DataPreprocessorNode
    from ray_nodes.nodes.feature_scaler import FeatureScalerNode
    from ray_nodes.nodes.model_evaluator import ModelEvaluatorNode
    from ray_nodes.nodes.model_saver import ModelSaverNode
    from ray_nodes.nodes.model_trainer import ModelTrainerNode
    from ray_nodes.nodes.train_test_split import TrainTestSplitNode

    @ray.remote
    def run_node(node: Any, ctx: NodeContext, *inputs: Any) -> Any:
        return output_of(node.run(ctx, list(inputs)))

    def step(node: Any, node_id: str, params: dict[str, Any], *inputs: Any, cpus: int = 1) -> Any:
        ctx = NodeContext(
            run, f"runs/{run}", "bench", node_id, 1, params, float(cpus),
            artifact_root=str(artifacts), data_roots=(csv.parent,),
        )  # fmt: skip
        return run_node.options(num_cpus=cpus, name=f"bench/{node_id}").remote(node, ctx, *inputs)

    # The whole graph is handed to Ray at once, as the engine does.
    loaded = step(DataLoaderNode(), "load", {"path": csv.name})
    clean = step(DataPreprocessorNode(), "clean", PREPROCESS, loaded)
    split = step(
        TrainTestSplitNode(), "split", {"target": "label", "random_state": SEED, "stratify": True},
        clean,
    )  # fmt: skip
    scaled = step(FeatureScalerNode(), "scale", {"method": "standard"}, split)
    trainer = {"backend": "xgboost", "task": "classification", "hyperparameters": XGB_PARAMS}
    model = step(ModelTrainerNode(), "train", trainer, scaled, cpus=2)
    metrics = step(
        ModelEvaluatorNode(), "evaluate", {"feature_importance_top_k": 0}, model, scaled, cpus=2
    )
    saved = step(ModelSaverNode(), "save", {"path": f"models/{run}"}, model)
    result = ray.get(metrics)
    ray.get(saved)
    return result  # type: ignore[no-any-return]


def pipeline(csv: Path, artifacts: Path, sampler: PeakSampler | None = None) -> dict[str, Any]:
    """The node library on a local 2-CPU Ray: a cold run, then warm runs (all timed; with a
    sampler, only the cold run, measured from a fresh Ray), then the preprocessor alone."""
    import pandas as pd
    import ray

    from ray_nodes.cluster import IDLE_WORKER_KEEP_MS
    from ray_nodes.node import NodeContext
    from ray_nodes.nodes.data_preprocessor import DataPreprocessorNode

    # Idle workers are kept as long as on raypipe's own head, so that the bare tasks and the
    # engine run on the same worker pool policy.
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _system_config={"idle_worker_killing_time_threshold_ms": IDLE_WORKER_KEEP_MS},
    )
    result: dict[str, Any] = {"cold": {}}
    with measured(sampler, result["cold"]):
        result["metrics"] = _pipeline_once(csv, artifacts, "cold")
    if sampler is not None:
        ray.shutdown()
        return result
    warm: list[float] = []
    for i in range(REPEATS):
        started = time.perf_counter()
        _pipeline_once(csv, artifacts, f"warm{i}")
        warm.append(time.perf_counter() - started)
    result["warm"] = warm

    @ray.remote(num_cpus=1)
    def preprocess(frame: pd.DataFrame, partitions: int, fill: str) -> float:
        params = {**PREPROCESS, "fill_missing": fill, "partitions": partitions}
        ctx = NodeContext("p", "runs/p", "bench", "clean", 1, params, 1.0)
        started = time.perf_counter()
        DataPreprocessorNode().run(ctx, [frame])
        return time.perf_counter() - started

    frame = pd.read_csv(csv)
    ref = ray.put(frame)
    for fill in FILLS:
        seconds: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(REPEATS + 1):  # the first round warms both paths up and is dropped
            for partitions in (1, 2):
                seconds[partitions].append(ray.get(preprocess.remote(ref, partitions, fill)))
        result[f"preprocess_{fill}"] = {p: statistics.median(s[1:]) for p, s in seconds.items()}
        started = time.perf_counter()
        df = frame.drop_duplicates()
        df.fillna(df.mean(numeric_only=True) if fill == "mean" else df.mode().iloc[0])
        result[f"preprocess_{fill}_pandas"] = time.perf_counter() - started
    ray.shutdown()
    return result


def _spec() -> Any:
    from google.protobuf import json_format

    from raypipe.v1 import pipeline_spec_pb2

    trainer = {"backend": "xgboost", "task": "classification", "hyperparameters": XGB_PARAMS}
    nodes = [
        {"id": "load", "type": "data_loader", "params": {"path": "bench.csv"}},
        {"id": "clean", "type": "data_preprocessor", "depends_on": ["load"], "params": PREPROCESS},
        {"id": "split", "type": "train_test_split", "depends_on": ["clean"],
         "params": {"target": "label", "random_state": SEED, "stratify": True}},
        {"id": "scale", "type": "feature_scaler", "depends_on": ["split"]},
        {"id": "train", "type": "model_trainer", "depends_on": ["scale"], "params": trainer,
         "resources": {"num_cpus": 2}},
        {"id": "evaluate", "type": "model_evaluator", "depends_on": ["train", "scale"],
         "params": {"feature_importance_top_k": 0}, "resources": {"num_cpus": 2}},
        {"id": "save", "type": "model_saver", "depends_on": ["train"], "params": {"path": "model"}},
    ]  # fmt: skip
    return json_format.ParseDict({"nodes": nodes}, pipeline_spec_pb2.PipelineSpec())


def engine(csv: Path, root: Path, sampler: PeakSampler | None = None) -> dict[str, Any]:
    """The pipeline as a run through the control plane and the run engine, on a local Ray
    head started as ``raypipe serve`` starts it: a cold run, then warm runs."""
    import grpc
    import ray

    from control_plane.server import ControlPlane, ServerConfig
    from ray_nodes.cluster import ensure_local_head
    from raypipe.v1 import pipeline_pb2, pipeline_service_pb2_grpc, run_pb2, run_service_pb2_grpc
    from raypipe.v1 import pipeline_service_pb2 as ppb
    from raypipe.v1 import run_service_pb2 as rpb

    head = ensure_local_head(root / "ray", num_cpus=2, dashboard=False)
    plane = ControlPlane(
        ServerConfig(
            data_dir=root / "plane", port=0, ray_address=head.address, data_roots=(csv.parent,)
        )
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{plane.start()}")
    pipelines = pipeline_service_pb2_grpc.PipelineServiceStub(channel)
    runs = run_service_pb2_grpc.RunServiceStub(channel)
    pipelines.CreatePipeline(ppb.CreatePipelineRequest(pipeline_id="bench"))
    pipelines.CreatePipelineVersion(
        ppb.CreatePipelineVersionRequest(
            parent="pipelines/bench", pipeline_version=pipeline_pb2.PipelineVersion(spec=_spec())
        )
    )

    def run_once() -> Any:
        run = runs.CreateRun(rpb.CreateRunRequest(run=run_pb2.Run(pipeline="pipelines/bench"))).run
        for response in runs.WatchRun(rpb.WatchRunRequest(name=run.name)):
            run = response.run
        if run.state != run_pb2.Run.State.STATE_SUCCEEDED:
            raise RuntimeError(f"run {run.name} ended {run.state}: {run.error.message}")
        return run

    result: dict[str, Any] = {"cold": {}}
    try:
        if sampler is not None:
            sampler.sessions.add(head.session_id)
        with measured(sampler, result["cold"]):
            run = run_once()
        if sampler is None:
            warm, nodes = [], []
            for _ in range(REPEATS):
                started = time.perf_counter()
                run = run_once()
                warm.append(time.perf_counter() - started)
                nodes.append({n.node_id: n.metrics["duration_seconds"] for n in run.nodes})
            result["warm"] = warm
            result["nodes"] = {k: statistics.median(n[k] for n in nodes) for k in nodes[0]}
            result["stored_bytes"] = sum(
                a.size_bytes for n in run.nodes for a in n.artifacts if a.name == "output"
            )
        evaluate = next(n for n in run.nodes if n.node_id == "evaluate")
        result["metrics"] = {
            k: evaluate.metrics[k] for k in ("accuracy", "precision", "recall", "f1", "roc_auc")
        }
    finally:
        channel.close()
        plane.stop(grace=1)
        ray.shutdown()
        head.stop()
    return result


# -- driver ------------------------------------------------------------------------------------


def _child(side: str, csv: Path, out: Path, memory: bool = False) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_pipeline", side, str(csv), str(out)]
        + (["--memory"] if memory else []),
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{side} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _durations(seconds: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in seconds.items())


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="raypipe-bench-") as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        csv = data / "bench.csv"
        started = time.perf_counter()
        generate_csv(csv)
        print(
            f"data: {ROWS:,} rows x {FEATURES + 1} columns, {csv.stat().st_size / 2**20:,.0f} MiB "
            f"CSV (generated in {time.perf_counter() - started:.1f} s)",
            flush=True,
        )
        # Timing runs measure no memory: walking /proc would take CPU from the runs.
        plains = [_child("plain", csv, root / "plain") for _ in range(REPEATS)]
        tasks = _child("tasks", csv, root / "tasks")
        runs = _child("engine", csv, root / "engine")
        memory = {
            side: _child(side, csv, root / f"{side}-memory", memory=True)
            for side in ("plain", "tasks", "engine")
        }

    plain_s = statistics.median(p["seconds"] for p in plains)
    print(f"2 CPUs; each side in its own process; times are medians of {REPEATS} runs")
    print(
        f"  plain script                 {plain_s:6.2f} s  ({_list(p['seconds'] for p in plains)})"
    )
    for name, side in (("engine", runs), ("tasks", tasks)):
        label = "run through the engine" if name == "engine" else "node tasks, no engine"
        warm_s = statistics.median(side["warm"])
        print(
            f"  {label:22} warm {warm_s:6.2f} s  ({_list(side['warm'])}); "
            f"cold {side['cold']['seconds']:.2f} s; ratio warm/plain {warm_s / plain_s:.2f} "
            f"(target <= 1.15), cold/plain {side['cold']['seconds'] / plain_s:.2f}"
        )
    print(f"  engine run, node durations (s, median): {_durations(runs['nodes'])}")
    steps = {k: statistics.median(p["steps"][k] for p in plains) for k in plains[0]["steps"]}
    print(f"  plain script, the same steps (s, median): {_durations(steps)}")
    print(f"  engine run, outputs stored per run: {_mib(runs['stored_bytes'])}")
    p_idle, p_peak = memory["plain"]["idle_bytes"], memory["plain"]["peak_bytes"]
    print(f"  peak memory, plain script: {_mib(p_peak)} ({_mib(p_peak - p_idle)} above idle)")
    for name in ("engine", "tasks"):
        idle, peak = memory[name]["cold"]["idle_bytes"], memory[name]["cold"]["peak_bytes"]
        print(
            f"  peak memory, {name:6}: {_mib(peak)} ({_mib(peak - idle)} above idle Ray); "
            f"ratio above idle {(peak - idle) / (p_peak - p_idle):.2f}, totals {peak / p_peak:.2f}"
        )
    reference = plains[0]["metrics"]
    for name, side in (("engine", runs), ("tasks", tasks)):
        same = all(abs(side["metrics"][k] - v) < 1e-12 for k, v in reference.items())
        print(f"  {name} test metrics identical to the plain script's: {same}")
    print(f"  test metrics: { {k: round(v, 6) for k, v in reference.items()} }")
    for fill in FILLS:
        one = tasks[f"preprocess_{fill}"]["1"]
        two = tasks[f"preprocess_{fill}"]["2"]
        pandas_s = tasks[f"preprocess_{fill}_pandas"]
        print(
            f"  preprocessor, drop_duplicates + fill {fill}: 1 partition {one:.2f} s, "
            f"2 partitions {two:.2f} s, speed-up {one / two:.2f} (target >= 1.6); "
            f"pandas on the same frame {pandas_s:.2f} s"
        )


def _list(values: Any) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


SIDES = {"plain": plain, "tasks": pipeline, "engine": engine}


def _side_main() -> None:
    """One side in a child process (see ``_child``): prints its outcome as JSON."""
    side, csv_path, out_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    peak_sampler = PeakSampler(interval=0.1) if "--memory" in sys.argv else None
    outcome = SIDES[side](csv_path, out_dir, peak_sampler)
    if peak_sampler is not None:
        peak_sampler.close()
    print(json.dumps(outcome, default=float))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        _side_main()
    else:
        main()
