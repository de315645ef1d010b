"""The definition loader: a validating parser from YAML text to a frozen :class:`Definition`.

Loading runs three stages, and reports every problem of the stage that fails, each with file, line, column
and YAML path:

1. :mod:`lifecycle.yamlsafe` reads the text as untrusted YAML (size, depth and alias limits, standard tags
   only, no duplicate keys). Its problems are raised as :class:`~lifecycle.errors.YamlProblems`.
2. pydantic validates the value against :class:`~lifecycle.spec.models.Definition`. Each pydantic error
   becomes a :class:`~lifecycle.errors.Problem` with the code ``schema.<pydantic error type>`` (e.g.
   ``schema.missing``, ``schema.extra_forbidden``) and a Chinese and English message.
3. :func:`lifecycle.spec.checks.check_definition` runs the static checks (``check.*`` codes). They need a
   valid model, so they run only when stage 2 found nothing.

Problems of stages 2 and 3 are raised together as one :class:`~lifecycle.errors.DefinitionError`, sorted by
line and column.

A loaded definition carries a ``content_hash`` over its canonical JSON form, so that reformatting the YAML
or editing comments keeps the hash, and any change of meaning changes it (a published version's content is
immutable: the store keeps this hash).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from lifecycle.errors import DefinitionError, Location, Problem, YamlProblems
from lifecycle.messages import CATALOGUE, register, render
from lifecycle.spec.checks import check_definition
from lifecycle.spec.models import Definition
from lifecycle.yamlsafe import LoadedYaml, SourceMap, YamlPath, load_yaml_bytes, load_yaml_file

__all__ = [
    "LoadedDefinition",
    "content_hash",
    "load_definition_file",
    "load_definition_text",
    "load_directory",
]

# Messages for the pydantic error types a definition file commonly meets. Other types keep their code
# (``schema.<type>``) and get the generic ``schema.invalid`` text with pydantic's own English message.
register(
    {
        "schema.invalid": ("取值无效：{msg}", "invalid value: {msg}"),
        "schema.missing": ("缺少必填项 “{key}”", "required key '{key}' is missing"),
        "schema.extra_forbidden": (
            "不认识的键 “{key}”（是否拼写错误？）",
            "unknown key '{key}' (a typo?)",
        ),
        "schema.invalid_key": ("键必须是文本", "a key must be a string"),
        "schema.string_pattern_mismatch": (
            "“{input}” 的格式不对，应符合 {pattern}{hint_zh}",
            "'{input}' does not match {pattern}{hint_en}",
        ),
        "schema.string_too_short": ("文本不能为空", "the text cannot be empty"),
        "schema.string_too_long": ("文本过长，最多 {max_length} 个字符", "text longer than {max_length} characters"),
        "schema.too_short": (
            "至少需要 {min_length} 项，实际 {actual_length} 项",
            "needs at least {min_length} entry(ies), has {actual_length}",
        ),
        "schema.too_long": (
            "最多 {max_length} 项，实际 {actual_length} 项",
            "allows at most {max_length} entry(ies), has {actual_length}",
        ),
        "schema.string_type": ("应为文本", "should be a string"),
        "schema.int_type": ("应为整数", "should be an integer"),
        "schema.int_parsing": ("应为整数，实际为 “{input}”", "should be an integer, not '{input}'"),
        "schema.int_from_float": ("应为整数，不能有小数", "should be a whole number"),
        "schema.decimal_type": ("应为数字", "should be a number"),
        "schema.decimal_parsing": ("应为数字，实际为 “{input}”", "should be a number, not '{input}'"),
        "schema.bool_type": ("应为 true 或 false", "should be true or false"),
        "schema.bool_parsing": ("应为 true 或 false，实际为 “{input}”", "should be true or false, not '{input}'"),
        "schema.list_type": ("应为列表", "should be a list"),
        "schema.dict_type": ("应为映射（键: 值）", "should be a mapping (key: value)"),
        "schema.model_type": ("应为映射（键: 值）", "should be a mapping (key: value)"),
        "schema.model_attributes_type": ("应为映射（键: 值）", "should be a mapping (key: value)"),
        "schema.literal_error": ("取值应为以下之一：{expected_zh}", "should be one of: {expected}"),
        "schema.greater_than_equal": ("应不小于 {ge}", "should be at least {ge}"),
        "schema.less_than_equal": ("应不大于 {le}", "should be at most {le}"),
        "schema.greater_than": ("应大于 {gt}", "should be greater than {gt}"),
        "schema.less_than": ("应小于 {lt}", "should be less than {lt}"),
        "schema.value_error": ("{detail_zh}", "{detail_en}"),
        "definition.duplicate_key": (
            "定义键 “{key}” 已在文件 {first} 中使用",
            "definition key '{key}' is already used by {first}",
        ),
    }
)

_TYPE_NAMES: dict[str, tuple[str, str]] = {
    "string_type": ("文本", "a string"),
    "int_type": ("整数", "an integer"),
    "int_parsing": ("整数", "an integer"),
    "int_from_float": ("整数", "an integer"),
    "decimal_type": ("数字", "a number"),
    "decimal_parsing": ("数字", "a number"),
    "float_type": ("数字", "a number"),
    "bool_type": ("true 或 false", "true or false"),
    "bool_parsing": ("true 或 false", "true or false"),
}
"""How a union member is named when a value fits none of a union's types."""

