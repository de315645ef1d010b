"""Projects and the aggregate each one owns: tasks, deficiency notices, commitments and deadlines.

The aggregate is read into the engine's dataclasses (:mod:`lifecycle.engine.instance`) and written back
from a :class:`~lifecycle.engine.instance.FireResult`: exactly the rows the engine says it opened, changed
or closed, plus the project row (state, fields, held-from state, version, derived phase and steps).

Locking. :meth:`ProjectRepository.lock` reads the project row with ``SELECT … FOR UPDATE`` on PostgreSQL,
so writers of one project queue on its row while writers of other projects go on in parallel. On SQLite the
write transaction already holds the database's write lock (``BEGIN IMMEDIATE``, see :mod:`.db`), and
``FOR UPDATE`` is not rendered. The project update is also guarded by the version read under the lock.

Project field values are stored as JSON (``lifecycle.engine.fields.to_json``: money as a decimal string,
dates as ISO text) and read back typed with the definition's field specs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    bindparam,
    delete,
    exists,
    false,
    literal,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.engine import fields as field_values
from lifecycle.engine.instance import (
    Commitment,
    Deadline,
    DeficiencyNotice,
    FireResult,
    Pause,
    ProjectInstance,
    Task,
)
from lifecycle.errors import StaleVersion
from lifecycle.spec.models import Definition

from . import driver
from .children import CHILDREN_OF_MANY, CHILDREN_OF_ONE, split_rows
from .models import commitments, deadlines, deficiency_notices, project_steps, projects, tasks
from .models_scheduling import NEVER
from .types import UTCDateTime

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of a project's first event (and the chain head of a project without events)."""

MIRRORED_FIELDS = ("total_investment", "planned_start", "planned_end")
"""Header columns that follow the project field of the same name when the definition declares one, so that
a gate or clock reading the field and a list filtering on the column see the same value."""

DefinitionFor = Callable[[str, int], Awaitable[Definition]]
"""How a repository obtains the definition (key, version) a project runs on."""


@dataclass(frozen=True)
class ProjectHeader:
    """The descriptive columns of a new project (项目基本信息).

    Attributes:
        code: 项目代码 from the national online approval platform (24 characters), once assigned.
        source_category: 项目范围 (规划项目 / 年度重大助推项目 / 国家新增专项 / 招商引资签约项目).
        lead_leader: 牵头县领导. lead_unit: 牵头责任单位. implementing_unit: 项目实施单位 (业主).
        total_investment: 总投资, 万元.
    """

    name: str
    source_category: str
    lead_unit: str
    created_by: str
    code: str | None = None
    lead_leader: str | None = None
    implementing_unit: str | None = None
    township: str | None = None
    total_investment: Decimal | None = None
    planned_start: date | None = None
    planned_end: date | None = None


HEADER_COLUMNS = (
    "code",
    "name",
    "source_category",
    "lead_leader",
    "lead_unit",
    "implementing_unit",
    "township",
    "total_investment",
    "planned_start",
    "planned_end",
)
"""The header columns a caller may change after creation."""


@dataclass(frozen=True)
class ProjectRecord:
    """A project row as stored (fields as JSON), read without its aggregate."""

    id: str
    code: str | None
    name: str
    definition_key: str
    definition_version: int
    state: str
    phase: str | None
    source_category: str
    lead_leader: str | None
    lead_unit: str
    implementing_unit: str | None
    township: str | None
    total_investment: Decimal | None
    planned_start: date | None
    planned_end: date | None
    fields: dict[str, Any]
    held_from: str | None
    light: str | None
    version: int
    event_seq: int
    event_hash: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    light_reasons: list[dict[str, Any]] | None = None
    light_at: datetime | None = None


_RECORD_COLUMNS = tuple(f.name for f in fields(ProjectRecord))


def _project(row: Any) -> ProjectRecord:
    # Every query of projects selects _RECORD_COLUMNS in this order (_SELECT_PROJECT).
    record = ProjectRecord(*row)
    return record if isinstance(record.fields, dict) else replace(record, fields=dict(record.fields or {}))


