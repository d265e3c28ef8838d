"""A discrete-event swarm on the real services: scripted workers with known task durations.

Time is a ManualClock that jumps from one completion to the next, so a 200-task run takes
well under a second of simulated minutes per task and the result does not depend on the
machine. Everything else is real: tasks are created with ``create_tasks`` in a real SQLite
file, agents register in the agent registry, every claim goes through the chosen strategy
(``claim_next``: the atomic claim statements, holds, the TaskGraph) and every completion
through ``complete_task`` (which readies the dependants). An idle worker asks for work at
each instant something finished, in the order the workers became idle; a worker that gets
nothing waits for the next completion.

The lower bound on the makespan is max(critical path, total work / agents): no schedule can
beat either. The benchmark and the scheduling-quality test both use :func:`simulate`.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from jetpack.actor import Actor
from jetpack.agents import AgentRegistry, SessionInfo
from jetpack.clock import ManualClock
from jetpack.config import AgentSettings, SwarmSettings, TaskSettings
from jetpack.store import open_store
from jetpack.swarm.strategies import Strategy, claim_next
from jetpack.tasks import NewTask, QueueContext, complete_task, create_tasks

MINUTE_S = 60.0


@dataclass(frozen=True)
class SimTask:
    key: str
    minutes: int
    priority: int
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class SimResult:
    strategy: str
    makespan: float  # minutes
    critical_path: float
    total_work: float
    agents: int
    claims: int  # claim calls made (including those that found nothing)

    @property
    def lower_bound(self) -> float:
        return max(self.critical_path, self.total_work / self.agents)

    @property
    def ratio(self) -> float:
        return self.makespan / self.lower_bound


def random_layered_dag(
    seed: int, tasks: int = 200, layers: int = 12, max_parents: int = 3, minutes: tuple[int, int] = (5, 90)
) -> list[SimTask]:
    """``tasks`` tasks in ``layers`` layers of random widths; each task after the first layer waits
    on 1..``max_parents`` tasks of earlier layers (mostly the previous one). Durations are
    log-uniform in ``minutes``; priorities are uniform 0-4 and know nothing of the graph, as a
    planner's often do."""
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, tasks), layers - 1))
    widths = [b - a for a, b in zip([0, *cuts], [*cuts, tasks], strict=True)]
    low, high = minutes
    out: list[SimTask] = []
    placed: list[list[str]] = []
    for depth, width in enumerate(widths):
        row: list[str] = []
        for _ in range(width):
            key = f"t{len(out)}"
            parents: set[str] = set()
            if depth:
                for _ in range(rng.randint(1, max_parents)):
                    back = 1 if rng.random() < 0.7 else rng.randint(1, depth)
                    parents.add(rng.choice(placed[depth - back]))
            length = round(low * (high / low) ** rng.random())
            out.append(SimTask(key, length, rng.randrange(5), tuple(sorted(parents))))
            row.append(key)
        placed.append(row)
    return out


def critical_path_minutes(tasks: list[SimTask]) -> float:
    finish: dict[str, float] = {}
    for task in tasks:  # earlier layers come first
        finish[task.key] = task.minutes + max((finish[d] for d in task.depends_on), default=0.0)
    return max(finish.values(), default=0.0)


def simulate(tasks: list[SimTask], strategy: str | Strategy, workdir: Path, agents: int = 4) -> SimResult:
    """Run ``agents`` scripted workers over ``tasks`` with the given claim strategy until all are done."""
    name = Strategy(strategy).value
    clock = ManualClock()
    store = open_store(workdir / f"sim-{name}-{id(tasks)}.db")
    try:
        ctx = QueueContext(
            store=store,
            settings=TaskSettings(lease_seconds=86_400.0),
            clock=clock,
            swarm=SwarmSettings(strategy=name),
        )
        planner = Actor("planner")
        specs = [
            NewTask(
                title=t.key, ref=t.key, priority=t.priority, estimate_minutes=t.minutes, depends_on=list(t.depends_on)
            )
            for t in tasks
        ]
        by_key = {t.key: t.minutes for t in tasks}
        minutes = {c.id: by_key[str(c.ref)] for c in create_tasks(ctx, planner, specs)}
        registry = AgentRegistry(store, AgentSettings(), clock)
        workers = [Actor(f"worker-{i + 1}") for i in range(agents)]
        sessions = {w.name: f"sim-{w.name}" for w in workers}
        for worker in workers:
            registry.register(worker.name, [], SessionInfo(sessions[worker.name]))
        idle: deque[Actor] = deque(workers)
        running: list[tuple[int, str, str]] = []  # (finish ms, worker, task)
        by_name = {w.name: w for w in workers}
        claims = 0
        start = clock.now_ms()
        while True:
            for worker in workers:
                registry.touch(worker.name, sessions[worker.name])  # the workers' heartbeats
            progress = True
            while progress and idle:  # until no idle worker gets anything (holds may serve a later pass)
                progress = False
                for _ in range(len(idle)):
                    worker = idle.popleft()
                    claims += 1
                    claimed = claim_next(ctx, worker, name).task
                    if claimed is None:
                        idle.append(worker)
                        continue
                    progress = True
                    finish = clock.now_ms() + int(minutes[claimed.id] * MINUTE_S * 1000)
                    heapq.heappush(running, (finish, worker.name, claimed.id))
            if not running:
                break
            finish, worker_name, task_id = heapq.heappop(running)
            clock.advance((finish - clock.now_ms()) / 1000)
            complete_task(ctx, by_name[worker_name], task_id, "done")
            idle.append(by_name[worker_name])
            while running and running[0][0] == finish:
                _, other, other_task = heapq.heappop(running)
                complete_task(ctx, by_name[other], other_task, "done")
                idle.append(by_name[other])
        left = store.query("SELECT count(*) AS n FROM tasks WHERE state != 'done'")[0]["n"]
        if left:
            raise RuntimeError(f"the simulated swarm stopped with {left} task(s) not done ({name})")
        return SimResult(
            strategy=name,
            makespan=(clock.now_ms() - start) / 60_000,
            critical_path=critical_path_minutes(tasks),
            total_work=float(sum(t.minutes for t in tasks)),
            agents=agents,
            claims=claims,
        )
    finally:
        store.close()
