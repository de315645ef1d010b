"""Traffic lights (红黄绿灯): a project's colour from the definition's bands, with the reasons for it.

Each band measures one thing (:data:`lifecycle.spec.models.LIGHT_MEASURES`) and says the least colour the
project has when the measure reaches ``at_least``. The worst colour of all bands that apply is the light;
none → green. Following the practice of peer platforms (银川 2025): planned to start this month but not
started → yellow, 3 months → red; behind 序时进度 (month/12 of the annual plan) by 10 points → yellow, by
30 → red. The numbers live in YAML; this module only measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from lifecycle.clock import local_date
from lifecycle.spec.models import Definition, TrafficLights

from .instance import ProjectInstance

Color = Literal["green", "yellow", "red"]
_RANK: dict[str, int] = {"green": 0, "yellow": 1, "red": 2}


@dataclass(frozen=True)
class LightReason:
    """A band that applies: what it measured, the value, and its titles."""

    measure: str
    value: Decimal
    color: Color
    title: str
    title_en: str | None


@dataclass(frozen=True)
class Light:
    """A project's light and every reason for it (empty when green)."""

    color: Color
    reasons: tuple[LightReason, ...] = ()


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def measures(rules: TrafficLights, project: ProjectInstance, now: datetime) -> dict[str, Decimal]:
    """The measures that apply to ``project`` now (a measure that does not apply is absent)."""
    today = local_date(now)
    out: dict[str, Decimal] = {}
    if project.state in rules.not_started_states and rules.planned_start_field:
        planned = project.fields.get(rules.planned_start_field)
        if isinstance(planned, date):
            months = (today.year * 12 + today.month) - (planned.year * 12 + planned.month)
            if months >= 0:
                out["months_not_started"] = Decimal(months)
    if project.state in rules.progress_states and rules.annual_plan_field and rules.completed_field:
        plan = _decimal(project.fields.get(rules.annual_plan_field))
        done = _decimal(project.fields.get(rules.completed_field)) or Decimal(0)
        if plan is not None and plan > 0:
            expected = Decimal(today.month) / Decimal(12) * 100
            actual = done / plan * 100
            out["progress_gap_pp"] = (expected - actual).quantize(Decimal("0.1"))
    overdue = [d for d in project.deadlines.values() if d.closed_at is None and not d.paused and d.due_at <= now]
    out["overdue_deadlines"] = Decimal(len(overdue))
    levels = [d.level for d in project.deadlines.values() if d.closed_at is None]
    out["escalation_level"] = Decimal(max(levels, default=0))
    return out


def compute_light(definition: Definition, project: ProjectInstance, now: datetime) -> Light:
    """The light of ``project`` at ``now`` under its definition's rules (green when it has none)."""
    rules = definition.traffic_lights
    if rules is None:
        return Light("green")
    measured = measures(rules, project, now)
    reasons = []
    for band in rules.bands:
        value = measured.get(band.measure)
        if value is not None and value >= band.at_least:
            reasons.append(LightReason(band.measure, value, band.color, band.title, band.title_en))
    if not reasons:
        return Light("green")
    worst = max(reasons, key=lambda r: _RANK[r.color]).color
    # The reasons shown are those of the worst colour first, then the milder ones.
    reasons.sort(key=lambda r: -_RANK[r.color])
    return Light(worst, tuple(reasons))
