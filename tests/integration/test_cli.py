"""The ``raypipe`` CLI through a real control plane: output in every format, what apply says,
errors on stderr with the documented exit codes, graphs; runs where Ray is available."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from raypipe._cli_common import (
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_PRECONDITION,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from tests.integration.sdk_fixtures import (  # noqa: F401 - fixtures
    NOOP_EXAMPLE,
    Cli,
    address_fixture,
    cli_fixture,
    run_address_fixture,
    run_cli_fixture,
    write_spec_fixture,
)

WriteSpec = Callable[[str, str], Path]

CYCLE = """\
nodes:
  - id: a
    type: noop
    depends_on: [c]
  - id: b
    type: noop
    depends_on: [a]
  - id: c
    type: noop
    depends_on: [b]
"""


def test_apply_creates_then_says_unchanged_then_new_version(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "demo.yaml"
    shutil.copy(NOOP_EXAMPLE, spec)

    first = cli(f"apply {spec} --pipeline demo --description first")
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [
        "created pipeline demo",
        "created version 1 (pipelines/demo/versions/1)",
    ]

    again = cli(f"apply {spec} --pipeline demo")
    assert again.exit_code == 0
    assert again.stdout.strip() == "unchanged (version 1)"

    spec.write_text(spec.read_text().replace("pause: 0.1", "pause: 0.2"))
    changed = cli(f"apply {spec} --pipeline demo")
    assert changed.exit_code == 0
    assert changed.stdout.strip() == "created version 2 (pipelines/demo/versions/2)"

    by_stem = cli(f"apply {spec}")  # the id defaults to the file's stem: demo
    assert by_stem.stdout.strip() == "unchanged (version 2)"

    as_json = json.loads(cli(f"apply {spec} -o json").stdout)
    assert as_json["version_created"] is False
    assert as_json["version"]["version_number"] == 2


def test_list_and_get_in_every_format(cli: Cli) -> None:
    assert cli(f"apply {NOOP_EXAMPLE} --pipeline alpha --label team=ml").exit_code == 0
    assert cli("pipelines create beta --description 'second one'").exit_code == 0

    table = cli("pipelines list")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["PIPELINE", "DEFAULT", "VERSIONS"]
    assert lines[1].split()[0] == "beta"
    assert lines[2].split()[:3] == ["alpha", "1", "1"]
    assert "team=ml" in lines[2]

    listed = json.loads(cli("pipelines list -o json").stdout)
    assert [p["name"] for p in listed] == ["pipelines/beta", "pipelines/alpha"]
    assert listed[1]["labels"] == {"team": "ml"}
    assert listed[1]["latest_version_number"] == 1
    assert yaml.safe_load(cli("-o yaml pipelines list").stdout) == listed, "global -o works"
    assert json.loads(cli("pipelines list --limit 1 -o json").stdout)[0]["name"] == "pipelines/beta"
    filtered = json.loads(
        cli(["pipelines", "list", "--filter", 'labels.team = "ml"', "-o", "json"]).stdout
    )
    assert [p["name"] for p in filtered] == ["pipelines/alpha"]

    got = cli("pipelines get alpha")
    assert got.exit_code == 0
    assert "default version  pipelines/alpha/versions/1" in got.stdout
    got_json = json.loads(cli("pipelines get pipelines/alpha -o json").stdout)
    assert got_json["default_version"] == "pipelines/alpha/versions/1"
    got_yaml = yaml.safe_load(cli("pipelines get alpha -o yaml").stdout)
    assert got_yaml == got_json


def test_versions_and_rollback(cli: Cli, write_spec: WriteSpec) -> None:
    cli(f"apply {NOOP_EXAMPLE} --pipeline demo")
    two = write_spec("two.yaml", NOOP_EXAMPLE.read_text().replace("pause: 0.1", "pause: 1"))
    cli(f"apply {two} --pipeline demo --description 'slower branches'")

    listed = cli("versions list demo")
    assert listed.exit_code == 0
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert rows[0][:2] == ["2", "*"]
    assert rows[1][0] == "1"
    assert "*" not in rows[1], "only the default is marked"
    assert "slower branches" in listed.stdout

    version = yaml.safe_load(cli("versions get demo 1 -o yaml").stdout)
    assert version["name"] == "pipelines/demo/versions/1"
    assert version["spec"]["parameters"] == {"pause": 0.1}
    assert [n["id"] for n in version["spec"]["nodes"]] == ["start", "left", "right", "join"]
    default = cli("versions get demo")
    assert "pipelines/demo/versions/2" in default.stdout
    assert "left, right" in default.stdout

    rolled = cli("rollback demo 1")
    assert rolled.exit_code == 0
    assert rolled.stdout.strip() == "pipelines/demo: default version is now 1"
    assert cli("rollback demo pipelines/demo/versions/2").stdout.strip().endswith("now 2")

    bad = cli("rollback demo latest")
    assert bad.exit_code == EXIT_USAGE
    missing = cli("rollback demo 9")
    assert missing.exit_code == EXIT_NOT_FOUND


def test_cycle_prints_the_field_path_and_exits_invalid(cli: Cli, write_spec: WriteSpec) -> None:
    spec = write_spec("cycle.yaml", CYCLE)
    for command in (f"validate {spec}", f"apply {spec} --pipeline cyclic"):
        result = cli(command)
        assert result.exit_code == EXIT_INVALID, result.output
        lines = result.stderr.splitlines()
        assert lines[0].startswith("error: INVALID_PIPELINE_SPEC: ")
        violation = [line for line in lines[1:] if "cycle" in line]
        assert violation, result.stderr
        assert violation[0].startswith("  spec.nodes[")
        assert "depends_on[0]: cycle: " in violation[0]
        assert violation[0].endswith(f"({spec}:4)"), "the line in the file is named too"
        assert result.stdout == ""
    assert cli("pipelines get cyclic").exit_code == EXIT_NOT_FOUND, "nothing was created"


def test_malformed_files_exit_invalid(cli: Cli, write_spec: WriteSpec) -> None:
    bad_yaml = write_spec("broken.yaml", "nodes: [\n")
    result = cli(f"apply {bad_yaml} --pipeline x")
    assert result.exit_code == EXIT_INVALID
    assert result.stderr.startswith(f"error: INVALID_SPEC_FILE: {bad_yaml}:")

    bad_field = write_spec("field.yaml", "nodes:\n  - id: a\n    timeout: soon\n")
    result = cli(f"validate {bad_field}")
    assert result.exit_code == EXIT_INVALID
    assert f"{bad_field}:3: nodes[0].timeout: " in result.stderr

    missing = cli("validate does-not-exist.yaml")
    assert missing.exit_code == EXIT_USAGE


def test_valid_file(cli: Cli) -> None:
    result = cli(f"validate {NOOP_EXAMPLE}")
    assert result.exit_code == 0
    assert result.stdout.startswith("valid: 4 nodes (start -> ")
    assert json.loads(cli(f"validate {NOOP_EXAMPLE} -o json").stdout)["spec_digest"]


def test_not_found_and_other_errors(cli: Cli) -> None:
    result = cli("pipelines get nope")
    assert result.exit_code == EXIT_NOT_FOUND
    assert result.stderr.startswith("error: ")
    assert "nope" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""

    assert cli("versions get nope 1").exit_code == EXIT_NOT_FOUND
    assert cli("pipelines delete nope").exit_code == EXIT_NOT_FOUND

    cli("pipelines create taken")
    exists = cli("pipelines create taken")
    assert exists.exit_code == 1
    assert exists.stderr.startswith("error: ")

    bad_id = cli("pipelines create Bad_Id")
    assert bad_id.exit_code == EXIT_INVALID
    assert "\n  pipeline_id: " in bad_id.stderr

    assert cli("pipelines delete taken").stdout.strip() == "deleted pipeline taken"


def test_unreachable_server_and_env_address(cli: Cli) -> None:
    down = Cli("127.0.0.1:1")("--timeout 5 pipelines list")
    assert down.exit_code == EXIT_UNAVAILABLE
    assert down.stderr.startswith("error: UNAVAILABLE: ")

    from click.testing import CliRunner

    from raypipe.cli import main

    via_env = CliRunner().invoke(main, ["node-types"], env={"RAYPIPE_ADDRESS": cli.address})
    assert via_env.exit_code == 0
    assert "noop" in via_env.stdout


def test_node_types(cli: Cli) -> None:
    table = cli("node-types")
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].split()[:3] == ["TYPE", "INPUTS", "OUTPUT"]
    assert any(line.startswith("noop ") for line in table.stdout.splitlines())
    types = json.loads(cli("node-types -o json").stdout)
    noop = next(t for t in types if t["type"] == "noop")
    assert "sleep_seconds" in noop["parameter_schema"]["properties"]


def test_graph(cli: Cli, tmp_path: Path) -> None:
    cli(f"apply {NOOP_EXAMPLE} --pipeline demo")
    dot = cli("graph demo")
    assert dot.exit_code == 0
    assert dot.stdout.startswith('digraph "demo v1" {')
    assert 'left [label="left\\nnoop\\ncpu 0.5"]' in dot.stdout
    assert "left -> join" in dot.stdout
    assert "right -> join" in dot.stdout

    local = cli(["graph", str(NOOP_EXAMPLE), "--file", str(tmp_path / "g.dot")])
    assert local.exit_code == 0
    assert "start -> left" in (tmp_path / "g.dot").read_text()

    assert cli("graph demo -o png").exit_code == EXIT_USAGE, "png needs --file"
    assert cli("graph nope").exit_code == EXIT_NOT_FOUND


@pytest.mark.skipif(
    shutil.which("dot") is None,
    reason="Graphviz's dot is not installed (make install, or bash scripts/ensure_graphviz.sh)",
)
def test_graph_renders_svg_and_png(cli: Cli, tmp_path: Path) -> None:
    cli(f"apply {NOOP_EXAMPLE} --pipeline demo")
    svg = cli("graph demo -o svg")
    assert svg.exit_code == 0, svg.output
    assert "<svg" in svg.stdout
    for node in ("start", "left", "right", "join"):
        assert f">{node}</text>" in svg.stdout, f"the box of {node} is drawn"

    png = tmp_path / "g.png"
    drawn = cli(["graph", str(NOOP_EXAMPLE), "-o", "png", "--file", str(png)])
    assert drawn.exit_code == 0, drawn.output
    assert drawn.stderr.strip() == f"wrote {png}"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_graph_without_dot_says_how_to_install_it(cli: Cli, tmp_path: Path) -> None:
    no_dot = tmp_path / "bin"  # a PATH with nothing on it, so Graphviz's dot is not found
    no_dot.mkdir()
    for args in ("graph demo -o svg", f"graph demo -o png --file {tmp_path / 'g.png'}"):
        result = cli(args.replace("demo", str(NOOP_EXAMPLE)), env={"PATH": str(no_dot)})
        assert result.exit_code == 1
        assert result.stderr.startswith("error: GRAPHVIZ_NOT_INSTALLED: ")
        assert "apt-get install graphviz" in result.stderr
        assert "-o dot` needs nothing" in result.stderr
    assert not (tmp_path / "g.png").exists()
    plain = cli(f"graph {NOOP_EXAMPLE}", env={"PATH": str(no_dot)})
    assert plain.exit_code == 0, "-o dot needs no Graphviz"


def test_bad_run_parameters_are_usage_errors(cli: Cli) -> None:
    result = cli("run demo -p novalue")
    assert result.exit_code == EXIT_USAGE
    assert "key=value" in result.output


def test_help_documents_exit_codes(cli: Cli) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    assert "Exit codes:" in result.stdout
    assert "3  not found (no such pipeline, version, run or schedule)" in result.stdout


# --- runs (need Ray) ------------------------------------------------------------------------


def test_run_watch_ends_succeeded(run_cli: Cli) -> None:
    assert run_cli(f"apply {NOOP_EXAMPLE} --pipeline noop-diamond").exit_code == 0
    result = run_cli("run noop-diamond --watch -p pause=0.05")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for node in ("start", "left", "right", "join"):
        assert node in out
    assert "SUCCEEDED" in out
    assert "duration_seconds" in out, "ends with the metrics of each node"

    runs = json.loads(run_cli("runs list --pipeline noop-diamond -o json").stdout)
    assert runs[0]["state"] == "STATE_SUCCEEDED"
    assert runs[0]["parameters"] == {"pause": 0.05}
    run_id = runs[0]["name"].removeprefix("runs/")

    got = run_cli(f"runs get {run_id}")
    assert got.exit_code == 0
    assert "SUCCEEDED" in got.stdout
    assert run_cli(f"runs cancel {run_id}").exit_code == EXIT_PRECONDITION
    assert run_cli(f"runs watch {run_id}").exit_code == 0
    assert run_cli("runs list --state failed -o json").stdout.strip() == "[]"

    assert run_cli(f"runs retry {run_id}").exit_code == EXIT_PRECONDITION, "it succeeded"


def test_run_of_a_failing_pipeline_exits_non_zero(run_cli: Cli, write_spec: WriteSpec) -> None:
    spec = write_spec(  # fails by its timeout
        "fails.yaml",
        "nodes:\n  - id: slow\n    type: noop\n    params: {sleep_seconds: 60}\n    timeout: 1s\n",
    )
    assert run_cli(f"apply {spec} --pipeline fails").exit_code == 0
    result = run_cli("run fails --watch")
    assert result.exit_code == 7
    assert "FAILED" in result.stdout
    assert result.stderr.startswith("error: RUN_FAILED: ")

    failed = json.loads(run_cli("runs list --pipeline fails --state failed -o json").stdout)
    retried = run_cli(f"runs retry {failed[0]['name']} --watch -o json")
    assert retried.exit_code == 7, "the retry fails by its timeout again"
    assert json.loads(retried.stdout)["retry_of"] == failed[0]["name"]

    not_found = run_cli("runs get does-not-exist")
    assert not_found.exit_code == EXIT_NOT_FOUND


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_run_without_watch_prints_the_run(run_cli: Cli, output: str) -> None:
    run_cli(f"apply {NOOP_EXAMPLE} --pipeline quick")
    result = run_cli(f"run quick -o {output}")
    assert result.exit_code == 0
    data = json.loads(result.stdout) if output == "json" else yaml.safe_load(result.stdout)
    assert data["name"].startswith("runs/")
    assert run_cli(f"runs watch {data['name']} -o json").exit_code == 0


def test_serve_takes_the_health_interval_and_refuses_a_negative_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    import control_plane.server as server
    from raypipe.cli import main

    seen: list[server.ServerConfig] = []
    hints: list[str] = []

    def hand_over(config: server.ServerConfig, *, sign_in_hint: str = "") -> None:
        seen.append(config)
        hints.append(sign_in_hint)

    # Only the hand-over is replaced: what `serve` builds from its flags is what is checked.
    monkeypatch.setattr(server, "serve", hand_over)
    runner = CliRunner()
    data = str(tmp_path / "data")
    ok = runner.invoke(main, ["serve", "--data-dir", data, "--health-interval", "0.25"])
    assert ok.exit_code == 0, ok.output
    assert seen[-1].health_interval == 0.25
    assert f"raypipe dashboard --data-dir {data}" in hints[-1]
    assert runner.invoke(main, ["serve", "--data-dir", data]).exit_code == 0
    assert seen[-1].health_interval == 5.0
    bad = runner.invoke(main, ["serve", "--data-dir", data, "--health-interval", "-1"])
    assert bad.exit_code == 2
    assert "--health-interval" in bad.output
    assert len(seen) == 2
