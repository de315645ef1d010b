"""Workflow administration in the database: definition events, activation, migration runs, and rebinding a
project to another definition version.

Repositories work inside the caller's transaction (they never commit). A project's move to another version
is written by :class:`~lifecycle.store.projects.ProjectRepository` (what the engine changed) plus
:meth:`MigrationRepository.rebind` and :meth:`MigrationRepository.drop` (what only a migration changes: the
definition version, the derived steps, item departments, rows of items that no longer exist), and its outcome
row, all in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .models import commitments, deadlines, deficiency_notices, definitions, project_steps, projects, tasks
from .models_workflows import migration_outcomes, migration_runs, workflow_events


@dataclass(frozen=True)
class WorkflowEventRecord:
    """A stored definition-level event."""

    id: int
    event_id: str
    kind: str
    definition_key: str
    version: int | None
    actor: str
    at: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class MigrationRunRecord:
    """A migration run as stored."""

    id: str
    definition_key: str
    from_version: int
    to_version: int
    state_map: dict[str, str]
    selection: dict[str, Any]
    status: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class OutcomeRecord:
    """What a run did (or is to do) with one project."""

    run_id: str
    project_id: str
    seq: int
    status: str
    from_state: str
    to_state: str | None
    blockers: list[dict[str, Any]]
    detail: dict[str, Any]
    updated_at: datetime | None


@dataclass(frozen=True)
class SelectedProject:
    """A project a migration run selected: its id and state when selected."""

    id: str
    state: str


def _run(row: Any) -> MigrationRunRecord:
    return MigrationRunRecord(
        id=row.id,
        definition_key=row.definition_key,
        from_version=row.from_version,
        to_version=row.to_version,
        state_map=dict(row.state_map or {}),
        selection=dict(row.selection or {}),
        status=row.status,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )


def _outcome(row: Any) -> OutcomeRecord:
    return OutcomeRecord(
        run_id=row.run_id,
        project_id=row.project_id,
        seq=row.seq,
        status=row.status,
        from_state=row.from_state,
        to_state=row.to_state,
        blockers=list(row.blockers or []),
        detail=dict(row.detail or {}),
        updated_at=row.updated_at,
    )


def _event(row: Any) -> WorkflowEventRecord:
    return WorkflowEventRecord(
        id=row.id,
        event_id=row.event_id,
        kind=row.kind,
        definition_key=row.definition_key,
        version=row.version,
        actor=row.actor,
        at=row.at,
        data=dict(row.data or {}),
    )


class WorkflowEventRepository:
    """Definition-level events (append-only) and which version of a key is active."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def append(
        self, kind: str, definition_key: str, version: int | None, actor: str, at: datetime, data: Mapping[str, Any]
    ) -> WorkflowEventRecord:
        """Store a new event (its ``event_id`` is a fresh UUID)."""
        event_id = str(uuid.uuid4())
        result = await self.session.execute(
            workflow_events.insert()
            .values(
                event_id=event_id,
                kind=kind,
                definition_key=definition_key,
                version=version,
                actor=actor,
                at=at,
                data=dict(data),
            )
            .returning(workflow_events.c.id)
        )
        return WorkflowEventRecord(
            int(result.scalar_one()), event_id, kind, definition_key, version, actor, at, dict(data)
        )

    async def list(
        self, definition_key: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[WorkflowEventRecord]:
        """Events after ``after_id`` (of one key, or all), oldest first."""
        query = select(workflow_events).where(workflow_events.c.id > after_id)
        if definition_key is not None:
            query = query.where(workflow_events.c.definition_key == definition_key)
        rows = await self.session.execute(query.order_by(workflow_events.c.id).limit(limit))
        return [_event(row) for row in rows]

    async def activate(self, definition_key: str, version: int) -> bool:
        """Make ``version`` the active version of ``definition_key`` (the previous one stops being active);
        False if there is no such version."""
        found = await self.session.scalar(
            select(definitions.c.version).where(definitions.c.key == definition_key, definitions.c.version == version)
        )
        if found is None:
            return False
        # Deactivate first: the partial unique index allows one active version per key at any moment.
        await self.session.execute(
            update(definitions)
            .where(
                definitions.c.key == definition_key, definitions.c.active.is_(True), definitions.c.version != version
            )
            .values(active=False)
        )
        await self.session.execute(
            update(definitions)
            .where(definitions.c.key == definition_key, definitions.c.version == version)
            .values(active=True)
        )
        return True

    async def lock_key(self, definition_key: str) -> None:
        """Serialise publishers of one key: lock its version rows (PostgreSQL ``FOR UPDATE``; on SQLite the
        write transaction already holds the database's write lock)."""
        await self.session.execute(
            select(definitions.c.version).where(definitions.c.key == definition_key).with_for_update()
        )

    async def projects_on(self, definition_key: str) -> dict[int, int]:
        """Version → number of projects running on it, for ``definition_key``."""
        rows = await self.session.execute(
            select(projects.c.definition_version, func.count())
            .where(projects.c.definition_key == definition_key)
            .group_by(projects.c.definition_version)
        )
        return {int(version): int(count) for version, count in rows}


class MigrationRepository:
    """Migration runs, their outcome rows, and the writes only a migration makes to a project."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- selecting projects -----------------------------------------------------------------------------

    async def select_projects(
        self,
        definition_key: str,
        version: int,
        *,
        project_ids: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        units: Sequence[str] | None = None,
    ) -> list[SelectedProject]:
        """The projects on (``definition_key``, ``version``) matching every filter given (``units``: lead or
        implementing unit), oldest first."""
        query = select(projects.c.id, projects.c.state).where(
            projects.c.definition_key == definition_key, projects.c.definition_version == version
        )
        if project_ids is not None:
            query = query.where(projects.c.id.in_(sorted(set(project_ids))))
        if states is not None:
            query = query.where(projects.c.state.in_(sorted(set(states))))
        if units is not None:
            wanted = sorted(set(units))
            query = query.where(or_(projects.c.lead_unit.in_(wanted), projects.c.implementing_unit.in_(wanted)))
        rows = await self.session.execute(query.order_by(projects.c.created_at, projects.c.id))
        return [SelectedProject(row.id, row.state) for row in rows]

    # --- runs -------------------------------------------------------------------------------------------

    async def create_run(
        self,
        definition_key: str,
        from_version: int,
        to_version: int,
        state_map: Mapping[str, str],
        selection: Mapping[str, Any],
        created_by: str,
        now: datetime,
        selected: Sequence[SelectedProject],
    ) -> MigrationRunRecord:
        """Store a new run with one ``pending`` outcome per selected project (a run that selects nothing is
        finished at once)."""
        record = MigrationRunRecord(
            id=str(uuid.uuid4()),
            definition_key=definition_key,
            from_version=from_version,
            to_version=to_version,
            state_map=dict(state_map),
            selection=dict(selection),
            status="running" if selected else "finished",
            created_by=created_by,
            created_at=now,
            updated_at=now,
            finished_at=None if selected else now,
        )
        await self.session.execute(migration_runs.insert().values(**record.__dict__))
        if selected:
            await self.session.execute(
                migration_outcomes.insert(),
                [
                    {
                        "run_id": record.id,
                        "project_id": project.id,
                        "seq": number,
                        "status": "pending",
                        "from_state": project.state,
                        "to_state": None,
                        "blockers": [],
                        "detail": {},
                        "updated_at": None,
                    }
                    for number, project in enumerate(selected, start=1)
                ],
            )
        return record

    async def get_run(self, run_id: str) -> MigrationRunRecord | None:
        """The run ``run_id``, or None."""
        row = (await self.session.execute(select(migration_runs).where(migration_runs.c.id == run_id))).first()
        return _run(row) if row else None

    async def list_runs(self, definition_key: str, limit: int = 100) -> list[MigrationRunRecord]:
        """The runs of ``definition_key``, newest first."""
        rows = await self.session.execute(
            select(migration_runs)
            .where(migration_runs.c.definition_key == definition_key)
            .order_by(migration_runs.c.created_at.desc(), migration_runs.c.id)
            .limit(limit)
        )
        return [_run(row) for row in rows]

    async def counts(self, run_id: str) -> dict[str, int]:
        """Outcome status → how many projects of the run have it."""
        rows = await self.session.execute(
            select(migration_outcomes.c.status, func.count())
            .where(migration_outcomes.c.run_id == run_id)
            .group_by(migration_outcomes.c.status)
        )
        return {str(status): int(count) for status, count in rows}

    async def outcomes(
        self, run_id: str, *, status: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[OutcomeRecord]:
        """The run's outcomes after ``after_seq`` (of one status, or all), in processing order."""
        query = select(migration_outcomes).where(
            migration_outcomes.c.run_id == run_id, migration_outcomes.c.seq > after_seq
        )
        if status is not None:
            query = query.where(migration_outcomes.c.status == status)
        rows = await self.session.execute(query.order_by(migration_outcomes.c.seq).limit(limit))
        return [_outcome(row) for row in rows]

    async def outcome(self, run_id: str, project_id: str) -> OutcomeRecord | None:
        """One project's outcome in the run, or None."""
        row = (
            await self.session.execute(
                select(migration_outcomes).where(
                    migration_outcomes.c.run_id == run_id, migration_outcomes.c.project_id == project_id
                )
            )
        ).first()
        return _outcome(row) if row else None

    async def settle(
        self,
        run_id: str,
        project_id: str,
        status: str,
        now: datetime,
        *,
        to_state: str | None = None,
        blockers: Sequence[Mapping[str, Any]] = (),
        detail: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record what the run did with a project — only if its outcome is still ``pending`` (so two
        processes resuming the same run never record a project twice). False if it was not pending."""
        result = await self.session.execute(
            update(migration_outcomes)
            .where(
                migration_outcomes.c.run_id == run_id,
                migration_outcomes.c.project_id == project_id,
                migration_outcomes.c.status == "pending",
            )
            .values(
                status=status,
                to_state=to_state,
                blockers=[dict(b) for b in blockers],
                detail=dict(detail or {}),
                updated_at=now,
            )
            .returning(migration_outcomes.c.project_id)
        )
        settled = result.first() is not None
        if settled:
            await self.session.execute(
                update(migration_runs).where(migration_runs.c.id == run_id).values(updated_at=now)
            )
        return settled

    async def finish_if_done(self, run_id: str, now: datetime) -> bool:
        """Mark the run ``finished`` when none of its outcomes is pending; True if this call finished it."""
        pending = await self.session.scalar(
            select(func.count())
            .select_from(migration_outcomes)
            .where(migration_outcomes.c.run_id == run_id, migration_outcomes.c.status == "pending")
        )
        if pending:
            return False
        result = await self.session.execute(
            update(migration_runs)
            .where(migration_runs.c.id == run_id, migration_runs.c.status == "running")
            .values(status="finished", finished_at=now, updated_at=now)
            .returning(migration_runs.c.id)
        )
        return result.first() is not None

    # --- a project's move -------------------------------------------------------------------------------

    async def rebind(
        self,
        project_id: str,
        version: int,
        steps: Iterable[int],
        departments: Mapping[str, str | None],
    ) -> None:
        """Point the project at definition ``version``, rewrite its derived step rows (the new version may
        give its state other steps), and copy the new departments of its kept items onto their task rows (the
        department is what a department's visibility reads)."""
        await self.session.execute(
            update(projects).where(projects.c.id == project_id).values(definition_version=version)
        )
        await self.session.execute(delete(project_steps).where(project_steps.c.project_id == project_id))
        rows = [{"project_id": project_id, "step": step} for step in sorted(set(steps))]
        if rows:
            await self.session.execute(project_steps.insert(), rows)
        for task_id, department in departments.items():
            await self.session.execute(
                update(tasks)
                .where(and_(tasks.c.project_id == project_id, tasks.c.id == task_id))
                .values(department=department)
            )

    async def drop(
        self,
        project_id: str,
        *,
        task_ids: Sequence[str],
        notice_ids: Sequence[str],
        commitment_ids: Sequence[str],
        deadline_ids: Sequence[str],
    ) -> None:
        """Delete the rows of items that no longer exist in the project's new version (their history stays
        in the event log)."""
        for table, ids in (
            (deadlines, deadline_ids),
            (commitments, commitment_ids),
            (deficiency_notices, notice_ids),
            (tasks, task_ids),
        ):
            if ids:
                await self.session.execute(
                    delete(table).where(table.c.project_id == project_id, table.c.id.in_(sorted(set(ids))))
                )
