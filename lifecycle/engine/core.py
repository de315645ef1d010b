"""The engine: fires triggers on project instances, their items and their deficiency notices.

The engine is pure: it reads no clock (``now`` is passed in), touches no database and sends nothing over the
network. It changes the instance it is given and returns a :class:`FireResult` saying exactly what changed,
which the services layer writes in one transaction.

The transition pipeline
-----------------------
Every fire, on a project, an item or a notice, runs the same steps in this order (the order of pytransitions'
``Transition.execute``, with the checks moved in front so that they can report *every* problem):

1. **Find** the transitions leaving the current state for the trigger; none → :class:`InvalidTransition`
   listing the triggers that do leave it.
2. **Authorise**: the actor holds one of the transition's roles, and a department acts only on items assigned
   to it; else :class:`RoleRefused`.
3. **Check input**: the trigger's data (fields it may set, missing materials, a cure date…) is coerced and
   checked; every bad value → :class:`InvalidInput`.
4. **Check the gate**: every condition of the gate and every required field is evaluated; any unmet →
   :class:`GateNotSatisfied` listing all of them. Nothing has changed yet when any of 1–4 refuses.
5. **Before**: the trigger's data is applied to the project's fields.
6. **Set state** (done by ``transitions``); ``$previous`` picks the held-from state by a transition condition.
7. **Enter**: a holding state remembers where it was entered from; task groups listed in ``opens`` open their
   items; the subject's clocks are synced with the new state: those that do not live there close, those that
   run there open, pause or resume. There is no ``on_exit`` step: what leaving a state means for a clock
   depends on where the machine goes, so it is decided on entering. For the project this is the destination
   state's ``on_enter`` callback; items and notices (most fires) run it right after ``transitions`` has set
   the state, which spares them the callback machinery and is the same step in the same place.
8. **Effects** (item and notice machines): new submission, the one deficiency notice, cure, commitments.
9. **Then parent**: a notice transition's ``then_parent`` fires on its item (steps 6–8), without a role check
   since it is a consequence of an authorised act.
10. **Record**: an :class:`Event` for the history; the instance's version counter is bumped once.

Steps 5–10 cannot fail: everything they need was checked in 1–4.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from lifecycle.calendar import CalendarResult, WorkingCalendar, default_calendar
from lifecycle.calendar import Pause as CalendarPause
from lifecycle.clock import end_of_local_day, ensure_utc, local_date
from lifecycle.errors import (
    GateNotSatisfied,
    InvalidInput,
    InvalidTransition,
    NotFound,
    OneTimeNoticeBreach,
    Problem,
    RoleRefused,
    Unmet,
)
from lifecycle.messages import register, render
from lifecycle.spec.models import Clock, Definition, FieldSpec, Item, MachineTransition, Transition

from . import fields as field_values
from .compiled import CompiledDefinition, CompiledMachine, Cursor, ProjectEdge, compile_definition
from .conditions import ConditionContext, unmet_conditions
from .instance import (
    SYSTEM_ACTOR,
    Actor,
    Commitment,
    Deadline,
    DeficiencyNotice,
    Event,
    FireResult,
    Pause,
    ProjectInstance,
    SubjectKind,
    Task,
    TriggerOption,
)

register(
    {
        "engine.unknown_definition": (
            "流程定义 {key} 第 {version} 版未加载",
            "definition {key} version {version} is not loaded",
        ),
        "engine.comment_required": ("执行“{trigger}”须填写说明", "'{trigger}' needs a comment"),
        "engine.missing_required": ("缺少：{what}", "missing: {what}"),
        "deficiency.missing_empty": (
            "容缺受理须列出全部缺少的材料",
            "acceptance with deficiencies must list every missing material",
        ),
        "deficiency.not_allowed": (
            "材料“{material}”不允许容缺（只有非主审要件可以容缺）",
            "material '{material}' may not be missing under 容缺 (only non-core materials may)",
        ),
        "deficiency.unknown_material": ("事项没有材料“{material}”", "the item has no material '{material}'"),
        "deficiency.cure_after_due": (
            "补正期限 {cure_date} 晚于事项办结时限 {due_date}",
            "cure date {cure_date} is after the item's due date {due_date}",
        ),
        "deficiency.cure_in_past": ("补正期限 {cure_date} 早于今天", "cure date {cure_date} is in the past"),
        "deficiency.bad_cure_date": (
            "补正期限应为日期（YYYY-MM-DD）",
            "cure_date must be a date (YYYY-MM-DD)",
        ),
        "commitment.text_required": ("须填写承诺内容", "the commitment text is required"),
        "commitment.unknown": ("没有待核查的承诺 {commitment}", "no open commitment {commitment}"),
        "expire.not_due": (
            "时限 {deadline} 尚未到期或已关闭",
            "deadline {deadline} is not due or already closed",
        ),
    }
)


@dataclass
class _Step:
    """What one fire is doing; the pipeline callbacks read it from the event's ``step`` keyword."""

    engine: Engine
    compiled: CompiledDefinition
    project: ProjectInstance
    actor: Actor
    now: datetime
    result: FireResult
    held_from: str | None = None
    task: Task | None = None
    notice: DeficiencyNotice | None = None
    machine: CompiledMachine | None = None
    spec: MachineTransition | None = None
    data: dict[str, Any] = field(default_factory=dict)
    today: date = field(init=False)

    def __post_init__(self) -> None:
        self.today = local_date(self.now)