@dataclass(frozen=True)
class Visibility:
    """Which projects a caller may see, as the store understands it (the services decide it from roles).

    Attributes:
        everything: county-wide callers see every project.
        units: projects whose lead unit or implementing unit is one of these are visible.
        departments: projects with an item assigned to one of these departments are visible.
    """

    everything: bool = False
    units: frozenset[str] = frozenset()
    departments: frozenset[str] = frozenset()

    def clause(self) -> ColumnElement[bool]:
        """The SQL condition on ``projects`` for this visibility."""
        if self.everything:
            return true()
        parts: list[ColumnElement[bool]] = []
        if self.units:
            parts.append(projects.c.lead_unit.in_(sorted(self.units)))
            parts.append(projects.c.implementing_unit.in_(sorted(self.units)))
        if self.departments:
            parts.append(
                exists().where(tasks.c.project_id == projects.c.id, tasks.c.department.in_(sorted(self.departments)))
            )
        return or_(*parts) if parts else false()


@dataclass(frozen=True)
class ProjectQuery:
    """Filters for listing projects; None means "any".

    Attributes:
        unit: lead unit or implementing unit.
        leader: lead county leader.
        overdue: True — has an open deadline due before ``now``; False — has none.
        q: text contained in the name or the code.
    """

    state: str | None = None
    phase: str | None = None
    step: int | None = None
    unit: str | None = None
    leader: str | None = None
    overdue: bool | None = None
    definition_key: str | None = None
    light: str | None = None
    q: str | None = None
    now: datetime | None = None


def _filters(query: ProjectQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    c = projects.c
    for name in ("state", "phase", "definition_key", "light"):
        value = getattr(query, name)
        if value is not None:
            where.append(c[name] == value)
    if query.leader is not None:
        where.append(c.lead_leader == query.leader)
    if query.unit is not None:
        where.append(or_(c.lead_unit == query.unit, c.implementing_unit == query.unit))
    if query.step is not None:
        where.append(exists().where(project_steps.c.project_id == c.id, project_steps.c.step == query.step))
    if query.overdue is not None:
        if query.now is None:
            raise ValueError("the overdue filter needs now")
        overdue = exists().where(
            deadlines.c.project_id == c.id, deadlines.c.closed_at.is_(None), deadlines.c.due_at < query.now
        )
        where.append(overdue if query.overdue else ~overdue)
    if query.q:
        where.append(or_(c.name.icontains(query.q, autoescape=True), c.code.icontains(query.q, autoescape=True)))
    return where


# --- rows <-> engine dataclasses ------------------------------------------------------------------------------


def _task_values(project_id: str, task: Task, department: str | None) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "id": task.id,
        "group_id": task.group,
        "item_id": task.item,
        "machine": task.machine,
        "department": department,
        "state": task.state,
        "submission": task.submission,
        "opened_at": task.opened_at,
        "closed_at": task.closed_at,
        "data": _json_dict(task.data),
        "version": task.version,
    }


def _task(row: Any) -> Task:
    return Task(
        id=row.id,
        group=row.group_id,
        item=row.item_id,
        machine=row.machine,
        state=row.state,
        opened_at=row.opened_at,
        submission=row.submission,
        closed_at=row.closed_at,
        data=dict(row.data or {}),
        version=row.version,
    )


def _notice_values(project_id: str, notice: DeficiencyNotice) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "id": notice.id,
        "task_id": notice.task_id,
        "submission": notice.submission,
        "machine": notice.machine,
        "state": notice.state,
        "missing": list(notice.missing),
        "cure_date": notice.cure_date,
        "issued_at": notice.issued_at,
        "issued_by": notice.issued_by,
        "closed_at": notice.closed_at,
        "version": notice.version,
    }


def _notice(row: Any) -> DeficiencyNotice:
    return DeficiencyNotice(
        id=row.id,
        task_id=row.task_id,
        submission=row.submission,
        machine=row.machine,
        state=row.state,
        missing=list(row.missing),
        cure_date=row.cure_date,
        issued_at=row.issued_at,
        issued_by=row.issued_by,
        closed_at=row.closed_at,
        version=row.version,
    )


