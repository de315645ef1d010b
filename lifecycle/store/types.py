"""Column types that behave the same on SQLite and PostgreSQL.

* :class:`UTCDateTime` — an instant, always returned timezone-aware in UTC. PostgreSQL keeps it in a
  ``timestamptz``; SQLite has no time zones, so the UTC wall time is stored and UTC is attached on read.
  Storing one fixed zone also keeps SQLite's text timestamps comparable by ``<`` (used by "due" queries).
* :class:`Money` — ``Numeric(18, 4)`` returning :class:`~decimal.Decimal`. PostgreSQL stores it exactly;
  SQLite has no decimal type and keeps a double, exact to about 15 significant digits (万元 amounts with
  four decimals up to 10¹¹ 万元), so the value is rounded back to four places on read.
* :data:`JSONDocument` — JSON, as ``jsonb`` on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Numeric
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

_FOUR_PLACES = Decimal("0.0001")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware instant in UTC (naive values are refused: a time without a zone is a bug)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given for a UTC column")
        value = value.astimezone(UTC)
        # SQLite would write the offset nowhere anyway; dropping it keeps every stored text in one format.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Money(TypeDecorator[Decimal]):
    """An amount of money in 万元 with four decimals (``Numeric(18, 4)``), read as ``Decimal``."""

    impl = Numeric(18, 4)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            # Read the double as float and convert below, instead of letting SQLAlchemy warn on every
            # connection that SQLite has no native decimal.
            return dialect.type_descriptor(Numeric(18, 4, asdecimal=False))
        return dialect.type_descriptor(Numeric(18, 4))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return float(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        number = value if isinstance(value, Decimal) else Decimal(repr(value))
        return number.quantize(_FOUR_PLACES)


JSONDocument = JSON().with_variant(JSONB(), "postgresql")
"""A JSON column: ``JSON`` (text) on SQLite, ``jsonb`` on PostgreSQL."""