class Engine:
    """Runs lifecycle definitions. Holds one compiled definition (with its shared Machines) per
    (key, version); thread-safe for firing once definitions are registered."""

    def __init__(self, calendar: WorkingCalendar | None = None) -> None:
        self.calendar = calendar or default_calendar()
        self._compiled: dict[tuple[str, int], CompiledDefinition] = {}

    # --- definitions ------------------------------------------------------------------------------------

    def register(self, definition: Definition, version: int) -> CompiledDefinition:
        """Compile ``definition`` as ``version`` (once; later calls return the cached one)."""
        key = (definition.key, version)
        compiled = self._compiled.get(key)
        if compiled is None or compiled.definition is not definition:
            compiled = compile_definition(definition, version, _on_enter_project)
            self._compiled[key] = compiled
        return compiled

    def compiled(self, key: str, version: int) -> CompiledDefinition:
        """The compiled definition (key, version); :class:`NotFound` if it was never registered."""
        try:
            return self._compiled[(key, version)]
        except KeyError:
            raise NotFound("definition", f"{key}@{version}") from None

    def definition(self, instance: ProjectInstance) -> Definition:
        """The definition ``instance`` runs on."""
        return self.compiled(instance.definition_key, instance.definition_version).definition

    # --- projects ---------------------------------------------------------------------------------------

    def start(
        self,
        key: str,
        version: int,
        project_id: str,
        actor: Actor,
        now: datetime,
        *,
        fields: Mapping[str, Any] | None = None,
    ) -> tuple[ProjectInstance, FireResult]:
        """Create a project in the definition's initial state and enter it (groups open, clocks start).

        Raises:
            InvalidInput: a field is unknown or has a bad value.
        """
        compiled = self.compiled(key, version)
        definition = compiled.definition
        now = ensure_utc(now)
        values, problems = field_values.coerce_all(definition.lookup("fields"), dict(fields or {}))
        if problems:
            raise InvalidInput(problems)
        project = ProjectInstance(
            id=project_id,
            definition_key=key,
            definition_version=version,
            state=definition.initial,
            fields=values,
        )
        result = FireResult(state=project.state, fields_changed=sorted(values))
        step = _Step(self, compiled, project, actor, now, result)
        result.events.append(Event("project.created", "project", project.id, actor.id, now, to_state=project.state))
        _enter_project_state(step, project.state)
        result.state = project.state
        return project, result

    def fire(
        self,
        project: ProjectInstance,
        trigger: str,
        actor: Actor,
        now: datetime,
        *,
        data: Mapping[str, Any] | None = None,
        comment: str | None = None,
    ) -> FireResult:
        """Fire ``trigger`` on the project (the pipeline in the module docstring).

        Raises:
            InvalidTransition: the trigger does not leave the current state.
            RoleRefused: the actor may not fire it.
            InvalidInput: the data is wrong.
            GateNotSatisfied: the gate or required fields are unmet (every one is listed).
        """
        compiled = self.compiled(project.definition_key, project.definition_version)
        now = ensure_utc(now)
        edge = self._project_edge(compiled, project, trigger)
        spec = edge.spec
        if not actor.has_any(spec.roles):
            raise RoleRefused(trigger, spec.roles)
        values = self._project_data(compiled, spec, data, comment)
        unmet = self._unmet(compiled, project, spec, values, now)
        if unmet:
            gate = compiled.definition.gate(spec.gate) if spec.gate else None
            raise GateNotSatisfied(trigger, gate.id if gate else "", gate.title if gate else spec.title, unmet)
        result = FireResult(state=project.state)
        step = _Step(self, compiled, project, actor, now, result, held_from=project.held_from)
        source = project.state
        if values:
            project.fields.update(values)
            result.fields_changed.extend(sorted(values))
        cursor = Cursor(project.state)
        compiled.machine.events[trigger].trigger(cursor, step=step)
        project.state = cursor.state
        project.version += 1
        result.state = project.state
        result.events.insert(
            0,
            Event(
                "project.transition",
                "project",
                project.id,
                actor.id,
                now,
                trigger=trigger,
                from_state=source,
                to_state=project.state,
                comment=comment,
                data={k: field_values.to_json(v) for k, v in values.items()},
            ),
        )
        return result

    def available_triggers(self, project: ProjectInstance, actor: Actor, now: datetime) -> list[TriggerOption]:
        """Every trigger leaving the project's current state: may the actor fire it now, and if not, why."""
        compiled = self.compiled(project.definition_key, project.definition_version)
        now = ensure_utc(now)
        options = []
        for trigger, candidates in compiled.edges.get(project.state, {}).items():
            edge = self._pick_previous(candidates, project) if candidates[0].via_previous else candidates[0]
            if edge is None:
                continue
            spec = edge.spec
            reasons: list[tuple[str, str, str]] = []
            if not actor.has_any(spec.roles):
                problem = RoleRefused(trigger, spec.roles).problems()[0]
                reasons.append((problem.code, problem.zh, problem.en))
            reasons.extend((u.code, u.zh, u.en) for u in self._unmet(compiled, project, spec, {}, now))
            options.append(
                TriggerOption(
                    trigger=trigger,
                    title=spec.title,
                    title_en=spec.title_en,
                    dest=edge.dest,
                    may_fire=not reasons,
                    gate=spec.gate,
                    reasons=tuple(reasons),
                )
            )
        return options

    def update_fields(
        self, project: ProjectInstance, values: Mapping[str, Any], actor: Actor, now: datetime
    ) -> FireResult:
        """Set project fields outside any transition (e.g. the planned start date); clocks that read a date
        field are re-dated.

        Raises:
            InvalidInput: unknown fields or bad values (all of them).
        """
        compiled = self.compiled(project.definition_key, project.definition_version)
        now = ensure_utc(now)
        coerced, problems = field_values.coerce_all(compiled.definition.lookup("fields"), dict(values))
        if problems:
            raise InvalidInput(problems)
        result = FireResult(state=project.state)
        changed = {k: v for k, v in coerced.items() if project.fields.get(k) != v}
        project.fields.update(changed)
        result.fields_changed.extend(sorted(changed))
        step = _Step(self, compiled, project, actor, now, result)
        for clock in compiled.definition.clocks:
            if clock.basis == "field_date" and clock.field in changed:
                for deadline in _open_deadlines(project, "project", project.id, clock.id):
                    _close_deadline(step, deadline)
        _sync_clocks(step, "project", project.id, "", project.state)
        project.version += 1
        result.events.append(
            Event(
                "project.fields_updated",
                "project",
                project.id,
                actor.id,
                now,
                data={k: field_values.to_json(v) for k, v in changed.items()},
            )
        )
        return result

    # --- items ------------------------------------------------------------------------------------------

    def fire_task(
        self,
        project: ProjectInstance,
        task_id: str,
        trigger: str,
        actor: Actor,
        now: datetime,
        *,
        data: Mapping[str, Any] | None = None,
        comment: str | None = None,
    ) -> FireResult:
        """Fire ``trigger`` on the project's item ``task_id`` (approval, review, support or acceptance).

        Data by effect: ``issue_deficiency_notice`` takes ``missing`` (material ids) and optionally
        ``cure_date``; ``record_commitment`` takes ``text`` and optionally ``due_date``;
        ``verify_commitment`` / ``breach_commitment`` take ``commitment_id`` (default: the item's only open
        commitment) and optionally ``note``.

        Raises:
            NotFound, InvalidTransition, RoleRefused, InvalidInput, OneTimeNoticeBreach.
        """
        compiled = self.compiled(project.definition_key, project.definition_version)
        now = ensure_utc(now)
        task = project.tasks.get(task_id)
        if task is None:
            raise NotFound("task", task_id)
        machine = compiled.task_machines[task.machine]
        spec = self._machine_edge(machine, task.state, trigger, "task")
        item = compiled.items[(task.group, task.item)]
        self._authorise_task(spec, actor, item)
        step = _Step(self, compiled, project, actor, now, FireResult(state=project.state), task=task)
        step.machine, step.spec = machine, spec
        if spec.effects or spec.comment_required:  # most transitions carry no effect: skip the checks
            step.data = self._effect_data(step, spec, item, dict(data or {}), comment)
        self._run_task(step, trigger, comment)
        project.version += 1
        return step.result

    def available_task_triggers(
        self, project: ProjectInstance, task_id: str, actor: Actor, now: datetime
    ) -> list[TriggerOption]:
        """Every trigger leaving the item's current state, with whether the actor may fire it."""
        compiled = self.compiled(project.definition_key, project.definition_version)
        task = project.tasks.get(task_id)
        if task is None:
            raise NotFound("task", task_id)
        machine = compiled.task_machines[task.machine]
        item = compiled.items[(task.group, task.item)]
        options = []
        for trigger, spec in machine.edges.get(task.state, {}).items():
            reasons: list[tuple[str, str, str]] = []
            try:
                self._authorise_task(spec, actor, item)
            except RoleRefused as refused:
                problem = refused.problems()[0]
                reasons.append((problem.code, problem.zh, problem.en))
            options.append(
                TriggerOption(trigger, spec.title, spec.title_en, spec.dest, not reasons, None, tuple(reasons))
            )
        return options

    # --- deficiency notices -----------------------------------------------------------------------------

    def fire_notice(
        self,
        project: ProjectInstance,
        notice_id: str,
        trigger: str,
        actor: Actor,
        now: datetime,
        *,
        comment: str | None = None,
    ) -> FireResult:
        """Fire ``trigger`` on deficiency notice ``notice_id`` (read, supply, lapse…); a ``then_parent``
        trigger then fires on its item in the same step.

        Raises:
            NotFound, InvalidTransition (also when the item cannot take the ``then_parent`` trigger, e.g.
            materials supplied after the file was returned), RoleRefused.
        """
        compiled = self.compiled(project.definition_key, project.definition_version)
        now = ensure_utc(now)
        notice = project.notices.get(notice_id)
        if notice is None:
            raise NotFound("notice", notice_id)
        machine = compiled.task_machines[notice.machine]
        spec = self._machine_edge(machine, notice.state, trigger, "notice")
        task = project.tasks[notice.task_id]
        item = compiled.items[(task.group, task.item)]
        self._authorise_task(spec, actor, item)
        if spec.comment_required and not comment:
            raise InvalidInput([Problem.of("engine.comment_required", trigger=spec.title)])
        parent_spec = None
        task_machine = compiled.task_machines[task.machine]
        if spec.then_parent:
            parent_spec = self._machine_edge(task_machine, task.state, spec.then_parent, "task")
        result = FireResult(state=project.state)
        step = _Step(self, compiled, project, actor, now, result, notice=notice, machine=machine, spec=spec)
        source = notice.state
        cursor = Cursor(notice.state)
        machine.machine.events[trigger].trigger(cursor, step=step)
        notice.state = cursor.state
        if spec.dest != source:
            _sync_clocks(step, "notice", notice.id, notice.machine, notice.state)  # step 7
        notice.version += 1
        if machine.outcomes.get(notice.state) != "open" and notice.closed_at is None:
            notice.closed_at = now
        result.notices_changed.append(notice.id)
        result.events.append(
            Event(
                "notice.transition",
                "notice",
                notice.id,
                actor.id,
                now,
                trigger,
                source,
                notice.state,
                comment,
            )
        )
        if parent_spec is not None and spec.then_parent:
            parent = _Step(
                self, compiled, project, actor, now, result, task=task, machine=task_machine, spec=parent_spec
            )
            self._run_task(parent, spec.then_parent, comment)
        project.version += 1
        return result

    # --- time -------------------------------------------------------------------------------------------

    def expire(self, project: ProjectInstance, deadline_id: str, now: datetime) -> FireResult:
        """Fire the ``on_expiry`` trigger of a deadline that has come due, as the scheduler (role ``system``).

        Raises:
            NotFound: no such deadline.
            InvalidInput: it is closed, not due yet, or has no expiry trigger.
            InvalidTransition: its subject has moved on and can no longer take the trigger.
        """
        now = ensure_utc(now)
        deadline = project.deadlines.get(deadline_id)
        if deadline is None:
            raise NotFound("deadline", deadline_id)
        if deadline.closed_at is not None or deadline.due_at > now or not deadline.on_expiry:
            raise InvalidInput([Problem.of("expire.not_due", deadline=deadline_id)])
        trigger = deadline.on_expiry
        if deadline.subject_kind == "project":
            result = self.fire(project, trigger, SYSTEM_ACTOR, now)
        elif deadline.subject_kind == "task":
            result = self.fire_task(project, deadline.subject_id, trigger, SYSTEM_ACTOR, now)
        else:
            result = self.fire_notice(project, deadline.subject_id, trigger, SYSTEM_ACTOR, now)
        deadline.fired_at = now
        if deadline.id not in result.deadlines_changed and deadline.id not in result.deadlines_closed:
            result.deadlines_changed.append(deadline.id)
        return result

    # --- internals --------------------------------------------------------------------------------------

    def _project_edge(self, compiled: CompiledDefinition, project: ProjectInstance, trigger: str) -> ProjectEdge:
        candidates = compiled.edges.get(project.state, {}).get(trigger)
        edge = None
        if candidates:
            edge = self._pick_previous(candidates, project) if candidates[0].via_previous else candidates[0]
        if edge is None:
            allowed = sorted(compiled.edges.get(project.state, {}))
            raise InvalidTransition(trigger, project.state, allowed)
        return edge

    @staticmethod
    def _pick_previous(candidates: list[ProjectEdge], project: ProjectInstance) -> ProjectEdge | None:
        return next((e for e in candidates if e.dest == project.held_from), None)

    @staticmethod
    def _machine_edge(machine: CompiledMachine, state: str, trigger: str, subject: str) -> MachineTransition:
        spec = machine.edges.get(state, {}).get(trigger)
        if spec is None:
            raise InvalidTransition(trigger, state, sorted(machine.edges.get(state, {})), subject=subject)
        return spec

    @staticmethod
    def _authorise_task(spec: MachineTransition, actor: Actor, item: Item) -> None:
        matched = actor.roles.intersection(spec.roles)
        if not matched:
            raise RoleRefused(spec.trigger, spec.roles)
        # A department acts only on items assigned to it; another role the transition allows (e.g. the
        # dispatcher) is not so bound.
        if matched == {"department"} and actor.unit != item.department:
            raise RoleRefused(spec.trigger, spec.roles, reason="department")

    @staticmethod
    def _project_data(
        compiled: CompiledDefinition, spec: Transition, data: Mapping[str, Any] | None, comment: str | None
    ) -> dict[str, Any]:
        problems: list[Problem] = []
        if spec.comment_required and not comment:
            problems.append(Problem.of("engine.comment_required", trigger=spec.title))
        values, field_problems = field_values.coerce_all(
            compiled.definition.lookup("fields"), dict(data or {}), allowed=set(spec.accepts_fields)
        )
        problems.extend(field_problems)
        if problems:
            raise InvalidInput(problems)
        return values

    @staticmethod
    def _unmet(
        compiled: CompiledDefinition,
        project: ProjectInstance,
        spec: Transition,
        values: dict[str, Any],
        now: datetime,
    ) -> list[Unmet]:
        # The gate sees the project as it would be with the trigger's data applied, so a field may be
        # supplied with the very trigger that needs it.
        view = replace(project, fields={**project.fields, **values}) if values else project
        ctx = ConditionContext(compiled.definition, view, now)
        unmet: list[Unmet] = []
        if spec.gate:
            unmet.extend(unmet_conditions(compiled.definition.gate(spec.gate), ctx))
        for field_id in spec.requires_fields:
            value = view.fields.get(field_id)
            if value is None or value == "" or value == []:
                code = "condition.field_present"
                zh, en = render(code, {"field": ctx.field_title(field_id)})
                unmet.append(Unmet(code, zh, en, gate=spec.gate, params={"field_id": field_id}))
        return unmet

    def _effect_data(
        self, step: _Step, spec: MachineTransition, item: Item, data: dict[str, Any], comment: str | None
    ) -> dict[str, Any]:
        """Check the data every effect of ``spec`` needs, before anything changes."""
        problems: list[Problem] = []
        out: dict[str, Any] = {}
        task = step.task
        assert task is not None
        if spec.comment_required and not comment:
            problems.append(Problem.of("engine.comment_required", trigger=spec.title))
        if "issue_deficiency_notice" in spec.effects:
            previous = next(
                (n for n in step.project.notices.values() if n.task_id == task.id and n.submission == task.submission),
                None,
            )
            if previous is not None:
                raise OneTimeNoticeBreach(task.id, previous.id)
            problems.extend(self._check_deficiency(step, item, data, out))
        if "record_commitment" in spec.effects:
            text = data.get("text")
            if not isinstance(text, str) or not text.strip() or len(text) > 4000:
                problems.append(Problem.of("commitment.text_required"))
            out["text"] = text
            due, problem = field_values.coerce(_DATE_FIELD, data.get("due_date"), ("data", "due_date"))
            if problem:
                problems.append(problem)
            out["due_date"] = due
        if "verify_commitment" in spec.effects or "breach_commitment" in spec.effects:
            wanted = data.get("commitment_id")
            open_ones = [c for c in step.project.commitments.values() if c.task_id == task.id and c.state == "recorded"]
            chosen = [c for c in open_ones if wanted is None or c.id == wanted]
            if len(chosen) != 1:
                problems.append(Problem.of("commitment.unknown", commitment=wanted or "—"))
            else:
                out["commitment"] = chosen[0]
            note = data.get("note")
            out["note"] = note if isinstance(note, str) else None
        if problems:
            raise InvalidInput(problems)
        return out

    def _check_deficiency(self, step: _Step, item: Item, data: dict[str, Any], out: dict[str, Any]) -> list[Problem]:
        problems: list[Problem] = []
        missing = data.get("missing")
        known = {m.id for m in item.materials}
        if not isinstance(missing, list) or not missing or not all(isinstance(m, str) for m in missing):
            return [Problem.of("deficiency.missing_empty")]
        for index, material in enumerate(missing):
            where = field_values.request_location(("data", "missing", index))
            if material not in known:
                problems.append(Problem.of("deficiency.unknown_material", where, material=material))
            elif material not in item.deficiency_allowed:
                problems.append(Problem.of("deficiency.not_allowed", where, material=material))
        today = step.today
        due = self._item_due_date(step, item)
        cure = data.get("cure_date")
        if cure is None:
            period = item.cure_period
            proposed = self.calendar.due_date(today, period.days, unit=period.unit).date if period else due
            cure_date = min(proposed, due)
        else:
            try:
                cure_date = cure if isinstance(cure, date) else date.fromisoformat(str(cure))
            except ValueError:
                problems.append(
                    Problem.of("deficiency.bad_cure_date", field_values.request_location(("data", "cure_date")))
                )
                return problems
            where = field_values.request_location(("data", "cure_date"))
            if cure_date > due:
                problems.append(Problem.of("deficiency.cure_after_due", where, cure_date=cure_date, due_date=due))
            if cure_date < today:
                problems.append(Problem.of("deficiency.cure_in_past", where, cure_date=cure_date))
        out["missing"] = list(dict.fromkeys(missing))
        out["cure_date"] = cure_date
        return problems

    def _item_due_date(self, step: _Step, item: Item) -> date:
        """The item's own due date: its open time-limit deadline's, else its limit counted from today."""
        task = step.task
        assert task is not None
        for deadline in step.project.deadlines.values():
            if (
                deadline.subject_kind == "task"
                and deadline.subject_id == task.id
                and deadline.closed_at is None
                and _basis_of(step, deadline) == "item_time_limit"
            ):
                return deadline.due_date
        limit = item.time_limit
        return self.calendar.due_date(step.today, limit.days, unit=limit.unit).date

    def _run_task(self, step: _Step, trigger: str, comment: str | None) -> None:
        """Steps 6–8 and 10 for an item: set state, enter, effects, record."""
        task, machine, spec = step.task, step.machine, step.spec
        assert task is not None and machine is not None and spec is not None
        source = task.state
        cursor = Cursor(task.state)
        machine.machine.events[trigger].trigger(cursor, step=step)
        task.state = cursor.state
        if spec.dest != source:
            _sync_clocks(step, "task", task.id, task.machine, task.state)  # step 7
        _apply_effects(step, spec)
        task.version += 1
        outcome = machine.outcomes.get(task.state, "open")
        task.closed_at = None if outcome == "open" else (task.closed_at or step.now)
        if task.id not in step.result.tasks_changed:
            step.result.tasks_changed.append(task.id)
        step.result.events.append(
            Event(
                "task.transition",
                "task",
                task.id,
                step.actor.id,
                step.now,
                trigger,
                source,
                task.state,
                comment,
            )
        )


