"""Use cases: load a project, run the engine, write state, history and deadlines in one transaction.

* :class:`Services` — the use cases (one per process);
* :mod:`.authz` — roles, :class:`Principal`, :class:`CallContext`, visibility;
* :mod:`.inputs` — :class:`CreateProject`, :class:`ProjectChanges`, :class:`ProjectFilters`;
* :mod:`.views` — what the use cases return (:class:`ProjectView`, :class:`TaskView`, :class:`Page`…);
* :mod:`.registry` — :class:`DefinitionRegistry`: published definitions into the engine.
"""

from __future__ import annotations

from .authz import COUNTY_WIDE_ROLES, ROLES, CallContext, Principal
from .inputs import CreateProject, ProjectChanges, ProjectFilters
from .registry import DefinitionRegistry
from .service import Services, decode_cursor, encode_cursor
from .views import (
    CommitmentView,
    DeadlineView,
    HistoryEntry,
    MaterialView,
    NoticeView,
    Page,
    ProjectView,
    PublishOutcome,
    StepView,
    TaskView,
    etag_of,
)

__all__ = [
    "COUNTY_WIDE_ROLES",
    "ROLES",
    "CallContext",
    "CommitmentView",
    "CreateProject",
    "DeadlineView",
    "DefinitionRegistry",
    "HistoryEntry",
    "MaterialView",
    "NoticeView",
    "Page",
    "Principal",
    "ProjectChanges",
    "ProjectFilters",
    "ProjectView",
    "PublishOutcome",
    "Services",
    "StepView",
    "TaskView",
    "decode_cursor",
    "encode_cursor",
    "etag_of",
]
