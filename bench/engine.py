"""Engine benchmark: fires/s over full lifecycle walks against bare ``transitions`` triggers, same run.

Run: ``python bench/engine.py [--definition workflows/major-project.yaml] [--seconds 3]``

It prints
* the time to load and validate the definition (YAML reading, schema, static checks), median of 20;
* fires/s of the engine over complete walks (a project started and driven to its normal end, every item of
  every group completed along the way; every project, item and notice trigger counts as one fire);
* fires/s of bare ``transitions`` (``machine.events[name].trigger(model)``) replaying exactly the same
  sequence of triggers over machines with the same states and transitions but no engine around them;
* the ratio of the two, and the targets (20,000 fires/s; a quarter of the bare rate; loading under 100 ms).

Both rates are measured in the same run, alternating rounds, so that a noisy shared machine moves both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from transitions import Machine  # noqa: E402

from lifecycle.clock import SHANGHAI  # noqa: E402
from lifecycle.engine.core import Engine  # noqa: E402
from lifecycle.spec.loader import load_definition_file  # noqa: E402
from lifecycle.spec.models import ANY_STATE, PREVIOUS_STATE, Definition  # noqa: E402
from tests.support.walker import Walk, replay, walk  # noqa: E402


class _Model:
    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state


def bare_machines(definition: Definition) -> tuple[Machine, dict[str, Machine]]:
    """Plain ``transitions`` machines with the definition's states and transitions, nothing else."""
    movable = [s.id for s in definition.states if not s.terminal and not s.hold]
    project = Machine(model=None, states=[s.id for s in definition.states], initial=definition.initial,
                      auto_transitions=False)  # fmt: skip
    for t in definition.transitions:
        sources = movable if ANY_STATE in t.source else t.source
        if t.dest == PREVIOUS_STATE:
            continue
        project.add_transition(t.trigger, sources, t.dest)
    tasks = {}
    for m in definition.task_machines:
        machine = Machine(model=None, states=[s.id for s in m.states], initial=m.initial, auto_transitions=False)
        for t in m.transitions:
            for source in t.source:
                machine.add_transition(t.trigger, source, None if t.dest == source else t.dest)
        tasks[m.id] = machine
    return project, tasks


def replay_bare(definition: Definition, project: Machine, tasks: dict[str, Machine], plan: Walk) -> int:
    """Replay a walk's triggers on the bare machines; returns the number of triggers fired."""
    model = _Model(definition.initial)
    models: dict[str, _Model] = {}
    initial = {m.id: m.initial for m in definition.task_machines}
    for step in plan.steps:
        if step.task is None:
            project.events[step.trigger].trigger(model)
        else:
            assert step.machine is not None
            task_model = models.get(step.task)
            if task_model is None:
                task_model = models[step.task] = _Model(initial[step.machine])
            tasks[step.machine].events[step.trigger].trigger(task_model)
    return len(plan.steps)


def measure(seconds: float, body: Any) -> float:
    """Calls per second of ``body`` (which returns how many fires it made) over about ``seconds``."""
    fires = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        fires += body()
    return fires / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--definition", default=str(ROOT / "workflows" / "major-project.yaml"))
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    load_times = []
    for _ in range(20):
        start = time.perf_counter()
        loaded = load_definition_file(args.definition)
        load_times.append(time.perf_counter() - start)
    definition = loaded.definition
    load_ms = statistics.median(load_times) * 1000

    engine = Engine()
    engine.register(definition, 1)
    from datetime import datetime

    now = datetime(2026, 3, 2, 10, tzinfo=SHANGHAI)
    _, plan = walk(engine, definition.key, 1, "bench-plan", now)
    bare_project, bare_tasks = bare_machines(definition)
    counter = iter(range(10**9))

    def engine_walk() -> int:
        replay(engine, definition.key, 1, f"P{next(counter)}", now, plan)
        return len(plan.steps)

    def bare_walk() -> int:
        return replay_bare(definition, bare_project, bare_tasks, plan)

    engine_rates, bare_rates = [], []
    for _ in range(args.rounds):
        engine_rates.append(measure(args.seconds, engine_walk))
        bare_rates.append(measure(args.seconds, bare_walk))
    engine_rate = statistics.median(engine_rates)
    bare_rate = statistics.median(bare_rates)
    ratio = engine_rate / bare_rate

    items = sum(len(g.items) for g in definition.task_groups)
    project_fires = sum(1 for s in plan.steps if s.task is None)
    print(f"definition            {definition.key}: {len(definition.states)} states, "
          f"{len(definition.transitions)} transitions, {items} items")  # fmt: skip
    print(f"walk                  {len(plan.steps)} fires per project walk "
          f"({project_fires} project, {len(plan.steps) - project_fires} item)")  # fmt: skip

    def verdict(ok: bool) -> str:
        return "OK" if ok else "MISSED"

    def rounds(rates: list[float]) -> str:
        return ", ".join(f"{r:,.0f}" for r in rates)

    print(f"load + validate       {load_ms:8.1f} ms   (target < 100 ms)   {verdict(load_ms < 100)}")
    print(f"engine                {engine_rate:10,.0f} fires/s   rounds: {rounds(engine_rates)}")
    print(f"bare transitions      {bare_rate:10,.0f} fires/s   rounds: {rounds(bare_rates)}")
    print(f"engine / bare         {ratio:10.3f}         (target >= 0.25)   {verdict(ratio >= 0.25)}")
    print(f"engine target         {verdict(engine_rate >= 20_000)} (>= 20,000 fires/s)")


if __name__ == "__main__":
    main()