_DATE_FIELD = FieldSpec(id="due_date", title="承诺期限", title_en="due date", type="date")


# --- pipeline callbacks (shared by every Machine) ---------------------------------------------------------


def _on_enter_project(event: Any) -> None:
    """Step 7 for the project."""
    step: _Step = event.kwargs["step"]
    previous = event.transition.source
    _enter_project_state(step, event.state.name, previous)


def _enter_project_state(step: _Step, state_id: str, previous: str | None = None) -> None:
    definition = step.compiled.definition
    state = definition.state(state_id)
    project = step.project
    if state.hold and previous is not None and previous != state_id:
        project.held_from = previous
    elif not state.hold:
        project.held_from = None
    for group_id in state.opens:
        _open_group(step, group_id)
    _sync_clocks(step, "project", project.id, "", state_id)


def _open_group(step: _Step, group_id: str) -> None:
    group = step.compiled.definition.group(group_id)
    machine = step.compiled.task_machines[group.machine]
    for item in group.items:
        task_id = f"{group.id}.{item.id}"
        if task_id in step.project.tasks:
            continue  # a group entered again keeps its items and their history
        task = Task(
            id=task_id,
            group=group.id,
            item=item.id,
            machine=group.machine,
            state=machine.spec.initial,
            opened_at=step.now,
        )
        step.project.tasks[task_id] = task
        step.result.tasks_opened.append(task_id)
        step.result.events.append(
            Event("task.opened", "task", task_id, step.actor.id, step.now, to_state=task.state,
                  data={"group": group.id, "item": item.id, "department": item.department})
        )  # fmt: skip
        _sync_clocks(step, "task", task_id, group.machine, task.state, fresh=True)


