"""16 processes each send 500 messages while recipients fetch: each message reaches each of its
recipients exactly once through the cursor, in order per thread; a recipient that restarts in the
middle misses nothing and sees nothing twice."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SENDERS = 16
MESSAGES = int(os.environ.get("JETPACK_MAIL_MESSAGES", "500"))
RECIPIENTS = ["r0", "r1", "r2", "r3"]
RESTARTING = "r0"


def _open(db: str) -> object:
    from jetpack.mail import MailContext
    from jetpack.store import open_store

    return MailContext(store=open_store(db), live_seconds=3600)


def sender(db: str, index: int, log: str) -> None:
    from jetpack.mail import MailContext, NewMessage, Sender, send_mail

    ctx = _open(db)
    assert isinstance(ctx, MailContext)
    rng = random.Random(index)
    sent = []
    for n in range(MESSAGES):
        to = rng.sample(RECIPIENTS, rng.randint(1, 3))
        thread = f"t-s{index}-{n % 3}"
        message = send_mail(ctx, Sender(f"s{index}"), NewMessage(to=to, subject=f"{index}:{n}", thread_id=thread))
        sent.append({"id": message.id, "to": to, "thread": thread})
    Path(log).write_text(json.dumps(sent))


def recipient(db: str, name: str, log: str, done_flag: str, stop_after: int | None) -> None:
    """Fetch until every sender is done and the inbox is drained; optionally stop early (a restart)."""
    from jetpack.mail import MailContext, fetch_inbox

    ctx = _open(db)
    assert isinstance(ctx, MailContext)
    received: list[dict[str, object]] = []
    empty_after_done = 0
    while empty_after_done < 2:
        senders_done = Path(done_flag).exists()
        page = fetch_inbox(ctx, name, limit=37)
        received += [{"id": m.id, "thread": m.thread_id} for m in page.messages]
        if stop_after is not None and len(received) >= stop_after:
            break
        if not page.messages and senders_done:
            empty_after_done += 1
    Path(log).write_text(json.dumps(received))


def test_every_message_reaches_each_recipient_exactly_once_in_thread_order(tmp_path: Path) -> None:
    from jetpack.agents import AgentRegistry, SessionInfo
    from jetpack.store import open_store

    db = str(tmp_path / "mail.db")
    store = open_store(db)
    registry = AgentRegistry(store)
    for name in [*RECIPIENTS, *(f"s{i}" for i in range(SENDERS))]:
        registry.register(name, [], SessionInfo(session_id=name))
    spawn = multiprocessing.get_context("spawn")
    done_flag = str(tmp_path / "senders-done")
    fetchers = {
        name: spawn.Process(
            target=recipient,
            args=(db, name, str(tmp_path / f"{name}-a.json"), done_flag, 1500 if name == RESTARTING else None),
        )
        for name in RECIPIENTS
    }
    senders = [spawn.Process(target=sender, args=(db, i, str(tmp_path / f"s{i}.json"))) for i in range(SENDERS)]
    for process in [*fetchers.values(), *senders]:
        process.start()
    fetchers[RESTARTING].join(300)  # stops after 1,500 messages, as if the agent restarted
    assert fetchers[RESTARTING].exitcode == 0
    again = spawn.Process(
        target=recipient, args=(db, RESTARTING, str(tmp_path / f"{RESTARTING}-b.json"), done_flag, None)
    )
    again.start()
    for process in senders:
        process.join(300)
        assert process.exitcode == 0
    Path(done_flag).touch()
    for process in [*(p for n, p in fetchers.items() if n != RESTARTING), again]:
        process.join(300)
        assert process.exitcode == 0

    expected: dict[str, list[int]] = {name: [] for name in RECIPIENTS}
    thread_of: dict[int, str] = {}
    for i in range(SENDERS):
        for message in json.loads((tmp_path / f"s{i}.json").read_text()):
            thread_of[message["id"]] = message["thread"]
            for name in message["to"]:
                expected[name].append(message["id"])
    assert sum(len(ids) for ids in expected.values()) > SENDERS * MESSAGES
    for name in RECIPIENTS:
        logs = sorted(tmp_path.glob(f"{name}-*.json"))
        received = [entry for log in logs for entry in json.loads(log.read_text())]
        ids = [int(entry["id"]) for entry in received]  # type: ignore[call-overload]
        assert len(ids) == len(set(ids)), f"{name} saw a message twice"
        assert sorted(ids) == sorted(expected[name]), f"{name} missed or gained messages"
        by_thread: dict[str, list[int]] = {}
        for message_id in ids:
            by_thread.setdefault(thread_of[message_id], []).append(message_id)
        assert all(seq == sorted(seq) for seq in by_thread.values()), f"{name} got a thread out of order"
    assert len(list(tmp_path.glob(f"{RESTARTING}-*.json"))) == 2
    store.close()
