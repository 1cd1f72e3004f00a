"""The web UI in headless Chromium against a real ``raypipe serve`` (its own Ray head, SQLite).

Measured, each against a baseline taken in the same run, in the same browser:

1. Time to first complete render of a finished run's page, for a 200-node and a 2,000-node
   fan-out: from navigation start until every node of the graph is drawn with its final state
   and the progress bar reads "N / N". Baseline: the run history page (``/runs``) until its
   table is drawn. Reported: milliseconds and the ratio to the baseline.
2. Frame times while a 1,000-node fan-out streams its events to an open run page (the page
   is opened as the run starts and followed until it ends): p50, p95 and the longest frame.
   Baseline: the same page, idle, once the run has ended. Reported: milliseconds and the
   p95 ratio.
3. The production bundle: every file under clients/web/dist/assets, raw and gzip-compressed
   (what the server sends).

Nothing here asserts a time. ``BENCH_QUICK=1`` uses 50-, 300- and 200-node runs.
"""

from __future__ import annotations

import gzip
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import raypipe
from raypipe.v1 import pipeline_spec_pb2, run_pb2
from tests.bench._config import QUICK, sized
from tests.browser import CHROMIUM_ARGS, VIEWPORT, chromium_path

SMALL = sized(200, 50)
LARGE = sized(2000, 300)
STREAMED = sized(1000, 200)
DIST = Path(__file__).resolve().parents[2] / "clients" / "web" / "dist"


def fanout(n: int, *, sleep: float = 0.0, cpus: float = 0.05) -> pipeline_spec_pb2.PipelineSpec:
    """start -> n - 2 parallel noop nodes (each sleeping ``sleep`` seconds on ``cpus``) ->
    join: n nodes, 2 (n - 2) edges."""
    spec = pipeline_spec_pb2.PipelineSpec()
    spec.nodes.add(id="start", type="noop")
    middle = [f"n{i:05d}" for i in range(n - 2)]
    for node_id in middle:
        node = spec.nodes.add(id=node_id, type="noop", depends_on=["start"])
        node.resources.num_cpus = cpus
        if sleep:
            node.params.update({"sleep_seconds": sleep})
    spec.nodes.add(id="join", type="noop", depends_on=middle)
    return spec


