"""The strict front gate for cron text: raypipe's grammar, and the refusals croniter lacks.

:mod:`control_plane.schedules.timing.cron` hands croniter only what has passed this gate, in a
canonical spelling. The gate refuses, each with a message that names the field: a 6- or
7-field expression, ``@reboot``, out-of-range values, backwards (wrapping) ranges, a step of
0 or one wider than the field, ``?``, ``W``, ``H``/``R``, croniter's ``L5`` spelling, and
(decided with croniter in :mod:`~control_plane.schedules.timing.cron`) a cron that can never fire.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "ALIASES",
    "DOM",
    "DOW",
    "FIELD_NAMES",
    "HOUR",
    "MAX_LENGTH",
    "MINUTE",
    "MONTH",
    "CronError",
    "Field",
    "never_fires_problem",
    "parse_fields",
]


#: The aliases raypipe accepts and the 5-field expressions they stand for.
ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
# What each field accepts, as told to a user whose value is out of range.
_RANGE_HINTS = (
    "0-59",
    "0-23; midnight is 0",
    "1-31",
    "1-12 or JAN-DEC",
    "0-7 or SUN-SAT; 0 and 7 are both Sunday",
)
# (lowest, highest) number accepted in each field; day-of-week accepts 7 for Sunday.
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
# Range that `*` stands for; day-of-week stops at 6 so Sunday is not counted twice.
_STAR = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
MINUTE, HOUR, DOM, MONTH, DOW = range(5)

_ITEM_RE = re.compile(r"^(?P<start>\*|[0-9a-z]+)(?:-(?P<end>[0-9a-z]+))?(?:/(?P<step>[0-9]+))?$")
_NTH_RE = re.compile(r"^(?P<day>[0-9a-z]+)#(?P<n>[0-9]+)$")
_LAST_WEEKDAY_RE = re.compile(r"^(?P<day>[0-9a-z]+)l$")
#: The longest cron expression accepted (every minute listed one by one fits).
MAX_LENGTH = 1024


class CronError(ValueError):
    """A cron expression that raypipe refuses.

    Attributes:
        expression: The expression as written.
        problems: One sentence per problem, each naming the field it is about.
    """

    def __init__(self, expression: str, problems: Sequence[str]) -> None:
        self.expression = expression
        self.problems = tuple(problems)
        super().__init__(f"invalid cron expression {expression!r}: " + "; ".join(self.problems))


def _field_count_problem(count: int) -> str:
    layout = "minute hour day-of-month month day-of-week"
    if count == 6:
        return (
            f"it has 6 fields; raypipe uses standard 5-field cron ({layout}). croniter "
            "would read a 6th field as seconds and Quartz reads the first field as seconds, "
            "so a 6-field expression means different schedules in different tools: drop "
            "the seconds field (schedules fire at most once a minute)"
        )
    if count == 7:
        return (
            f"it has 7 fields (seconds and a year, as in Quartz); raypipe uses standard "
            f"5-field cron ({layout}): drop the seconds and year fields"
        )
    plural = "s" if count != 1 else ""
    return f"it has {count} field{plural}; raypipe uses 5 ({layout}), such as '30 2 * * *'"


class _FieldError(Exception):
    """A problem with one field; parse_fields names the field."""


@dataclass
class Field:
    """One field as the gate read it: plain values and the special items."""

    values: set[int] = field(default_factory=set)
    last: bool = False  # day-of-month `L`
    nth: set[tuple[int, int]] = field(default_factory=set)  # day-of-week `d#n`
    last_weekdays: set[int] = field(default_factory=set)  # day-of-week `dL`


def _parse_field(index: int, text: str) -> Field:
    result = Field()
    for item in text.split(","):
        _parse_item(index, item, result)
    return result


def _parse_item(index: int, item: str, into: Field) -> None:
    if not item:
        raise _FieldError("empty list item (two commas in a row, or a trailing comma?)")
    if item == "?":
        raise _FieldError("'?' is Quartz syntax; in 5-field cron write '*'")
    if item[0] in "hr" and (item in ("h", "r") or item[1] in "(/"):
        raise _FieldError(f"'{item.upper()}' (hashed or random values) is not standard cron")
    if index == DOM:
        if item == "l":
            into.last = True
            return
        if "w" in item:
            raise _FieldError(f"'{item.upper()}' (nearest weekday) is not supported")
    if index == DOW:
        nth = _NTH_RE.match(item)
        if nth:
            n = int(nth["n"])
            if not 1 <= n <= 5:
                raise _FieldError(
                    f"in '{item.upper()}' the n of weekday#n must be 1-5 (no month has a "
                    "6th weekday)"
                )
            into.nth.add((_value(index, nth["day"]), n))
            return
        last = _LAST_WEEKDAY_RE.match(item)
        if last:
            into.last_weekdays.add(_value(index, last["day"]))
            return
        if item[0] == "l" and item[1:].isdigit():
            raise _FieldError(
                f"'{item.upper()}' is croniter's spelling; for the last weekday d of the "
                f"month write {item[1:]}L"
            )
    if ("l" in item and index not in (MONTH, DOW)) or item == "l":
        raise _FieldError(
            "'L' is only allowed in day-of-month (the last day of the month) and as "
            "weekday L in day-of-week ('5L': the last Friday)"
        )
    if "#" in item:
        if index == DOW:
            raise _FieldError(f"'{item.upper()}': weekday#n takes one weekday and n in 1-5")
        raise _FieldError(f"'{item}': '#' is only allowed in day-of-week, as weekday#n")
    match = _ITEM_RE.match(item)
    if not match:
        raise _FieldError(
            f"'{item}' is not cron syntax (expected *, a number, a range a-b, a step */n "
            "or a-b/n, or a comma-separated list of these)"
        )
    start, end, step_text = match["start"], match["end"], match["step"]
    star_low, star_high = _STAR[index]
    if start == "*":
        if end is not None:
            raise _FieldError(f"'{item}': '*' cannot start a range")
        low, high = star_low, star_high
    else:
        low = _value(index, start)
        if end is not None:
            high = _value(index, end)
            if high < low:
                raise _FieldError(
                    f"range {start.upper()}-{end.upper()} runs backwards; cron ranges do not "
                    f"wrap around: write it as two ranges, {_split_range(index, start, end)}"
                )
        elif step_text is not None:
            high = max(low, star_high)  # `a/n` runs from a to the field's maximum
        else:
            high = low
    step = 1
    if step_text is not None:
        step = int(step_text)
        if step == 0:
            raise _FieldError(f"'{item}': a step must be at least 1")
        if step > high - low:
            # `*/90` in minutes is minute 0 only, not every 90 minutes: a common mistake
            # that croniter and most crons accept silently.
            span = f"the {FIELD_NAMES[index]} field's range" if start == "*" else "its range"
            raise _FieldError(
                f"step {step} in '{item}' is larger than {span} ({low}-{high}), so it "
                f"selects only {low}: cron steps restart every hour, day, month or year "
                "instead of carrying over; use an interval trigger for a fixed spacing"
            )
    into.values.update(range(low, high + 1, step))


def _split_range(index: int, start: str, end: str) -> str:
    low, high = _STAR[index]
    if start.isalpha() and index == MONTH:
        low_text, high_text = "JAN", "DEC"
    elif start.isalpha() and index == DOW:
        low_text, high_text = "SUN", "SAT"
    else:
        low_text, high_text = str(low), str(high)
    return f"{start.upper()}-{high_text},{low_text}-{end.upper()}"


def _value(index: int, token: str) -> int:
    names = _MONTH_NAMES if index == MONTH else _DAY_NAMES if index == DOW else {}
    if token.isdigit():
        value = int(token)
    elif token in names:
        return names[token]
    elif names:
        example = "JAN-DEC" if index == MONTH else "SUN-SAT"
        raise _FieldError(f"'{token.upper()}' is neither a number nor a name ({example})")
    else:
        raise _FieldError(f"'{token}' is not a number")
    low, high = _BOUNDS[index]
    if not low <= value <= high:
        raise _FieldError(f"{value} is out of range ({_RANGE_HINTS[index]})")
    return value


def parse_fields(expression: str) -> tuple[list[str], list[Field]]:
    """Check ``expression`` against raypipe's grammar and read its five fields.

    Args:
        expression: Such as ``"*/15 9-17 * * MON-FRI"`` or ``"@daily"``.

    Returns:
        The five fields as written (an alias replaced by its expansion) and as read.

    Raises:
        CronError: With every problem found, each naming its field.
    """
    text = expression.strip()
    if not text:
        raise CronError(expression, ["the cron expression is empty"])
    if len(text) > MAX_LENGTH:
        raise CronError(expression[:40] + "...", [f"it is longer than {MAX_LENGTH} characters"])
    if text.startswith("@"):
        alias = text.lower()
        if alias == "@reboot":
            raise CronError(
                expression,
                [
                    "@reboot runs when a machine boots, which a schedule has no notion of; "
                    "use a once trigger, or trigger the schedule by hand"
                ],
            )
        if alias not in ALIASES:
            raise CronError(
                expression,
                [f"unknown alias {text!r}; raypipe knows " + ", ".join(ALIASES)],
            )
        text = ALIASES[alias]
    fields = text.split()
    if len(fields) != 5:
        raise CronError(expression, [_field_count_problem(len(fields))])
    problems: list[str] = []
    parsed = []
    for index, raw in enumerate(fields):
        try:
            parsed.append(_parse_field(index, raw.lower()))
        except _FieldError as exc:
            problems.append(f"{FIELD_NAMES[index]} field: {exc}")
    if problems:
        raise CronError(expression, problems)
    return fields, parsed


def never_fires_problem(fields: list[str], months: frozenset[int]) -> str:
    """The refusal of a cron whose days never occur in its months."""
    names = [calendar.month_name[m] for m in sorted(months)]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"it can never fire: day-of-month {fields[DOM]} does not occur in {listed} in any year"
