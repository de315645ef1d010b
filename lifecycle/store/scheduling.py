"""What the scheduler reads and writes: due deadlines and their claims, escalations and their notices,
obligation reports, traffic lights, and the scheduler's own small state.

Claiming. A tick first *claims* the deadlines whose next action has come, in a short transaction of its own:
``UPDATE … SET next_fire_at = <lease end> WHERE (project_id, id) IN (SELECT … FOR UPDATE SKIP LOCKED)
RETURNING …`` (on SQLite the write transaction's lock makes the plain statement the claim). A second
scheduler running the same statement sees 0 rows for what the first took ("losers see 0 rows", as Polar's
scheduler puts it). The claimed rows are then fired one project at a time through the ordinary service path,
which locks the project row first and writes the real next fire time; a claim whose holder died becomes due
again when its lease ends. The claim never waits for a project lock while holding deadline rows, so it
cannot deadlock with a transition (which locks the project, then writes its deadlines).

``next_fire_at`` on a deadline: NULL means "not scheduled yet" (a row written by a path that did not
schedule it): it is claimed once its ``due_at`` passes. :data:`NEVER` means nothing is left to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.engine.instance import Deadline

from .models import deadlines, definitions, events, projects
from .models_scheduling import NEVER, escalation_notices, escalations, obligation_reports, scheduler_state
from .projects import _deadline_values


@dataclass(frozen=True)
class DueRef:
    """A claimed (or, for a preview, merely due) deadline."""

    project_id: str
    deadline_id: str


@dataclass(frozen=True)
class EscalationRecord:
    """A stored escalation (see :class:`~lifecycle.store.models_scheduling.Escalation`)."""

    id: str
    project_id: str
    deadline_id: str
    level: int
    ladder: str | None
    title: str
    subject_kind: str
    subject_id: str
    deadline_title: str
    deadline_due_date: date
    due_at: datetime
    fired_at: datetime
    late_by_seconds: int
    days_late: int
    outcome: str
    notice_ids: list[str]


@dataclass(frozen=True)
class NoticeRecord:
    """A stored escalation notice (提示函 / 督办函)."""

    id: str
    escalation_id: str
    project_id: str
    deadline_id: str
    level: int
    kind: str
    recipient_role: str
    recipient_kind: str
    recipient_id: str
    recipient_title: str
    subject: str
    due_date: date
    days_late: int
    level_title: str
    text: str
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None


@dataclass(frozen=True)
class ReportRecord:
    """A stored obligation report."""

    id: str
    project_id: str
    obligation: str
    period: str
    data: dict[str, Any]
    due_at: datetime
    submitted_at: datetime
    submitted_by: str
    late: bool
    late_by_seconds: int


@dataclass(frozen=True)
class NoticeQuery:
    """Filters of the notice list; None means "any".

    Attributes:
        addressed_to: only notices addressed to one of these (kind, id) pairs; None: no such restriction
            (county-wide callers). An empty tuple matches nothing.
    """

    addressed_to: tuple[tuple[str, str], ...] | None = None
    recipient: str | None = None
    project_id: str | None = None
    level: int | None = None
    acknowledged: bool | None = None
    kind: str | None = None


def _fields(cls: Any, row: Any) -> Any:
    """A dataclass ``cls`` built from the columns of ``row`` named like its fields."""
    return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


# The SET clause comes from the parameters (next_fire_at).
_SCHEDULE = update(deadlines).where(
    deadlines.c.project_id == bindparam("where_project"), deadlines.c.id == bindparam("where_id")
)


_INSERT_ESCALATIONS = escalations.insert()
_INSERT_NOTICES = escalation_notices.insert()


class SchedulingRepository:
    """The scheduling area's queries within the session's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    # --- claiming ---------------------------------------------------------------------------------------

    def _due_conditions(self, now: datetime) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
        c = deadlines.c
        scheduled = and_(c.closed_at.is_(None), c.next_fire_at.is_not(None), c.next_fire_at <= now)
        unscheduled = and_(c.closed_at.is_(None), c.next_fire_at.is_(None), c.due_at <= now)
        return scheduled, unscheduled

    async def claim(self, now: datetime, lease_until: datetime, limit: int) -> list[DueRef]:
        """Claim up to ``limit`` open deadlines whose next action has come by ``now`` (or that were never
        scheduled and are due), earliest first: their ``next_fire_at`` moves to ``lease_until``, so no other
        claimer takes them until then. On PostgreSQL rows another transaction holds are skipped."""
        claimed: list[DueRef] = []
        c = deadlines.c
        for condition, order in zip(self._due_conditions(now), (c.next_fire_at, c.due_at), strict=True):
            room = limit - len(claimed)
            if room <= 0:
                break
            chosen = (
                select(c.project_id, c.id)
                .where(condition)
                .order_by(order)
                .limit(room)
                .with_for_update(skip_locked=True)
            )
            statement = (
                update(deadlines)
                .where(tuple_(c.project_id, c.id).in_(chosen))
                .values(next_fire_at=lease_until)
                .returning(c.project_id, c.id)
            )
            rows = await self.session.execute(statement)
            claimed.extend(DueRef(row.project_id, row.id) for row in rows)
        return claimed

    async def release_claims(self, after: datetime, until: datetime) -> int:
        """Make open deadlines whose next fire time lies in (``after``, ``until``] unscheduled again; how many."""
        c = deadlines.c
        result = await self.session.execute(
            update(deadlines)
            .where(c.closed_at.is_(None), c.next_fire_at.is_not(None), c.next_fire_at > after, c.next_fire_at <= until)
            .values(next_fire_at=None)
            .returning(c.id)
        )
        return len(result.all())

    async def due(self, now: datetime, limit: int) -> list[DueRef]:
        """Up to ``limit`` deadlines that :meth:`claim` would take, without claiming them (for previews)."""
        c = deadlines.c
        out: list[DueRef] = []
        for condition, order in zip(self._due_conditions(now), (c.next_fire_at, c.due_at), strict=True):
            rows = await self.session.execute(
                select(c.project_id, c.id).where(condition).order_by(order, c.project_id, c.id).limit(limit)
            )
            out.extend(DueRef(row.project_id, row.id) for row in rows)
        return out[:limit]

    async def schedule_many(self, times: Sequence[tuple[str, str, datetime | None]]) -> None:
        """Set the next fire time of deadlines (project id, deadline id, instant or None for NEVER), in one
        statement."""
        if times:
            rows = [{"where_project": p, "where_id": d, "next_fire_at": at or NEVER} for p, d, at in times]
            await self.session.execute(_SCHEDULE, rows)

    async def estimated_open(self, due_until: date | None, limit: int) -> list[DueRef]:
        """Open deadlines whose due date is estimated, due by ``due_until`` (None: any), earliest first."""
        c = deadlines.c
        # Written as the partial index's own predicate ("closed_at IS NULL AND estimated"), so that both
        # databases use it: the rows read are the few estimated ones, not every open deadline.
        statement = select(c.project_id, c.id).where(c.closed_at.is_(None), text("deadlines.estimated"))
        if due_until is not None:
            statement = statement.where(c.due_date <= due_until)
        rows = await self.session.execute(statement.order_by(c.due_date, c.project_id, c.id).limit(limit))
        return [DueRef(row.project_id, row.id) for row in rows]

    # --- escalations and notices ------------------------------------------------------------------------

    async def add_escalations(self, records: Sequence[EscalationRecord]) -> None:
        """Store escalations in one statement. A second row for the same (project, deadline, level) violates
        the unique constraint: the caller's transaction then fails whole (exactly once)."""
        if records:
            await self.session.execute(_INSERT_ESCALATIONS, [r.__dict__ for r in records])

    async def add_notices(self, records: Sequence[NoticeRecord]) -> None:
        """Store escalation notices in one statement."""
        if records:
            await self.session.execute(_INSERT_NOTICES, [r.__dict__ for r in records])

    async def escalations_of(self, project_id: str, deadline_id: str | None = None) -> list[EscalationRecord]:
        """A project's escalations (of one deadline), in the order they fired."""
        statement = select(escalations).where(escalations.c.project_id == project_id)
        if deadline_id is not None:
            statement = statement.where(escalations.c.deadline_id == deadline_id)
        rows = await self.session.execute(statement.order_by(escalations.c.fired_at, escalations.c.level))
        return [_fields(EscalationRecord, row) for row in rows]

    async def notices(
        self, query: NoticeQuery, *, after: tuple[datetime, str] | None, limit: int
    ) -> tuple[list[NoticeRecord], bool]:
        """Notices matching ``query``, newest first, after the key ``after``; and whether more follow."""
        n = escalation_notices.c
        where: list[ColumnElement[bool]] = []
        if query.addressed_to is not None:
            pairs = [and_(n.recipient_kind == kind, n.recipient_id == ident) for kind, ident in query.addressed_to]
            where.append(or_(*pairs) if pairs else false())
        if query.recipient is not None:
            where.append(n.recipient_id == query.recipient)
        if query.project_id is not None:
            where.append(n.project_id == query.project_id)
        if query.level is not None:
            where.append(n.level == query.level)
        if query.acknowledged is not None:
            where.append(n.acknowledged_at.is_not(None) if query.acknowledged else n.acknowledged_at.is_(None))
        if query.kind is not None:
            where.append(n.kind == query.kind)
        if after is not None:
            where.append(tuple_(n.created_at, n.id) < tuple_(literal(after[0], n.created_at.type), literal(after[1])))
        statement = select(escalation_notices).where(true(), *where).order_by(n.created_at.desc(), n.id.desc())
        rows = [_fields(NoticeRecord, row) for row in await self.session.execute(statement.limit(limit + 1))]
        return rows[:limit], len(rows) > limit

    async def notice(self, notice_id: str) -> NoticeRecord | None:
        row = (
            await self.session.execute(select(escalation_notices).where(escalation_notices.c.id == notice_id))
        ).first()
        return _fields(NoticeRecord, row) if row else None

    async def acknowledge(self, notice_id: str, by: str, at: datetime) -> None:
        await self.session.execute(
            update(escalation_notices)
            .where(escalation_notices.c.id == notice_id, escalation_notices.c.acknowledged_at.is_(None))
            .values(acknowledged_at=at, acknowledged_by=by)
        )

    # --- obligations ------------------------------------------------------------------------------------

    async def add_report(self, record: ReportRecord) -> None:
        """Store a report; a second one for the same (project, obligation, period) violates the unique
        constraint."""
        await self.session.execute(obligation_reports.insert().values(**record.__dict__))

    async def report(self, project_id: str, obligation: str, period: str) -> ReportRecord | None:
        r = obligation_reports.c
        row = (
            await self.session.execute(
                select(obligation_reports).where(
                    r.project_id == project_id, r.obligation == obligation, r.period == period
                )
            )
        ).first()
        return _fields(ReportRecord, row) if row else None

    async def reports(self, project_id: str, obligation: str) -> list[ReportRecord]:
        r = obligation_reports.c
        rows = await self.session.execute(
            select(obligation_reports)
            .where(r.project_id == project_id, r.obligation == obligation)
            .order_by(r.period.desc())
        )
        return [_fields(ReportRecord, row) for row in rows]

    async def state_changes(self, project_id: str) -> list[tuple[datetime, str]]:
        """When the project entered each state, oldest first (from its history)."""
        e = events.c
        rows = await self.session.execute(
            select(e.at, e.to_state)
            .where(e.project_id == project_id, e.subject_kind == "project", e.to_state.is_not(None))
            .order_by(e.seq)
        )
        return [(row.at, row.to_state) for row in rows]

    async def owing_projects(
        self,
        definition_key: str,
        definition_version: int,
        applies_in: Sequence[str],
        clock: str,
        obligation: str,
        period: str,
        due_at: datetime,
    ) -> list[str]:
        """Projects of the definition version that owe the period's report: in an ``applies_in`` state now
        and (by their history) at ``due_at``, with neither the report nor the period's deadline yet."""
        p, d, r, e = projects.c, deadlines.c, obligation_reports.c, events.c
        state_then = (
            select(e.to_state)
            .where(e.project_id == p.id, e.subject_kind == "project", e.to_state.is_not(None), e.at <= due_at)
            .order_by(e.seq.desc())
            .limit(1)
            .correlate(projects)
            .scalar_subquery()
        )
        statement = select(p.id).where(
            p.definition_key == definition_key,
            p.definition_version == definition_version,
            p.state.in_(list(applies_in)),
            ~exists().where(d.project_id == p.id, d.clock == clock),
            ~exists().where(r.project_id == p.id, r.obligation == obligation, r.period == period),
            state_then.in_(list(applies_in)),
        )
        return [row.id for row in await self.session.execute(statement.order_by(p.id))]

    async def insert_deadlines(self, rows: Sequence[tuple[str, Deadline, datetime | None]]) -> int:
        """Insert deadlines ``(project_id, deadline, next_fire_at)`` that do not exist yet (a row another
        sweep inserted first is left as it is); how many were inserted."""
        if not rows:
            return 0
        values = [{**_deadline_values(pid, d), "next_fire_at": at or NEVER} for pid, d, at in rows]
        insert = postgresql.insert(deadlines) if self.dialect == "postgresql" else sqlite.insert(deadlines)
        result = await self.session.execute(
            insert.values(values).on_conflict_do_nothing(index_elements=["project_id", "id"]).returning(deadlines.c.id)
        )
        return len(result.all())

    # --- traffic lights ---------------------------------------------------------------------------------

    async def set_light(
        self,
        project_id: str,
        color: str,
        reasons: list[dict[str, Any]],
        at: datetime,
        *,
        version: int | None = None,
    ) -> bool:
        """Store the project's light; with ``version``, only if the project is still at that version (a
        recomputation outside a change must not overwrite the light a newer change wrote)."""
        statement = update(projects).where(projects.c.id == project_id)
        if version is not None:
            statement = statement.where(projects.c.version == version)
        result = await self.session.execute(
            statement.values(light=color, light_reasons=reasons, light_at=at).returning(projects.c.id)
        )
        return result.first() is not None

    async def stale_lights(self, before: datetime, limit: int) -> list[tuple[str, int]]:
        """Projects whose light was computed before ``before`` (or never): ``(id, version)``, oldest first."""
        c = projects.c
        rows = await self.session.execute(
            select(c.id, c.version)
            .where(or_(c.light_at.is_(None), c.light_at < before))
            .order_by(c.light_at.nulls_first(), c.id)
            .limit(limit)
        )
        return [(row.id, row.version) for row in rows]

    # --- scheduler state --------------------------------------------------------------------------------

    async def state(self, key: str) -> dict[str, Any] | None:
        value = await self.session.scalar(select(scheduler_state.c.value).where(scheduler_state.c.key == key))
        return dict(value) if value is not None else None

    async def set_state(self, key: str, value: dict[str, Any], at: datetime) -> None:
        insert = postgresql.insert(scheduler_state) if self.dialect == "postgresql" else sqlite.insert(scheduler_state)
        await self.session.execute(
            insert.values(key=key, value=value, updated_at=at).on_conflict_do_update(
                index_elements=["key"], set_={"value": value, "updated_at": at}
            )
        )

    async def definition_versions(self) -> list[tuple[str, int]]:
        """Every published (key, version), for the obligations of each."""
        rows = await self.session.execute(
            select(definitions.c.key, definitions.c.version).order_by(definitions.c.key, definitions.c.version)
        )
        return [(row.key, row.version) for row in rows]

    async def count_escalations(self) -> int:
        return int(await self.session.scalar(select(func.count()).select_from(escalations)) or 0)
