"""The task hierarchy for the tree view, each node with the progress of the work beneath it.

One query reads every task; the tree is assembled in Python, deepest tasks first, so no recursion
(in SQL or Python) limits how deep it may go.
"""

from __future__ import annotations

from typing import TypedDict

from jetpack.store import DataLayer


class TreeNode(TypedDict):
    id: str
    title: str
    state: str
    priority: int
    assignee: str | None
    done: int  # done leaves beneath (itself if a leaf)
    total: int  # live leaves beneath (itself if a leaf); cancelled tasks count for nothing
    children: list[TreeNode]


class TaskTree(TypedDict):
    roots: list[TreeNode]


def task_tree(store: DataLayer) -> TaskTree:
    """Every task under its parent: roots by priority then id, children in the order they were
    added (their numeric suffix). A leaf is a live task without live children, as for claims."""
    rows = store.query("SELECT id, parent_id, title, state, priority, assignee FROM tasks")
    nodes: dict[str, TreeNode] = {
        r["id"]: {
            "id": r["id"],
            "title": r["title"],
            "state": r["state"],
            "priority": r["priority"],
            "assignee": r["assignee"],
            "done": 0,
            "total": 0,
            "children": [],
        }
        for r in rows
    }
    parents = {r["id"]: r["parent_id"] for r in rows}
    roots: list[TreeNode] = []
    # Deepest first: a node's children are complete (and counted) before it joins its own parent.
    for task_id in sorted(nodes, key=lambda i: i.count("."), reverse=True):
        node = nodes[task_id]
        node["children"].sort(key=_suffix)
        live_children = [c for c in node["children"] if c["state"] != "cancelled"]
        if live_children and node["state"] != "cancelled":
            node["done"] = sum(c["done"] for c in live_children)
            node["total"] = sum(c["total"] for c in live_children)
        elif node["state"] != "cancelled":
            node["done"], node["total"] = int(node["state"] == "done"), 1
        parent = nodes.get(parents[task_id] or "")
        (parent["children"] if parent is not None else roots).append(node)
    roots.sort(key=lambda n: (n["priority"], n["id"]))
    return {"roots": roots}


def _suffix(node: TreeNode) -> int:
    return int(node["id"].rpartition(".")[2])
