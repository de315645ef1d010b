"""Work that rides along with every change to a project, inside the same transaction.

A use case that changes a project (create, update, any transition of the project, an item or a notice) ends
by calling :meth:`Services._save_changes` with one change (the scheduler: with many). For each change it
chains the events, then asks every registered :class:`ChangeHook` to :meth:`~ChangeHook.derive` what is
stored with the project's own rows (the traffic light on the project row, the next fire time on each
deadline row written), writes the project rows, children and events in a few statements for all the
changes, and finally awaits each hook's :meth:`~ChangeHook.write` with all the changes (the webhook outbox
rows of the events). Hooks write rows only, never the network. Because they run before the single commit, a
rollback drops their rows with the change (STYLE.md §5: work to do after commit is written as rows in the
same transaction).

A hook that must read something to write its rows (the outbox: which endpoints subscribe) may have it read
by the statement that locks the project (:class:`LockRead`), saving a round trip per change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.engine.instance import Event, FireResult, ProjectInstance
from lifecycle.spec.models import Definition
from lifecycle.store.events import EventRecord
from lifecycle.store.projects import ProjectRecord

from .answers import StoredAnswer


@dataclass(frozen=True)
class Change:
    """One committed-to-be change of a project, as hooks see it.

    Attributes:
        record: the project row after the change (its new version).
        instance: the project aggregate after the change.
        definition: the definition the project runs on.
        result: what the engine did (empty for changes made outside the engine, e.g. a notice acknowledged);
            a hook's :meth:`~ChangeHook.derive` may add to it (deadlines it closes), and what it lists is written.
        events: the events appended, with their ids and place in the chain.
        actor: the principal id that made the change (``system`` for the scheduler).
        now: the instant of the change.
        derived: project columns hooks derived (name → value, e.g. the traffic light): stored with the
            project row, and shown in the caller's answer without reading the row again.
        fire_times: the next fire time hooks derived for deadlines this change writes (id → instant, None:
            nothing left to fire), stored with the deadline rows.
    """

    record: ProjectRecord
    instance: ProjectInstance
    definition: Definition
    result: FireResult
    events: list[EventRecord]
    actor: str
    now: datetime
    derived: dict[str, Any] = field(default_factory=dict)
    fire_times: dict[str, datetime | None] = field(default_factory=dict)


@dataclass(frozen=True)
class PendingChange:
    """One project's change as the engine made it, not yet written (``Services._save_changes``).

    Attributes:
        record: the project row as read under this transaction's lock.
        result: what the engine did (None for a change made outside it, e.g. a notice acknowledged).
        events: the history events to append.
        actor: the principal id making the change (``system`` for the scheduler).
        header: header columns changed (:data:`~lifecycle.store.projects.HEADER_COLUMNS`), if any.
        answer: the answer to store with the change for the request's ``Idempotency-Key``, if any
            (:mod:`.answers`).
        answer_view: the view ``answer`` is rendered from, given the project row as it will be stored; by
            default the project's.
    """

    record: ProjectRecord
    instance: ProjectInstance
    definition: Definition
    result: FireResult | None
    events: Sequence[Event]
    actor: str
    now: datetime
    header: Mapping[str, Any] | None = None
    answer: StoredAnswer[Any] | None = None
    answer_view: Callable[[ProjectRecord], Any] | None = None


LOCK_READS: Final = "lifecycle.lock_reads"
"""The key, in the ``info`` of a transaction's session, of the values read with the project's lock
(:class:`LockRead`: name → value)."""


@dataclass(frozen=True, eq=False)
class LockRead:
    """A value a hook's :meth:`~ChangeHook.write` needs, read by the statement that locks the project (a scalar
    subquery as one more column of it) rather than by a statement of its own: one round trip fewer per change.

    The value is as of that statement's snapshot, taken before the lock was granted: a hook must be right
    with a value that may be that much older than one it would read itself. Where nothing was read along
    (SQLite, the scheduler's batches), :func:`lock_read_value` says so and the hook reads it itself."""

    name: str
    query: ColumnElement[Any]


class ReadsWithLock(Protocol):
    """A hook that has a :class:`LockRead` (optional: :class:`Services` asks the hooks that have
    ``lock_read``)."""

    def lock_read(self, dialect: str) -> LockRead | None:
        """What to read with the lock on ``dialect`` (the same object every call), or None."""


def lock_read_value(session: AsyncSession, name: str) -> tuple[bool, Any]:
    """(True, value) when the statement that locked this transaction's project read ``name`` along, else
    (False, None)."""
    values: Mapping[str, Any] = session.info.get(LOCK_READS, {})
    if name in values:
        return True, values[name]
    return False, None


class ChangeHook(Protocol):
    """Something that rides along with every change, in the change's transaction."""

    def derive(self, change: Change) -> None:
        """Before anything is written: fill ``change.derived`` and ``change.fire_times`` (no I/O). The
        change's ``record`` is the project row as it will be stored, its ``events`` are chained."""

    async def write(self, session: AsyncSession, changes: Sequence[Change]) -> None:
        """After the project rows, children and events of ``changes`` are written: write this hook's own
        rows for all of them."""
