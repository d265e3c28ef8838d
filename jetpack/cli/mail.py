"""``jetpack mail …``: Agent Mail from the command line, as a person (sender kind "human")."""

from __future__ import annotations

import sys

import click

from jetpack import mail
from jetpack.cli.app import JetpackGroup, app_of, as_option, cli_actor, json_option
from jetpack.cli.output import emit_json, table


@click.group(cls=JetpackGroup)
def mail_group() -> None:
    """Send and read Agent Mail: messages between agents and people.

    \b
    Example:
      jetpack mail send --to blue-heron --subject "API changed" --body "see jp-a3f8"
      jetpack mail inbox --as blue-heron
    """


@mail_group.command("send")
@click.option("--to", "to", multiple=True, help="Recipient agent (repeatable); '*' for every live agent.")
@click.option("--topic", help="Also deliver to this topic's subscribers.")
@click.option("--subject", "-s", help="Subject (optional when replying).")
@click.option("--body", "-b", default="", help="Markdown body; '-' reads it from stdin.")
@click.option("--thread", "thread_id", help="Thread to post in (default: a new one, or the task's).")
@click.option("--reply-to", type=int, help="Message id this answers (inherits thread, importance, ack).")
@click.option("--importance", type=click.Choice([i.value for i in mail.Importance]))
@click.option("--ack", "ack_required", is_flag=True, default=None, help="Ask recipients to acknowledge.")
@click.option("--kind", default="note", show_default=True, help="note, question, handoff, status, …")
@click.option("--task", "task_id", help="The task this is about (its thread).")
@as_option
@json_option
@click.pass_context
def send_command(
    ctx: click.Context,
    to: tuple[str, ...],
    topic: str | None,
    subject: str | None,
    body: str,
    thread_id: str | None,
    reply_to: int | None,
    importance: str | None,
    ack_required: bool | None,
    kind: str,
    task_id: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Send a message as a person.

    \b
    Example:
      jetpack mail send --to '*' -s "Freeze: release at 17:00" --importance urgent --ack
    """
    app = app_of(ctx)
    message = mail.NewMessage(
        to=list(to),
        topic=topic,
        subject=subject,
        body=sys.stdin.read() if body == "-" else body,
        thread_id=thread_id,
        reply_to=reply_to,
        importance=mail.Importance(importance) if importance else None,
        ack_required=ack_required,
        kind=kind,
        task_id=task_id,
    )
    sender = mail.Sender(cli_actor(app, as_name).name, mail.SenderKind.HUMAN)
    sent = mail.send_mail(app.mail(), sender, message)
    if as_json:
        emit_json(sent)
        return
    click.echo(f"message {sent.id} in thread {sent.thread_id} to {', '.join(sent.recipients) or 'nobody'}")


@mail_group.command("inbox")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--bodies", is_flag=True, help="Show full bodies.")
@click.option("--unread", is_flag=True, help="All unread mail, newest first (does not move the cursor).")
@click.option("--urgent", is_flag=True, help="Only high and urgent mail (does not move the cursor).")
@as_option
@json_option
@click.pass_context
def inbox_command(
    ctx: click.Context, limit: int, bodies: bool, unread: bool, urgent: bool, as_name: str | None, as_json: bool
) -> None:
    """Mail that arrived since the last fetch (or, with --unread/--urgent, a view of unread mail).

    \b
    Example:
      jetpack mail inbox --as blue-heron --unread --bodies
    """
    app = app_of(ctx)
    page = mail.fetch_inbox(
        app.mail(),
        cli_actor(app, as_name).name,
        limit=limit,
        include_bodies=bodies,
        unread_only=unread,
        urgent_only=urgent,
    )
    if as_json:
        emit_json(page)
        return
    _print_messages(page.messages, bodies)
    click.echo(
        f"unread {page.unread}, urgent unread {page.urgent_unread}, awaiting ack {page.ack_pending}"
        + ("; more: run again" if page.more else "")
    )


@mail_group.command("read")
@click.argument("message_ids", nargs=-1, type=int, required=True)
@click.option("--ack", is_flag=True, help="Also acknowledge them.")
@as_option
@json_option
@click.pass_context
def read_command(
    ctx: click.Context, message_ids: tuple[int, ...], ack: bool, as_name: str | None, as_json: bool
) -> None:
    """Mark messages read (and acknowledged with --ack).

    \b
    Example:
      jetpack mail read 12 13 --ack
    """
    app = app_of(ctx)
    result = mail.mark_mail(app.mail(), cli_actor(app, as_name).name, list(message_ids), read=True, acknowledge=ack)
    if as_json:
        emit_json(result)
        return
    click.echo(
        f"marked read {result.marked_read}, acknowledged {result.acknowledged}"
        + (f"; not yours: {result.not_yours}" if result.not_yours else "")
    )


@mail_group.command("thread")
@click.argument("thread_id")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@json_option
@click.pass_context
def thread_command(ctx: click.Context, thread_id: str, limit: int, as_json: bool) -> None:
    """Show a conversation, oldest first (a task's thread id is the task id).

    \b
    Example:
      jetpack mail thread jp-a3f8
    """
    view = mail.get_thread(app_of(ctx).mail(), thread_id, limit=limit)
    if as_json:
        emit_json(view)
        return
    click.echo(f"thread {view.thread_id}: {', '.join(view.participants)}")
    _print_messages(view.messages, True)


@mail_group.command("search")
@click.argument("query")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@json_option
@click.pass_context
def search_command(ctx: click.Context, query: str, limit: int, as_json: bool) -> None:
    """Find messages containing all the words of QUERY (plain words; no search syntax).

    \b
    Example:
      jetpack mail search "migration failed"
    """
    hits = mail.search_mail(app_of(ctx).mail(), query, limit=limit)
    if as_json:
        emit_json({"hits": [h.model_dump(mode="json") for h in hits]})
        return
    if not hits:
        click.echo("no messages match")
        return
    table(
        ["id", "thread", "from", "subject", "snippet"],
        [(h.id, h.thread_id, h.sender, h.subject, h.snippet) for h in hits],
    )


def _print_messages(messages: list[mail.MessageView], bodies: bool) -> None:
    if not messages:
        click.echo("no messages")
        return
    for m in messages:
        flags = " ".join(
            f
            for f in (
                m.importance.value if m.importance != mail.Importance.NORMAL else "",
                "ack-required" if m.ack_required else "",
                "unread" if m.read is False else "",
            )
            if f
        )
        click.echo(
            f"#{m.id} [{m.thread_id}] {m.created_at:%Y-%m-%d %H:%M} {m.sender} → {', '.join(m.to) or m.topic or '-'}"
            f"  {m.subject}" + (f"  ({flags})" if flags else "")
        )
        text = m.body if bodies else m.snippet
        if text:
            click.echo("    " + text.replace("\n", "\n    "))
