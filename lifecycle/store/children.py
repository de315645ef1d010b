"""The rows a project's aggregate owns — tasks, deficiency notices, commitments, deadlines — read in one query.

Loading an aggregate is the first thing every transition does, under the project's lock. Four queries, one
per table, cost four round trips to the database; on a busy server each round trip is a system call or two
on each side and a context switch, and they add up to more than the work they carry. So the four tables are
read with one ``UNION ALL``, which needs every branch to have the same columns: each table's columns are laid
into shared, typed slots (the n-th text column of a table in the n-th text slot, its instants in the instant
slots…), the slots a table does not use are typed NULLs, and each row says which table it came from. Both
databases run it; the column types (and so the conversions of :class:`~.types.UTCDateTime` and JSON) are
those of the slots, which are those of the tables.

Rows come back in the aggregate's order: by project, table, the table's order column (opened, issued,
recorded, started), and id — as four ``ORDER BY`` queries would give them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CompoundSelect,
    Date,
    Integer,
    String,
    Table,
    bindparam,
    cast,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from .models import commitments, deadlines, deficiency_notices, tasks
from .types import UTCDateTime

CHILD_TABLES: Mapping[str, tuple[Table, str]] = {
    "tasks": (tasks, "opened_at"),
    "notices": (deficiency_notices, "issued_at"),
    "commitments": (commitments, "recorded_at"),
    "deadlines": (deadlines, "started_on"),
}
"""The aggregate's tables by the name the aggregate gives them, with the column each is ordered by."""


def _kind_of(type_: TypeEngine[Any]) -> str:
    """The slot family a column type goes in (one family per type the union must keep apart)."""
    if isinstance(type_, UTCDateTime):
        return "instant"
    if isinstance(type_, Boolean):
        return "flag"
    if isinstance(type_, Integer):
        return "number"
    if isinstance(type_, Date):
        return "day"
    if isinstance(type_, JSON):
        return "document"
    if isinstance(type_, String):  # Text included
        return "text"
    raise TypeError(f"no slot for a {type_!r} column")


@dataclass(frozen=True)
class _Layout:
    """Where each table's columns go: table name → [(column name, slot label)], and each slot's type."""

    columns: Mapping[str, list[tuple[str, str]]]
    slot_types: Mapping[str, TypeEngine[Any]]


def _layout() -> _Layout:
    columns: dict[str, list[tuple[str, str]]] = {}
    slot_types: dict[str, TypeEngine[Any]] = {}
    for name, (table, _) in CHILD_TABLES.items():
        used: dict[str, int] = {}
        placed = []
        for column in table.columns:
            kind = _kind_of(column.type)
            label = f"{kind}{used.get(kind, 0)}"
            used[kind] = used.get(kind, 0) + 1
            # The first table to use a slot gives its type; text slots are plain strings (VARCHAR and TEXT
            # unite), the others share the one type of their family.
            slot_types.setdefault(label, String() if kind == "text" else column.type)
            placed.append((column.name, label))
        columns[name] = placed
    return _Layout(columns, slot_types)


_LAYOUT = _layout()
_ORDER_INSTANT, _ORDER_DAY = "order_instant", "order_day"


def _branch(index: int, name: str, where: ColumnElement[bool]) -> Any:
    table, order_column = CHILD_TABLES[name]
    mine = dict((label, column) for column, label in _LAYOUT.columns[name])
    order = table.c[order_column]
    ordered_by_instant = isinstance(order.type, UTCDateTime)
    cells: list[ColumnElement[Any]] = [
        literal_column(str(index), Integer).label("child_kind"),
        (order if ordered_by_instant else cast(null(), UTCDateTime())).label(_ORDER_INSTANT),
        (cast(null(), Date()) if ordered_by_instant else order).label(_ORDER_DAY),
    ]
    for label, slot_type in _LAYOUT.slot_types.items():
        column = mine.get(label)
        cells.append((table.c[column] if column else cast(null(), slot_type)).label(label))
    return select(*cells).where(where)


def _children_query(many: bool) -> CompoundSelect[Any]:
    branches = []
    for index, (name, (table, _)) in enumerate(CHILD_TABLES.items()):
        key = table.c.project_id
        where = key.in_(bindparam("project_ids", expanding=True)) if many else key == bindparam("project_id")
        branches.append(_branch(index, name, where))
    # text0 and text1 are every table's first two columns: project_id and id.
    return union_all(*branches).order_by("text0", "child_kind", _ORDER_INSTANT, _ORDER_DAY, "text1")


CHILDREN_OF_ONE = _children_query(many=False)
"""Every child row of the project ``:project_id``."""

CHILDREN_OF_MANY = _children_query(many=True)
"""Every child row of the projects ``:project_ids`` (a list)."""

_NAMES = list(CHILD_TABLES)
_SLOT_POSITIONS = {column.key: position for position, column in enumerate(CHILDREN_OF_ONE.selected_columns)}
_POSITIONS = {
    name: [(column, _SLOT_POSITIONS[label]) for column, label in placed] for name, placed in _LAYOUT.columns.items()
}
"""Per table: each of its columns with the position of its slot in a row (rows are read by position, as the
driver gives them; see :mod:`.driver`)."""


def split_rows(rows: Iterable[Any]) -> dict[str, dict[str, list[Any]]]:
    """The rows of :data:`CHILDREN_OF_ONE` or :data:`CHILDREN_OF_MANY` as project id → table name → rows,
    each row with the table's own column names as attributes, in the aggregate's order."""
    out: dict[str, dict[str, list[Any]]] = {}
    for row in rows:
        name = _NAMES[row[0]]  # child_kind
        values = SimpleNamespace(**{column: row[position] for column, position in _POSITIONS[name]})
        out.setdefault(values.project_id, {}).setdefault(name, []).append(values)
    return out
