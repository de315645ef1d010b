"""Escalation ladders (四级调度) and the notices (提示函 / 督办函) their levels send.

A deadline that passes climbs its ladder: level *n* comes due ``after`` working (or calendar) days past the
deadline's due date. The scheduler asks :func:`levels_due` which levels have come due by now and fires each
exactly once; this module only computes, it never records.

Notice templates come from YAML, which is untrusted input: :func:`render_notice` substitutes ``{name}`` for
the closed set of placeholders in :data:`lifecycle.spec.models.NOTICE_PLACEHOLDERS` and nothing else. It does
not use ``str.format``, whose ``{a.b}`` and ``{a[0]}`` forms reach into objects.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from lifecycle.calendar import WorkingCalendar
from lifecycle.clock import end_of_local_day, local_date
from lifecycle.spec.models import NOTICE_PLACEHOLDERS, Ladder, LadderLevel

from .instance import Deadline


@dataclass(frozen=True)
class LevelDue:
    """A ladder level that has come due for a deadline.

    Attributes:
        level: the level's spec.
        due_on: the local date from the end of which the level is due.
        due_at: that instant in UTC.
        estimated: the date relied on a year with no published holidays.
    """

    level: LadderLevel
    due_on: date
    due_at: datetime
    estimated: bool


def level_due_date(calendar: WorkingCalendar, deadline_due: date, level: LadderLevel) -> tuple[date, bool]:
    """The local date after which ``level`` is due, for a deadline due on ``deadline_due``."""
    result = calendar.due_date(deadline_due, level.after.days, unit=level.after.unit)
    return result.date, result.estimated


def level_due_at(deadline: Deadline, on: date) -> datetime:
    """The instant a level due on local day ``on`` comes due for ``deadline``.

    A level due on the deadline's own due day (``after: 0``) is due when the deadline is (the end of that
    day for a clock; 18:00 for a weekly report due by 18:00); a later level at the end of its day.
    """
    return deadline.due_at if on == deadline.due_date else end_of_local_day(on)


def levels_due(calendar: WorkingCalendar, ladder: Ladder, deadline: Deadline, now: datetime) -> list[LevelDue]:
    """Every level of ``ladder`` above the deadline's current level that has come due by ``now``, lowest first.

    A level is due once the end of its due day has passed (level ``after: 0`` is due when the deadline itself
    is, see :func:`level_due_at`). After downtime several levels may be due at once: each is returned, and
    fired once, in order.
    """
    due: list[LevelDue] = []
    for level in ladder.levels:
        if level.level <= deadline.level:
            continue
        on, estimated = level_due_date(calendar, deadline.due_date, level)
        at = level_due_at(deadline, on)
        if at > now:
            break  # levels are increasing in delay (a static check), so none above is due either
        due.append(LevelDue(level=level, due_on=on, due_at=at, estimated=estimated))
    return due


def next_level(calendar: WorkingCalendar, ladder: Ladder, deadline: Deadline) -> LevelDue | None:
    """The lowest level of ``ladder`` above the deadline's current level, with when it comes due; None when
    the ladder has been climbed to the top."""
    for level in ladder.levels:
        if level.level > deadline.level:
            on, estimated = level_due_date(calendar, deadline.due_date, level)
            return LevelDue(level=level, due_on=on, due_at=level_due_at(deadline, on), estimated=estimated)
    return None


def next_action_at(calendar: WorkingCalendar, ladder: Ladder | None, deadline: Deadline) -> datetime | None:
    """When the scheduler next has something to do for ``deadline``: fire its ``on_expiry`` trigger (at its
    due time, once) or climb to its next ladder level, whichever comes first; None when nothing is left, or
    while the deadline is closed or paused (a paused clock does not run; resuming re-dates it and asks
    again)."""
    if deadline.closed_at is not None or deadline.paused:
        return None
    candidates: list[datetime] = []
    if deadline.on_expiry and deadline.fired_at is None:
        candidates.append(deadline.due_at)
    if ladder is not None:
        upcoming = next_level(calendar, ladder, deadline)
        if upcoming is not None:
            candidates.append(upcoming.due_at)
    return min(candidates, default=None)


def working_days_late(calendar: WorkingCalendar, deadline: Deadline, now: datetime) -> int:
    """How many working days ``now`` is past the deadline's due date (0 if not past)."""
    today = local_date(now)
    if today <= deadline.due_date:
        return 0
    return max(0, calendar.working_days_between(deadline.due_date, today).days)


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([a-z_]+)\}")


