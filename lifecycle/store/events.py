"""The append-only event history of each project, hash-chained so that tampering shows.

Each project's events are numbered ``seq`` = 1, 2, 3… and chained: an event's ``prev_hash`` is the previous
event's ``hash`` (64 zeros for the first), and

    hash = sha256(prev_hash + canonical JSON of the event's content)

where the content is every column but the internal row id and the two hashes — including ``seq`` and the
project id, so that a row moved to another place no longer matches its hash. Canonical JSON: keys sorted,
no insignificant whitespace, UTF-8, instants in ISO 8601 UTC.

The project row keeps the chain's head (``event_seq``, ``event_hash``), so events deleted from the end are
noticed too. Appending reads and moves that head; the caller holds the project's row lock, so ``seq`` has
no gaps and writers of different projects never wait for each other (there is no global sequence).

:meth:`EventRepository.verify` walks the chains and names every row that is wrong and how:

* ``edited`` — the row's content no longer matches its hash;
* ``reordered`` — the row matches its hash only at another ``seq``: it was moved (two rows swapped, say);
* ``deleted`` — ``seq`` numbers are missing (between rows, or after the last row up to the head);
* ``unlinked`` — the row's ``prev_hash`` is not the hash of the row before it although both rows are
  intact: the row before was rewritten with a recomputed hash, or rows were removed and renumbered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lifecycle.engine.instance import Event

from . import driver
from .ids import new_id
from .models import events, projects
from .projects import GENESIS_HASH

FindingKind = Literal["edited", "deleted", "reordered", "unlinked"]


@dataclass(frozen=True)
class EventRecord:
    """A stored event: the engine's :class:`~lifecycle.engine.instance.Event` plus its place in the chain."""

    event_id: str
    project_id: str
    seq: int
    kind: str
    subject_kind: str
    subject_id: str
    actor: str
    at: datetime
    trigger: str | None
    from_state: str | None
    to_state: str | None
    comment: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditFinding:
    """One thing wrong with a project's event chain.

    Attributes:
        seq: the row's ``seq`` (for ``deleted``: the first missing number).
        event_id: the row's event id (None for ``deleted``: the row is gone).
        detail: what is wrong, in English, naming the numbers involved.
    """

    project_id: str
    seq: int
    event_id: str | None
    problem: FindingKind
    detail: str


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return _instant(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def json_data(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as plain JSON values: exactly what is stored and read back, so what is hashed."""
    if _is_plain(data):
        return data  # already what a round trip through JSON would give (the usual case: skip it)
    result: dict[str, Any] = json.loads(json.dumps(data, default=_json_default))
    return result


def _is_plain(value: Any) -> bool:
    """Whether ``value`` comes back from a JSON round trip equal and of the same types: str-keyed dicts,
    lists, strings, numbers, booleans and None (not tuples, dates, decimals…). Iterative: this runs for every
    event."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is dict:
            for key, member in item.items():
                if type(key) is not str:
                    return False
                stack.append(member)
        elif kind is list:
            stack.extend(item)
        elif kind is not float or item != item:  # NaN is not equal to itself after the trip
            return False
    return True


def content_of(record: EventRecord, seq: int | None = None) -> dict[str, Any]:
    """The hashed content of ``record`` (at ``seq`` instead of its own, when given)."""
    return {
        "event_id": record.event_id,
        "project_id": record.project_id,
        "seq": record.seq if seq is None else seq,
        "kind": record.kind,
        "subject_kind": record.subject_kind,
        "subject_id": record.subject_id,
        "actor": record.actor,
        "at": _instant(record.at),
        "trigger": record.trigger,
        "from_state": record.from_state,
        "to_state": record.to_state,
        "comment": record.comment,
        "data": record.data,
    }


def chain_hash(prev_hash: str, content: dict[str, Any]) -> str:
    """``sha256(prev_hash + canonical JSON of content)``, hex."""
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def _record(row: Any) -> EventRecord:
    return EventRecord(
        event_id=row.event_id,
        project_id=row.project_id,
        seq=row.seq,
        kind=row.kind,
        subject_kind=row.subject_kind,
        subject_id=row.subject_id,
        actor=row.actor,
        at=row.at,
        trigger=row.trigger,
        from_state=row.from_state,
        to_state=row.to_state,
        comment=row.comment,
        data=dict(row.data or {}),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


_COLUMNS = (
    "event_id", "project_id", "seq", "kind", "subject_kind", "subject_id", "actor", "at", "trigger",
    "from_state", "to_state", "comment", "data", "prev_hash", "hash",
)  # fmt: skip


def chain(project_id: str, head: tuple[int, str], new_events: Sequence[Event]) -> list[EventRecord]:
    """``new_events`` numbered and hashed onto the chain whose head is ``head`` = (seq, hash): what
    appending them stores. Pure; the last record is the new head."""
    seq, prev_hash = head
    records: list[EventRecord] = []
    for event in new_events:
        seq += 1
        at = event.at.astimezone(UTC)
        # The hashed content (content_of) is built directly: this runs for every event of every change.
        content = {
            "event_id": new_id(),
            "project_id": project_id,
            "seq": seq,
            "kind": event.kind,
            "subject_kind": event.subject_kind,
            "subject_id": event.subject_id,
            "actor": event.actor,
            "at": _instant(at),
            "trigger": event.trigger,
            "from_state": event.from_state,
            "to_state": event.to_state,
            "comment": event.comment,
            "data": json_data(event.data),
        }
        digest = chain_hash(prev_hash, content)
        records.append(
            EventRecord(**{**content, "at": at, "prev_hash": prev_hash, "hash": digest})  # type: ignore[arg-type]
        )
        prev_hash = digest
    return records


_INSERT_EVENTS = events.insert()


class EventRepository:
    """Appends to, reads and verifies the projects' event chains within the session's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def append(
        self, project_id: str, new_events: Sequence[Event], *, head: tuple[int, str] | None = None
    ) -> list[EventRecord]:
        """Append ``new_events`` to the project's chain, in order, and move the chain's head.

        The caller must hold the project's row lock (:meth:`ProjectRepository.lock`) or have inserted the
        project in this transaction: that is what keeps ``seq`` gap-free under concurrency. A caller that
        read the row under that lock passes its ``(event_seq, event_hash)`` as ``head`` and saves a query.
        (A change of the project row stores the head with the row instead: :func:`chain` and :meth:`insert`.)
        """
        if not new_events:
            return []
        if head is None:
            row = (
                await self.session.execute(
                    select(projects.c.event_seq, projects.c.event_hash).where(projects.c.id == project_id)
                )
            ).one()
            head = (int(row.event_seq), str(row.event_hash))
        records = chain(project_id, head, new_events)
        await self.insert(records)
        await self.session.execute(
            update(projects)
            .where(projects.c.id == project_id)
            .values(event_seq=records[-1].seq, event_hash=records[-1].hash)
        )
        return records

    async def insert(self, records: Sequence[EventRecord]) -> None:
        """Store chained events (of one project or several) in one statement; the caller moves each
        project's head (``event_seq``, ``event_hash``) in the same transaction."""
        if records:
            rows = [{name: getattr(r, name) for name in _COLUMNS} for r in records]
            await driver.execute_many(self.session, _INSERT_EVENTS, rows)

    async def history(self, project_id: str, after_seq: int = 0, limit: int = 100) -> list[EventRecord]:
        """The project's events with ``seq > after_seq``, oldest first, at most ``limit``."""
        rows = await self.session.execute(
            select(*(events.c[name] for name in _COLUMNS))
            .where(events.c.project_id == project_id, events.c.seq > after_seq)
            .order_by(events.c.seq)
            .limit(limit)
        )
        return [_record(row) for row in rows]

    async def verify(self, project_id: str | None = None) -> list[AuditFinding]:
        """Check the chain of one project (or of every project) and name every row that is wrong."""
        heads = select(projects.c.id, projects.c.event_seq, projects.c.event_hash).order_by(projects.c.id)
        if project_id is not None:
            heads = heads.where(projects.c.id == project_id)
        findings: list[AuditFinding] = []
        for head in (await self.session.execute(heads)).all():
            rows = await self.session.execute(
                select(*(events.c[name] for name in _COLUMNS))
                .where(events.c.project_id == head.id)
                .order_by(events.c.seq)
            )
            chain = [_record(row) for row in rows]
            findings.extend(_verify_chain(head.id, chain, int(head.event_seq), str(head.event_hash)))
        return findings


def _verify_chain(project_id: str, chain: list[EventRecord], head_seq: int, head_hash: str) -> list[AuditFinding]:
    findings: list[AuditFinding] = []
    top = max([head_seq, *(r.seq for r in chain)], default=0)
    previous: EventRecord | None = None
    previous_moved = False
    for record in chain:
        moved_from: int | None = None
        if chain_hash(record.prev_hash, content_of(record)) != record.hash:
            moved_from = _written_at(record, top)
            if moved_from is not None:
                findings.append(_finding(record, "reordered", f"written as event {moved_from}, stored as {record.seq}"))
            else:
                findings.append(_finding(record, "edited", "its content does not match its hash"))
        expected_seq = previous.seq + 1 if previous else 1
        expected_prev = previous.hash if previous else GENESIS_HASH
        if record.seq > expected_seq:
            findings.append(_missing(project_id, expected_seq, record.seq - 1, f"before event {record.seq}"))
        elif record.prev_hash != expected_prev and moved_from is None and not previous_moved:
            before = f"event {previous.seq}" if previous else "the start of the chain"
            findings.append(
                _finding(
                    record,
                    "unlinked",
                    f"does not link to {before}: that event was rewritten with a new hash, "
                    "or events were removed and renumbered",
                )
            )
        previous, previous_moved = record, moved_from is not None
    last_seq = previous.seq if previous else 0
    if head_seq > last_seq:
        findings.append(_missing(project_id, last_seq + 1, head_seq, "at the end of the chain"))
    elif previous is not None and (head_seq < last_seq or head_hash != previous.hash) and not previous_moved:
        findings.append(
            _finding(previous, "unlinked", f"the project's recorded head is event {head_seq}, not this one")
        )
    return findings


def _written_at(record: EventRecord, top: int) -> int | None:
    """The ``seq`` at which ``record``'s content matches its hash, if any other than its own."""
    for seq in range(1, top + 2):
        if seq != record.seq and chain_hash(record.prev_hash, content_of(record, seq)) == record.hash:
            return seq
    return None


def _finding(record: EventRecord, kind: FindingKind, detail: str) -> AuditFinding:
    return AuditFinding(record.project_id, record.seq, record.event_id, kind, f"event {record.seq}: {detail}")


def _missing(project_id: str, first: int, last: int, where: str) -> AuditFinding:
    span = f"event {first} is" if first == last else f"events {first}–{last} are"
    return AuditFinding(project_id, first, None, "deleted", f"{span} missing ({where})")
