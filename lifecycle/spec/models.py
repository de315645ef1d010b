"""The lifecycle definition format: pydantic models for what an administrator writes in YAML.

A :class:`Definition` describes one procedure (e.g. ``major-project``, the 巫山县 work plan): its phases and
steps, the project's states and transitions, the gates on those transitions, the parallel task groups of
approval and acceptance items, the small machines that items and deficiency notices follow, the clocks that
run in states, the escalation ladders, the recurring obligations and the traffic-light rules.

Everything here is data. Conditions come from a closed vocabulary (:class:`Condition`) implemented in
:mod:`lifecycle.engine.conditions`; notice templates name placeholders from a closed list. Nothing in a
definition is ever executed or evaluated as code.

Models are frozen: a definition is parsed once and shared, read-only, by every instance that runs on it.
Cross-references (a transition naming a state, an item naming a department…) are checked by
:mod:`lifecycle.spec.checks`, not here, so that all problems of a file can be reported together.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

SCHEMA_VERSION = 1
"""The version of this format. A file states it as ``schema_version``; old versions are migrated on load."""

Id = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
"""An English identifier: lower case, digits and underscores, starting with a letter."""

DefinitionKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$", max_length=64)]
"""A definition's key, e.g. ``major-project``."""

Title = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
"""A title shown to county users (Chinese)."""

Text = Annotated[str, StringConstraints(max_length=4000)]

SYSTEM_ROLE = "system"
"""The role of the scheduler: triggers that only time may fire (a cure date passing) allow this role."""


class SpecModel(BaseModel):
    """Base of every definition model: unknown keys are errors and instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Titled(SpecModel):
    """Something with an id, a Chinese title and optionally an English one."""

    id: Id
    title: Title
    title_en: Title | None = None
    description: Text | None = None


# --- time -------------------------------------------------------------------------------------------------


class Duration(SpecModel):
    """A length of time in working days or calendar days; the unit is always said explicitly, because the
    law counts most administrative clocks in working days (行政许可法 Art. 82) and some in calendar days
    (施工许可证 7 days)."""

    days: int = Field(ge=0, le=3650)
    unit: Literal["working_days", "calendar_days"]


# --- organisation -----------------------------------------------------------------------------------------


class Phase(Titled):
    """One of the plan's phases (前期决策生成, 中期建设实施, 后期投产达效)."""


class Step(SpecModel):
    """A numbered step of the plan (1–11 in the work plan), e.g. 5 提高审批效率, in a phase."""

    number: int = Field(ge=1, le=99)
    title: Title
    title_en: Title | None = None
    phase: Id


class Role(Titled):
    """A role that may fire triggers (unit, department, dispatcher, leader, admin, …).

    ``spans_county`` roles see every project; the others see only their own unit's projects.
    """

    spans_county: bool = False


class Department(Titled):
    """An org unit that items are assigned to (县规划自然资源局, 县住房城乡建委, …)."""

    kind: Literal["department", "township", "enterprise", "ndrc", "leader", "task_force", "other"] = "department"


class FieldSpec(Titled):
    """A data field of a project (custom fields declared by the definition), or of an obligation's report.

    ``unit`` says what a number is in (万元 for money unless said otherwise).
    """

    type: Literal["string", "text", "integer", "decimal", "date", "boolean", "choice", "attachments"]
    choices: list[Title] | None = None
    unit: str | None = Field(default=None, max_length=20)
    required: bool = False
    max_length: int | None = Field(default=None, ge=1, le=100_000)

    @model_validator(mode="after")
    def _choices_go_with_choice(self) -> FieldSpec:
        if (self.type == "choice") != bool(self.choices):
            raise ValueError("choices are given exactly when type is 'choice'")
        return self


# --- conditions and gates ---------------------------------------------------------------------------------


class ItemRef(SpecModel):
    """A reference to one item of a task group."""

    group: Id
    item: Id


class FieldCompare(SpecModel):
    """A field compared with a constant: ``{field: total_investment, op: ge, value: 5000}``."""

    field: Id
    op: Literal["eq", "ne", "gt", "ge", "lt", "le"]
    value: str | int | Decimal | bool


class GroupScope(SpecModel):
    """Limits a condition to one task group; an empty scope means every group of the project."""

    group: Id | None = None


CONDITION_KINDS = (
    "group_done",
    "item_done",
    "no_open_deficiency",
    "commitments_verified",
    "field_present",
    "field_compare",
    "no_overdue_deadlines",
    "all",
    "any",
)
"""The closed vocabulary of conditions. Each is implemented once in :mod:`lifecycle.engine.conditions`."""


