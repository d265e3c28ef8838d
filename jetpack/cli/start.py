"""``jetpack start``: a swarm of agents on this project's queue, with live progress and a summary."""

from __future__ import annotations

import shutil
import sys
from typing import TYPE_CHECKING, TextIO

import click

from jetpack.cli.app import app_of, json_option
from jetpack.cli.output import emit_json, table

if TYPE_CHECKING:
    from jetpack.swarm.progress import SwarmEvent, SwarmSnapshot, SwarmSummary

STATE_ORDER = ("done", "ready", "claimed", "in_progress", "open", "blocked", "failed", "cancelled")
EXIT_TASKS_FAILED = 1
EXIT_INTERRUPTED = 130


@click.command("start")
@click.option("--agents", "-a", type=click.IntRange(1, 64), default=4, show_default=True, help="Workers to run.")
@click.option(
    "--harness",
    default="script",
    show_default=True,
    help="claude, codex, gemini, script (built-in, for demos), custom, or an adapter in .jetpack/harness.toml.",
)
@click.option("--command", help="With --harness custom: the command line, e.g. 'mybot --prompt-file {prompt_file}'.")
@click.option(
    "--strategy",
    help="first-fit, best-fit, round-robin, load-balanced or graph-prioritized (default: the project's).",
)
@click.option("--max-runtime", metavar="DURATION", help="Stop after this long (90s, 30m, 2h).")
@click.option(
    "--idle-timeout",
    metavar="DURATION",
    default="5m",
    show_default=True,
    help="Stop when no worker had anything to do for this long.",
)
@click.option(
    "--task-timeout",
    metavar="DURATION",
    help="Kill an agent run after this long (default: twice the task's time budget).",
)
@click.option("--worktrees", is_flag=True, help="Give each worker its own git worktree and branch (jetpack/AGENT).")
@click.option("--skills", help="Skills of every worker (default: all the skills the queued tasks require).")
@click.option("--name-prefix", help="Worker names are PREFIX-1 … PREFIX-N (default: the harness name).")
@json_option
@click.pass_context
def start(
    ctx: click.Context,
    agents: int,
    harness: str,
    command: str | None,
    strategy: str | None,
    max_runtime: str | None,
    idle_timeout: str,
    task_timeout: str | None,
    worktrees: bool,
    skills: str | None,
    name_prefix: str | None,
    as_json: bool,
) -> None:
    """Run a swarm of N agents on the queue until it is drained, idle or out of time.

    Each worker is an agent identity that claims a task, briefs its agent (task, what its
    dependencies produced, reservation conflicts, memories), runs it in its own process group and
    checks the result in the queue and in git. Dead agents are respawned and their tasks recovered;
    Ctrl-C releases every lease before exiting. Logs: .jetpack/logs/AGENT/TASK.log.

    \b
    Examples:
      jetpack start --agents 4 --harness script
      jetpack start -a 3 --harness claude --strategy graph-prioritized --max-runtime 2h
      jetpack start --harness custom --command 'mybot --task {task_id} --prompt-file {prompt_file}'
    """
    import anyio

    from jetpack.agents import parse_skills
    from jetpack.harness.adapters import load_adapter
    from jetpack.swarm.progress import StopReason, parse_duration
    from jetpack.swarm.start import StartOptions, Swarm

    app = app_of(ctx)
    options = StartOptions(
        agents=agents,
        strategy=strategy,
        max_runtime=parse_duration(max_runtime) if max_runtime else None,
        idle_timeout=parse_duration(idle_timeout),
        task_timeout=parse_duration(task_timeout) if task_timeout else None,
        worktrees=worktrees,
        skills=tuple(parse_skills(skills)) if skills is not None else None,
        name_prefix=name_prefix,
    )
    adapter = load_adapter(app.settings.project_dir, harness, command)
    server_env = {"JETPACK_DB": str(app.db.resolve())} if app.db is not None else {}
    progress = None if as_json else Progress(sys.stdout)
    swarm = Swarm(
        app.settings,
        app.store,
        adapter,
        options,
        on_event=progress.event if progress else None,
        on_tick=progress.tick if progress else None,
        server_env=server_env,
    )
    workers = swarm.prepare_workers()
    if progress:
        names = ", ".join(w.worker.name for w in workers)
        click.echo(
            f"jetpack start: {len(workers)} {adapter.name} worker(s) ({names}), strategy {swarm.strategy.value}, "
            f"on {app.settings.database}"
        )
    summary = anyio.run(swarm.run)
    if progress:
        progress.finish()
    if as_json:
        emit_json(summary)
    else:
        print_summary(summary)
    if summary.reason is StopReason.INTERRUPTED:
        ctx.exit(EXIT_INTERRUPTED)
    if summary.tasks.get("failed"):
        ctx.exit(EXIT_TASKS_FAILED)


