"""The web UI in a real browser: Debian's Chromium driven by Playwright against a real
``raypipe serve`` (the session's Ray head, a SQLite file) serving the built UI
(clients/web/dist, which `make install` builds).

Each test does what a user does: builds a pipeline in the builder by dragging and
connecting, sees a bad parameter flagged on its field and saves it; runs it from its page and
watches every node succeed; opens a failed node's traceback and retries the run; rolls a
pipeline back; pauses and triggers a schedule; pages through 250 runs. What the UI shows is
checked against the server through the Python SDK.

A failing test leaves a screenshot in build/ui-failures/ (RAYPIPE_UI_FAILURES to move it).
With RAYPIPE_UI_SCREENSHOTS=docs/ui the tests also save the screenshots of docs/ui.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

import raypipe
from ray_nodes.cluster import LocalHead
from raypipe.v1 import run_pb2
from tests.browser import CHROMIUM_ARGS, VIEWPORT, chromium_path
from tests.integration.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
UI_INDEX = ROOT / "clients" / "web" / "dist" / "index.html"
FAILURES = Path(os.environ.get("RAYPIPE_UI_FAILURES", ROOT / "build" / "ui-failures"))
SHOTS = os.environ.get("RAYPIPE_UI_SCREENSHOTS", "")
WAIT = 60_000  # ms: Ray on two cores, with other tests' work beside
expect.set_options(timeout=WAIT)


def shot(page: Page, name: str, *, full_page: bool = False) -> None:
    """A screenshot for docs/ui.md, when RAYPIPE_UI_SCREENSHOTS names where they go."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=full_page)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV of a binary classification problem, where data_loader may read."""
    import numpy as np
    import pandas as pd

    root = tmp_path_factory.mktemp("ui-data")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 0).astype(int)
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"]).assign(label=y)
    frame.to_csv(root / "points.csv", index=False)
    return root


@pytest.fixture(scope="module")
def ui_server(
    tmp_path_factory: pytest.TempPathFactory, ray_head: LocalHead, data_root: Path
) -> Iterator[ServerProcess]:
    assert UI_INDEX.exists(), "the web UI is not built: `make install` (and `make test`) build it"
    base = tmp_path_factory.mktemp("ui-server")
    server = ServerProcess(
        base / "data",
        "--ray-address",
        ray_head.address,
        "--data-root",
        str(data_root),
        "--no-mlflow-tracking",
        env=ray_head.client_env(),
    )
    server.start()
    assert server.web_ui, "raypipe serve printed no web UI URL"
    yield server
    server.terminate()


@pytest.fixture(scope="module")
def sdk(ui_server: ServerProcess) -> Iterator[raypipe.Client]:
    client = raypipe.Client(ui_server.address)
    yield client
    client.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(
    browser: Browser, ui_server: ServerProcess, request: pytest.FixtureRequest
) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, base_url=ui_server.web_ui)
    context.set_default_timeout(WAIT)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        FAILURES.mkdir(parents=True, exist_ok=True)
        path = FAILURES / f"{request.node.name}.png"
        p.screenshot(path=str(path), full_page=True)
        print(f"screenshot of the failure: {path}; page errors: {errors}")
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def noop_spec(*ids: str, fail: str = "") -> dict[str, Any]:
    """A chain of noop nodes (as a YAML document's dict)."""
    nodes: list[dict[str, Any]] = []
    for i, node_id in enumerate(ids):
        node: dict[str, Any] = {"id": node_id, "type": "noop"}
        if i:
            node["depends_on"] = [ids[i - 1]]
        nodes.append(node)
    return {"nodes": nodes}


# --- the builder ----------------------------------------------------------------------------


def drag_to_canvas(page: Page, node_type: str, x: int, y: int) -> None:
    page.get_by_test_id(f"palette-item-{node_type}").drag_to(
        page.get_by_test_id("builder-canvas"), target_position={"x": x, "y": y}
    )


