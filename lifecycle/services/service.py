"""The use cases: each public coroutine of :class:`Services` is one transaction.

The shape of every change (the pipeline of DESIGN.md, "How a transition runs"):

1. open one write transaction (``async with database.transaction()``: committed once at the end, rolled
   back on any exception);
2. lock the project row and load its aggregate (``FOR UPDATE`` on PostgreSQL);
3. check visibility (an invisible project is :class:`NotFound`, exactly like a missing one), the caller's
   right to act (:class:`Forbidden`), and the caller's ``If-Match`` version (:class:`StaleVersion`) —
   all under the lock, so the version checked is the version changed;
4. run the engine (pure and synchronous; it raises the refusals: InvalidTransition, RoleRefused,
   InvalidInput, GateNotSatisfied, OneTimeNoticeBreach);
5. write exactly what the engine's FireResult lists and append the events to the project's hash chain
   (:meth:`Services._save_changes`: the hooks derive the light and next fire times first, so the project
   row, its changed children and its events take a few statements; the scheduler writes a whole batch of
   projects' changes the same way);
6. commit, and return a view built from what was written.

Reads use a read-only transaction and take no lock. Nothing here sends anything over the network.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.calendar import WorkingCalendar
from lifecycle.clock import Clock, SystemClock, ensure_utc
from lifecycle.engine import fields as field_values
from lifecycle.engine.compiled import CompiledDefinition
from lifecycle.engine.core import Engine
from lifecycle.engine.instance import (
    Commitment,
    Deadline,
    DeficiencyNotice,
    Event,
    FireResult,
    ProjectInstance,
    Task,
    TriggerOption,
)
from lifecycle.errors import Forbidden, InvalidInput, Location, NotFound, Problem, StaleVersion
from lifecycle.messages import register
from lifecycle.settings import Settings
from lifecycle.spec.models import Definition
from lifecycle.store import driver
from lifecycle.store.db import Database
from lifecycle.store.events import AuditFinding, EventRecord, EventRepository, chain
from lifecycle.store.idempotency import IdempotencyEntry, IdempotencyRepository, StoredResponse
from lifecycle.store.principals import PrincipalRecord, PrincipalRepository, TokenRecord, token_hash
from lifecycle.store.projects import (
    MIRRORED_FIELDS,
    AggregateWrite,
    ProjectHeader,
    ProjectQuery,
    ProjectRecord,
    ProjectRepository,
    new_values,
    record_of,
    updated_values,
)

from .answers import KeyClaim, StoredAnswer, key_conflicts_as_taken, lock_claiming, store_answer
from .authz import (
    CallContext,
    Principal,
    acts_only_as_department,
    may_act_on_project,
    owns,
    require_create,
    require_header_edit,
    unknown_roles,
    visibility,
)
from .hooks import LOCK_READS, Change, ChangeHook, LockRead, PendingChange
from .inputs import CreateProject, ProjectChanges, ProjectFilters, check_header
from .registry import DefinitionRegistry
from .scheduling_hooks import SchedulingHook
from .views import (
    CommitmentView,
    HistoryEntry,
    MaterialView,
    NoticeView,
    Page,
    ProjectView,
    PublishOutcome,
    StepView,
    TaskView,
    deadline_view,
)
from .webhooks import WebhookOutbox

register(
    {
        "page.cursor": ("分页游标无效", "the page cursor is not valid"),
        "page.limit": ("每页条数应在 1 到 {max} 之间", "limit must be between 1 and {max}"),
        "project.field_conflict": (
            "“{field}”在基本信息和数据字段中取值不同",
            "'{field}' is given twice with different values (header and fields)",
        ),
        "principal.unknown_role": ("未知角色：{roles}", "unknown roles: {roles}"),
        "principal.exists": ("用户 {id} 已存在", "principal {id} already exists"),
    }
)

MAX_PAGE = 200
"""The largest page a list returns."""

REASSIGNING = frozenset({"lead_unit", "implementing_unit", "lead_leader", "source_category"})
"""Header columns the county assigns (一个项目、一名牵头县领导、一个牵头责任单位): a unit may not change them
for its own project; an editor role may."""


PRINCIPAL_CACHE_SECONDS = 5.0
"""How long a live token's principal is remembered by :meth:`Services.authenticate`."""

PRINCIPAL_CACHE_SIZE = 10_000


def _where(*path: str | int) -> Location:
    return Location(file="request", line=0, column=0, path=path)


