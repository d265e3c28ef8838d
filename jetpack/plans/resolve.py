"""Check a plan as a whole and turn it into the batch ``create_tasks`` takes.

Every problem is collected with its line (fields that break NewTask's limits, empty titles,
paths that are not repo-relative, depth beyond ``tasks.max_depth``, duplicate refs, unknown or
ambiguous dependencies, cycles), so one run reports them all. A plan that passes becomes one
``create_tasks`` batch: all of it is created, or none.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from pydantic import ValidationError

from jetpack.errors import InvalidInput
from jetpack.plans.model import Plan, PlanError, PlanFormat, PlanItem, PlanProblem
from jetpack.reservations.patterns import normalise_pattern
from jetpack.tasks.ids import looks_like_task_id
from jetpack.tasks.model import NewTask, describe_validation_error

_UNCHECKED = ("children", "depends_on")


@dataclass
class PlanNode:
    """One task of a checked plan, in pre-order (the order ``create_tasks`` returns them in)."""

    index: int
    line: int
    spec: NewTask  # without children and dependencies
    parent: int | None
    depth: int
    placeholder: str  # the id it will get, with '?N' for a root hash drawn at load time
    children: list[int] = field(default_factory=list)
    blockers: list[int] = field(default_factory=list)  # plan tasks it waits for
    existing: list[str] = field(default_factory=list)  # existing task ids it waits for

    @property
    def title(self) -> str:
        return self.spec.title


@dataclass
class ResolvedPlan:
    source: str
    format: PlanFormat
    nodes: list[PlanNode]

    @property
    def roots(self) -> list[PlanNode]:
        return [n for n in self.nodes if n.parent is None]

    @property
    def leaves(self) -> list[PlanNode]:
        return [n for n in self.nodes if not n.children]

    def existing_ids(self) -> list[str]:
        return sorted({task_id for n in self.nodes for task_id in n.existing})

    def new_tasks(self) -> list[NewTask]:
        """The ``create_tasks`` batch: nested children, dependencies by batch refs (``#N``) and ids."""
        targets = {b for n in self.nodes for b in n.blockers}

        def build(node: PlanNode) -> NewTask:
            ref = node.spec.ref or (f"#{node.index + 1}" if node.index in targets else None)
            return node.spec.model_copy(
                update={
                    "ref": ref,
                    "depends_on": [self._ref_of(b) for b in node.blockers] + node.existing,
                    "children": [build(self.nodes[c]) for c in node.children],
                }
            )

        return [build(root) for root in self.roots]

    def _ref_of(self, index: int) -> str:
        return self.nodes[index].spec.ref or f"#{index + 1}"


def resolve_plan(plan: Plan, *, max_depth: int = 4, id_prefix: str = "jp") -> ResolvedPlan:
    """Check ``plan``; raise :class:`PlanError` listing every problem, or return it ready to load."""
    problems = list(plan.problems)
    if not plan.roots and not problems:
        problems.append(PlanProblem(1, "the plan has no tasks; write a heading or a list item per task"))
    items: list[PlanItem] = []
    nodes: list[PlanNode] = []
    _flatten(plan.roots, None, 1, id_prefix, max_depth, items, nodes, problems)
    _check_refs(nodes, problems)
    _link(items, nodes, problems)
    cycle = _find_cycle(nodes)
    if cycle:
        problems.append(_describe_cycle(nodes, cycle))
    if problems:
        raise PlanError(plan.source, problems)
    return ResolvedPlan(source=plan.source, format=plan.format, nodes=nodes)


def _flatten(
    items: list[PlanItem],
    parent: PlanNode | None,
    depth: int,
    id_prefix: str,
    max_depth: int,
    flat: list[PlanItem],
    nodes: list[PlanNode],
    problems: list[PlanProblem],
) -> None:
    for number, item in enumerate(items, start=1):
        if depth > max_depth:
            problems.append(
                PlanProblem(
                    item.line,
                    f"{item.title!r} would be at depth {depth}, beyond tasks.max_depth ({max_depth}): "
                    "lift it (and its subtasks) a level, fold it into its parent's description, "
                    "or raise tasks.max_depth in .jetpack/config.toml",
                )
            )
            continue  # its subtasks are deeper still: one problem for the branch is enough
        placeholder = f"{parent.placeholder}.{number}" if parent else f"{id_prefix}-?{number}"
        parent_index = parent.index if parent is not None else None
        node = PlanNode(len(nodes), item.line, _spec(item, problems), parent_index, depth, placeholder)
        if parent is not None:
            parent.children.append(node.index)
        flat.append(item)
        nodes.append(node)
        _flatten(item.children, node, depth + 1, id_prefix, max_depth, flat, nodes, problems)


def _spec(item: PlanItem, problems: list[PlanProblem]) -> NewTask:
    fields = {k: v for k, v in item.fields.items() if k not in _UNCHECKED}
    title = fields.get("title")
    if title is None or (isinstance(title, str) and not title.strip()):
        problems.append(PlanProblem(item.line, "empty title: every task needs a short title"))
        fields["title"] = "(untitled)"
    files = fields.get("files")
    if isinstance(files, list) and all(isinstance(p, str) for p in files):  # else NewTask says what is wrong
        fields["files"] = list(dict.fromkeys(_path(item.line, p, problems) for p in files))
    try:
        return NewTask.model_validate(fields)
    except ValidationError as error:
        problems.append(PlanProblem(item.line, describe_validation_error(error)))
        return NewTask(title=str(fields.get("title") or "(invalid)")[:80] or "(invalid)")


def _path(line: int, raw: str, problems: list[PlanProblem]) -> str:
    try:
        return normalise_pattern(raw)
    except InvalidInput as error:
        problems.append(PlanProblem(line, f"planned file: {error}"))
        return raw


def _check_refs(nodes: list[PlanNode], problems: list[PlanProblem]) -> None:
    seen: dict[str, PlanNode] = {}
    for node in nodes:
        ref = node.spec.ref
        if ref is None:
            continue
        if looks_like_task_id(ref) or ref.startswith("#"):
            problems.append(PlanProblem(node.line, f"ref {ref!r} looks like a task id; use a plain name such as 'api'"))
        elif ref in seen:
            problems.append(
                PlanProblem(node.line, f"ref {ref!r} is already used on line {seen[ref].line}; refs must be unique")
            )
        else:
            seen[ref] = node


def _normal(title: str) -> str:
    return " ".join(title.casefold().split())


def _link(items: list[PlanItem], nodes: list[PlanNode], problems: list[PlanProblem]) -> None:
    by_ref = {n.spec.ref: n.index for n in nodes if n.spec.ref}
    by_title: dict[str, list[int]] = {}
    for node in nodes:
        by_title.setdefault(_normal(node.title), []).append(node.index)
    names = sorted({n.title for n in nodes} | set(by_ref))
    for item, node in zip(items, nodes, strict=True):
        for written, line in item.depends:
            reference = written.strip()
            matches = [by_ref[reference]] if reference in by_ref else by_title.get(_normal(reference), [])
            if len(matches) > 1:
                lines = ", ".join(str(nodes[m].line) for m in matches)
                problems.append(
                    PlanProblem(
                        line,
                        f"dependency {reference!r} is ambiguous: tasks on lines {lines} have that title; "
                        "give the one you mean a [ref: name] and depend on the ref",
                    )
                )
            elif matches and matches[0] == node.index:
                problems.append(PlanProblem(line, f"{node.title!r} depends on itself"))
            elif matches:
                if matches[0] not in node.blockers:
                    node.blockers.append(matches[0])
            elif looks_like_task_id(reference):
                if reference not in node.existing:
                    node.existing.append(reference)
            else:
                guess = difflib.get_close_matches(reference, names, n=1, cutoff=0.6)
                hint = f" (did you mean {guess[0]!r}?)" if guess else ""
                problems.append(
                    PlanProblem(
                        line,
                        f"unknown dependency {reference!r}{hint}: name another task of the plan by its title or "
                        "[ref: …], or an existing task id such as jp-a3f8",
                    )
                )


# Cycles are looked for in the same "waits-for" graph as jetpack.tasks.graph (two nodes per task),
# so a task waiting for its own ancestor or subtask is a cycle here too.
_Node = tuple[bool, int]  # (is "done", task index); False is "start"


def _successors(nodes: list[PlanNode], vertex: _Node) -> list[_Node]:
    done, index = vertex
    node = nodes[index]
    if done:
        return [(True, c) for c in node.children] or [(False, index)]
    parent = [(False, node.parent)] if node.parent is not None else []
    return [(True, b) for b in node.blockers] + parent


def _find_cycle(nodes: list[PlanNode]) -> list[_Node] | None:
    """The vertices of a cycle, or None. Iterative depth-first search (plans may be deep)."""
    state: dict[_Node, int] = {}  # 1 on the stack, 2 finished
    for start in [(False, n.index) for n in nodes]:
        if start in state:
            continue
        path: list[_Node] = [start]
        pending = [iter(_successors(nodes, start))]
        state[start] = 1
        while pending:
            following = next(pending[-1], None)
            if following is None:
                state[path.pop()] = 2
                pending.pop()
            elif state.get(following) == 1:
                return path[path.index(following) :]
            elif following not in state:
                state[following] = 1
                path.append(following)
                pending.append(iter(_successors(nodes, following)))
    return None


def _describe_cycle(nodes: list[PlanNode], cycle: list[_Node]) -> PlanProblem:
    """Name the dependencies that close the cycle (its start → done edges), in order, from the
    one written first; say so when the task tree is part of it."""
    steps = list(zip(cycle, [*cycle[1:], cycle[0]], strict=True))
    waits = [(a[1], b[1]) for a, b in steps if not a[0] and b[0]]
    through_tree = any(a[1] != b[1] for a, b in steps if a[0] == b[0])
    first = min(range(len(waits)), key=lambda i: nodes[waits[i][0]].line)
    waits = waits[first:] + waits[:first]

    def named(index: int) -> str:
        return f"{nodes[index].title!r} (line {nodes[index].line})"

    def relation(task: int, blocker: int) -> str:
        if _contains(nodes, blocker, task):
            return ", which contains it"
        return ", one of its own subtasks" if _contains(nodes, task, blocker) else ""

    chain = "; ".join(f"{named(t)} waits for {named(b)}{relation(t, b)}" for t, b in waits)
    tree = (
        " (a subtask waits for whatever its parents wait for, and a parent is done only when its subtasks are)"
        if through_tree
        else ""
    )
    return PlanProblem(
        nodes[waits[0][0]].line,
        f"dependency cycle: {chain}{tree}; these tasks could never all finish: remove one of the dependencies",
    )


def _contains(nodes: list[PlanNode], ancestor: int, index: int) -> bool:
    parent = nodes[index].parent
    while parent is not None:
        if parent == ancestor:
            return True
        parent = nodes[parent].parent
    return False
