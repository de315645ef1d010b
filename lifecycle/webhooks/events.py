"""The webhook events: one versioned JSON payload per type, and how each is built from a history event.

Every payload is an envelope::

    {"id": "<history event id>", "type": "task.transitioned", "version": 1,
     "occurred_at": "2026-03-02T01:00:00Z", "actor": "planner",
     "project": {...the project after the change...}, "data": {...depends on the type...}}

``id`` is the history event's id (``GET /api/v1/projects/{id}/history``), also sent as ``webhook-id``: the same
on every retry and redelivery. ``project`` is the project as the change that caused the event left it (state,
phase and light with their titles), so that an integrator need not call back.

Types follow the history's event kinds (:class:`lifecycle.engine.instance.Event`): a kind ``x.transition``
is the type ``x.transitioned``, ``project.fields_updated`` and ``project.updated`` are both ``project.updated``,
every other kind keeps its name. Kinds this module has no model for (e.g. those the scheduler adds) are sent
in the generic shape :class:`GenericData`, under their own name.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from lifecycle.spec.models import Definition

if TYPE_CHECKING:
    from lifecycle.engine.instance import ProjectInstance
    from lifecycle.services.hooks import Change
    from lifecycle.store.events import EventRecord
    from lifecycle.store.projects import ProjectRecord

PAYLOAD_VERSION: Literal[1] = 1
"""The version of every payload shape below; a breaking change of a shape makes a new version."""

API = "/api/v1"

KIND_TYPES: dict[str, str] = {
    "project.transition": "project.transitioned",
    "task.transition": "task.transitioned",
    "notice.transition": "notice.transitioned",
    "project.fields_updated": "project.updated",
}
"""History kinds whose webhook type has another name; every other kind is its own type."""


def event_type_of(kind: str) -> str:
    """The webhook type of a history event kind."""
    return KIND_TYPES.get(kind, kind)


# --- parts ------------------------------------------------------------------------------------------------


class Part(BaseModel):
    """Base of payload parts: immutable, and strict about members."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Ref(Part):
    """A state or phase: its id and titles."""

    id: str
    title: str
    title_en: str | None = None


class ProjectSnapshot(Part):
    """The project as the change left it."""

    id: str
    code: str | None = Field(description="项目代码 (national online approval platform), once assigned.")
    name: str
    definition_key: str
    definition_version: int
    state: Ref
    phase: Ref | None = None
    held: bool = Field(description="In a holding state (暂缓).")
    held_from: str | None = None
    terminal: bool
    light: str | None = Field(description="Traffic light: green, yellow, red (None until computed).")
    lead_unit: str
    implementing_unit: str | None = None
    lead_leader: str | None = None
    township: str | None = None
    version: int = Field(description='The project\'s version (its ETag is W/"<version>").')
    href: str


class TaskRef(Part):
    """An item (审批/验收事项) as the change left it."""

    id: str
    group: str
    group_title: str
    item: str
    item_title: str
    department: str | None = None
    department_title: str | None = None
    state: Ref
    outcome: Literal["open", "done", "failed"]
    submission: int
    href: str


class MaterialRef(Part):
    """A material named on a deficiency notice."""

    id: str
    title: str


class NoticeRef(Part):
    """A 一次性告知 deficiency notice: every missing material and the cure date."""

    id: str
    task_id: str
    item_title: str
    state: Ref
    missing: list[MaterialRef]
    cure_date: date
    issued_at: datetime
    issued_by: str
    href: str


class CommitmentRef(Part):
    """A 告知承诺制 commitment."""

    id: str
    text: str
    state: Literal["recorded", "verified", "breached"]
    due_date: date | None = None
    note: str | None = None


# --- data of each type ------------------------------------------------------------------------------------


class ProjectCreatedData(Part):
    """``project.created``: the project exists, in its initial state."""

    state: Ref


class ProjectUpdatedData(Part):
    """``project.updated``: header columns or data fields changed outside a transition."""

    source: Literal["header", "fields"]
    changes: dict[str, Any] = Field(description="New values (JSON form: money as decimal text, dates ISO).")


