"""Properties of the engine over every bundled definition and the small test one (hypothesis).

* Every completion order of a parallel (互不为前置) group ends in the same state.
* No sequence of triggers, by any actor, gets a project past a gate while that gate's conditions are unmet.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.engine.conditions import ConditionContext, unmet_conditions
from lifecycle.engine.core import Engine
from lifecycle.engine.instance import Actor
from lifecycle.errors import InvalidInput, TransitionRefused
from lifecycle.spec.loader import load_definition_file
from lifecycle.spec.models import SYSTEM_ROLE, Definition
from tests.support.walker import actor_for, advance_to, complete_task, satisfying_fields

from .conftest import DATA, local

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = [DATA / "engine-mini.yaml", *sorted((ROOT / "workflows").glob("*.yaml"))]
NOW = local(2026, 3, 2)


def engine_for(path: Path) -> tuple[Engine, Definition]:
    definition = load_definition_file(path).definition
    engine = Engine()
    engine.register(definition, 1)
    return engine, definition


class Loaded(tuple[Engine, Definition]):
    """An engine and its definition, with a short repr (hypothesis prints its arguments on failure)."""

    def __repr__(self) -> str:
        return f"<{self[1].key}>"


@pytest.fixture(scope="module", params=DEFINITIONS, ids=lambda p: p.stem)
def loaded(request: pytest.FixtureRequest) -> tuple[Engine, Definition]:
    return Loaded(engine_for(request.param))


def _all_actors(definition: Definition) -> list[Actor]:
    """One actor per role (departments once per department), so any trigger has someone who may fire it."""
    actors = []
    for role in definition.roles:
        if role.id == SYSTEM_ROLE:
            continue
        if role.id == "department":
            actors.extend(Actor(f"dept-{d.id}", frozenset({"department"}), d.id) for d in definition.departments)
        else:
            actors.append(Actor(f"actor-{role.id}", frozenset({role.id}), "unit-1"))
    return actors


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_completion_order_of_a_parallel_group_ends_alike(
    loaded: tuple[Engine, Definition], data: st.DataObject
) -> None:
    engine, definition = loaded
    groups = [g for g in definition.task_groups if g.parallel and len(g.items) > 1]
    if not groups:
        pytest.skip("no parallel group")
    group = data.draw(st.sampled_from(groups), label="group")
    opener = next(s for s in definition.states if group.id in s.opens)
    outcomes = []
    for _ in range(2):
        project, _ = engine.start(
            definition.key, 1, "P", actor_for(["unit"]), NOW, fields=satisfying_fields(definition)
        )
        advance_to(engine, project, opener.id, NOW)
        order = data.draw(st.permutations([f"{group.id}.{i.id}" for i in group.items]), label="order")
        for task_id in order:
            complete_task(engine, project, task_id, NOW)
        ctx = ConditionContext(definition, project, NOW)
        options = {o.trigger: o.may_fire for o in engine.available_triggers(project, _all_actors(definition)[0], NOW)}
        outcomes.append(
            (
                project.state,
                sorted((t.id, t.state) for t in project.tasks.values() if t.group == group.id),
                sorted(d.id for d in project.open_deadlines()),
                options,
                [u.code for g in definition.gates for u in unmet_conditions(g, ctx)],
            )
        )
    assert outcomes[0] == outcomes[1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(choices=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=120))
def test_no_trigger_sequence_passes_a_gate_with_unmet_conditions(
    loaded: tuple[Engine, Definition], choices: list[int]
) -> None:
    engine, definition = loaded
    actors = _all_actors(definition)
    fields = satisfying_fields(definition)
    # Half the runs start with nothing filled in, so field conditions are unmet too.
    start_fields = fields if choices[0] % 2 else {}
    project, _ = engine.start(definition.key, 1, "P", actors[0], NOW, fields=start_fields)
    gated = {(t.trigger, s) for t in definition.transitions if t.gate for s in t.source}
    for choice in choices:
        actor = actors[choice % len(actors)]
        moves: list[tuple[str | None, str]] = [
            (None, o.trigger) for o in engine.available_triggers(project, actor, NOW)
        ]
        for task in project.tasks.values():
            moves.extend((task.id, o.trigger) for o in engine.available_task_triggers(project, task.id, actor, NOW))
        if not moves:
            continue
        task_id, trigger = moves[choice % len(moves)]
        before = copy.deepcopy(project)
        try:
            if task_id is None:
                engine.fire(
                    project,
                    trigger,
                    actor,
                    NOW,
                    data={k: v for k, v in fields.items() if choice % 3 == 0 and k in _accepts(definition, trigger)},
                )
            else:
                engine.fire_task(
                    project, task_id, trigger, actor, NOW, data={"missing": [], "text": "承诺"}, comment="c"
                )
        except (TransitionRefused, InvalidInput):
            assert project.state == before.state and project.version == before.version
            continue
        if task_id is None:
            spec = next(
                t
                for t in definition.transitions
                if t.trigger == trigger and (before.state in t.source or "*" in t.source)
            )
            if spec.gate:
                view = copy.deepcopy(before)
                view.fields.update(project.fields)  # the trigger's own data counts (it is applied first)
                unmet = unmet_conditions(definition.gate(spec.gate), ConditionContext(definition, view, NOW))
                assert unmet == [], f"{trigger} passed gate {spec.gate} with {[u.code for u in unmet]}"
            assert (trigger, before.state) in gated or not spec.gate


def _accepts(definition: Definition, trigger: str) -> set[str]:
    return {f for t in definition.transitions if t.trigger == trigger for f in t.accepts_fields}
