"""Shared CLI plumbing: the project's settings and store, the acting person, error handling."""

from __future__ import annotations

import getpass
import importlib
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from jetpack.actor import Actor
from jetpack.agents import AgentRegistry, check_agent_name, parse_skills
from jetpack.config import Settings, load_settings
from jetpack.errors import JetpackError
from jetpack.mail.model import MailContext
from jetpack.reservations.service import ReservationContext
from jetpack.store import DataLayer, StoreError, open_store
from jetpack.tasks import QueueContext, renew_leases

if TYPE_CHECKING:
    from jetpack.memory.context import MemoryContext


@dataclass
class CliApp:
    project: Path | None = None
    db: Path | None = None
    _settings: Settings | None = None
    _store: DataLayer | None = field(default=None, repr=False)
    # Done only once the command has succeeded, so a refused command changes nothing.
    after_success: list[Callable[[], None]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            environ = dict(os.environ)
            if self.project is not None:
                environ["JETPACK_PROJECT_DIR"] = str(self.project)
            if self.db is not None:
                environ["JETPACK_DB"] = str(self.db)
            self._settings = load_settings(environ)
        return self._settings

    @property
    def store(self) -> DataLayer:
        if self._store is None:
            self._store = open_store(self.settings.db_location, auth_token=self.settings.db_auth_token)
        return self._store

    def queue(self) -> QueueContext:
        return QueueContext(store=self.store, settings=self.settings.tasks, swarm=self.settings.swarm)

    def mail(self) -> MailContext:
        return MailContext.for_settings(self.settings, self.store)

    def reservations(self) -> ReservationContext:
        return ReservationContext.for_settings(self.settings, self.store)

    def memory(self) -> MemoryContext:
        """Cheap to make: the embedding model loads on first use.

        Imported here so commands that never touch memory (the pre-commit
        hook above all) do not pay for numpy.
        """
        from jetpack.memory.context import MemoryContext

        return MemoryContext.for_settings(self.settings, self.store)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def cli_actor(app: CliApp, name: str | None, skills: str | None = None, *, force: bool = False) -> Actor:
    """The person (or script) at the CLI. A successful command renews the leases this name holds
    and makes the name known, so mail can reach it."""
    chosen = name or os.environ.get("JETPACK_AGENT") or f"cli-{getpass.getuser()}"
    actor = Actor(
        check_agent_name(chosen),
        frozenset(parse_skills(skills if skills is not None else os.environ.get("JETPACK_SKILLS"))),
        operator=force,
    )

    def acted() -> None:
        renew_leases(app.queue(), actor)
        AgentRegistry(app.store, app.settings.agents).remember(actor.name, sorted(actor.skills))

    app.after_success.append(acted)
    return actor


as_option = click.option(
    "--as", "as_name", metavar="NAME", help="Act as this agent (default: $JETPACK_AGENT or cli-<user>)."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


class JetpackGroup(click.Group):
    """Turns caller-caused errors into one clear line on stderr and exit status 1.

    ``lazy`` names subcommands by ``"module:attribute"``: a module is imported when its command
    runs (or when ``--help`` lists it), so ``jetpack serve``, which agents start often, does not
    pay for importing every other command.
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module_name, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module_name), attribute)
            if not isinstance(command, click.Command):  # pragma: no cover - a wiring mistake
                raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
            app = ctx.find_object(CliApp)
            while app is not None and app.after_success:
                app.after_success.pop(0)()
            return result
        except JetpackError as error:
            click.echo(f"error: {in_cli_terms(str(error))}", err=True)
            sys.exit(1)
        except StoreError as error:
            click.echo(f"error: storage failure: {error}", err=True)
            sys.exit(2)


_TOOL_TO_COMMAND = [
    (re.compile(r"claim_task\(task_id='([^']+)'\)"), r"`jetpack task claim \1`"),
    (re.compile(r"(call )?claim_task without task_id"), "run `jetpack task claim`"),
    (re.compile(r"call claim_task\b"), "run `jetpack task claim`"),
    (re.compile(r"call list_tasks"), "run `jetpack task list`"),
    (re.compile(r"call register_agent with those skills"), "pass --skills"),
    (re.compile(r"create them with create_tasks|create some with create_tasks"), "add some with `jetpack task add`"),
]


def in_cli_terms(message: str) -> str:
    """Service errors name the MCP tools agents use; at the CLI, name the commands instead."""
    for pattern, replacement in _TOOL_TO_COMMAND:
        message = pattern.sub(replacement, message)
    return message


def app_of(ctx: click.Context) -> CliApp:
    app = ctx.find_object(CliApp)
    if app is None:  # pragma: no cover - wiring error
        raise click.UsageError("internal: CLI app missing")
    return app
