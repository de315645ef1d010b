"""Who may see and change what: platform roles, the caller's identity, and the visibility rules.

Roles are platform-wide (a principal holds a set of them):

* ``admin`` — administers the platform (definitions, principals, tokens, audit);
* ``dispatcher`` — 重点项目事务中心 staff: dispatch and supervise every project;
* ``unit`` — a project owner or implementing unit (乡镇、行业主管部门、县属国企): sees and changes only the
  projects whose lead unit or implementing unit is its own unit;
* ``department`` — an approving department: sees the projects that have an item assigned to it, and acts
  only on those items;
* ``leader`` — a county leader (牵头县领导); ``task_force`` — the 工作专班; ``viewer`` — read-only;
  ``integrator`` — another county system calling the API.

Every role except ``unit`` and ``department`` is county-wide: it sees every project. What a role may *do*
with a transition is the definition's business (each transition lists its roles and the engine checks
them); these rules only decide visibility and who may edit a project's header.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lifecycle.engine.instance import Actor
from lifecycle.errors import Forbidden
from lifecycle.messages import register
from lifecycle.store.projects import ProjectRecord, Visibility

register(
    {
        # The message of lifecycle.errors.Forbidden, raised from this layer.
        "forbidden": ("无权对{kind} {id} 执行 {action}", "not allowed to {action} {kind} {id}"),
    }
)

ROLES = frozenset({"admin", "dispatcher", "unit", "department", "leader", "viewer", "integrator", "task_force"})
"""Every platform role."""

COUNTY_WIDE_ROLES = ROLES - {"unit", "department"}
"""Roles that see every project."""

EDITOR_ROLES = frozenset({"admin", "dispatcher", "integrator"})
"""Roles that may create any project and edit any project's header; a ``unit`` may do so for its own."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: an id, a display name, its org unit and its platform roles.

    ``unit_id`` is the unit's id for a ``unit`` (project owner) and the department's id for a
    ``department``; ``unit_kind`` says which kind of org unit it is (township, department, enterprise…).
    """

    id: str
    name: str
    unit_id: str | None = None
    unit_kind: str | None = None
    roles: frozenset[str] = frozenset()

    @property
    def actor(self) -> Actor:
        """The engine's view of this caller."""
        return Actor(id=self.id, roles=self.roles, unit=self.unit_id)

    @property
    def county_wide(self) -> bool:
        """Whether the caller sees every project."""
        return not self.roles.isdisjoint(COUNTY_WIDE_ROLES)


@dataclass(frozen=True)
class CallContext:
    """Who is calling, and in which language messages should be (``zh`` or ``en``)."""

    principal: Principal
    lang: str = "zh"


def unknown_roles(roles: Iterable[str]) -> list[str]:
    """The names in ``roles`` that are not platform roles, sorted."""
    return sorted(set(roles) - ROLES)


def visibility(principal: Principal) -> Visibility:
    """The projects ``principal`` may see, for the store's queries."""
    if principal.county_wide:
        return Visibility(everything=True)
    unit = principal.unit_id
    if unit is None:
        return Visibility()
    return Visibility(
        units=frozenset({unit}) if "unit" in principal.roles else frozenset(),
        departments=frozenset({unit}) if "department" in principal.roles else frozenset(),
    )


def owns(principal: Principal, project: ProjectRecord) -> bool:
    """Whether ``principal`` is a ``unit`` of the project (its lead or implementing unit)."""
    return (
        "unit" in principal.roles
        and principal.unit_id is not None
        and principal.unit_id in (project.lead_unit, project.implementing_unit)
    )


def may_act_on_project(principal: Principal, project: ProjectRecord) -> bool:
    """Whether ``principal`` may fire project-level triggers at all (the engine then checks the
    transition's roles). A caller who sees the project only through a department's items may not."""
    return principal.county_wide or owns(principal, project)


def require_header_edit(principal: Principal, project: ProjectRecord) -> None:
    """Raise :class:`Forbidden` unless ``principal`` may edit the project's header and fields."""
    if principal.roles.isdisjoint(EDITOR_ROLES) and not owns(principal, project):
        raise Forbidden("project", project.id, "update")


def require_create(principal: Principal, lead_unit: str, implementing_unit: str | None) -> None:
    """Raise :class:`Forbidden` unless ``principal`` may create a project for these units: an editor
    role, or a ``unit`` creating a project it leads or implements."""
    if not principal.roles.isdisjoint(EDITOR_ROLES):
        return
    own_units = (lead_unit, implementing_unit)
    if "unit" in principal.roles and principal.unit_id is not None and principal.unit_id in own_units:
        return
    raise Forbidden("project", "", "create")


def acts_only_as_department(principal: Principal, project: ProjectRecord) -> bool:
    """Whether the caller reaches the project only as an approving department (not county-wide, not an
    owner): it may then act only on items assigned to its own department."""
    return not principal.county_wide and not owns(principal, project)
