"""The static checks: what each rule accepts and refuses, beyond the one-file-per-code corpus.

Each test starts from ``tests/data/valid/minimal.yaml`` (which passes every check), changes one thing, and
looks at the (code, YAML path) pairs :func:`check_definition` returns.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from lifecycle.messages import CATALOGUE
from lifecycle.spec.checks import calendar_days, check_definition, compare_durations, unknown_placeholders
from lifecycle.spec.models import Definition, Duration
from lifecycle.yamlsafe import load_yaml_bytes

MINIMAL = Path(__file__).resolve().parents[1] / "data" / "valid" / "minimal.yaml"


def minimal() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
    return data


def check(data: dict[str, Any]) -> set[tuple[str, tuple[str | int, ...]]]:
    """The (code, path) of every problem the checks find in ``data``, read as a YAML file would be."""
    loaded = load_yaml_bytes(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "case.yaml")
    definition = Definition.model_validate(loaded.data)
    problems = check_definition(definition, loaded.source)
    for problem in problems:
        assert problem.location is not None and problem.location.file == "case.yaml"
        assert problem.zh and problem.en and "?" not in (problem.zh + problem.en), problem
    return {(p.code, p.location.path) for p in problems if p.location}


def transition(trigger: str, source: str | list[str], dest: str, roles: list[str] | None = None) -> dict[str, Any]:
    return {"trigger": trigger, "title": trigger, "from": source, "to": dest, "roles": roles or ["dispatcher"]}


def test_the_minimal_definition_passes_every_check() -> None:
    assert check(minimal()) == set()


def test_every_check_code_has_both_messages() -> None:
    check_codes = [code for code in CATALOGUE if code.startswith("check.")]
    assert len(check_codes) >= 35
    for code in check_codes:
        zh, en = CATALOGUE[code]
        assert zh.strip() and en.strip() and zh != en


# --- the project machine as a graph ---------------------------------------------------------------------


def test_star_never_leaves_a_holding_state_so_a_hold_without_exits_is_a_dead_end() -> None:
    data = minimal()
    data["transitions"] = [t for t in data["transitions"] if t["trigger"] not in ("resume", "cancel")]
    # cancelled is no longer reached either: it was entered from held only.
    assert check(data) == {
        ("check.dead_end", ("states", 3, "id")),
        ("check.unreachable_state", ("states", 5, "id")),
    }


def test_previous_returns_to_the_states_a_hold_is_entered_from() -> None:
    data = minimal()
    # "paused" is entered from "building" only; its $previous leads back there and nowhere new.
    data["states"].append({"id": "paused", "title": "停工", "hold": True})
    data["transitions"].append(transition("pause", "building", "paused"))
    data["transitions"].append(transition("unpause", "paused", "$previous"))
    assert check(data) == set()


def test_a_state_reached_only_from_an_unreachable_state_is_unreachable_too() -> None:
    # "island" may be held (暂缓 is possible from "*") and "held" returns to $previous: that does not make
    # it reachable, as a return goes only where the project already was.
    data = minimal()
    data["states"].append({"id": "island", "title": "孤岛"})
    data["states"].append({"id": "beach", "title": "海滩", "terminal": True})
    data["transitions"].append(transition("swim", "island", "beach"))
    assert check(data) == {
        ("check.unreachable_state", ("states", 6, "id")),
        ("check.unreachable_state", ("states", 7, "id")),
    }


def test_a_transition_to_an_unknown_state_still_counts_as_a_way_out() -> None:
    data = minimal()
    data["transitions"][2]["to"] = "finished"  # building's only own exit
    assert check(data) == {
        ("check.unknown_state", ("transitions", 2, "to")),
        ("check.unreachable_state", ("states", 4, "id")),  # closed was reached only that way
    }


def test_same_trigger_same_state_same_destination_is_not_ambiguous() -> None:
    data = minimal()
    # Two ways to fire "complete" from building (e.g. different roles), both to closed: fine.
    data["transitions"].append(transition("complete", "building", "closed", ["unit"]))
    assert check(data) == set()


def test_star_and_an_explicit_source_with_another_destination_are_ambiguous() -> None:
    data = minimal()
    data["transitions"].append(transition("hold", "planning", "cancelled"))
    assert check(data) == {("check.duplicate_trigger_source", ("transitions", 7, "from"))}


def test_the_scheduler_role_is_always_known() -> None:
    data = minimal()
    data["roles"] = [r for r in data["roles"] if r["id"] != "system"]
    assert check(data) == set()


# --- groups, items, deficiencies ------------------------------------------------------------------------


def test_a_longer_prerequisite_cycle_is_reported_once() -> None:
    data = minimal()
    items = data["task_groups"][1]["items"]
    items.append({**items[0], "id": "land_price", "prerequisites": ["land_use"]})
    items[0]["prerequisites"] = ["land_price"]  # land_survey -> land_price -> land_use -> land_survey
    # The search starts at the first item, so the edge closing the circle is land_use -> land_survey.
    assert check(data) == {
        ("check.prerequisite_cycle", ("task_groups", 1, "items", 1, "prerequisites", 0)),
    }


def test_a_group_listed_twice_in_one_state_is_opened_twice() -> None:
    data = minimal()
    data["states"][1]["opens"].append("permits")
    assert check(data) == {("check.group_opened_twice", ("states", 1, "opens", 2))}


@pytest.mark.parametrize(
    ("cure", "limit", "too_long"),
    [
        ({"days": 10, "unit": "working_days"}, {"days": 10, "unit": "working_days"}, False),
        ({"days": 11, "unit": "working_days"}, {"days": 10, "unit": "working_days"}, True),
        ({"days": 7, "unit": "calendar_days"}, {"days": 5, "unit": "working_days"}, False),
        ({"days": 8, "unit": "calendar_days"}, {"days": 5, "unit": "working_days"}, True),
        ({"days": 5, "unit": "working_days"}, {"days": 7, "unit": "calendar_days"}, False),
        ({"days": 5, "unit": "working_days"}, {"days": 6, "unit": "calendar_days"}, True),
        ({"days": 3, "unit": "working_days"}, {"days": 5, "unit": "calendar_days"}, False),  # ceil(4.2) = 5
    ],
)
def test_cure_period_against_time_limit(cure: dict[str, Any], limit: dict[str, Any], too_long: bool) -> None:
    data = minimal()
    item = data["task_groups"][0]["items"][0]
    item["cure_period"], item["time_limit"] = cure, limit
    expected = {("check.cure_exceeds_limit", ("task_groups", 0, "items", 0, "cure_period"))}
    assert check(data) == (expected if too_long else set())


def test_durations_compare_in_one_unit_or_via_calendar_weeks() -> None:
    def d(days: int, unit: str) -> Duration:
        return Duration.model_validate({"days": days, "unit": unit})

    assert calendar_days(d(5, "working_days")) == 7
    assert calendar_days(d(1, "working_days")) == 2
    assert calendar_days(d(9, "calendar_days")) == 9
    assert compare_durations(d(20, "working_days"), d(28, "calendar_days")) == 0
    assert compare_durations(d(20, "working_days"), d(27, "calendar_days")) == 1
    assert compare_durations(d(4, "calendar_days"), d(3, "calendar_days")) == 1
    assert compare_durations(d(3, "working_days"), d(4, "working_days")) == -1


def test_a_deficiency_item_needs_both_cure_period_and_notice_machine() -> None:
    data = minimal()
    del data["task_groups"][0]["notice_machine"]
    del data["task_groups"][0]["items"][0]["cure_period"]
    problems = check(data)
    assert problems == {("check.deficiency_without_cure", ("task_groups", 0, "items", 0, "deficiency_allowed"))}


def test_then_parent_is_checked_against_every_item_machine_using_the_notice_machine() -> None:
    data = minimal()
    other = copy.deepcopy(data["task_machines"][0])
    other["id"] = "acceptance"
    next(t for t in other["transitions"] if t["trigger"] == "suspend")["trigger"] = "pause"
    data["task_machines"].append(other)
    data["task_groups"].append({**data["task_groups"][0], "id": "acceptance", "machine": "acceptance"})
    data["states"][2]["opens"] = ["acceptance"]
    # The notice's "expire" fires then_parent "suspend", which the acceptance machine lacks.
    assert check(data) == {("check.unknown_trigger", ("task_machines", 1, "transitions", 1, "then_parent"))}


# --- clocks ---------------------------------------------------------------------------------------------


def test_expiry_trigger_must_leave_every_running_state_but_not_the_paused_ones() -> None:
    data = minimal()
    clock = data["task_machines"][0]["clocks"][0]
    clock["paused_in"] = ["suspended"]  # time_out does not leave suspended: fine, the clock is paused there
    assert check(data) == set()
    clock["runs_in"].append("suspended")
    clock["paused_in"] = []
    assert check(data) == {
        ("check.expiry_trigger_not_from_state", ("task_machines", 0, "clocks", 0, "on_expiry")),
    }


def test_expiry_trigger_from_star_counts_for_every_running_state() -> None:
    data = minimal()
    data["clocks"][0]["runs_in"] = ["planning", "permitting"]
    data["clocks"][0]["on_expiry"] = "hold"
    data["transitions"][3]["roles"].append("system")
    assert check(data) == set()


# --- gates and fields -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "op", "value", "where"),
    [
        ("total_investment", "ge", 5000, None),
        ("total_investment", "lt", "5000.5", "value"),
        ("total_investment", "lt", 5000.5, None),
        ("total_investment", "eq", True, "value"),
        ("planned_start", "le", "2026-02-28", None),
        ("planned_start", "le", "2026-02-30", "value"),
        ("planned_start", "le", "20260228", "value"),
        ("fsr_approval_no", "eq", "渝发改〔2025〕1号", None),
        ("fsr_approval_no", "gt", "a", "op"),
        ("fsr_approval_no", "eq", 1, "value"),
    ],
)
def test_field_compare_fits_the_field_type(field: str, op: str, value: Any, where: str | None) -> None:
    data = minimal()
    data["gates"][0]["all"][5]["field_compare"] = {"field": field, "op": op, "value": value}
    path = ("gates", 0, "all", 5, "field_compare")
    assert check(data) == ({("check.field_type_compare", (*path, where))} if where else set())


# --- ladders and templates ------------------------------------------------------------------------------


def test_ladder_levels_may_skip_numbers_and_keep_the_same_delay() -> None:
    data = minimal()
    levels = data["ladders"][0]["levels"]
    levels[1]["level"] = 4
    levels[2]["level"] = 9
    levels[2]["after"] = {"days": 7, "unit": "calendar_days"}  # = 5 working days: not shorter
    assert check(data) == set()


@pytest.mark.parametrize(
    "template",
    ["", "没有占位符", "{project_name}", "{{字面}}{due_date}", "{{project_name}}", "{{{level}}}"],
)
def test_templates_with_only_known_placeholders(template: str) -> None:
    assert unknown_placeholders(template) == []


@pytest.mark.parametrize(
    ("template", "bad"),
    [
        ("{owner}", ["{owner}"]),
        ("{project_name.__class__}", ["{project_name.__class__}"]),
        ("{subject[0]}", ["{subject[0]}"]),
        ("{}", ["{}"]),
        ("{0}", ["{0}"]),
        ("{project_name!r}", ["{project_name!r}"]),
        ("{due_date:%Y}", ["{due_date:%Y}"]),
        ("{level:{level}}", ["{level:{level}}"]),
        ("{a} {b}", ["{a}", "{b}"]),
    ],
)
def test_templates_with_anything_but_plain_known_names(template: str, bad: list[str]) -> None:
    assert unknown_placeholders(template) == bad


@pytest.mark.parametrize("template", ["{project_name", "project_name}", "{"])
def test_unbalanced_braces_are_refused(template: str) -> None:
    assert len(unknown_placeholders(template)) == 1