class ProjectTransitionedData(Part):
    """``project.transitioned``: a transition of the project machine."""

    trigger: str
    trigger_title: str | None = None
    from_state: Ref
    to_state: Ref
    comment: str | None = None
    fields: dict[str, Any] = Field(description="Fields the trigger's data set.")


class TaskOpenedData(Part):
    """``task.opened``: an item opened (its group's state was entered)."""

    task: TaskRef


class TaskTransitionedData(Part):
    """``task.transitioned``: a transition of an item (submit, accept, approve…)."""

    task: TaskRef
    trigger: str
    trigger_title: str | None = None
    from_state: Ref
    to_state: Ref
    comment: str | None = None


class NoticeIssuedData(Part):
    """``notice.issued``: the one deficiency notice of a submission (容缺受理)."""

    notice: NoticeRef
    task: TaskRef


class NoticeTransitionedData(Part):
    """``notice.transitioned``: a notice was read, supplied (cured) or lapsed."""

    notice: NoticeRef
    task: TaskRef
    trigger: str
    trigger_title: str | None = None
    from_state: Ref
    to_state: Ref
    comment: str | None = None


class CommitmentData(Part):
    """``commitment.recorded`` / ``commitment.verified`` / ``commitment.breached``."""

    task: TaskRef
    commitment: CommitmentRef


class GenericData(Part):
    """Any other project event (escalations, obligations and other kinds added later): the history entry's
    own members, plus the item or notice it concerns."""

    subject_kind: str
    subject_id: str
    trigger: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    comment: str | None = None
    details: dict[str, Any] = Field(description="The history event's data.")
    task: TaskRef | None = None
    notice: NoticeRef | None = None


class PingData(Part):
    """``webhook.ping``: a test message asked for with ``POST …/endpoints/{id}/ping``."""

    endpoint_id: str
    message: str


class EndpointDisabledData(Part):
    """``webhook.endpoint_disabled``: an endpoint was disabled (410 Gone, or failing for days)."""

    endpoint_id: str
    owner: str
    reason: Literal["gone", "failing"]
    failing_since: datetime | None = None


class WorkflowData(Part):
    """``workflow.published`` / ``workflow.migrated``: a definition version was published, or projects were
    moved to another version."""

    model_config = ConfigDict(frozen=True, extra="allow")

    definition_key: str
    definition_version: int


# --- envelopes --------------------------------------------------------------------------------------------


class Envelope(Part):
    """Members every payload has. ``truncated``: the payload was larger than the limit and ``data`` was
    dropped; read the event at ``href`` instead."""

    id: str = Field(description="The event's id: the history event id, and the webhook-id header.")
    version: Literal[1] = PAYLOAD_VERSION
    occurred_at: datetime
    actor: str = Field(description="The principal that caused it (``system`` for the scheduler).")
    project: ProjectSnapshot | None = None
    truncated: bool = False
    href: str | None = None


class ProjectCreated(Envelope):
    type: Literal["project.created"]
    data: ProjectCreatedData | None


class ProjectUpdated(Envelope):
    type: Literal["project.updated"]
    data: ProjectUpdatedData | None


class ProjectTransitioned(Envelope):
    type: Literal["project.transitioned"]
    data: ProjectTransitionedData | None


class TaskOpened(Envelope):
    type: Literal["task.opened"]
    data: TaskOpenedData | None


class TaskTransitioned(Envelope):
    type: Literal["task.transitioned"]
    data: TaskTransitionedData | None


class NoticeIssued(Envelope):
    type: Literal["notice.issued"]
    data: NoticeIssuedData | None


class NoticeTransitioned(Envelope):
    type: Literal["notice.transitioned"]
    data: NoticeTransitionedData | None


class CommitmentRecorded(Envelope):
    type: Literal["commitment.recorded"]
    data: CommitmentData | None


class CommitmentVerified(Envelope):
    type: Literal["commitment.verified"]
    data: CommitmentData | None


class CommitmentBreached(Envelope):
    type: Literal["commitment.breached"]
    data: CommitmentData | None