def _commitment_values(project_id: str, commitment: Commitment) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "id": commitment.id,
        "task_id": commitment.task_id,
        "text": commitment.text,
        "state": commitment.state,
        "recorded_at": commitment.recorded_at,
        "recorded_by": commitment.recorded_by,
        "due_date": commitment.due_date,
        "verified_at": commitment.verified_at,
        "verified_by": commitment.verified_by,
        "note": commitment.note,
    }


def _commitment(row: Any) -> Commitment:
    return Commitment(
        id=row.id,
        task_id=row.task_id,
        text=row.text,
        recorded_at=row.recorded_at,
        recorded_by=row.recorded_by,
        state=row.state,
        due_date=row.due_date,
        verified_at=row.verified_at,
        verified_by=row.verified_by,
        note=row.note,
    )


def _deadline_values(project_id: str, deadline: Deadline) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "id": deadline.id,
        "subject_kind": deadline.subject_kind,
        "subject_id": deadline.subject_id,
        "clock": deadline.clock,
        "title": deadline.title,
        "started_on": deadline.started_on,
        "due_date": deadline.due_date,
        "due_at": deadline.due_at,
        "estimated": deadline.estimated,
        "ladder": deadline.ladder,
        "on_expiry": deadline.on_expiry,
        "pauses": [
            {"start": p.start.isoformat(), "end": p.end.isoformat() if p.end else None} for p in deadline.pauses
        ],
        "closed_at": deadline.closed_at,
        "level": deadline.level,
        "fired_at": deadline.fired_at,
    }


def deadline_from_row(row: Any) -> Deadline:
    """A deadline row as the engine's :class:`~lifecycle.engine.instance.Deadline`."""
    return Deadline(
        id=row.id,
        subject_kind=row.subject_kind,
        subject_id=row.subject_id,
        clock=row.clock,
        title=row.title,
        started_on=row.started_on,
        due_date=row.due_date,
        due_at=row.due_at,
        estimated=row.estimated,
        ladder=row.ladder,
        on_expiry=row.on_expiry,
        pauses=[
            Pause(start=date.fromisoformat(p["start"]), end=date.fromisoformat(p["end"]) if p["end"] else None)
            for p in row.pauses or []
        ],
        closed_at=row.closed_at,
        level=row.level,
        fired_at=row.fired_at,
    )


def _json_dict(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: field_values.to_json(value) for name, value in values.items()}


def fields_from_json(definition: Definition, stored: Mapping[str, Any]) -> dict[str, Any]:
    """Stored JSON field values, typed by the definition's field specs (``Decimal``, ``date``…).

    A value that no longer fits its spec (which a published, immutable definition should make impossible)
    is kept as stored rather than lost.
    """
    specs = definition.lookup("fields")
    out: dict[str, Any] = {}
    for name, value in stored.items():
        spec = specs.get(name)
        if spec is None:
            out[name] = value
            continue
        typed, problem = field_values.coerce(spec, value, ("fields", name))
        out[name] = value if problem is not None else typed
    return out


def _derived(definition: Definition, state_id: str) -> tuple[str | None, list[int]]:
    state = definition.lookup("states").get(state_id)
    if state is None:
        return None, []
    return state.phase, sorted(set(state.steps))


def _department(definition: Definition, task: Task) -> str | None:
    group = definition.lookup("task_groups").get(task.group)
    if group is None:
        return None
    return next((item.department for item in group.items if item.id == task.item), None)


def _mirrored(instance: ProjectInstance) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in MIRRORED_FIELDS:
        if name not in instance.fields:
            continue
        value = instance.fields[name]
        # Only a value of the column's own type is mirrored: a definition may declare a field of the same
        # name with another type, and then the column is simply not tied to it.
        wanted = Decimal if name == "total_investment" else date
        if value is None or isinstance(value, wanted):
            out[name] = value
    return out


# --- prebuilt statements ----------------------------------------------------------------------------------
# Built once: a statement object made per call costs more Python than its round trip (construction and cache
# key), and these run on every request and every scheduler fire.

