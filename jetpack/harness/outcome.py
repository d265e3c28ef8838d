"""How an agent run ended, decided from data — the DataLayer and git — never from what the agent printed.

* The task is done: the agent completed it through MCP.
* The agent exited 0 and git shows changes for the task (its commits naming the task, or files it
  changed): the harness completes the task for it — after the project's quality gates, when some
  are configured (a regression fails the attempt with the details instead).
* The agent handed the task back itself (fail_task, blocked), or lost it: nothing more to do.
* Anything else — a non-zero exit, exit 0 with no changes, a timeout, a death by signal — is a
  failed attempt: the task goes back to the queue (after its retry wait), or is failed once its
  attempts are used up. A stopping swarm hands it back untouched.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from jetpack import workloop
from jetpack.actor import Actor
from jetpack.config import STATE_DIR
from jetpack.errors import JetpackError
from jetpack.harness import gitwork
from jetpack.memory.context import MemoryContext
from jetpack.quality import QualityContext, gate_task
from jetpack.reservations.service import ReservationContext, release_files
from jetpack.tasks import FailMode, QueueContext, Task, TaskState, fail_task
from jetpack.tasks.model import NOTE_MAX

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    COMPLETED = "completed"  # the agent completed the task through MCP
    COMPLETED_FROM_DIFF = "completed_from_diff"  # exit 0 with changes in git: the harness completed it
    HANDED_BACK = "handed_back"  # the agent failed, released or blocked it itself (or lost the lease)
    FAILED = "failed"  # exited without finishing it (or its changes failed the quality gates)
    TIMED_OUT = "timed_out"  # ran past its time budget: the process group was killed
    DIED = "died"  # killed by a signal Jetpack did not send
    STOPPED = "stopped"  # the swarm is stopping: the task went back untouched

    @property
    def succeeded(self) -> bool:
        return self in (Outcome.COMPLETED, Outcome.COMPLETED_FROM_DIFF)


@dataclass(frozen=True)
class Worker:
    """One member of the swarm: an agent identity, its skills, where it works."""

    name: str
    skills: tuple[str, ...]
    workdir: Path
    branch: str | None = None  # with --worktrees

    def actor(self) -> Actor:
        return Actor(self.name, frozenset(self.skills))


@dataclass(frozen=True)
class Services:
    queue: QueueContext
    reservations: ReservationContext
    memory: MemoryContext
    project: Path
    quality: QualityContext | None = None  # set when quality gates are configured: the harness completes
    server_env: Mapping[str, str] = field(default_factory=dict)  # extra env for the agents' Jetpack servers

    @property
    def logs_dir(self) -> Path:
        return self.project / STATE_DIR / "logs"

    @property
    def gated(self) -> bool:
        return self.quality is not None


@dataclass
class RunReport:
    task_id: str
    agent: str
    outcome: Outcome
    exit_code: int | None
    seconds: float = 0.0
    log_path: Path = field(default_factory=Path)
    session_id: str = ""
    files: list[str] = field(default_factory=list)
    note: str = ""


def settle(
    services: Services,
    worker: Worker,
    task: Task,
    exit_code: int | None,
    ended_by: str | None,
    before: gitwork.TreeSnapshot | None,
) -> RunReport:
    """Decide the outcome of a finished run and leave the task in the matching state."""
    report = RunReport(task.id, worker.name, Outcome.FAILED, exit_code)
    row = services.queue.require_row(task.id)
    state, assignee = row["state"], row["assignee"]
    if state == TaskState.DONE:
        report.outcome, report.note = Outcome.COMPLETED, "completed through MCP"
        return report
    if state not in (TaskState.CLAIMED, TaskState.IN_PROGRESS) or assignee != worker.name:
        report.outcome, report.note = Outcome.HANDED_BACK, f"the task is {state} ({assignee or 'unassigned'})"
        release_worker_reservations(services, worker)
        return report
    if ended_by == "stop":
        hand_back(services, worker, task.id, "the swarm stopped before the task was finished", FailMode.RELEASE)
        report.outcome, report.note = Outcome.STOPPED, "handed back untouched"
        return report
    changes = _changes(worker, before, task.id) if exit_code == 0 and ended_by is None else []
    if changes:
        return _complete_for_agent(services, worker, report, changes, row["progress_note"])
    if ended_by == "timeout":
        report.outcome, reason = Outcome.TIMED_OUT, "timed out: the harness killed the agent's process group"
    elif exit_code is not None and exit_code < 0:
        report.outcome, reason = Outcome.DIED, f"the agent process was killed by {_signal_name(-exit_code)}"
    elif exit_code == 0:
        reason = "the agent exited 0 without completing the task or changing any file"
    else:
        reason = f"the agent exited with status {exit_code} without completing the task"
    hand_back(
        services, worker, task.id, f"{reason}; its output is in {services.logs_dir / worker.name}", FailMode.RETRY
    )
    report.note = reason
    return report


def _complete_for_agent(
    services: Services, worker: Worker, report: RunReport, changes: list[str], note: str | None
) -> RunReport:
    """The agent left changes and exited 0: gate them (if configured), then complete the task for it."""
    report.files = changes
    if services.quality is not None:
        gate = gate_task(services.quality, services.queue, worker.actor(), report.task_id, cwd=worker.workdir)
        if not gate.passed:
            release_worker_reservations(services, worker)
            report.outcome, report.note = Outcome.FAILED, f"quality gates: {gate.reason}"
            return report
    summary = note or f"{worker.name} exited 0 having changed {', '.join(changes[:20])}"
    try:
        workloop.complete_for_agent(
            services.queue, services.reservations, services.memory, worker.actor(), report.task_id, summary, changes
        )
    except JetpackError as error:
        reason = f"the agent's changes could not be completed: {error}"
        hand_back(services, worker, report.task_id, reason, FailMode.RETRY)
        report.note = reason
        return report
    report.outcome, report.note = Outcome.COMPLETED_FROM_DIFF, "completed by the harness from the changes in git"
    return report


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _changes(worker: Worker, before: gitwork.TreeSnapshot | None, task_id: str) -> list[str]:
    if before is None:
        return []
    try:
        return gitwork.changes_since(worker.workdir, before, task_id)
    except gitwork.GitError:
        log.warning("could not read the changes of %s in %s", task_id, worker.workdir, exc_info=True)
        return []


def hand_back(services: Services, worker: Worker, task_id: str, reason: str, mode: FailMode) -> Task | None:
    """Put the worker's task back in the queue (a failed attempt, or untouched) and drop its reservations."""
    task = None
    try:
        task = fail_task(services.queue, worker.actor(), task_id, reason[:NOTE_MAX], mode)
    except JetpackError as error:
        log.info("%s was not handed back by %s: %s", task_id, worker.name, error)
    release_worker_reservations(services, worker)
    return task


def release_worker_reservations(services: Services, worker: Worker) -> None:
    """A worker runs one task at a time, so every reservation it still holds belonged to that task."""
    try:
        release_files(services.reservations, worker.name, everything=True)
    except JetpackError:
        log.warning("could not release the reservations of %s", worker.name, exc_info=True)