# --- clocks -----------------------------------------------------------------------------------------------


def _clocks_for(step: _Step, machine_id: str) -> list[Clock]:
    if machine_id == "":
        return step.compiled.definition.clocks
    return step.compiled.task_machines[machine_id].clocks


def _open_deadlines(project: ProjectInstance, kind: SubjectKind, subject_id: str, clock_id: str) -> list[Deadline]:
    return [
        d
        for d in project.deadlines.values()
        if d.closed_at is None and d.subject_id == subject_id and d.clock == clock_id and d.subject_kind == kind
    ]


def _sync_clocks(
    step: _Step, kind: SubjectKind, subject_id: str, machine_id: str, state: str, *, fresh: bool = False
) -> None:
    """Make the subject's deadlines match the clocks that live in ``state``: open the ones that run there
    and are not open, pause or resume the open ones, close the ones that do not live there.

    ``fresh``: the subject was created in this step and has no deadline yet (skips looking for them).
    """
    clocks = _clocks_for(step, machine_id)
    if not clocks:
        return
    project = step.project
    open_by_clock: dict[str, list[Deadline]] = {}
    if fresh:
        if not any(state in clock.runs_in or state in clock.paused_in for clock in clocks):
            return
    else:
        for d in project.deadlines.values():
            if d.closed_at is None and d.subject_id == subject_id and d.subject_kind == kind:
                open_by_clock.setdefault(d.clock, []).append(d)
    for clock in clocks:
        # A state listed in paused_in pauses the clock even if it is also listed in runs_in.
        paused = state in clock.paused_in
        alive = paused or state in clock.runs_in
        open_now = open_by_clock.get(clock.id, ())
        if not alive:
            for deadline in open_now:
                _close_deadline(step, deadline)
            continue
        if not open_now:
            opened = _open_deadline(step, clock, kind, subject_id)
            if opened is not None and paused:
                opened.pauses.append(Pause(start=step.today))
            continue
        for deadline in open_now:
            if paused and not deadline.paused:
                deadline.pauses.append(Pause(start=step.today))
                _mark_changed(step, deadline)
            elif not paused and deadline.paused:
                deadline.pauses[-1].end = step.today
                _redate(step, clock, deadline, subject_id)
                _mark_changed(step, deadline)


