"""The list filter grammar: what parses into which terms, and how bad filters are reported."""

from __future__ import annotations

import pytest

from control_plane.errors import InvalidArgumentError
from control_plane.filtering import MAX_FILTER_LENGTH, parse_filter
from control_plane.storage.repository import LabelTerm


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_filter_has_no_terms(text: str) -> None:
    assert parse_filter(text) == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('labels.team = "ml"', LabelTerm("labels.team", "=", "ml")),
        ('labels.team="ml"', LabelTerm("labels.team", "=", "ml")),
        ('labels.team != "ml"', LabelTerm("labels.team", "!=", "ml")),
        ("labels.team:*", LabelTerm("labels.team", ":*")),
        ("labels.team : *", LabelTerm("labels.team", ":*")),
        ('display_name = "Daily train"', LabelTerm("display_name", "=", "Daily train")),
        ('display_name != ""', LabelTerm("display_name", "!=", "")),
        # Label keys may hold dots and hyphens.
        ('labels.app.kubernetes-io = "x"', LabelTerm("labels.app.kubernetes-io", "=", "x")),
        # Bare values for simple words.
        ("labels.env = prod", LabelTerm("labels.env", "=", "prod")),
        ("labels.version = 1.2.3-rc1", LabelTerm("labels.version", "=", "1.2.3-rc1")),
    ],
)
def test_single_terms(text: str, expected: LabelTerm) -> None:
    assert parse_filter(text) == (expected,)


def test_terms_joined_by_and_keep_their_order() -> None:
    text = 'labels.team = "ml" AND labels.env != prod AND labels.gpu:* AND display_name = "x"'
    assert parse_filter(text) == (
        LabelTerm("labels.team", "=", "ml"),
        LabelTerm("labels.env", "!=", "prod"),
        LabelTerm("labels.gpu", ":*"),
        LabelTerm("display_name", "=", "x"),
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'labels.a = "say \"hi\""', 'say "hi"'),
        (r'labels.a = "back\\slash"', "back\\slash"),
        (r'labels.a = "tab\there"', "tab\there"),
        ('labels.a = "AND OR = != :*"', "AND OR = != :*"),
        ('labels.a = "ünïcödé"', "ünïcödé"),
    ],
)
def test_quoted_values_with_escapes(text: str, value: str) -> None:
    assert parse_filter(text) == (LabelTerm("labels.a", "=", value),)


def test_extra_fields_can_be_allowed() -> None:
    assert parse_filter('state = "RUNNING"', fields=("state",)) == (
        LabelTerm("state", "=", "RUNNING"),
    )


def _problem(text: str) -> str:
    with pytest.raises(InvalidArgumentError) as caught:
        parse_filter(text)
    error = caught.value
    assert [v.field for v in error.violations] == ["filter"]
    assert error.reason == "INVALID_ARGUMENT"
    return error.violations[0].description


@pytest.mark.parametrize(
    ("text", "words", "position"),
    [
        ('labels.a = "x" and labels.b:*', ["'and'", "AND"], 16),
        ('labels.a = "x" OR labels.b:*', ["'OR'"], 16),
        ('labels.a = "x" labels.b:*', ["expected AND"], 16),
        ('labels.a = "x" AND', ["term after AND"], 19),
        ("labels.a", ["expected '=', '!=' or ':*'"], 9),
        ('labels = "x"', ["label key"], 7),
        ('labels. = "x"', ["label key"], 8),
        ('owner = "x"', ["unknown field 'owner'", "labels.KEY", "display_name"], 1),
        ("display_name:*", ["labels only"], 13),
        ("labels.a:", ["expected '*'"], 10),
        ("labels.a:x", ["expected '*'"], 10),
        ('labels.a = "open', ["unterminated"], 12),
        (r'labels.a = "bad \q"', [r"unknown escape '\q'"], 17),
        ("labels.a = ", ["expected a value"], 12),
        ("labels.a = AND", ["keyword 'AND'"], 12),
        ("labels.a = (x)", ["double quotes"], 12),
        ('= "x"', ["expected a term"], 1),
    ],
)
def test_bad_filters_name_the_problem_and_position(
    text: str, words: list[str], position: int
) -> None:
    description = _problem(text)
    for word in words:
        assert word in description
    assert f"at position {position}" in description


def test_overlong_filter_is_refused_before_parsing() -> None:
    description = _problem('labels.a = "' + "x" * MAX_FILTER_LENGTH + '"')
    assert str(MAX_FILTER_LENGTH) in description


def test_long_filters_are_not_quoted_back_whole() -> None:
    description = _problem("labels.a = x " + "AND labels.a = x " * 30 + "junk")
    assert "found 'junk'" in description
    assert "at position 524)" in description  # and no copy of the 500-character filter
