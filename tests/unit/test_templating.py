"""Run-time parameter templates: finding, checking and resolving references."""

from __future__ import annotations

import pytest

from ray_nodes.templating import (
    TemplateError,
    TemplateRef,
    find_malformed,
    find_references,
    format_path,
    merge_parameters,
    parse_reference,
    reference_problem,
    resolve,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ parameters.lr }}", TemplateRef("parameters", "lr")),
        ("{{parameters.lr}}", TemplateRef("parameters", "lr")),
        ("{{   run.name\t}}", TemplateRef("run", "name")),
        ("{{ run.scheduled_time }}", TemplateRef("run", "scheduled_time")),
        ("{{ params.lr }}", TemplateRef("params", "lr")),  # parsed; the namespace is checked later
        ("{{ parameters.lr }} ", None),
        ("x{{ parameters.lr }}", None),
        ("{{ parameters.a-b }}", None),
        ("{{ parameters }}", None),
        ("parameters.lr", None),
        (1.0, None),
        (None, None),
    ],
)
def test_parse_reference(text: object, expected: TemplateRef | None) -> None:
    assert parse_reference(text) == expected


def test_find_references_walks_nested_values_in_document_order() -> None:
    params = {
        "a": "{{ parameters.x }}",
        "b": {"c": ["plain", "{{ run.name }}", {"d": "{{parameters.y}}"}]},
        "e": 3.0,
    }
    assert list(find_references(params)) == [
        (("a",), TemplateRef("parameters", "x")),
        (("b", "c", 1), TemplateRef("run", "name")),
        (("b", "c", 2, "d"), TemplateRef("parameters", "y")),
    ]


def test_find_references_handles_deep_nesting_without_recursion() -> None:
    value: object = "{{ parameters.x }}"
    for _ in range(5000):
        value = [value]
    ((path, ref),) = find_references({"deep": value})
    assert len(path) == 5001
    assert ref == TemplateRef("parameters", "x")


def test_find_malformed_flags_embedded_and_broken_templates_only() -> None:
    params = {
        "path": "s3://bucket/{{ run.name }}/model",
        "bad": "{{ parameters.a-b }}",
        "ok": "{{ parameters.a }}",
        "jinja": "{{ user.name }} is unrelated text",
        "plain": "hello",
    }
    found = dict(find_malformed(params))
    assert set(found) == {("path",), ("bad",)}
    assert "whole value" in found[("path",)]


def test_reference_problem_names_what_is_unknown() -> None:
    assert reference_problem(TemplateRef("parameters", "lr"), {"lr"}) is None
    assert reference_problem(TemplateRef("run", "scheduled_time"), ()) is None
    missing = reference_problem(TemplateRef("parameters", "lr"), {"epochs"})
    assert missing is not None
    assert "'lr'" in missing
    assert "epochs" in missing
    run_field = reference_problem(TemplateRef("run", "id"), ())
    assert run_field is not None
    assert "name, scheduled_time" in run_field
    namespace = reference_problem(TemplateRef("params", "lr"), {"lr"})
    assert namespace is not None
    assert "namespace 'params'" in namespace


def test_resolve_replaces_whole_values_and_keeps_their_types() -> None:
    params = {
        "lr": "{{ parameters.lr }}",
        "columns": "{{ parameters.columns }}",
        "nested": {"name": "{{ run.name }}", "at": ["{{ run.scheduled_time }}"]},
        "literal": "{{ not a template",
        "n": 3.0,
    }
    columns = ["a", "b"]
    resolved = resolve(
        params,
        parameters={"lr": 0.1, "columns": columns},
        run_name="runs/r1",
        scheduled_time="2030-01-01T00:00:00Z",
    )
    assert resolved == {
        "lr": 0.1,
        "columns": ["a", "b"],
        "nested": {"name": "runs/r1", "at": ["2030-01-01T00:00:00Z"]},
        "literal": "{{ not a template",
        "n": 3.0,
    }
    # Pure: the inputs are untouched and the result does not alias the parameter values.
    assert params["lr"] == "{{ parameters.lr }}"
    resolved["columns"].append("c")
    assert columns == ["a", "b"]


@pytest.mark.parametrize(
    ("template", "path", "message"),
    [
        ("{{ parameters.nope }}", ("x",), "unknown parameter 'nope'"),
        ("{{ run.id }}", ("x",), "unknown run field 'id'"),
        ("{{ params.lr }}", ("x",), "namespace 'params'"),
    ],
)
def test_resolve_rejects_unknown_names(template: str, path: tuple[str], message: str) -> None:
    with pytest.raises(TemplateError, match=message) as caught:
        resolve({"x": template}, parameters={"lr": 1.0}, run_name="r", scheduled_time="t")
    assert caught.value.path == path


def test_merge_parameters_overlays_run_values_and_rejects_undeclared() -> None:
    assert merge_parameters({"a": 1.0, "b": "x"}, {"b": "y"}) == {"a": 1.0, "b": "y"}
    with pytest.raises(TemplateError, match="'c'") as caught:
        merge_parameters({"a": 1.0}, {"c": 2.0})
    assert caught.value.path == ("c",)


def test_format_path() -> None:
    assert format_path(()) == ""
    assert format_path(("columns", 0, "name")) == "columns[0].name"
    assert format_path(("a", "b")) == "a.b"