_SELECT_PROJECT = select(*(projects.c[name] for name in _RECORD_COLUMNS))
_GET = _SELECT_PROJECT.where(projects.c.id == bindparam("project_id"))
_LOCK = _GET.with_for_update()
_LOCK_WITH: dict[tuple[int, ...], tuple[tuple[ColumnElement[Any], ...], Select[Any]]] = {(): ((), _LOCK)}


def _lock_statement(reads: tuple[ColumnElement[Any], ...], guard: ColumnElement[bool] | None = None) -> Select[Any]:
    """:data:`_LOCK` with ``reads`` as more columns and ``guard`` as one more condition (built once per
    combination; the objects are kept, so their ids stay their own). ``FOR UPDATE OF projects``: the
    subqueries' tables are read, not locked."""
    key = (*map(id, reads), id(guard))
    try:
        return _LOCK_WITH[key][1]
    except KeyError:
        statement = _GET.add_columns(*reads)
        if guard is not None:
            statement = statement.where(guard)
        statement = statement.with_for_update(of=projects)
        _LOCK_WITH[key] = ((*reads, *([guard] if guard is not None else [])), statement)
        return statement


# Many rows locked in one statement, in id order, so two lockers of overlapping sets cannot deadlock.
_LOCK_MANY = (
    _SELECT_PROJECT.where(projects.c.id.in_(bindparam("project_ids", expanding=True)))
    .order_by(projects.c.id)
    .with_for_update()
)
_DELETE_STEP = delete(project_steps).where(
    project_steps.c.project_id == bindparam("where_project"), project_steps.c.step == bindparam("where_step")
)
_UPDATE_PROJECT = update(projects).where(
    projects.c.id == bindparam("where_id"), projects.c.version == bindparam("where_version")
)
_UPDATE_PROJECT_CHECKED = _UPDATE_PROJECT.returning(projects.c.id)
_INSERT = {
    table.name: table.insert() for table in (projects, project_steps, tasks, deficiency_notices, commitments, deadlines)
}


def _update_child(table: Any) -> Any:
    return update(table).where(table.c.project_id == bindparam("where_project"), table.c.id == bindparam("where_id"))


_UPDATE_CHILD = {table.name: _update_child(table) for table in (tasks, deficiency_notices, commitments, deadlines)}


@dataclass(frozen=True)
class AggregateWrite:
    """What one change writes for one project (see :meth:`ProjectRepository.save_many`).

    Attributes:
        before: the project row as read under the lock.
        values: the project columns to store (:func:`updated_values`, plus what rides along: the chain
            head, the traffic light).
        instance: the aggregate after the change.
        result: what the engine opened, changed and closed.
        fire_times: the next fire time of deadlines (id → instant; None: nothing left to fire), stored with
            the deadline rows this change writes.
    """

    before: ProjectRecord
    values: Mapping[str, Any]
    instance: ProjectInstance
    result: FireResult
    definition: Definition
    fire_times: Mapping[str, datetime | None] = field(default_factory=dict)


