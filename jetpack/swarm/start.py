"""``jetpack start``: run a swarm of agents on the queue until the work is done.

N workers, each an agent identity (``script-1``, ``claude-2``, …) with its skills and, with
``--worktrees``, a git worktree of its own. A worker loops: claim the next task for itself (the
strategy decides which), brief its adapter's agent on it, run the agent in its own process group,
settle the task from the DataLayer and git (:mod:`jetpack.harness.outcome`). Meanwhile the
supervisor heartbeats for the workers whose agents are running (an agent thinking for minutes makes
no tool call), recovers what dead or stalled agents left behind, and decides when to stop:

* ``drained`` — nothing is ready, held, or waiting for a retry, and no worker is busy (tasks that
  wait on failed or blocked ones need a person: the summary lists them);
* ``idle`` — no worker had anything to do for ``idle_timeout`` seconds (e.g. what is left needs
  skills no worker has, or other agents hold it);
* ``time`` — ``max_runtime`` passed; ``interrupted`` — SIGINT or SIGTERM.

On every stop the running agents are killed (process groups) and every lease and reservation the
workers still hold is released, untouched, before ``run`` returns.

A worker whose agent dies (killed, crashed) is respawned: its task goes back to the queue with the
attempt counted, and the worker's next agent process starts with a new session.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from jetpack import workloop
from jetpack.agents import AgentRegistry, SessionInfo
from jetpack.agents.health import LifecycleContext, heartbeat, task_budget_ms
from jetpack.config import Settings
from jetpack.errors import InvalidInput, JetpackError
from jetpack.harness import gitwork
from jetpack.harness.adapters import Adapter
from jetpack.harness.outcome import (
    Outcome,
    RunReport,
    Services,
    Worker,
    hand_back,
    release_worker_reservations,
)
from jetpack.harness.prompt import brief_for
from jetpack.harness.runner import RunControl, run_task
from jetpack.mail.model import MailContext
from jetpack.memory.context import MemoryContext
from jetpack.quality import QualityContext, ensure_baseline
from jetpack.reservations.service import ReservationContext
from jetpack.store import DataLayer
from jetpack.swarm.progress import (
    StopReason,
    StuckTask,
    SwarmEvent,
    SwarmSnapshot,
    SwarmSummary,
    WorkerView,
)
from jetpack.swarm.recovery import recover
from jetpack.swarm.strategies import PUSH_STRATEGIES, assign_ready_tasks, parse_strategy
from jetpack.tasks import (
    FailMode,
    QueueContext,
    Task,
    TaskState,
    count_by_state,
    list_tasks,
)

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30.0
TICK_SECONDS = 0.2
CLAIM_POLL_SECONDS = 0.5  # an idle worker asks again this often (and whenever another one finishes)
RECOVERY_SECONDS = 15.0
UNFINISHED = ("open", "ready", "claimed", "in_progress", "blocked")


@dataclass(frozen=True)
class StartOptions:
    agents: int = 4
    strategy: str | None = None
    max_runtime: float | None = None  # seconds
    idle_timeout: float = 300.0
    task_timeout: float | None = None  # default: the task's time budget (agents.budget_*)
    worktrees: bool = False
    skills: tuple[str, ...] | None = None  # default: every skill the unfinished tasks require
    name_prefix: str | None = None  # default: the adapter's name

    def check(self) -> None:
        if not 1 <= self.agents <= 64:
            raise InvalidInput(f"--agents must be between 1 and 64, not {self.agents}")
        if self.strategy is not None:
            parse_strategy(self.strategy)  # refuses an unknown name, listing the five
        for name, value in (("--max-runtime", self.max_runtime), ("--task-timeout", self.task_timeout)):
            if value is not None and value <= 0:
                raise InvalidInput(f"{name} must be a positive duration")
        if self.idle_timeout <= 0:
            raise InvalidInput("--idle-timeout must be a positive duration")


@dataclass
class WorkerStatus:
    worker: Worker
    control: RunControl = field(default_factory=RunControl)
    task: Task | None = None
    started_at: float | None = None
    session_id: str | None = None  # of the running agent
    next_session: str | None = None  # registered for the next run
    completed: int = 0
    failed: int = 0
    respawns: int = 0

    @property
    def busy(self) -> bool:
        return self.task is not None


class Swarm:
    def __init__(
        self,
        settings: Settings,
        store: DataLayer,
        adapter: Adapter,
        options: StartOptions,
        *,
        on_event: Callable[[SwarmEvent], None] | None = None,
        on_tick: Callable[[SwarmSnapshot], None] | None = None,
        server_env: dict[str, str] | None = None,
    ) -> None:
        options.check()
        self.settings = settings
        self.adapter = adapter
        self.options = options
        self.queue = QueueContext(store=store, settings=settings.tasks, swarm=settings.swarm)
        self.lifecycle = LifecycleContext(self.queue, settings.agents)
        self.strategy = parse_strategy(options.strategy, settings.swarm.strategy)
        self.reservations = ReservationContext.for_settings(settings, store)
        self.mail = MailContext.for_settings(settings, store)
        self.registry = AgentRegistry(store, settings.agents)
        env = dict(server_env or {})
        if options.strategy:
            env["JETPACK_STRATEGY"] = options.strategy
        quality = QualityContext.for_settings(settings, store)
        self.services = Services(
            queue=self.queue,
            reservations=self.reservations,
            memory=MemoryContext.for_settings(settings, store),
            project=settings.project_dir,
            quality=quality if quality.configured() else None,
            server_env=env,
        )
        self.on_event = on_event or (lambda event: None)
        self.on_tick = on_tick or (lambda snapshot: None)
        self.workers: list[WorkerStatus] = []
        self.stop_reason: StopReason | None = None
        self.started = time.monotonic()
        self._wake = anyio.Event()
        self._maybe_ready = True  # refreshed from the counts at every tick
        # A live heartbeat well inside every threshold that would declare a busy worker gone.
        self.heartbeat_seconds = min(
            HEARTBEAT_SECONDS, settings.tasks.lease_seconds / 3, settings.agents.stale_seconds / 3
        )
        self.recovery_seconds = min(RECOVERY_SECONDS, settings.server.sweep_interval_seconds)

    # --- setting up ------------------------------------------------------------------------------------

    def prepare_workers(self) -> list[WorkerStatus]:
        project = self.settings.project_dir
        needs_git = self.options.worktrees or self.adapter.name == "script"
        if needs_git and not gitwork.is_repository(project):
            why = "--worktrees" if self.options.worktrees else "the script worker commits each task"
            raise InvalidInput(f"{project} is not a git repository ({why}); run `git init` and commit first")
        skills = self.options.skills if self.options.skills is not None else tuple(self._skills_in_queue())
        prefix = self.options.name_prefix or self.adapter.name
        names = self._free_names(prefix, self.options.agents)
        for name in names:
            workdir, branch = project, None
            if self.options.worktrees:
                workdir, branch = gitwork.ensure_worktree(project, name)
            self.workers.append(WorkerStatus(Worker(name, skills, workdir, branch)))
        return self.workers

    def _skills_in_queue(self) -> list[str]:
        rows = self.queue.store.query(
            "SELECT DISTINCT needed.value AS skill FROM tasks AS t, json_each(t.skills) AS needed "
            "WHERE t.state IN ('open', 'ready') ORDER BY 1"
        )
        return [row["skill"] for row in rows]

    def _free_names(self, prefix: str, count: int) -> list[str]:
        """``prefix-1`` … ``prefix-N``, skipping names a live session (another swarm) holds."""
        names: list[str] = []
        number = 0
        while len(names) < count:
            number += 1
            name = f"{prefix}-{number}"
            record = self.registry.get(name)
            if record is None or not record.live:
                names.append(name)
        return names

    # --- running ----------------------------------------------------------------------------------------

    async def run(self) -> SwarmSummary:
        if not self.workers:
            self.prepare_workers()
        if self.services.quality is not None:
            # The quality gates compare each task's changes with the state before the swarm changed anything.
            self.on_event(SwarmEvent("swarm", "quality", None, "recording the quality baseline (if none yet)"))
            await anyio.to_thread.run_sync(ensure_baseline, self.services.quality, CLIENT_NAME)
        self.started = time.monotonic()
        for status in self.workers:
            self._hold_name(status)  # the workers are known (idle) from the start
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch_signals)
                group.start_soon(self._supervise, group.cancel_scope)
                for status in self.workers:
                    group.start_soon(self._work, status)
        finally:
            self.release_everything()
        return self.summary()

    def stop(self, reason: StopReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.on_event(SwarmEvent("swarm", "stop", None, f"stopping: {reason.value}"))
        for status in self.workers:
            status.control.stop_requested = True
        self._wake.set()

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                self.stop(StopReason.INTERRUPTED)

    async def _work(self, status: WorkerStatus) -> None:
        while self.stop_reason is None:
            claimed = self._claim(status) if self._maybe_ready else None
            if claimed is None:
                with anyio.move_on_after(CLAIM_POLL_SECONDS):
                    await self._wake.wait()
                continue
            task, context, session_id = claimed
            status.task, status.started_at, status.session_id = task, time.monotonic(), session_id
            self.on_event(SwarmEvent(status.worker.name, "claimed", task.id, task.title))
            try:
                report = await self._run(status, task, context, session_id)
            finally:
                status.task, status.started_at = None, None
            self._record(status, report)
            self._hold_name(status)  # its agent's session has ended: the name is the swarm's again
            self._maybe_ready = True  # its completion may have made tasks ready
            self._wake.set()
            self._wake = anyio.Event()
            await anyio.sleep(TICK_SECONDS)  # the workers that were waiting ask first

    async def _run(
        self, status: WorkerStatus, task: Task, context: workloop.ClaimContext, session_id: str
    ) -> RunReport:
        try:
            brief = brief_for(self.queue, task, context)
            return await run_task(
                self.services,
                self.adapter,
                status.worker,
                brief,
                session_id=session_id,
                timeout=self._timeout_for(task),
                control=status.control,
            )
        except Exception as error:  # a harness failure (disk full, git gone…) costs this task an attempt, not the swarm
            log.exception("running %s for %s failed", task.id, status.worker.name)
            reason = f"the harness could not run the agent: {error}"
            await anyio.to_thread.run_sync(hand_back, self.services, status.worker, task.id, reason, FailMode.RETRY)
            return RunReport(task.id, status.worker.name, Outcome.FAILED, None, note=reason)

    def _claim(self, status: WorkerStatus) -> tuple[Task, workloop.ClaimContext, str] | None:
        """Claim the next task for the worker, under the session id its next agent run will have."""
        if self.stop_reason is not None or not self._hold_name(status):
            return None
        try:
            task, _, context = workloop.claim_for_agent(
                self.queue,
                self.reservations,
                self.mail,
                self.services.memory,
                status.worker.actor(),
                strategy=self.strategy.value,
            )
        except JetpackError as error:
            log.warning("%s could not claim: %s", status.worker.name, error)
            return None
        if task is None or status.next_session is None:
            return None
        session_id, status.next_session = status.next_session, None  # each run gets a session of its own
        return task, context, session_id

    def _hold_name(self, status: WorkerStatus) -> bool:
        """Hold the worker's name for the run about to start, so recovery never mistakes a claim made
        between two agent processes for a dead agent's. The agent's own Jetpack server then takes the
        name over: it presents the same client session id."""
        name = status.worker.name
        if status.next_session is not None and self.registry.touch(name, f"{CLIENT_NAME}:{status.next_session}"):
            return True
        session_id = str(uuid.uuid4())
        session = SessionInfo(
            session_id=f"{CLIENT_NAME}:{session_id}",
            client_name=CLIENT_NAME,
            client_session_id=session_id,
            pid=os.getpid(),
            host=socket.gethostname(),
        )
        try:
            self.registry.register(name, list(status.worker.skills), session)
        except JetpackError:
            return False  # the previous agent process has not let go of the name yet
        status.next_session = session_id
        return True

    def _timeout_for(self, task: Task) -> float:
        """Past its time budget a task is only reported as long-running (the agent may be doing fine);
        past twice that, the harness takes the agent for stuck and kills it."""
        if self.options.task_timeout is not None:
            return self.options.task_timeout
        return 2 * task_budget_ms(task.estimate_minutes, self.settings.agents) / 1000

    def _record(self, status: WorkerStatus, report: RunReport) -> None:
        name = status.worker.name
        if report.outcome.succeeded:
            status.completed += 1
        elif report.outcome is not Outcome.STOPPED:
            status.failed += 1
        text = f"{report.outcome.value} in {report.seconds:.1f}s"
        if report.note and not report.outcome.succeeded:
            text += f": {report.note}"
        self.on_event(SwarmEvent(name, report.outcome.value, report.task_id, text))
        if report.outcome is Outcome.DIED and self.stop_reason is None:
            status.respawns += 1
            self.on_event(SwarmEvent(name, "respawned", report.task_id, f"{name} starts a new agent process"))

    async def _supervise(self, scope: anyio.CancelScope) -> None:
        last_heartbeat = last_recovery = time.monotonic()
        idle_since: float | None = None
        while True:
            await anyio.sleep(TICK_SECONDS)
            now = time.monotonic()
            if now - last_heartbeat >= self.heartbeat_seconds:
                self.heartbeat_workers()
                last_heartbeat = now
            if now - last_recovery >= self.recovery_seconds:
                self.recover_lost_work()
                last_recovery = now
            counts = count_by_state(self.queue)
            self._maybe_ready = bool(counts.get("ready"))
            self._push(counts)
            self.on_tick(self.snapshot(counts))
            if self.stop_reason is not None:
                if not any(s.busy for s in self.workers):
                    scope.cancel()
                    return
                continue
            busy = any(s.busy for s in self.workers)
            idle_since = None if busy else (idle_since or now)
            if self.options.max_runtime is not None and now - self.started >= self.options.max_runtime:
                self.stop(StopReason.TIME)
            elif not busy and self._drained(counts):
                self.stop(StopReason.DRAINED)
            elif idle_since is not None and now - idle_since >= self.options.idle_timeout:
                self.stop(StopReason.IDLE)

    def _drained(self, counts: dict[str, int]) -> bool:
        if counts.get("ready") or counts.get("claimed") or counts.get("in_progress"):
            return False
        # A task waiting out its retry backoff comes back by itself.
        return not self.queue.store.query("SELECT 1 FROM tasks WHERE state = 'open' AND retry_at IS NOT NULL LIMIT 1")

    def heartbeat_workers(self) -> None:
        """Every worker is alive while the swarm runs, and one whose agent is running (it may think
        for minutes without a tool call) keeps its leases: beat for each of them."""
        for status in self.workers:
            try:
                if not status.busy:
                    self._hold_name(status)  # between runs the name is the swarm's again
                heartbeat(self.lifecycle, status.worker.name)
            except JetpackError:
                log.warning("heartbeat for %s failed", status.worker.name, exc_info=True)

    def recover_lost_work(self) -> None:
        """Requeue what dead agents and stalled tasks left behind, wherever they ran (jetpack/swarm/recovery.py)."""
        try:
            report = recover(self.lifecycle)
        except JetpackError:
            log.warning("recovery failed", exc_info=True)
            return
        for item in report.recovered:
            self.on_event(SwarmEvent(item.agent, "recovered", item.task_id, f"{item.reason}; now {item.state.value}"))

    def _push(self, counts: dict[str, int]) -> None:
        """Under a push strategy the coordinator deals the ready tasks to the idle workers: each gets a
        short hold on its share, which its next claim takes (jetpack/swarm/holds.py)."""
        idle = [s.worker.actor() for s in self.workers if not s.busy]
        if self.strategy not in PUSH_STRATEGIES or not idle or not counts.get("ready") or self.stop_reason:
            return
        try:
            if assign_ready_tasks(self.queue, idle, self.strategy):
                self._wake.set()
                self._wake = anyio.Event()
        except JetpackError:
            log.warning("could not deal the ready tasks", exc_info=True)

    def release_everything(self) -> None:
        """Whatever the workers still hold goes back untouched: leases and reservations."""
        for status in self.workers:
            worker = status.worker
            held = list_tasks(
                self.queue, assignee=worker.name, states=[TaskState.CLAIMED, TaskState.IN_PROGRESS], limit=200
            )
            for task in held.tasks:
                hand_back(self.services, worker, task.id, "the swarm stopped (jetpack start)", FailMode.RELEASE)
            if not held.tasks:
                release_worker_reservations(self.services, worker)
            record = self.registry.get(worker.name)
            if record is not None and record.session_id.startswith(f"{CLIENT_NAME}:"):
                self.registry.end_session(worker.name, record.session_id)

    # --- reporting --------------------------------------------------------------------------------------

    def _completed(self) -> int:
        return sum(s.completed for s in self.workers)

    def _per_minute(self, elapsed: float) -> float:
        return round(self._completed() / elapsed * 60, 1) if elapsed > 0 else 0.0

    def _views(self) -> list[WorkerView]:
        now = time.monotonic()
        return [
            WorkerView(
                name=s.worker.name,
                state="working" if s.busy else "idle",
                task_id=s.task.id if s.task else None,
                task_title=s.task.title if s.task else None,
                seconds=round(now - s.started_at, 1) if s.started_at is not None else None,
                completed=s.completed,
                failed=s.failed,
                respawns=s.respawns,
                branch=s.worker.branch,
            )
            for s in self.workers
        ]

    def snapshot(self, counts: dict[str, int] | None = None) -> SwarmSnapshot:
        elapsed = time.monotonic() - self.started
        return SwarmSnapshot(
            elapsed_seconds=round(elapsed, 1),
            tasks=counts if counts is not None else count_by_state(self.queue),
            completed=self._completed(),
            per_minute=self._per_minute(elapsed),
            workers=self._views(),
        )

    def summary(self) -> SwarmSummary:
        elapsed = time.monotonic() - self.started
        counts = count_by_state(self.queue)
        unfinished = list_tasks(self.queue, states=[TaskState(s) for s in UNFINISHED], limit=50).tasks
        return SwarmSummary(
            reason=self.stop_reason or StopReason.INTERRUPTED,
            harness=self.adapter.name,
            strategy=self.options.strategy,
            elapsed_seconds=round(elapsed, 1),
            tasks=counts,
            completed=self._completed(),
            failed_attempts=sum(s.failed for s in self.workers),
            respawns=sum(s.respawns for s in self.workers),
            per_minute=self._per_minute(elapsed),
            workers=self._views(),
            unfinished=[
                StuckTask(id=t.id, title=t.title, state=t.state.value, why=t.blocked_reason) for t in unfinished
            ],
            logs=str(self.services.logs_dir),
        )


CLIENT_NAME = "jetpack-start"