class Server:
    """``raypipe serve`` in a child process with its own Ray head, stopped by SIGTERM."""

    def __init__(self, data_dir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.proc = subprocess.Popen(
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
                str(data_dir),
                "--no-mlflow-tracking",
                "--stop-ray-on-exit",
            ],
            stdout=subprocess.PIPE,
            stderr=open(data_dir.parent / "server.log", "a"),  # noqa: SIM115 (the child's copy)
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        self.address = self.ui = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not self.ui:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("raypipe serve exited: see server.log")
            if m := re.search(r"listening on ([\d.]+:\d+)", line):
                self.address = m.group(1)
            if m := re.search(r"^Web UI: (http://\S+)", line):
                self.ui = m.group(1).rstrip("/")
        if not self.ui:
            raise TimeoutError("raypipe serve did not print its web UI's URL")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def finished_run(client: raypipe.Client, n: int) -> str:
    client.apply(fanout(n), pipeline=f"fanout-{n}")
    run = client.create_run(f"fanout-{n}")
    done = client.wait_run(run, timeout=1800)
    assert done.state == run_pb2.Run.STATE_SUCCEEDED, done.error
    return done.name.split("/", 1)[1]


#: Once the run page has drawn `n` graph nodes, all in a final state, and says "n / n": the
#: milliseconds since navigation started.
COMPLETE = """([n]) => {
  const text = document.querySelector('[data-testid="run-progress-text"]')?.textContent ?? "";
  if (!text.startsWith(`${n} / ${n}`)) return false;
  const drawn = document.querySelectorAll('.react-flow__node [data-state="SUCCEEDED"]').length;
  return drawn >= n && performance.now();
}"""
#: Once the run history's table has rows: the milliseconds since navigation started.
HISTORY = """() => document.querySelectorAll('[data-testid="runs-table"] tbody tr').length > 0
  && performance.now()"""


def render_ms(page: Any, url: str, n: int) -> float:
    # Checked from the moment the navigation commits, every animation frame.
    page.goto(url, wait_until="commit")
    done = page.wait_for_function(COMPLETE, arg=[n], polling="raf", timeout=300_000)
    return float(done.json_value())


def history_ms(context: Any, ui: str) -> float:
    page = context.new_page()  # the front tab: a background one's frames are throttled
    try:
        page.goto(f"{ui}/runs", wait_until="commit")
        return float(page.wait_for_function(HISTORY, polling="raf", timeout=60_000).json_value())
    finally:
        page.close()


FRAMES = """() => { window.__frames = []; window.__stop = false; let last = performance.now();
  const tick = () => { const now = performance.now(); window.__frames.push(now - last); last = now;
    if (!window.__stop) requestAnimationFrame(tick); };
  requestAnimationFrame(tick); }"""


def frame_stats(frames: list[float]) -> dict[str, float]:
    frames = sorted(frames[1:]) or [0.0]
    return {
        "p50": statistics.median(frames),
        "p95": frames[min(len(frames) - 1, int(0.95 * len(frames)))],
        "max": frames[-1],
        "frames": len(frames),
    }


def bundle() -> tuple[int, int]:
    raw = packed = 0
    for path in sorted((DIST / "assets").iterdir()):
        data = path.read_bytes()
        raw += len(data)
        packed += len(gzip.compress(data, compresslevel=6))
    return raw, packed


def main() -> None:
    from playwright.sync_api import sync_playwright

    if not (DIST / "index.html").exists():
        raise SystemExit("clients/web/dist is not built: run `make install`")
    raw, packed = bundle()
    print(
        f"bundle: {raw / 1024:.0f} KiB raw, {packed / 1024:.0f} KiB gzip (clients/web/dist/assets)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        server = Server(Path(tmp) / "data")
        try:
            client = raypipe.Client(server.address)
            small = finished_run(client, SMALL)
            large = finished_run(client, LARGE)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
                try:
                    context = browser.new_context(viewport=VIEWPORT)
                    # Warm the browser's cache of the bundle, as for a user who has the UI open.
                    history_ms(context, server.ui)
                    base = statistics.median(history_ms(context, server.ui) for _ in range(3))
                    print(f"baseline: the run history page drawn in {base:.0f} ms")
                    for n, run_id in ((SMALL, small), (LARGE, large)):
                        page = context.new_page()
                        ms = render_ms(page, f"{server.ui}/runs/{run_id}", n)
                        page.close()
                        print(
                            f"first complete render of a {n}-node run: {ms:.0f} ms "
                            f"({ms / base:.1f}x the run history page)"
                        )
                    streamed(client, context, server.ui)
                finally:
                    browser.close()
        finally:
            server.stop()
    if QUICK:
        print("(quick mode: small sizes; the figures are not the targets')")


def streamed(client: raypipe.Client, context: Any, ui: str) -> None:
    # Nodes that take a little while (50 ms, four at a time), so the stream lasts seconds.
    client.apply(fanout(STREAMED, sleep=0.05, cpus=0.5), pipeline=f"stream-{STREAMED}")
    page = context.new_page()
    page.goto(f"{ui}/runs")
    run = client.create_run(f"stream-{STREAMED}")
    run_id = run.name.split("/", 1)[1]
    page.goto(f"{ui}/runs/{run_id}")
    # From the first drawing of the whole graph on: what follows is the stream's cost.
    page.wait_for_function(
        "([n]) => document.querySelectorAll('.react-flow__node').length >= n",
        arg=[STREAMED],
        polling="raf",
        timeout=300_000,
    )
    page.evaluate(FRAMES)
    at_start = page.get_by_test_id("run-progress-text").text_content() or ""
    page.wait_for_function(
        """([n]) => (document.querySelector('[data-testid="run-progress-text"]')?.textContent ?? "")
                    .startsWith(`${n} / ${n}`)""",
        arg=[STREAMED],
        polling=100,
        timeout=1_800_000,
    )
    busy = frame_stats(page.evaluate("window.__stop = true, window.__frames"))
    page.evaluate(FRAMES)
    page.wait_for_timeout(3000)
    idle = frame_stats(page.evaluate("window.__stop = true, window.__frames"))
    page.close()
    print(
        f"frames while a {STREAMED}-node fan-out streams ({busy['frames']:.0f} frames): "
        f"p50 {busy['p50']:.1f} ms, p95 {busy['p95']:.1f} ms, longest {busy['max']:.0f} ms; "
        f"idle p50 {idle['p50']:.1f} ms, p95 {idle['p95']:.1f} ms "
        f"(p95 ratio {busy['p95'] / max(idle['p95'], 1e-9):.2f}); measured from the "
        f"graph's first drawing, when it read {at_start.split(' nodes')[0]!r}"
    )


if __name__ == "__main__":
    main()
