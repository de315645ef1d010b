"""The scheduling use cases: time-driven work on deadlines, recurring obligations, traffic lights, and the
escalation notices (提示函 / 督办函) people read and acknowledge.

Time-driven work (called by the scheduler's tick, :mod:`lifecycle.scheduler`):

* :meth:`Scheduling.claim` takes the deadlines whose next action has come, in a short transaction of its own;
* :meth:`Scheduling.fire_deadline` then does that action through the same path as any transition: one
  transaction that locks the project row, runs the engine (the deadline's ``on_expiry`` trigger, as the
  ``system`` actor), climbs the ladder one level at a time (an ``escalations`` row, a notice per recipient,
  a history event saying how late it fired), saves the aggregate, appends the events and runs the change
  hooks (traffic light, webhook outbox, the deadline's next fire time). Every level fires exactly once: the
  work is re-decided under the project lock from the deadline's recorded level, and the ``escalations``
  UNIQUE (project, deadline, level) refuses a second row whatever else goes wrong;
* :meth:`Scheduling.open_obligations` opens, for each period of each recurring obligation that has come due,
  a deadline for every project that owes the report and has not filed it (its ladder then climbs);
* :meth:`Scheduling.redate_estimated` counts estimated due dates again once the calendar knows their years;
* :meth:`Scheduling.refresh_lights` recomputes once a day the lights of projects nothing changed (months
  pass, deadlines pass).

Each has a preview form that computes the same and writes nothing (``lifecycle sweep --dry-run``).

Use cases for callers: submit and list obligation reports, list a project's deadlines and escalations,
list, read and acknowledge notices.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.calendar import WorkingCalendar
from lifecycle.clock import SHANGHAI, local_date
from lifecycle.engine import fields as field_values
from lifecycle.engine.compiled import CompiledDefinition
from lifecycle.engine.escalation import (
    levels_due,
    may_act_for,
    next_action_at,
    render_notice,
    resolve_recipients,
    working_days_late,
)
from lifecycle.engine.instance import SYSTEM_ACTOR, Deadline, Event, FireResult, ProjectInstance
from lifecycle.engine.lights import compute_light
from lifecycle.engine.obligations import occurrence_of, occurrences_between, period_of, period_start
from lifecycle.engine.redate import obligation_clock, parse_obligation_clock, redated_due
from lifecycle.errors import Forbidden, InvalidInput, Location, NotFound, Problem, TransitionRefused
from lifecycle.messages import register
from lifecycle.spec.checks import OBLIGATION_ID_LIMIT
from lifecycle.spec.models import Definition, Ladder, LadderLevel, Obligation
from lifecycle.store.ids import new_id
from lifecycle.store.projects import ProjectRecord, ProjectRepository
from lifecycle.store.scheduling import (
    DueRef,
    EscalationRecord,
    NoticeQuery,
    NoticeRecord,
    ReportRecord,
    SchedulingRepository,
)

from .answers import StoredAnswer
from .authz import CallContext, Principal, owns
from .hooks import PendingChange
from .scheduling_hooks import light_json, next_fire_times
from .scheduling_views import (
    EscalationNoticeView,
    EscalationView,
    Fired,
    NoticeFilters,
    ObligationStatusView,
    OpenedObligation,
    PeriodView,
    ProjectDeadlinesView,
    Redated,
    ReportView,
)
from .views import Page, deadline_view

if TYPE_CHECKING:
    from .service import Services

register(
    {
        "obligation.already_reported": (
            "{obligation}（{period}）已报送，不能重复报送",
            "the report for {obligation} ({period}) has already been filed",
        ),
        "obligation.bad_period": (
            "报送期次“{period}”格式不对，应为 {example}",
            "period '{period}' is malformed: it should look like {example}",
        ),
        "obligation.future_period": (
            "报送期次 {period} 尚未开始",
            "period {period} has not started yet",
        ),
    }
)

SYSTEM = SYSTEM_ACTOR.id
"""The actor of everything the scheduler does."""

DEFAULT_NOTICE = (
    "{recipient}：\n{project_name}（项目代码：{project_code}）{subject}已于{due_date}到期，现已逾期{days_late}个工作日。"
    "请抓紧办理并报送情况。\n{ladder_title}·第{level}级·{level_title}"
)
"""The text of a notice whose ladder level has no template of its own."""

PERIOD_EXAMPLES = {"weekly": "2026-W41", "monthly": "2026-10", "quarterly": "2026-Q4", "yearly": "2026"}

_FIRST_LOOKBACK = {"weekly": 7, "monthly": 31, "quarterly": 92, "yearly": 366}
"""Days looked back the first time an obligation is swept (no watermark yet): the previous period."""


class ReportAlreadyFiled(TransitionRefused):
    """Raised when a report is filed for a period that already has one (UNIQUE project, obligation, period):
    a report is filed once; a correction is a matter for the dispatcher, not a second report."""

    code = "obligation.already_reported"

    def __init__(self, obligation: str, period: str) -> None:
        self.obligation = obligation
        self.period = period
        super().__init__(str(self))

    def params(self) -> dict[str, Any]:
        return {"obligation": self.obligation, "period": self.period}


def _where(*path: str | int) -> Location:
    return Location(file="request", line=0, column=0, path=path)


def zh_date(day: date) -> str:
    """A date as Chinese official letters write it: 2026年10月30日."""
    return f"{day.year}年{day.month}月{day.day}日"


def local_day_start(now: datetime) -> datetime:
    """The instant (UTC) the local (Asia/Shanghai) day of ``now`` began."""
    day = local_date(now)
    return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI).astimezone(UTC)


def covered_until(calendar: WorkingCalendar) -> date | None:
    """The last day of the unbroken run of years the calendar knows exactly (ending the year it reaches
    without a gap), or None when it knows none."""
    years = sorted(calendar.covered_years())
    if not years:
        return None
    last = years[0]
    for year in years[1:]:
        if year != last + 1:
            break
        last = year
    return date(last, 12, 31)


@dataclass
class _Plan:
    """What firing one deadline does: the engine's result, events, rows to write and the summary."""

    result: FireResult
    events: list[Event] = field(default_factory=list)
    escalations: list[EscalationRecord] = field(default_factory=list)
    notices: list[NoticeRecord] = field(default_factory=list)
    fired: list[Fired] = field(default_factory=list)


