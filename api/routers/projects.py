"""Projects: create, list, read, change header and fields; the procedure diagram of one project."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from api import workflow_reads
from api.concurrency import etag
from api.deps import LIST_INPUT, PROJECT_INPUT, Context, ProjectVersion, ServicesDep
from api.diagrams import diagram_response, wants_format
from api.idempotency import answer_response, claim_of
from api.routers import API_PREFIX
from api.schemas.common import ERROR_RESPONSES, MUTATION_RESPONSES, Page, unstorable_text
from api.schemas.projects import ProjectCreate, ProjectOut, ProjectPatch, created_answer
from api.schemas.workflows import ProjectDiagramOut
from lifecycle.errors import InvalidInput, Location, Problem
from lifecycle.services import CreateProject, ProjectChanges, ProjectFilters, ProjectView, decode_cursor
from lifecycle.services.answers import StoredAnswer
from lifecycle.spec.diagram import render_mermaid

router = APIRouter(prefix=API_PREFIX + "/projects", tags=["projects"], responses=ERROR_RESPONSES)


def _checked_cursor(cursor: str | None) -> str | None:
    """``cursor`` if it is one the services could have issued, else a 422 at ``query.cursor``.

    The services decode it, but a forged one could still carry an instant out of range (OverflowError) or
    an id no database stores (NUL): those must be the client's 422, not a 500.
    """
    if not cursor:
        return None
    bad = InvalidInput([Problem.of("page.cursor", Location("request", 0, 0, ("cursor",)))])
    try:
        _, project_id = decode_cursor(cursor)
    except InvalidInput:
        raise
    except (ArithmeticError, ValueError) as error:
        raise bad from error
    if unstorable_text(project_id):
        raise bad
    return cursor


@router.post("", response_model=ProjectOut, status_code=201, responses=MUTATION_RESPONSES)
@PROJECT_INPUT
async def create_project(body: ProjectCreate, ctx: Context, services: ServicesDep, request: Request) -> Response:
    """Create a project in its definition's initial state (its first item groups open, its clocks start)."""
    claim = claim_of(request)
    # With an Idempotency-Key, the answer is stored in the creation's own transaction (and sent as stored).
    stored = StoredAnswer[ProjectView](claim, created_answer) if claim is not None else None
    view = await services.create_project(ctx, CreateProject(**body.model_dump()), answer=stored)
    return answer_response((claim.answer() if claim is not None else None) or created_answer(view))


@router.get("", response_model=Page[ProjectOut])
@LIST_INPUT
async def list_projects(
    ctx: Context,
    services: ServicesDep,
    state: Annotated[str | None, Query(max_length=64, description="Current state id.")] = None,
    phase: Annotated[str | None, Query(max_length=64, description="Phase id.")] = None,
    step: Annotated[int | None, Query(ge=1, le=99, description="A work-plan step (1–11) being carried out.")] = None,
    unit: Annotated[str | None, Query(max_length=64, description="Lead or implementing unit.")] = None,
    leader: Annotated[str | None, Query(max_length=64, description="Lead county leader.")] = None,
    overdue: Annotated[bool | None, Query(description="Has (true) or has no (false) overdue deadline.")] = None,
    definition: Annotated[str | None, Query(max_length=64, description="Definition key.")] = None,
    light: Annotated[str | None, Query(pattern="^(green|yellow|red)$", description="Traffic light.")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in the name or the project code.")] = None,
    cursor: Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[ProjectOut]:
    """The projects the caller may see, filtered, oldest first, one page at a time."""
    filters = ProjectFilters(
        state=state,
        phase=phase,
        step=step,
        unit=unit,
        leader=leader,
        overdue=overdue,
        definition_key=definition,
        light=light,
        q=q,
    )
    page = await services.list_projects(ctx, filters, _checked_cursor(cursor), limit)
    return Page[ProjectOut](items=[ProjectOut.of(v) for v in page.items], next_cursor=page.next_cursor)


@router.get("/{project_id}", response_model=ProjectOut)
async def get_project(project_id: str, ctx: Context, services: ServicesDep, response: Response) -> ProjectOut:
    """One project, with its ETag for later changes."""
    view = await services.get_project(ctx, project_id)
    response.headers["ETag"] = etag(view.version)
    return ProjectOut.of(view)


@router.patch("/{project_id}", response_model=ProjectOut, responses=MUTATION_RESPONSES)
@PROJECT_INPUT
async def update_project(
    project_id: str,
    body: ProjectPatch,
    expected_version: ProjectVersion,
    ctx: Context,
    services: ServicesDep,
    response: Response,
) -> ProjectOut:
    """Change a project's header and data fields (If-Match required); only the members sent change."""
    changes = ProjectChanges(**body.model_dump(exclude_unset=True))
    view = await services.update_project(ctx, project_id, expected_version, changes)
    response.headers["ETag"] = etag(view.version)
    return ProjectOut.of(view)


@router.get(
    "/{project_id}/diagram",
    response_model=ProjectDiagramOut,
    tags=["workflows"],
    responses={200: {"content": {"image/svg+xml": {}, "text/vnd.mermaid": {}, "text/plain": {}}}},
)
async def project_diagram(
    project_id: str,
    ctx: Context,
    services: ServicesDep,
    request: Request,
    format: Annotated[
        Literal["json", "svg", "mermaid"] | None,
        Query(description="json (Mermaid in JSON), svg or mermaid; else from Accept (image/svg+xml, text/plain)."),
    ] = None,
) -> ProjectDiagramOut | Response:
    """The project's procedure as JSON with Mermaid, SVG or Mermaid text; its state and open items highlighted."""
    view = await services.get_project(ctx, project_id)
    open_tasks = [t.id for t in await services.list_tasks(ctx, project_id) if t.outcome == "open"]
    _, definition = await workflow_reads.definition_version(services, view.definition_key, view.definition_version)
    wanted = wants_format(request, format, "json", json=True)
    if wanted != "json":  # workflow administration: SVG drawn on the server, or Mermaid text
        caption = f"{view.name}：{view.state_title}" if ctx.lang != "en" else f"{view.name}: {view.state}"
        return diagram_response(
            request, definition, wanted, ctx.lang, state=view.state, tasks=open_tasks, caption=caption
        )
    return ProjectDiagramOut(
        project_id=view.id,
        definition_key=view.definition_key,
        definition_version=view.definition_version,
        state=view.state,
        open_tasks=open_tasks,
        mermaid=render_mermaid(definition, view.state, open_tasks, lang=ctx.lang),
    )
