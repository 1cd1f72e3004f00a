"""``raypipe graph``: a pipeline's DAG drawn with Graphviz."""

from __future__ import annotations

from pathlib import Path

import click
import graphviz

from raypipe._cli_common import CliState, pass_state
from raypipe._cli_pipelines import resources_text
from raypipe._errors import RaypipeError
from raypipe._names import pipeline_id, version_name
from raypipe._specfile import load_spec
from raypipe.v1 import pipeline_spec_pb2

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def spec_graph(spec: pipeline_spec_pb2.PipelineSpec, title: str) -> graphviz.Digraph:
    """The DAG as a Graphviz digraph: a box per node with its id, type and resources."""
    g = graphviz.Digraph(
        name=title,
        graph_attr={"label": title, "labelloc": "t", "fontname": "Helvetica", "rankdir": "TB"},
        node_attr={"shape": "box", "style": "rounded", "fontname": "Helvetica", "fontsize": "11"},
        edge_attr={"arrowsize": "0.7"},
    )
    for node in spec.nodes:
        lines = [node.id, node.type]
        resources = resources_text(node.resources)
        if resources:
            lines.append(resources)
        policies = _policies(node)
        if policies:
            lines.append(policies)
        g.node(node.id, label="\\n".join(lines))  # DOT's centred line break
        for upstream in node.depends_on:
            g.edge(upstream, node.id)
    return g


def _policies(node: pipeline_spec_pb2.Node) -> str:
    parts = []
    if node.retry.max_retries:
        parts.append(f"retry {node.retry.max_retries}")
    if node.HasField("timeout") and (node.timeout.seconds or node.timeout.nanos):
        parts.append(f"timeout {node.timeout.ToTimedelta().total_seconds():g}s")
    if node.cache.enabled:
        parts.append("cached")
    return " · ".join(parts)


class GraphvizMissingError(RaypipeError):
    """Rendering svg or png needs Graphviz's ``dot`` program."""

    reason = "GRAPHVIZ_NOT_INSTALLED"


@click.command()
@click.argument("pipeline")
@click.option("--version", metavar="N", help="Version number or name; default: the default.")
@click.option(
    "-o",
    "--format",
    "format_",
    type=click.Choice(["dot", "svg", "png"]),
    default="dot",
    show_default=True,
    help="dot needs nothing installed; svg and png need Graphviz (apt-get install graphviz).",
)
@click.option(
    "--file",
    "file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of stdout (required for png).",
)
@pass_state
def graph(
    state: CliState, pipeline: str, version: str | None, format_: str, file: Path | None
) -> None:
    """Draw the DAG of PIPELINE (an id, or a local YAML/JSON pipeline file).

    Each box shows the node's id, type and resources.
    """
    local = Path(pipeline)
    if local.suffix in SPEC_SUFFIXES and local.is_file():
        spec, title = load_spec(local), local.stem
    else:
        client = state.client()
        ref = version_name(pipeline, version) if version else None
        v = client.get_pipeline_version(pipeline, ref)
        spec, title = v.spec, f"{pipeline_id(pipeline)} v{v.version_number}"
    g = spec_graph(spec, title)
    if format_ == "dot":
        _write(g.source.encode(), file)
        return
    if format_ == "png" and file is None:
        raise click.UsageError("png output is binary: give --file, e.g. --file graph.png")
    try:
        data = g.pipe(format=format_)
    except graphviz.ExecutableNotFound:
        raise GraphvizMissingError(
            f"rendering {format_} needs Graphviz's `dot` program, which is not installed: "
            "apt-get install graphviz (or brew install graphviz); `-o dot` needs nothing"
        ) from None
    _write(data, file)


def _write(data: bytes, file: Path | None) -> None:
    if file is None:
        click.echo(data, nl=False)  # click writes bytes to the binary stream under stdout
        return
    file.write_bytes(data)
    click.echo(f"wrote {file}", err=True)