class Progress:
    """Live progress: on a terminal, a block (counts, throughput, one line per worker) redrawn in place
    with the events scrolling above it; otherwise plain lines — the events and a status line whenever
    the counts change."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()
        self.drawn = 0
        self.last_key: tuple[object, ...] = ()
        self.last: SwarmSnapshot | None = None

    def event(self, event: SwarmEvent) -> None:
        clock = _clock(self.last.elapsed_seconds if self.last else 0.0)
        task = f" {event.task_id}" if event.task_id else ""
        self._print(f"  {clock} {event.agent:<12} {event.kind:<11}{task}  {event.text}")

    def tick(self, snapshot: SwarmSnapshot) -> None:
        self.last = snapshot
        if self.live:
            self._clear()
            self._draw(snapshot)
            return
        key = (sorted(snapshot.tasks.items()), [w.task_id for w in snapshot.workers])
        if key != self.last_key:  # plain output: a line when something changed, not every tick
            self._print(status_line(snapshot))
            self.last_key = key

    def finish(self) -> None:
        if self.live:
            self._clear()
        if self.last is not None:
            self._print(status_line(self.last))

    def _print(self, line: str) -> None:
        if self.live:
            self._clear()
        self.out.write(line + "\n")
        if self.live and self.last is not None:
            self._draw(self.last)
        self.out.flush()

    def _draw(self, snapshot: SwarmSnapshot) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        lines = [status_line(snapshot)]
        for worker in snapshot.workers:
            doing = f"{worker.task_id} {worker.task_title} ({worker.seconds:.0f}s)" if worker.task_id else "idle"
            extra = f", {worker.respawns} respawn(s)" if worker.respawns else ""
            lines.append(f"    {worker.name:<12} {worker.completed:>3} done{extra}  {doing}")
        for line in lines:
            self.out.write(line[:width] + "\n")
        self.drawn = len(lines)
        self.out.flush()

    def _clear(self) -> None:
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0


def status_line(snapshot: SwarmSnapshot) -> str:
    tasks = snapshot.tasks
    total = sum(tasks.values())
    parts = [f"done {tasks.get('done', 0)}/{total}"]
    parts += [f"{state.replace('_', ' ')} {tasks[state]}" for state in STATE_ORDER[1:] if tasks.get(state)]
    working = sum(1 for w in snapshot.workers if w.task_id)
    return (
        f"[{_clock(snapshot.elapsed_seconds)}] {' · '.join(parts)} | agents {working}/{len(snapshot.workers)} working"
        f" | {snapshot.completed} completed, {snapshot.per_minute:.1f}/min"
    )


def print_summary(summary: SwarmSummary) -> None:
    click.echo(
        f"\nSwarm stopped ({summary.reason.value}) after {summary.elapsed_seconds:.1f}s: "
        f"{summary.completed} task(s) completed, {summary.failed_attempts} failed attempt(s), "
        f"{summary.respawns} respawn(s), {summary.per_minute:.1f} tasks/min"
    )
    counts = ", ".join(f"{s.replace('_', ' ')} {summary.tasks[s]}" for s in STATE_ORDER if summary.tasks.get(s))
    click.echo(f"queue: {counts or 'empty'}")
    rows = [(w.name, w.completed, w.failed, w.respawns, w.branch or "") for w in summary.workers]
    table(["agent", "completed", "failed", "respawns", "branch"], rows)
    if summary.unfinished:
        click.echo("unfinished:")
        for task in summary.unfinished:
            why = f" ({task.why})" if task.why else ""
            click.echo(f"  {task.id}  {task.state:<11} {task.title}{why}")
    click.echo(f"logs: {summary.logs}/AGENT/TASK.log")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"
