"""The ``filter`` of list calls: a small subset of AIP-160, parsed into :class:`LabelTerm`s.

Grammar (whitespace between tokens is free)::

    filter := "" | term ("AND" term)*
    term   := "labels." KEY ("=" | "!=") value
            | "labels." KEY ":" "*"
            | FIELD ("=" | "!=") value
    value  := '"' chars with backslash escapes '"' | a bare word [A-Za-z0-9_.:/@+-]+

``AND`` is case-sensitive, as in AIP-160, so that ``and`` is never silently read as a value.
``labels.KEY != "V"`` also matches resources without the label (it is the negation of
``=``); ``labels.KEY:*`` matches resources that have the label with any value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NoReturn

from control_plane.errors import InvalidArgumentError
from control_plane.storage.repository import LabelTerm

__all__ = ["DEFAULT_FIELDS", "MAX_FILTER_LENGTH", "parse_filter"]

DEFAULT_FIELDS: tuple[str, ...] = ("display_name",)
"""Plain fields a filter may compare when the caller names none."""

MAX_FILTER_LENGTH = 4096
"""Longer filters are rejected before parsing: no legitimate filter comes close."""

_FIELD = "filter"
_LABEL_KEY = re.compile(r"[A-Za-z0-9_.\-]+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_VALUE = re.compile(r"[A-Za-z0-9_.:/@+\-]+")
_WORD = re.compile(r"\S+")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "'": "'"}


def parse_filter(text: str, *, fields: Iterable[str] = DEFAULT_FIELDS) -> tuple[LabelTerm, ...]:
    """Parse a list filter into its terms, all of which must hold.

    Args:
        text: The request's ``filter``; empty or blank means no restriction.
        fields: The plain (non-label) fields that may be compared with ``=`` and ``!=``.

    Returns:
        The terms in the order written. Label terms have keys ``labels.KEY``.

    Raises:
        InvalidArgumentError: On the field ``filter``, naming the problem and its position
            (counting characters from 1).
    """
    if len(text) > MAX_FILTER_LENGTH:
        raise _error(f"is {len(text)} characters long; at most {MAX_FILTER_LENGTH} are allowed")
    return _Parser(text, frozenset(fields)).parse()


def _error(description: str) -> InvalidArgumentError:
    return InvalidArgumentError.for_field(_FIELD, description)


class _Parser:
    """A hand-written recursive-descent parser: the grammar is tiny and error positions matter."""

    def __init__(self, text: str, fields: frozenset[str]) -> None:
        self.text = text
        self.fields = fields
        self.pos = 0

    def parse(self) -> tuple[LabelTerm, ...]:
        terms: list[LabelTerm] = []
        self._skip_space()
        if self._at_end():
            return ()
        while True:
            terms.append(self._term())
            self._skip_space()
            if self._at_end():
                return tuple(terms)
            word = self._peek_word()
            if word == "AND":
                self.pos += 3
                self._skip_space()
                if self._at_end():
                    self._fail("expected a term after AND")
                continue
            if word.upper() in ("AND", "OR", "NOT"):
                self._fail(
                    f"'{word}' is not supported: terms are joined by AND, written in capitals"
                )
            self._fail(f"expected AND or the end of the filter, found {self._found()}")

    def _term(self) -> LabelTerm:
        start = self.pos
        if self.text.startswith("labels.", self.pos):
            self.pos += len("labels.")
            match = _LABEL_KEY.match(self.text, self.pos)
            if match is None:
                self._fail("expected a label key after 'labels.'")
            key = "labels." + match.group()
            self.pos = match.end()
        else:
            match = _IDENTIFIER.match(self.text, self.pos)
            if match is None:
                self._fail(f'expected a term such as labels.KEY = "VALUE", found {self._found()}')
            key = match.group()
            if key == "labels":
                self.pos = match.end()
                self._fail("expected '.' and a label key after 'labels'")
            if key not in self.fields:
                allowed = ", ".join(["labels.KEY", *sorted(self.fields)])
                self._fail(f"unknown field '{key}'; filters may use {allowed}", at=start)
            self.pos = match.end()
        self._skip_space()
        if self.text.startswith("!=", self.pos):
            self.pos += 2
            return LabelTerm(key, "!=", self._value())
        if self.text.startswith("=", self.pos):
            self.pos += 1
            return LabelTerm(key, "=", self._value())
        if self.text.startswith(":", self.pos):
            if not key.startswith("labels."):
                self._fail(f"':*' applies to labels only, not to '{key}'")
            self.pos += 1
            self._skip_space()
            if not self.text.startswith("*", self.pos):
                self._fail(
                    f"expected '*' after ':' (labels.KEY:* tests that a label is set), found {self._found()}"
                )
            self.pos += 1
            return LabelTerm(key, ":*")
        self._fail(f"expected '=', '!=' or ':*' after '{key}', found {self._found()}")

    def _value(self) -> str:
        self._skip_space()
        if self._at_end():
            self._fail('expected a value, such as "text", at the end of the filter')
        if self.text[self.pos] == '"':
            return self._quoted()
        match = _BARE_VALUE.match(self.text, self.pos)
        if match is None:
            self._fail(f'expected a value in double quotes, such as "text", found {self._found()}')
        if match.group() in ("AND", "OR", "NOT"):
            self._fail(f"expected a value, found the keyword '{match.group()}'")
        self.pos = match.end()
        return match.group()

    def _quoted(self) -> str:
        start = self.pos
        self.pos += 1  # the opening quote
        out: list[str] = []
        while not self._at_end():
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(out)
            if char == "\\":
                if self.pos + 1 >= len(self.text):
                    break
                escaped = self.text[self.pos + 1]
                if escaped not in _ESCAPES:
                    self._fail(f"unknown escape '\\{escaped}' in a quoted value; use \\\" or \\\\")
                out.append(_ESCAPES[escaped])
                self.pos += 2
                continue
            out.append(char)
            self.pos += 1
        self._fail("unterminated quoted value: no closing '\"'", at=start)

    # --- helpers -----------------------------------------------------------------------------
    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _at_end(self) -> bool:
        return self.pos >= len(self.text)

    def _peek_word(self) -> str:
        match = _WORD.match(self.text, self.pos)
        return match.group() if match else ""

    def _found(self) -> str:
        if self._at_end():
            return "the end of the filter"
        return repr(self.text[self.pos : self.pos + 12])

    def _fail(self, problem: str, *, at: int | None = None) -> NoReturn:
        position = (self.pos if at is None else at) + 1
        # Quote the filter back when it is short enough to help rather than drown the message.
        where = f" of {self.text!r}" if len(self.text) <= 200 else ""
        raise _error(f"{problem} (at position {position}{where})")