class Scheduling:
    """The scheduling use cases over one :class:`~lifecycle.services.Services` (its database, engine,
    registry, clock and change path)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @property
    def calendar(self) -> WorkingCalendar:
        return self.services.engine.calendar

    # --- deadlines: claim, fire, preview -----------------------------------------------------------------

    async def claim(self, now: datetime, lease_until: datetime, limit: int) -> list[DueRef]:
        """Claim up to ``limit`` deadlines whose next action has come by ``now`` (one short transaction);
        nobody else claims them before ``lease_until``."""
        async with self.services.database.transaction() as session:
            return await SchedulingRepository(session).claim(now, lease_until, limit)

    async def release_claims(self, now: datetime, lease: timedelta) -> int:
        """Forget the claims a scheduler may have left behind (its lease ends after ``now`` and within
        ``lease``): those deadlines become "not scheduled" and are claimed again as soon as they are due. A
        new leader calls this when it takes over from a dead one. Deadlines legitimately scheduled in that
        window lose nothing: a deadline is never due before its ``due_at``, and firing re-decides from it."""
        async with self.services.database.transaction() as session:
            return await SchedulingRepository(session).release_claims(now, now + lease)

    async def due(self, now: datetime, limit: int) -> list[DueRef]:
        """The deadlines :meth:`claim` would take now, without claiming them."""
        async with self.services.database.reader() as session:
            return await SchedulingRepository(session).due(now, limit)

    async def fire_deadline(self, ref: DueRef, now: datetime) -> list[Fired]:
        """Do what has come due for one deadline (expiry trigger, ladder levels), in one transaction that
        locks its project, and store its next fire time. Nothing due (a claim taken early, a deadline
        closed meanwhile) writes only the next fire time.

        Raises:
            IntegrityError: a level was recorded by someone else meanwhile (the transaction rolled back
                whole; the caller may simply go on).
        """
        return await self.fire_deadlines([ref], now)

    async def fire_deadlines(self, refs: Sequence[DueRef], now: datetime) -> list[Fired]:
        """:meth:`fire_deadline` for many deadlines in one transaction: their projects are locked together
        (in id order) and loaded in a few queries, each deadline is decided as it would be alone, and all
        the rows are written in a few statements whatever their number. The deadlines of one project are
        decided one after another on its aggregate and written as one change.

        This is what makes a tick's cost follow what is due: a thousand deadlines cost a few dozen
        statements, not a few thousand.

        Raises:
            IntegrityError: a level was recorded by someone else meanwhile; the whole batch rolled back (the
                caller fires its deadlines one by one, so that only the one already recorded is skipped).
        """
        by_project: dict[str, list[str]] = {}
        for ref in refs:
            by_project.setdefault(ref.project_id, []).append(ref.deadline_id)
        fired: list[Fired] = []
        async with self.services.database.transaction() as session:
            projects = ProjectRepository(session)
            records = await projects.lock_many(by_project)
            loaded = []
            for record in records.values():
                compiled = await self.services.registry.compiled(
                    session, record.definition_key, record.definition_version
                )
                loaded.append((record, compiled))
            instances = await projects.instances([(record, c.definition) for record, c in loaded])
            pending: list[PendingChange] = []
            escalation_rows: list[EscalationRecord] = []
            notice_rows: list[NoticeRecord] = []
            # (project, deadline, next fire time) of deadlines whose change does not store it itself.
            next_fires: list[tuple[str, str, datetime | None]] = []
            for record, compiled in loaded:
                definition, instance = compiled.definition, instances[record.id]
                result, events = FireResult(state=instance.state), []
                for deadline_id in by_project[record.id]:
                    plan = self._plan(compiled, record, instance, deadline_id, now)
                    fired.extend(plan.fired)
                    escalation_rows.extend(plan.escalations)
                    notice_rows.extend(plan.notices)
                    if plan.escalations:
                        result = result.merged(plan.result)
                        events.extend(plan.events)
                    if deadline_id not in plan.result.deadlines_changed:  # else the change schedules it
                        times = next_fire_times(self.calendar, definition, instance, [deadline_id])
                        next_fires.extend((record.id, d, at) for d, at in times or [(deadline_id, None)])
                if events:
                    pending.append(PendingChange(record, instance, definition, result, events, SYSTEM, now))
            repository = SchedulingRepository(session)
            await repository.add_escalations(escalation_rows)
            await repository.add_notices(notice_rows)
            await self.services._save_changes(session, pending)
            changed = {(p.record.id, d) for p in pending for d in (p.result.deadlines_changed if p.result else [])}
            await repository.schedule_many([row for row in next_fires if row[:2] not in changed])
        return fired

    async def preview_deadline(self, ref: DueRef, now: datetime) -> list[Fired]:
        """What :meth:`fire_deadline` would do now, computed on a copy; nothing is written."""
        async with self.services.database.reader() as session:
            projects = ProjectRepository(session)
            record = await projects.get(ref.project_id)
            if record is None:
                return []
            compiled = await self.services.registry.compiled(session, record.definition_key, record.definition_version)
            instance = copy.deepcopy(await projects.instance(record, compiled.definition))
            return self._plan(compiled, record, instance, ref.deadline_id, now).fired

    def _plan(
        self,
        compiled: CompiledDefinition,
        record: ProjectRecord,
        instance: ProjectInstance,
        deadline_id: str,
        now: datetime,
    ) -> _Plan:
        """Decide and apply (to ``instance``) what has come due for the deadline; the rows to write."""
        plan = _Plan(FireResult(state=instance.state))
        deadline = instance.deadlines.get(deadline_id)
        if deadline is None or deadline.closed_at is not None or deadline.paused:
            return plan
        if deadline.on_expiry and deadline.fired_at is None and deadline.due_at <= now:
            self._expire(compiled, record, instance, deadline, now, plan)
        ladder: Ladder | None = compiled.definition.lookup("ladders").get(deadline.ladder) if deadline.ladder else None
        if ladder is not None and deadline.closed_at is None and not deadline.paused:
            due = levels_due(self.calendar, ladder, deadline, now)
            if due:
                days_late = working_days_late(self.calendar, deadline, now)
                for level_due in due:
                    self._escalate(compiled, record, instance, deadline, ladder, level_due.level, level_due.due_at,
                                   days_late, now, plan)  # fmt: skip
                if deadline.id not in plan.result.deadlines_changed:
                    plan.result.deadlines_changed.append(deadline.id)
        return plan

    def _expire(
        self,
        compiled: CompiledDefinition,
        record: ProjectRecord,
        instance: ProjectInstance,
        deadline: Deadline,
        now: datetime,
        plan: _Plan,
    ) -> None:
        trigger = deadline.on_expiry or ""
        title = _trigger_title(compiled, instance, deadline, trigger)
        days_late = working_days_late(self.calendar, deadline, now)
        late_by = _seconds(now - deadline.due_at)
        outcome: Literal["fired", "refused"] = "fired"
        reason: str | None = None
        engine_events: list[Event] = []
        try:
            result = self.services.engine.expire(instance, deadline.id, now)
            plan.result = result
            engine_events = list(result.events)
        except (TransitionRefused, InvalidInput) as refused:
            # The subject moved on and cannot take the trigger any more: recorded, never tried again.
            outcome, reason = "refused", refused.problems()[0].en
            deadline.fired_at = now
            plan.result.deadlines_changed.append(deadline.id)
        escalation = EscalationRecord(
            id=new_id(), project_id=record.id, deadline_id=deadline.id, level=0, ladder=None, title=title,
            subject_kind=deadline.subject_kind, subject_id=deadline.subject_id, deadline_title=deadline.title,
            deadline_due_date=deadline.due_date, due_at=deadline.due_at, fired_at=now, late_by_seconds=late_by,
            days_late=days_late, outcome=outcome, notice_ids=[],
        )  # fmt: skip
        plan.escalations.append(escalation)
        data = {
            "deadline": deadline.id,
            "deadline_title": deadline.title,
            "escalation": escalation.id,
            "due_at": deadline.due_at.isoformat(),
            "late_by_seconds": late_by,
            "outcome": outcome,
        }
        if reason:
            data["reason"] = reason
        plan.events.append(
            Event(
                "deadline.expired", deadline.subject_kind, deadline.subject_id, SYSTEM, now, trigger=trigger, data=data
            )
        )
        plan.events.extend(engine_events)
        plan.fired.append(
            Fired(record.id, record.name, deadline.id, deadline.title, "expire", 0, title, deadline.due_at, now,
                  late_by, days_late, outcome)
        )  # fmt: skip

    def _escalate(
        self,
        compiled: CompiledDefinition,
        record: ProjectRecord,
        instance: ProjectInstance,
        deadline: Deadline,
        ladder: Ladder,
        level: LadderLevel,
        due_at: datetime,
        days_late: int,
        now: datetime,
        plan: _Plan,
    ) -> None:
        definition = compiled.definition
        titles = _DepartmentTitles(definition.lookup("departments"))
        recipients = resolve_recipients(
            level,
            lead_unit=record.lead_unit,
            implementing_unit=record.implementing_unit,
            lead_leader=record.lead_leader,
            department=_department(compiled, instance, deadline),
            titles=titles,
        )
        escalation_id = new_id()
        late_by = _seconds(now - due_at)
        template = level.notice.template if level.notice else DEFAULT_NOTICE
        kind = level.notice.kind if level.notice else "提示函"
        values: dict[str, object] = {
            "project_name": record.name,
            "project_code": record.code,
            "subject": deadline.title,
            "due_date": zh_date(deadline.due_date),
            "days_late": days_late,
            "level": level.level,
            "level_title": level.title,
            "ladder_title": ladder.title,
            "lead_unit": titles.get(record.lead_unit, record.lead_unit),
            "lead_leader": record.lead_leader,
        }
        notices = [
            NoticeRecord(
                id=new_id(), escalation_id=escalation_id, project_id=record.id, deadline_id=deadline.id,
                level=level.level, kind=kind, recipient_role=r.role, recipient_kind=r.kind, recipient_id=r.id,
                recipient_title=r.title, subject=deadline.title, due_date=deadline.due_date, days_late=days_late,
                level_title=level.title, text=render_notice(template, {**values, "recipient": r.title}),
                created_at=now, acknowledged_at=None, acknowledged_by=None,
            )
            for r in recipients
        ]  # fmt: skip
        plan.escalations.append(
            EscalationRecord(
                id=escalation_id, project_id=record.id, deadline_id=deadline.id, level=level.level,
                ladder=ladder.id, title=level.title, subject_kind=deadline.subject_kind,
                subject_id=deadline.subject_id, deadline_title=deadline.title, deadline_due_date=deadline.due_date,
                due_at=due_at, fired_at=now, late_by_seconds=late_by, days_late=days_late, outcome="fired",
                notice_ids=[n.id for n in notices],
            )
        )  # fmt: skip
        plan.notices.extend(notices)
        deadline.level = level.level
        plan.events.append(
            Event(
                "deadline.escalated",
                deadline.subject_kind,
                deadline.subject_id,
                SYSTEM,
                now,
                data={
                    "deadline": deadline.id,
                    "deadline_title": deadline.title,
                    "escalation": escalation_id,
                    "ladder": ladder.id,
                    "level": level.level,
                    "level_title": level.title,
                    "due_at": due_at.isoformat(),
                    "late_by_seconds": late_by,
                    "days_late": days_late,
                    "notices": [
                        {"id": n.id, "kind": n.kind, "recipient_kind": n.recipient_kind, "recipient": n.recipient_id}
                        for n in notices
                    ],
                },
            )
        )
        plan.fired.append(
            Fired(record.id, record.name, deadline.id, deadline.title, "escalate", level.level, level.title, due_at,
                  now, late_by, days_late, "fired", tuple(f"{n.recipient_kind}:{n.recipient_id}" for n in notices))
        )  # fmt: skip

    # --- recurring obligations ----------------------------------------------------------------------------

    async def open_obligations(self, now: datetime, *, dry_run: bool = False) -> list[OpenedObligation]:
        """Open the deadline of every period that has come due by ``now`` for each project that owes its
        report (in an ``applies_in`` state then and now, by its history) and has not filed it. Each period of
        each obligation is swept once (a watermark in ``scheduler_state``); a row another sweep opened first
        is left alone. With ``dry_run`` nothing is written."""
        opened: list[OpenedObligation] = []
        database = self.services.database
        async with database.reader() if dry_run else database.transaction() as session:
            repository = SchedulingRepository(session)
            for key, version in await repository.definition_versions():
                compiled = await self.services.registry.compiled(session, key, version)
                for obligation in compiled.definition.obligations:
                    if len(obligation.id) <= OBLIGATION_ID_LIMIT:
                        opened.extend(await self._open_obligation(repository, compiled, obligation, now, dry_run))
        return opened

    async def _open_obligation(
        self,
        repository: SchedulingRepository,
        compiled: CompiledDefinition,
        obligation: Obligation,
        now: datetime,
        dry_run: bool,
    ) -> list[OpenedObligation]:
        key, version = compiled.definition.key, compiled.version
        state_key = f"obligations:{key}@{version}:{obligation.id}"
        mark = await repository.state(state_key)
        through = datetime.fromisoformat(mark["through"]) if mark else None
        today = local_date(now)
        start = local_date(through) if through else today - timedelta(days=_FIRST_LOOKBACK[obligation.recurrence])
        occurrences = [
            o
            for o in occurrences_between(self.calendar, obligation, start, today)
            if o.due_at <= now and (through is None or o.due_at > through)
        ]
        ladder: Ladder | None = (
            compiled.definition.lookup("ladders").get(obligation.ladder) if obligation.ladder else None
        )
        opened: list[OpenedObligation] = []
        for occurrence in occurrences:
            clock = obligation_clock(obligation.id, occurrence.period)
            owing = await repository.owing_projects(
                key, version, obligation.applies_in, clock, obligation.id, occurrence.period, occurrence.due_at
            )
            rows: list[tuple[str, Deadline, datetime | None]] = []
            for project_id in owing:
                deadline = Deadline(
                    id=f"{project_id}/{clock}/1",
                    subject_kind="project",
                    subject_id=project_id,
                    clock=clock,
                    title=f"{obligation.title}（{occurrence.period}）",
                    started_on=period_start(obligation, occurrence.period) or occurrence.due_on,
                    due_date=occurrence.due_on,
                    due_at=occurrence.due_at,
                    estimated=occurrence.estimated,
                    ladder=obligation.ladder,
                )
                rows.append((project_id, deadline, None))
                opened.append(
                    OpenedObligation(project_id, obligation.id, occurrence.period, deadline.id, deadline.due_at)
                )
            if rows and not dry_run:
                # Scheduled at once: the first level of the ladder is due when the report is.
                rows = [(pid, d, next_action_at(self.calendar, ladder, d)) for pid, d, _ in rows]
                await repository.insert_deadlines(rows)
        if occurrences and not dry_run:
            last = occurrences[-1]
            await repository.set_state(state_key, {"through": last.due_at.isoformat(), "period": last.period}, now)
        return opened

    # --- estimated due dates ------------------------------------------------------------------------------

    async def redate_estimated(
        self, now: datetime, *, everything: bool = False, dry_run: bool = False, limit: int = 500
    ) -> list[Redated]:
        """Count estimated due dates again with the calendar as it is now. By default only deadlines due
        within the years the calendar knows without a gap (cheap: an index on open estimated rows); with
        ``everything`` every open estimated deadline (after the calendar learnt a year). Projects whose
        dates change are updated through the change path (an event per deadline; the hooks reschedule)."""
        until = None if everything else covered_until(self.calendar)
        if until is None and not everything:
            return []
        async with self.services.database.reader() as session:
            refs = await SchedulingRepository(session).estimated_open(until, limit)
        by_project: dict[str, list[str]] = {}
        for ref in refs:
            by_project.setdefault(ref.project_id, []).append(ref.deadline_id)
        out: list[Redated] = []
        for project_id, deadline_ids in by_project.items():
            preview = await self._redate_project(project_id, deadline_ids, now, write=False)
            if preview and not dry_run:
                preview = await self._redate_project(project_id, deadline_ids, now, write=True)
            out.extend(preview)
        return out

    async def _redate_project(
        self, project_id: str, deadline_ids: list[str], now: datetime, *, write: bool
    ) -> list[Redated]:
        database = self.services.database
        async with database.transaction() if write else database.reader() as session:
            projects = ProjectRepository(session)
            record = await (projects.lock(project_id) if write else projects.get(project_id))
            if record is None:
                return []
            compiled = await self.services.registry.compiled(session, record.definition_key, record.definition_version)
            instance = await projects.instance(record, compiled.definition)
            changes: list[Redated] = []
            events: list[Event] = []
            result = FireResult(state=instance.state)
            for deadline_id in deadline_ids:
                deadline = instance.deadlines.get(deadline_id)
                if deadline is None or deadline.closed_at is not None or not deadline.estimated:
                    continue
                due = redated_due(self.calendar, compiled, instance, deadline)
                if due is None or (due.date == deadline.due_date and due.estimated):
                    continue
                changes.append(Redated(project_id, deadline_id, deadline.due_date, due.date, due.estimated))
                events.append(
                    Event("deadline.redated", deadline.subject_kind, deadline.subject_id, SYSTEM, now,
                          data={"deadline": deadline_id, "from": deadline.due_date.isoformat(),
                                "to": due.date.isoformat(), "estimated": due.estimated})
                )  # fmt: skip
                deadline.due_date, deadline.due_at, deadline.estimated = due.date, due.at, due.estimated
                result.deadlines_changed.append(deadline_id)
            if write and changes:
                await self.services._save_change(
                    session, record, instance, compiled.definition, result, events, SYSTEM, now
                )
            return changes

    # --- traffic lights -----------------------------------------------------------------------------------

    async def refresh_lights(self, now: datetime, *, limit: int = 500, dry_run: bool = False) -> int:
        """Recompute the lights not computed yet today (local time): measures move with time alone (a
        month passes, a deadline passes) even when nothing changes a project. Each light is written only if
        its project has not changed meanwhile (a change writes its own). How many were recomputed."""
        database = self.services.database
        async with database.reader() as session:
            stale = await SchedulingRepository(session).stale_lights(local_day_start(now), limit)
        if dry_run or not stale:
            return len(stale)
        done = 0
        for start in range(0, len(stale), 50):
            async with database.transaction() as session:
                projects = ProjectRepository(session)
                repository = SchedulingRepository(session)
                for project_id, _version in stale[start : start + 50]:
                    record = await projects.get(project_id)
                    if record is None:
                        continue
                    definition = await self.services.registry.definition(
                        session, record.definition_key, record.definition_version
                    )
                    instance = await projects.instance(record, definition)
                    light = compute_light(definition, instance, now)
                    await repository.set_light(project_id, light.color, light_json(light), now, version=record.version)
                    done += 1
        return done

    # --- obligation reports (callers) ---------------------------------------------------------------------

    async def submit_report(
        self,
        ctx: CallContext,
        project_id: str,
        obligation_id: str,
        data: Mapping[str, Any],
        period: str | None = None,
        *,
        answer: StoredAnswer[ReportView] | None = None,
    ) -> ReportView:
        """File the report of one period of a recurring obligation (default: the current period). A report
        after the period's due time is recorded as late; it closes the period's deadline (its ladder stops)
        and updates the project fields the definition names (``updates_fields``). With ``answer``, the answer
        to the request's ``Idempotency-Key`` (claimed up front) is stored in the same transaction
        (:mod:`.answers`).

        Raises:
            NotFound: no such project (or not visible), or the definition has no such obligation.
            Forbidden: the caller holds none of the obligation's roles, or is a unit of another project.
            InvalidInput: a bad period (malformed, not started), or bad or missing report fields.
            ReportAlreadyFiled: the period already has a report.
        """
        principal = ctx.principal
        now = self.services.now()
        async with self.services.database.transaction() as session:
            record, instance, definition = await self.services._lock(session, principal, project_id)
            obligation = _obligation(definition, obligation_id)
            if principal.roles.isdisjoint(obligation.roles) or not (principal.county_wide or owns(principal, record)):
                raise Forbidden("obligation", obligation_id, "report")
            key = period or period_of(obligation, local_date(now))[0]
            occurrence = occurrence_of(self.calendar, obligation, key)
            if occurrence is None:
                example = PERIOD_EXAMPLES[obligation.recurrence]
                raise InvalidInput([Problem.of("obligation.bad_period", _where("period"), period=key, example=example)])
            start = period_start(obligation, key)
            if start is not None and start > local_date(now):
                raise InvalidInput([Problem.of("obligation.future_period", _where("period"), period=key)])
            values = _report_values(obligation, data)
            repository = SchedulingRepository(session)
            if await repository.report(project_id, obligation_id, key) is not None:
                raise ReportAlreadyFiled(obligation.title, key)
            late_by = max(0, _seconds(now - occurrence.due_at))
            report = ReportRecord(
                id=new_id(), project_id=project_id, obligation=obligation_id, period=key,
                data={k: field_values.to_json(v) for k, v in values.items()}, due_at=occurrence.due_at,
                submitted_at=now, submitted_by=principal.id, late=late_by > 0, late_by_seconds=late_by,
            )  # fmt: skip
            try:
                async with session.begin_nested():
                    await repository.add_report(report)
            except IntegrityError:
                # Two filers raced for the same period: the unique constraint caught the second.
                raise ReportAlreadyFiled(obligation.title, key) from None
            updates = {
                target: values[source] for source, target in obligation.updates_fields.items() if source in values
            }
            if updates:
                result = self.services.engine.update_fields(instance, updates, principal.actor, now)
                events = list(result.events)
            else:
                result, events = FireResult(state=instance.state), []
                instance.version += 1
            deadline = instance.deadlines.get(f"{project_id}/{obligation_clock(obligation_id, key)}/1")
            if deadline is not None and deadline.closed_at is None:
                deadline.closed_at = now
                result.deadlines_closed.append(deadline.id)
            events.insert(
                0,
                Event("obligation.reported", "project", project_id, principal.id, now,
                      data={"obligation": obligation_id, "period": key, "report": report.id, "late": report.late,
                            "late_by_seconds": late_by, "due_at": occurrence.due_at.isoformat(),
                            "deadline": deadline.id if deadline else None, "level": deadline.level if deadline else 0}),
            )  # fmt: skip
            view = _report_view(report)
            await self.services._save_change(
                session, record, instance, definition, result, events, principal.id, now,
                answer=answer, answer_view=lambda _: view,
            )  # fmt: skip
        stored = answer.committed_view() if answer is not None else None
        return stored if stored is not None else view

    async def obligations(self, ctx: CallContext, project_id: str, periods: int = 12) -> list[ObligationStatusView]:
        """Every obligation of the project's definition with its recent periods and reports.

        Raises:
            NotFound: no such project, or not visible.
        """
        async with self.services.database.reader() as session:
            record, instance, definition = await self.services._read(session, ctx.principal, project_id)
            return [await self._status(session, record, instance, ob, periods) for ob in definition.obligations]

    async def obligation(
        self, ctx: CallContext, project_id: str, obligation_id: str, periods: int = 12
    ) -> ObligationStatusView:
        """One obligation of the project: its reports and which of its recent periods are reported, late,
        missing or due (newest first).

        Raises:
            NotFound: no such project (or not visible), or no such obligation.
        """
        async with self.services.database.reader() as session:
            record, instance, definition = await self.services._read(session, ctx.principal, project_id)
            obligation = _obligation(definition, obligation_id)
            return await self._status(session, record, instance, obligation, periods)

    async def _status(
        self,
        session: AsyncSession,
        record: ProjectRecord,
        instance: ProjectInstance,
        obligation: Obligation,
        periods: int,
    ) -> ObligationStatusView:
        now = self.services.now()
        repository = SchedulingRepository(session)
        reports = await repository.reports(record.id, obligation.id)
        by_period = {r.period: r for r in reports}
        deadlines: dict[str, Deadline] = {}
        for deadline in instance.deadlines.values():
            found = parse_obligation_clock(deadline.clock)
            if found is not None and found[0] == obligation.id:
                deadlines[found[1]] = deadline
        changes = await repository.state_changes(record.id)
        applies = set(obligation.applies_in)
        today = local_date(now)
        lookback = _FIRST_LOOKBACK[obligation.recurrence] * max(periods, 1)
        first = max(local_date(record.created_at), today - timedelta(days=lookback))
        views: list[PeriodView] = []
        # Up to the next period, so that the report due next shows as "due" even right after a due day; of
        # the periods not due yet only the nearest is shown.
        horizon = today + timedelta(days=_FIRST_LOOKBACK[obligation.recurrence])
        listed = occurrences_between(self.calendar, obligation, first, horizon)
        upcoming = [o for o in listed if o.due_at > now][:1]
        for occurrence in reversed([o for o in listed if o.due_at <= now] + upcoming):
            report = by_period.get(occurrence.period)
            open_row = deadlines.get(occurrence.period)
            due = occurrence.due_at <= now
            state_then = _state_at(changes, occurrence.due_at if due else now)
            if report is None and open_row is None and state_then not in applies:
                continue
            if report is not None:
                status: Literal["reported", "late", "missing", "due"] = "late" if report.late else "reported"
            else:
                status = "missing" if due else "due"
            views.append(
                PeriodView(
                    period=occurrence.period, due_at=occurrence.due_at, estimated=occurrence.estimated,
                    status=status, report_id=report.id if report else None,
                    deadline_id=open_row.id if open_row else None, level=open_row.level if open_row else 0,
                )
            )  # fmt: skip
            if len(views) >= periods:
                break
        return ObligationStatusView(
            obligation=obligation.id,
            title=obligation.title,
            title_en=obligation.title_en,
            recurrence=obligation.recurrence,
            applies_now=record.state in applies,
            ladder=obligation.ladder,
            fields=[f.model_dump(exclude_none=True) for f in obligation.fields],
            updates_fields=dict(obligation.updates_fields),
            periods=views,
            reports=[_report_view(r) for r in reports],
        )

    # --- deadlines and escalations of a project (callers) ------------------------------------------------

    async def project_deadlines(self, ctx: CallContext, project_id: str) -> ProjectDeadlinesView:
        """The project's deadlines (open ones first, by due time) and every escalation they fired.

        Raises:
            NotFound: no such project, or not visible.
        """
        now = self.services.now()
        async with self.services.database.reader() as session:
            record, instance, _ = await self.services._read(session, ctx.principal, project_id)
            escalations = await SchedulingRepository(session).escalations_of(record.id)
        ordered = sorted(instance.deadlines.values(), key=lambda d: (d.closed_at is not None, d.due_at, d.id))
        return ProjectDeadlinesView(
            deadlines=[deadline_view(d, now) for d in ordered],
            escalations=[_escalation_view(e) for e in escalations],
        )

    # --- notices (callers) ----------------------------------------------------------------------------------

    async def list_notices(
        self, ctx: CallContext, filters: NoticeFilters | None = None, cursor: str | None = None, limit: int = 50
    ) -> Page[EscalationNoticeView]:
        """The escalation notices the caller may see (county-wide roles: all; others: those addressed to
        them), newest first, filtered, one page at a time.

        Raises:
            InvalidInput: a bad cursor or limit.
        """
        from .service import _check_limit, decode_cursor, encode_cursor

        _check_limit(limit)
        after = decode_cursor(cursor) if cursor else None
        f = filters or NoticeFilters()
        query = NoticeQuery(
            addressed_to=_addressed_to(ctx.principal),
            recipient=f.recipient,
            project_id=f.project_id,
            level=f.level,
            acknowledged=f.acknowledged,
            kind=f.kind,
        )
        async with self.services.database.reader() as session:
            records, more = await SchedulingRepository(session).notices(query, after=after, limit=limit)
            names = await _project_names(session, {r.project_id for r in records})
        next_cursor = encode_cursor(records[-1].created_at, records[-1].id) if more and records else None
        return Page[EscalationNoticeView](items=[_notice_view(r, names) for r in records], next_cursor=next_cursor)

    async def get_notice(self, ctx: CallContext, notice_id: str) -> EscalationNoticeView:
        """One escalation notice.

        Raises:
            NotFound: no such notice, or not addressed to the caller (and the caller is not county-wide).
        """
        async with self.services.database.reader() as session:
            record = await self._visible_notice(session, ctx.principal, notice_id)
            names = await _project_names(session, {record.project_id})
        return _notice_view(record, names)

    async def acknowledge_notice(self, ctx: CallContext, notice_id: str) -> EscalationNoticeView:
        """The recipient acknowledges a notice (签收). Acknowledging again changes nothing. The project's
        history records it.

        Raises:
            NotFound: no such notice, or not visible to the caller.
            Forbidden: the caller may see the notice but is not its recipient.
        """
        principal = ctx.principal
        now = self.services.now()
        async with self.services.database.transaction() as session:
            record = await self._visible_notice(session, principal, notice_id)
            if not may_act_for(record.recipient_kind, record.recipient_id, principal.id, principal.unit_id,
                               principal.roles):  # fmt: skip
                raise Forbidden("notice", notice_id, "acknowledge")
            if record.acknowledged_at is None:
                projects = ProjectRepository(session)
                project = await projects.lock(record.project_id)
                if project is not None:
                    definition = await self.services.registry.definition(
                        session, project.definition_key, project.definition_version
                    )
                    instance = await projects.instance(project, definition)
                    repository = SchedulingRepository(session)
                    await repository.acknowledge(notice_id, principal.id, now)
                    event = Event(
                        "escalation_notice.acknowledged", "project", project.id, principal.id, now,
                        data={"notice": notice_id, "escalation": record.escalation_id, "deadline": record.deadline_id,
                              "level": record.level, "recipient_kind": record.recipient_kind,
                              "recipient": record.recipient_id},
                    )  # fmt: skip
                    await self.services._save_change(
                        session, project, instance, definition, None, [event], principal.id, now
                    )
                    record = await repository.notice(notice_id) or record
            names = await _project_names(session, {record.project_id})
        return _notice_view(record, names)

    async def _visible_notice(self, session: AsyncSession, principal: Principal, notice_id: str) -> NoticeRecord:
        record = await SchedulingRepository(session).notice(notice_id)
        addressed = _addressed_to(principal)
        if record is None or (addressed is not None and (record.recipient_kind, record.recipient_id) not in addressed):
            raise NotFound("notice", notice_id)
        return record


# --- helpers ----------------------------------------------------------------------------------------------


class _DepartmentTitles(Mapping[str, str]):
    """Department id → title, read from the definition's department table (no copy per notice)."""

    def __init__(self, departments: Mapping[str, Any]) -> None:
        self._departments = departments

    def __getitem__(self, department_id: str) -> str:
        return str(self._departments[department_id].title)

    def __iter__(self) -> Iterator[str]:
        return iter(self._departments)

    def __len__(self) -> int:
        return len(self._departments)


