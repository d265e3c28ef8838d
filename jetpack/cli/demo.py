"""``jetpack demo``: a swarm of script workers on a sample plan, in a fresh git repository.

What ``./scripts/demo`` shows on a fresh machine: a temporary repository with Jetpack on the embedded
DataLayer (SQLite in ``.jetpack/``), the sample plan loaded into the queue, then ``jetpack start
--agents 4 --harness script`` with its live progress — each worker a real MCP agent that claims,
reserves its files, edits, commits and completes — and the commits they left behind.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import anyio
import click

from jetpack.actor import Actor
from jetpack.cli.app import CliApp
from jetpack.cli.plans import render_preview
from jetpack.cli.start import Progress, print_summary
from jetpack.config import DEFAULT_CONFIG, STATE_DIR
from jetpack.errors import InvalidInput

DEMO_AGENTS = 4
README = "# Notes\n\nA demo project: Jetpack's script workers build it from `plan.md`, one commit per task.\n"


def run_demo(directory: Path | None) -> None:
    from jetpack.harness.adapters import load_adapter
    from jetpack.plans import SAMPLE_PLAN, load_plan_file
    from jetpack.swarm.start import StartOptions, Swarm

    root = _fresh_directory(directory)
    click.secho(f"1. A fresh git repository with Jetpack on the embedded DataLayer: {root}", bold=True)
    _make_repository(root)
    app = CliApp(project=root)
    try:
        click.echo(f"   database: {app.settings.database}")
        click.secho(f"\n2. The sample plan, loaded into the queue (jetpack load {SAMPLE_PLAN.name})", bold=True)
        preview = load_plan_file(app.queue(), Actor("demo-planner"), SAMPLE_PLAN)
        render_preview(preview, id_prefix=app.settings.tasks.id_prefix)
        click.secho(f"\n3. A swarm: jetpack start --agents {DEMO_AGENTS} --harness script", bold=True)
        click.echo(
            "   Each worker is an MCP agent: it claims a task, reserves its files exclusively, appends a line\n"
            "   to each, commits exactly those files and completes the task; the next ones become ready.\n"
        )
        progress = Progress(sys.stdout)
        swarm = Swarm(
            app.settings,
            app.store,
            load_adapter(root, "script"),
            StartOptions(agents=DEMO_AGENTS),
            on_event=progress.event,
            on_tick=progress.tick,
        )
        swarm.prepare_workers()
        summary = anyio.run(swarm.run)
        progress.finish()
        print_summary(summary)
    finally:
        app.close()
    click.secho("\n4. The repository now: one commit per task, by the worker that did it", bold=True)
    log = _git(root, "log", "--reverse", "--format=%h  %<(9)%an %s").splitlines()
    click.echo("\n".join(f"   {line}" for line in log))
    click.echo(
        f"\nExplore:  cd {root} && jetpack status   |   jetpack task list --all   |   git log --stat\n"
        "Real agents: jetpack start --agents 3 --harness claude   (or codex, gemini; see docs/swarm.md)"
    )


def _fresh_directory(directory: Path | None) -> Path:
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="jetpack-demo-")).resolve()
    root = directory.expanduser().resolve()
    if root.exists() and any(root.iterdir()):
        raise InvalidInput(f"{root} is not empty; give the demo a new or empty directory (or none: a temporary one)")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _make_repository(root: Path) -> None:
    state = root / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    # The script workers write no prose worth recalling by meaning: the hash embedder spares every
    # agent's server loading the MiniLM model (the default, onnx, for real agents).
    (state / "config.toml").write_text(DEFAULT_CONFIG.replace('embedder = "onnx"', 'embedder = "hash"'))
    (root / ".gitignore").write_text(f"{STATE_DIR}/\n")  # the queue, logs and worktrees are not the project
    (root / "README.md").write_text(README)
    _git(root, "init", "--quiet")
    _git(root, "add", ".gitignore", "README.md")
    identity = ["-c", "user.name=Jetpack demo", "-c", "user.email=demo@jetpack.invalid"]
    _git(root, *identity, "commit", "--quiet", "-m", "Start the notes project")


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise InvalidInput(f"git {' '.join(args)} failed in {root}: {done.stderr.strip()} (the demo needs git)")
    return done.stdout
