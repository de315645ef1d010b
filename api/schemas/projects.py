"""Projects (重大项目): what a caller sends to create or change one; the answer is the service's view."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field

from api.concurrency import etag
from api.routers import API_PREFIX
from api.schemas.common import RequestModel
from lifecycle.services import ProjectView
from lifecycle.services.answers import RenderedAnswer

Money = Annotated[
    Decimal,
    Field(
        decimal_places=4,
        description='万元, as a decimal string ("1234.5") or a number; at most 4 decimals.',
        examples=["52000.00"],
    ),
]
Text64 = Annotated[str, Field(max_length=64)]


class ProjectCreate(RequestModel):
    """A new project (项目入库) on a published definition."""

    definition_key: str = Field(min_length=1, max_length=64, examples=["major-project"])
    definition_version: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Default: the definition's active version."
    )
    name: str = Field(min_length=1, max_length=200, examples=["巫山县某康养旅游综合体项目"])
    code: str | None = Field(
        default=None, max_length=64, description="项目代码 (GB/T 40058-2021), e.g. 2024-500237-48-01-123456."
    )
    source_category: str = Field(
        max_length=32, description="项目范围: 规划项目, 年度重大助推项目, 国家新增专项, 招商引资签约项目."
    )
    lead_leader: Text64 | None = Field(default=None, description="牵头县领导.")
    lead_unit: Text64 = Field(description="牵头责任单位.")
    implementing_unit: Text64 | None = Field(default=None, description="项目实施单位.")
    township: Text64 | None = Field(default=None, description="所在乡镇（街道）.")
    total_investment: Money | None = None
    planned_start: date | None = None
    planned_end: date | None = None
    fields: dict[str, Any] = Field(default_factory=dict, description="Data fields the definition declares.")


class ProjectPatch(RequestModel):
    """Changes to a project's header and data fields: only the members sent change (``null`` clears one);
    ``fields`` are merged into the project's data fields."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    code: str | None = Field(default=None, max_length=64)
    source_category: str | None = Field(default=None, max_length=32)
    lead_leader: Text64 | None = None
    lead_unit: Text64 | None = None
    implementing_unit: Text64 | None = None
    township: Text64 | None = None
    total_investment: Money | None = None
    planned_start: date | None = None
    planned_end: date | None = None
    fields: dict[str, Any] | None = None


class ProjectOut(ProjectView):
    """A project as answered: header, definition, state with titles, phase, steps, fields, version.

    ``total_investment`` is always written with its four stored decimals (``"5000.5000"``), whether the
    project was just created from ``5000.5`` or ``"5e3"`` or read back from the database, so equal amounts
    look equal (the view's own JSON form, :class:`~lifecycle.services.views.ProjectView`).
    """

    @classmethod
    def of(cls, view: ProjectView) -> ProjectOut:
        """The answer for a service's view."""
        # The view was validated when the services built it: take its values as they are (a dump and a
        # validation would rebuild every nested model for nothing).
        return cls.model_construct(_fields_set=view.model_fields_set, **dict(view))


def project_answer(view: ProjectView) -> RenderedAnswer:
    """The answer to a change of a project: 200, the project as :class:`ProjectOut` JSON (what FastAPI sends
    for ``response_model=ProjectOut``) and its ETag. The service renders it inside the change's transaction
    when the answer is stored there for an ``Idempotency-Key`` (:mod:`lifecycle.services.answers`)."""
    # The view's JSON is ProjectOut's (a subclass adding nothing to it): no copy into a ProjectOut first.
    body = view.__pydantic_serializer__.to_json(view, by_alias=True)
    return 200, (("content-type", "application/json"), ("etag", etag(view.version))), body


def created_answer(view: ProjectView) -> RenderedAnswer:
    """The answer to creating a project: 201, the project as :class:`ProjectOut` JSON, its ETag and where it
    lives (``Location``); rendered as :func:`project_answer` is."""
    _, headers, body = project_answer(view)
    return 201, (*headers, ("location", f"{API_PREFIX}/projects/{view.id}")), body