def _seconds(delta: timedelta) -> int:
    return int(delta.total_seconds())


def _obligation(definition: Definition, obligation_id: str) -> Obligation:
    obligation: Obligation | None = definition.lookup("obligations").get(obligation_id)
    if obligation is None:
        raise NotFound("obligation", obligation_id)
    return obligation


def _report_values(obligation: Obligation, data: Mapping[str, Any]) -> dict[str, Any]:
    """The report's data coerced by the obligation's fields; every problem (unknown, bad, missing required)."""
    specs = {f.id: f for f in obligation.fields}
    values, problems = field_values.coerce_all(specs, dict(data))
    bad = {p.location.path[-1] for p in problems if p.location and p.location.path}
    for spec in obligation.fields:
        if spec.required and spec.id not in bad and values.get(spec.id) in (None, "", []):
            problems.append(Problem.of("field.required", _where("data", spec.id), title=spec.title))
    if problems:
        raise InvalidInput(problems)
    return values


def _department(compiled: CompiledDefinition, instance: ProjectInstance, deadline: Deadline) -> str | None:
    """The department of the item a deadline belongs to (through its notice for a notice deadline)."""
    task_id: str | None = None
    if deadline.subject_kind == "task":
        task_id = deadline.subject_id
    elif deadline.subject_kind == "notice":
        notice = instance.notices.get(deadline.subject_id)
        task_id = notice.task_id if notice else None
    task = instance.tasks.get(task_id) if task_id else None
    if task is None:
        return None
    item = compiled.items.get((task.group, task.item))
    return item.department if item else None


