"""MCP tools of the task queue. Each is a thin entrypoint: validate, act as the session's agent,
call one service function, return a compact result."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from jetpack import tasks as task_queue
from jetpack import workloop
from jetpack.errors import InvalidInput
from jetpack.swarm.strategies import MAX_BATCH
from jetpack.tasks.model import NOTE_MAX, TEXT_MAX, NewTask, Task, TaskDetail, TaskState, compact
from jetpack.tools.common import acting, as_result, tool_errors

MAX_TASKS_PER_CALL = 1000
TaskId = Annotated[str, Field(min_length=1, max_length=200, description="A task id such as jp-a3f8.2")]


class CreateTasksResult(BaseModel):
    created: list[task_queue.CreatedTask]
    count: int


class ClaimResult(BaseModel):
    """The claimed task's fields (``id``, ``title``, ``description``, ``lease_expires_at``, …), or
    ``id: null`` with a ``reason`` when nothing is ready for you."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    reason: str | None = None


class DependencyResult(BaseModel):
    task_id: str
    depends_on: str
    kind: str
    result: str


_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def _count_tasks(specs: list[NewTask]) -> int:
    return sum(1 + _count_tasks(s.children) for s in specs)


def register_task_tools(mcp: MCPServer) -> None:
    @mcp.tool(annotations=_WRITE)
    @tool_errors
    async def create_tasks(
        tasks: Annotated[
            list[NewTask],
            Field(
                min_length=1,
                description="Tasks to create. Nest subtasks in `children`; give a task a `ref` and point "
                "`depends_on`/`parent` of others at it, or at existing ids.",
            ),
        ],
        ctx: Context,
    ) -> Annotated[CallToolResult, CreateTasksResult]:
        """Create one or many tasks atomically, with subtasks and dependencies. Returns their ids and states."""
        if _count_tasks(tasks) > MAX_TASKS_PER_CALL:
            raise InvalidInput(f"at most {MAX_TASKS_PER_CALL} tasks per call; split the batch")
        session, actor = acting(ctx)
        created = task_queue.create_tasks(session.queue, actor, tasks)
        return as_result(CreateTasksResult(created=created, count=len(created)))

    @mcp.tool(annotations=_READ)
    @tool_errors
    async def list_tasks(
        ctx: Context,
        state: Annotated[
            list[TaskState] | None, Field(description="Filter by state; default: all unfinished states.")
        ] = None,
        parent: Annotated[str | None, Field(description="Only direct subtasks of this task.")] = None,
        assignee: Annotated[str | None, Field(max_length=64)] = None,
        label: Annotated[str | None, Field(max_length=64)] = None,
        skill: Annotated[str | None, Field(max_length=64)] = None,
        text: Annotated[str | None, Field(max_length=200, description="Substring of the title.")] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Field(description="next_cursor of the previous page.")] = None,
    ) -> Annotated[CallToolResult, task_queue.TaskPage]:
        """List tasks as compact rows in claim order (priority, then age), one page at a time."""
        session, _ = acting(ctx)
        page = task_queue.list_tasks(
            session.queue,
            states=state,
            parent=parent,
            assignee=assignee,
            label=label,
            skill=skill,
            text=text,
            limit=limit,
            cursor=cursor,
        )
        return as_result(page)

    @mcp.tool(annotations=_READ)
    @tool_errors
    async def get_task(task_id: TaskId, ctx: Context) -> Annotated[CallToolResult, TaskDetail]:
        """One task in full: description, what it waits on, what waits on it, subtasks, recent events."""
        session, _ = acting(ctx)
        return as_result(task_queue.get_task(session.queue, task_id))

    @mcp.tool(annotations=_WRITE)
    @tool_errors
    async def claim_task(
        ctx: Context,
        task_id: Annotated[
            str | None, Field(max_length=200, description="Omit to get the next best task for you.")
        ] = None,
        strategy: Annotated[
            Literal["first-fit", "best-fit", "round-robin", "load-balanced", "graph-prioritized"] | None,
            Field(description="How to pick when task_id is omitted; default: the swarm's ([swarm] strategy)."),
        ] = None,
        batch: Annotated[
            int,
            Field(
                ge=1,
                le=MAX_BATCH,
                description="Also claim up to batch-1 related ready tasks (same parent "
                "or overlapping planned files), atomically; listed in `also_claimed`.",
            ),
        ] = 1,
    ) -> Annotated[CallToolResult, ClaimResult]:
        """Atomically claim a ready task (a lease renewed by each of your calls). Without task_id, the swarm's
        strategy picks among the ready tasks whose skills you hold (default best-fit: best skill match, then
        priority and age); returns it — with `conflicts` on its planned files, your `unread_mail` and relevant
        `memories` — or id null and a reason."""
        session, actor = acting(ctx)
        task, reason, context = workloop.claim_for_agent(
            session.queue,
            session.reservations,
            session.mail,
            session.memory,
            actor,
            task_id,
            strategy=strategy,
            batch=batch,
        )
        if task is None:
            return as_result({"id": None, "reason": reason})
        result = compact(task)
        if context.also_claimed:
            result["also_claimed"] = [compact(t) for t in context.also_claimed]
        if context.conflicts:
            result["conflicts"] = [compact(c) for c in context.conflicts]
        if context.unread_mail:
            result["unread_mail"] = context.unread_mail
        if context.memories:
            result["memories"] = [compact(m) for m in context.memories]
        session.attention_seen = context.attention  # the mail notice needs no second read
        return as_result(result)

    @mcp.tool(annotations=_WRITE)
    @tool_errors
    async def update_task(
        task_id: TaskId,
        ctx: Context,
        status: Annotated[
            Literal["in_progress", "blocked", "open", "cancelled"] | None,
            Field(
                description="in_progress: you started; blocked: you cannot go on (note says why); "
                "open: unblock a blocked task; cancelled: no longer needed."
            ),
        ] = None,
        note: Annotated[str | None, Field(max_length=NOTE_MAX, description="Progress note or reason.")] = None,
        priority: Annotated[int | None, Field(ge=0, le=4)] = None,
    ) -> Annotated[CallToolResult, Task]:
        """Report progress on your claimed task (renews its lease), block or unblock it, cancel it, or
        change a task's priority."""
        session, actor = acting(ctx)
        change = task_queue.StatusChange(status) if status else None
        return as_result(
            task_queue.update_task(session.queue, actor, task_id, status=change, note=note, priority=priority)
        )

    @mcp.tool(annotations=_WRITE)
    @tool_errors
    async def complete_task(
        task_id: TaskId,
        ctx: Context,
        summary: Annotated[
            str, Field(max_length=TEXT_MAX, description="What you did and where (files, commits).")
        ] = "",
        files: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=1024)]] | None,
            Field(max_length=500, description="Files you actually touched (recorded; closes your intent)."),
        ] = None,
        learnings: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=20_000)]] | None,
            Field(max_length=20, description="Insights worth remembering for similar work, one each."),
        ] = None,
    ) -> Annotated[CallToolResult, Task]:
        """Mark your claimed task done with a summary. Tasks waiting on it become ready at once, your
        reservations for it are released, and the outcome and learnings are remembered."""
        session, actor = acting(ctx)
        task = workloop.complete_for_agent(
            session.queue, session.reservations, session.memory, actor, task_id, summary, files, learnings
        )
        return as_result(task)

    @mcp.tool(annotations=_WRITE)
    @tool_errors
    async def fail_task(
        task_id: TaskId,
        reason: Annotated[str, Field(min_length=1, max_length=NOTE_MAX, description="What went wrong.")],
        ctx: Context,
        mode: Annotated[
            Literal["retry", "give_up", "release"],
            Field(
                description="retry: count a failed attempt and requeue; give_up: mark failed; release: hand it "
                "back without counting an attempt."
            ),
        ] = "retry",
    ) -> Annotated[CallToolResult, Task]:
        """Give up your claim on a task: requeue it as a failed attempt, fail it for good, or release it."""
        session, actor = acting(ctx)
        mode_ = task_queue.FailMode(mode)
        return as_result(workloop.fail_for_agent(session.queue, session.memory, actor, task_id, reason, mode_))

    @mcp.tool(annotations=_WRITE)
    @tool_errors
    async def add_dependency(
        task_id: TaskId,
        depends_on: TaskId,
        ctx: Context,
        kind: Annotated[
            Literal["blocks", "related", "discovered-from"],
            Field(description="blocks: task_id waits until depends_on is done; others are soft links."),
        ] = "blocks",
    ) -> Annotated[CallToolResult, DependencyResult]:
        """Make task_id depend on depends_on. Refused, naming the cycle, if it would create a deadlock."""
        session, actor = acting(ctx)
        result = task_queue.add_dependency(session.queue, actor, task_id, depends_on, task_queue.DependencyKind(kind))
        return as_result(DependencyResult(**result))
