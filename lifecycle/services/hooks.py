"""Work that rides along with every change to a project, inside the same transaction.

A use case that changes a project (create, update, any transition of the project, an item or a notice) ends
by calling :meth:`Services._record_change`, which saves the aggregate, appends the events to the hash chain,
and then awaits each registered :class:`ChangeHook` with the :class:`Change` just written. Hooks write rows
only (never the network): the traffic light of the project, the webhook outbox rows of the events. Because
they run before the single commit, a rollback drops their rows with the change (STYLE.md §5: work to do after
commit is written as rows in the same transaction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.engine.instance import FireResult, ProjectInstance
from lifecycle.spec.models import Definition
from lifecycle.store.events import EventRecord
from lifecycle.store.projects import ProjectRecord


@dataclass(frozen=True)
class Change:
    """One committed-to-be change of a project, as hooks see it.

    Attributes:
        record: the project row after the change (its new version).
        instance: the project aggregate after the change.
        definition: the definition the project runs on.
        result: what the engine did (None for changes made outside the engine, e.g. header edits).
        events: the events appended, with their ids and place in the chain.
        actor: the principal id that made the change (``system`` for the scheduler).
        now: the instant of the change.
        derived: project columns a hook wrote (name → value, e.g. the traffic light), so that the caller's
            answer shows them without reading the row again.
    """

    record: ProjectRecord
    instance: ProjectInstance
    definition: Definition
    result: FireResult | None
    events: list[EventRecord]
    actor: str
    now: datetime
    derived: dict[str, Any] = field(default_factory=dict)


class ChangeHook(Protocol):
    """Something that writes rows for every change, in the change's transaction."""

    async def __call__(self, session: AsyncSession, change: Change) -> None: ...