class WebhookPing(Envelope):
    type: Literal["webhook.ping"]
    data: PingData | None


class EndpointDisabled(Envelope):
    type: Literal["webhook.endpoint_disabled"]
    data: EndpointDisabledData | None


class WorkflowPublished(Envelope):
    type: Literal["workflow.published"]
    data: WorkflowData | None


class WorkflowMigrated(Envelope):
    type: Literal["workflow.migrated"]
    data: WorkflowData | None


class GenericEvent(Envelope):
    """Any other type (``escalation.*``, ``obligation.*``, ``deadline.*``…)."""

    type: str
    data: GenericData | None


MODELS: dict[str, type[Envelope]] = {
    "project.created": ProjectCreated,
    "project.updated": ProjectUpdated,
    "project.transitioned": ProjectTransitioned,
    "task.opened": TaskOpened,
    "task.transitioned": TaskTransitioned,
    "notice.issued": NoticeIssued,
    "notice.transitioned": NoticeTransitioned,
    "commitment.recorded": CommitmentRecorded,
    "commitment.verified": CommitmentVerified,
    "commitment.breached": CommitmentBreached,
    "webhook.ping": WebhookPing,
    "webhook.endpoint_disabled": EndpointDisabled,
    "workflow.published": WorkflowPublished,
    "workflow.migrated": WorkflowMigrated,
}
"""The payload model of each known type (others use :class:`GenericEvent`)."""

DATA_MODELS: dict[str, type[Part]] = {
    "project.created": ProjectCreatedData,
    "project.updated": ProjectUpdatedData,
    "project.transitioned": ProjectTransitionedData,
    "task.opened": TaskOpenedData,
    "task.transitioned": TaskTransitionedData,
    "notice.issued": NoticeIssuedData,
    "notice.transitioned": NoticeTransitionedData,
    "commitment.recorded": CommitmentData,
    "commitment.verified": CommitmentData,
    "commitment.breached": CommitmentData,
    "webhook.ping": PingData,
    "webhook.endpoint_disabled": EndpointDisabledData,
    "workflow.published": WorkflowData,
    "workflow.migrated": WorkflowData,
}
"""The ``data`` model of each known type."""


def describe(event_type: str) -> str:
    """The first line of the documentation of a type's ``data``."""
    doc = (DATA_MODELS.get(event_type, GenericData).__doc__ or event_type).strip()
    return doc.splitlines()[0]


KnownEvent = Annotated[
    ProjectCreated
    | ProjectUpdated
    | ProjectTransitioned
    | TaskOpened
    | TaskTransitioned
    | NoticeIssued
    | NoticeTransitioned
    | CommitmentRecorded
    | CommitmentVerified
    | CommitmentBreached
    | WebhookPing
    | EndpointDisabled
    | WorkflowPublished
    | WorkflowMigrated,
    Field(discriminator="type"),
]
"""Every known payload, told apart by ``type`` (for the OpenAPI document)."""

CATEGORIES = ("project", "task", "notice", "commitment", "escalation", "obligation", "deadline", "workflow", "webhook")
"""The first part of every type an endpoint may subscribe to (``project.*`` …)."""

ADMIN_ONLY_CATEGORIES = ("webhook",)
"""Types about endpoints themselves, which only administrators may subscribe to."""


def model_of(event_type: str) -> type[Envelope]:
    """The payload model of ``event_type``."""
    return MODELS.get(event_type, GenericEvent)


# --- building payloads ------------------------------------------------------------------------------------


def _ref(entry: Any, ident: str) -> Ref:
    if entry is None:
        return Ref(id=ident, title=ident)
    return Ref(id=ident, title=entry.title, title_en=entry.title_en)