_VALIDATOR_MESSAGES_ZH: tuple[tuple[str, str], ...] = (
    ("choices are given exactly when", "当且仅当 type 为 choice 时填写 choices（且不能为空）"),
    ("a condition has exactly one of", "每个条件必须且只能写一种条件（group_done、item_done、field_present…之一）"),
    ("a gate has exactly one of", "关卡必须且只能写 all 或 any 之一"),
    ("'duration' is given exactly when", "当且仅当 basis 为 duration 时填写 duration"),
    ("'field' is given exactly when", "当且仅当 basis 为 field_date 时填写 field"),
    (
        "due rule does not fit the recurrence",
        "报送时间与周期不符：每周须写 weekday；每月须写 day 或 last_day；每季度须写 month_of_quarter 及 day "
        "或 last_day；每年须写 month 及 day 或 last_day",
    ),
)
"""Chinese for the models' own validator messages (raised in English as ValueError), by English prefix."""

_PATTERN_HINTS: dict[str, tuple[str, str]] = {
    r"^[a-z][a-z0-9_]*$": (
        "（标识用小写英文字母、数字和下划线，以字母开头）",
        " (ids use lower-case letters, digits and underscores, starting with a letter)",
    ),
    r"^[a-z][a-z0-9-]*$": (
        "（定义键用小写英文字母、数字和连字符，以字母开头）",
        " (a definition key uses lower-case letters, digits and hyphens, starting with a letter)",
    ),
    r"^([01]\d|2[0-3]):[0-5]\d$": ("（时间写作 HH:MM，如 18:00）", " (a time is written HH:MM, e.g. 18:00)"),
}
"""A plain-words reading of the models' string patterns, by pattern."""


@dataclass(frozen=True)
class LoadedDefinition:
    """A definition read from YAML and validated, with what it was read from.

    Attributes:
        definition: the frozen, validated definition.
        source: where each value stands in the file (for later messages about it).
        text: the YAML text as read.
        content_hash: ``"sha256:<hex>"`` of the definition's canonical JSON (see :func:`content_hash`).
    """

    definition: Definition
    source: SourceMap
    text: str
    content_hash: str