def _mark_changed(step: _Step, deadline: Deadline) -> None:
    if deadline.id not in step.result.deadlines_changed and deadline.id not in step.result.deadlines_opened:
        step.result.deadlines_changed.append(deadline.id)


def _close_deadline(step: _Step, deadline: Deadline) -> None:
    deadline.closed_at = step.now
    if deadline.pauses and deadline.pauses[-1].end is None:
        deadline.pauses[-1].end = step.today
    step.result.deadlines_closed.append(deadline.id)


def _open_deadline(step: _Step, clock: Clock, kind: SubjectKind, subject_id: str) -> Deadline | None:
    project = step.project
    due = _due(step, clock, subject_id, step.today, [])
    if due is None:
        return None  # a date field not filled in yet: the clock opens when it is (see Engine.update_fields)
    sequence = 1 + sum(1 for d in project.deadlines.values() if d.subject_id == subject_id and d.clock == clock.id)
    deadline = Deadline(
        id=f"{subject_id}/{clock.id}/{sequence}",
        subject_kind=kind,
        subject_id=subject_id,
        clock=clock.id,
        title=_deadline_title(step, clock, kind, subject_id),
        started_on=step.today,
        due_date=due.date,
        due_at=end_of_local_day(due.date),
        estimated=due.estimated,
        ladder=clock.ladder,
        on_expiry=clock.on_expiry,
    )
    project.deadlines[deadline.id] = deadline
    step.result.deadlines_opened.append(deadline.id)
    return deadline