def _trigger_title(compiled: CompiledDefinition, instance: ProjectInstance, deadline: Deadline, trigger: str) -> str:
    """The title of the expiry trigger (逾期未补正 …), from the machine of the deadline's subject."""
    definition = compiled.definition
    if deadline.subject_kind == "project":
        transitions: Sequence[Any] = definition.transitions
    else:
        subject: Any = (instance.tasks if deadline.subject_kind == "task" else instance.notices).get(
            deadline.subject_id
        )
        transitions = definition.machine(subject.machine).transitions if subject else []
    return next((t.title for t in transitions if t.trigger == trigger), trigger)


def _state_at(changes: Sequence[tuple[datetime, str]], at: datetime) -> str | None:
    """The project state at instant ``at`` from its state changes (oldest first); None before it existed."""
    state = None
    for when, to_state in changes:
        if when > at:
            break
        state = to_state
    return state


def _addressed_to(principal: Principal) -> tuple[tuple[str, str], ...] | None:
    """The notices a caller may see: None for county-wide callers (all), else those addressed to its unit
    (as a project unit) or its department."""
    if principal.county_wide:
        return None
    pairs: list[tuple[str, str]] = []
    if principal.unit_id:
        if "unit" in principal.roles:
            pairs.append(("unit", principal.unit_id))
        if "department" in principal.roles:
            pairs.append(("department", principal.unit_id))
    return tuple(pairs)