def project_snapshot(record: ProjectRecord, definition: Definition) -> ProjectSnapshot:
    """The project part of a payload."""
    states = definition.lookup("states")
    state = states.get(record.state)
    phase = definition.lookup("phases").get(record.phase) if record.phase else None
    return ProjectSnapshot(
        id=record.id,
        code=record.code,
        name=record.name,
        definition_key=record.definition_key,
        definition_version=record.definition_version,
        state=_ref(state, record.state),
        phase=_ref(phase, record.phase) if record.phase else None,
        held=bool(state and state.hold),
        held_from=record.held_from,
        terminal=bool(state and state.terminal),
        light=record.light,
        lead_unit=record.lead_unit,
        implementing_unit=record.implementing_unit,
        lead_leader=record.lead_leader,
        township=record.township,
        version=record.version,
        href=f"{API}/projects/{record.id}",
    )


def _machine_state(definition: Definition, machine_id: str, state_id: str) -> tuple[Ref, str]:
    machine = definition.lookup("task_machines").get(machine_id)
    spec = next((s for s in machine.states if s.id == state_id), None) if machine else None
    return _ref(spec, state_id), (spec.outcome if spec else "open")


def _machine_trigger_title(definition: Definition, machine_id: str, trigger: str | None) -> str | None:
    machine = definition.lookup("task_machines").get(machine_id)
    if machine is None or trigger is None:
        return None
    return next((t.title for t in machine.transitions if t.trigger == trigger), None)


def task_ref(definition: Definition, instance: ProjectInstance, task_id: str) -> TaskRef | None:
    """The item part of a payload (None if the project has no such item)."""
    task = instance.tasks.get(task_id)
    if task is None:
        return None
    group = definition.lookup("task_groups").get(task.group)
    item = next((i for i in group.items if i.id == task.item), None) if group else None
    department = definition.lookup("departments").get(item.department) if item else None
    state, outcome = _machine_state(definition, task.machine, task.state)
    return TaskRef(
        id=task.id,
        group=task.group,
        group_title=group.title if group else task.group,
        item=task.item,
        item_title=item.title if item else task.item,
        department=item.department if item else None,
        department_title=department.title if department else None,
        state=state,
        outcome=outcome,  # type: ignore[arg-type]
        submission=task.submission,
        href=f"{API}/projects/{instance.id}/tasks/{task.id}",
    )


def notice_ref(definition: Definition, instance: ProjectInstance, notice_id: str) -> NoticeRef | None:
    """The notice part of a payload (None if the project has no such notice)."""
    notice = instance.notices.get(notice_id)
    if notice is None:
        return None
    task = instance.tasks.get(notice.task_id)
    group = definition.lookup("task_groups").get(task.group) if task else None
    item = next((i for i in group.items if task and i.id == task.item), None) if group else None
    materials = {m.id: m.title for m in item.materials} if item else {}
    state, _ = _machine_state(definition, notice.machine, notice.state)
    return NoticeRef(
        id=notice.id,
        task_id=notice.task_id,
        item_title=item.title if item else notice.task_id,
        state=state,
        missing=[MaterialRef(id=m, title=materials.get(m, m)) for m in notice.missing],
        cure_date=notice.cure_date,
        issued_at=notice.issued_at,
        issued_by=notice.issued_by,
        href=f"{API}/projects/{instance.id}/notices/{quote(notice.id, safe='')}",
    )


