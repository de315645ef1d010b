"""Workflow administration: publish definition versions, compare them, choose the active one, move running
projects from one version to another, and draw them.

:class:`WorkflowAdmin` holds the use cases; it works through the :class:`~lifecycle.services.Services` it is
given (its database, engine, registry, clock and change hooks), one transaction per use case — and, for a
migration run, one transaction *per project*.

Publishing. A definition's YAML is validated exactly as ``lifecycle validate`` does (every problem with its
file, line, column and YAML path, raised as :class:`InvalidDefinition`) and stored as the key's next version
(number, content hash, author, time, change note); content that is already a version of the key (same hash:
formatting and comments do not count) creates nothing. A new version is active (new projects start on it)
unless the publisher stages it (``activate=False``); running projects stay on their own version until an
administrator migrates them. Only ``admin`` callers publish, activate and migrate (anyone may validate).

Migrating. A run selects the projects on its source version that match its filter, and records one
``pending`` outcome each; it then moves them one by one, each in its own transaction: lock the project, check
that it is still on the source version and its outcome still pending, compute the move with the pure
:func:`lifecycle.engine.migrate.migrate` (what moving means is documented there), and write — in the same
transaction — the project (new version, state, opened items, recomputed deadlines, version counter), the
``project.migrated`` history event through ``Services._save_change`` (so every change hook, the webhook
outbox among them, sees it), and the outcome (``migrated`` or ``blocked`` with the reasons). A run killed at
any point leaves every project either wholly on its old version or wholly on the new one, and is resumed by
running it again (:meth:`WorkflowAdmin.run_migration`): it continues with the outcomes still pending; a
project already moved (or changed meanwhile) is never moved twice. A dry run computes the same verdict for
every selected project and stores nothing.

Definition-level events (``workflow.published``, ``workflow.activated``, ``workflow.migrated``) are stored in
``workflow_events`` and handed, in the same transaction, to every change hook of the services that can take an
event that is not a project's (a hook with an ``enqueue_event`` method: the webhook outbox).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.clock import ensure_utc
from lifecycle.engine.compiled import CompiledDefinition
from lifecycle.engine.instance import Actor
from lifecycle.engine.migrate import Blocker, Migration, migrate, state_map_problems
from lifecycle.errors import DefinitionError, Forbidden, InvalidInput, Location, NotFound, Problem, YamlProblems
from lifecycle.messages import register
from lifecycle.spec.diff import DefinitionDiff, diff_definitions
from lifecycle.spec.loader import LoadedDefinition, load_definition_file, load_definition_text
from lifecycle.spec.models import Definition
from lifecycle.store.definitions import DefinitionRecord, DefinitionRepository
from lifecycle.store.projects import ProjectRepository
from lifecycle.store.workflows import (
    MigrationRepository,
    MigrationRunRecord,
    OutcomeRecord,
    WorkflowEventRecord,
    WorkflowEventRepository,
)

from .authz import CallContext, Principal

if TYPE_CHECKING:
    from .service import Services

log = logging.getLogger(__name__)

register(
    {
        "definition.invalid": ("流程定义无效", "invalid definition"),
        "workflow.same_versions": (
            "迁移的起止版本相同（第 {version} 版）",
            "a migration needs two different versions (both are {version})",
        ),
        "workflow.map_unknown_from": (
            "状态映射中的“{state}”不是第 {version} 版的状态",
            "'{state}' in the state map is not a state of version {version}",
        ),
        "workflow.map_unknown_to": (
            "状态映射把“{state}”映射到第 {version} 版中不存在的状态“{target}”",
            "the state map sends '{state}' to '{target}', which is not a state of version {version}",
        ),
        "workflow.filter_too_long": ("{name} 最多 {max} 项", "{name} has at most {max} entries"),
        "workflow.empty_text": ("流程定义内容为空", "the definition text is empty"),
    }
)

MAX_FILTER = 10_000
"""The most project ids, states or units a migration filter may list."""

WORKFLOW_EVENT_KINDS = ("workflow.published", "workflow.activated", "workflow.migrated")
"""The definition-level event kinds this module emits (stored in ``workflow_events`` and handed to the
change hooks that take non-project events, e.g. the webhook outbox)."""


class InvalidDefinition(DefinitionError):
    """Raised by :meth:`WorkflowAdmin.publish` (and validation) when the YAML is not a valid definition; holds
    every problem, each with file, line, column and YAML path (as ``lifecycle validate`` prints them)."""

    code = "definition.invalid"


# --- views ------------------------------------------------------------------------------------------------


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class VersionView(_View):
    """A published version: number, content hash, author, time, change note, whether new projects start on
    it, and how many projects run on it now."""

    key: str
    version: int
    title: str
    content_hash: str
    active: bool
    published_at: datetime
    published_by: str
    change_note: str | None = None
    projects: int = 0


class DefinitionSummary(_View):
    """What a definition holds, in numbers."""

    key: str
    title: str
    initial: str
    states: int
    transitions: int
    gates: int
    groups: int
    items: int
    task_machines: int
    clocks: int
    ladders: int
    obligations: int


class PublishResult(_View):
    """What publishing (or validating) a definition text did.

    ``status``: ``published`` (a new version was stored), ``unchanged`` (this content already is ``version``),
    ``validated`` (validate-only: nothing stored). ``diff`` compares the text with ``compared_with`` (the
    key's active version, else its latest), when the key has versions.
    """

    status: Literal["published", "unchanged", "validated"]
    key: str
    content_hash: str
    summary: DefinitionSummary
    version: VersionView | None = None
    compared_with: int | None = None
    diff: dict[str, Any] | None = None


class BlockerView(_View):
    """Why one project cannot move: a stable code, the message in both languages, what it concerns."""

    code: str
    message_zh: str
    message_en: str
    subject: str | None = None
    details: dict[str, Any] = {}


class MigrationItem(_View):
    """One project in a dry run: can it move, to which state, and what would change (or why not)."""

    project_id: str
    name: str
    from_state: str
    to_state: str | None
    movable: bool
    blockers: list[BlockerView]
    opened_tasks: list[str]
    dropped_tasks: list[str]
    deadlines_redated: list[dict[str, str]]


class MigrationPreview(_View):
    """A dry run: the verdict for every selected project; nothing was stored.

    ``already_on_target`` counts projects matching the filter that already run on the target version (a run
    leaves them alone). ``suggested_state_map`` proposes mappings for states that look renamed (same title)
    and are not mapped yet.
    """

    key: str
    from_version: int
    to_version: int
    state_map: dict[str, str]
    selection: dict[str, Any]
    total: int
    movable: int
    blocked: int
    already_on_target: int
    suggested_state_map: dict[str, str]
    items: list[MigrationItem]


class OutcomeView(_View):
    """What a run did (or is to do) with one project."""

    project_id: str
    seq: int
    status: Literal["pending", "migrated", "blocked", "skipped"]
    from_state: str
    to_state: str | None = None
    blockers: list[dict[str, Any]] = []
    detail: dict[str, Any] = {}
    updated_at: datetime | None = None


class MigrationRunView(_View):
    """A migration run and its progress: ``counts`` by outcome status (``pending`` left to do)."""

    id: str
    key: str
    from_version: int
    to_version: int
    state_map: dict[str, str]
    selection: dict[str, Any]
    status: Literal["running", "finished"]
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    total: int
    counts: dict[str, int]
    outcomes: list[OutcomeView] = []


class WorkflowEventView(_View):
    """A definition-level event (``workflow.published``, ``workflow.activated``, ``workflow.migrated``)."""

    id: int
    event_id: str
    kind: str
    key: str
    version: int | None = None
    actor: str
    at: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class MigrationRequest:
    """What an administrator asks a migration to do.

    Attributes:
        from_version / to_version: the versions (``to_version`` None: the key's active version).
        state_map: old state id → new state id; states not named keep their id.
        project_ids / states / units: the filter; None means any (``units``: lead or implementing unit).
    """

    from_version: int
    to_version: int | None = None
    state_map: Mapping[str, str] = field(default_factory=dict)
    project_ids: Sequence[str] | None = None
    states: Sequence[str] | None = None
    units: Sequence[str] | None = None

    def selection(self) -> dict[str, Any]:
        """The filter as stored with a run (only what was given)."""
        out: dict[str, Any] = {}
        for name in ("project_ids", "states", "units"):
            value = getattr(self, name)
            if value is not None:
                out[name] = sorted(set(value))
        return out


BeforeCommit = Callable[[str], Awaitable[None]]
"""Called with a project id after its move is written and before it commits (tests inject crashes here)."""

Progress = Callable[[OutcomeRecord], None]
"""Called after each project of a run is settled and committed."""


def _where(*path: str | int) -> Location:
    return Location(file="request", line=0, column=0, path=path)


def summary_of(definition: Definition) -> DefinitionSummary:
    """The numbers of ``definition``."""
    return DefinitionSummary(
        key=definition.key,
        title=definition.title,
        initial=definition.initial,
        states=len(definition.states),
        transitions=len(definition.transitions),
        gates=len(definition.gates),
        groups=len(definition.task_groups),
        items=sum(len(group.items) for group in definition.task_groups),
        task_machines=len(definition.task_machines),
        clocks=len(definition.clocks),
        ladders=len(definition.ladders),
        obligations=len(definition.obligations),
    )


def load_text(text: str | bytes, name: str) -> LoadedDefinition:
    """Validate a definition text as ``lifecycle validate`` does.

    Raises:
        InvalidDefinition: every problem of the text, located.
    """
    if not text.strip():
        raise InvalidDefinition([Problem.of("workflow.empty_text", Location(name, 1, 1, ()))])
    try:
        return load_definition_text(text, name=name)
    except (YamlProblems, DefinitionError) as exc:
        raise InvalidDefinition(exc.problems()) from None


def _version_view(record: DefinitionRecord, projects: int = 0) -> VersionView:
    return VersionView(
        key=record.key,
        version=record.version,
        title=record.title,
        content_hash=record.content_hash,
        active=record.active,
        published_at=record.published_at,
        published_by=record.published_by,
        change_note=record.change_note,
        projects=projects,
    )


def _blocker_view(blocker: Blocker) -> BlockerView:
    details = {k: v for k, v in blocker.params.items() if k not in ("version",)}
    return BlockerView(
        code=blocker.code, message_zh=blocker.zh, message_en=blocker.en, subject=blocker.subject, details=details
    )


def _blocker_json(blocker: Blocker) -> dict[str, Any]:
    return _blocker_view(blocker).model_dump(mode="json")


def _outcome_view(record: OutcomeRecord) -> OutcomeView:
    return OutcomeView(
        project_id=record.project_id,
        seq=record.seq,
        status=record.status,  # type: ignore[arg-type]
        from_state=record.from_state,
        to_state=record.to_state,
        blockers=record.blockers,
        detail=record.detail,
        updated_at=record.updated_at,
    )


def _event_view(record: WorkflowEventRecord) -> WorkflowEventView:
    return WorkflowEventView(
        id=record.id,
        event_id=record.event_id,
        kind=record.kind,
        key=record.definition_key,
        version=record.version,
        actor=record.actor,
        at=record.at,
        data=record.data,
    )


def _migration_detail(migration: Migration) -> dict[str, Any]:
    result = migration.result
    return {
        "opened_tasks": list(migration.opened),
        "dropped_tasks": list(migration.dropped),
        "deadlines_opened": list(result.deadlines_opened) if result else [],
        "deadlines_closed": list(result.deadlines_closed) if result else [],
        "deadlines_redated": [
            {"id": ident, "from": before.isoformat(), "to": after.isoformat()}
            for ident, before, after in migration.redated
        ],
    }


class WorkflowAdmin:
    """The workflow-administration use cases, on one :class:`~lifecycle.services.Services`."""

    def __init__(self, services: Services) -> None:
        self.services = services

    # --- helpers ----------------------------------------------------------------------------------------

    def now(self) -> datetime:
        return ensure_utc(self.services.clock.now())

    @staticmethod
    def _require_admin(principal: Principal, key: str, action: str) -> None:
        if "admin" not in principal.roles:
            raise Forbidden("workflow", key, action)

    @staticmethod
    def _require_county_wide(principal: Principal, key: str, action: str) -> None:
        if not principal.county_wide:
            raise Forbidden("workflow", key, action)

    async def _emit(
        self,
        session: AsyncSession,
        kind: str,
        key: str,
        version: int | None,
        actor: str,
        now: datetime,
        data: Mapping[str, Any],
        webhook_data: Mapping[str, Any],
    ) -> WorkflowEventRecord:
        """Store a definition-level event and hand it to every hook that takes non-project events."""
        record = await WorkflowEventRepository(session).append(kind, key, version, actor, now, data)
        for hook in self.services.hooks:
            enqueue = getattr(hook, "enqueue_event", None)
            if enqueue is None:
                continue
            await enqueue(
                session,
                kind,
                dict(webhook_data),
                now=now,
                actor=actor,
                event_id=record.event_id,
                definition_key=key,
            )
        return record

    async def _versions(self, session: AsyncSession, key: str) -> list[DefinitionRecord]:
        versions = await DefinitionRepository(session).list_versions(key)
        if not versions:
            raise NotFound("definition", key)
        return versions

    async def _record(self, session: AsyncSession, key: str, version: int) -> DefinitionRecord:
        record = await DefinitionRepository(session).get(key, version)
        if record is None:
            raise NotFound("definition", f"{key}@{version}")
        return record

    # --- reading ----------------------------------------------------------------------------------------

    async def versions(self, ctx: CallContext, key: str) -> list[VersionView]:
        """Every version of ``key``, oldest first, with how many projects run on each.

        Raises:
            NotFound: the key has no version.
        """
        async with self.services.database.reader() as session:
            versions = await self._versions(session, key)
            counts = await WorkflowEventRepository(session).projects_on(key)
        return [_version_view(record, counts.get(record.version, 0)) for record in versions]

    async def definition(
        self, ctx: CallContext, key: str, version: int | None = None
    ) -> tuple[VersionView, Definition]:
        """One version (None: the active one) and its definition.

        Raises:
            NotFound: no such version (or no active version).
        """
        async with self.services.database.reader() as session:
            repository = DefinitionRepository(session)
            record = await (repository.active(key) if version is None else repository.get(key, version))
            if record is None:
                raise NotFound("definition", key if version is None else f"{key}@{version}")
            definition = await self.services.registry.definition(session, key, record.version)
        return _version_view(record), definition

    async def diff(
        self, ctx: CallContext, key: str, from_version: int | None = None, to_version: int | None = None
    ) -> DefinitionDiff:
        """What changed from ``from_version`` to ``to_version`` (defaults: the latest version, and the one
        before it).

        Raises:
            NotFound: the key or a version does not exist.
        """
        async with self.services.database.reader() as session:
            versions = await self._versions(session, key)
            to_version = to_version if to_version is not None else versions[-1].version
            if from_version is None:
                earlier = [v.version for v in versions if v.version < to_version]
                from_version = earlier[-1] if earlier else to_version
            old = await self._definition(session, key, from_version)
            new = await self._definition(session, key, to_version)
        return diff_definitions(old, new, from_version=from_version, to_version=to_version)

    async def _definition(self, session: AsyncSession, key: str, version: int) -> Definition:
        await self._record(session, key, version)
        return await self.services.registry.definition(session, key, version)

    async def events(
        self, ctx: CallContext, key: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[WorkflowEventView]:
        """Definition-level events after ``after_id`` (of one key, or all), oldest first."""
        async with self.services.database.reader() as session:
            records = await WorkflowEventRepository(session).list(key, after_id, limit)
        return [_event_view(record) for record in records]

    # --- publishing -------------------------------------------------------------------------------------

    async def validate(self, ctx: CallContext, text: str | bytes, *, name: str = "workflow.yaml") -> PublishResult:
        """Validate a definition text and compare it with the key's active version; nothing is stored (any
        caller may).

        Raises:
            InvalidDefinition: every problem of the text.
        """
        return await self.publish(ctx, text, name=name, validate_only=True)

    async def publish(
        self,
        ctx: CallContext,
        text: str | bytes,
        *,
        name: str = "workflow.yaml",
        change_note: str | None = None,
        activate: bool = True,
        validate_only: bool = False,
        published_by: str | None = None,
    ) -> PublishResult:
        """Publish a definition text as the next version of its key (see the module docstring);
        ``validate_only`` checks and compares it and stores nothing (any caller may).

        Raises:
            Forbidden: the caller is not an administrator (and ``validate_only`` is false).
            InvalidDefinition: every problem of the text; nothing is stored.
        """
        principal = ctx.principal
        loaded = load_text(text, name)
        definition = loaded.definition
        key = definition.key
        summary = summary_of(definition)
        if validate_only:  # stores nothing: any editor may check a text (and see what it would change)
            async with self.services.database.reader() as session:
                repository = DefinitionRepository(session)
                same = await repository.by_hash(key, loaded.content_hash)
                base = await repository.active(key) or await _latest(repository, key)
                diff = await self._diff_with(session, base, definition)
            return PublishResult(
                status="validated",
                key=key,
                content_hash=loaded.content_hash,
                summary=summary,
                version=_version_view(same) if same else None,
                compared_with=base.version if base else None,
                diff=diff.as_json(ctx.lang) if diff else None,
            )
        self._require_admin(principal, key, "publish")
        author = published_by or principal.id
        # Two publishers of one key race for the next number: the loser's insert hits the primary key and
        # is retried, seeing the winner's version (or its identical content) this time.
        for attempt in range(3):
            try:
                async with self.services.database.transaction() as session:
                    return await self._publish(session, ctx, loaded, author, change_note, activate, summary)
            except IntegrityError:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _publish(
        self,
        session: AsyncSession,
        ctx: CallContext,
        loaded: LoadedDefinition,
        author: str,
        change_note: str | None,
        activate: bool,
        summary: DefinitionSummary,
    ) -> PublishResult:
        definition = loaded.definition
        key = definition.key
        events = WorkflowEventRepository(session)
        await events.lock_key(key)
        repository = DefinitionRepository(session)
        same = await repository.by_hash(key, loaded.content_hash)
        if same is not None:
            return PublishResult(
                status="unchanged",
                key=key,
                content_hash=loaded.content_hash,
                summary=summary,
                version=_version_view(same),
            )
        previous_active = await repository.active(key)
        base = previous_active or await _latest(repository, key)
        diff = await self._diff_with(session, base, definition)
        version = await repository.next_version(key)
        now = self.now()
        record = await repository.add(
            key=key,
            version=version,
            content_hash=loaded.content_hash,
            yaml_text=loaded.text,
            title=definition.title,
            published_by=author,
            change_note=change_note,
            active=activate,
            now=now,
        )
        # Not registered in the engine here: the transaction may still roll back. The first use loads it.
        diff_json = diff.as_json(ctx.lang) if diff else None
        data = {
            "content_hash": loaded.content_hash,
            "title": definition.title,
            "change_note": change_note,
            "active": activate,
            "previous_version": base.version if base else None,
            "diff_totals": diff.totals() if diff else None,
            "diff_summary": diff.summary_line("zh") if diff else None,
        }
        await self._emit(
            session,
            "workflow.published",
            key,
            version,
            author,
            now,
            data,
            {"definition_key": key, "definition_version": version, **data},
        )
        if activate:
            previous = previous_active.version if previous_active else None
            await self._emit_activated(session, key, version, previous, author, now)
        return PublishResult(
            status="published",
            key=key,
            content_hash=loaded.content_hash,
            summary=summary,
            version=_version_view(record),
            compared_with=base.version if base else None,
            diff=diff_json,
        )

    async def _diff_with(
        self, session: AsyncSession, base: DefinitionRecord | None, definition: Definition
    ) -> DefinitionDiff | None:
        if base is None:
            return None
        old = await self.services.registry.definition(session, base.key, base.version)
        return diff_definitions(old, definition, from_version=base.version)

    async def _emit_activated(
        self, session: AsyncSession, key: str, version: int, previous: int | None, actor: str, now: datetime
    ) -> None:
        data = {"previous_version": previous}
        # The webhook payload of a type without its own model is the generic one: subject and details.
        generic = {
            "subject_kind": "definition",
            "subject_id": f"{key}@{version}",
            "details": {"version": version, **data},
        }
        await self._emit(session, "workflow.activated", key, version, actor, now, data, generic)

    async def activate(self, ctx: CallContext, key: str, version: int) -> VersionView:
        """Make ``version`` the version new projects of ``key`` start on; running projects are not moved.

        Raises:
            Forbidden: the caller is not an administrator.
            NotFound: no such version.
        """
        self._require_admin(ctx.principal, key, "activate")
        async with self.services.database.transaction() as session:
            repository = DefinitionRepository(session)
            await WorkflowEventRepository(session).lock_key(key)
            record = await self._record(session, key, version)
            previous = await repository.active(key)
            if previous is not None and previous.version == version:
                return _version_view(record)
            await WorkflowEventRepository(session).activate(key, version)
            await self._emit_activated(
                session, key, version, previous.version if previous else None, ctx.principal.id, self.now()
            )
            return _version_view(replace(record, active=True))

    async def publish_file(
        self,
        ctx: CallContext,
        path: Path,
        *,
        change_note: str | None = None,
        activate: bool = True,
        validate_only: bool = False,
    ) -> PublishResult:
        """Publish the definition file ``path`` (locations in its problems name the file).

        Raises:
            Forbidden, InvalidDefinition: as :meth:`publish`.
        """
        try:
            loaded = load_definition_file(path)
        except (YamlProblems, DefinitionError) as exc:
            raise InvalidDefinition(exc.problems()) from None
        return await self.publish(
            ctx,
            loaded.text,
            name=str(path),
            change_note=change_note if change_note is not None else f"published from {path.name}",
            activate=activate,
            validate_only=validate_only,
        )

    # --- migrating --------------------------------------------------------------------------------------

    async def _check_request(
        self, session: AsyncSession, ctx: CallContext, key: str, request: MigrationRequest
    ) -> tuple[CompiledDefinition, CompiledDefinition]:
        self._require_admin(ctx.principal, key, "migrate")
        registry = self.services.registry
        await self._versions(session, key)
        to_version = request.to_version
        if to_version is None:
            active = await DefinitionRepository(session).active(key)
            if active is None:
                raise NotFound("definition", key)
            to_version = active.version
        problems: list[Problem] = []
        if request.from_version == to_version:
            problems.append(Problem.of("workflow.same_versions", _where("to_version"), version=to_version))
        for name in ("project_ids", "states", "units"):
            value = getattr(request, name)
            if value is not None and len(value) > MAX_FILTER:
                problems.append(
                    Problem.of("workflow.filter_too_long", _where("filter", name), name=name, max=MAX_FILTER)
                )
        if problems:
            raise InvalidInput(problems)
        await self._record(session, key, request.from_version)
        await self._record(session, key, to_version)
        source = await registry.compiled(session, key, request.from_version)
        target = await registry.compiled(session, key, to_version)
        for state, side in state_map_problems(source.definition, target.definition, request.state_map):
            if side == "from":
                problems.append(
                    Problem.of(
                        "workflow.map_unknown_from", _where("state_map", state), state=state, version=source.version
                    )
                )
            else:
                problems.append(
                    Problem.of(
                        "workflow.map_unknown_to",
                        _where("state_map", state),
                        state=state,
                        target=request.state_map[state],
                        version=target.version,
                    )
                )
        if problems:
            raise InvalidInput(problems)
        return source, target

    async def preview_migration(self, ctx: CallContext, key: str, request: MigrationRequest) -> MigrationPreview:
        """A dry run: for every project the request selects, whether it can move and what would change, or
        every reason it cannot. Nothing is stored.

        Raises:
            Forbidden: the caller is not an administrator.
            NotFound: the key or a version does not exist.
            InvalidInput: the same version twice, or a state map naming unknown states.
        """
        services = self.services
        actor = ctx.principal.actor
        now = self.now()
        async with services.database.reader() as session:
            source, target = await self._check_request(session, ctx, key, request)
            migrations = MigrationRepository(session)
            selected = await migrations.select_projects(
                key, source.version, project_ids=request.project_ids, states=request.states, units=request.units
            )
            on_target = await migrations.select_projects(
                key, target.version, project_ids=request.project_ids, states=None, units=request.units
            )
            projects = ProjectRepository(session)
            items: list[MigrationItem] = []
            for chosen in selected:
                record = await projects.get(chosen.id)
                if record is None:
                    continue
                instance = await projects.instance(record, source.definition)
                moved = migrate(services.engine, instance, target, request.state_map, actor, now)
                items.append(
                    MigrationItem(
                        project_id=record.id,
                        name=record.name,
                        from_state=record.state,
                        to_state=moved.to_state,
                        movable=moved.movable,
                        blockers=[_blocker_view(b) for b in moved.blockers],
                        opened_tasks=list(moved.opened),
                        dropped_tasks=list(moved.dropped),
                        deadlines_redated=_migration_detail(moved)["deadlines_redated"],
                    )
                )
        diff = diff_definitions(source.definition, target.definition)
        target_states = target.definition.lookup("states")
        suggested = {
            old: new
            for old, new in diff.state_renames.items()
            if old not in request.state_map and old not in target_states
        }
        movable = sum(1 for item in items if item.movable)
        return MigrationPreview(
            key=key,
            from_version=source.version,
            to_version=target.version,
            state_map=dict(request.state_map),
            selection=request.selection(),
            total=len(items),
            movable=movable,
            blocked=len(items) - movable,
            already_on_target=len(on_target),
            suggested_state_map=suggested,
            items=items,
        )

    async def start_migration(self, ctx: CallContext, key: str, request: MigrationRequest) -> MigrationRunView:
        """Create a run: select the projects and record one pending outcome each (nothing moves yet; see
        :meth:`run_migration`).

        Raises:
            Forbidden, NotFound, InvalidInput: as :meth:`preview_migration`.
        """
        async with self.services.database.transaction() as session:
            source, target = await self._check_request(session, ctx, key, request)
            migrations = MigrationRepository(session)
            selected = await migrations.select_projects(
                key, source.version, project_ids=request.project_ids, states=request.states, units=request.units
            )
            run = await migrations.create_run(
                key,
                source.version,
                target.version,
                request.state_map,
                request.selection(),
                ctx.principal.id,
                self.now(),
                selected,
            )
            if run.status == "finished":
                await self._emit_migrated(session, run, {}, ctx.principal.id)
            return await self._run_view(session, run, with_outcomes=False)

    async def run_migration(
        self,
        ctx: CallContext,
        key: str,
        run_id: str,
        *,
        before_commit: BeforeCommit | None = None,
        progress: Progress | None = None,
        limit: int | None = None,
    ) -> MigrationRunView:
        """Move the run's pending projects, each in its own transaction, in the run's order; finish the run
        when none is left. Running it again after an interruption continues where it stopped.

        Args:
            before_commit: awaited with each moved or blocked project's id after its rows are written and
                before they commit (a test injects a crash here).
            progress: called with each project's outcome after it commits.
            limit: move at most this many projects now (None: all pending ones).

        Raises:
            Forbidden: the caller is not an administrator.
            NotFound: no such run (of this key).
        """
        self._require_admin(ctx.principal, key, "migrate")
        run = await self._get_run(key, run_id)
        done = 0
        while limit is None or done < limit:
            async with self.services.database.reader() as session:
                batch = await MigrationRepository(session).outcomes(run.id, status="pending", limit=100)
            if not batch:
                break
            for outcome in batch:
                if limit is not None and done >= limit:
                    break
                settled = await self._migrate_one(ctx, run, outcome.project_id, before_commit)
                done += 1
                if settled is not None and progress is not None:
                    progress(settled)
        async with self.services.database.transaction() as session:
            migrations = MigrationRepository(session)
            if await migrations.finish_if_done(run.id, self.now()):
                await self._emit_migrated(session, run, await migrations.counts(run.id), ctx.principal.id)
            current = await migrations.get_run(run.id)
            assert current is not None
            return await self._run_view(session, current, with_outcomes=True)

    async def migrate(
        self,
        ctx: CallContext,
        key: str,
        request: MigrationRequest,
        *,
        before_commit: BeforeCommit | None = None,
        progress: Progress | None = None,
    ) -> MigrationRunView:
        """Create a run and move its projects (:meth:`start_migration` then :meth:`run_migration`)."""
        run = await self.start_migration(ctx, key, request)
        return await self.run_migration(ctx, key, run.id, before_commit=before_commit, progress=progress)

    async def _migrate_one(
        self, ctx: CallContext, run: MigrationRunRecord, project_id: str, before_commit: BeforeCommit | None
    ) -> OutcomeRecord | None:
        """Move one project of the run in one transaction; its settled outcome (None if another process
        settled it first)."""
        services = self.services
        principal = ctx.principal
        actor = Actor(id=principal.id, roles=principal.roles, unit=principal.unit_id)
        async with services.database.transaction() as session:
            projects = ProjectRepository(session)
            migrations = MigrationRepository(session)
            # Lock first, then read the outcome: a second process resuming the same run waits here and then
            # sees the outcome already settled.
            record = await projects.lock(project_id)
            outcome = await migrations.outcome(run.id, project_id)
            if record is None or outcome is None or outcome.status != "pending":
                return None
            now = self.now()
            if record.definition_key != run.definition_key or record.definition_version != run.from_version:
                detail = {"reason": "not_on_source_version", "definition_version": record.definition_version}
                await migrations.settle(run.id, project_id, "skipped", now, detail=detail)
                return await migrations.outcome(run.id, project_id)
            source = await services.registry.compiled(session, run.definition_key, run.from_version)
            target = await services.registry.compiled(session, run.definition_key, run.to_version)
            instance = await projects.instance(record, source.definition)
            moved = migrate(services.engine, instance, target, run.state_map, actor, now)
            if not moved.movable:
                blockers = [_blocker_json(b) for b in moved.blockers]
                await migrations.settle(run.id, project_id, "blocked", now, to_state=moved.to_state, blockers=blockers)
            else:
                assert moved.instance is not None and moved.result is not None
                definition = target.definition
                # Saved as the target's, already in its new state: the hooks see the new version, and the step
                # rows, which rebind rewrites below from the target's state, are left alone by the save.
                rebound = replace(record, definition_version=target.version, state=moved.instance.state)
                await services._save_change(
                    session, rebound, moved.instance, definition, moved.result, moved.result.events, actor.id, now
                )
                state = definition.state(moved.instance.state)
                await migrations.rebind(project_id, target.version, state.steps, moved.departments)
                await migrations.drop(
                    project_id,
                    task_ids=moved.dropped,
                    notice_ids=moved.dropped_notices,
                    commitment_ids=moved.dropped_commitments,
                    deadline_ids=moved.dropped_deadlines,
                )
                detail = {**_migration_detail(moved), "run_id": run.id}
                await migrations.settle(
                    run.id, project_id, "migrated", now, to_state=moved.instance.state, detail=detail
                )
            if before_commit is not None:
                await before_commit(project_id)
            return await migrations.outcome(run.id, project_id)

    async def _emit_migrated(
        self, session: AsyncSession, run: MigrationRunRecord, counts: Mapping[str, int], actor: str
    ) -> None:
        data = {
            "run_id": run.id,
            "from_version": run.from_version,
            "to_version": run.to_version,
            "state_map": run.state_map,
            "selection": run.selection,
            "counts": dict(counts),
        }
        await self._emit(
            session,
            "workflow.migrated",
            run.definition_key,
            run.to_version,
            actor,
            self.now(),
            data,
            {"definition_key": run.definition_key, "definition_version": run.to_version, **data},
        )

    async def _get_run(self, key: str, run_id: str) -> MigrationRunRecord:
        async with self.services.database.reader() as session:
            run = await MigrationRepository(session).get_run(run_id)
        if run is None or run.definition_key != key:
            raise NotFound("migration", run_id)
        return run

    async def _run_view(
        self, session: AsyncSession, run: MigrationRunRecord, *, with_outcomes: bool
    ) -> MigrationRunView:
        migrations = MigrationRepository(session)
        counts = await migrations.counts(run.id)
        full = {status: counts.get(status, 0) for status in ("pending", "migrated", "blocked", "skipped")}
        outcomes = [_outcome_view(o) for o in await migrations.outcomes(run.id)] if with_outcomes else []
        return MigrationRunView(
            id=run.id,
            key=run.definition_key,
            from_version=run.from_version,
            to_version=run.to_version,
            state_map=run.state_map,
            selection=run.selection,
            status=run.status,  # type: ignore[arg-type]
            created_by=run.created_by,
            created_at=run.created_at,
            updated_at=run.updated_at,
            finished_at=run.finished_at,
            total=sum(full.values()),
            counts=full,
            outcomes=outcomes,
        )

    async def migration(self, ctx: CallContext, key: str, run_id: str) -> MigrationRunView:
        """A run, its progress and every outcome.

        Raises:
            Forbidden: the caller does not see every project (runs name projects of every unit).
            NotFound: no such run of this key.
        """
        self._require_county_wide(ctx.principal, key, "read_migration")
        async with self.services.database.reader() as session:
            run = await MigrationRepository(session).get_run(run_id)
            if run is None or run.definition_key != key:
                raise NotFound("migration", run_id)
            return await self._run_view(session, run, with_outcomes=True)

    async def migrations(self, ctx: CallContext, key: str) -> list[MigrationRunView]:
        """The runs of ``key``, newest first, with their progress (not their outcomes).

        Raises:
            Forbidden: the caller does not see every project.
        """
        self._require_county_wide(ctx.principal, key, "read_migration")
        async with self.services.database.reader() as session:
            runs = await MigrationRepository(session).list_runs(key)
            return [await self._run_view(session, run, with_outcomes=False) for run in runs]

    # --- bundled files ----------------------------------------------------------------------------------

    async def publish_bundled(
        self, ctx: CallContext, directory: Path, *, activate: bool = True, change_note: str | None = None
    ) -> list[PublishResult]:
        """Publish each definition file of ``directory`` whose content is not yet a version of its key (an
        operator's explicit act: start-up publishes only keys that have no version at all).

        Raises:
            Forbidden: the caller is not an administrator.
            InvalidDefinition: a file is not valid (nothing of any file is published).
        """
        loaded: list[tuple[Path, LoadedDefinition]] = []
        problems: list[Problem] = []
        for path in _definition_files(directory):
            try:
                loaded.append((path, load_definition_file(path)))
            except (YamlProblems, DefinitionError) as exc:
                problems.extend(exc.problems())
        if problems:
            raise InvalidDefinition(problems)
        results = []
        for path, one in loaded:
            note = change_note if change_note is not None else f"bundled {path.name}"
            results.append(await self.publish(ctx, one.text, name=str(path), change_note=note, activate=activate))
        return results


async def _latest(repository: DefinitionRepository, key: str) -> DefinitionRecord | None:
    versions = await repository.list_versions(key)
    return versions[-1] if versions else None


def _definition_files(directory: Path) -> list[Path]:
    """The definition files directly in ``directory`` (``*.yaml`` without schema files), as the loader and
    ``lifecycle validate`` read a folder."""
    return [
        path
        for path in sorted(directory.glob("*.yaml"))
        if path.is_file() and path.stem != "schema" and not path.name.endswith(".schema.yaml")
    ]
