"""Workflow definitions (the YAML procedures) and their published versions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from api.schemas.common import RequestModel


class PhaseOut(BaseModel):
    """A phase of the procedure (前期决策生成, 中期建设实施, 后期投产达效)."""

    id: str
    title: str
    title_en: str | None = None


class DefinitionCounts(BaseModel):
    """How big a definition is."""

    states: int
    transitions: int
    gates: int
    groups: int = Field(description="Task groups (parallel approval / acceptance groups).")
    items: int
    task_machines: int
    clocks: int
    ladders: int
    obligations: int


class VersionOut(BaseModel):
    """A published version of a definition (its content never changes once published)."""

    key: str
    version: int
    title: str
    content_hash: str
    active: bool = Field(description="New projects start on the active version.")
    published_at: datetime
    published_by: str
    change_note: str | None = None


class VersionSummary(VersionOut):
    """A version with what it contains: counts, phases, initial state."""

    initial: str
    counts: DefinitionCounts
    phases: list[PhaseOut]


class VersionDetail(VersionSummary):
    """A version with its YAML text and its project machine as a Mermaid ``stateDiagram-v2``."""

    yaml: str
    mermaid: str | None = Field(default=None, description="Mermaid text; paste it into any Mermaid renderer.")


class WorkflowOut(BaseModel):
    """A definition key: its active version (if any) and how many versions were published."""

    key: str
    title: str
    versions: int
    active: VersionSummary | None = None


class ProjectDiagramOut(BaseModel):
    """A project's procedure as a Mermaid diagram, its current state and open items highlighted."""

    project_id: str
    definition_key: str
    definition_version: int
    state: str
    open_tasks: list[str] = Field(description="Items still open (``group.item``), shown in the state that opened them.")
    mermaid: str


# --- administration: publish, diff, migrate ----------------------------------------------------------------


class PublishIn(RequestModel):
    """A definition to publish, as JSON (``application/yaml`` or ``text/yaml`` bodies carry the YAML itself
    and take ``change_note`` and ``activate`` from the query string)."""

    yaml: str = Field(max_length=1024 * 1024, description="The definition's YAML text.")
    change_note: str | None = Field(default=None, max_length=2000, description="Why this version (修订说明).")
    activate: bool = Field(default=True, description="New projects start on it at once (false: stage it).")
    validate_only: bool = Field(default=False, description="Only check it and show the diff; store nothing.")


class DiffChangeOut(BaseModel):
    """One attribute that changed: its label, JSON values and readable texts before and after."""

    attribute: str
    label: str
    before: Any = None
    after: Any = None
    before_text: str
    after_text: str


class DiffEntryOut(BaseModel):
    """One thing added, removed or changed: its id, title (Chinese), what it belongs to, and its changes."""

    id: str
    op: Literal["added", "removed", "changed"]
    title: str
    title_en: str | None = None
    parent: str | None = None
    brief: str | None = Field(default=None, description="The main attributes of an added or removed entry.")
    hint: str | None = Field(default=None, description="A remark, e.g. that a state looks renamed.")
    changes: list[DiffChangeOut]


class DiffSectionOut(BaseModel):
    """The entries of one kind of thing (states, transitions, gates, items, clocks…)."""

    section: str
    title: str
    title_zh: str
    title_en: str
    entries: list[DiffEntryOut]


class DiffOut(BaseModel):
    """What changed between two versions: structured sections and a readable ``text`` (Chinese by default)."""

    key: str
    from_version: int | None = None
    to_version: int | None = None
    identical: bool
    totals: dict[str, int]
    summary: dict[str, dict[str, int]]
    summary_line: str
    state_renames: dict[str, str] = Field(description="Removed state → added state with the same title.")
    sections: list[DiffSectionOut]
    text: str


class MigrationFilterIn(RequestModel):
    """Which projects to move (every filter given must match; none given: every project on the version)."""

    project_ids: list[Annotated[str, StringConstraints(max_length=64)]] | None = Field(default=None, max_length=10_000)
    states: list[Annotated[str, StringConstraints(max_length=64)]] | None = Field(default=None, max_length=1000)
    units: list[Annotated[str, StringConstraints(max_length=64)]] | None = Field(
        default=None, max_length=1000, description="Lead or implementing unit."
    )


class MigrationIn(RequestModel):
    """A migration of running projects from one version to another."""

    from_version: int = Field(ge=1, le=1_000_000)
    to_version: int | None = Field(default=None, ge=1, le=1_000_000, description="Default: the active version.")
    state_map: dict[
        Annotated[str, StringConstraints(max_length=64)], Annotated[str, StringConstraints(max_length=64)]
    ] = Field(default_factory=dict, description="Old state id → new state id; states not named keep their id.")
    filter: MigrationFilterIn | None = None
    dry_run: bool = Field(default=False, description="Say for each project whether it can move; store nothing.")
