"""The event chains: seq without gaps per project, the hash chain, and an audit that names every row
tampered with by raw SQL (edited, deleted, reordered)."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from lifecycle.clock import FrozenClock
from lifecycle.engine.instance import Event, ProjectInstance
from lifecycle.store import GENESIS_HASH, Database, EventRecord, EventRepository, ProjectHeader, ProjectRepository
from lifecycle.store.events import chain_hash, content_of, json_data

from .conftest import Mini

pytestmark = pytest.mark.anyio


async def _project_with_events(database: Database, mini: Mini, clock: FrozenClock, count: int) -> str:
    project_id = str(uuid.uuid4())
    header = ProjectHeader(name="p", source_category="规划项目", lead_unit="u", created_by="t")
    async with database.transaction() as session:
        await ProjectRepository(session).insert(
            header, ProjectInstance(project_id, "mini", 1, "draft"), mini.definition, clock.now()
        )
    for n in range(count):
        clock.advance(timedelta(minutes=1))
        async with database.transaction() as session:
            assert await ProjectRepository(session).lock(project_id) is not None
            await EventRepository(session).append(
                project_id,
                [
                    Event(
                        "project.transition",
                        "project",
                        project_id,
                        "owner",
                        clock.now(),
                        trigger=f"t{n}",
                        comment=f"第{n + 1}次",
                        data={"n": n, "金额": "1.50"},
                    )
                ],
            )
    return project_id


async def _history(database: Database, project_id: str) -> list[EventRecord]:
    async with database.reader() as session:
        return await EventRepository(session).history(project_id, 0, 1000)


async def _verify(database: Database, project_id: str | None = None) -> list[tuple[str, int, str | None]]:
    async with database.reader() as session:
        findings = await EventRepository(session).verify(project_id)
    return [(f.problem, f.seq, f.event_id) for f in findings]


async def _sql(database: Database, statement: str, **params: object) -> None:
    async with database.transaction() as session:
        await session.execute(text(statement), params)


async def test_appended_events_chain_from_genesis_with_consecutive_seq(
    database: Database, mini: Mini, clock: FrozenClock
) -> None:
    project_id = await _project_with_events(database, mini, clock, 4)
    async with database.transaction() as session:
        # Several events in one append continue the same chain.
        await ProjectRepository(session).lock(project_id)
        await EventRepository(session).append(
            project_id,
            [
                Event("task.opened", "task", "g.a", "owner", clock.now()),
                Event("task.opened", "task", "g.b", "owner", clock.now()),
            ],
        )
    events = await _history(database, project_id)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[0].prev_hash == GENESIS_HASH
    for previous, event in itertools.pairwise(events):
        assert event.prev_hash == previous.hash
    for event in events:
        assert event.hash == chain_hash(event.prev_hash, content_of(event))
    assert events[0].data == {"n": 0, "金额": "1.50"} and events[0].comment == "第1次"
    assert await _verify(database) == []
    assert [e.seq for e in await _history_page(database, project_id, after=2, limit=3)] == [3, 4, 5]


async def _history_page(database: Database, project_id: str, after: int, limit: int) -> list[EventRecord]:
    async with database.reader() as session:
        return await EventRepository(session).history(project_id, after, limit)


async def test_chains_are_per_project(database: Database, mini: Mini, clock: FrozenClock) -> None:
    first = await _project_with_events(database, mini, clock, 3)
    second = await _project_with_events(database, mini, clock, 2)
    assert [e.seq for e in await _history(database, first)] == [1, 2, 3]
    assert [e.seq for e in await _history(database, second)] == [1, 2]
    assert (await _history(database, second))[0].prev_hash == GENESIS_HASH


async def test_audit_names_an_edited_row(database: Database, mini: Mini, clock: FrozenClock) -> None:
    project_id = await _project_with_events(database, mini, clock, 5)
    events = await _history(database, project_id)
    await _sql(database, "UPDATE events SET comment = '改过' WHERE project_id = :p AND seq = 3", p=project_id)
    assert await _verify(database, project_id) == [("edited", 3, events[2].event_id)]


async def test_audit_names_an_edited_row_even_with_its_hash_recomputed(
    database: Database, mini: Mini, clock: FrozenClock
) -> None:
    project_id = await _project_with_events(database, mini, clock, 5)
    events = await _history(database, project_id)
    forged = EventRecord(**{**events[1].__dict__, "actor": "someone_else"})
    await _sql(
        database,
        "UPDATE events SET actor = 'someone_else', hash = :h WHERE project_id = :p AND seq = 2",
        h=chain_hash(forged.prev_hash, content_of(forged)),
        p=project_id,
    )
    # Row 2 is self-consistent now, so the break shows at the next link.
    assert await _verify(database, project_id) == [("unlinked", 3, events[2].event_id)]


async def test_audit_names_a_deleted_row(database: Database, mini: Mini, clock: FrozenClock) -> None:
    project_id = await _project_with_events(database, mini, clock, 5)
    await _sql(database, "DELETE FROM events WHERE project_id = :p AND seq = 3", p=project_id)
    assert await _verify(database, project_id) == [("deleted", 3, None)]


async def test_audit_names_rows_deleted_from_the_end(database: Database, mini: Mini, clock: FrozenClock) -> None:
    project_id = await _project_with_events(database, mini, clock, 5)
    await _sql(database, "DELETE FROM events WHERE project_id = :p AND seq >= 4", p=project_id)
    findings = await _verify(database, project_id)
    assert findings == [("deleted", 4, None)]
    async with database.reader() as session:
        detail = (await EventRepository(session).verify(project_id))[0].detail
    assert "4–5" in detail


async def test_audit_names_two_swapped_rows(database: Database, mini: Mini, clock: FrozenClock) -> None:
    project_id = await _project_with_events(database, mini, clock, 5)
    events = await _history(database, project_id)
    # Three steps: UNIQUE(project_id, seq) forbids a direct swap.
    await _sql(database, "UPDATE events SET seq = 0 WHERE project_id = :p AND seq = 2", p=project_id)
    await _sql(database, "UPDATE events SET seq = 2 WHERE project_id = :p AND seq = 4", p=project_id)
    await _sql(database, "UPDATE events SET seq = 4 WHERE project_id = :p AND seq = 0", p=project_id)
    assert await _verify(database, project_id) == [
        ("reordered", 2, events[3].event_id),
        ("reordered", 4, events[1].event_id),
    ]
    async with database.reader() as session:
        details = [f.detail for f in await EventRepository(session).verify(project_id)]
    assert details == ["event 2: written as event 4, stored as 2", "event 4: written as event 2, stored as 4"]


async def test_audit_of_all_projects_names_each_project(database: Database, mini: Mini, clock: FrozenClock) -> None:
    clean = await _project_with_events(database, mini, clock, 3)
    tampered = await _project_with_events(database, mini, clock, 3)
    await _sql(database, "UPDATE events SET data = :d WHERE project_id = :p AND seq = 1", d='{"n": 99}', p=tampered)
    async with database.reader() as session:
        findings = await EventRepository(session).verify()
    assert [(f.project_id, f.problem, f.seq) for f in findings] == [(tampered, "edited", 1)]
    assert await _verify(database, clean) == []


def test_event_data_is_stored_as_its_json_round_trip_whatever_it_holds() -> None:
    # Plain JSON values are kept as they are; anything a round trip would change (a tuple, an int key, a
    # date, a Decimal, NaN) is converted exactly as the round trip would: what is hashed is what is read back.
    plain = {"a": [1, 2.5, "三", None, True, {"b": []}]}
    assert json_data(plain) is plain
    odd = {"t": (1, 2), "k": {3: "x"}, "d": date(2026, 10, 1), "m": Decimal("1.50"), "n": float("nan")}
    converted = json_data(odd)
    assert converted["t"] == [1, 2] and converted["k"] == {"3": "x"}
    assert converted["d"] == "2026-10-01" and converted["m"] == "1.50" and converted["n"] != converted["n"]
    assert json.loads(json.dumps(converted)).keys() == converted.keys()
