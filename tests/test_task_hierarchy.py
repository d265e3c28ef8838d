"""Hierarchical ids, batches with refs, the depth limit, leaf-only claiming and parent roll-up."""

from __future__ import annotations

import re

import pytest

from jetpack.actor import Actor
from jetpack.config import TaskSettings
from jetpack.errors import Conflict, InvalidInput, NotFound, NotPermitted
from jetpack.store import DataLayer
from jetpack.tasks import (
    NewTask,
    QueueContext,
    TaskState,
    cancel_task,
    claim_task,
    complete_task,
    create_tasks,
    get_task,
)
from jetpack.tasks.ids import hash_length_for

pytestmark = pytest.mark.both_adapters  # the embedded file and a real tursodb server

ROOT = re.compile(r"^jp-[0-9a-z]{4}$")


def state_of(queue: QueueContext, task_id: str) -> str:
    return str(queue.store.query("SELECT state FROM tasks WHERE id = :id", {"id": task_id})[0]["state"])


def test_ids_are_prefix_hash_for_roots_and_dotted_numbers_for_children(queue: QueueContext, alice: Actor) -> None:
    created = create_tasks(
        queue,
        alice,
        [NewTask(title="Epic", children=[NewTask(title="A", children=[NewTask(title="A1"), NewTask(title="A2")])])],
    )
    root = created[0].id
    assert ROOT.match(root)
    assert [c.id for c in created] == [root, f"{root}.1", f"{root}.1.1", f"{root}.1.2"]


def test_prefix_comes_from_settings(store: DataLayer, clock: object, alice: Actor) -> None:
    queue = QueueContext(store=store, settings=TaskSettings(id_prefix="api"))
    created = create_tasks(queue, alice, [NewTask(title="x")])
    assert created[0].id.startswith("api-")


def test_hash_length_grows_with_the_number_of_roots() -> None:
    assert hash_length_for(0) == 4
    assert hash_length_for(10_000) == 4
    assert hash_length_for(100_000) == 5
    assert hash_length_for(50_000_000) == 7


def test_refs_link_parents_and_dependencies_within_a_batch(queue: QueueContext, alice: Actor) -> None:
    created = create_tasks(
        queue,
        alice,
        [
            NewTask(title="Child first", parent="epic", depends_on=["schema"]),
            NewTask(title="Epic", ref="epic"),
            NewTask(title="Schema", ref="schema"),
        ],
    )
    child, epic, schema = created
    assert child.parent_id == epic.id
    assert child.id == f"{epic.id}.1"
    assert get_task(queue, child.id).waiting_on == [schema.id]


def test_existing_parent_numbers_continue_and_are_never_reused_after_cancel(queue: QueueContext, alice: Actor) -> None:
    epic = create_tasks(queue, alice, [NewTask(title="Epic", children=[NewTask(title="a"), NewTask(title="b")])])[0]
    cancel_task(queue, alice, f"{epic.id}.2", "not needed")
    more = create_tasks(queue, alice, [NewTask(title="c", parent=epic.id)])
    assert more[0].id == f"{epic.id}.3"
    cancel_task(queue, alice, f"{epic.id}.3", "not needed either")
    again = create_tasks(queue, alice, [NewTask(title="d", parent=epic.id)])
    assert again[0].id == f"{epic.id}.4"


def test_depth_is_limited_by_settings(queue: QueueContext, alice: Actor) -> None:
    deep = NewTask(
        title="1", children=[NewTask(title="2", children=[NewTask(title="3", children=[NewTask(title="4")])])]
    )
    created = create_tasks(queue, alice, [deep])
    leaf = created[-1].id
    assert leaf.count(".") == 3
    with pytest.raises(InvalidInput, match="maximum depth"):
        create_tasks(queue, alice, [NewTask(title="5", parent=leaf)])
    with pytest.raises(InvalidInput, match="depth 5"):
        create_tasks(queue, alice, [NewTask(title="x", children=[deep])])


def test_a_parent_is_never_claimable(queue: QueueContext, alice: Actor) -> None:
    epic = create_tasks(queue, alice, [NewTask(title="Epic", children=[NewTask(title="leaf")])])[0]
    assert state_of(queue, epic.id) == "open"
    with pytest.raises(Conflict, match=rf"parent task.*{re.escape(epic.id)}\.1"):
        claim_task(queue, alice, epic.id)
    outcome = claim_task(queue, alice)
    assert outcome.task is not None and outcome.task.id == f"{epic.id}.1"


def test_a_parent_is_done_when_its_last_child_is(queue: QueueContext, alice: Actor) -> None:
    epic = create_tasks(
        queue,
        alice,
        [NewTask(title="Epic", children=[NewTask(title="a", children=[NewTask(title="a1")]), NewTask(title="b")])],
    )[0].id
    for leaf in (f"{epic}.1.1", f"{epic}.2"):
        claim_task(queue, alice, leaf)
    complete_task(queue, alice, f"{epic}.1.1", "")
    assert state_of(queue, f"{epic}.1") == "done"
    assert state_of(queue, epic) == "open"
    complete_task(queue, alice, f"{epic}.2", "")
    assert state_of(queue, epic) == "done"
    kinds = [e.kind for e in get_task(queue, epic).recent_events]
    assert kinds[-1] == "children_done"


def test_cancelled_children_do_not_hold_a_parent_back(queue: QueueContext, alice: Actor) -> None:
    epic = create_tasks(queue, alice, [NewTask(title="Epic", children=[NewTask(title="a"), NewTask(title="b")])])[0].id
    claim_task(queue, alice, f"{epic}.1")
    complete_task(queue, alice, f"{epic}.1", "")
    assert state_of(queue, epic) == "open"
    cancel_task(queue, alice, f"{epic}.2", "dropped")
    assert state_of(queue, epic) == "done"