def render_notice(template: str, values: Mapping[str, object]) -> str:
    """``template`` with each allowed ``{name}`` replaced by ``values[name]`` (``—`` when absent).

    ``{{`` and ``}}`` are literal braces; an unknown name is left as written (the static checks refuse such
    templates before they are published, so this is only a second line of defence).
    """
    out: list[str] = []
    for literal, name in _parsed(template):
        out.append(literal)
        if name is not None:
            value = values.get(name)
            out.append("—" if value is None or value == "" else str(value))
    return "".join(out)


@functools.lru_cache(maxsize=256)
def _parsed(template: str) -> tuple[tuple[str, str | None], ...]:
    """``template`` as (literal text, placeholder name or None) pairs: a ladder's few templates are parsed
    once, not for every notice a tick renders."""
    parts: list[tuple[str, str | None]] = []
    literal: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        literal.append(template[position : match.start()])
        position = match.end()
        token, name = match.group(0), match.group(1)
        if token == "{{":
            literal.append("{")
        elif token == "}}":
            literal.append("}")
        elif name not in NOTICE_PLACEHOLDERS:
            literal.append(token)
        else:
            parts.append(("".join(literal), name))
            literal = []
    literal.append(template[position:])
    parts.append(("".join(literal), None))
    return tuple(parts)


# --- recipients -------------------------------------------------------------------------------------------

RecipientKind = Literal["unit", "leader", "department", "role"]

ORG_ROLES: dict[str, tuple[str, str]] = {
    "dispatcher": ("dispatcher", "县重点项目事务中心"),
    "task_force": ("task_force", "县重点项目工作专班"),
    "leading_group": ("leader", "县重大战略推进领导小组"),
}
"""Recipients that are bodies of the county rather than parties of the project: the ladder's name → (the
platform role whose holders act for it, its default title). The 领导小组 is made of county leaders, so
principals with the ``leader`` role act for it."""


@dataclass(frozen=True)
class Recipient:
    """Who one escalation notice is addressed to.

    Attributes:
        role: the ladder's name for them (``lead_unit``, ``department``, ``dispatcher``…).
        kind: ``unit`` (a project's lead or implementing unit), ``leader`` (its lead county leader),
            ``department`` (the department of the late item) or ``role`` (a county body, by ladder name).
        id: the unit id, the leader, the department id, or the ladder name of the county body.
        title: how the notice addresses them (a department's title, a body's name, else the id).
    """

    role: str
    kind: RecipientKind
    id: str
    title: str


def resolve_recipients(
    level: LadderLevel,
    *,
    lead_unit: str | None,
    implementing_unit: str | None,
    lead_leader: str | None,
    department: str | None,
    titles: Mapping[str, str],
) -> list[Recipient]:
    """The recipients of ``level`` for one project, in the order the level lists them, each once.

    Names that resolve to nothing (a project without a lead leader, a project-level deadline with no
    department) are left out. ``titles`` maps org-unit ids to their titles (the definition's departments);
    county bodies are addressed by their names in :data:`ORG_ROLES`.
    """
    out: list[Recipient] = []
    seen: set[tuple[str, str]] = set()

    def add(role: str, kind: RecipientKind, ident: str | None, default_title: str | None = None) -> None:
        if not ident or (kind, ident) in seen:
            return
        seen.add((kind, ident))
        title = default_title if kind == "role" else titles.get(ident)
        out.append(Recipient(role, kind, ident, title or ident))

    for name in level.notify:
        if name == "lead_unit":
            add(name, "unit", lead_unit)
        elif name == "implementing_unit":
            add(name, "unit", implementing_unit)
        elif name == "lead_leader":
            add(name, "leader", lead_leader)
        elif name == "department":
            add(name, "department", department)
        elif name in ORG_ROLES:
            add(name, "role", name, ORG_ROLES[name][1])
    return out


def may_act_for(
    recipient_kind: str, recipient_id: str, principal_id: str, unit: str | None, roles: frozenset[str]
) -> bool:
    """Whether a principal (its id, org unit and platform roles) is the addressee of a notice."""
    if recipient_kind == "unit":
        return "unit" in roles and unit == recipient_id
    if recipient_kind == "department":
        return "department" in roles and unit == recipient_id
    if recipient_kind == "leader":
        return "leader" in roles and recipient_id in (principal_id, unit)
    if recipient_kind == "role":
        platform_role = ORG_ROLES.get(recipient_id, (recipient_id, ""))[0]
        return platform_role in roles
    return False
