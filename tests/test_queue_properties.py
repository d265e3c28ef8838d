"""Property-based stateful test of the task queue against a plain in-memory model.

Hypothesis drives random sequences of queue operations (create, claim, complete, fail, block,
unblock, cancel, reopen, add dependencies, renew leases, let time pass) against the real
service layer on a real SQLite file. A small Python model of the specification predicts the
outcome of every call; after every step the database is compared with the model and checked
against invariants computed independently from the raw rows (readiness rule, roll-ups,
leases, attempts, waits-for cycles, the event log).

``JETPACK_SOAK=1`` runs many more examples. The regression tests at the end pin bugs the state
machine once found.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from jetpack.actor import Actor
from jetpack.clock import ManualClock
from jetpack.config import TaskSettings
from jetpack.errors import Conflict, InvalidInput, JetpackError, NotPermitted
from jetpack.store import DataLayer, open_store
from jetpack.tasks import (
    DependencyKind,
    FailMode,
    NewTask,
    QueueContext,
    StatusChange,
    add_dependency,
    cancel_task,
    claim_task,
    complete_task,
    create_tasks,
    fail_task,
    release_expired_leases,
    renew_leases,
    reopen_task,
    update_task,
)

SOAK = os.environ.get("JETPACK_SOAK") == "1"

LEASE_SECONDS = 60
LEASE_MS = LEASE_SECONDS * 1000
DEFAULT_MAX_ATTEMPTS = 2
MAX_DEPTH = 4

OPEN, READY, CLAIMED, IN_PROGRESS = "open", "ready", "claimed", "in_progress"
DONE, FAILED, CANCELLED, BLOCKED = "done", "failed", "cancelled", "blocked"
HELD = (CLAIMED, IN_PROGRESS)
FINISHED = (DONE, FAILED, CANCELLED)
WAITING = (OPEN, READY)

AGENTS = {
    "alice": Actor("alice", frozenset({"py"})),
    "bob": Actor("bob", frozenset({"py", "sql"})),
    "carol": Actor("carol", frozenset({"web"})),
}
SKILLS = ("py", "sql", "web")
TITLES = ("api", "db", "ui", "docs")
WHO = st.sampled_from(["holder", "holder", "holder", "holder", *AGENTS])

# A task's shape is the tuple of its children's shapes: () is a leaf.
SHAPE = st.recursive(st.just(()), lambda kids: st.lists(kids, min_size=1, max_size=2).map(tuple), max_leaves=4)
# A starting project: a root with up to three children, each with up to two children.
SMALL_TREE = st.lists(st.lists(st.just(()), max_size=2).map(tuple), max_size=3).map(tuple)


class Refused(Exception):
    """The model predicts that the service refuses the call with one of ``kinds``."""

    def __init__(self, *kinds: type[JetpackError]) -> None:
        super().__init__(", ".join(k.__name__ for k in kinds))
        self.kinds = kinds or (JetpackError,)


# ---------------------------------------------------------------------------------------------
# Shared graph helpers (used by the model and by the invariants on raw rows)
# ---------------------------------------------------------------------------------------------


def waits_for_cycle(
    parent: Mapping[str, str | None], blocks: Mapping[str, Iterable[str]], live: Mapping[str, bool]
) -> list[tuple[str, str]] | None:
    """A cycle in the waits-for graph (nodes start(t)/done(t)), or None.

    start(t) -> done(x) per blocks edge t->x; start(c) -> start(parent(c));
    done(p) -> done(c) per live child, or done(t) -> start(t) when t has no live children.
    """
    children: dict[str, list[str]] = defaultdict(list)
    for task, par in parent.items():
        if par is not None and live[task]:
            children[par].append(task)

    def successors(node: tuple[str, str]) -> list[tuple[str, str]]:
        kind, task = node
        if kind == "start":
            out = [("done", b) for b in sorted(blocks.get(task, ()))]
            if parent[task] is not None:
                out.append(("start", parent[task]))
            return out
        kids = children.get(task)
        return [("done", c) for c in sorted(kids)] if kids else [("start", task)]

    colour: dict[tuple[str, str], int] = {}
    for root in [(k, t) for t in parent for k in ("start", "done")]:
        if colour.get(root):
            continue
        colour[root] = 1
        path = [root]
        stack = [iter(successors(root))]
        while stack:
            for nxt in stack[-1]:
                seen = colour.get(nxt, 0)
                if seen == 1:
                    return [*path[path.index(nxt) :], nxt]
                if seen == 0:
                    colour[nxt] = 1
                    path.append(nxt)
                    stack.append(iter(successors(nxt)))
                    break
            else:
                colour[path.pop()] = 2
                stack.pop()
    return None


def parent_id_of(task_id: str) -> str | None:
    head, dot, _ = task_id.rpartition(".")
    return head if dot else None


def depth_of(task_id: str) -> int:
    return task_id.count(".") + 1


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


@dataclass
class MTask:
    id: str
    parent: str | None
    priority: int
    skills: frozenset[str]
    max_attempts: int
    created_at: int
    state: str = OPEN
    assignee: str | None = None
    lease: int | None = None
    attempts: int = 0
    next_child: int = 0
    blocks: set[str] = field(default_factory=set)


@dataclass
class Model:
    tasks: dict[str, MTask] = field(default_factory=dict)  # in creation order
    transitions: int = 0  # 'created' events plus state changes

    # -- structure -----------------------------------------------------------------------------

    def children(self, task_id: str) -> list[MTask]:
        return [t for t in self.tasks.values() if t.parent == task_id]

    def live_children(self, task_id: str) -> list[MTask]:
        return [t for t in self.children(task_id) if t.state != CANCELLED]

    def ancestors(self, task_id: str) -> list[str]:
        found = []
        parent = self.tasks[task_id].parent
        while parent is not None:
            found.append(parent)
            parent = self.tasks[parent].parent
        return found

    def subtree(self, task_id: str) -> list[MTask]:
        return [t for t in self.tasks.values() if t.id == task_id or task_id in self.ancestors(t.id)]

    def readiness_rule(self, task_id: str) -> bool:
        if self.live_children(task_id):
            return False
        return all(
            self.tasks[b].state == DONE for a in [task_id, *self.ancestors(task_id)] for b in self.tasks[a].blocks
        )

    def cycle(self, extra_blocks: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]] | None:
        blocks = {t.id: set(t.blocks) for t in self.tasks.values()}
        for task, blocker in extra_blocks:
            blocks[task].add(blocker)
        return waits_for_cycle(
            {t.id: t.parent for t in self.tasks.values()},
            blocks,
            {t.id: t.state != CANCELLED for t in self.tasks.values()},
        )

    # -- bookkeeping ---------------------------------------------------------------------------

    def states(self) -> dict[str, str]:
        return {t.id: t.state for t in self.tasks.values()}

    def count_transitions(self, before: dict[str, str]) -> None:
        self.transitions += sum(1 for tid, state in before.items() if self.tasks[tid].state != state)

    def settle(self) -> None:
        """Bring derived states up to date: roll-ups, undone roll-ups, materialised readiness."""
        changed = True
        while changed:
            changed = False
            for task in sorted(self.tasks.values(), key=lambda t: -depth_of(t.id)):
                live = self.live_children(task.id)
                if task.state == OPEN and live and all(c.state == DONE for c in live):
                    task.state = DONE  # roll-up
                    changed = True
                elif task.state == DONE and any(c.state != DONE for c in live):
                    task.state, task.assignee, task.lease = OPEN, None, None  # a child was reopened
                    changed = True
            for task in self.tasks.values():
                if task.state in WAITING:
                    wanted = READY if self.readiness_rule(task.id) else OPEN
                    if wanted != task.state:
                        task.state = wanted
                        changed = True

    def requeue(self, task: MTask) -> None:
        task.state = OPEN  # settle() decides between open and ready
        task.assignee = None
        task.lease = None

    # -- operations ----------------------------------------------------------------------------

    def sweep(self, now: int) -> set[str]:
        before = self.states()
        expired = set()
        for task in self.tasks.values():
            if task.state in HELD and task.lease is not None and task.lease < now:
                event("lease expired")
                expired.add(task.id)
                task.attempts += 1
                if task.attempts >= task.max_attempts:
                    task.state, task.assignee, task.lease = FAILED, None, None
                else:
                    self.requeue(task)
        self.settle()
        self.count_transitions(before)
        return expired

    def next_claim(self, actor: Actor) -> MTask | None:
        candidates = [t for t in self.tasks.values() if t.state == READY and t.skills <= actor.skills]
        return min(candidates, key=lambda t: (t.priority, t.created_at, t.id), default=None)

    def claim(self, actor: Actor, task: MTask, now: int) -> None:
        before = self.states()
        task.state, task.assignee, task.lease = CLAIMED, actor.name, now + LEASE_MS
        self.settle()
        self.count_transitions(before)

    def check_claim(self, actor: Actor, task: MTask) -> str:
        """'claim', 'renew' or raise Refused (after the sweep)."""
        if task.state == READY and task.skills <= actor.skills:
            return "claim"
        if task.state in HELD and task.assignee == actor.name:
            return "renew"
        raise Refused(NotPermitted, Conflict)

    def apply(self, change: Callable[[], None]) -> None:
        before = self.states()
        change()
        self.settle()
        self.count_transitions(before)

    def check_holder(self, actor: Actor, task: MTask, states: tuple[str, ...] = HELD) -> None:
        if task.state in states and task.assignee == actor.name:
            return
        raise Refused(NotPermitted, Conflict)

    def check_cancel(self, actor: Actor, task: MTask) -> list[MTask]:
        subtree = self.subtree(task.id)
        if any(t.state in (*HELD, BLOCKED) and t.assignee not in (None, actor.name) for t in subtree):
            raise Refused(NotPermitted)
        doomed = [t for t in subtree if t.state not in FINISHED]
        if not doomed and task.state != CANCELLED:
            raise Refused(Conflict)
        return doomed

    def check_reopen(self, task: MTask, actor: Actor) -> None:
        if task.state not in FINISHED or self.live_children(task.id):
            raise Refused(Conflict)
        if task.state != CANCELLED or task.parent is None:
            return
        # A cancelled subtask rejoins its parent: the parent must accept subtasks, and no cycle.
        parent = self.tasks[task.parent]
        if parent.state in HELD and parent.assignee != actor.name:
            raise Refused(NotPermitted)
        if parent.state not in (OPEN, READY, DONE, *HELD):
            raise Refused(Conflict)
        task.state = OPEN
        try:
            if self.cycle() is not None:
                raise Refused(InvalidInput)
        finally:
            task.state = CANCELLED

    def rejoin_parent(self, task: MTask) -> None:
        """A reopened cancelled subtask turns a parent that had become a leaf back into a parent."""
        if task.state == CANCELLED and task.parent is not None:
            parent = self.tasks[task.parent]
            if parent.state in (READY, DONE, *HELD):
                parent.state, parent.assignee, parent.lease = OPEN, None, None


# ---------------------------------------------------------------------------------------------
# The state machine
# ---------------------------------------------------------------------------------------------


@dataclass
class Planned:
    key: int
    parent_key: int | None
    title: str
    priority: int
    skills: list[str]
    max_attempts: int | None
    depends_on: list[str | int]  # existing task ids, or keys of other tasks in the batch
    children: list[int] = field(default_factory=list)
    task_id: str = ""


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="jetpack-props-")
        self.store: DataLayer = open_store(Path(self.directory) / "jetpack.db")
        self.clock = ManualClock()
        self.ctx = QueueContext(
            store=self.store,
            # No retry wait: the model requeues a failed attempt at once (test_lifecycle covers the wait).
            settings=TaskSettings(
                lease_seconds=LEASE_SECONDS,
                max_attempts=DEFAULT_MAX_ATTEMPTS,
                max_depth=MAX_DEPTH,
                retry_backoff_seconds=0,
            ),
            clock=self.clock,
        )
        self.model = Model()

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------

    def now(self) -> int:
        self.clock.advance(0.001)  # every call gets its own timestamp: claim order is then deterministic
        return self.clock.now_ms()

    def snapshot(self) -> tuple[Any, ...]:
        q = self.store.query
        return (
            q("SELECT * FROM tasks ORDER BY id"),
            q("SELECT * FROM dependencies ORDER BY task_id, depends_on"),
            q("SELECT count(*) AS n FROM events")[0]["n"],
            q("SELECT value FROM meta WHERE key = 'graph_version'"),
        )

    def refused(self, call: Callable[[], object], refusal: Refused, *, unchanged: bool = True) -> None:
        before = self.snapshot()
        with pytest.raises(refusal.kinds) as raised:
            call()
        event(f"refused: {raised.type.__name__}")
        if unchanged:
            assert self.snapshot() == before, "a refused call changed the database"

    def pick(self, data: st.DataObject, *focus: str) -> MTask:
        ids = list(self.model.tasks)
        pool = [tid for tid in ids if self.model.tasks[tid].state in focus]
        if pool and data.draw(st.integers(0, 3), label="focus") > 0:
            ids = pool
        return self.model.tasks[data.draw(st.sampled_from(ids), label="task")]

    def actor_for(self, who: str, task: MTask) -> Actor:
        if who == "holder":
            return AGENTS[task.assignee] if task.assignee in AGENTS else AGENTS["alice"]
        return AGENTS[who]

    # -- creating ------------------------------------------------------------------------------

    @initialize(data=st.data(), shapes=st.lists(SMALL_TREE, min_size=1, max_size=3))
    def starting_project(self, data: st.DataObject, shapes: list[tuple[Any, ...]]) -> None:
        for shape in shapes:
            self.create(data, [shape], AGENTS["alice"], None, with_dependencies=False)

    @rule(data=st.data(), shape=SHAPE, who=st.sampled_from(sorted(AGENTS)))
    def create_root(self, data: st.DataObject, shape: tuple[Any, ...], who: str) -> None:
        self.create(data, [shape], AGENTS[who], None)

    @precondition(lambda self: self.model.tasks)
    @rule(data=st.data(), shapes=st.lists(SHAPE, min_size=1, max_size=2), who=WHO)
    def create_subtasks(self, data: st.DataObject, shapes: list[tuple[Any, ...]], who: str) -> None:
        parent = self.pick(data, OPEN, READY, CLAIMED)
        self.create(data, shapes, self.actor_for(who, parent), parent)

    def create(
        self,
        data: st.DataObject,
        shapes: list[tuple[Any, ...]],
        actor: Actor,
        parent: MTask | None,
        *,
        with_dependencies: bool = True,
    ) -> None:
        plan: list[Planned] = []

        def visit(shape: tuple[Any, ...], parent_key: int | None) -> None:
            node = Planned(
                key=len(plan),
                parent_key=parent_key,
                title=data.draw(st.sampled_from(TITLES), label="title"),
                priority=data.draw(st.integers(0, 3), label="priority"),
                skills=data.draw(st.lists(st.sampled_from(SKILLS), max_size=1), label="skills"),
                max_attempts=data.draw(st.sampled_from([None, None, 1, 3]), label="max_attempts"),
                depends_on=[],
            )
            plan.append(node)
            if parent_key is not None:
                plan[parent_key].children.append(node.key)
            for child in shape:
                visit(child, node.key)

        for shape in shapes:
            visit(shape, None)
        existing = list(self.model.tasks)
        for node in plan:
            if not with_dependencies:
                break
            targets: st.SearchStrategy[str | int] = st.sampled_from(range(len(plan)))
            if existing:  # mostly existing tasks; a batch ref now and then (which may close a cycle)
                targets = st.one_of(st.sampled_from(existing), st.sampled_from(existing), targets)
            how_many = data.draw(st.sampled_from([0, 0, 0, 1, 1, 2]), label="deps")
            node.depends_on = data.draw(
                st.lists(targets, min_size=how_many, max_size=how_many), label=f"depends_on[{node.key}]"
            )

        def spec(node: Planned) -> NewTask:
            return NewTask(
                title=node.title,
                priority=node.priority,
                skills=[s.upper() for s in node.skills],  # skills compare case-insensitively
                max_attempts=node.max_attempts,
                ref=f"n{node.key}",
                parent=parent.id if parent is not None and node.parent_key is None else None,
                depends_on=[d if isinstance(d, str) else f"n{d}" for d in node.depends_on],
                children=[spec(plan[k]) for k in node.children],
            )

        specs = [spec(n) for n in plan if n.parent_key is None]
        call = partial(create_tasks, self.ctx, actor, specs)
        now = self.now()
        try:
            self.predict_create(actor, parent, plan)
        except Refused as refusal:
            event("create_tasks: refused")
            self.refused(call, refusal)
            return
        created = call()
        assert len(created) == len(plan)
        root_ids: dict[str, str] = {}
        for node, made in zip(plan, created, strict=True):
            if node.task_id.startswith("ROOT"):
                prefix = node.task_id.split(".")[0]
                if node.task_id == prefix:
                    root_ids[prefix] = made.id
                    assert made.id.startswith("jp-") and "." not in made.id and len(made.id) == 7, made.id
                node.task_id = root_ids[prefix] + node.task_id[len(prefix) :]
            assert made.id == node.task_id, "child ids must count up from the parent's counter"
            assert made.ref == f"n{node.key}"

        def record() -> None:
            for node in plan:
                parent_id = parent.id if node.parent_key is None and parent else None
                if node.parent_key is not None:
                    parent_id = plan[node.parent_key].task_id
                self.model.tasks[node.task_id] = MTask(
                    id=node.task_id,
                    parent=parent_id,
                    priority=node.priority,
                    skills=frozenset(node.skills),
                    max_attempts=node.max_attempts or DEFAULT_MAX_ATTEMPTS,
                    created_at=now,
                    next_child=len(node.children),
                    blocks={d if isinstance(d, str) else plan[d].task_id for d in node.depends_on},
                )
            if parent is not None:
                parent.next_child += len(shapes)
                if parent.state in (READY, *HELD):
                    self.model.requeue(parent)  # split: the claim, if any, is handed back

        self.model.apply(record)
        self.model.transitions += len(plan)
        for node, made in zip(plan, created, strict=True):
            assert made.state == self.model.tasks[node.task_id].state

    def predict_create(self, actor: Actor, parent: MTask | None, plan: list[Planned]) -> None:
        if parent is not None:
            if depth_of(parent.id) >= MAX_DEPTH:
                raise Refused(InvalidInput)
            if parent.state in HELD and parent.assignee != actor.name:
                raise Refused(NotPermitted)
            if parent.state in (*FINISHED, BLOCKED):
                raise Refused(Conflict)
        roots = 0
        number = parent.next_child if parent is not None else 0
        for node in plan:  # pre-order: a parent's id is known before its children's
            if node.parent_key is not None:
                siblings = plan[node.parent_key].children
                node.task_id = f"{plan[node.parent_key].task_id}.{siblings.index(node.key) + 1}"
            elif parent is not None:
                number += 1
                node.task_id = f"{parent.id}.{number}"
            else:
                roots += 1
                node.task_id = f"ROOT{roots}"
        if any(depth_of(n.task_id) > MAX_DEPTH for n in plan):
            raise Refused(InvalidInput)
        # Cycle check on the model's graph plus the batch.
        parents = {t.id: t.parent for t in self.model.tasks.values()}
        blocks = {t.id: set(t.blocks) for t in self.model.tasks.values()}
        live = {t.id: t.state != CANCELLED for t in self.model.tasks.values()}
        for node in plan:
            parents[node.task_id] = parent_id_of(node.task_id)
            blocks[node.task_id] = {d if isinstance(d, str) else plan[d].task_id for d in node.depends_on}
            live[node.task_id] = True
        if waits_for_cycle(parents, blocks, live) is not None:
            raise Refused(InvalidInput)

    # -- claiming ------------------------------------------------------------------------------

    @rule(who=st.sampled_from(sorted(AGENTS)))
    def claim_next(self, who: str) -> None:
        self.do_claim_next(AGENTS[who])

    @rule(
        who=st.sampled_from(sorted(AGENTS)),
        then=st.sampled_from(["complete", "complete", "complete", "retry", "release", "start", "block", "keep"]),
    )
    def agent_works(self, who: str, then: str) -> None:
        """What an agent does in a loop: take the next task and usually finish it."""
        actor = AGENTS[who]
        task = self.do_claim_next(actor)
        if task is None:
            return
        if then == "complete":
            self.do_complete(task, actor)
        elif then in ("retry", "release"):
            self.do_fail(task, actor, FailMode(then))
        elif then == "start":
            self.do_update(task, actor, StatusChange.IN_PROGRESS, None, None)
        elif then == "block":
            self.do_update(task, actor, StatusChange.BLOCKED, "waiting for review", None)

    def do_claim_next(self, actor: Actor) -> MTask | None:
        now = self.now()
        self.model.sweep(now)
        expected = self.model.next_claim(actor)
        outcome = claim_task(self.ctx, actor)
        if expected is None:
            assert outcome.task is None and outcome.reason, outcome
            return None
        assert outcome.task is not None, outcome.reason
        assert outcome.task.id == expected.id, f"claimed {outcome.task.id}, the model expected {expected.id}"
        self.model.claim(actor, expected, now)
        assert outcome.task.state == CLAIMED and outcome.task.assignee == actor.name
        return expected

    @precondition(lambda self: self.model.tasks)
    @rule(data=st.data(), who=WHO)
    def claim_by_id(self, data: st.DataObject, who: str) -> None:
        task = self.pick(data, READY, CLAIMED)
        actor = self.actor_for(who, task)
        now = self.now()
        call = partial(claim_task, self.ctx, actor, task.id)
        expired = self.model.sweep(now)  # the sweep is committed even when the claim is refused
        try:
            action = self.model.check_claim(actor, task)
        except Refused as refusal:
            self.refused(call, refusal, unchanged=not expired)
            return
        outcome = call()
        assert outcome.task is not None and outcome.task.id == task.id
        if action == "claim":
            self.model.claim(actor, task, now)
        else:
            task.lease = now + LEASE_MS
        assert outcome.task.state == task.state and outcome.task.assignee == actor.name

    @precondition(lambda self: self.model.tasks)
    @rule(data=st.data(), who=WHO)
    def complete(self, data: st.DataObject, who: str) -> None:
        task = self.pick(data, CLAIMED, IN_PROGRESS, DONE)
        self.do_complete(task, self.actor_for(who, task))

    def do_complete(self, task: MTask, actor: Actor) -> None:
        call = partial(complete_task, self.ctx, actor, task.id, "done it")
        self.now()
        if task.state == DONE and task.assignee == actor.name:
            before = self.snapshot()
            assert call().state == DONE
            assert self.snapshot() == before, "completing twice must change nothing"
            return
        try:
            self.model.check_holder(actor, task)
        except Refused as refusal:
            self.refused(call, refusal)
            return
        result = call()

        def change() -> None:
            task.state, task.lease = DONE, None

        self.model.apply(change)
        assert result.state == DONE and result.assignee == actor.name

    @precondition(lambda self: self.model.tasks)
    @rule(data=st.data(), who=WHO, mode=st.sampled_from(FailMode))
    def fail(self, data: st.DataObject, who: str, mode: FailMode) -> None:
        task = self.pick(data, CLAIMED, IN_PROGRESS, BLOCKED)
        self.do_fail(task, self.actor_for(who, task), mode)

    def do_fail(self, task: MTask, actor: Actor, mode: FailMode) -> None:
        call = partial(fail_task, self.ctx, actor, task.id, "it broke", mode)
        self.now()
        try:
            self.model.check_holder(actor, task, (*HELD, BLOCKED))
        except Refused as refusal:
            self.refused(call, refusal)
            return
        result = call()

        def change() -> None:
            task.lease = None
            if mode is not FailMode.RELEASE:
                task.attempts += 1
            if mode is FailMode.GIVE_UP or (mode is FailMode.RETRY and task.attempts >= task.max_attempts):
                task.state = FAILED  # the assignee is kept: who gave up
            else:
                self.model.requeue(task)

        self.model.apply(change)
        assert result.state == task.state and result.attempts == task.attempts

    # -- progress, blocking, priority ----------------------------------------------------------

    @precondition(lambda self: self.model.tasks)
    @rule(
        data=st.data(),
        who=WHO,
        status=st.sampled_from([None, StatusChange.IN_PROGRESS, StatusChange.BLOCKED, StatusChange.OPEN]),
        note=st.sampled_from([None, "waiting for review"]),
        priority=st.sampled_from([None, None, 0, 3]),
    )
    def update(
        self, data: st.DataObject, who: str, status: StatusChange | None, note: str | None, priority: int | None
    ) -> None:
        task = self.pick(data, CLAIMED, IN_PROGRESS, BLOCKED)
        if status is None and note is None and priority is None:
            note = "progress"
        self.do_update(task, self.actor_for(who, task), status, note, priority)

    def do_update(
        self, task: MTask, actor: Actor, status: StatusChange | None, note: str | None, priority: int | None
    ) -> None:
        call = partial(update_task, self.ctx, actor, task.id, status=status, note=note, priority=priority)
        now = self.now()
        try:
            if status is StatusChange.BLOCKED and note is None:
                raise Refused(InvalidInput)
            if status is StatusChange.OPEN:
                if task.state != BLOCKED:
                    raise Refused(Conflict)
            elif (
                status is StatusChange.BLOCKED and task.state in (OPEN, READY) and not self.model.live_children(task.id)
            ):
                pass  # anyone may hold back an unclaimed leaf
            elif status is not None or note is not None:
                self.model.check_holder(actor, task)
            if priority is not None and task.state in FINISHED:
                raise Refused(Conflict)
        except Refused as refusal:
            self.refused(call, refusal)
            return
        result = call()

        def change() -> None:
            if status is StatusChange.OPEN:
                self.model.requeue(task)
            elif status is StatusChange.BLOCKED:
                task.state, task.lease = BLOCKED, None
            elif status is StatusChange.IN_PROGRESS or note is not None:
                task.state = IN_PROGRESS if status else task.state
                task.lease = now + LEASE_MS
            if priority is not None:
                task.priority = priority

        self.model.apply(change)
        assert result.state == task.state and result.priority == task.priority

    # -- cancelling and reopening --------------------------------------------------------------

    @precondition(lambda self: self.model.tasks)
    @rule(data=st.data(), who=WHO, via_update=st.booleans(), priority=st.sampled_from([None, None, 1]))
    def cancel(self, data: st.DataObject, who: str, via_update: bool, priority: int | None) -> None:
        task = self.pick(data, OPEN, READY, CLAIMED, BLOCKED)
        actor = self.actor_for(who, task)
        if not via_update:
            priority = None
        call: Callable[[], Any] = (
            partial(
                update_task,
                self.ctx,
                actor,
                task.id,
                status=StatusChange.CANCELLED,
                note="not needed",
                priority=priority,
            )
            if via_update
            else partial(cancel_task, self.ctx, actor, task.id, "not needed")
        )
        self.now()
        try:
            if priority is not None:
                raise Refused(InvalidInput)  # a cancelled task keeps its priority: refused before anything
            doomed = self.model.check_cancel(actor, task)
        except Refused as refusal:
            self.refused(call, refusal)
            return
        result = call()

        def change() -> None:
            for doomed_task in doomed:
                doomed_task.state, doomed_task.lease = CANCELLED, None

        self.model.apply(change)
        assert result.state == task.state

    @precondition(lambda self: self.model.tasks)
    @rule(data=st.data(), who=st.sampled_from(sorted(AGENTS)))
    def reopen(self, data: st.DataObject, who: str) -> None:
        task = self.pick(data, DONE, FAILED, CANCELLED)
        actor = AGENTS[who]
        call = partial(reopen_task, self.ctx, actor, task.id, "again")
        self.now()
        try:
            self.model.check_reopen(task, actor)
        except Refused as refusal:
            self.refused(call, refusal)
            return
        result = call()

        def change() -> None:
            self.model.rejoin_parent(task)
            self.model.requeue(task)
            task.attempts = 0

        self.model.apply(change)
        assert result.state == task.state and result.attempts == 0

    # -- dependencies --------------------------------------------------------------------------

    @precondition(lambda self: len(self.model.tasks) >= 2)
    @rule(data=st.data(), who=st.sampled_from(sorted(AGENTS)))
    def add_blocker(self, data: st.DataObject, who: str) -> None:
        task = self.pick(data, OPEN, READY)
        blocker = self.model.tasks[data.draw(st.sampled_from(list(self.model.tasks)), label="blocker")]
        call = partial(add_dependency, self.ctx, AGENTS[who], task.id, blocker.id, DependencyKind.BLOCKS)
        self.now()
        if blocker.id in task.blocks:
            before = self.snapshot()
            assert call()["result"] == "already present"
            assert self.snapshot() == before
            return
        if task.id == blocker.id or self.model.cycle([(task.id, blocker.id)]) is not None:
            event("add_dependency: cycle refused")
            self.refused(call, Refused(InvalidInput))
            return
        assert call()["result"] == "added"
        self.model.apply(lambda: task.blocks.add(blocker.id))

    # -- leases and time -----------------------------------------------------------------------

    @rule(seconds=st.integers(0, 120))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def sweep(self) -> None:
        expired = self.model.sweep(self.now())
        rows = release_expired_leases(self.ctx)
        assert {r["id"] for r in rows} == expired

    @rule(who=st.sampled_from(sorted(AGENTS)))
    def renew(self, who: str) -> None:
        now = self.now()
        renewed = [t for t in self.model.tasks.values() if t.assignee == who and t.state in HELD]
        assert renew_leases(self.ctx, AGENTS[who]) == len(renewed)
        for task in renewed:
            task.lease = now + LEASE_MS

    # -- invariants ----------------------------------------------------------------------------

    def count(self, sql: str) -> int:
        return int(self.store.query(sql)[0]["n"])

    @invariant()
    def database_matches_model_and_rules(self) -> None:
        rows = {r["id"]: r for r in self.store.query("SELECT * FROM tasks")}
        deps = self.store.query("SELECT task_id, depends_on, kind FROM dependencies")
        model = self.model.tasks

        # 1. The database holds exactly the model's tasks, field by field.
        assert set(rows) == set(model)
        for tid, task in model.items():
            row = rows[tid]
            seen = {
                "state": row["state"],
                "assignee": row["assignee"],
                "lease": row["lease_expires_at"],
                "attempts": row["attempts"],
                "priority": row["priority"],
                "parent": row["parent_id"],
                "max_attempts": row["max_attempts"],
                "skills": frozenset(json.loads(row["skills"])),
                "next_child": row["next_child"],
            }
            wanted = {k: getattr(task, k) for k in seen}
            assert seen == wanted, f"{tid}: database {seen} != model {wanted}"
        assert {(d["task_id"], d["depends_on"]) for d in deps} == {(t.id, b) for t in model.values() for b in t.blocks}

        # The rest is computed from the raw rows only.
        children: dict[str, list[str]] = defaultdict(list)
        for tid, row in rows.items():
            if row["parent_id"] is not None:
                assert row["parent_id"] in rows
                children[row["parent_id"]].append(tid)
        live = {tid: [c for c in children[tid] if rows[c]["state"] != CANCELLED] for tid in rows}
        blockers: dict[str, set[str]] = defaultdict(set)
        for d in deps:
            if d["kind"] == "blocks":
                blockers[d["task_id"]].add(d["depends_on"])

        def lineage(tid: str | None) -> list[str]:
            chain = []
            while tid is not None:
                chain.append(tid)
                tid = rows[tid]["parent_id"]
            return chain

        closure = {(r["task_id"], r["ancestor_id"]) for r in self.store.query("SELECT * FROM task_ancestors")}
        assert closure == {(tid, a) for tid in rows for a in lineage(tid)}, "task_ancestors is not the closure"

        for tid, row in rows.items():
            state = row["state"]
            event(f"reached {state}{' (parent)' if live[tid] else ''}")
            # 2. Readiness is materialised exactly.
            if state in WAITING:
                rule_holds = not live[tid] and all(rows[b]["state"] == DONE for a in lineage(tid) for b in blockers[a])
                assert (state == READY) == rule_holds, f"{tid} is {state} but the readiness rule says {rule_holds}"
            # 3. Parents are never claimable or held.
            if live[tid]:
                assert state not in (READY, *HELD), f"{tid} has live children {live[tid]} but is {state}"
            # 4. Holders and leases.
            if state in HELD:
                assert row["assignee"] and row["lease_expires_at"], f"{tid} is {state} without holder/lease"
            if state in WAITING:
                assert row["assignee"] is None and row["lease_expires_at"] is None, f"{tid} is {state} but assigned"
            if state == BLOCKED:  # blocked by its holder, or held back unclaimed (no assignee)
                assert row["lease_expires_at"] is None
            # 5. Roll-up: a parent is done iff all its live children are done.
            if live[tid] and state != CANCELLED:
                all_done = all(rows[c]["state"] == DONE for c in live[tid])
                assert (state == DONE) == all_done, f"{tid} is {state}; live children {live[tid]}, all done={all_done}"
            # 6. Attempts.
            assert 0 <= row["attempts"] <= row["max_attempts"], f"{tid} attempts {row['attempts']}"

        # 6b. Tasks that failed by using up their attempts have used all of them.
        exhausted = self.store.query(
            """SELECT t.id, t.attempts, t.max_attempts FROM tasks t
            JOIN events e ON e.id = (SELECT max(id) FROM events WHERE task_id = t.id AND after_state = 'failed'
                                     AND before_state != 'failed')
            WHERE t.state = 'failed' AND e.kind IN ('attempt_failed', 'lease_expired')"""
        )
        for row in exhausted:
            assert row["attempts"] == row["max_attempts"], row

        # 7. No deadlock in the waits-for graph.
        cycle = waits_for_cycle(
            {tid: r["parent_id"] for tid, r in rows.items()},
            blockers,
            {tid: r["state"] != CANCELLED for tid, r in rows.items()},
        )
        assert cycle is None, f"waits-for cycle: {cycle}"

        for row in self.store.query("SELECT DISTINCT kind FROM events"):
            event(f"event {row['kind']}")

        # 8. The event log: one row per creation and per state transition, the last one current.
        transitions = self.count(
            "SELECT count(*) AS n FROM events WHERE (kind = 'created' AND before_state IS NULL) "
            "OR before_state != after_state"
        )
        assert transitions == self.model.transitions, "state-change events != transitions seen by the model"
        latest = self.store.query(
            """SELECT task_id, after_state FROM events WHERE id IN (
                SELECT max(id) FROM events WHERE (kind = 'created' AND before_state IS NULL)
                   OR before_state != after_state GROUP BY task_id)"""
        )
        assert {r["task_id"]: r["after_state"] for r in latest} == {tid: r["state"] for tid, r in rows.items()}


QueueMachine.TestCase.settings = settings(
    max_examples=1000 if SOAK else 100,
    stateful_step_count=60 if SOAK else 40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    # A failure is shrunk and reported alone, without the (slow) explain phase: a red run stays short.
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
TestQueueProperties = QueueMachine.TestCase


# ---------------------------------------------------------------------------------------------
# Regression tests for product bugs found by the state machine (they fail until fixed)
# ---------------------------------------------------------------------------------------------


ALICE = AGENTS["alice"]


def state_of(queue: QueueContext, task_id: str) -> str:
    return str(queue.store.query("SELECT state FROM tasks WHERE id = :id", {"id": task_id})[0]["state"])


def waits_for_cycle_in(queue: QueueContext) -> list[tuple[str, str]] | None:
    rows = queue.store.query("SELECT id, parent_id, state FROM tasks")
    blocks: dict[str, set[str]] = defaultdict(set)
    for dep in queue.store.query("SELECT task_id, depends_on FROM dependencies WHERE kind = 'blocks'"):
        blocks[dep["task_id"]].add(dep["depends_on"])
    return waits_for_cycle(
        {r["id"]: r["parent_id"] for r in rows}, blocks, {r["id"]: r["state"] != CANCELLED for r in rows}
    )


@pytest.mark.parametrize("parent_state", [READY, CLAIMED, BLOCKED, FAILED, DONE])
def test_reopening_a_cancelled_child_turns_its_parent_back_into_a_parent(
    queue: QueueContext, parent_state: str
) -> None:
    """Once its only child is cancelled a task is a leaf and can be worked on. Reopening the child
    makes it a parent again (open, unheld) when it is ready, held by the caller or done; a blocked
    or failed parent must be dealt with first, so the call is refused and changes nothing."""
    parent, child = create_tasks(queue, ALICE, [NewTask(title="P", children=[NewTask(title="C")])])
    cancel_task(queue, ALICE, child.id, "not needed")
    if parent_state != READY:
        assert claim_task(queue, ALICE).task is not None  # the parent, now a ready leaf
    if parent_state == BLOCKED:
        update_task(queue, ALICE, parent.id, status=StatusChange.BLOCKED, note="waiting")
    elif parent_state == FAILED:
        fail_task(queue, ALICE, parent.id, "cannot", FailMode.GIVE_UP)
    elif parent_state == DONE:
        complete_task(queue, ALICE, parent.id, "did it myself")
    assert state_of(queue, parent.id) == parent_state

    before = queue.store.query("SELECT * FROM tasks ORDER BY id")
    if parent_state in (BLOCKED, FAILED):
        with pytest.raises(Conflict, match=f"{parent.id}, which is {parent_state}"):
            reopen_task(queue, ALICE, child.id)
        assert queue.store.query("SELECT * FROM tasks ORDER BY id") == before
        return
    reopen_task(queue, ALICE, child.id)
    row = queue.store.query("SELECT state, assignee, lease_expires_at FROM tasks WHERE id = :id", {"id": parent.id})
    assert row[0] == {"state": OPEN, "assignee": None, "lease_expires_at": None}
    assert state_of(queue, child.id) == READY


def test_reopening_a_cancelled_child_cannot_close_a_waits_for_cycle(queue: QueueContext) -> None:
    """The link C -> P is harmless while C is cancelled; reopening C would make P wait for C and C
    for P, so it is refused, naming the cycle."""
    parent, child = create_tasks(queue, ALICE, [NewTask(title="P", children=[NewTask(title="C")])])
    cancel_task(queue, ALICE, child.id, "not needed")
    add_dependency(queue, ALICE, child.id, parent.id)  # accepted: C is not a live child now
    before = queue.store.query("SELECT * FROM tasks ORDER BY id")
    with pytest.raises(InvalidInput, match=f"would close the cycle {parent.id} → {child.id} → {parent.id}"):
        reopen_task(queue, ALICE, child.id)
    assert queue.store.query("SELECT * FROM tasks ORDER BY id") == before
    assert waits_for_cycle_in(queue) is None


def test_update_cancel_with_priority_is_all_or_nothing(queue: QueueContext) -> None:
    """update_task(status=cancelled, priority=...) once cancelled the task and then raised: the
    caller saw an error although the change was made. The combination is now refused up front."""
    (task,) = create_tasks(queue, ALICE, [NewTask(title="T")])
    with pytest.raises(InvalidInput, match="separate call"):
        update_task(queue, ALICE, task.id, status=StatusChange.CANCELLED, priority=1)
    assert state_of(queue, task.id) == READY
