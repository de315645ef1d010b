"""Writes held back on a PostgreSQL write transaction and sent together, as one statement, with the next one.

Why: a transition writes its project row, its step rows, its events and whatever its hooks add, each one
statement; every statement is a round trip to the server, and on this project's benchmark machine a round
trip costs the API server about as much CPU as the Python around it. Inside
:func:`lifecycle.store.driver.deferred`, writes sent through :func:`~lifecycle.store.driver.execute` and
:func:`~lifecycle.store.driver.execute_many` are held in a :class:`PendingWrites`, and go to the server as
data-modifying ``WITH`` clauses of the next statement that must run (a query, a write that cannot join them,
the end of the block)::

    WITH w0 AS (UPDATE projects SET … WHERE id = $1), w1 AS (INSERT INTO project_steps …)
    INSERT INTO events …

PostgreSQL runs every data-modifying clause of a statement, referenced or not, in the statement's own
snapshot: no clause sees what the others wrote, and the order among them is not defined. So a held write must
not depend on another, and a query sent with them must not read what they change. :class:`PendingWrites` only
combines what gives the same result as sending the statements one by one (:func:`footprint` tells what each
statement does to which tables):

* plain ``INSERT`` rows, whichever tables they go to (uniqueness and foreign keys are checked as before:
  against every row of the statement, at its end), except a second row for a table that numbers its rows
  from a sequence (the clauses run in no defined order, so the numbers would not follow the rows' order),
  and a row of a table that held rows reference (alone, their foreign-key check would have failed first);
* one ``UPDATE``, ``DELETE`` or ``INSERT … ON CONFLICT`` row per table that nothing else held reaches (a
  write reaches its table and every table that references it, as far as foreign keys lead: a delete's
  cascades and checks); two writes that might touch the same row never share a statement, since
  PostgreSQL would apply one of them at random;
* no write that reads (in a subquery, ``INSERT … SELECT``) a table a held write changes;
* a query whose tables no held write reaches, or a write with ``RETURNING`` that could be held with them.

A statement whose effects cannot be told from its structure — text, literal SQL, a quoted string, a function
call (``clock_timestamp()``, ``nextval()`` would see the clauses' order) — never shares one. Nor is anything
held in an autocommit block, where each statement must be committed when it returns. Keys of stored rows
never change in this project, so an update that would create a key held rows reference is not looked for.

Anything else first sends what is held, as a statement of its own, then runs as usual; a statement run
through SQLAlchemy on the same connection does the same (see :mod:`lifecycle.store.db`). An error of a held
write is raised by the statement that carried it — possibly inside a guard meant for that statement's own
errors (a savepoint's ``except IntegrityError``) — and PostgreSQL has then aborted the transaction: every
later statement and the ``COMMIT`` fail, so nothing of it is committed, whoever caught the error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from sqlalchemy import ForeignKey, Sequence, Table
from sqlalchemy.sql import Executable, visitors
from sqlalchemy.sql.elements import ColumnClause, TextClause
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import TableClause

if TYPE_CHECKING:
    from .driver import Plan

MAX_STATEMENTS: Final = 64
"""Held statements (rows) per combined statement: more are sent first."""

MAX_PARAMETERS: Final = 16_000
"""Parameters per combined statement (PostgreSQL allows 65,535): more are sent first."""

_PLACEHOLDER = re.compile(r"\$(\d+)")

Kind = Literal["insert", "upsert", "update", "delete", "select", "other"]


@dataclass(frozen=True)
class Footprint:
    """What a statement does, and to which tables, as far as combining it with others is concerned.

    Attributes:
        kind: ``insert`` (plain), ``upsert`` (``INSERT … ON CONFLICT``), ``update``, ``delete``, ``select``
            or ``other``: anything else, and anything whose effects cannot be told from its structure (text,
            literal SQL, a quoted string, a function call — ``clock_timestamp()`` or ``nextval()`` would see
            the order the clauses run in).
        reach: for a write, the tables whose rows it may change: its own, and the tables that reference it,
            as far as foreign keys lead (a delete's cascades, or its checks, reach them all; an update's only
            through ``ON UPDATE`` actions); for a query, the tables it reads.
        table: a write's own table.
        numbered: whether that table numbers its rows from a sequence (an autoincrement or identity column).
        reads: the other tables a write reads (in subqueries, ``INSERT … SELECT``, ``UPDATE … FROM``).
        parents: the tables a write's rows reference by foreign key (checked when the statement ends).
    """

    kind: Kind
    reach: frozenset[str]
    table: str | None = None
    numbered: bool = False
    reads: frozenset[str] = frozenset()
    parents: frozenset[str] = frozenset()

    @property
    def joins_writes(self) -> bool:
        """Whether the statement may be held as a data-modifying ``WITH`` clause."""
        return self.kind in ("insert", "upsert", "update", "delete")


OPAQUE: Final = Footprint("other", frozenset())
"""The footprint of a statement that never shares one with held writes."""


def footprint(statement: Executable, sql: str) -> Footprint:
    """The footprint of ``statement``, compiled to ``sql``."""
    # A WITH of its own cannot be nested in another's; a quoted string could hold "$1", which renumbering
    # the placeholders would change.
    if sql.lstrip()[:4].upper() == "WITH" or "'" in sql or "$$" in sql:
        return OPAQUE
    elements = list(visitors.iterate(cast(Any, statement)))
    if any(
        isinstance(element, TextClause | FunctionElement) or (isinstance(element, ColumnClause) and element.is_literal)
        for element in elements
    ):
        return OPAQUE
    tables = {element.name for element in elements if isinstance(element, TableClause)}
    if getattr(statement, "is_select", False):
        return Footprint("select", frozenset(tables))
    target = getattr(statement, "table", None)
    if not getattr(statement, "is_dml", False) or not isinstance(target, Table):
        return OPAQUE
    kind: Kind
    if getattr(statement, "is_insert", False):
        kind = "upsert" if " ON CONFLICT " in sql else "insert"
    elif getattr(statement, "is_update", False):
        kind = "update"
    elif getattr(statement, "is_delete", False):
        kind = "delete"
    else:
        return OPAQUE
    reach = _referencing(target, lambda key: kind == "delete" or (kind == "update" and bool(key.onupdate)))
    numbered = target.autoincrement_column is not None or any(
        column.identity is not None or isinstance(column.default, Sequence) for column in target.columns
    )
    parents = frozenset(key.column.table.name for key in target.foreign_keys)
    return Footprint(kind, reach, target.name, numbered, frozenset(tables - {target.name}), parents)


def _referencing(target: Table, follows: Callable[[ForeignKey], bool]) -> frozenset[str]:
    """``target`` and every table that references it through foreign keys ``follows`` accepts, however far."""
    tables = list(target.metadata.tables.values())
    found, queue = {target.name}, [target]
    while queue:
        parent = queue.pop()
        for table in tables:
            if table.name not in found and any(
                key.column.table is parent and follows(key) for key in table.foreign_keys
            ):
                found.add(table.name)
                queue.append(table)
    return frozenset(found)


def _shifted(sql: str, offset: int) -> str:
    """``sql`` with its placeholders ``$n`` numbered from ``offset + 1``."""
    if not offset:
        return sql
    return _PLACEHOLDER.sub(lambda match: f"${int(match.group(1)) + offset}", sql)


class PendingWrites:
    """The writes a :class:`~lifecycle.store.driver.DriverTransaction` holds back (see the module docstring)."""

    __slots__ = ("_changed", "_parameters", "_parents", "_reach", "_texts", "items")

    def __init__(self, texts: dict[tuple[int, ...], str]) -> None:
        self._texts = texts  # combined SQL texts by the plans combined (shared by a process's transactions)
        self.clear()

    def __bool__(self) -> bool:
        return bool(self.items)

    def accepts(self, plan: Plan, rows: int) -> bool:
        """Whether ``rows`` rows of ``plan`` may join what is held now (else send what is held first)."""
        shape = plan.footprint
        if not self._fits(plan, rows):
            return False
        if shape.reads & self._reach:
            return False  # it reads what a held write changes
        if shape.kind == "insert":
            # Not a parent row of held rows: alone, their foreign-key check would have failed before it.
            return shape.table not in (self._reach if shape.numbered else self._changed) | self._parents
        return rows == 1 and not (shape.reach & self._reach)

    def may_hold(self, plan: Plan, rows: int) -> bool:
        """Whether ``rows`` rows of ``plan`` may be held at all (else the statement runs at once)."""
        shape = plan.footprint
        if not shape.joins_writes or rows > MAX_STATEMENTS or rows * len(plan.slots) > MAX_PARAMETERS:
            return False
        # Several updates might meet the same row; several numbered rows might be numbered out of order.
        return rows == 1 or (shape.kind == "insert" and not shape.numbered)

    def add(self, plan: Plan, rows: list[list[Any]]) -> None:
        """Hold ``rows`` of ``plan`` (after :meth:`accepts` said yes)."""
        shape = plan.footprint
        self.items.extend((plan, args) for args in rows)
        self._reach |= shape.reach
        if shape.kind != "insert":
            self._changed |= shape.reach
        self._parents |= shape.parents
        self._parameters += len(rows) * len(plan.slots)

    def reaches(self, query: Plan) -> bool:
        """Whether ``query`` (a statement whose rows are wanted: a query, or a write with ``RETURNING``)
        must not share a statement with what is held: it reads or writes what they change, or is neither."""
        shape = query.footprint
        if shape.kind == "select":
            return bool(shape.reach & self._reach) or not self._fits(query, 0)
        if shape.joins_writes:
            return not self.accepts(query, 1)
        return True

    def _fits(self, plan: Plan, rows: int) -> bool:
        """Whether ``rows`` held rows of ``plan`` (and its own parameters) stay within the limits."""
        return (
            len(self.items) + rows <= MAX_STATEMENTS
            and self._parameters + max(rows, 1) * len(plan.slots) <= MAX_PARAMETERS
        )

    def take(self, query: Plan | None = None, query_args: list[Any] | None = None) -> tuple[str, list[Any]]:
        """The combined statement of everything held (with ``query`` last, whose rows it then returns),
        and its arguments; nothing is held afterwards."""
        items = self.items if query is None else [*self.items, (query, query_args or [])]
        key = tuple(id(plan) for plan, _ in items)
        args: list[Any] = []
        for _, values in items:
            args += values
        sql = self._texts.get(key)
        if sql is None:
            clauses, offset = [], 0
            for n, (plan, values) in enumerate(items[:-1]):
                clauses.append(f"w{n} AS ({_shifted(plan.sql, offset)})")
                offset += len(values)
            last = _shifted(items[-1][0].sql, offset)
            sql = f"WITH {', '.join(clauses)}\n{last}" if clauses else last
            if len(self._texts) >= 1024:
                self._texts.clear()  # shapes vary little; a burst of new ones must not grow this for ever
            self._texts[key] = sql
        self.clear()
        return sql, args

    def clear(self) -> None:
        """Forget everything held."""
        self.items: list[tuple[Plan, list[Any]]] = []
        self._reach: set[str] = set()  # tables some held write changes
        self._changed: set[str] = set()  # tables a held update, delete or upsert changes
        self._parents: set[str] = set()  # tables held rows reference by foreign key
        self._parameters = 0
