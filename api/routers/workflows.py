"""Workflow definitions: the published procedures, their versions, YAML and diagrams; and their administration:
publish a new version, compare versions, choose the active one, move running projects to another version."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api import workflow_reads
from api.deps import Context, ServicesDep
from api.diagrams import DIAGRAM_RESPONSES, DiagramFormat, diagram_response, wants_format
from api.errors import ApiProblem
from api.routers import API_PREFIX
from api.schemas.common import ERROR_RESPONSES
from api.schemas.workflows import (
    DefinitionCounts,
    DiffOut,
    MigrationFilterIn,
    MigrationIn,
    PhaseOut,
    PublishIn,
    VersionDetail,
    VersionOut,
    VersionSummary,
    WorkflowOut,
)
from lifecycle.messages import register
from lifecycle.services.workflows import (
    MigrationPreview,
    MigrationRequest,
    MigrationRunView,
    PublishResult,
    VersionView,
    WorkflowAdmin,
    WorkflowEventView,
)
from lifecycle.spec.diagram import render_mermaid
from lifecycle.spec.models import Definition
from lifecycle.store import DefinitionRecord

router = APIRouter(prefix=API_PREFIX + "/workflows", tags=["workflows"], responses=ERROR_RESPONSES)

Key = Annotated[str, Path(max_length=64, description="The definition key, e.g. major-project.")]


def _version(record: DefinitionRecord) -> VersionOut:
    return VersionOut(
        key=record.key,
        version=record.version,
        title=record.title,
        content_hash=record.content_hash,
        active=record.active,
        published_at=record.published_at,
        published_by=record.published_by,
        change_note=record.change_note,
    )


def _summary(record: DefinitionRecord, definition: Definition) -> VersionSummary:
    return VersionSummary(
        **_version(record).model_dump(),
        initial=definition.initial,
        counts=DefinitionCounts(
            states=len(definition.states),
            transitions=len(definition.transitions),
            gates=len(definition.gates),
            groups=len(definition.task_groups),
            items=sum(len(group.items) for group in definition.task_groups),
            task_machines=len(definition.task_machines),
            clocks=len(definition.clocks),
            ladders=len(definition.ladders),
            obligations=len(definition.obligations),
        ),
        phases=[PhaseOut(id=p.id, title=p.title, title_en=p.title_en) for p in definition.phases],
    )


@router.get("", response_model=list[WorkflowOut])
async def list_workflows(ctx: Context, services: ServicesDep) -> list[WorkflowOut]:
    """Every published definition, with its active version's summary."""
    out = []
    for versions in await workflow_reads.list_definitions(services):
        active = next((v for v in versions if v.active), None)
        summary = None
        if active is not None:
            record, definition = await workflow_reads.definition_version(services, active.key, active.version)
            summary = _summary(record, definition)
        latest = active or versions[-1]
        out.append(WorkflowOut(key=latest.key, title=latest.title, versions=len(versions), active=summary))
    return out


@router.get("/{key}", response_model=WorkflowOut)
async def get_workflow(key: Key, ctx: Context, services: ServicesDep) -> WorkflowOut:
    """One definition: its active version's summary (states, transitions, groups, phases)."""
    versions = await workflow_reads.definition_versions(services, key)
    active = next((v for v in versions if v.active), None)
    summary = None
    if active is not None:
        summary = _summary(*await workflow_reads.definition_version(services, key, active.version))
    latest = active or versions[-1]
    return WorkflowOut(key=key, title=latest.title, versions=len(versions), active=summary)


@router.get("/{key}/versions", response_model=list[VersionOut])
async def list_versions(key: Key, ctx: Context, services: ServicesDep) -> list[VersionOut]:
    """Every published version of a definition, oldest first."""
    return [_version(record) for record in await workflow_reads.definition_versions(services, key)]


@router.get("/{key}/versions/{version}", response_model=VersionDetail)
async def get_version(
    key: Key,
    version: Annotated[int, Path(ge=1, le=1_000_000)],
    ctx: Context,
    services: ServicesDep,
) -> VersionDetail:
    """One version: its YAML text, summary counts, phases, and a Mermaid diagram of the project machine."""
    record, definition = await workflow_reads.definition_version(services, key, version)
    return VersionDetail(
        **_summary(record, definition).model_dump(),
        yaml=record.yaml_text,
        mermaid=render_mermaid(definition, lang=ctx.lang),
    )


# --- administration: publish, diff, activate, migrate, draw -------------------------------------------------

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"})
"""Body types that carry a definition's YAML as it is."""

register(
    {
        "api.unsupported_media_type": (
            "请求体类型不受支持：流程定义应以 application/yaml、text/yaml 或 application/json 提交",
            "unsupported body type: send the definition as application/yaml, text/yaml or application/json",
        ),
    }
)

_PUBLISH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}, "example": "key: mini\ntitle: 测试流程\n..."},
            "text/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": PublishIn.model_json_schema()},
        },
    }
}


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _publish_input(request: Request) -> PublishIn | bytes:
    """The body of a publish request: the JSON document, or the YAML bytes."""
    media = _media_type(request)
    body = await request.body()
    if media == "application/json":
        try:
            return PublishIn.model_validate_json(body)
        except ValidationError as error:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
            ) from None
    if media in YAML_TYPES:
        return body
    raise ApiProblem(415, "api.unsupported_media_type")


