"""The catalogue of user-facing messages, in Chinese and English, keyed by stable problem codes.

Codes are part of the public contract (the API returns them and integrators match on them); messages may be
reworded. Templates use ``str.format`` fields filled from the problem's parameters; a missing parameter is
shown as ``?`` rather than failing, because an error message must never itself raise.
"""

from __future__ import annotations

from typing import Any

CATALOGUE: dict[str, tuple[str, str]] = {
    # --- YAML reading -----------------------------------------------------------------------------------
    "yaml.too_large": (
        "文件过大（{size} 字节），上限 1 MiB",
        "file too large ({size} bytes); the limit is 1 MiB",
    ),
    "yaml.unreadable": ("无法读取文件：{reason}", "cannot read the file: {reason}"),
    "yaml.not_utf8": ("文件不是 UTF-8 编码：{reason}", "the file is not UTF-8: {reason}"),
    "yaml.syntax": ("YAML 语法错误：{reason}", "YAML syntax error: {reason}"),
    "yaml.many_documents": ("一个文件只能包含一个 YAML 文档", "a file may hold only one YAML document"),
    "yaml.empty": ("文件为空", "the file is empty"),
    "yaml.too_many_nodes": (
        "展开后的值超过 {limit} 个（可能是别名炸弹）",
        "more than {limit} values after alias expansion (an alias bomb?)",
    ),
    "yaml.too_deep": ("嵌套层级超过 {limit} 层", "nesting deeper than {limit} levels"),
    "yaml.tag": ("不允许使用 YAML 标签 {tag}", "YAML tag {tag} is not allowed"),
    "yaml.scalar": ("无法解析该值：{reason}", "cannot read this value: {reason}"),
    "yaml.merge": ("合并键（<<）使用错误：{reason}", "wrong use of a merge key (<<): {reason}"),
    "yaml.complex_key": ("映射的键必须是简单值", "a mapping key must be a plain scalar"),
    "yaml.duplicate_key": ("键 “{key}” 重复出现", "key '{key}' appears twice"),
    # --- engine -------------------------------------------------------------------------------------------
    "engine.gate_not_satisfied": (
        "“{gate}”条件未满足（{count} 项），不能执行 {trigger}",
        "gate '{gate}' is not satisfied ({count} condition(s) unmet); cannot fire {trigger}",
    ),
    "engine.invalid_transition": (
        "当前状态 {state} 不能执行 {trigger}；可执行：{allowed}",
        "{trigger} cannot fire from state {state}; allowed here: {allowed}",
    ),
    "engine.role_refused": (
        "无权执行 {trigger}，需要以下角色之一：{roles}",
        "not allowed to fire {trigger}; it needs one of the roles: {roles}",
    ),
    "engine.department_refused": (
        "该事项不属于本部门办理，不能执行 {trigger}",
        "this item is assigned to another department; cannot fire {trigger}",
    ),
    "engine.one_time_notice_breach": (
        "违反一次性告知规定：事项 {task} 的本次申请已发出补正告知 {notice}，不得再次告知",
        "breach of the one-time notice rule: a deficiency notice ({notice}) was already issued for this "
        "submission of {task}",
    ),
    "input.invalid": ("输入无效", "invalid input"),
    "not_found": ("未找到{kind} {id}", "{kind} {id} not found"),
    "stale_version": (
        "{kind} {id} 已被他人修改（期望版本 {expected}，当前版本 {actual}），请刷新后重试",
        "{kind} {id} was changed by someone else (expected version {expected}, current {actual}); reload and try again",
    ),
}


class _Lenient(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def register(messages: dict[str, tuple[str, str]]) -> None:
    """Add messages to the catalogue (each module keeps its own codes next to the code that raises them)."""
    clash = set(messages) & set(CATALOGUE)
    if clash:
        raise ValueError(f"message codes registered twice: {sorted(clash)}")
    CATALOGUE.update(messages)


def render(code: str, params: dict[str, Any]) -> tuple[str, str]:
    """The Chinese and English messages for ``code`` filled with ``params``."""
    zh, en = CATALOGUE.get(code, (code, code))
    values = _Lenient(params)
    return zh.format_map(values), en.format_map(values)