def encode_cursor(created_at: datetime, project_id: str) -> str:
    """The opaque cursor after the project (created_at, id): base64url of a small JSON object."""
    raw = json.dumps({"t": created_at.isoformat(), "id": project_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) key of a cursor made by :func:`encode_cursor`.

    Raises:
        InvalidInput: it is not one.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        created_at = ensure_utc(datetime.fromisoformat(data["t"]))
        project_id = data["id"]
        if not isinstance(project_id, str):
            raise TypeError(project_id)
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidInput([Problem.of("page.cursor", _where("cursor"))]) from None
    return created_at, project_id


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput([Problem.of("page.limit", _where("limit"), max=MAX_PAGE)])


def _check_version(kind: str, ident: str, expected: int | None, actual: int) -> None:
    if expected is not None and expected != actual:
        raise StaleVersion(kind, ident, str(expected), str(actual))


class Services:
    """The use cases of the lifecycle service; one per process.

    Attributes:
        database: where everything is stored.
        engine: the engine running the definitions (pure; shared by all requests).
        registry: loads published definitions from the database into ``engine``.
        clock: the one source of "now".
        idempotency_ttl: how long idempotency records are kept.
    """

    def __init__(
        self,
        database: Database,
        *,
        engine: Engine | None = None,
        clock: Clock | None = None,
        idempotency_ttl: timedelta = timedelta(hours=24),
    ) -> None:
        self.database = database
        self.engine = engine or Engine()
        self.registry = DefinitionRegistry(self.engine)
        self.clock: Clock = clock or SystemClock()
        self.idempotency_ttl = idempotency_ttl
        self._principals: dict[str, tuple[float, Principal]] = {}
        self.hooks: list[ChangeHook] = []
        """Called with every change, inside its transaction (traffic lights, webhook outbox…)."""
        self.hooks.append(WebhookOutbox())  # webhooks: outbox rows in the change's transaction
        self.hooks.append(SchedulingHook(self.engine))  # scheduling: traffic light, deadlines' next fire time
        self._lock_reads_of: tuple[tuple[ChangeHook, ...], tuple[LockRead, ...]] = ((), ())

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock | None = None) -> Services:
        """Services on the configured database, with the working-day calendar of the configured
        workflows folder."""
        engine = Engine(WorkingCalendar.from_directory(settings.calendars_dir))
        return cls(
            Database(settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow),
            engine=engine,
            clock=clock,
            idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours),
        )

    async def close(self) -> None:
        """Release the database connections."""
        await self.database.dispose()

    def now(self) -> datetime:
        """The current instant, UTC."""
        return ensure_utc(self.clock.now())

    # --- definitions ------------------------------------------------------------------------------------

    async def publish_bundled(self, directory: Path, *, published_by: str = "system") -> list[PublishOutcome]:
        """Publish each ``*.yaml`` definition in ``directory`` as version 1 of its key if the key has none
        (start-up). Content already published creates nothing; an edited file is not published silently.

        Raises:
            DefinitionError: a file is not a valid definition.
        """
        async with self.database.transaction() as session:
            return await self.registry.publish_bundled(session, directory, self.now(), published_by=published_by)

    # --- projects ---------------------------------------------------------------------------------------

    async def create_project(
        self, ctx: CallContext, data: CreateProject, *, answer: StoredAnswer[ProjectView] | None = None
    ) -> ProjectView:
        """Create a project on the definition's active version (or the version asked for), in its initial
        state: its first groups open and its clocks start. With ``answer``, the answer to the request's
        ``Idempotency-Key`` (claimed up front) is stored in the same transaction (:mod:`.answers`).

        Raises:
            Forbidden: the caller may not create a project for these units.
            InvalidInput: a header value or field is wrong, or the project code is taken.
            NotFound: no such definition (version).
        """
        principal = ctx.principal
        header = data.header_values()
        problems = check_header(header)
        if problems:
            raise InvalidInput(problems)
        require_create(principal, data.lead_unit, data.implementing_unit)
        now = self.now()
        async with self.database.transaction() as session:
            if data.definition_version is None:
                compiled = await self.registry.active(session, data.definition_key)
            else:
                compiled = await self.registry.compiled(session, data.definition_key, data.definition_version)
            definition = compiled.definition
            projects = ProjectRepository(session)
            if data.code is not None and await projects.code_taken(data.code):
                raise InvalidInput([Problem.of("project.code_taken", _where("code"), project_code=data.code)])
            given = {name: value for name, value in header.items() if value is not None}
            values = _field_values(definition, given, data.fields)
            project_id = str(uuid.uuid4())
            instance, result = self.engine.start(
                definition.key, compiled.version, project_id, principal.actor, now, fields=values
            )
            try:
                record = await self._save_new(
                    session,
                    ProjectHeader(**header, created_by=principal.id),
                    instance,
                    definition,
                    result,
                    result.events,
                    principal.id,
                    now,
                    answer=answer,
                )
            except IntegrityError as error:
                # Two creators raced for the same code: the unique constraint caught the second.
                if data.code is not None and "code" in str(error.orig):
                    raise InvalidInput(
                        [Problem.of("project.code_taken", _where("code"), project_code=data.code)]
                    ) from None
                raise
        stored = answer.committed_view() if answer is not None else None
        return stored if stored is not None else _project_view(record, definition)

    async def get_project(self, ctx: CallContext, project_id: str) -> ProjectView:
        """The project, if the caller may see it.

        Raises:
            NotFound: no such project, or not visible to the caller.
        """
        async with self.database.reader() as session:
            record = await self._visible(session, ctx.principal, project_id)
            definition = await self.registry.definition(session, record.definition_key, record.definition_version)
            return _project_view(record, definition)

    async def list_projects(
        self,
        ctx: CallContext,
        filters: ProjectFilters | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[ProjectView]:
        """The projects the caller may see that match ``filters``, oldest first, one page at a time.

        Raises:
            InvalidInput: a bad cursor or limit.
        """
        _check_limit(limit)
        after = decode_cursor(cursor) if cursor else None
        f = filters or ProjectFilters()
        query = ProjectQuery(
            state=f.state,
            phase=f.phase,
            step=f.step,
            unit=f.unit,
            leader=f.leader,
            overdue=f.overdue,
            definition_key=f.definition_key,
            light=f.light,
            q=f.q,
            now=self.now(),
        )
        async with self.database.reader() as session:
            records, more = await ProjectRepository(session).list(
                query, visibility(ctx.principal), after=after, limit=limit
            )
            items = [
                _project_view(r, await self.registry.definition(session, r.definition_key, r.definition_version))
                for r in records
            ]
        next_cursor = encode_cursor(records[-1].created_at, records[-1].id) if more and records else None
        return Page[ProjectView](items=items, next_cursor=next_cursor)

    async def update_project(
        self, ctx: CallContext, project_id: str, expected_version: int | None, changes: ProjectChanges
    ) -> ProjectView:
        """Change a project's header and data fields outside any transition (clocks that read a changed date
        field are re-dated). Only the attributes given in ``changes`` change.

        Raises:
            NotFound: no such project, or not visible.
            Forbidden: the caller may see the project but not edit it (or not reassign its units/leader).
            StaleVersion: ``expected_version`` is not the project's version.
            InvalidInput: a bad value, or the project code is taken.
        """
        principal = ctx.principal
        header = changes.header_values()
        problems = check_header(header)
        if problems:
            raise InvalidInput(problems)
        now = self.now()
        async with self.database.transaction() as session:
            projects = ProjectRepository(session)
            record, instance, definition = await self._lock(session, principal, project_id)
            require_header_edit(principal, record)
            header_changes = {k: v for k, v in header.items() if getattr(record, k) != v}
            if REASSIGNING.intersection(header_changes) and not principal.county_wide:
                raise Forbidden("project", project_id, "reassign")
            _check_version("project", project_id, expected_version, record.version)
            merged = {**{k: getattr(record, k) for k in ("planned_start", "planned_end")}, **header_changes}
            problems = check_header({k: merged[k] for k in ("planned_start", "planned_end")})
            if problems:
                raise InvalidInput(problems)
            code = header_changes.get("code")
            if code is not None and await projects.code_taken(code, other_than=project_id):
                raise InvalidInput([Problem.of("project.code_taken", _where("code"), project_code=code)])
            values = _field_values(definition, header_changes, changes.fields or {})
            if values:
                result = self.engine.update_fields(instance, values, principal.actor, now)
            else:
                result = FireResult(state=instance.state)
            touched = (
                result.fields_changed or result.deadlines_opened or result.deadlines_closed or result.deadlines_changed
            )
            if not header_changes and not touched:
                return _project_view(record, definition)  # nothing changes: nothing is written
            if not values:
                instance.version += 1  # the engine bumps it when it runs; here it did not
            events = [e for e in result.events if e.kind != "project.fields_updated" or result.fields_changed]
            if header_changes:
                events.append(
                    Event(
                        "project.updated",
                        "project",
                        project_id,
                        principal.id,
                        now,
                        data={k: field_values.to_json(v) for k, v in header_changes.items()},
                    )
                )
            record = await self._save_change(
                session, record, instance, definition, result, events, principal.id, now, header=header_changes
            )
            return _project_view(record, definition)

    async def available_transitions(self, ctx: CallContext, project_id: str) -> list[TriggerOption]:
        """Every trigger leaving the project's state: whether the caller may fire it now, and if not, every
        reason (role, unmet gate conditions, missing fields).

        Raises:
            NotFound: no such project, or not visible.
        """
        async with self.database.reader() as session:
            _, instance, _ = await self._read(session, ctx.principal, project_id)
            return self.engine.available_triggers(instance, ctx.principal.actor, self.now())

    async def fire(
        self,
        ctx: CallContext,
        project_id: str,
        expected_version: int | None,
        trigger: str,
        data: Mapping[str, Any] | None = None,
        comment: str | None = None,
        *,
        answer: StoredAnswer[ProjectView] | None = None,
    ) -> ProjectView:
        """Fire a project-level trigger (a transition of the project machine). With ``answer``, the answer to
        the request's ``Idempotency-Key`` is stored in the same transaction (:mod:`.answers`).

        Raises:
            NotFound, Forbidden, StaleVersion, and the engine's refusals: InvalidTransition, RoleRefused,
            InvalidInput, GateNotSatisfied.
        """
        principal = ctx.principal
        now = self.now()
        claim = answer.claim if answer is not None else None
        with key_conflicts_as_taken(claim):
            async with self.database.transaction() as session:
                record, instance, definition = await self._lock(session, principal, project_id, claim, now)
                if not may_act_on_project(principal, record):
                    raise Forbidden("project", project_id, trigger)
                _check_version("project", project_id, expected_version, record.version)
                result = self.engine.fire(instance, trigger, principal.actor, now, data=data, comment=comment)
                record = await self._save_change(
                    session, record, instance, definition, result, result.events, principal.id, now, answer=answer
                )
        stored = answer.committed_view() if answer is not None else None
        return stored if stored is not None else _project_view(record, definition)

    # --- tasks ------------------------------------------------------------------------------------------

    async def list_tasks(self, ctx: CallContext, project_id: str) -> list[TaskView]:
        """The project's items, in the order they opened.

        Raises:
            NotFound: no such project, or not visible.
        """
        async with self.database.reader() as session:
            record, instance, _ = await self._read(session, ctx.principal, project_id)
            compiled = await self._compiled(session, record)
            now = self.now()
            return [_task_view(compiled, instance, task, now) for task in instance.tasks.values()]

    async def get_task(self, ctx: CallContext, project_id: str, task_id: str) -> TaskView:
        """One item of the project.

        Raises:
            NotFound: no such project (or not visible), or no such task.
        """
        async with self.database.reader() as session:
            record, instance, _ = await self._read(session, ctx.principal, project_id)
            task = _task_of(instance, task_id)
            return _task_view(await self._compiled(session, record), instance, task, self.now())

    async def available_task_transitions(self, ctx: CallContext, project_id: str, task_id: str) -> list[TriggerOption]:
        """Every trigger leaving the item's state, with whether the caller may fire it.

        Raises:
            NotFound: no such project (or not visible), or no such task.
        """
        async with self.database.reader() as session:
            _, instance, _ = await self._read(session, ctx.principal, project_id)
            _task_of(instance, task_id)
            return self.engine.available_task_triggers(instance, task_id, ctx.principal.actor, self.now())

    async def fire_task(
        self,
        ctx: CallContext,
        project_id: str,
        task_id: str,
        expected_version: int | None,
        trigger: str,
        data: Mapping[str, Any] | None = None,
        comment: str | None = None,
        *,
        answer: StoredAnswer[TaskView] | None = None,
    ) -> TaskView:
        """Fire a trigger on an item (submit, accept, accept with deficiencies, approve…).
        ``expected_version`` is the item's version (its ETag), not the project's. With ``answer``, the answer
        to the request's ``Idempotency-Key`` is stored in the same transaction (:mod:`.answers`).

        Raises:
            NotFound, Forbidden (a department acting on another department's item), StaleVersion, and the
            engine's refusals: InvalidTransition, RoleRefused, InvalidInput, OneTimeNoticeBreach.
        """
        principal = ctx.principal
        now = self.now()
        claim = answer.claim if answer is not None else None
        with key_conflicts_as_taken(claim):
            async with self.database.transaction() as session:
                record, instance, definition = await self._lock(session, principal, project_id, claim, now)
                task = _task_of(instance, task_id)
                if acts_only_as_department(principal, record) and _department_of(definition, task) != principal.unit_id:
                    raise Forbidden("task", task_id, trigger)
                _check_version("task", task_id, expected_version, task.version)
                result = self.engine.fire_task(
                    instance, task_id, trigger, principal.actor, now, data=data, comment=comment
                )
                compiled = await self._compiled(session, record)

                def view_of(_: ProjectRecord) -> TaskView:
                    return _task_view(compiled, instance, instance.tasks[task_id], now)

                await self._save_change(
                    session, record, instance, definition, result, result.events, principal.id, now,
                    answer=answer, answer_view=view_of,
                )  # fmt: skip
        stored = answer.committed_view() if answer is not None else None
        return stored if stored is not None else view_of(record)

    # --- deficiency notices and commitments ---------------------------------------------------------------

    async def list_notices(self, ctx: CallContext, project_id: str) -> list[NoticeView]:
        """The project's deficiency notices (一次性告知), in the order they were issued.

        Raises:
            NotFound: no such project, or not visible.
        """
        async with self.database.reader() as session:
            record, instance, _ = await self._read(session, ctx.principal, project_id)
            compiled = await self._compiled(session, record)
            return [_notice_view(compiled, instance, n) for n in instance.notices.values()]

    async def get_notice(self, ctx: CallContext, project_id: str, notice_id: str) -> NoticeView:
        """One deficiency notice.

        Raises:
            NotFound: no such project (or not visible), or no such notice.
        """
        async with self.database.reader() as session:
            record, instance, _ = await self._read(session, ctx.principal, project_id)
            notice = _notice_of(instance, notice_id)
            return _notice_view(await self._compiled(session, record), instance, notice)

    async def fire_notice(
        self,
        ctx: CallContext,
        project_id: str,
        notice_id: str,
        expected_version: int | None,
        trigger: str,
        comment: str | None = None,
        *,
        answer: StoredAnswer[NoticeView] | None = None,
    ) -> NoticeView:
        """Fire a trigger on a deficiency notice (read, supply…); ``supply`` also resumes its item.
        ``expected_version`` is the notice's version.

        Raises:
            NotFound, Forbidden, StaleVersion, and the engine's refusals.
        """
        principal = ctx.principal
        now = self.now()
        claim = answer.claim if answer is not None else None
        with key_conflicts_as_taken(claim):
            async with self.database.transaction() as session:
                record, instance, definition = await self._lock(session, principal, project_id, claim, now)
                notice = _notice_of(instance, notice_id)
                task = instance.tasks[notice.task_id]
                if acts_only_as_department(principal, record) and _department_of(definition, task) != principal.unit_id:
                    raise Forbidden("notice", notice_id, trigger)
                _check_version("notice", notice_id, expected_version, notice.version)
                result = self.engine.fire_notice(instance, notice_id, trigger, principal.actor, now, comment=comment)
                compiled = await self._compiled(session, record)

                def view_of(_: ProjectRecord) -> NoticeView:
                    return _notice_view(compiled, instance, instance.notices[notice_id])

                await self._save_change(
                    session, record, instance, definition, result, result.events, principal.id, now,
                    answer=answer, answer_view=view_of,
                )  # fmt: skip
        stored = answer.committed_view() if answer is not None else None
        return stored if stored is not None else view_of(record)

    async def list_commitments(self, ctx: CallContext, project_id: str) -> list[CommitmentView]:
        """The project's 承诺制 commitments, in the order they were recorded.

        Raises:
            NotFound: no such project, or not visible.
        """
        async with self.database.reader() as session:
            _, instance, _ = await self._read(session, ctx.principal, project_id)
            return [_commitment_view(project_id, c) for c in instance.commitments.values()]

    # --- history and audit ------------------------------------------------------------------------------

    async def history(
        self, ctx: CallContext, project_id: str, after_seq: int = 0, limit: int = 100
    ) -> Page[HistoryEntry]:
        """The project's events after ``after_seq``, oldest first; ``next_cursor`` is the ``seq`` to pass as
        ``after_seq`` for the next page.

        Raises:
            NotFound: no such project, or not visible.
            InvalidInput: a bad limit.
        """
        _check_limit(limit)
        async with self.database.reader() as session:
            await self._visible(session, ctx.principal, project_id)
            records = await EventRepository(session).history(project_id, max(after_seq, 0), limit + 1)
        page = records[:limit]
        more = len(records) > limit
        return Page[HistoryEntry](
            items=[_history_entry(r) for r in page], next_cursor=str(page[-1].seq) if more and page else None
        )

    async def audit(self, ctx: CallContext, project_id: str | None = None) -> list[AuditFinding]:
        """Verify the event hash chains (of one project, or all) and list every edited, deleted, reordered
        or unlinked event. Administrators only.

        Raises:
            Forbidden: the caller is not an administrator.
        """
        if "admin" not in ctx.principal.roles:
            raise Forbidden("events", project_id or "*", "audit")
        async with self.database.reader() as session:
            return await EventRepository(session).verify(project_id)

    # --- principals and tokens --------------------------------------------------------------------------

    async def add_principal(
        self,
        principal_id: str,
        name: str,
        roles: Sequence[str],
        *,
        unit_id: str | None = None,
        unit_kind: str | None = None,
    ) -> Principal:
        """Register a principal (for trusted callers: the CLI, start-up, tests).

        Raises:
            InvalidInput: an unknown role, or the id is taken.
        """
        bad = unknown_roles(roles)
        if bad:
            raise InvalidInput([Problem.of("principal.unknown_role", _where("roles"), roles=", ".join(bad))])
        async with self.database.transaction() as session:
            repository = PrincipalRepository(session)
            if await repository.get(principal_id) is not None:
                raise InvalidInput([Problem.of("principal.exists", _where("id"), id=principal_id)])
            record = await repository.add(principal_id, name, roles, self.now(), unit_id=unit_id, unit_kind=unit_kind)
            return _principal(record)

    async def get_principal(self, principal_id: str) -> Principal | None:
        """The principal ``principal_id``, or None."""
        async with self.database.reader() as session:
            record = await PrincipalRepository(session).get(principal_id)
            return _principal(record) if record else None

    async def create_token(self, principal_id: str, description: str = "") -> tuple[str, str]:
        """A new API token for the principal: ``(token_id, plain_token)``; the plain token is shown only now.

        Raises:
            NotFound: no such principal.
        """
        async with self.database.transaction() as session:
            repository = PrincipalRepository(session)
            if await repository.get(principal_id) is None:
                raise NotFound("principal", principal_id)
            return await repository.create_token(principal_id, description, self.now())

    async def authenticate(self, plain_token: str) -> Principal | None:
        """The principal holding this live token, or None.

        A token found live is remembered for :data:`PRINCIPAL_CACHE_SECONDS` (every API request
        authenticates; this spares a database round trip on most of them). A token revoked in this process
        stops working at once; one revoked by another process (the CLI, another worker) within that time.
        """
        key = token_hash(plain_token)
        now = time.monotonic()
        cached = self._principals.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.database.reader() as session:
            record = await PrincipalRepository(session).authenticate(plain_token)
        principal = _principal(record) if record else None
        if principal is not None:
            if len(self._principals) >= PRINCIPAL_CACHE_SIZE:
                self._principals.clear()  # crude but bounded; a refill costs one query per live token
            self._principals[key] = (now + PRINCIPAL_CACHE_SECONDS, principal)
        return principal

    async def list_tokens(self, principal_id: str | None = None) -> list[TokenRecord]:
        """Tokens (never their secret), of one principal or all."""
        async with self.database.reader() as session:
            return await PrincipalRepository(session).list_tokens(principal_id)

    async def revoke_token(self, token_id: str) -> bool:
        """Revoke a token; False if there is no such live token."""
        async with self.database.transaction() as session:
            revoked = await PrincipalRepository(session).revoke(token_id, self.now())
        self._principals.clear()  # the cache is keyed by token hash, not id: forget every entry
        return revoked

    # --- idempotency ------------------------------------------------------------------------------------

    async def idempotency_begin(self, principal_id: str, key: str, request_hash: str) -> IdempotencyEntry | None:
        """Claim ``key`` for a request (autocommit: committed at once, so duplicates see it): None if this
        call claimed it, else the record already stored (compare its ``request_hash``; replay it when
        ``completed``, refuse while ``running``)."""
        async with self.database.autocommit() as connection:
            return await IdempotencyRepository(connection).begin(
                principal_id, key, request_hash, self.now(), self.idempotency_ttl
            )

    def claims_in_transaction(self) -> bool:
        """Whether a change may claim its request's ``Idempotency-Key`` in its own transaction
        (:attr:`~.answers.KeyClaim.in_transaction`): on PostgreSQL, which has the advisory locks it takes."""
        return self.database.dialect == "postgresql"

    async def idempotency_record(
        self, principal_id: str, key: str, request_hash: str, answer: StoredResponse
    ) -> IdempotencyEntry | None:
        """Store the answer of a request whose change was to claim its key but did not commit (autocommit):
        None once stored, else the live record of the key, to answer from instead."""
        async with self.database.autocommit() as connection:
            return await IdempotencyRepository(connection).record(
                principal_id, key, request_hash, answer, self.now(), self.idempotency_ttl
            )

    async def idempotency_live(self, principal_id: str, key: str) -> IdempotencyEntry | None:
        """The key's record unless it has expired, or None."""
        async with self.database.autocommit() as connection:
            found = await IdempotencyRepository(connection).get(principal_id, key)
        return found if found is not None and found.expires_at > self.now() else None

    def one_connection(self) -> AbstractAsyncContextManager[None]:
        """A block whose changes and idempotency statements share one database connection (see
        :meth:`lifecycle.store.db.Database.one_connection`): the API holds one for each request sent with an
        ``Idempotency-Key``, which claims the key, runs the change and stores the answer."""
        return self.database.one_connection()

    async def idempotency_complete(
        self, principal_id: str, key: str, status: int, headers: Sequence[tuple[str, str]], body: bytes
    ) -> bool:
        """Store the response of the request that claimed ``key``; False if it holds no running claim."""
        async with self.database.autocommit() as connection:
            repository = IdempotencyRepository(connection)
            return await repository.complete(principal_id, key, status, headers, body, self.now())

    async def idempotency_release(self, principal_id: str, key: str) -> bool:
        """Drop a running claim (the request failed in a way a retry may fix)."""
        async with self.database.autocommit() as connection:
            return await IdempotencyRepository(connection).release(principal_id, key)

    async def purge_idempotency(self, now: datetime | None = None) -> int:
        """Delete the idempotency records expired by ``now`` (default: the clock's now); how many. The
        scheduler's tick calls it."""
        async with self.database.autocommit() as connection:
            return await IdempotencyRepository(connection).purge_expired(now or self.now())

    # --- internals --------------------------------------------------------------------------------------

    async def _save_change(
        self,
        session: AsyncSession,
        record: ProjectRecord,
        instance: ProjectInstance,
        definition: Definition,
        result: FireResult | None,
        events: Sequence[Event],
        actor: str,
        now: datetime,
        *,
        header: Mapping[str, Any] | None = None,
        answer: StoredAnswer[Any] | None = None,
        answer_view: Callable[[ProjectRecord], Any] | None = None,
    ) -> ProjectRecord:
        """Write one change of a locked project (see :meth:`_save_changes`); the project row as now stored."""
        pending = PendingChange(record, instance, definition, result, events, actor, now, header, answer, answer_view)
        return (await self._save_changes(session, [pending]))[0]

    async def _save_changes(self, session: AsyncSession, pending: Sequence[PendingChange]) -> list[ProjectRecord]:
        """Write changes of locked projects (of one project each) in one go: chain their events, let every
        hook derive what rides on the project's rows (the light, deadlines' next fire times), write the
        project rows, children and events in a few statements for all of them, then let every hook write its
        own rows (see :mod:`.hooks`). Returns each project's row as now stored, in order.

        Raises:
            StaleVersion: a project changed outside the caller's lock (see
                :meth:`~lifecycle.store.projects.ProjectRepository.save_many`).
        """
        changes: list[Change] = []
        writes: list[AggregateWrite] = []
        for p in pending:
            values = updated_values(p.instance, p.definition, p.now, p.header)
            result = p.result or FireResult(state=p.instance.state)
            change = self._derive(p.record, values, p.instance, p.definition, result, p.events, p.actor, p.now)
            changes.append(change)
            writes.append(AggregateWrite(p.record, values, p.instance, result, p.definition, change.fire_times))
        async with driver.deferred(session):
            # Events first: held back with the step and child rows (and a stored answer), they reach the
            # server in one statement with the project rows' (checked) update, which save_many writes last.
            await self._insert_events(session, changes)
            for p, change in zip(pending, changes, strict=True):
                if p.answer is not None:
                    if p.answer_view is not None:
                        view = p.answer_view(change.record)
                    else:
                        view = _project_view(change.record, p.definition)
                    await store_answer(session, p.answer, view, p.now, self.idempotency_ttl)
            await ProjectRepository(session).save_many(writes)
            await self._run_hooks(session, changes)
        return [change.record for change in changes]

    async def _save_new(
        self,
        session: AsyncSession,
        header: ProjectHeader,
        instance: ProjectInstance,
        definition: Definition,
        result: FireResult,
        events: Sequence[Event],
        actor: str,
        now: datetime,
        *,
        answer: StoredAnswer[ProjectView] | None = None,
    ) -> ProjectRecord:
        """Store a new project as the engine started it, with its first events and what hooks derive (and the
        request's answer, if ``answer``)."""
        values = new_values(header, instance, definition, now)
        genesis = record_of(values)
        change = self._derive(genesis, values, instance, definition, result, events, actor, now)
        async with driver.deferred(session):
            await ProjectRepository(session).insert(
                header, instance, definition, now, values=values, fire_times=change.fire_times
            )
            await self._insert_events(session, [change])
            if answer is not None:
                view = _project_view(change.record, definition)
                await store_answer(session, answer, view, now, self.idempotency_ttl)
            await self._run_hooks(session, [change])
        return change.record

    def _derive(
        self,
        before: ProjectRecord,
        values: dict[str, Any],
        instance: ProjectInstance,
        definition: Definition,
        result: FireResult,
        events: Sequence[Event],
        actor: str,
        now: datetime,
    ) -> Change:
        """The change as hooks see it: ``values`` (the project columns to store) gain the chain's new head and
        what the hooks derive."""
        # The row was read (or is inserted) under this transaction's lock, so its chain head is current.
        chained = chain(before.id, (before.event_seq, before.event_hash), events)
        if chained:
            values.update(event_seq=chained[-1].seq, event_hash=chained[-1].hash)
        change = Change(record_of(values, before), instance, definition, result, chained, actor, now)
        for hook in self.hooks:
            hook.derive(change)
        if not change.derived:
            return change
        values.update(change.derived)
        return replace(change, record=record_of(values, before))

    @staticmethod
    async def _insert_events(session: AsyncSession, changes: Sequence[Change]) -> None:
        await EventRepository(session).insert([event for change in changes for event in change.events])

    async def _run_hooks(self, session: AsyncSession, changes: Sequence[Change]) -> None:
        """Let every hook write its own rows, after the project rows and events."""
        for hook in self.hooks:
            await hook.write(session, changes)

    async def _visible(self, session: AsyncSession, principal: Principal, project_id: str) -> ProjectRecord:
        record = await ProjectRepository(session).get(project_id)
        if record is None or not await self._may_see(session, principal, record):
            raise NotFound("project", project_id)
        return record

    async def _may_see(self, session: AsyncSession, principal: Principal, record: ProjectRecord) -> bool:
        if principal.county_wide or owns(principal, record):
            return True
        return await ProjectRepository(session).is_visible(record.id, visibility(principal))

    async def _lock(
        self,
        session: AsyncSession,
        principal: Principal,
        project_id: str,
        claim: KeyClaim | None = None,
        now: datetime | None = None,
    ) -> tuple[ProjectRecord, ProjectInstance, Definition]:
        """Lock the project and load it, reading along what hooks want (:class:`~.hooks.LockRead`), and
        claiming ``claim``'s key if the change is to claim it (:func:`.answers.lock_claiming`)."""
        projects = ProjectRepository(session)
        reads = self._lock_reads()
        if claim is not None and claim.in_transaction:
            queries = tuple(r.query for r in reads)
            record, values = await lock_claiming(projects, project_id, queries, claim, now or self.now())
            session.info[LOCK_READS] = {r.name: v for r, v in zip(reads, values, strict=False)}
        elif reads:
            record, values = await projects.lock_reading(project_id, tuple(r.query for r in reads))
            session.info[LOCK_READS] = {r.name: v for r, v in zip(reads, values, strict=False)}
        else:
            record = await projects.lock(project_id)
        if record is None or not await self._may_see(session, principal, record):
            raise NotFound("project", project_id)
        definition = await self.registry.definition(session, record.definition_key, record.definition_version)
        return record, await projects.instance(record, definition), definition

    def _lock_reads(self) -> tuple[LockRead, ...]:
        """What the hooks want read with a project's lock (:class:`~.hooks.LockRead`), on this database."""
        hooks = tuple(self.hooks)
        if self._lock_reads_of[0] != hooks:  # hooks are a public list: a caller may have added one
            found: list[LockRead] = []
            for hook in hooks:
                lock_read = getattr(hook, "lock_read", None)  # optional (hooks.ReadsWithLock)
                read = lock_read(self.database.dialect) if lock_read is not None else None
                if read is not None:
                    found.append(read)
            self._lock_reads_of = (hooks, tuple(found))
        return self._lock_reads_of[1]

    async def _read(
        self, session: AsyncSession, principal: Principal, project_id: str
    ) -> tuple[ProjectRecord, ProjectInstance, Definition]:
        record = await self._visible(session, principal, project_id)
        definition = await self.registry.definition(session, record.definition_key, record.definition_version)
        return record, await ProjectRepository(session).instance(record, definition), definition

    async def _compiled(self, session: AsyncSession, record: ProjectRecord) -> CompiledDefinition:
        return await self.registry.compiled(session, record.definition_key, record.definition_version)


# --- helpers ----------------------------------------------------------------------------------------------


def _field_values(definition: Definition, header: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The data fields to give the engine: ``fields``, plus header values whose names the definition also
    declares as fields (the same value, kept in both places)."""
    values = dict(fields)
    problems: list[Problem] = []
    for name in MIRRORED_FIELDS:
        if name not in header or definition.field(name) is None:
            continue
        value = header[name]
        if name in values and values[name] is not None and value is not None:
            typed, _ = field_values.coerce(definition.lookup("fields")[name], values[name], ("fields", name))
            if typed != value:
                problems.append(Problem.of("project.field_conflict", _where("fields", name), field=name))
                continue
        values[name] = value
    if problems:
        raise InvalidInput(problems)
    return values


def _task_of(instance: ProjectInstance, task_id: str) -> Task:
    task = instance.tasks.get(task_id)
    if task is None:
        raise NotFound("task", task_id)
    return task


def _notice_of(instance: ProjectInstance, notice_id: str) -> DeficiencyNotice:
    notice = instance.notices.get(notice_id)
    if notice is None:
        raise NotFound("notice", notice_id)
    return notice


def _department_of(definition: Definition, task: Task) -> str | None:
    group = definition.lookup("task_groups").get(task.group)
    item = next((i for i in group.items if i.id == task.item), None) if group else None
    return item.department if item else None


def _principal(record: PrincipalRecord) -> Principal:
    return Principal(
        id=record.id, name=record.name, unit_id=record.unit_id, unit_kind=record.unit_kind, roles=record.roles
    )


def _project_view(record: ProjectRecord, definition: Definition) -> ProjectView:
    states = definition.lookup("states")
    state = states.get(record.state)
    held = states.get(record.held_from) if record.held_from else None
    phase = definition.lookup("phases").get(record.phase) if record.phase else None
    step_specs = definition.lookup("steps")
    steps = [
        StepView(number=n, title=step_specs[n].title, title_en=step_specs[n].title_en)
        if n in step_specs
        else StepView(number=n, title=str(n))
        for n in sorted(set(state.steps if state else []))
    ]
    return ProjectView(
        id=record.id,
        code=record.code,
        name=record.name,
        definition_key=record.definition_key,
        definition_version=record.definition_version,
        state=record.state,
        state_title=state.title if state else record.state,
        state_title_en=state.title_en if state else None,
        terminal=bool(state and state.terminal),
        held=bool(state and state.hold),
        held_from=record.held_from,
        held_from_title=held.title if held else None,
        phase=record.phase,
        phase_title=phase.title if phase else None,
        steps=steps,
        source_category=record.source_category,
        lead_leader=record.lead_leader,
        lead_unit=record.lead_unit,
        implementing_unit=record.implementing_unit,
        township=record.township,
        total_investment=record.total_investment,
        planned_start=record.planned_start,
        planned_end=record.planned_end,
        fields=dict(record.fields),
        light=record.light,
        light_reasons=record.light_reasons or [],
        version=record.version,
        created_at=record.created_at,
        created_by=record.created_by,
        updated_at=record.updated_at,
    )


def _outcome(compiled: CompiledDefinition, machine: str, state: str) -> Any:
    return compiled.task_machines[machine].outcomes.get(state, "open")


def _task_view(compiled: CompiledDefinition, instance: ProjectInstance, task: Task, now: datetime) -> TaskView:
    definition = compiled.definition
    group = definition.group(task.group)
    item = compiled.items[(task.group, task.item)]
    department = definition.lookup("departments").get(item.department)
    machine = compiled.task_machines[task.machine]
    return TaskView(
        project_id=instance.id,
        id=task.id,
        group=task.group,
        group_title=group.title,
        item=task.item,
        item_title=item.title,
        department=item.department,
        department_title=department.title if department else None,
        machine=task.machine,
        state=task.state,
        state_title=machine.titles.get(task.state, task.state),
        outcome=_outcome(compiled, task.machine, task.state),
        submission=task.submission,
        opened_at=task.opened_at,
        closed_at=task.closed_at,
        data=dict(task.data),
        version=task.version,
        # In the order a read of the project loads them (start day, then id), not the order this process
        # opened them in: a change's answer then shows the item as a read of it does.
        deadlines=[
            deadline_view(d, now)
            for d in sorted(instance.deadlines.values(), key=_deadline_order)
            if d.subject_kind == "task" and d.subject_id == task.id and d.closed_at is None
        ],
    )


def _deadline_order(deadline: Deadline) -> tuple[date, str]:
    """Where a deadline comes among a project's: by the day it started, then by id (the store's order,
    :mod:`lifecycle.store.children`)."""
    return deadline.started_on, deadline.id


def _notice_view(compiled: CompiledDefinition, instance: ProjectInstance, notice: DeficiencyNotice) -> NoticeView:
    task = instance.tasks[notice.task_id]
    item = compiled.items[(task.group, task.item)]
    materials = {m.id: m.title for m in item.materials}
    machine = compiled.task_machines[notice.machine]
    return NoticeView(
        project_id=instance.id,
        id=notice.id,
        task_id=notice.task_id,
        item_title=item.title,
        submission=notice.submission,
        machine=notice.machine,
        state=notice.state,
        state_title=machine.titles.get(notice.state, notice.state),
        outcome=_outcome(compiled, notice.machine, notice.state),
        missing=[MaterialView(id=m, title=materials.get(m, m)) for m in notice.missing],
        cure_date=notice.cure_date,
        issued_at=notice.issued_at,
        issued_by=notice.issued_by,
        closed_at=notice.closed_at,
        version=notice.version,
    )


def _commitment_view(project_id: str, commitment: Commitment) -> CommitmentView:
    return CommitmentView(
        project_id=project_id,
        id=commitment.id,
        task_id=commitment.task_id,
        text=commitment.text,
        state=commitment.state,
        recorded_at=commitment.recorded_at,
        recorded_by=commitment.recorded_by,
        due_date=commitment.due_date,
        verified_at=commitment.verified_at,
        verified_by=commitment.verified_by,
        note=commitment.note,
    )


def _history_entry(record: EventRecord) -> HistoryEntry:
    return HistoryEntry(
        seq=record.seq,
        event_id=record.event_id,
        kind=record.kind,
        subject_kind=record.subject_kind,
        subject_id=record.subject_id,
        actor=record.actor,
        at=record.at,
        trigger=record.trigger,
        from_state=record.from_state,
        to_state=record.to_state,
        comment=record.comment,
        data=record.data,
        prev_hash=record.prev_hash,
        hash=record.hash,
    )