@router.post(
    "",
    response_model=PublishResult,
    status_code=201,
    openapi_extra=_PUBLISH_BODY,
    responses={
        200: {"description": "Validated only, or this content already is a version (nothing stored)."},
        415: {"description": "The body is neither YAML nor JSON."},
    },
)
async def publish_workflow(
    request: Request,
    ctx: Context,
    services: ServicesDep,
    response: Response,
    validate_only: Annotated[bool, Query(description="Only check the text and show the diff.")] = False,
    activate: Annotated[bool | None, Query(description="Activate the new version (default true).")] = None,
    change_note: Annotated[str | None, Query(max_length=2000, description="Why this version.")] = None,
    filename: Annotated[str | None, Query(max_length=200, description="Shown in error locations.")] = None,
) -> PublishResult:
    """Publish a definition (admin): validate it, store it as the next version, activate it by default."""
    given = await _publish_input(request)
    if isinstance(given, PublishIn):
        text: str | bytes = given.yaml
        note = given.change_note if given.change_note is not None else change_note
        wanted = given.activate if activate is None else activate
        only = given.validate_only or validate_only
    else:
        text, note, wanted, only = given, change_note, True if activate is None else activate, validate_only
    result = await WorkflowAdmin(services).publish(
        ctx, text, name=filename or "workflow.yaml", change_note=note, activate=wanted, validate_only=only
    )
    if result.status == "published" and result.version is not None:
        response.headers["Location"] = f"{API_PREFIX}/workflows/{result.key}/versions/{result.version.version}"
    else:
        response.status_code = 200
    return result


@router.get("/{key}/diff", response_model=DiffOut)
async def diff_versions(
    key: Key,
    ctx: Context,
    services: ServicesDep,
    from_version: Annotated[int | None, Query(alias="from", ge=1, le=1_000_000, description="Default: to − 1.")] = None,
    to_version: Annotated[int | None, Query(alias="to", ge=1, le=1_000_000, description="Default: the latest.")] = None,
) -> DiffOut:
    """What changed between two versions: states, transitions, gates, items, clocks… and a Chinese text."""
    diff = await WorkflowAdmin(services).diff(ctx, key, from_version, to_version)
    return DiffOut.model_validate(diff.as_json(ctx.lang))


@router.post("/{key}/versions/{version}/activate", response_model=VersionView)
async def activate_version(
    key: Key, version: Annotated[int, Path(ge=1, le=1_000_000)], ctx: Context, services: ServicesDep
) -> VersionView:
    """Make a version the one new projects start on (admin); running projects stay on theirs."""
    return await WorkflowAdmin(services).activate(ctx, key, version)


@router.get("/{key}/versions/{version}/diagram", response_class=Response, responses=DIAGRAM_RESPONSES)
async def version_diagram(
    key: Key,
    version: Annotated[int, Path(ge=1, le=1_000_000)],
    request: Request,
    ctx: Context,
    services: ServicesDep,
    format: Annotated[DiagramFormat | None, Query(description="svg or mermaid (else from Accept; svg).")] = None,
) -> Response:
    """A version's project machine as SVG (drawn on the server) or Mermaid text."""
    view, definition = await WorkflowAdmin(services).definition(ctx, key, version)
    caption = f"{definition.title}（{key} 第 {view.version} 版）" if ctx.lang != "en" else None
    return diagram_response(request, definition, wants_format(request, format, "svg"), ctx.lang, caption=caption)


@router.get("/{key}/events", response_model=list[WorkflowEventView])
async def workflow_events(
    key: Key,
    ctx: Context,
    services: ServicesDep,
    after: Annotated[int, Query(ge=0, description="Events after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[WorkflowEventView]:
    """Definition-level events of a key: versions published and activated, migrations finished."""
    return await WorkflowAdmin(services).events(ctx, key, after, limit)


def _request(body: MigrationIn) -> MigrationRequest:
    selection = body.filter or MigrationFilterIn()
    return MigrationRequest(
        from_version=body.from_version,
        to_version=body.to_version,
        state_map=dict(body.state_map),
        project_ids=selection.project_ids,
        states=selection.states,
        units=selection.units,
    )


@router.post(
    "/{key}/migrations",
    response_model=MigrationRunView | MigrationPreview,
    status_code=201,
    responses={200: {"model": MigrationPreview, "description": "A dry run: the verdict per project."}},
)
async def migrate_projects(
    key: Key, body: MigrationIn, ctx: Context, services: ServicesDep, response: Response
) -> MigrationRunView | MigrationPreview:
    """Move running projects to another version (admin); ``dry_run`` says who can move and why not."""
    admin = WorkflowAdmin(services)
    if body.dry_run:
        response.status_code = 200
        return await admin.preview_migration(ctx, key, _request(body))
    run = await admin.start_migration(ctx, key, _request(body))
    response.headers["Location"] = f"{API_PREFIX}/workflows/{key}/migrations/{run.id}"
    return await admin.run_migration(ctx, key, run.id)


@router.get("/{key}/migrations", response_model=list[MigrationRunView])
async def list_migrations(key: Key, ctx: Context, services: ServicesDep) -> list[MigrationRunView]:
    """The migration runs of a definition, newest first, with their progress."""
    return await WorkflowAdmin(services).migrations(ctx, key)


RunId = Annotated[str, Path(max_length=36, description="The run's id.")]


@router.get("/{key}/migrations/{run_id}", response_model=MigrationRunView)
async def get_migration(key: Key, run_id: RunId, ctx: Context, services: ServicesDep) -> MigrationRunView:
    """A migration run: progress by outcome, and what it did with each project."""
    return await WorkflowAdmin(services).migration(ctx, key, run_id)


@router.post("/{key}/migrations/{run_id}/resume", response_model=MigrationRunView)
async def resume_migration(key: Key, run_id: RunId, ctx: Context, services: ServicesDep) -> MigrationRunView:
    """Continue an interrupted run with the projects it has not reached yet (admin)."""
    return await WorkflowAdmin(services).run_migration(ctx, key, run_id)
