"""Typed values of project fields: checking what a caller sends against the field's declared type.

Fields are declared in the definition (:class:`lifecycle.spec.models.FieldSpec`); callers send JSON. This
module turns JSON values into Python ones (``Decimal`` for money in 万元, ``date`` for dates) and reports
every bad value at once, each with its field path.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from lifecycle.errors import Location, Problem
from lifecycle.messages import register
from lifecycle.spec.models import FieldSpec

register(
    {
        "field.unknown": ("未定义的字段“{field}”", "unknown field '{field}'"),
        "field.not_accepted": ("此操作不能修改字段“{field}”", "this action may not set field '{field}'"),
        "field.type": ("“{title}”应为{type_zh}", "'{title}' must be {type_en}"),
        "field.choice": ("“{title}”只能取：{choices}", "'{title}' must be one of: {choices}"),
        "field.too_long": ("“{title}”超过 {limit} 个字符", "'{title}' is longer than {limit} characters"),
        "field.required": ("“{title}”必须填写", "'{title}' is required"),
    }
)

_TYPE_NAMES = {
    "string": ("文本", "text"),
    "text": ("文本", "text"),
    "integer": ("整数", "a whole number"),
    "decimal": ("数字", "a number"),
    "date": ("日期（YYYY-MM-DD）", "a date (YYYY-MM-DD)"),
    "boolean": ("是/否", "true or false"),
    "choice": ("选项", "a choice"),
    "attachments": ("附件引用列表", "a list of attachment references"),
}

MAX_DECIMAL_DIGITS = 20


def coerce(spec: FieldSpec, value: Any, path: tuple[str | int, ...]) -> tuple[Any, Problem | None]:
    """``value`` as the Python value of field ``spec``, or a problem saying why it is not one.

    ``None`` clears a field and is always accepted here (whether a field may be empty is a gate's business).
    """
    if value is None:
        return None, None
    coerced = _coerce(spec, value)
    if coerced is _BAD:
        type_zh, type_en = _TYPE_NAMES[spec.type]
        return None, Problem.of(
            "field.type", request_location(path), title=spec.title, field=spec.id, type_zh=type_zh, type_en=type_en
        )
    if coerced is _TOO_LONG:
        limit = _text_limit(spec)
        return None, Problem.of("field.too_long", request_location(path), title=spec.title, limit=limit)
    if coerced is _NOT_A_CHOICE:
        choices = "、".join(spec.choices or [])
        return None, Problem.of("field.choice", request_location(path), title=spec.title, choices=choices)
    return coerced, None


_BAD, _TOO_LONG, _NOT_A_CHOICE = object(), object(), object()


def _text_limit(spec: FieldSpec) -> int:
    return spec.max_length or (200 if spec.type == "string" else 20_000)


def _coerce(spec: FieldSpec, value: Any) -> Any:
    """The Python value, or one of the markers ``_BAD``, ``_TOO_LONG``, ``_NOT_A_CHOICE``.

    Problems are built only when a value is wrong: this runs on every fire that carries data.
    """
    match spec.type:
        case "string" | "text":
            if not isinstance(value, str):
                return _BAD
            return value if len(value) <= _text_limit(spec) else _TOO_LONG
        case "integer":
            if isinstance(value, bool) or not isinstance(value, int | str):
                return _BAD
            try:
                return int(value)
            except ValueError:
                return _BAD
        case "decimal":
            if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
                return _BAD
            try:
                number = Decimal(str(value))
            except InvalidOperation:
                return _BAD
            if not number.is_finite() or len(number.as_tuple().digits) > MAX_DECIMAL_DIGITS:
                return _BAD
            return number
        case "date":
            if isinstance(value, date):
                return value
            if not isinstance(value, str):
                return _BAD
            try:
                return date.fromisoformat(value)
            except ValueError:
                return _BAD
        case "boolean":
            return value if isinstance(value, bool) else _BAD
        case "choice":
            return value if value in (spec.choices or []) else _NOT_A_CHOICE
        case "attachments":
            if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 500 for v in value):
                return _BAD
            return list(value)
    return _BAD  # pragma: no cover - every FieldSpec.type is matched above


def coerce_all(
    specs: Mapping[str, FieldSpec],
    values: Mapping[str, Any],
    *,
    allowed: set[str] | None = None,
    prefix: tuple[str | int, ...] = ("data",),
) -> tuple[dict[str, Any], list[Problem]]:
    """Coerce every value; unknown fields and fields outside ``allowed`` are problems too."""
    out: dict[str, Any] = {}
    problems: list[Problem] = []
    for name, value in values.items():
        path = (*prefix, name)
        spec = specs.get(name)
        if spec is None:
            problems.append(Problem.of("field.unknown", request_location(path), field=name))
            continue
        if allowed is not None and name not in allowed:
            problems.append(Problem.of("field.not_accepted", request_location(path), field=name))
            continue
        coerced, problem = coerce(spec, value, path)
        if problem is not None:
            problems.append(problem)
        else:
            out[name] = coerced
    return out, problems


def to_json(value: Any) -> Any:
    """A field value as JSON (Decimal as a string, to keep every digit of money; dates as ISO text)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def request_location(path: tuple[str | int, ...]) -> Location:
    """Where a problem with the caller's input is: a JSON path in the request (no file, line or column)."""
    return Location(file="request", line=0, column=0, path=path)
