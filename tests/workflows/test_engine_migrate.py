"""Moving one project instance to a new definition version, in the engine alone (no database)."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta

from lifecycle.clock import SHANGHAI
from lifecycle.engine.compiled import CompiledDefinition
from lifecycle.engine.core import Engine
from lifecycle.engine.instance import Actor, Deadline, ProjectInstance
from lifecycle.engine.migrate import migrate, state_map_problems
from lifecycle.spec.loader import load_definition_text

from .edits import MINI_TEXT, mini_v2, replace

UNIT = Actor("unit-1", frozenset({"unit"}), "unit_a")
PLANNING = Actor("dept-planning", frozenset({"department"}), "planning_bureau")
HOUSING = Actor("dept-housing", frozenset({"department"}), "housing_bureau")
DISPATCHER = Actor("dispatcher-1", frozenset({"dispatcher"}))
ADMIN = Actor("admin-1", frozenset({"admin"}))


def local(year: int, month: int, day: int, hour: int = 10) -> datetime:
    return datetime(year, month, day, hour, tzinfo=SHANGHAI).astimezone(UTC)


START = local(2026, 3, 2)
LATER = local(2026, 3, 16)
PLANNING_PERMIT = "permits.planning_permit"
CONSTRUCTION_PERMIT = "permits.construction_permit"


def engine_with(*texts: str) -> tuple[Engine, list[CompiledDefinition]]:
    """An engine with ``texts`` registered as versions 1, 2, … of ``mini``."""
    engine = Engine()
    compiled = [
        engine.register(load_definition_text(text).definition, number) for number, text in enumerate(texts, start=1)
    ]
    return engine, compiled


def permitting(engine: Engine, **fields: object) -> ProjectInstance:
    """A v1 project in permitting whose planning permit is accepted (its time limit running)."""
    project, _ = engine.start("mini", 1, "P1", UNIT, START, fields={"investment": "150", **fields})
    engine.fire(project, "start_permitting", UNIT, START, data={"approval_no": "A-1"})
    engine.fire_task(project, PLANNING_PERMIT, "submit", UNIT, START)
    engine.fire_task(project, PLANNING_PERMIT, "accept", PLANNING, START)
    return project


def building(engine: Engine) -> ProjectInstance:
    """A v1 project that finished permitting and is building."""
    project = permitting(engine)
    engine.fire_task(project, PLANNING_PERMIT, "approve", PLANNING, START)
    engine.fire_task(project, CONSTRUCTION_PERMIT, "submit", UNIT, START)
    engine.fire_task(project, CONSTRUCTION_PERMIT, "accept", HOUSING, START)
    engine.fire_task(project, CONSTRUCTION_PERMIT, "approve", HOUSING, START)
    engine.fire(project, "start_building", UNIT, START)
    assert project.state == "building"
    return project


def open_deadline(project: ProjectInstance, subject: str, clock: str) -> Deadline:
    [deadline] = [d for d in project.deadlines.values() if d.subject_id == subject and d.clock == clock and d.is_open]
    return deadline


# --- moving -------------------------------------------------------------------------------------------------


def test_a_permitting_project_moves_opens_the_new_item_and_recomputes_its_deadlines() -> None:
    engine, (_, v2) = engine_with(MINI_TEXT, mini_v2())
    project = permitting(engine)
    before = copy.deepcopy(project)
    old_total = open_deadline(project, project.id, "permitting_limit")
    old_limit = open_deadline(project, PLANNING_PERMIT, "time_limit")

    moved = migrate(engine, project, v2, {}, ADMIN, LATER)

    assert moved.movable, moved.blockers
    assert project == before  # the instance given is never changed
    instance, result = moved.instance, moved.result
    assert instance is not None and result is not None
    assert (instance.definition_version, instance.state, instance.version) == (2, "permitting", project.version + 1)
    assert moved.opened == ["permits.fire_review"] == result.tasks_opened
    assert instance.tasks["permits.fire_review"].state == "pending"
    # Deadlines are recomputed from their own start day with the new clocks, not restarted today.
    total = instance.deadlines[old_total.id]
    assert total.started_on == old_total.started_on == date(2026, 3, 2)
    assert total.due_date < old_total.due_date
    assert total.due_date == engine.calendar.due_date(date(2026, 3, 2), 20, unit="working_days").date
    limit = instance.deadlines[old_limit.id]
    assert limit.due_date == engine.calendar.due_date(date(2026, 3, 2), 15, unit="working_days").date
    assert sorted(result.deadlines_changed) == sorted([old_total.id, old_limit.id])
    assert {ident for ident, _, _ in moved.redated} == {old_total.id, old_limit.id}
    kinds = [e.kind for e in result.events]
    assert kinds == ["project.migrated", "task.opened"]
    migrated = result.events[0]
    assert (migrated.from_state, migrated.to_state, migrated.actor) == ("permitting", "permitting", "admin-1")
    assert migrated.data["from_version"] == 1 and migrated.data["to_version"] == 2
    assert migrated.data["opened_tasks"] == ["permits.fire_review"]
    assert {r["id"] for r in migrated.data["deadlines_redated"]} == {old_total.id, old_limit.id}


def test_the_migrated_project_runs_on_the_new_version() -> None:
    engine, (_, v2) = engine_with(MINI_TEXT, mini_v2())
    moved = migrate(engine, permitting(engine), v2, {}, ADMIN, LATER)
    project = moved.instance
    assert project is not None
    for task in ("permits.planning_permit", "permits.construction_permit", "permits.fire_review"):
        while engine.compiled("mini", 2).task_machines["approval"].outcomes[project.tasks[task].state] != "done":
            state = project.tasks[task].state
            trigger, actor = {
                "pending": ("submit", UNIT),
                "submitted": ("accept", HOUSING),
                "accepted": ("approve", HOUSING),
            }[state]
            if task == PLANNING_PERMIT and actor is HOUSING:
                actor = PLANNING
            engine.fire_task(project, task, trigger, actor, LATER)
    engine.fire(project, "start_building", UNIT, LATER)
    assert project.state == "constructing"


def test_a_renamed_state_needs_a_mapping() -> None:
    engine, (_, v2) = engine_with(MINI_TEXT, mini_v2(add_item=False))
    project = building(engine)

    unmapped = migrate(engine, project, v2, {}, ADMIN, LATER)
    assert not unmapped.movable and unmapped.instance is None
    assert [b.code for b in unmapped.blockers] == ["migration.state_removed"]
    assert unmapped.blockers[0].subject == "building"
    assert "building" in unmapped.blockers[0].zh and "未指定对应的新状态" in unmapped.blockers[0].zh

    mapped = migrate(engine, project, v2, {"building": "constructing"}, ADMIN, LATER)
    assert mapped.movable, mapped.blockers
    assert mapped.instance is not None and mapped.instance.state == "constructing"
    assert mapped.result is not None and mapped.result.events[0].to_state == "constructing"


def test_a_project_past_the_group_that_gained_an_item_is_blocked_by_its_entry_gate() -> None:
    engine, (_, v2) = engine_with(MINI_TEXT, mini_v2())
    project = building(engine)
    moved = migrate(engine, project, v2, {"building": "constructing"}, ADMIN, LATER)
    assert [b.code for b in moved.blockers] == ["migration.gate_unmet"]
    blocker = moved.blockers[0]
    assert blocker.params["trigger"] == "start_building" and blocker.params["gate"] == "before_building"
    assert [u["code"] for u in blocker.params["unmet"]] == ["condition.group_done"]
    assert "消防设计审查" in blocker.zh and "开工前" in blocker.zh
    assert moved.opened == [] and moved.instance is None


def test_the_initial_state_has_no_entry_conditions() -> None:
    engine, (_, v2) = engine_with(MINI_TEXT, mini_v2())
    project, _ = engine.start("mini", 1, "P1", UNIT, START)
    moved = migrate(engine, project, v2, {}, ADMIN, LATER)
    assert moved.movable and moved.opened == []
    assert moved.result is not None and [e.kind for e in moved.result.events] == ["project.migrated"]


def test_a_held_project_maps_its_held_from_state_and_meets_its_conditions() -> None:
    engine, (_, v2) = engine_with(MINI_TEXT, mini_v2())
    in_permitting = permitting(engine)
    engine.fire(in_permitting, "hold", DISPATCHER, START)
    moved = migrate(engine, in_permitting, v2, {}, ADMIN, LATER)
    assert moved.movable and moved.instance is not None
    assert (moved.instance.state, moved.instance.held_from) == ("on_hold", "permitting")
    assert moved.opened == []  # on hold: the new item opens when the project resumes
    resumed = moved.instance
    engine.fire(resumed, "resume", DISPATCHER, LATER)
    assert resumed.state == "permitting" and "permits.fire_review" in resumed.tasks

    engine2, (_, v2b) = engine_with(MINI_TEXT, mini_v2())
    held_building = building(engine2)
    engine2.fire(held_building, "hold", DISPATCHER, START)
    unmapped = migrate(engine2, held_building, v2b, {}, ADMIN, LATER)
    assert [b.code for b in unmapped.blockers] == ["migration.held_from_removed"]
    mapped = migrate(engine2, held_building, v2b, {"building": "constructing"}, ADMIN, LATER)
    assert [b.code for b in mapped.blockers] == ["migration.gate_unmet"]
    assert mapped.blockers[0].subject == "constructing"


# --- items removed ------------------------------------------------------------------------------------------

WITHOUT_CONSTRUCTION_PERMIT = MINI_TEXT[: MINI_TEXT.index("      - id: construction_permit")]


def test_an_open_task_whose_item_is_gone_blocks_the_move() -> None:
    engine, (_, v2) = engine_with(MINI_TEXT, WITHOUT_CONSTRUCTION_PERMIT)
    moved = migrate(engine, permitting(engine), v2, {}, ADMIN, LATER)
    assert [(b.code, b.subject) for b in moved.blockers] == [("migration.open_task_removed", CONSTRUCTION_PERMIT)]
    assert "施工许可证" in moved.blockers[0].zh


def test_a_closed_task_whose_item_is_gone_is_dropped_with_what_hangs_on_it() -> None:
    engine, (_, v2) = engine_with(MINI_TEXT, WITHOUT_CONSTRUCTION_PERMIT)
    project = permitting(engine)
    engine.fire_task(project, CONSTRUCTION_PERMIT, "submit", UNIT, START)
    engine.fire_task(project, CONSTRUCTION_PERMIT, "record_commitment", UNIT, START, data={"text": "资金已落实"})
    engine.fire_task(project, CONSTRUCTION_PERMIT, "accept", HOUSING, START)
    engine.fire_task(project, CONSTRUCTION_PERMIT, "approve", HOUSING, START)
    engine.fire_task(project, PLANNING_PERMIT, "approve", PLANNING, START)
    engine.fire(project, "start_building", UNIT, START)
    closed_deadlines = [d.id for d in project.deadlines.values() if d.subject_id == CONSTRUCTION_PERMIT]
    assert closed_deadlines

    moved = migrate(engine, project, v2, {}, ADMIN, LATER)
    assert moved.movable, moved.blockers
    assert moved.dropped == [CONSTRUCTION_PERMIT]
    assert moved.dropped_commitments == [f"{CONSTRUCTION_PERMIT}#c1"]
    assert sorted(moved.dropped_deadlines) == sorted(closed_deadlines)
    instance = moved.instance
    assert instance is not None
    assert CONSTRUCTION_PERMIT not in instance.tasks and not instance.commitments
    assert moved.result is not None and moved.result.events[0].data["dropped_tasks"] == [CONSTRUCTION_PERMIT]


def test_a_task_in_a_state_the_machine_lost_blocks_the_move() -> None:
    text = replace(MINI_TEXT, "      - {id: expert_review, title: 专家评审}\n", "")
    text = replace(text, "      - {trigger: start_expert_review, title: 专家评审, from: accepted, to: expert_review, "
                   "roles: [department]}\n", "")  # fmt: skip
    text = replace(text, "      - {trigger: finish_expert_review, title: 评审结束, from: expert_review, to: accepted, "
                   "roles: [department]}\n", "")  # fmt: skip
    text = replace(text, "paused_in: [expert_review, suspended]", "paused_in: [suspended]")
    engine, (_, v2) = engine_with(MINI_TEXT, text)
    project = permitting(engine)
    engine.fire_task(project, PLANNING_PERMIT, "start_expert_review", PLANNING, START)
    moved = migrate(engine, project, v2, {}, ADMIN, LATER)
    assert [(b.code, b.params["state"]) for b in moved.blockers] == [("migration.task_state_removed", "expert_review")]


def test_a_state_whose_outcome_changes_between_open_and_closed_blocks_the_move() -> None:
    text = replace(MINI_TEXT, "{id: rejected, title: 不予许可, outcome: failed}", "{id: rejected, title: 不予许可}")
    engine, (_, v2) = engine_with(MINI_TEXT, text)
    project = permitting(engine)
    engine.fire_task(project, PLANNING_PERMIT, "reject", PLANNING, START, comment="不符合规划")
    moved = migrate(engine, project, v2, {}, ADMIN, LATER)
    assert [b.code for b in moved.blockers] == ["migration.task_outcome_changed"]
    assert "未通过" in moved.blockers[0].zh and "办理中" in moved.blockers[0].zh


def test_a_field_value_that_no_longer_fits_blocks_the_move() -> None:
    text = replace(
        MINI_TEXT, "{id: approval_no, title: 批复文号, type: string}", "{id: approval_no, title: 批复文号, type: date}"
    )
    engine, (_, v2) = engine_with(MINI_TEXT, text)
    moved = migrate(engine, permitting(engine), v2, {}, ADMIN, LATER)
    assert [(b.code, b.subject) for b in moved.blockers] == [("migration.field_incompatible", "approval_no")]


# --- clocks --------------------------------------------------------------------------------------------------


def test_a_removed_clock_closes_its_deadline_and_a_new_one_opens_today() -> None:
    text = replace(
        MINI_TEXT,
        "  - {id: permitting_limit, title: 审批总时限, basis: duration, duration: {days: 30, unit: working_days}, "
        "runs_in: [permitting], paused_in: [on_hold]}\n",
        "  - {id: permitting_report, title: 审批进展报告, basis: duration, duration: {days: 5, unit: working_days}, "
        "runs_in: [permitting]}\n",
    )
    engine, (_, v2) = engine_with(MINI_TEXT, text)
    project = permitting(engine)
    old = open_deadline(project, project.id, "permitting_limit")
    moved = migrate(engine, project, v2, {}, ADMIN, LATER)
    assert moved.instance is not None and moved.result is not None
    assert moved.instance.deadlines[old.id].closed_at == LATER
    assert old.id in moved.result.deadlines_closed
    report = open_deadline(moved.instance, project.id, "permitting_report")
    assert report.started_on == date(2026, 3, 16) and report.id in moved.result.deadlines_opened


def test_a_state_no_longer_paused_in_closes_the_clock_and_pauses_follow_the_new_lists() -> None:
    text = replace(MINI_TEXT, "paused_in: [expert_review, suspended]", "paused_in: [suspended]")
    engine, (_, v2) = engine_with(MINI_TEXT, text)
    project = permitting(engine)
    engine.fire_task(project, PLANNING_PERMIT, "start_expert_review", PLANNING, START)
    paused = open_deadline(project, PLANNING_PERMIT, "time_limit")
    assert paused.paused
    moved = migrate(engine, project, v2, {}, ADMIN, LATER)
    assert moved.instance is not None
    assert moved.instance.deadlines[paused.id].closed_at is not None  # the clock no longer lives in expert_review

    text3 = replace(
        MINI_TEXT,
        "runs_in: [accepted, accepted_with_deficiencies], paused_in: [expert_review, suspended]",
        "runs_in: [accepted_with_deficiencies], paused_in: [accepted, expert_review, suspended]",
    )
    engine3, (_, v3) = engine_with(MINI_TEXT, text3)
    running = permitting(engine3)
    now_paused = migrate(engine3, running, v3, {}, ADMIN, LATER)
    assert now_paused.instance is not None
    assert open_deadline(now_paused.instance, PLANNING_PERMIT, "time_limit").paused


def test_time_conditions_do_not_block_and_lasting_ones_do() -> None:
    text = replace(
        MINI_TEXT,
        "      - field_compare: {field: investment, op: ge, value: 100}\n",
        "      - field_compare: {field: investment, op: ge, value: 200}\n      - no_overdue_deadlines: {}\n",
    )
    text = replace(text, "  - {id: start_by,", "  - {id: building_limit, title: 建设工期, basis: duration, "
                   "duration: {days: 1, unit: working_days}, runs_in: [building]}\n  - {id: start_by,")  # fmt: skip
    engine, (_, v2) = engine_with(MINI_TEXT, text)
    project = building(engine)
    # An overdue deadline of a clock the new version has (opened long ago): "no overdue deadlines" is unmet.
    project.deadlines["P1/building_limit/1"] = Deadline(
        id="P1/building_limit/1",
        subject_kind="project",
        subject_id="P1",
        clock="building_limit",
        title="建设工期",
        started_on=date(2026, 1, 5),
        due_date=date(2026, 1, 6),
        due_at=local(2026, 1, 6, 23),
        estimated=False,
    )
    blocked = migrate(engine, project, v2, {}, ADMIN, LATER)
    assert [u["code"] for u in blocked.blockers[0].params["unmet"]] == ["condition.field_compare"]

    project.fields["investment"] = project.fields["investment"] * 2
    moved = migrate(engine, project, v2, {}, ADMIN, LATER)
    assert moved.movable, moved.blockers
    assert moved.instance is not None
    assert moved.instance.deadlines["P1/building_limit/1"].due_at < LATER  # still overdue, yet it moved


def test_a_changed_department_is_reported_for_the_task_rows() -> None:
    text = replace(MINI_TEXT, "        department: planning_bureau\n", "        department: housing_bureau\n")
    engine, (_, v2) = engine_with(MINI_TEXT, text)
    moved = migrate(engine, permitting(engine), v2, {}, ADMIN, LATER)
    assert moved.departments == {PLANNING_PERMIT: "housing_bureau"}


def test_state_map_problems_name_unknown_states() -> None:
    _, (v1, v2) = engine_with(MINI_TEXT, mini_v2())
    assert state_map_problems(v1.definition, v2.definition, {"building": "constructing"}) == []
    assert state_map_problems(v1.definition, v2.definition, {"nope": "constructing", "draft": "gone"}) == [
        ("nope", "from"),
        ("draft", "to"),
    ]


def test_the_same_call_gives_the_same_verdict() -> None:
    engine, (_, v2) = engine_with(MINI_TEXT, mini_v2())
    project = permitting(engine)
    first = migrate(engine, project, v2, {}, ADMIN, LATER)
    second = migrate(engine, project, v2, {}, ADMIN, LATER + timedelta(seconds=1))
    assert first.movable == second.movable and first.opened == second.opened
    assert first.instance is not None and second.instance is not None
    assert first.instance.tasks.keys() == second.instance.tasks.keys()
