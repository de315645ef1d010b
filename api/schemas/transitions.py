"""Triggers: what may fire now and why not, and the request to fire one."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from api.schemas.common import Reason, RequestModel, TriggerOptionOut
from lifecycle.engine.instance import TriggerOption

__all__ = ["FireRequest", "NoticeFireRequest", "Reason", "TriggerOptionOut", "option_out"]


class FireRequest(RequestModel):
    """Fire a trigger: its name, a comment (some triggers require one) and its data.

    Data by trigger: a project trigger takes the fields it accepts (e.g. ``{"fsr_approval_no": "…"}``);
    ``accept_with_deficiencies`` (issues the 一次性告知) takes ``{"missing": [material ids], "cure_date"?:
    "YYYY-MM-DD"}``; ``record_commitment`` takes ``{"text": "…", "due_date"?: "YYYY-MM-DD"}``;
    ``verify_commitment`` takes ``{"commitment_id"?: "…", "note"?: "…"}``.
    """

    trigger: str = Field(min_length=1, max_length=64, examples=["start_permitting"])
    comment: str | None = Field(default=None, max_length=4000)
    data: dict[str, Any] = Field(default_factory=dict)


class NoticeFireRequest(RequestModel):
    """Fire a trigger on a deficiency notice (``read``, ``supply``), with an optional comment."""

    trigger: str = Field(min_length=1, max_length=64, examples=["supply"])
    comment: str | None = Field(default=None, max_length=4000)


def option_out(option: TriggerOption, lang: str) -> TriggerOptionOut:
    """A trigger option with its reasons in the request language and in both."""
    return TriggerOptionOut(
        trigger=option.trigger,
        title=option.title_en if lang == "en" and option.title_en else option.title,
        title_en=option.title_en,
        to=option.dest,
        gate=option.gate,
        may_fire=option.may_fire,
        unmet=[
            Reason(code=code, message=en if lang == "en" else zh, message_zh=zh, message_en=en)
            for code, zh, en in option.reasons
        ],
    )
