"""``raypipe`` commands for pipelines and versions: apply, validate, node-types, rollback,
``pipelines …`` and ``versions …``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import RenderableType

from raypipe._cli_common import (
    CliState,
    details,
    emit,
    fail,
    fmt,
    human_bytes,
    new_table,
    output_option,
    parse_pairs,
    pass_state,
    row,
    when,
)
from raypipe._errors import InvalidArgumentError
from raypipe._names import pipeline_id, version_name, version_number
from raypipe._specfile import load_spec
from raypipe.v1 import node_type_pb2, pipeline_pb2, pipeline_spec_pb2

spec_file = click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE"
)


def version_ref(pipeline: str, version: str) -> str:
    """VERSION as a number (``3``) or a resource name."""
    if not version.isdigit() and not version.startswith("pipelines/"):
        raise click.BadParameter(
            f"{version!r} is neither a version number nor pipelines/ID/versions/N",
            param_hint="VERSION",
        )
    return version_name(pipeline, version)


# --- apply, validate, node-types, rollback -------------------------------------------------


@click.command()
@spec_file
@click.option(
    "--pipeline",
    "pipeline",
    metavar="ID",
    help="The pipeline id; default: the file's name without extension.",
)
@click.option("--description", default="", help="Change note of the new version.")
@click.option("--display-name", default="", help="Display name, if the pipeline is created.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Label, if created.")
@output_option
@pass_state
def apply(
    state: CliState,
    file: Path,
    pipeline: str | None,
    description: str,
    display_name: str,
    labels: tuple[str, ...],
    output: str | None,
) -> None:
    """Create or update a pipeline from a YAML/JSON FILE.

    Creates the pipeline if it does not exist, and a new version only if the spec differs
    from the default version's (by digest); says which.
    """
    spec = load_spec(file)
    try:
        result = state.client().apply(
            spec,
            pipeline=pipeline or file.stem,
            description=description,
            display_name=display_name,
            labels=parse_pairs(labels, "--label", json_values=False),
        )
    except InvalidArgumentError as e:
        fail(e, spec_file=file)
    out = fmt(state, output)
    if out != "table":
        emit(out, {**_apply_dict(result)}, lambda: "")
        return
    name = pipeline_id(result.pipeline)
    if result.pipeline_created:
        click.echo(f"created pipeline {name}")
    number = result.version.version_number
    if result.version_created:
        click.echo(f"created version {number} ({result.version.name})")
    else:
        click.echo(f"unchanged (version {number})")


def _apply_dict(result: Any) -> dict[str, Any]:
    return {
        "pipeline": result.pipeline,
        "version": result.version,
        "pipeline_created": result.pipeline_created,
        "version_created": result.version_created,
    }


@click.command()
@spec_file
@output_option
@pass_state
def validate(state: CliState, file: Path, output: str | None) -> None:
    """Check a pipeline FILE with the server, storing nothing."""
    spec = load_spec(file)
    try:
        response = state.client().validate_pipeline_spec(spec)
    except InvalidArgumentError as e:
        fail(e, spec_file=file)
    out = fmt(state, output)
    if out != "table":
        emit(out, response, lambda: "")
        return
    order = " -> ".join(response.topological_order)
    click.echo(f"valid: {len(spec.nodes)} nodes ({order})")
    click.echo(f"digest: {response.spec_digest}")


@click.command("node-types")
@output_option
@pass_state
def node_types(state: CliState, output: str | None) -> None:
    """List the node types the server knows, with their inputs and outputs."""
    types = state.client().list_node_types()

    def table() -> RenderableType:
        t = new_table("TYPE", "INPUTS", "OUTPUT", "DEFAULTS", "ORIGIN", "DESCRIPTION")
        for nt in types:
            inputs = ", ".join(_kind(k) for k in nt.inputs) or "-"
            summary = nt.description.strip().splitlines()[0] if nt.description.strip() else ""
            t.add_row(
                *row(
                    nt.type,
                    inputs,
                    _kind(nt.output),
                    resources_text(nt.default_resources),
                    nt.origin,
                    summary,
                )
            )
        return t

    emit(fmt(state, output), list(types), table)


def _kind(kind: int) -> str:
    return node_type_pb2.ArtifactKind.Name(kind).removeprefix("ARTIFACT_KIND_").lower()  # type: ignore[arg-type]


def resources_text(r: pipeline_spec_pb2.Resources) -> str:
    """``cpu 2 · gpu 1 (preferred) · mem 4GiB · A100``; empty when nothing is set."""
    parts = []
    if r.num_cpus:
        parts.append(f"cpu {r.num_cpus:g}")
    if r.num_gpus:
        policy = " (preferred)" if r.gpu_policy == pipeline_spec_pb2.GPU_POLICY_PREFERRED else ""
        parts.append(f"gpu {r.num_gpus:g}{policy}")
    if r.memory_bytes:
        parts.append(f"mem {human_bytes(r.memory_bytes)}")
    if r.accelerator_type:
        parts.append(r.accelerator_type)
    return " · ".join(parts)


@click.command()
@click.argument("pipeline")
@click.argument("version")
@output_option
@pass_state
def rollback(state: CliState, pipeline: str, version: str, output: str | None) -> None:
    """Make VERSION (a number or a version name) the default of PIPELINE."""
    updated = state.client().rollback_pipeline(pipeline, version_ref(pipeline, version))
    out = fmt(state, output)
    if out != "table":
        emit(out, updated, lambda: "")
        return
    number = version_number(updated.default_version)
    click.echo(f"{updated.name}: default version is now {number}")


# --- pipelines ------------------------------------------------------------------------------


@click.group()
def pipelines() -> None:
    """List, show, create and delete pipelines."""


def pipelines_table(items: list[pipeline_pb2.Pipeline]) -> RenderableType:
    t = new_table("PIPELINE", "DEFAULT", "VERSIONS", "UPDATED", "LABELS", "DESCRIPTION")
    for p in items:
        labels = ",".join(f"{k}={v}" for k, v in sorted(p.labels.items()))
        default = version_number(p.default_version) if p.default_version else "-"
        t.add_row(
            *row(
                pipeline_id(p),
                default,
                p.latest_version_number,
                when(p.update_time),
                labels,
                p.description.splitlines()[0] if p.description else "",
            )
        )
    return t


@pipelines.command("list")
@click.option("--filter", "filter_", default="", metavar="EXPR", help='E.g. labels.team = "ml".')
@click.option("--limit", default=0, show_default="all", help="Show at most this many.")
@output_option
@pass_state
def pipelines_list(state: CliState, filter_: str, limit: int, output: str | None) -> None:
    """List pipelines, newest first."""
    items = _take(state.client().list_pipelines(filter=filter_), limit)
    emit(fmt(state, output), items, lambda: pipelines_table(items))


@pipelines.command("get")
@click.argument("pipeline")
@output_option
@pass_state
def pipelines_get(state: CliState, pipeline: str, output: str | None) -> None:
    """Show one PIPELINE (an id or pipelines/ID)."""
    p = state.client().get_pipeline(pipeline)
    labels = ", ".join(f"{k}={v}" for k, v in sorted(p.labels.items()))
    emit(
        fmt(state, output),
        p,
        lambda: details(
            [
                ("name", p.name),
                ("display name", p.display_name),
                ("description", p.description),
                ("default version", p.default_version or "(none yet)"),
                ("latest version", p.latest_version_number),
                ("labels", labels),
                ("created", when(p.create_time)),
                ("updated", when(p.update_time)),
            ]
        ),
    )


@pipelines.command("create")
@click.argument("pipeline_id", metavar="ID")
@click.option("--display-name", default="")
@click.option("--description", default="")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE")
@output_option
@pass_state
def pipelines_create(
    state: CliState,
    pipeline_id: str,
    display_name: str,
    description: str,
    labels: tuple[str, ...],
    output: str | None,
) -> None:
    """Create an empty pipeline (``apply`` creates one with its first version)."""
    p = state.client().create_pipeline(
        pipeline_id,
        display_name=display_name,
        description=description,
        labels=parse_pairs(labels, "--label", json_values=False),
    )
    out = fmt(state, output)
    if out != "table":
        emit(out, p, lambda: "")
    else:
        click.echo(f"created pipeline {pipeline_id}")


@pipelines.command("delete")
@click.argument("pipeline")
@click.option("--force", is_flag=True, help="Delete even while runs or schedules use it.")
@pass_state
def pipelines_delete(state: CliState, pipeline: str, force: bool) -> None:
    """Delete PIPELINE and all its versions."""
    state.client().delete_pipeline(pipeline, force=force)
    click.echo(f"deleted pipeline {pipeline_id(pipeline)}")


# --- versions -------------------------------------------------------------------------------


@click.group()
def versions() -> None:
    """List and show pipeline versions."""


@versions.command("list")
@click.argument("pipeline")
@click.option("--limit", default=0, show_default="all", help="Show at most this many.")
@output_option
@pass_state
def versions_list(state: CliState, pipeline: str, limit: int, output: str | None) -> None:
    """List the versions of PIPELINE, newest first; * marks the default."""
    client = state.client()
    default = client.get_pipeline(pipeline).default_version
    items = _take(client.list_pipeline_versions(pipeline, omit_spec=True), limit)

    def table() -> RenderableType:
        t = new_table("VERSION", "DEFAULT", "CREATED", "BY", "DIGEST", "DESCRIPTION")
        for v in items:
            t.add_row(
                *row(
                    v.version_number,
                    "*" if v.name == default else "",
                    when(v.create_time),
                    v.creator,
                    v.spec_digest[:12],
                    v.description.splitlines()[0] if v.description else "",
                )
            )
        return t

    emit(fmt(state, output), items, table)


@versions.command("get")
@click.argument("pipeline")
@click.argument("version", required=False)
@output_option
@pass_state
def versions_get(state: CliState, pipeline: str, version: str | None, output: str | None) -> None:
    """Show a VERSION of PIPELINE with its nodes (default: the default version).

    ``-o yaml`` prints the version with its spec, as in a pipeline file.
    """
    client = state.client()
    ref = version_ref(pipeline, version) if version else None
    v = client.get_pipeline_version(pipeline, ref)

    def tables() -> list[RenderableType]:
        head = details(
            [
                ("name", v.name),
                ("created", when(v.create_time)),
                ("created by", v.creator),
                ("digest", v.spec_digest),
                ("description", v.description),
            ]
        )
        t = new_table("NODE", "TYPE", "DEPENDS ON", "RESOURCES")
        for n in v.spec.nodes:
            t.add_row(*row(n.id, n.type, ", ".join(n.depends_on), resources_text(n.resources)))
        return [head, t]

    emit(fmt(state, output), v, tables)


def _take(items: Any, limit: int) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if limit and len(out) >= limit:
            break
        out.append(item)
    return out


COMMANDS = (apply, validate, node_types, rollback, pipelines, versions)