def test_build_a_pipeline_flag_a_bad_parameter_fix_it_and_save(
    page: Page, sdk: raypipe.Client, data_root: Path
) -> None:
    page.goto("/builder")
    expect(page.get_by_test_id("palette-item-data_loader")).to_be_visible()
    drag_to_canvas(page, "data_loader", 60, 120)
    loader = page.locator('.react-flow__node [data-node-id="data_loader"]')
    expect(loader).to_be_visible()
    form = page.get_by_test_id("node-form")
    form.get_by_label("path", exact=True).fill(str(data_root / "points.csv"))
    # With the loader selected, a dropped split connects to it; with the split selected, the
    # trainer connects to the split.
    drag_to_canvas(page, "train_test_split", 220, 260)
    expect(page.locator('.react-flow__node [data-node-id="train_test_split"]')).to_be_visible()
    expect(page.locator(".react-flow__edge")).to_have_count(1)
    form.get_by_label("target", exact=True).fill("label")
    form.get_by_label("test_size", exact=True).fill("1.5")  # not a fraction of the rows
    drag_to_canvas(page, "model_trainer", 380, 400)
    expect(page.locator(".react-flow__edge")).to_have_count(2)
    form.get_by_label("backend", exact=True).select_option("sklearn")
    form.get_by_label("task", exact=True).select_option("classification")
    form.get_by_label("estimator", exact=True).fill("LogisticRegression")

    # The server's validation flags test_size on its node and, once selected, on its field.
    status = page.get_by_test_id("validation-status")
    expect(status).to_have_attribute("data-state", "invalid")
    expect(page.get_by_test_id("node-problems")).to_contain_text("test_size")
    split = page.locator('.react-flow__node [data-node-id="train_test_split"]')
    expect(split).to_have_class(re.compile(r"\bflagged\b"))
    split.click()
    field = form.get_by_label("test_size", exact=True)
    expect(field).to_have_attribute("aria-invalid", "true")
    page.get_by_role("button", name="Auto layout").click()
    shot(page, "builder-invalid", full_page=True)
    field.fill("0.25")
    expect(status).to_have_attribute("data-state", "valid")
    expect(status).to_contain_text("data_loader → train_test_split → model_trainer")
    expect(field).not_to_have_attribute("aria-invalid", "true")

    save = page.get_by_test_id("save-form")
    save.get_by_label("Pipeline id").fill("points-built")
    save.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("save-result")).to_contain_text("version 1")
    shot(page, "builder", full_page=True)

    version = sdk.get_pipeline_version("points-built", 1)
    nodes = {n.id: n for n in version.spec.nodes}
    assert sorted(nodes) == ["data_loader", "model_trainer", "train_test_split"]
    assert list(nodes["train_test_split"].depends_on) == ["data_loader"]
    assert list(nodes["model_trainer"].depends_on) == ["train_test_split"]
    assert nodes["train_test_split"].params["test_size"] == 0.25


# --- a run, live ----------------------------------------------------------------------------


def test_run_from_the_ui_every_node_succeeds_and_shows_its_metrics(
    page: Page, sdk: raypipe.Client, data_root: Path
) -> None:
    spec = {
        "nodes": [
            {
                "id": "load",
                "type": "data_loader",
                "params": {"path": str(data_root / "points.csv")},
            },
            {
                "id": "split",
                "type": "train_test_split",
                "depends_on": ["load"],
                "params": {"target": "label", "test_size": 0.25, "random_state": 3},
            },
            {
                "id": "train",
                "type": "model_trainer",
                "depends_on": ["split"],
                "params": {
                    "backend": "sklearn",
                    "task": "classification",
                    "estimator": "LogisticRegression",
                },
            },
            {"id": "evaluate", "type": "model_evaluator", "depends_on": ["train", "split"]},
        ]
    }
    sdk.apply(spec, pipeline="points-run")
    page.goto("/pipelines/points-run")
    page.get_by_test_id("run-form").get_by_role("button", name=re.compile("^Run")).click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-z-]+$"))
    run_id = page.url.rsplit("/", 1)[1]
    for node in ("load", "split", "train", "evaluate"):
        expect(page.locator(f'.react-flow__node [data-node-id="{node}"]')).to_have_attribute(
            "data-state", "SUCCEEDED"
        )
    expect(page.get_by_test_id("run-progress-text")).to_contain_text("4 / 4 nodes finished")
    page.locator('.react-flow__node [data-node-id="evaluate"]').click()
    metrics = page.get_by_test_id("node-metrics")
    run = sdk.get_run(run_id)
    evaluate = next(n for n in run.nodes if n.node_id == "evaluate")
    assert run.state == run_pb2.Run.STATE_SUCCEEDED
    # On a server without authentication every caller is "anonymous".
    assert run.creator == "anonymous"
    expect(page.get_by_test_id("run-creator")).to_have_text(" by anonymous")
    accuracy = evaluate.metrics["accuracy"]
    expect(metrics.get_by_role("row", name=re.compile("^accuracy"))).to_contain_text(
        f"{accuracy:.4f}"
    )
    expect(page.get_by_test_id("node-logs")).to_be_visible()
    assert evaluate.ray_node_address  # where it ran, in the panel too
    expect(page.get_by_test_id("ray-node")).to_have_text(evaluate.ray_node_address)
    shot(page, "run")
    page.get_by_test_id("view-timeline").click()
    expect(page.get_by_test_id("timeline")).to_contain_text("evaluate")
    shot(page, "run-timeline")


