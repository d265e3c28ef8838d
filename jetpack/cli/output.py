"""Rendering for the CLI: aligned tables for people, JSON (the same shapes as the MCP tools) for programs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
from pydantic import BaseModel

from jetpack.tasks.model import TaskSummary, compact


def emit_json(payload: BaseModel | dict[str, Any] | list[Any]) -> None:
    if isinstance(payload, BaseModel):
        data: Any = compact(payload)
    elif isinstance(payload, list):
        data = [compact(p) if isinstance(p, BaseModel) else p for p in payload]
    else:
        data = payload
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def task_table(summaries: Sequence[TaskSummary], *, empty: str) -> None:
    if not summaries:
        click.echo(empty)
        return
    table(
        ["id", "p", "state", "assignee", "title"],
        [(t.id, t.priority, t.state.value, t.assignee or "", _clip(t.title, 60)) for t in summaries],
    )


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