async def _project_names(session: AsyncSession, project_ids: set[str]) -> dict[str, tuple[str, str | None]]:
    projects = ProjectRepository(session)
    out: dict[str, tuple[str, str | None]] = {}
    for project_id in sorted(project_ids):
        record = await projects.get(project_id)
        if record is not None:
            out[project_id] = (record.name, record.code)
    return out


def _notice_view(record: NoticeRecord, names: Mapping[str, tuple[str, str | None]]) -> EscalationNoticeView:
    name, code = names.get(record.project_id, (None, None))
    return EscalationNoticeView(
        id=record.id,
        escalation_id=record.escalation_id,
        project_id=record.project_id,
        project_name=name,
        project_code=code,
        deadline_id=record.deadline_id,
        level=record.level,
        kind=record.kind,
        recipient_role=record.recipient_role,
        recipient_kind=record.recipient_kind,  # type: ignore[arg-type]
        recipient_id=record.recipient_id,
        recipient_title=record.recipient_title,
        subject=record.subject,
        due_date=record.due_date,
        days_late=record.days_late,
        level_title=record.level_title,
        text=record.text,
        created_at=record.created_at,
        acknowledged=record.acknowledged_at is not None,
        acknowledged_at=record.acknowledged_at,
        acknowledged_by=record.acknowledged_by,
    )


def _report_view(record: ReportRecord) -> ReportView:
    return ReportView(
        id=record.id,
        project_id=record.project_id,
        obligation=record.obligation,
        period=record.period,
        data=dict(record.data),
        due_at=record.due_at,
        submitted_at=record.submitted_at,
        submitted_by=record.submitted_by,
        late=record.late,
        late_by_seconds=record.late_by_seconds,
    )


def _escalation_view(record: EscalationRecord) -> EscalationView:
    return EscalationView(**record.__dict__)
