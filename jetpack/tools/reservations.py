"""MCP tools of advisory file reservations and intents."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from jetpack.mail import intents
from jetpack.reservations import service as reservations
from jetpack.reservations.service import MAX_PATHS, ConflictView, ReservationView, ReserveMode, ReserveResult
from jetpack.tools.common import acting, as_result, tool_errors

Paths = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=1024)]],
    Field(
        min_length=1,
        max_length=MAX_PATHS,
        description="Repo-relative paths or globs: '*' within one directory, '**' any depth (e.g. 'src/api/**').",
    ),
]
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)


class ReservationList(BaseModel):
    reservations: list[ReservationView]


class ConflictList(BaseModel):
    conflicts: list[ConflictView]


def register_reservation_tools(mcp: MCPServer) -> None:
    @mcp.tool(annotations=_WRITE)
    @tool_errors
    async def reserve_files(
        paths: Paths,
        ctx: Context,
        mode: Annotated[
            Literal["advisory", "exclusive"],
            Field(
                description="advisory: always recorded, conflicts reported; exclusive: recorded only if nothing "
                "conflicts, and other agents' commits touching it are blocked by the pre-commit hook."
            ),
        ] = "advisory",
        shared: Annotated[bool, Field(description="Observe-only: never conflicts with other shared ones.")] = False,
        ttl_seconds: Annotated[int | None, Field(ge=60, description="Default 3600.")] = None,
        reason: Annotated[str | None, Field(max_length=500)] = None,
        task_id: Annotated[str | None, Field(max_length=200)] = None,
    ) -> Annotated[CallToolResult, ReserveResult]:
        """Tell others which files you are about to touch. Conflicts (holder, pattern, expiry, task) come back
        as data; `recorded` says whether your reservation was made."""
        session, actor = acting(ctx)
        result = reservations.reserve_files(
            session.reservations,
            actor.name,
            paths,
            mode=ReserveMode(mode),
            shared=shared,
            ttl_seconds=ttl_seconds,
            reason=reason,
            task_id=task_id,
        )
        return as_result(result)

    @mcp.tool(annotations=_WRITE)
    @tool_errors
    async def renew_files(
        ctx: Context,
        ids: Annotated[list[int] | None, Field(description="Reservation ids to renew.")] = None,
        paths: Annotated[list[str] | None, Field(description="Patterns you reserved, to renew.")] = None,
        all: Annotated[bool, Field(description="Renew all your active reservations.")] = False,
        extend_seconds: Annotated[int | None, Field(ge=60)] = None,
    ) -> Annotated[CallToolResult, ReservationList]:
        """Extend your reservations (from the later of now and their current expiry)."""
        session, actor = acting(ctx)
        renewed = reservations.renew_files(
            session.reservations, actor.name, ids=ids, paths=paths, everything=all, extend_seconds=extend_seconds
        )
        return as_result(ReservationList(reservations=renewed))

    @mcp.tool(annotations=_WRITE)
    @tool_errors
    async def release_files(
        ctx: Context,
        ids: Annotated[list[int] | None, Field(description="Reservation ids to release.")] = None,
        paths: Annotated[list[str] | None, Field(description="Patterns you reserved, to release.")] = None,
        all: Annotated[bool, Field(description="Release all your active reservations.")] = False,
    ) -> Annotated[CallToolResult, ReservationList]:
        """Release your reservations by id, by pattern, or all. Safe to repeat."""
        session, actor = acting(ctx)
        released = reservations.release_files(session.reservations, actor.name, ids=ids, paths=paths, everything=all)
        return as_result(ReservationList(reservations=released))

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    @tool_errors
    async def check_files(paths: Paths, ctx: Context) -> Annotated[CallToolResult, ConflictList]:
        """Read-only: who else holds reservations overlapping these paths right now."""
        session, actor = acting(ctx)
        return as_result(ConflictList(conflicts=reservations.check_files(session.reservations, actor.name, paths)))

    @mcp.tool(annotations=_WRITE)
    @tool_errors
    async def announce_intent(
        task_id: Annotated[str, Field(min_length=1, max_length=200)],
        files: Paths,
        summary: Annotated[str, Field(min_length=1, max_length=300, description="What you are going to change.")],
        ctx: Context,
        ttl_seconds: Annotated[int | None, Field(ge=60)] = None,
    ) -> Annotated[CallToolResult, intents.IntentResult]:
        """Before editing: reserve the files for your task and tell the agents whose reservations or claimed
        tasks overlap them (only those). complete_task closes the intent."""
        session, actor = acting(ctx)
        result = intents.announce_intent(
            session.queue, session.reservations, session.mail, actor, task_id, files, summary, ttl_seconds
        )
        return as_result(result)