def _redate(step: _Step, clock: Clock, deadline: Deadline, subject_id: str) -> None:
    due = _due(step, clock, subject_id, deadline.started_on, deadline.pauses)
    if due is not None:
        deadline.due_date, deadline.estimated = due.date, due.estimated
        deadline.due_at = end_of_local_day(due.date)


def _due(step: _Step, clock: Clock, subject_id: str, start: date, pauses: list[Pause]) -> CalendarResult | None:
    calendar = step.engine.calendar
    breaks = [CalendarPause(p.start, p.end) for p in pauses]
    if clock.basis == "duration" and clock.duration is not None:
        return calendar.due_date(start, clock.duration.days, unit=clock.duration.unit, pauses=breaks)
    if clock.basis == "item_time_limit":
        task = step.project.tasks[subject_id]
        limit = step.compiled.items[(task.group, task.item)].time_limit
        return calendar.due_date(start, limit.days, unit=limit.unit, pauses=breaks)
    if clock.basis == "cure_date":
        notice = step.project.notices[subject_id]
        return CalendarResult(date=notice.cure_date, estimated=False)
    if clock.basis == "field_date" and clock.field:
        value = step.project.fields.get(clock.field)
        return CalendarResult(date=value, estimated=False) if isinstance(value, date) else None
    return None


