"""Drive a project of any definition forward through the services, as its real callers would: the owner unit
fires its own triggers, each department acts on its own items, the dispatcher on the rest. Paths come from the
generic walker (:mod:`tests.support.walker`), so nothing here knows a particular procedure."""

from __future__ import annotations

from typing import Any

from lifecycle.services import CallContext, Principal, ProjectView, Services
from lifecycle.services.workflows import WorkflowAdmin
from lifecycle.spec.models import SYSTEM_ROLE, Definition
from tests.support.walker import _path_to_done, path_to, satisfying_fields

DISPATCHER = Principal("dispatch", "重点项目事务中心", roles=frozenset({"dispatcher"}))


def principal_for(roles: list[str], owner: Principal, department: str | None) -> Principal:
    """Who fires a trigger allowed to ``roles``: the owner unit, the item's department, or the dispatcher."""
    if "unit" in roles:
        return owner
    if "department" in roles and department is not None:
        return Principal(f"dept-{department}", department, unit_id=department, roles=frozenset({"department"}))
    if "dispatcher" in roles:
        return DISPATCHER
    role = next(r for r in roles if r != SYSTEM_ROLE)
    return Principal(f"walker-{role}", role, roles=frozenset({role}))


async def definition_of(services: Services, view: ProjectView) -> Definition:
    _, definition = await WorkflowAdmin(services).definition(
        CallContext(DISPATCHER), view.definition_key, view.definition_version
    )
    return definition


def fields_for(definition: Definition) -> dict[str, Any]:
    """Field values that satisfy every gate of ``definition`` (JSON form, as a client sends them)."""
    return satisfying_fields(definition)


async def complete_open_tasks(services: Services, project_id: str, owner: Principal) -> None:
    """Drive every open item of the project to a done state of its machine."""
    look = CallContext(DISPATCHER)
    view = await services.get_project(look, project_id)
    definition = await definition_of(services, view)
    for task in await services.list_tasks(look, project_id):
        if task.outcome != "open":
            continue
        machine = definition.machine(task.machine)
        for trigger in _path_to_done(machine, task.state) or []:
            current = await services.get_task(look, project_id, task.id)
            spec = next(t for t in machine.transitions if t.trigger == trigger and current.state in t.source)
            who = principal_for(spec.roles, owner, task.department)
            await services.fire_task(CallContext(who), project_id, task.id, current.version, trigger, comment="walker")


async def advance(services: Services, project_id: str, target: str, owner: Principal) -> ProjectView:
    """Drive the project to state ``target``, completing the items of each state it leaves."""
    look = CallContext(DISPATCHER)
    view = await services.get_project(look, project_id)
    definition = await definition_of(services, view)
    fields = fields_for(definition)
    path = path_to(definition, view.state, target)
    assert path is not None, f"{target} cannot be reached from {view.state}"
    for trigger in path:
        await complete_open_tasks(services, project_id, owner)
        view = await services.get_project(look, project_id)
        spec = next(t for t in definition.transitions if t.trigger == trigger and view.state in t.source)
        data = {name: fields[name] for name in spec.accepts_fields if name in fields}
        who = principal_for(spec.roles, owner, None)
        view = await services.fire(CallContext(who), project_id, view.version, trigger, data, comment="walker")
    return view
