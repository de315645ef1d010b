"""Shapes shared by every domain: problem documents, pages, condition reasons."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

T = TypeVar("T")


def unstorable_text(value: Any) -> bool:
    """Whether ``value`` holds, anywhere inside, text no database can store as given: a NUL character
    (PostgreSQL text and jsonb refuse it) or an unpaired UTF-16 surrogate (not encodable as UTF-8)."""
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(unstorable_text(k) or unstorable_text(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(unstorable_text(v) for v in value)
    return False


class RequestModel(BaseModel):
    """Base of request bodies: unknown members are refused, strings are not stripped, and text that cannot
    be stored (NUL, unpaired surrogates) is refused here, as a 422 at its member, rather than by the
    database as a 500."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if unstorable_text(value):
            raise PydanticCustomError("string_unstorable", "text may not contain NUL characters or unpaired surrogates")
        return value


class FieldError(BaseModel):
    """One thing wrong with a request, at a field path (``["body", "fields", "investment"]``)."""

    loc: list[str | int]
    code: str
    message: str
    message_zh: str
    message_en: str


class UnmetCondition(BaseModel):
    """An unmet condition of a gate (or a required field that is empty)."""

    code: str
    message: str = Field(description="In the request's language.")
    message_zh: str
    message_en: str
    gate: str | None = None


class ProblemDocument(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``); members beyond ``code`` depend on it."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: str
    request_id: str | None = None
    errors: list[FieldError] | None = None
    unmet: list[UnmetCondition] | None = None
    allowed_triggers: list[str] | None = None
    current_etag: str | None = None


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` for the next one (None: the last page)."""

    items: list[T]
    next_cursor: str | None = None


class Reason(BaseModel):
    """Why a trigger may not fire now: a code and its message in the request language and in both."""

    code: str
    message: str
    message_zh: str
    message_en: str


class TriggerOptionOut(BaseModel):
    """A trigger leaving the current state: may the caller fire it now, and if not every reason why."""

    trigger: str
    title: str
    title_en: str | None = None
    to: str = Field(description="The state it leads to (``$previous``: back to where the hold began).")
    gate: str | None = None
    may_fire: bool
    unmet: list[Reason]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemDocument, "content": {"application/problem+json": {}}, "description": text}
    for status, text in (
        (401, "No or an unknown bearer token."),
        (403, "The caller may see the resource but not do this."),
        (404, "No such resource, or not visible to the caller."),
        (422, "Invalid input: every problem with its field path."),
    )
}
"""Responses every authenticated endpoint may give, for the OpenAPI document."""

MUTATION_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    **{
        status: {"model": ProblemDocument, "content": {"application/problem+json": {}}, "description": text}
        for status, text in (
            (409, "Refused: gate not satisfied, invalid transition, one-time notice breach, or in flight."),
            (412, "If-Match names a version that is no longer current."),
            (428, "If-Match is required."),
        )
    },
}
"""Responses of endpoints that change a project or task."""