def content_hash(definition: Definition) -> str:
    """``"sha256:<hex>"`` of the canonical JSON of ``definition``: its full dump by alias (defaults filled
    in), keys sorted, no insignificant whitespace. Formatting, comments, key order and shorthand (``from: a``
    for ``from: [a]``) do not change it; any change of value does."""
    canonical = json.dumps(
        definition.model_dump(mode="json", by_alias=True),
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_definition_file(path: Path | str) -> LoadedDefinition:
    """Load and check the definition in the YAML file ``path``.

    Raises:
        YamlProblems: the file cannot be read as safe YAML.
        DefinitionError: the definition breaks the schema or a static check (every problem, sorted).
    """
    path = Path(path)
    loaded = load_yaml_file(path)  # checks the size before reading, so a huge file is never read whole
    # Read again for ``text`` (yamlsafe keeps no copy), decoded as yamlsafe did: a BOM is dropped.
    text = path.read_bytes().decode("utf-8-sig")
    return _validate(loaded, text)


def load_definition_text(text: str | bytes, name: str = "<input>") -> LoadedDefinition:
    """Load and check a definition given as YAML text (e.g. an upload); ``name`` is shown in locations.

    Raises:
        YamlProblems: the text cannot be read as safe YAML.
        DefinitionError: the definition breaks the schema or a static check (every problem, sorted).
    """
    loaded = load_yaml_bytes(text, name)
    if isinstance(text, bytes):
        text = text.decode("utf-8-sig")
    return _validate(loaded, text)


def load_directory(directory: Path | str) -> dict[str, LoadedDefinition]:
    """Load every ``*.yaml`` definition directly in ``directory`` (not its sub-folders, which hold e.g. the
    calendars), keyed by definition key. Schema files (``schema.yaml``, ``*.schema.yaml``) are skipped.

    Raises:
        DefinitionError: any file has problems, or two files have the same key. It lists the problems of
            every file, not just the first bad one.
    """
    directory = Path(directory)
    loaded: dict[str, LoadedDefinition] = {}
    problems: list[Problem] = []
    for path in sorted(directory.glob("*.yaml")):
        if not path.is_file() or path.stem == "schema" or path.name.endswith(".schema.yaml"):
            continue
        try:
            one = load_definition_file(path)
        except (YamlProblems, DefinitionError) as exc:
            problems.extend(exc.problems())
            continue
        key = one.definition.key
        if key in loaded:
            first = loaded[key].source.file
            problems.append(Problem.of("definition.duplicate_key", one.source.locate(("key",)), key=key, first=first))
            continue
        loaded[key] = one
    if problems:
        raise DefinitionError(problems)
    return loaded


def _validate(loaded: LoadedYaml, text: str) -> LoadedDefinition:
    try:
        definition = Definition.model_validate(loaded.data)
    except ValidationError as exc:
        raise DefinitionError(_sorted(schema_problems(exc.errors(), loaded.data, loaded.source))) from None
    problems = check_definition(definition, loaded.source)
    if problems:
        raise DefinitionError(_sorted(problems))
    return LoadedDefinition(
        definition=definition, source=loaded.source, text=text, content_hash=content_hash(definition)
    )


def _sorted(problems: Iterable[Problem]) -> list[Problem]:
    def key(problem: Problem) -> tuple[int, int, str]:
        where = problem.location
        return (where.line, where.column, problem.code) if where else (0, 0, problem.code)

    return sorted(problems, key=key)


def schema_problems(errors: Sequence[ErrorDetails], data: Any, source: SourceMap) -> list[Problem]:
    """Turn pydantic's ``errors`` about ``data`` into located problems, one per place and error type.

    pydantic's locations name the union member tried (``value, "int"``) and model validators' steps;
    those segments are not in the YAML and are dropped. When a value fits none of a union's members,
    pydantic reports one error per member: they become one problem, coded by the first member's error
    type, whose message lists every type the value may have.
    """
    grouped: dict[YamlPath, list[ErrorDetails]] = {}
    plain: list[tuple[YamlPath, ErrorDetails]] = []
    for error in errors:
        path, dropped = _yaml_path(error["loc"], data, missing=error["type"] == "missing")
        if dropped:
            grouped.setdefault(path, []).append(error)
        else:
            plain.append((path, error))
    problems = [
        # An unknown key is the key's own mistake: point at the key, not at its value.
        _problem(error, source.locate_key(path) if error["type"] == "extra_forbidden" else source.locate(path))
        for path, error in plain
    ]
    for path, members in grouped.items():
        if len(members) == 1:
            problems.append(_problem(members[0], source.locate(path)))
            continue
        zh = "、".join(dict.fromkeys(_TYPE_NAMES.get(e["type"], (e["type"], ""))[0] for e in members))
        en = ", ".join(dict.fromkeys(_TYPE_NAMES.get(e["type"], ("", e["type"]))[1] for e in members))
        first = members[0]
        problems.append(
            Problem(
                code=f"schema.{first['type']}",
                zh=f"取值类型不对，应为以下之一：{zh}",
                en=f"wrong type: should be one of {en}",
                location=source.locate(path),
                params={"type": first["type"], "msg": "; ".join(e["msg"] for e in members)},
            )
        )
    return problems


def _yaml_path(loc: tuple[int | str, ...], data: Any, *, missing: bool) -> tuple[YamlPath, bool]:
    """Follow ``loc`` through ``data`` and keep the segments that are keys or indexes of the YAML value.

    Returns the YAML path and whether any segment was dropped. A missing key is kept as the last segment
    (the source map then locates its mapping).
    """
    path: list[str | int] = []
    dropped = False
    node = data
    for position, segment in enumerate(loc):
        last = position == len(loc) - 1
        in_mapping = isinstance(node, dict) and segment in node
        in_sequence = isinstance(node, list) and isinstance(segment, int) and 0 <= segment < len(node)
        if in_mapping or in_sequence:
            node = node[segment]
        elif not (isinstance(node, dict) and last and missing):
            dropped = True
            continue
        path.append(segment)
    return tuple(path), dropped


def _problem(error: ErrorDetails, location: Location) -> Problem:
    kind = error["type"]
    code = f"schema.{kind}"
    params: dict[str, Any] = {"type": kind, "msg": error["msg"], "input": _short(error.get("input"))}
    for name, value in (error.get("ctx") or {}).items():
        params[name] = value if isinstance(value, int | float | str) else str(value)
    loc = error["loc"]
    if loc and kind in ("missing", "extra_forbidden"):
        params["key"] = loc[-1]
    if kind == "string_pattern_mismatch":
        params["hint_zh"], params["hint_en"] = _PATTERN_HINTS.get(str(params.get("pattern")), ("", ""))
    if kind == "literal_error":
        params["expected_zh"] = str(params.get("expected", "")).replace(" or ", "、").replace(", ", "、")
    if kind == "value_error":
        detail = error["msg"].removeprefix("Value error, ")
        params["detail_en"] = detail
        params["detail_zh"] = next(
            (zh for prefix, zh in _VALIDATOR_MESSAGES_ZH if detail.startswith(prefix)), f"取值无效：{detail}"
        )
    if code in CATALOGUE:
        return Problem.of(code, location, **params)
    # An error type without its own message keeps its precise code, with the generic text.
    zh, en = render("schema.invalid", params)
    return Problem(code=code, zh=zh, en=en, location=location, params=params)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
