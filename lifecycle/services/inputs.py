"""What callers send to the services: a new project, changes to one, and list filters.

pydantic checks the types; :func:`check_header` checks the domain rules (the national project code format,
the 项目范围 categories, lengths, dates in order) and reports every problem at once as
:class:`~lifecycle.errors.InvalidInput`, each with the JSON path of the offending value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lifecycle.errors import Location, Problem
from lifecycle.messages import register
from lifecycle.store.models import SOURCE_CATEGORIES

register(
    {
        "project.code_format": (
            "项目代码“{project_code}”格式不对：应为 24 位“年份-6位地区码-2位行业码-2位类型码-6位顺序码及校验码”，"
            "如 2024-500237-48-01-123456",
            "project code '{project_code}' is malformed: it must be 24 characters "
            "YYYY-RRRRRR-MM-TT-NNNNNN, e.g. 2024-500237-48-01-123456",
        ),
        "project.code_year": (
            "项目代码“{project_code}”的年份 {year} 不在 1990–2100 之间",
            "project code '{project_code}': year {year} is not between 1990 and 2100",
        ),
        "project.code_taken": (
            "项目代码“{project_code}”已被其他项目使用",
            "project code '{project_code}' is used by another project",
        ),
        "project.source_category": ("项目范围只能取：{choices}", "source_category must be one of: {choices}"),
        "project.text_required": ("“{field}”必须填写", "'{field}' is required"),
        "project.text_too_long": ("“{field}”超过 {limit} 个字符", "'{field}' is longer than {limit} characters"),
        "project.investment_negative": ("总投资不能为负数", "total_investment cannot be negative"),
        "project.investment_too_large": (
            "总投资超出范围（最多 14 位整数、4 位小数，单位万元）",
            "total_investment is out of range (at most 14 digits before and 4 after the point, in 万元)",
        ),
        "project.dates_order": (
            "计划完工日期 {end} 早于计划开工日期 {start}",
            "planned_end {end} is before planned_start {start}",
        ),
    }
)

PROJECT_CODE = re.compile(r"^(\d{4})-(\d{6})-(\d{2})-(\d{2})-([0-9A-Z]{6})$")
"""项目代码 (GB/T 40058-2021): year – region – supervising ministry – project type – 5 serial characters and
1 check character. The check algorithm is not verified, so the check character is not computed here."""

_LIMITS = {
    "name": 200,
    "code": 24,
    "lead_leader": 64,
    "lead_unit": 64,
    "implementing_unit": 64,
    "township": 64,
}


def _where(*path: str | int) -> Location:
    return Location(file="request", line=0, column=0, path=path)


class CreateProject(BaseModel):
    """A new project (项目入库).

    ``definition_version`` None means the definition's active version. ``fields`` are the definition's
    data fields. A header value whose name the definition also declares as a field (``total_investment``,
    ``planned_start``, ``planned_end``) is the same value: it is passed to the engine as that field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    definition_key: str = Field(max_length=64)
    definition_version: int | None = Field(default=None, ge=1)
    name: str
    code: str | None = None
    source_category: str
    lead_leader: str | None = None
    lead_unit: str
    implementing_unit: str | None = None
    township: str | None = None
    total_investment: Decimal | None = None
    planned_start: date | None = None
    planned_end: date | None = None
    fields: dict[str, Any] = Field(default_factory=dict)

    def header_values(self) -> dict[str, Any]:
        """The header columns given, by name."""
        return {name: getattr(self, name) for name in HEADER_FIELDS}


class ProjectChanges(BaseModel):
    """Changes to a project's header and data fields: only the attributes given are changed (None clears
    one); ``fields`` are merged into the project's data fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    code: str | None = None
    source_category: str | None = None
    lead_leader: str | None = None
    lead_unit: str | None = None
    implementing_unit: str | None = None
    township: str | None = None
    total_investment: Decimal | None = None
    planned_start: date | None = None
    planned_end: date | None = None
    fields: dict[str, Any] | None = None

    def header_values(self) -> dict[str, Any]:
        """The header columns given (including those given as None), by name."""
        return {name: getattr(self, name) for name in HEADER_FIELDS if name in self.model_fields_set}


HEADER_FIELDS = (
    "name",
    "code",
    "source_category",
    "lead_leader",
    "lead_unit",
    "implementing_unit",
    "township",
    "total_investment",
    "planned_start",
    "planned_end",
)

REQUIRED_HEADER = ("name", "source_category", "lead_unit")


class ProjectFilters(BaseModel):
    """Filters of a project list; None means "any".

    Attributes:
        step: a step of the work plan (1–11) the project is carrying out.
        unit: lead unit or implementing unit.
        leader: lead county leader.
        overdue: True — has an open deadline past due; False — has none.
        light: traffic light (green / yellow / red).
        q: text contained in the name or the project code.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: str | None = None
    phase: str | None = None
    step: int | None = Field(default=None, ge=1, le=99)
    unit: str | None = None
    leader: str | None = None
    overdue: bool | None = None
    definition_key: str | None = None
    light: str | None = None
    q: str | None = Field(default=None, max_length=200)


def check_header(values: Mapping[str, Any]) -> list[Problem]:
    """Every problem with the header values given (only those present are checked)."""
    problems: list[Problem] = []
    for name, limit in _LIMITS.items():
        if name not in values:
            continue
        value = values[name]
        if name in REQUIRED_HEADER and (value is None or not str(value).strip()):
            problems.append(Problem.of("project.text_required", _where(name), field=name))
        elif isinstance(value, str) and len(value) > limit:
            problems.append(Problem.of("project.text_too_long", _where(name), field=name, limit=limit))
    code = values.get("code")
    if code is not None:
        match = PROJECT_CODE.match(code)
        if match is None:
            problems.append(Problem.of("project.code_format", _where("code"), project_code=code))
        elif not 1990 <= int(match.group(1)) <= 2100:
            problems.append(Problem.of("project.code_year", _where("code"), project_code=code, year=match.group(1)))
    if "source_category" in values and values["source_category"] not in SOURCE_CATEGORIES:
        if values["source_category"] is None:
            problems.append(Problem.of("project.text_required", _where("source_category"), field="source_category"))
        else:
            problems.append(
                Problem.of("project.source_category", _where("source_category"), choices="、".join(SOURCE_CATEGORIES))
            )
    investment = values.get("total_investment")
    if investment is not None:
        if not investment.is_finite() or abs(investment) >= Decimal(10) ** 14:
            problems.append(Problem.of("project.investment_too_large", _where("total_investment")))
        elif investment < 0:
            problems.append(Problem.of("project.investment_negative", _where("total_investment")))
    start, end = values.get("planned_start"), values.get("planned_end")
    if start is not None and end is not None and end < start:
        problems.append(Problem.of("project.dates_order", _where("planned_end"), start=start, end=end))
    return problems