class Condition(SpecModel):
    """One condition of a gate: exactly one of the keys below.

    * ``group_done: permitting`` — every required item of the group is done (approved, accepted…).
    * ``item_done: {group: permitting, item: construction_permit}`` — that item is done.
    * ``no_open_deficiency: {group: permitting}`` — no deficiency notice (容缺补正) is open, in the group or
      (``{}``) anywhere in the project.
    * ``commitments_verified: {group: permitting}`` — every commitment (承诺制) recorded is verified.
    * ``field_present: fsr_approval_no`` — the project field has a non-empty value.
    * ``field_compare: {field: total_investment, op: ge, value: 5000}``.
    * ``no_overdue_deadlines: {}`` — no open deadline of the project is past due.
    * ``all: [...]`` / ``any: [...]`` — nested conditions.

    ``title`` optionally replaces the generated message of an unmet condition.
    """

    group_done: Id | None = None
    item_done: ItemRef | None = None
    no_open_deficiency: GroupScope | None = None
    commitments_verified: GroupScope | None = None
    field_present: Id | None = None
    field_compare: FieldCompare | None = None
    no_overdue_deadlines: GroupScope | None = None
    all: list[Condition] | None = None
    any: list[Condition] | None = None
    title: Title | None = None
    title_en: Title | None = None

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Condition:
        given = [kind for kind in CONDITION_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(f"a condition has exactly one of {', '.join(CONDITION_KINDS)}; found {given or 'none'}")
        return self

    @property
    def kind(self) -> str:
        """Which vocabulary entry this condition is."""
        return next(kind for kind in CONDITION_KINDS if getattr(self, kind) is not None)

    @property
    def argument(self) -> Any:
        """The value given for the condition's kind."""
        return getattr(self, self.kind)


class Gate(Titled):
    """A named checkpoint on transitions (可研批复前, 开工前, 竣工验收前): all or any of its conditions.

    When a gate is not satisfied the engine reports every unmet condition, not just the first.
    """

    all: list[Condition] | None = None
    any: list[Condition] | None = None

    @model_validator(mode="after")
    def _all_or_any(self) -> Gate:
        if (self.all is None) == (self.any is None):
            raise ValueError("a gate has exactly one of 'all' or 'any'")
        return self

    @property
    def mode(self) -> Literal["all", "any"]:
        return "all" if self.all is not None else "any"

    @property
    def conditions(self) -> list[Condition]:
        return self.all if self.all is not None else (self.any or [])


# --- clocks, ladders --------------------------------------------------------------------------------------


class Clock(Titled):
    """A clock that runs while its machine is in one of ``runs_in`` states and stops when it leaves them.

    It opens a deadline row when it starts. ``basis`` says how long it runs:

    * ``duration`` — the clock's own ``duration``;
    * ``item_time_limit`` — the item's time limit (task machines only);
    * ``cure_date`` — until the cure date written on the deficiency notice (notice machines only);
    * ``field_date`` — until the date in project field ``field`` (e.g. the planned start).

    While the machine is in a ``paused_in`` state the clock does not run (行政许可法 Art. 45: expert
    review, hearings and testing do not count). When it comes due, the scheduler fires ``on_expiry`` (a
    ``system`` trigger) and climbs ``ladder``, if given.
    """

    basis: Literal["duration", "item_time_limit", "cure_date", "field_date"] = "duration"
    duration: Duration | None = None
    field: Id | None = None
    runs_in: list[Id] = Field(min_length=1)
    paused_in: list[Id] = Field(default_factory=list)
    on_expiry: Id | None = None
    ladder: Id | None = None

    @model_validator(mode="after")
    def _basis_arguments(self) -> Clock:
        if (self.basis == "duration") != (self.duration is not None):
            raise ValueError("'duration' is given exactly when basis is 'duration'")
        if (self.basis == "field_date") != (self.field is not None):
            raise ValueError("'field' is given exactly when basis is 'field_date'")
        return self


NOTICE_PLACEHOLDERS = frozenset(
    {
        "project_name",
        "project_code",
        "subject",
        "due_date",
        "days_late",
        "level",
        "level_title",
        "ladder_title",
        "recipient",
        "lead_unit",
        "lead_leader",
    }
)
"""The only names a notice template may use, as ``{name}``; nothing else is substituted or evaluated."""


class NoticeTemplate(SpecModel):
    """The notice an escalation level sends: its kind (提示函, 督办函, …) and a Chinese text template."""

    kind: Title
    template: Text


class LadderLevel(SpecModel):
    """One rung of an escalation ladder: ``after`` the deadline is due, tell ``notify`` with ``notice``."""

    level: int = Field(ge=1, le=20)
    title: Title
    title_en: Title | None = None
    after: Duration
    notify: list[Id] = Field(min_length=1)
    notice: NoticeTemplate | None = None


ESCALATION_RECIPIENTS = frozenset(
    {
        "lead_unit",
        "implementing_unit",
        "lead_leader",
        "department",
        "dispatcher",
        "task_force",
        "leading_group",
    }
)
"""Who a ladder level may notify: resolved per project at run time (the project's lead unit, its lead
county leader, the item's department, the 重点项目事务中心 dispatcher, the 工作专班, the 领导小组)."""


class Ladder(Titled):
    """An escalation ladder such as the 四级调度: levels climb with time after a deadline passes."""

    levels: list[LadderLevel] = Field(min_length=1)


# --- task machines and groups -----------------------------------------------------------------------------


class MachineState(Titled):
    """A state of a task or notice machine.

    ``outcome`` says what the state means to gates: ``open`` (still in progress), ``done`` (approved,
    accepted, cured: counts towards a group being done), ``failed`` (rejected, returned: final, not done).
    """

    outcome: Literal["open", "done", "failed"] = "open"


EFFECTS = (
    "new_submission",
    "issue_deficiency_notice",
    "cure_deficiency",
    "record_commitment",
    "verify_commitment",
    "breach_commitment",
)
"""The closed vocabulary of effects a task or notice transition may have, implemented by the engine:

* ``new_submission`` — a new application: the one-time-notice rule starts afresh;
* ``issue_deficiency_notice`` — 容缺受理: issue the one 一次性告知 notice listing every missing material;
* ``cure_deficiency`` — the notice's materials were supplied;
* ``record_commitment`` / ``verify_commitment`` / ``breach_commitment`` — 承诺制.
"""


class MachineTransition(SpecModel):
    """A transition of a task or notice machine.

    ``then_parent`` fires a trigger on the parent (a notice's ``supply`` resumes its task) in the same step.
    """

    trigger: Id
    title: Title
    title_en: Title | None = None
    source: list[Id] = Field(alias="from", min_length=1)
    dest: Id = Field(alias="to")
    roles: list[Id] = Field(min_length=1)
    effects: list[Literal[EFFECTS]] = Field(default_factory=list)  # type: ignore[valid-type]
    then_parent: Id | None = None
    comment_required: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_one_or_many(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("from"), str):
            data = {**data, "from": [data["from"]]}
        return data


class TaskMachine(Titled):
    """A small YAML machine that approval items, acceptance items or deficiency notices follow."""

    subject: Literal["item", "notice"]
    initial: Id
    states: list[MachineState] = Field(min_length=1)
    transitions: list[MachineTransition] = Field(min_length=1)
    clocks: list[Clock] = Field(default_factory=list)


class Material(Titled):
    """A material (申请材料) an item requires. Only non-core materials may be missing under 容缺."""

    core: bool = True


class Item(Titled):
    """An approval or acceptance item (审批/验收事项) of a task group, assigned to one department.

    Attributes:
        department: the department that handles it.
        time_limit: how long the department has (working or calendar days, said explicitly).
        materials: what the applicant must submit.
        deficiency_allowed: the materials that may be missing under 容缺受理 (non-core ones only).
        cure_period: how long the applicant has to supply missing materials; never past ``time_limit``.
        commitment: whether 告知承诺制 applies (a commitment is recorded and verified before acceptance).
        required: whether the group needs it done to be done.
        prerequisites: items of the same group that must be done first (never in a parallel group:
            互不为前置).
        legal_basis: the rule that sets the clock, shown to users.
    """

    department: Id
    time_limit: Duration
    materials: list[Material] = Field(default_factory=list)
    deficiency_allowed: list[Id] = Field(default_factory=list)
    cure_period: Duration | None = None
    commitment: bool = False
    required: bool = True
    prerequisites: list[Id] = Field(default_factory=list)
    legal_basis: Text | None = None


class TaskGroup(Titled):
    """A group of items opened together when the project enters a state that lists it in ``opens``.

    ``parallel: true`` is the 互不为前置 rule: items are handled side by side, in any order, and none may be a
    prerequisite of another. The group is done when every required item is done.
    """

    kind: Literal["approval", "acceptance", "support", "review"] = "approval"
    parallel: bool = True
    machine: Id
    notice_machine: Id | None = None
    items: list[Item] = Field(min_length=1)


# --- the project machine ----------------------------------------------------------------------------------


class State(Titled):
    """A state of the project machine.

    Attributes:
        phase: the phase it belongs to.
        steps: the plan's step numbers (1–11) carried out in this state.
        terminal: no transition leaves it (终止, 已评估).
        hold: a holding state (暂缓): transitions with ``to: $previous`` return to where the project was.
        opens: task groups whose items open when the state is entered.
    """

    phase: Id | None = None
    steps: list[int] = Field(default_factory=list)
    terminal: bool = False
    hold: bool = False
    opens: list[Id] = Field(default_factory=list)


PREVIOUS_STATE = "$previous"
"""The destination of a transition that returns a held project to the state it was held from."""

ANY_STATE = "*"
"""A transition source meaning every non-terminal, non-holding state (暂缓 and 终止 are possible anywhere)."""


class Transition(SpecModel):
    """A transition of the project machine.

    Attributes:
        trigger: the name callers fire.
        source: one state, several, or ``*`` (written ``from`` in YAML).
        dest: the destination, or ``$previous`` to return from a holding state (written ``to`` in YAML).
        roles: who may fire it (the scheduler's role is ``system``).
        gate: the gate that must be satisfied.
        requires_fields: project fields that must have a value after the trigger's data is applied.
        accepts_fields: project fields the trigger's data may set (e.g. the approval number).
    """

    trigger: Id
    title: Title
    title_en: Title | None = None
    source: list[str] = Field(alias="from", min_length=1)
    dest: str = Field(alias="to")
    roles: list[Id] = Field(min_length=1)
    gate: Id | None = None
    requires_fields: list[Id] = Field(default_factory=list)
    accepts_fields: list[Id] = Field(default_factory=list)
    comment_required: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_one_or_many(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("from"), str):
            data = {**data, "from": [data["from"]]}
        return data


# --- obligations and traffic lights -----------------------------------------------------------------------


class DueRule(SpecModel):
    """When a recurring obligation is due in each period.

    * weekly: ``weekday`` (1 = Monday … 7 = Sunday);
    * monthly: ``day`` of the month, or ``last_day``;
    * quarterly: ``day`` of the quarter's ``month_of_quarter`` (1–3; 每季度初 = month 1, day 10 say);
    * yearly: ``month`` and ``day`` (10月底 = month 10, last_day).

    ``time`` is the local (Asia/Shanghai) time of day it is due by; ``holiday_rule`` moves a due day that is
    not a working day.
    """

    weekday: int | None = Field(default=None, ge=1, le=7)
    day: int | None = Field(default=None, ge=1, le=31)
    last_day: bool = False
    month: int | None = Field(default=None, ge=1, le=12)
    month_of_quarter: int | None = Field(default=None, ge=1, le=3)
    time: str = Field(default="18:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    holiday_rule: Literal["next_working_day", "previous_working_day", "keep"] = "next_working_day"


class Obligation(Titled):
    """A recurring report a project owes while it is in ``applies_in`` states (每周一报送形象进度, 月度投资计划,
    季度储备更新, 10月底年度储备名单). A missing report opens an escalation on ``ladder``.

    ``updates_fields`` maps report fields to project fields that a filed report updates
    (``{report_field: project_field}``, e.g. the weekly report's investment this year feeds the traffic
    light's completed investment); the two fields must have the same type.
    """

    recurrence: Literal["weekly", "monthly", "quarterly", "yearly"]
    due: DueRule
    applies_in: list[Id] = Field(min_length=1)
    ladder: Id | None = None
    roles: list[Id] = Field(min_length=1)
    fields: list[FieldSpec] = Field(default_factory=list)
    updates_fields: dict[Id, Id] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _due_fits_recurrence(self) -> Obligation:
        due = self.due
        need: dict[str, bool] = {
            "weekly": due.weekday is not None and due.day is None and not due.last_day,
            "monthly": due.weekday is None and (due.day is not None) != due.last_day,
            "quarterly": due.weekday is None
            and due.month_of_quarter is not None
            and (due.day is not None) != due.last_day,
            "yearly": due.weekday is None and due.month is not None and (due.day is not None) != due.last_day,
        }
        if not need[self.recurrence]:
            raise ValueError(
                "due rule does not fit the recurrence: weekly needs weekday; monthly needs day or last_day; "
                "quarterly needs month_of_quarter and day or last_day; yearly needs month and day or last_day"
            )
        return self


LIGHT_MEASURES = ("progress_gap_pp", "months_not_started", "overdue_deadlines", "escalation_level")
"""What a traffic-light band measures:

* ``progress_gap_pp`` — percentage points the completed investment is behind 序时进度 (month/12 of the
  annual plan);
* ``months_not_started`` — whole months since the planned start while the project is in a not-started state;
* ``overdue_deadlines`` — open deadlines past due;
* ``escalation_level`` — the highest ladder level reached by an open deadline.
"""


class LightBand(SpecModel):
    """One band: when ``measure`` is at least ``at_least``, the light is at least ``color``."""

    measure: Literal[LIGHT_MEASURES]  # type: ignore[valid-type]
    at_least: Decimal
    color: Literal["yellow", "red"]
    title: Title
    title_en: Title | None = None


class TrafficLights(SpecModel):
    """Traffic-light (红黄绿灯) rules: the worst band that applies sets the colour; none → green.

    Attributes:
        bands: the bands.
        not_started_states: states in which a project counts as not started.
        progress_states: states in which progress against 序时进度 is measured.
        planned_start_field / annual_plan_field / completed_field: the project fields the measures read.
    """

    bands: list[LightBand] = Field(min_length=1)
    not_started_states: list[Id] = Field(default_factory=list)
    progress_states: list[Id] = Field(default_factory=list)
    planned_start_field: Id | None = None
    annual_plan_field: Id | None = None
    completed_field: Id | None = None


# --- the definition ---------------------------------------------------------------------------------------


class Definition(SpecModel):
    """A whole lifecycle definition: one procedure, one YAML file."""

    schema_version: Literal[1] = 1
    key: DefinitionKey
    title: Title
    title_en: Title | None = None
    description: Text | None = None
    initial: Id
    phases: list[Phase] = Field(min_length=1)
    steps: list[Step] = Field(default_factory=list)
    roles: list[Role] = Field(min_length=1)
    departments: list[Department] = Field(default_factory=list)
    fields: list[FieldSpec] = Field(default_factory=list)
    states: list[State] = Field(min_length=1)
    transitions: list[Transition] = Field(min_length=1)
    gates: list[Gate] = Field(default_factory=list)
    task_machines: list[TaskMachine] = Field(default_factory=list)
    task_groups: list[TaskGroup] = Field(default_factory=list)
    clocks: list[Clock] = Field(default_factory=list)
    ladders: list[Ladder] = Field(default_factory=list)
    obligations: list[Obligation] = Field(default_factory=list)
    traffic_lights: TrafficLights | None = None

    @cached_property
    def tables(self) -> dict[str, dict[Any, Any]]:
        """Lookup tables by id (``states``, ``gates``, ``task_groups``…; ``steps`` by number), built once.

        With duplicate ids the first wins (the static checks report duplicates). A cached property, not a
        private attribute, because engine hot paths read it on every fire.
        """
        index: dict[str, dict[Any, Any]] = {}
        for name in (
            "phases", "roles", "departments", "fields", "states", "gates",
            "task_machines", "task_groups", "clocks", "ladders", "obligations",
        ):  # fmt: skip
            table: dict[Any, Any] = {}
            for entry in getattr(self, name):
                table.setdefault(entry.id, entry)
            index[name] = table
        steps: dict[Any, Any] = {}
        for step in self.steps:
            steps.setdefault(step.number, step)
        index["steps"] = steps
        return index

    def lookup(self, table: str) -> dict[Any, Any]:
        """The entries of ``table`` (``states``, ``gates``, ``task_groups``…) by id."""
        return self.tables[table]

    def state(self, state_id: str) -> State:
        """The state ``state_id`` (KeyError if unknown)."""
        return self.tables["states"][state_id]  # type: ignore[no-any-return]

    def group(self, group_id: str) -> TaskGroup:
        """The task group ``group_id``."""
        return self.tables["task_groups"][group_id]  # type: ignore[no-any-return]

    def gate(self, gate_id: str) -> Gate:
        """The gate ``gate_id``."""
        return self.tables["gates"][gate_id]  # type: ignore[no-any-return]

    def machine(self, machine_id: str) -> TaskMachine:
        """The task or notice machine ``machine_id``."""
        return self.tables["task_machines"][machine_id]  # type: ignore[no-any-return]

    def ladder(self, ladder_id: str) -> Ladder:
        """The escalation ladder ``ladder_id``."""
        return self.tables["ladders"][ladder_id]  # type: ignore[no-any-return]

    def field(self, field_id: str) -> FieldSpec | None:
        """The project field ``field_id``, or None."""
        return self.tables["fields"].get(field_id)