def _data(change: Change, event: EventRecord, event_type: str) -> BaseModel:
    definition, instance = change.definition, change.instance
    kind = event.kind
    if kind == "project.created":
        return ProjectCreatedData(state=_ref(definition.lookup("states").get(event.to_state), event.to_state or ""))
    if kind in ("project.updated", "project.fields_updated"):
        return ProjectUpdatedData(source="header" if kind == "project.updated" else "fields", changes=event.data)
    if kind == "project.transition":
        states = definition.lookup("states")
        title = next((t.title for t in definition.transitions if t.trigger == event.trigger), None)
        return ProjectTransitionedData(
            trigger=event.trigger or "",
            trigger_title=title,
            from_state=_ref(states.get(event.from_state), event.from_state or ""),
            to_state=_ref(states.get(event.to_state), event.to_state or ""),
            comment=event.comment,
            fields=event.data,
        )
    task = task_ref(definition, instance, event.subject_id) if event.subject_kind == "task" else None
    if kind == "task.opened" and task is not None:
        return TaskOpenedData(task=task)
    if kind == "task.transition" and task is not None:
        machine = instance.tasks[event.subject_id].machine
        return TaskTransitionedData(
            task=task,
            trigger=event.trigger or "",
            trigger_title=_machine_trigger_title(definition, machine, event.trigger),
            from_state=_machine_state(definition, machine, event.from_state or "")[0],
            to_state=_machine_state(definition, machine, event.to_state or "")[0],
            comment=event.comment,
        )
    if kind.startswith("commitment.") and task is not None:
        ident = str(event.data.get("commitment", ""))
        commitment = instance.commitments.get(ident)
        if commitment is not None:
            return CommitmentData(
                task=task,
                commitment=CommitmentRef(
                    id=commitment.id,
                    text=commitment.text,
                    state=commitment.state,
                    due_date=commitment.due_date,
                    note=commitment.note,
                ),
            )
    notice = notice_ref(definition, instance, event.subject_id) if event.subject_kind == "notice" else None
    if notice is not None and kind in ("notice.issued", "notice.transition"):
        parent = task_ref(definition, instance, notice.task_id)
        if parent is not None:
            if kind == "notice.issued":
                return NoticeIssuedData(notice=notice, task=parent)
            machine = instance.notices[event.subject_id].machine
            return NoticeTransitionedData(
                notice=notice,
                task=parent,
                trigger=event.trigger or "",
                trigger_title=_machine_trigger_title(definition, machine, event.trigger),
                from_state=_machine_state(definition, machine, event.from_state or "")[0],
                to_state=_machine_state(definition, machine, event.to_state or "")[0],
                comment=event.comment,
            )
    if notice is not None and task is None:
        task = task_ref(definition, instance, notice.task_id)
    return GenericData(
        subject_kind=event.subject_kind,
        subject_id=event.subject_id,
        trigger=event.trigger,
        from_state=event.from_state,
        to_state=event.to_state,
        comment=event.comment,
        details=event.data,
        task=task,
        notice=notice,
    )


def project_event(change: Change, event: EventRecord, snapshot: ProjectSnapshot) -> Envelope:
    """The payload of one history event of a change."""
    event_type = event_type_of(event.kind)
    data = _data(change, event, event_type)
    model = model_of(event_type)
    if model is GenericEvent and not isinstance(data, GenericData):
        data = GenericData(subject_kind=event.subject_kind, subject_id=event.subject_id, details=event.data)
    return model.model_validate(
        {
            "id": event.event_id,
            "type": event_type,
            "occurred_at": event.at,
            "actor": event.actor,
            "project": snapshot,
            "data": data,
        },
        from_attributes=False,
    )


def envelope(
    event_type: str,
    event_id: str,
    occurred_at: datetime,
    actor: str,
    data: BaseModel | dict[str, Any],
    project: ProjectSnapshot | None = None,
) -> Envelope:
    """The payload of an event that is not a project's history event (ping, workflow, endpoint disabled).

    Raises:
        pydantic.ValidationError: ``data`` does not fit the type's model.
    """
    return model_of(event_type).model_validate(
        {
            "id": event_id,
            "type": event_type,
            "occurred_at": occurred_at,
            "actor": actor,
            "project": project,
            "data": data,
        }
    )


def body_of(payload: Envelope, limit: int) -> str:
    """The JSON body to send: compact, UTF-8 as is. Over ``limit`` bytes, ``data`` is dropped and
    ``truncated``/``href`` say where to read the event in full."""
    body = payload.model_dump_json()
    if len(body.encode()) <= limit:
        return body
    document = json.loads(body)
    document["data"] = None
    document["truncated"] = True
    project = document.get("project") or {}
    document["href"] = f"{project['href']}/history" if project.get("href") else f"{API}/webhooks/deliveries"
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    if len(body.encode()) > limit:  # the envelope alone is too big: keep only what identifies the event
        document["project"] = {"id": project.get("id"), "href": project.get("href")} if project else None
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return body
