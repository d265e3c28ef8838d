"""``jetpack memory …``: the memory layers from the command line."""

from __future__ import annotations

import sys

import click

from jetpack.cli.app import JetpackGroup, app_of, as_option, cli_actor, json_option
from jetpack.cli.output import emit_json, table
from jetpack.memory.model import Layer, NewMemory


@click.group(cls=JetpackGroup)
def memory() -> None:
    """Remember and recall what the swarm learned: episodic, working and procedural memory.

    \b
    Example:
      jetpack memory add "Passwords are hashed with bcrypt, cost 12" --tag auth
      jetpack memory search "how are user passwords stored?"
    """


@memory.command("add")
@click.argument("content")
@click.option("--layer", type=click.Choice([layer.value for layer in Layer]), default="episodic", show_default=True)
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--task", "task_id", help="The task it is about.")
@click.option("--importance", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--ttl", "ttl_seconds", type=click.IntRange(1), help="Working memory: seconds to keep it.")
@as_option
@json_option
@click.pass_context
def add_command(
    ctx: click.Context,
    content: str,
    layer: str,
    tags: tuple[str, ...],
    task_id: str | None,
    importance: float,
    ttl_seconds: int | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Store a memory ('-' reads the content from stdin). A near-duplicate is merged instead.

    \b
    Example:
      jetpack memory add "CI needs DATABASE_URL set" --layer working --ttl 3600
    """
    from jetpack.memory.writing import remember

    app = app_of(ctx)
    new = NewMemory(
        content=sys.stdin.read() if content == "-" else content,
        layer=Layer(layer),
        tags=list(tags),
        task_id=task_id,
        importance=importance,
        ttl_seconds=ttl_seconds,
        source="human",
    )
    result = remember(app.memory(), cli_actor(app, as_name).name, new)
    if as_json:
        emit_json(result)
        return
    click.echo(f"{'merged into' if result.merged else 'stored as'} memory {result.id} ({result.layer.value})")


@memory.command("search")
@click.argument("query")
@click.option("--layer", "layers", multiple=True, type=click.Choice([layer.value for layer in Layer]))
@click.option("-k", "k", type=click.IntRange(1, 50), default=5, show_default=True)
@click.option("--task", "task_id")
@click.option("--tag", "tags", multiple=True)
@click.option("--min-score", type=click.FloatRange(0, 2), default=0.0)
@json_option
@click.pass_context
def search_command(
    ctx: click.Context,
    query: str,
    layers: tuple[str, ...],
    k: int,
    task_id: str | None,
    tags: tuple[str, ...],
    min_score: float,
    as_json: bool,
) -> None:
    """Recall the memories most relevant to QUERY (by meaning; exact words help).

    \b
    Example:
      jetpack memory search "flaky integration tests" --layer procedural -k 3
    """
    from jetpack.memory.recall import recall

    hits = recall(
        app_of(ctx).memory(),
        query,
        layers=[Layer(layer) for layer in layers] or None,
        k=k,
        task_id=task_id,
        tags=list(tags) or None,
        min_score=min_score,
    )
    if as_json:
        emit_json({"memories": [h.model_dump(mode="json", exclude_none=True) for h in hits]})
        return
    if not hits:
        click.echo("nothing relevant remembered")
        return
    table(["id", "score", "layer", "memory"], [(h.id, f"{h.score:.3f}", h.layer.value, h.snippet) for h in hits])


@memory.command("list")
@click.option("--layer", type=click.Choice([layer.value for layer in Layer]))
@click.option("--task", "task_id")
@click.option("--tag")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--before", "before_id", type=int, help="Page: ids below this one.")
@json_option
@click.pass_context
def list_command(
    ctx: click.Context,
    layer: str | None,
    task_id: str | None,
    tag: str | None,
    limit: int,
    before_id: int | None,
    as_json: bool,
) -> None:
    """List memories, newest first.

    \b
    Example:
      jetpack memory list --layer procedural --json
    """
    from jetpack.memory.queries import list_memories

    rows = list_memories(
        app_of(ctx).memory(),
        layer=Layer(layer) if layer else None,
        task_id=task_id,
        tag=tag,
        limit=limit,
        before_id=before_id,
    )
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no memories")
        return
    table(
        ["id", "layer", "importance", "uses", "memory"],
        [(m.id, m.layer.value, f"{m.importance:.2f}", m.access_count, m.content[:80]) for m in rows],
    )


@memory.command("show")
@click.argument("memory_id", type=int)
@json_option
@click.pass_context
def show_command(ctx: click.Context, memory_id: int, as_json: bool) -> None:
    """Show one memory whole, with its evidence if it was learned.

    \b
    Example:
      jetpack memory show 42
    """
    from jetpack.memory.queries import get_memory

    m = get_memory(app_of(ctx).memory(), memory_id)
    if as_json:
        emit_json(m)
        return
    click.echo(
        f"memory {m.id} ({m.layer.value}), importance {m.importance:.2f}"
        + (f", confidence {m.confidence:.2f}" if m.confidence is not None else "")
    )
    for label, value in (
        ("tags", ", ".join(m.tags)),
        ("task", m.task_id),
        ("agent", m.agent),
        ("expires", m.expires_at),
        ("evidence", ", ".join(map(str, m.evidence))),
    ):
        if value:
            click.echo(f"  {label}: {value}")
    click.echo("")
    click.echo(m.content)


@memory.command("forget")
@click.argument("memory_ids", nargs=-1, type=int, required=True)
@json_option
@click.pass_context
def forget_command(ctx: click.Context, memory_ids: tuple[int, ...], as_json: bool) -> None:
    """Delete memories by id.

    \b
    Example:
      jetpack memory forget 12 13
    """
    from jetpack.memory.writing import forget

    gone = forget(app_of(ctx).memory(), list(memory_ids))
    if as_json:
        emit_json({"forgotten": gone})
        return
    click.echo(
        f"forgot {len(gone)} memor{'y' if len(gone) == 1 else 'ies'}"
        + (f"; unknown: {sorted(set(memory_ids) - set(gone))}" if len(gone) < len(set(memory_ids)) else "")
    )


@memory.command("reindex")
@click.pass_context
def reindex_command(ctx: click.Context) -> None:
    """Re-embed every memory with the configured model (after changing memory.embedder).

    \b
    Example:
      JETPACK_EMBEDDER=onnx jetpack memory reindex
    """
    from jetpack.memory.writing import reindex

    context = app_of(ctx).memory()
    total = int(context.store.query("SELECT count(*) AS n FROM memories")[0]["n"])
    with click.progressbar(length=total, label=f"re-embedding with {context.model_record()}", file=sys.stderr) as bar:
        done = reindex(context, progress=lambda count, _total: bar.update(count - bar.pos))
    click.echo(f"re-embedded {done} memories with {context.model_record()}")


@memory.command("stats")
@json_option
@click.pass_context
def stats_command(ctx: click.Context, as_json: bool) -> None:
    """Counts per layer, the model that made the vectors, the indexes in use.

    \b
    Example:
      jetpack memory stats --json
    """
    from jetpack.memory.queries import memory_stats

    stats = memory_stats(app_of(ctx).memory())
    if as_json:
        emit_json(stats)
        return
    click.echo(f"memories: {stats.total} ({', '.join(f'{k} {v}' for k, v in stats.by_layer.items())})")
    click.echo(f"vectors made by: {stats.model or '(none yet)'}; configured: {stats.embedder}")
    click.echo(f"vector index: {stats.vector_index}; full-text: {'yes' if stats.full_text else 'no'}")
    if stats.expired_pending_sweep:
        click.echo(f"expired working memories awaiting the sweep: {stats.expired_pending_sweep}")
