"""The dependency DAG: readiness follows blockers exactly, inherited through the hierarchy; cycles are refused."""

from __future__ import annotations

import pytest

from jetpack.actor import Actor
from jetpack.errors import Conflict, InvalidInput, NotFound
from jetpack.tasks import (
    DependencyKind,
    NewTask,
    QueueContext,
    add_dependency,
    claim_task,
    complete_task,
    create_tasks,
    get_task,
    reopen_task,
)

pytestmark = pytest.mark.both_adapters  # the embedded file and a real tursodb server


def states(queue: QueueContext, *ids: str) -> list[str]:
    rows = {r["id"]: r["state"] for r in queue.store.query("SELECT id, state FROM tasks")}
    return [rows[i] for i in ids]


def finish(queue: QueueContext, actor: Actor, task_id: str) -> None:
    claim_task(queue, actor, task_id)
    complete_task(queue, actor, task_id, "")


def test_dependant_becomes_ready_exactly_when_its_last_blocker_is_done(queue: QueueContext, alice: Actor) -> None:
    a, b, c = (
        t.id
        for t in create_tasks(
            queue,
            alice,
            [NewTask(title="a", ref="a"), NewTask(title="b", ref="b"), NewTask(title="c", depends_on=["a", "b"])],
        )
    )
    assert states(queue, c) == ["open"]
    finish(queue, alice, a)
    assert states(queue, c) == ["open"]
    assert get_task(queue, c).waiting_on == [b]
    finish(queue, alice, b)
    assert states(queue, c) == ["ready"]


def test_soft_links_never_hold_back_readiness(queue: QueueContext, alice: Actor) -> None:
    a, b = (t.id for t in create_tasks(queue, alice, [NewTask(title="a"), NewTask(title="b")]))
    add_dependency(queue, alice, b, a, DependencyKind.RELATED)
    add_dependency(queue, alice, a, b, DependencyKind.DISCOVERED_FROM)  # soft links may point both ways
    assert states(queue, a, b) == ["ready", "ready"]


def test_adding_a_blocker_takes_a_ready_task_out_of_the_queue(queue: QueueContext, alice: Actor) -> None:
    a, b = (t.id for t in create_tasks(queue, alice, [NewTask(title="a"), NewTask(title="b")]))
    result = add_dependency(queue, alice, b, a)
    assert result["result"] == "added"
    assert states(queue, a, b) == ["ready", "open"]
    assert add_dependency(queue, alice, b, a)["result"] == "already present"
    event = queue.store.query("SELECT kind, note FROM events WHERE kind = 'dependency_added'")
    assert event == [{"kind": "dependency_added", "note": f"blocks {a}"}]


def test_blockers_of_a_parent_hold_back_its_subtasks(queue: QueueContext, alice: Actor) -> None:
    created = create_tasks(
        queue,
        alice,
        [
            NewTask(title="Phase 1", ref="p1", children=[NewTask(title="p1 work")]),
            NewTask(
                title="Phase 2", depends_on=["p1"], children=[NewTask(title="p2 work", children=[NewTask(title="x")])]
            ),
        ],
    )
    first, second = created[0], created[2]
    leaf = f"{second.id}.1.1"
    assert states(queue, leaf) == ["open"]
    assert get_task(queue, leaf).waiting_on == [first.id]
    finish(queue, alice, f"{first.id}.1")
    assert states(queue, first.id, leaf) == ["done", "ready"]


def test_reopening_a_blocker_takes_waiting_work_out_of_the_queue(queue: QueueContext, alice: Actor) -> None:
    a, b = (
        t.id for t in create_tasks(queue, alice, [NewTask(title="a", ref="a"), NewTask(title="b", depends_on=["a"])])
    )
    finish(queue, alice, a)
    assert states(queue, b) == ["ready"]
    reopen_task(queue, alice, a, "tests were wrong")
    assert states(queue, a, b) == ["ready", "open"]


def test_reopening_a_child_reopens_its_done_parent(queue: QueueContext, alice: Actor) -> None:
    epic = create_tasks(queue, alice, [NewTask(title="e", children=[NewTask(title="only")])])[0].id
    finish(queue, alice, f"{epic}.1")
    assert states(queue, epic) == ["done"]
    with pytest.raises(Conflict, match="parent task"):
        reopen_task(queue, alice, epic)
    reopen_task(queue, alice, f"{epic}.1")
    assert states(queue, epic, f"{epic}.1") == ["open", "ready"]


def test_a_direct_cycle_is_refused_with_its_path(queue: QueueContext, alice: Actor) -> None:
    a, b, c = (t.id for t in create_tasks(queue, alice, [NewTask(title=n) for n in "abc"]))
    add_dependency(queue, alice, b, a)
    add_dependency(queue, alice, c, b)
    before = queue.store.query("SELECT * FROM dependencies ORDER BY task_id")
    with pytest.raises(InvalidInput) as refused:
        add_dependency(queue, alice, a, c)
    message = str(refused.value)
    assert f"{a} → {c} → {b} → {a}" in message
    assert f"{b} waits for {a}" in message
    assert queue.store.query("SELECT * FROM dependencies ORDER BY task_id") == before


@pytest.mark.parametrize("direction", ["child on parent", "parent on child", "across trees"])
def test_cycles_through_the_hierarchy_are_refused(queue: QueueContext, alice: Actor, direction: str) -> None:
    x, y = (
        t.id
        for t in create_tasks(
            queue,
            alice,
            [NewTask(title="x", children=[NewTask(title="x1")]), NewTask(title="y", children=[NewTask(title="y1")])],
        )[0::2]
    )
    if direction == "child on parent":
        task, blocker = f"{x}.1", x
    elif direction == "parent on child":
        task, blocker = x, f"{x}.1"
    else:
        add_dependency(queue, alice, f"{x}.1", y)
        task, blocker = f"{y}.1", x
    with pytest.raises(InvalidInput, match="cycle"):
        add_dependency(queue, alice, task, blocker)


def test_new_tasks_cannot_close_a_cycle_with_existing_ones(queue: QueueContext, alice: Actor) -> None:
    epic = create_tasks(queue, alice, [NewTask(title="epic", children=[NewTask(title="e1")])])[0].id
    outside = create_tasks(queue, alice, [NewTask(title="outside", depends_on=[epic])])[0].id
    with pytest.raises(InvalidInput, match="cycle"):
        create_tasks(queue, alice, [NewTask(title="e2", parent=epic, depends_on=[outside])])
    assert queue.store.query("SELECT count(*) AS n FROM tasks")[0]["n"] == 3


def test_dependency_errors_name_what_to_fix(queue: QueueContext, alice: Actor) -> None:
    a = create_tasks(queue, alice, [NewTask(title="a")])[0].id
    with pytest.raises(NotFound, match="jp-zzzz"):
        add_dependency(queue, alice, a, "jp-zzzz")
    with pytest.raises(InvalidInput, match="itself"):
        add_dependency(queue, alice, a, a)
    b = create_tasks(queue, alice, [NewTask(title="b")])[0].id
    add_dependency(queue, alice, b, a, DependencyKind.RELATED)
    with pytest.raises(Conflict, match="already depends"):
        add_dependency(queue, alice, b, a)
