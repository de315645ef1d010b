"""Listing projects: keyset pagination in (created_at, id) order with an opaque cursor, and every filter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta

import pytest

from lifecycle.clock import FrozenClock
from lifecycle.errors import InvalidInput
from lifecycle.services import ProjectFilters, ProjectView, Services, decode_cursor, encode_cursor

from .conftest import DISPATCHER, UNIT_A, UNIT_B, as_, into_permitting

pytestmark = pytest.mark.anyio

Create = Callable[..., Awaitable[ProjectView]]


async def _all_pages(services: Services, filters: ProjectFilters | None = None, limit: int = 10) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await services.list_projects(as_(DISPATCHER), filters, cursor, limit)
        pages.append([p.name for p in page.items])
        cursor = page.next_cursor
        if cursor is None:
            return pages


@pytest.fixture
async def twenty_five(services: Services, create: Create, clock: FrozenClock) -> list[ProjectView]:
    """25 projects created a minute apart (two in the same instant, to exercise the id tie-break):
    every third led by unit_b, every fifth in permitting, every seventh with a code."""
    projects: list[ProjectView] = []
    for n in range(25):
        if n != 13:  # projects 12 and 13 share created_at
            clock.advance(timedelta(minutes=1))
        project = await create(
            by=DISPATCHER,
            name=f"项目{n:02d}" + ("·文旅" if n % 4 == 0 else ""),
            lead_unit="unit_b" if n % 3 == 0 else "unit_a",
            implementing_unit="unit_c" if n % 6 == 1 else None,
            lead_leader="县领导乙" if n % 2 else "县领导甲",
            code=f"2026-500237-48-01-{n:06d}" if n % 7 == 0 else None,
            planned_start=date(2026, 3, 20) if n % 5 == 0 else None,
        )
        if n % 5 == 0:
            project = await into_permitting(services, project, by=UNIT_B if n % 3 == 0 else UNIT_A)
        projects.append(project)
    return projects


async def test_pages_cover_every_project_once_in_creation_order(
    services: Services, twenty_five: list[ProjectView]
) -> None:
    pages = await _all_pages(services)
    assert [len(p) for p in pages] == [10, 10, 5]
    names = [name for page in pages for name in page]
    expected = [p.name for p in sorted(twenty_five, key=lambda p: (p.created_at, p.id))]
    assert names == expected and len(set(names)) == 25
    assert await _all_pages(services, limit=25) == [expected]
    assert await _all_pages(services, limit=200) == [expected]


FILTER_CASES: list[tuple[ProjectFilters, list[int]]] = [
    (ProjectFilters(unit="unit_b"), [n for n in range(25) if n % 3 == 0]),
    (ProjectFilters(unit="unit_c"), [n for n in range(25) if n % 6 == 1]),
    (ProjectFilters(state="permitting"), [n for n in range(25) if n % 5 == 0]),
    (ProjectFilters(phase="early"), list(range(25))),
    (ProjectFilters(phase="late"), []),
    (ProjectFilters(step=2), [n for n in range(25) if n % 5 == 0]),
    (ProjectFilters(step=1), [n for n in range(25) if n % 5 != 0]),
    (ProjectFilters(leader="县领导乙"), [n for n in range(25) if n % 2]),
    (ProjectFilters(definition_key="mini"), list(range(25))),
    (ProjectFilters(definition_key="other"), []),
    (ProjectFilters(q="文旅"), [n for n in range(25) if n % 4 == 0]),
    (ProjectFilters(q="-000014"), [14]),
    (ProjectFilters(q="%"), []),  # a LIKE wildcard is matched literally
    (ProjectFilters(light="red"), []),
    (ProjectFilters(unit="unit_b", state="permitting"), [0, 15]),
    (ProjectFilters(unit="unit_b", state="permitting", leader="县领导乙"), [15]),
    (ProjectFilters(unit="unit_b", step=2, q="文旅"), [0]),
]


async def test_filters_combine_with_paging(services: Services, twenty_five: list[ProjectView]) -> None:
    by_creation = sorted(range(25), key=lambda n: (twenty_five[n].created_at, twenty_five[n].id))
    for filters, expected in FILTER_CASES:
        pages = await _all_pages(services, filters, limit=4)
        names = [name for page in pages for name in page]
        assert names == [twenty_five[n].name for n in by_creation if n in set(expected)], filters
        assert all(len(page) <= 4 for page in pages), filters


async def test_overdue_filter_uses_open_deadlines_past_due(
    services: Services, twenty_five: list[ProjectView], clock: FrozenClock
) -> None:
    permitting = {p.name for p in twenty_five[::5]}  # their start_by clock is due on 2026-03-20
    assert [n for page in await _all_pages(services, ProjectFilters(overdue=True)) for n in page] == []
    clock.advance(timedelta(days=30))
    overdue = {n for page in await _all_pages(services, ProjectFilters(overdue=True)) for n in page}
    not_overdue = {n for page in await _all_pages(services, ProjectFilters(overdue=False)) for n in page}
    assert overdue == permitting
    assert not_overdue == {p.name for p in twenty_five} - permitting


async def test_listing_respects_visibility_while_paging(services: Services, twenty_five: list[ProjectView]) -> None:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await services.list_projects(as_(UNIT_B), None, cursor, 3)
        seen += [p.lead_unit for p in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == ["unit_b"] * 9
    only_a = await services.list_projects(as_(UNIT_A), ProjectFilters(unit="unit_b"), None, 50)
    assert only_a.items == []


async def test_cursors_are_opaque_and_checked(services: Services, twenty_five: list[ProjectView]) -> None:
    first = await services.list_projects(as_(DISPATCHER), None, None, 5)
    assert first.next_cursor is not None
    assert decode_cursor(first.next_cursor) == (first.items[-1].created_at, first.items[-1].id)
    assert encode_cursor(*decode_cursor(first.next_cursor)) == first.next_cursor
    for bad in ("not-base64!", "e30", encode_cursor(first.items[0].created_at, "x")[:-3]):
        with pytest.raises(InvalidInput):
            await services.list_projects(as_(DISPATCHER), None, bad, 5)
    for limit in (0, 201):
        with pytest.raises(InvalidInput):
            await services.list_projects(as_(DISPATCHER), None, None, limit)
