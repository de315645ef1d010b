"""Items (审批/验收事项), deficiency notices (一次性告知) and commitments (承诺制) as answered: the services' views."""

from __future__ import annotations

from api.concurrency import etag
from lifecycle.services import CommitmentView, DeadlineView, MaterialView, NoticeView, TaskView
from lifecycle.services.answers import RenderedAnswer

TaskOut = TaskView
"""An item: group and item titles, department, state, outcome, submission count, open clocks, version."""

NoticeOut = NoticeView
"""A 一次性告知 notice: the item, the submission, every missing material, the cure date, its state."""

CommitmentOut = CommitmentView
"""A 告知承诺制 commitment: its text, state (recorded / verified / breached) and who did what when."""


def item_answer(view: TaskView | NoticeView) -> RenderedAnswer:
    """The answer to a change of an item or a notice: 200, the view as JSON (what FastAPI sends for
    ``response_model=TaskOut`` / ``NoticeOut``, which are the views) and its ETag. The service renders it
    inside the change's transaction when the answer is stored there for an ``Idempotency-Key``
    (:mod:`lifecycle.services.answers`)."""
    body = view.__pydantic_serializer__.to_json(view, by_alias=True)
    return 200, (("content-type", "application/json"), ("etag", etag(view.version))), body


__all__ = ["CommitmentOut", "DeadlineView", "MaterialView", "NoticeOut", "TaskOut", "item_answer"]