def test_a_failed_run_shows_the_traceback_and_retry_reuses_what_succeeded(
    page: Page, sdk: raypipe.Client, data_root: Path
) -> None:
    late = data_root / "late.csv"
    late.unlink(missing_ok=True)
    spec = {
        "nodes": [
            {"id": "start", "type": "noop"},
            {
                "id": "load",
                "type": "data_loader",
                "depends_on": ["start"],
                "params": {"path": str(late)},
            },
        ]
    }
    sdk.apply(spec, pipeline="late-data")
    failed = sdk.wait_run(sdk.create_run("late-data"), raise_on_failure=False, timeout=120)
    assert failed.state == run_pb2.Run.STATE_FAILED
    run_id = failed.name.split("/", 1)[1]

    page.goto(f"/runs/{run_id}")
    expect(page.get_by_test_id("run-error")).to_contain_text("load")
    page.locator('.react-flow__node [data-node-id="load"]').click()
    expect(page.get_by_test_id("node-traceback")).to_contain_text("Traceback")
    expect(page.get_by_test_id("node-error")).to_contain_text("late.csv")
    shot(page, "run-failed")

    late.write_bytes((data_root / "points.csv").read_bytes())  # the data has arrived
    page.get_by_role("button", name="Retry").click()
    expect(page).not_to_have_url(re.compile(f"/runs/{run_id}$"))
    expect(page.locator('.react-flow__node [data-node-id="load"]')).to_have_attribute(
        "data-state", "SUCCEEDED"
    )
    expect(page.locator('.react-flow__node [data-node-id="start"]')).to_have_attribute(
        "data-state", "CACHED"
    )
    retried = sdk.get_run(page.url.rsplit("/", 1)[1])
    assert retried.retry_of == failed.name
    start = next(n for n in retried.nodes if n.node_id == "start")
    assert start.cached_from == failed.name


# --- versions and schedules -----------------------------------------------------------------


def test_roll_back_from_the_versions_page(page: Page, sdk: raypipe.Client) -> None:
    sdk.apply(noop_spec("a"), pipeline="rolling")
    sdk.apply(noop_spec("a", "b"), pipeline="rolling")
    assert sdk.get_pipeline("rolling").default_version.endswith("/versions/2")
    page.goto("/pipelines/rolling/versions/1")
    expect(page.get_by_test_id("version-row-2")).to_contain_text("default")
    page.get_by_test_id("rollback-button").click()
    page.get_by_role("dialog").get_by_role("button", name=re.compile("Roll back")).click()
    expect(page.get_by_test_id("version-row-1")).to_contain_text("default")
    assert sdk.get_pipeline("rolling").default_version.endswith("/versions/1")
    shot(page, "pipeline")


def test_pause_and_trigger_a_schedule(page: Page, sdk: raypipe.Client) -> None:
    sdk.apply(noop_spec("tick"), pipeline="ticking")
    schedule = sdk.create_schedule("ticking", every="1h", schedule_id="hourly-tick")
    assert not schedule.paused
    page.goto("/schedules")
    row = page.get_by_test_id("schedule-row-hourly-tick")
    expect(row).to_contain_text("ticking")
    row.get_by_role("button", name="Pause").click()
    expect(row.get_by_role("button", name="Resume")).to_be_visible()
    assert sdk.get_schedule("hourly-tick").paused
    row.get_by_role("button", name="Trigger now").click()
    link = page.locator('[data-testid^="triggered-run-"]').get_by_role("link")
    expect(link).to_be_visible()
    runs = list(sdk.list_runs(schedule="schedules/hourly-tick"))
    assert len(runs) == 1
    assert link.get_attribute("href") == f"/{runs[0].name}"
    shot(page, "schedules")


# --- the history ----------------------------------------------------------------------------


def test_the_run_history_pages_through_250_runs(page: Page, sdk: raypipe.Client) -> None:
    sdk.apply(noop_spec("only"), pipeline="many-runs")
    created = [sdk.create_run("many-runs").name.split("/", 1)[1] for _ in range(250)]
    page.goto("/runs?pipeline=many-runs")
    seen: list[str] = []
    table = page.get_by_test_id("runs-table")
    for number in range(1, 11):
        expect(page.get_by_text(f"Page {number}", exact=True)).to_be_visible()
        expect(table).to_have_attribute("aria-busy", "false")  # this page's rows, not the last's
        rows = table.locator("tbody tr")
        expect(rows).to_have_count(25)
        ids = [
            r.split("run-row-", 1)[1]
            for r in rows.evaluate_all("rs => rs.map(r => r.dataset.testid)")
        ]
        seen.extend(ids)
        next_button = page.get_by_role("button", name=re.compile("Next"))
        if number < 10:
            next_button.click()
        else:
            expect(next_button).to_be_disabled()
    assert sorted(seen) == sorted(created)  # each run once
    # In the server's order: newest first.
    assert seen == [r.name.split("/", 1)[1] for r in sdk.list_runs(pipeline="many-runs")]
    page.get_by_role("button", name=re.compile("Previous")).click()
    expect(page.get_by_text("Page 9", exact=True)).to_be_visible()
    shot(page, "runs")


