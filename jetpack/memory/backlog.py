"""Outcomes become memory off the request path.

``complete_task`` and ``fail_task`` only add a row to ``memory_backlog`` (the completion's row in
the completion's own transaction); embedding the outcome, merging duplicates and procedural
learning cost several model runs, which an agent should not wait for. Each server runs a
:class:`BacklogWorker` thread that drains the backlog in batches (one model run for the whole
batch's texts), poked after every completion and polling for rows other processes left behind.
Without a worker (the CLI, tests) the caller drains at once.

A drain claims rows for ``CLAIM_SECONDS``; a worker that dies mid-batch leaves rows whose claim
lapses and the next drain takes them. Turning the same outcome into memory twice merges into the
first (same text), so a retried row never stores a duplicate.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence

from jetpack.errors import JetpackError
from jetpack.memory.context import MemoryContext
from jetpack.memory.learning import sentences
from jetpack.memory.loop import outcome_text, remember_outcome
from jetpack.store import Statement, StoreError
from jetpack.tasks.rows import task_from_row

log = logging.getLogger(__name__)

CLAIM_SECONDS = 120
BATCH = 16
POLL_SECONDS = 5.0
FINAL_DRAIN_SECONDS = 10.0


def backlog_statement(
    task_id: str,
    agent: str,
    summary: str,
    learnings: Sequence[str],
    *,
    failed: bool,
    now: int,
    informative: bool = True,
) -> Statement:
    """The outcome's backlog row. For a completion it joins the completion's batch and adds the row
    only if that completion happened (the task done, closed at ``now`` by ``agent``), and only if
    there is something to keep: an ``informative`` outcome, or a task that was given memories (whose
    success adjusts their confidence)."""
    condition = (
        "1"
        if failed
        else "EXISTS (SELECT 1 FROM tasks WHERE id = :task AND state = 'done' AND closed_at = :now "
        "AND changed_by = :agent) AND (:informative OR EXISTS (SELECT 1 FROM memory_uses WHERE task_id = :task))"
    )
    return Statement(
        "INSERT INTO memory_backlog(task_id, agent, summary, learnings, failed, created_at) "
        f"SELECT :task, :agent, :summary, :learnings, :failed, :now WHERE {condition}",
        {
            "task": task_id,
            "agent": agent,
            "summary": summary,
            "learnings": json.dumps(list(learnings)),
            "failed": int(failed),
            "now": now,
            **({} if failed else {"informative": informative}),
        },
    )


def drain(memory: MemoryContext, owner: str, limit: int = BATCH) -> int:
    """Turn up to ``limit`` waiting outcomes into memories; return how many rows were taken."""
    now = memory.now()
    rows = memory.store.write(
        [
            Statement(
                "UPDATE memory_backlog SET claimed_by = :owner, claimed_until = :until WHERE id IN ("
                "SELECT id FROM memory_backlog WHERE claimed_until IS NULL OR claimed_until < :now "
                "ORDER BY id LIMIT :n) RETURNING *",
                {"owner": owner, "until": now + CLAIM_SECONDS * 1000, "now": now, "n": limit},
            )
        ]
    )[0]
    if not rows:
        return 0
    rows.sort(key=lambda r: r["id"])
    found = memory.store.query(
        "SELECT * FROM tasks WHERE id IN (SELECT value FROM json_each(:ids))",
        {"ids": json.dumps(sorted({r["task_id"] for r in rows}))},
    )
    tasks = {t["id"]: task_from_row(t) for t in found}
    outcomes = [  # a task that is gone leaves nothing to remember it by
        (row, tasks[row["task_id"]], json.loads(row["learnings"])) for row in rows if row["task_id"] in tasks
    ]
    texts = [outcome_text(r["agent"], t, r["summary"], failed=bool(r["failed"])) for r, t, _ in outcomes]
    texts += [item for _, _, learned in outcomes for item in learned]
    texts += [part for text in list(texts) for part in sentences(text)]  # what procedural learning compares
    if texts:
        memory.embed_recent(texts)  # one model run for the batch; remember() and learning find them cached
    for row, task, learned in outcomes:
        try:
            remember_outcome(memory, row["agent"], task, row["summary"], learned, failed=bool(row["failed"]))
        except JetpackError:
            log.warning("the outcome of %s was not remembered", row["task_id"], exc_info=True)
    memory.store.write(
        [
            Statement(
                "DELETE FROM memory_backlog WHERE claimed_by = :owner AND id IN (SELECT value FROM json_each(:ids))",
                {"owner": owner, "ids": json.dumps([r["id"] for r in rows])},
            )
        ]
    )
    return len(rows)


def drain_all(memory: MemoryContext, owner: str | None = None) -> int:
    owner = owner or f"drain-{uuid.uuid4().hex[:12]}"
    total = 0
    while taken := drain(memory, owner):
        total += taken
    return total


class BacklogWorker:
    """A daemon thread that drains the backlog when poked, and every ``POLL_SECONDS`` regardless."""

    def __init__(self, memory: MemoryContext) -> None:
        self.memory = memory
        self.owner = f"worker-{uuid.uuid4().hex[:12]}"
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jetpack-memory-backlog", daemon=True)

    def start(self) -> BacklogWorker:
        self._thread.start()
        return self

    def poke(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = FINAL_DRAIN_SECONDS + 20) -> None:
        """Drain for up to FINAL_DRAIN_SECONDS more; what is left waits in the backlog for the next server."""
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
            self._drain(until=None)
        # Stopping: what this process's agents just finished should not wait for the next server.
        self._drain(until=time.monotonic() + FINAL_DRAIN_SECONDS)

    def _drain(self, until: float | None) -> None:
        try:
            while drain(self.memory, self.owner):
                if (until is None and self._stopped.is_set()) or (until is not None and time.monotonic() > until):
                    return
        except StoreError:
            log.warning("memory backlog: drain failed; will retry", exc_info=True)
        except Exception:  # a bug here must not kill memory for the rest of the process
            log.exception("memory backlog: unexpected error; will retry")