def test_a_parent_whose_children_are_all_cancelled_becomes_a_claimable_leaf(queue: QueueContext, alice: Actor) -> None:
    epic = create_tasks(queue, alice, [NewTask(title="Epic", children=[NewTask(title="a")])])[0].id
    cancel_task(queue, alice, f"{epic}.1", "split was wrong")
    assert state_of(queue, epic) == "ready"


def test_cancelling_a_parent_cancels_its_unfinished_subtree(queue: QueueContext, alice: Actor) -> None:
    epic = create_tasks(queue, alice, [NewTask(title="Epic", children=[NewTask(title="a"), NewTask(title="b")])])[0].id
    claim_task(queue, alice, f"{epic}.1")
    complete_task(queue, alice, f"{epic}.1", "")
    cancel_task(queue, alice, epic, "scope cut")
    assert [state_of(queue, t) for t in (epic, f"{epic}.1", f"{epic}.2")] == ["cancelled", "done", "cancelled"]


def test_cancel_is_refused_while_another_agent_holds_a_subtask(queue: QueueContext, alice: Actor, bob: Actor) -> None:
    epic = create_tasks(queue, alice, [NewTask(title="Epic", children=[NewTask(title="a"), NewTask(title="b")])])[0].id
    claim_task(queue, bob, f"{epic}.1")
    before = queue.store.query("SELECT id, state FROM tasks ORDER BY id")
    with pytest.raises(NotPermitted, match=rf"{re.escape(epic)}\.1 \(bob\)"):
        cancel_task(queue, alice, epic, "scope cut")
    assert queue.store.query("SELECT id, state FROM tasks ORDER BY id") == before


def test_holder_can_split_its_claimed_task_into_subtasks(queue: QueueContext, alice: Actor, bob: Actor) -> None:
    task = create_tasks(queue, alice, [NewTask(title="Big")])[0].id
    claim_task(queue, alice, task)
    with pytest.raises(NotPermitted, match="only its holder"):
        create_tasks(queue, bob, [NewTask(title="part", parent=task)])
    create_tasks(queue, alice, [NewTask(title="part 1", parent=task), NewTask(title="part 2", parent=task)])
    row = queue.store.query("SELECT state, assignee FROM tasks WHERE id = :id", {"id": task})[0]
    assert row == {"state": "open", "assignee": None}
    assert state_of(queue, f"{task}.1") == "ready"


def test_children_cannot_be_added_to_finished_tasks(queue: QueueContext, alice: Actor) -> None:
    task = create_tasks(queue, alice, [NewTask(title="t")])[0].id
    claim_task(queue, alice, task)
    complete_task(queue, alice, task, "")
    with pytest.raises(Conflict, match="reopen it first"):
        create_tasks(queue, alice, [NewTask(title="late", parent=task)])


@pytest.mark.parametrize(
    ("specs", "error", "match"),
    [
        ([NewTask(title="a", parent="jp-zzzz")], NotFound, "jp-zzzz"),
        ([NewTask(title="a", depends_on=["nope"])], InvalidInput, "not a task id"),
        ([NewTask(title="a", ref="x"), NewTask(title="b", ref="x")], InvalidInput, "used twice"),
        ([NewTask(title="a", ref="jp-abcd")], InvalidInput, "looks like a task id"),
        ([NewTask(title="a", ref="a", parent="b"), NewTask(title="b", ref="b", parent="a")], InvalidInput, "loop"),
        ([NewTask(title="a", ref="a", depends_on=["a"])], InvalidInput, "cycle"),
    ],
)
def test_bad_batches_are_refused_whole(
    queue: QueueContext, alice: Actor, specs: list[NewTask], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        create_tasks(queue, alice, specs)
    assert queue.store.query("SELECT count(*) AS n FROM tasks")[0]["n"] == 0
    assert queue.store.query("SELECT count(*) AS n FROM events")[0]["n"] == 0


def test_every_task_starts_with_a_created_event(queue: QueueContext, alice: Actor) -> None:
    created = create_tasks(queue, alice, [NewTask(title="a", children=[NewTask(title="b")])])
    rows = queue.store.query("SELECT task_id, kind, actor, after_state FROM events ORDER BY id")
    assert {(r["task_id"], r["kind"], r["actor"]) for r in rows} == {(c.id, "created", "alice") for c in created}
    assert {r["task_id"]: r["after_state"] for r in rows} == {c.id: c.state.value for c in created}
    assert TaskState.READY in {c.state for c in created}


def test_a_root_id_taken_already_is_drawn_again_before_children_are_named(
    queue: QueueContext, alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jetpack.tasks import creation

    first = create_tasks(queue, alice, [NewTask(title="first")])[0].id
    draws = iter([first, first, "jp-zzz9"])
    monkeypatch.setattr(creation, "root_id", lambda prefix, seed, length: next(draws))
    created = create_tasks(queue, alice, [NewTask(title="second", children=[NewTask(title="child")])])
    assert [c.id for c in created] == ["jp-zzz9", "jp-zzz9.1"]
    ancestry = queue.store.query("SELECT ancestor_id FROM task_ancestors WHERE task_id = 'jp-zzz9.1' ORDER BY distance")
    assert [r["ancestor_id"] for r in ancestry] == ["jp-zzz9.1", "jp-zzz9"]
