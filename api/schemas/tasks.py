"""Items (审批/验收事项), deficiency notices (一次性告知) and commitments (承诺制) as answered: the services' views."""

from __future__ import annotations

from lifecycle.services import CommitmentView, DeadlineView, MaterialView, NoticeView, TaskView

TaskOut = TaskView
"""An item: group and item titles, department, state, outcome, submission count, open clocks, version."""

NoticeOut = NoticeView
"""A 一次性告知 notice: the item, the submission, every missing material, the cure date, its state."""

CommitmentOut = CommitmentView
"""A 告知承诺制 commitment: its text, state (recorded / verified / breached) and who did what when."""

__all__ = ["CommitmentOut", "DeadlineView", "MaterialView", "NoticeOut", "TaskOut"]