def _basis_of(step: _Step, deadline: Deadline) -> str | None:
    if deadline.subject_kind == "project":
        machine_id = ""
    elif deadline.subject_kind == "task":
        machine_id = step.project.tasks[deadline.subject_id].machine
    else:
        machine_id = step.project.notices[deadline.subject_id].machine
    for clock in _clocks_for(step, machine_id):
        if clock.id == deadline.clock:
            return clock.basis
    return None


def _deadline_title(step: _Step, clock: Clock, kind: SubjectKind, subject_id: str) -> str:
    if kind == "project":
        return clock.title
    if kind == "task":
        task = step.project.tasks[subject_id]
        item = step.compiled.items[(task.group, task.item)]
        return f"{item.title}·{clock.title}"
    notice = step.project.notices[subject_id]
    task = step.project.tasks[notice.task_id]
    return f"{step.compiled.items[(task.group, task.item)].title}·{clock.title}"


# --- effects ----------------------------------------------------------------------------------------------


def _apply_effects(step: _Step, spec: MachineTransition) -> None:
    task = step.task
    assert task is not None
    for effect in spec.effects:
        if effect == "new_submission":
            task.submission += 1
        elif effect == "issue_deficiency_notice":
            _issue_notice(step, task)
        elif effect == "cure_deficiency":
            pass  # the notice's own transition records the cure; the item resumes by then_parent
        elif effect == "record_commitment":
            number = 1 + sum(1 for c in step.project.commitments.values() if c.task_id == task.id)
            commitment = Commitment(
                id=f"{task.id}#c{number}",
                task_id=task.id,
                text=step.data["text"],
                recorded_at=step.now,
                recorded_by=step.actor.id,
                due_date=step.data.get("due_date"),
            )
            step.project.commitments[commitment.id] = commitment
            step.result.commitments_changed.append(commitment.id)
            step.result.events.append(
                Event("commitment.recorded", "task", task.id, step.actor.id, step.now,
                      data={"commitment": commitment.id, "text": commitment.text})
            )  # fmt: skip
        elif effect in ("verify_commitment", "breach_commitment"):
            chosen: Commitment = step.data["commitment"]
            chosen.state = "verified" if effect == "verify_commitment" else "breached"
            chosen.verified_at, chosen.verified_by, chosen.note = (
                step.now,
                step.actor.id,
                step.data.get("note"),
            )
            step.result.commitments_changed.append(chosen.id)
            step.result.events.append(
                Event(f"commitment.{chosen.state}", "task", task.id, step.actor.id, step.now,
                      data={"commitment": chosen.id, "note": chosen.note})
            )  # fmt: skip


def _issue_notice(step: _Step, task: Task) -> None:
    definition = step.compiled.definition
    group = definition.group(task.group)
    machine_id = group.notice_machine
    if machine_id is None:  # the static checks refuse 容缺 items in a group without a notice machine
        return
    machine = step.compiled.task_machines[machine_id]
    notice = DeficiencyNotice(
        id=f"{task.id}#n{task.submission}",
        task_id=task.id,
        submission=task.submission,
        machine=machine_id,
        state=machine.spec.initial,
        missing=step.data["missing"],
        cure_date=step.data["cure_date"],
        issued_at=step.now,
        issued_by=step.actor.id,
    )
    step.project.notices[notice.id] = notice
    step.result.notices_opened.append(notice.id)
    step.result.events.append(
        Event(
            "notice.issued",
            "notice",
            notice.id,
            step.actor.id,
            step.now,
            to_state=notice.state,
            data={"task": task.id, "missing": notice.missing, "cure_date": notice.cure_date.isoformat()},
        )
    )
    _sync_clocks(step, "notice", notice.id, machine_id, notice.state, fresh=True)