# --- node logs ------------------------------------------------------------------------------


def test_a_running_nodes_log_tails_live_then_searches_and_downloads(
    page: Page, sdk: raypipe.Client, data_root: Path
) -> None:
    """An MLP that prints its loss each iteration (60 of them): its log in the node panel grows
    while the node runs, ends complete, filters by a search and downloads whole."""
    import pandas as pd

    frame = pd.DataFrame(
        {f"x{i}": [(j * (i + 3)) % 97 / 97 for j in range(30_000)] for i in range(8)}
    )
    frame["target"] = (frame["x0"] > 0.5).astype(int)
    frame.to_csv(data_root / "mlp.csv", index=False)
    spec = {
        "nodes": [
            {"id": "load", "type": "data_loader", "params": {"path": str(data_root / "mlp.csv")}},
            {
                "id": "split",
                "type": "train_test_split",
                "depends_on": ["load"],
                "params": {"target": "target", "test_size": 0.2, "random_state": 0},
            },
            {
                "id": "train",
                "type": "model_trainer",
                "depends_on": ["split"],
                "params": {
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
                },
            },
        ]
    }
    sdk.apply(spec, pipeline="chatty-mlp")
    run = sdk.create_run("chatty-mlp")
    page.goto(f"/{run.name}")
    train = page.locator('.react-flow__node [data-node-id="train"]')
    train.click()
    # While the node runs, the panel's log already shows some of its lines.
    seen_live = page.wait_for_function(
        """() => {
          const node = document.querySelector('.react-flow__node [data-node-id="train"]');
          const lines = document.querySelectorAll('[data-testid="log-lines"] > div').length;
          if (node?.dataset.state === "RUNNING" && lines > 0) return "live";
          if (node?.dataset.state === "SUCCEEDED") return "ended";
          return false;
        }""",
        polling=50,
    ).json_value()
    assert seen_live == "live", "no log line was shown while the node ran"
    shot(page, "run-logs")
    expect(train).to_have_attribute("data-state", "SUCCEEDED")
    status = page.get_by_test_id("log-status")
    expect(status).to_contain_text("complete")
    page.get_by_test_id("log-search").fill("Iteration ")
    expect(status).to_contain_text("60 matching")
    expect(page.get_by_test_id("log-lines").locator("> div")).to_have_count(60)
    expect(page.get_by_test_id("log-lines").locator("mark").first).to_have_text("Iteration ")
    with page.expect_download() as download:
        page.get_by_test_id("log-download").click()
    text = Path(download.value.path()).read_text()
    served = sdk.get_node_logs(run, "train", limit=10_000)
    assert len(text.splitlines()) == len(served.lines)
    assert sum("Iteration " in line for line in text.splitlines()) == 60


# --- accessibility --------------------------------------------------------------------------

AXE = ROOT / "clients" / "web" / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(page: Page) -> list[str]:
    """axe-core's WCAG 2 A and AA violations of serious or critical impact on the page
    (contrast among them), one line each."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => {
          const result = await axe.run(document, { runOnly: ["wcag2a", "wcag2aa"] });
          return result.violations
            .filter((v) => v.impact === "serious" || v.impact === "critical")
            .map((v) => `${v.id} (${v.impact}): ${v.nodes.length} element(s), e.g. ${v.nodes[0].html}`);
        }"""
    )
    return list(found)


def test_every_page_passes_axe_and_the_builder_works_from_the_keyboard(
    page: Page, sdk: raypipe.Client
) -> None:
    sdk.apply(noop_spec("first", "second"), pipeline="accessible")
    run = sdk.wait_run(sdk.create_run("accessible"), timeout=120)
    sdk.create_schedule("accessible", cron="0 6 * * *", schedule_id="accessible-daily")
    pages = {
        "/pipelines": "pipelines-table",
        "/pipelines/accessible": "version-yaml",
        "/runs": "runs-table",
        f"/{run.name}": "run-progress",
        "/schedules": "schedule-row-accessible-daily",
        "/schedules/accessible-daily": "next-fire-time",
        "/builder": "palette-item-noop",
    }
    problems = {}
    for path, ready in pages.items():
        page.goto(path)
        expect(page.get_by_test_id(ready).first).to_be_visible()
        if found := axe_violations(page):
            problems[path] = found
    assert not problems, problems

    # The builder without a mouse: Add buttons put nodes on the canvas, each connected to the
    # one selected before it.
    page.goto("/builder")
    for _ in range(2):
        page.get_by_role("button", name="Add noop").focus()
        page.keyboard.press("Enter")
    expect(page.locator('.react-flow__node [data-node-id="noop_2"]')).to_be_visible()
    expect(page.locator(".react-flow__edge")).to_have_count(1)