def updated_values(
    instance: ProjectInstance, definition: Definition, now: datetime, header: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The project columns a change that left the aggregate as ``instance`` stores: state, derived phase,
    fields, held-from state, version, mirrored header columns, ``header`` changes and ``updated_at``."""
    unknown = set(header or {}) - set(HEADER_COLUMNS)
    if unknown:
        raise ValueError(f"not header columns: {sorted(unknown)}")
    phase, _ = _derived(definition, instance.state)
    return {
        **dict(header or {}),
        **_mirrored(instance),
        "state": instance.state,
        "phase": phase,
        "fields": _json_dict(instance.fields),
        "held_from": instance.held_from,
        "version": instance.version,
        "updated_at": now,
    }


def new_values(
    header: ProjectHeader, instance: ProjectInstance, definition: Definition, now: datetime
) -> dict[str, Any]:
    """Every column of a new project's row (as :meth:`lifecycle.engine.core.Engine.start` made it)."""
    phase, _ = _derived(definition, instance.state)
    return {
        **{name: getattr(header, name) for name in HEADER_COLUMNS},
        **_mirrored(instance),
        "id": instance.id,
        "definition_key": instance.definition_key,
        "definition_version": instance.definition_version,
        "state": instance.state,
        "phase": phase,
        "fields": _json_dict(instance.fields),
        "held_from": instance.held_from,
        "light": None,
        "light_reasons": None,
        "light_at": None,
        "version": instance.version,
        "event_seq": 0,
        "event_hash": GENESIS_HASH,
        "created_at": now,
        "created_by": header.created_by,
        "updated_at": now,
    }


_RECORD_NAMES = frozenset(_RECORD_COLUMNS)


def record_of(values: Mapping[str, Any], before: ProjectRecord | None = None) -> ProjectRecord:
    """The project row as it reads once ``values`` are stored (over ``before``, for an update)."""
    if before is None:
        return ProjectRecord(**{name: values[name] for name in _RECORD_COLUMNS})
    return replace(before, **{name: value for name, value in values.items() if name in _RECORD_NAMES})


class ProjectRepository:
    """Projects and their aggregates within the session's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- reading ----------------------------------------------------------------------------------------

    async def get(self, project_id: str) -> ProjectRecord | None:
        """The project row ``project_id`` without locking it, or None."""
        found = await driver.rows(self.session, _GET, {"project_id": project_id})
        return _project(found[0]) if found else None

    async def lock(self, project_id: str) -> ProjectRecord | None:
        """The project row, locked for the rest of the transaction (``FOR UPDATE`` on PostgreSQL), or None."""
        found = await driver.rows(self.session, _LOCK, {"project_id": project_id})
        return _project(found[0]) if found else None

    async def lock_reading(
        self,
        project_id: str,
        reads: tuple[ColumnElement[Any], ...],
        *,
        guard: ColumnElement[bool] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> tuple[ProjectRecord | None, tuple[Any, ...]]:
        """:meth:`lock`, and the values of ``reads`` (scalar subqueries, always the same objects: the statement
        is built once per combination) read by the same statement; () when there is no such project. A
        ``guard`` (a condition, always the same object) is evaluated on the project's row before its lock is
        waited for: when it is false, nothing is locked or read, as if there were no such project. ``params``
        are the bound parameters of ``reads`` and ``guard``."""
        values = {"project_id": project_id, **params} if params else {"project_id": project_id}
        found = await driver.rows(self.session, _lock_statement(reads, guard), values)
        if not found:
            return None, ()
        row = found[0]
        return _project(row[: len(_RECORD_COLUMNS)]), tuple(row[len(_RECORD_COLUMNS) :])

    async def lock_many(self, project_ids: Iterable[str]) -> dict[str, ProjectRecord]:
        """The rows of those of ``project_ids`` that exist, locked (in id order) for the rest of the
        transaction."""
        wanted = sorted(set(project_ids))
        if not wanted:
            return {}
        rows = await self.session.execute(_LOCK_MANY, {"project_ids": wanted})
        return {record.id: record for record in map(_project, rows)}

    async def is_visible(self, project_id: str, visibility: Visibility) -> bool:
        """Whether the project exists and ``visibility`` lets its holder see it."""
        found = await self.session.scalar(select(projects.c.id).where(projects.c.id == project_id, visibility.clause()))
        return found is not None

    async def code_taken(self, code: str, *, other_than: str | None = None) -> bool:
        """Whether another project already has 项目代码 ``code``."""
        query = select(projects.c.id).where(projects.c.code == code)
        if other_than is not None:
            query = query.where(projects.c.id != other_than)
        return (await self.session.scalar(query.limit(1))) is not None

    async def instance(self, record: ProjectRecord, definition: Definition) -> ProjectInstance:
        """The whole aggregate of ``record`` as the engine's :class:`ProjectInstance` (its child rows in one
        query, see :mod:`.children`)."""
        children = split_rows(await driver.rows(self.session, CHILDREN_OF_ONE, {"project_id": record.id}))
        return _instance(record, definition, children.get(record.id, {}))

    async def instances(self, records: Sequence[tuple[ProjectRecord, Definition]]) -> dict[str, ProjectInstance]:
        """The aggregates of several projects (id → instance), in one query whatever their number."""
        if not records:
            return {}
        params = {"project_ids": sorted({record.id for record, _ in records})}
        rows = split_rows(await self.session.execute(CHILDREN_OF_MANY, params))
        return {record.id: _instance(record, definition, rows.get(record.id, {})) for record, definition in records}

    async def load(
        self, project_id: str, definition_for: DefinitionFor
    ) -> tuple[ProjectRecord, ProjectInstance] | None:
        """The project and its aggregate, unlocked (for reading), or None."""
        record = await self.get(project_id)
        if record is None:
            return None
        definition = await definition_for(record.definition_key, record.definition_version)
        return record, await self.instance(record, definition)

    async def load_for_update(
        self, project_id: str, definition_for: DefinitionFor
    ) -> tuple[ProjectRecord, ProjectInstance] | None:
        """The project, locked (see :meth:`lock`), and its aggregate, or None."""
        record = await self.lock(project_id)
        if record is None:
            return None
        definition = await definition_for(record.definition_key, record.definition_version)
        return record, await self.instance(record, definition)

    async def departments(self, project_id: str) -> set[str]:
        """The departments the project's items are assigned to."""
        rows = await self.session.execute(
            select(tasks.c.department).where(tasks.c.project_id == project_id, tasks.c.department.is_not(None))
        )
        return {row.department for row in rows}

    async def list(
        self,
        query: ProjectQuery,
        visibility: Visibility,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> tuple[list[ProjectRecord], bool]:
        """Visible projects matching ``query`` in (created_at, id) order, starting after the key ``after``;
        and whether more follow."""
        statement = _SELECT_PROJECT.where(visibility.clause(), *_filters(query))
        if after is not None:
            created_at, project_id = after
            key = tuple_(literal(created_at, UTCDateTime()), literal(project_id, String()))
            statement = statement.where(tuple_(projects.c.created_at, projects.c.id) > key)
        statement = statement.order_by(projects.c.created_at, projects.c.id).limit(limit + 1)
        rows = [_project(row) for row in await self.session.execute(statement)]
        return rows[:limit], len(rows) > limit

    # --- writing ----------------------------------------------------------------------------------------

    async def insert(
        self,
        header: ProjectHeader,
        instance: ProjectInstance,
        definition: Definition,
        now: datetime,
        *,
        values: Mapping[str, Any] | None = None,
        fire_times: Mapping[str, datetime | None] | None = None,
    ) -> ProjectRecord:
        """Store a new project (as :meth:`lifecycle.engine.core.Engine.start` made it) with its whole
        aggregate. ``values`` overrides columns of :func:`new_values` (the chain head, the light);
        ``fire_times`` gives its deadlines' next fire times."""
        row = {**new_values(header, instance, definition, now), **dict(values or {})}
        await driver.execute(self.session, _INSERT[projects.name], row)
        _, steps = _derived(definition, instance.state)
        await self._write_steps(added=[(instance.id, step) for step in steps], removed=[])
        write = AggregateWrite(
            before=record_of(row), values=row, instance=instance, result=FireResult(state=instance.state),
            definition=definition, fire_times=fire_times or {},
        )  # fmt: skip
        await self._insert_children(
            [write],
            tasks_of=lambda w: w.instance.tasks,
            notices_of=lambda w: w.instance.notices,
            commitments_of=lambda w: w.instance.commitments,
            deadlines_of=lambda w: w.instance.deadlines,
        )
        return record_of(row)

    async def save(
        self,
        record: ProjectRecord,
        instance: ProjectInstance,
        result: FireResult,
        definition: Definition,
        now: datetime,
        *,
        header: Mapping[str, Any] | None = None,
    ) -> ProjectRecord:
        """Write what one engine call changed (see :meth:`save_many`); returns the project row as now stored.

        Raises:
            StaleVersion: the row's version is no longer the one ``record`` was read with.
        """
        values = updated_values(instance, definition, now, header)
        await self.save_many([AggregateWrite(record, values, instance, result, definition)])
        return record_of(values, record)

    async def save_many(self, writes: Sequence[AggregateWrite]) -> None:
        """Write what changes of one or more projects changed, in a few statements for all of them: each
        project row (its ``values``, guarded by the version it was read with), its step rows that changed,
        and exactly the tasks, notices, commitments and deadlines each ``result`` lists.

        Raises:
            StaleVersion: a project's version is no longer the one it was read with (changed outside this
                transaction's lock — never the case when the caller locked it). With several writes the
                guard is the lock alone: the rows are written in one batch that reports no per-row count.
        """
        if not writes:
            return
        # The step rows mirror the state's steps: only the difference is written.
        added: list[tuple[str, int]] = []
        removed: list[tuple[str, int]] = []
        for write in writes:
            if write.before.state != write.instance.state:
                _, before = _derived(write.definition, write.before.state)
                _, after = _derived(write.definition, write.instance.state)
                added += [(write.before.id, step) for step in after if step not in before]
                removed += [(write.before.id, step) for step in before if step not in after]
        await self._write_steps(added=added, removed=removed)

        # The engine reports recorded and verified commitments alike: which are new is the store's question.
        stored_commitments: dict[str, set[str]] = {}
        for write in writes:
            if write.result.commitments_changed:
                stored_commitments[write.before.id] = await self._existing(
                    commitments, write.before.id, write.result.commitments_changed
                )

        def new_commitments(w: AggregateWrite) -> list[str]:
            stored = stored_commitments.get(w.before.id, set())
            return [cid for cid in _ordered(w.result.commitments_changed) if cid not in stored]

        await self._insert_children(
            writes,
            tasks_of=lambda w: _ordered(w.result.tasks_opened),
            notices_of=lambda w: _ordered(w.result.notices_opened),
            commitments_of=new_commitments,
            deadlines_of=lambda w: _ordered(w.result.deadlines_opened),
        )
        changed: dict[str, list[Mapping[str, Any]]] = {}
        for write in writes:
            pid, instance, result = write.before.id, write.instance, write.result
            opened_tasks, opened_notices = set(result.tasks_opened), set(result.notices_opened)
            opened_deadlines = set(result.deadlines_opened)
            for task_id in _ordered(result.tasks_changed):
                if task_id not in opened_tasks:
                    # The department was fixed when the task opened; the row keeps it.
                    row = _task_values(pid, instance.tasks[task_id], None)
                    del row["department"]
                    changed.setdefault(tasks.name, []).append(row)
            for notice_id in _ordered(result.notices_changed):
                if notice_id not in opened_notices:
                    changed.setdefault(deficiency_notices.name, []).append(
                        _notice_values(pid, instance.notices[notice_id])
                    )
            stored = stored_commitments.get(pid, set())
            for commitment_id in _ordered(result.commitments_changed):
                if commitment_id in stored:
                    changed.setdefault(commitments.name, []).append(
                        _commitment_values(pid, instance.commitments[commitment_id])
                    )
            # A deadline opened and closed by the same call was inserted in its final form.
            for deadline_id in _ordered([*result.deadlines_changed, *result.deadlines_closed]):
                if deadline_id not in opened_deadlines:
                    changed.setdefault(deadlines.name, []).append(
                        _deadline_row(pid, instance.deadlines[deadline_id], write.fire_times)
                    )
        for table_name, rows in changed.items():
            await self._update_children(table_name, rows)
        # Last: inside driver.deferred() the checked update carries the rows written above to the server.
        await self._update_projects(writes)

    # --- internals --------------------------------------------------------------------------------------

    async def _update_projects(self, writes: Sequence[AggregateWrite]) -> None:
        if len(writes) == 1:
            write = writes[0]
            params = {**write.values, "where_id": write.before.id, "where_version": write.before.version}
            if not await driver.rows(self.session, _UPDATE_PROJECT_CHECKED, params):
                current = await self.session.scalar(select(projects.c.version).where(projects.c.id == write.before.id))
                raise StaleVersion("project", write.before.id, str(write.before.version), str(current))
            return
        for group in _by_columns(
            {**w.values, "where_id": w.before.id, "where_version": w.before.version} for w in writes
        ):
            await driver.execute_many(self.session, _UPDATE_PROJECT, group)

    async def _update_children(self, table_name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        statement = _UPDATE_CHILD[table_name]
        params = [
            {"where_project": row["project_id"], "where_id": row["id"]}
            | {k: v for k, v in row.items() if k not in ("project_id", "id")}
            for row in rows
        ]
        for group in _by_columns(params):
            await driver.execute_many(self.session, statement, group)

    async def _write_steps(self, *, added: Sequence[tuple[str, int]], removed: Sequence[tuple[str, int]]) -> None:
        gone = [{"where_project": project, "where_step": step} for project, step in removed]
        await driver.execute_many(self.session, _DELETE_STEP, gone)
        new = [{"project_id": project, "step": step} for project, step in added]
        await driver.execute_many(self.session, _INSERT[project_steps.name], new)

    async def _insert_children(
        self,
        writes: Sequence[AggregateWrite],
        *,
        tasks_of: Callable[[AggregateWrite], Iterable[str]],
        notices_of: Callable[[AggregateWrite], Iterable[str]],
        commitments_of: Callable[[AggregateWrite], Iterable[str]],
        deadlines_of: Callable[[AggregateWrite], Iterable[str]],
    ) -> None:
        task_rows, notice_rows, commitment_rows, deadline_rows = [], [], [], []
        for w in writes:
            pid, instance = w.before.id, w.instance
            task_rows += [
                _task_values(pid, instance.tasks[i], _department(w.definition, instance.tasks[i])) for i in tasks_of(w)
            ]
            notice_rows += [_notice_values(pid, instance.notices[i]) for i in notices_of(w)]
            commitment_rows += [_commitment_values(pid, instance.commitments[i]) for i in commitments_of(w)]
            deadline_rows += [_deadline_row(pid, instance.deadlines[i], w.fire_times) for i in deadlines_of(w)]
        # Tasks first: notices and commitments refer to them.
        for table, rows in (
            (tasks, task_rows),
            (deficiency_notices, notice_rows),
            (commitments, commitment_rows),
        ):
            await driver.execute_many(self.session, _INSERT[table.name], rows)
        for group in _by_columns(deadline_rows):
            await driver.execute_many(self.session, _INSERT[deadlines.name], group)

    async def _existing(self, table: Any, project_id: str, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        rows = await self.session.execute(
            select(table.c.id).where(table.c.project_id == project_id, table.c.id.in_(sorted(set(ids))))
        )
        return {cast(str, row.id) for row in rows}


def _instance(record: ProjectRecord, definition: Definition, rows: Mapping[str, Iterable[Any]]) -> ProjectInstance:
    """The aggregate of ``record`` from its child rows by table (:func:`.children.split_rows`)."""
    return ProjectInstance(
        id=record.id,
        definition_key=record.definition_key,
        definition_version=record.definition_version,
        state=record.state,
        fields=fields_from_json(definition, record.fields),
        held_from=record.held_from,
        tasks={t.id: t for t in map(_task, rows.get("tasks", ()))},
        notices={n.id: n for n in map(_notice, rows.get("notices", ()))},
        commitments={c.id: c for c in map(_commitment, rows.get("commitments", ()))},
        deadlines={d.id: d for d in map(deadline_from_row, rows.get("deadlines", ()))},
        version=record.version,
    )


def _deadline_row(project_id: str, deadline: Deadline, fire_times: Mapping[str, datetime | None]) -> dict[str, Any]:
    """A deadline's row; with its next fire time when the change computed one (None: nothing left to fire,
    stored as the far-future ``NEVER``), else without touching it."""
    row = _deadline_values(project_id, deadline)
    if deadline.id in fire_times:
        row["next_fire_at"] = fire_times[deadline.id] or NEVER
    return row


def _by_columns(rows: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``rows`` grouped by their set of keys, in first-seen order: an executemany needs the same columns in
    every row."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    return list(groups.values())


def _ordered(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))
