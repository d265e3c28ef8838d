"""What an agent is told about its task: the brief (gathered from the queue) and the prompt text.

The brief carries the claimed task, what the tasks it depends on produced (their summaries and
files), the reservation conflicts on its planned files, the unread mail count and the memories
that came with the claim — so an agent can start without a round of lookups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jetpack import tasks as task_queue
from jetpack.harness.adapters import fill
from jetpack.memory.model import MemoryHit
from jetpack.reservations.service import ConflictView
from jetpack.tasks import QueueContext, Task, TaskState
from jetpack.tasks.ids import ancestors_of
from jetpack.tasks.model import DependencyKind
from jetpack.workloop import ClaimContext

# Enough for the agent to use a result without flooding its context.
SUMMARY_CHARS = 600
DEPENDENCY_LIMIT = 20


@dataclass(frozen=True)
class DependencyResult:
    id: str
    title: str
    state: TaskState
    summary: str | None
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TaskBrief:
    task: Task
    dependencies: list[DependencyResult] = field(default_factory=list)
    conflicts: list[ConflictView] = field(default_factory=list)
    unread_mail: int = 0
    memories: list[MemoryHit] = field(default_factory=list)


def brief_for(queue: QueueContext, task: Task, context: ClaimContext) -> TaskBrief:
    return TaskBrief(
        task=task,
        dependencies=dependency_results(queue, task.id),
        conflicts=list(context.conflicts),
        unread_mail=context.unread_mail,
        memories=list(context.memories),
    )


def dependency_results(queue: QueueContext, task_id: str) -> list[DependencyResult]:
    """The ``blocks`` dependencies of the task and of its ancestors (subtasks inherit them), with what
    each produced; a dependency that is a parent contributes its subtasks' results too."""
    seen: dict[str, DependencyResult] = {}
    for holder in (task_id, *ancestors_of(task_id)):
        for link in task_queue.get_task(queue, holder, events=0).depends_on:
            if link.kind is DependencyKind.BLOCKS:
                _collect(queue, link.id, seen)
    return list(seen.values())[:DEPENDENCY_LIMIT]


def _collect(queue: QueueContext, task_id: str, seen: dict[str, DependencyResult]) -> None:
    if task_id in seen or len(seen) >= DEPENDENCY_LIMIT:
        return
    detail = task_queue.get_task(queue, task_id, events=0)
    done = detail.task
    seen[task_id] = DependencyResult(
        done.id, done.title, done.state, _clip(done.result_summary), list(done.files_touched or done.files)
    )
    for child in detail.children:
        _collect(queue, child.id, seen)


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= SUMMARY_CHARS:
        return text
    return text[: SUMMARY_CHARS - 1] + "…"


DEFAULT_TEMPLATE = """\
You are {agent}, one of several coding agents working on this repository at the same time. Jetpack
(your MCP server "jetpack") is the shared task queue; the harness already claimed this task for you.

Task id: {task_id}
{task}

{dependencies}

{conflicts}

{memories}

{mail}

How to work:
1. Call announce_intent(task_id="{task_id}", files=[the files you will change], summary=...) before you
   edit, so agents whose work overlaps hear about it. Change only the files this task needs.
2. Do the work in {workdir}. Commit exactly the files you changed, with a message starting with
   "{task_id}: " (git add FILES && git commit -m "{task_id}: ..." -- FILES).
{finish}
If you cannot finish, call fail_task(task_id="{task_id}", reason=<why>, mode="retry") instead.
Do not claim other tasks: the harness hands out the next one.
"""

MCP_FINISH = """\
3. Then call complete_task(task_id="{task_id}", summary=<what you did, for the tasks that depend on
   this one>, files=[files changed], learnings=[anything the next agent should know])."""

# With quality gates configured, the harness completes the task once the gates pass.
GATED_FINISH = """\
3. Then call update_task(task_id="{task_id}", note=<what you did, for the tasks that depend on this
   one>) and stop. Do not call complete_task: the harness runs the project's quality gates on your
   changes and completes the task with your note as its summary, or hands it back with what regressed."""


def render_prompt(
    brief: TaskBrief, values: Mapping[str, str], template_file: Path | None = None, *, gated: bool = False
) -> str:
    template = template_file.read_text() if template_file is not None else DEFAULT_TEMPLATE
    sections = {
        "finish": fill(GATED_FINISH if gated else MCP_FINISH, values),
        "task": _task_section(brief.task),
        "dependencies": _dependencies_section(brief.dependencies),
        "conflicts": _conflicts_section(brief.conflicts),
        "memories": _memories_section(brief.memories),
        "mail": _mail_section(brief.unread_mail),
    }
    text = fill(template, {**values, **sections})
    return _squeeze_blank_lines(text)


def _task_section(task: Task) -> str:
    lines = [f"Title: {task.title}"]
    if task.description:
        lines += ["", task.description.strip()]
    if task.acceptance:
        lines += ["", "Done when:", task.acceptance.strip()]
    if task.files:
        lines += ["", "Planned files: " + ", ".join(task.files)]
    if task.skills:
        lines.append("Skills: " + ", ".join(task.skills))
    if task.attempts:
        lines.append(f"Attempt {task.attempts + 1} of {task.max_attempts}; earlier attempts did not finish.")
    return "\n".join(lines)


def _dependencies_section(dependencies: list[DependencyResult]) -> str:
    if not dependencies:
        return ""
    lines = ["What the tasks it depends on produced:"]
    for dep in dependencies:
        result = dep.summary or f"({dep.state.value}, no summary)"
        files = f" [files: {', '.join(dep.files)}]" if dep.files else ""
        lines.append(f"- {dep.id} {dep.title}: {result}{files}")
    return "\n".join(lines)


def _conflicts_section(conflicts: list[ConflictView]) -> str:
    if not conflicts:
        return ""
    lines = ["Other agents hold reservations on planned files (coordinate, or wait for them):"]
    for c in conflicts:
        about = f" for {c.task_id}" if c.task_id else ""
        lines.append(f"- {c.path}: {c.holder} holds {c.pattern}{about} until {c.expires_at:%H:%M:%S}")
    return "\n".join(lines)


def _memories_section(memories: list[MemoryHit]) -> str:
    if not memories:
        return ""
    lines = ["Recalled from earlier work (recall_memory has more):"]
    lines += [f"- [{m.layer}] {m.snippet}" for m in memories]
    return "\n".join(lines)


def _mail_section(unread: int) -> str:
    return f"You have {unread} unread message(s): call fetch_inbox before you start." if unread else ""


def _squeeze_blank_lines(text: str) -> str:
    lines: list[str] = []
    for line in text.splitlines():
        if line.strip() or (lines and lines[-1].strip()):
            lines.append(line.rstrip())
    return "\n".join(lines).strip() + "\n"
