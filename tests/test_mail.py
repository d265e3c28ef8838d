"""Agent Mail: threads and replies, recipients, the inbox cursor, read and ack marks, search."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from jetpack.agents import AgentRegistry, SessionInfo
from jetpack.clock import ManualClock
from jetpack.errors import InvalidInput, NotFound
from jetpack.mail import (
    Importance,
    MailContext,
    NewMessage,
    Sender,
    SenderKind,
    attention_notice,
    fetch_inbox,
    get_thread,
    index_new_messages,
    mark_mail,
    search_mail,
    send_mail,
    subscribe_topics,
)
from jetpack.mail.search import has_fts
from jetpack.store import DataLayer

pytestmark = pytest.mark.both_adapters  # the embedded file and a real tursodb server


@pytest.fixture
def mail(store: DataLayer, clock: ManualClock) -> MailContext:
    registry = AgentRegistry(store, clock=clock)
    for name in ("alice", "bob", "carol", "heron"):
        registry.register(name, [], SessionInfo(session_id=name))
    return MailContext(store=store, clock=clock, live_seconds=60)


ALICE, BOB = Sender("alice"), Sender("bob")


def send(mail: MailContext, sender: Sender = ALICE, **fields: object) -> int:
    return send_mail(mail, sender, NewMessage(**{"subject": "s", **fields})).id  # type: ignore[arg-type]


def test_a_message_reaches_each_recipient_once_through_the_cursor(mail: MailContext) -> None:
    first = send(mail, to=["bob", "carol"], subject="one")
    second = send(mail, to=["bob"], subject="two")
    assert [m.id for m in fetch_inbox(mail, "bob").messages] == [first, second]
    assert fetch_inbox(mail, "bob").messages == []
    third = send(mail, to=["bob"], subject="three")
    assert [m.id for m in fetch_inbox(mail, "bob").messages] == [third]
    assert [m.id for m in fetch_inbox(mail, "carol").messages] == [first]


def test_the_cursor_pages_with_more(mail: MailContext) -> None:
    ids = [send(mail, to=["bob"], subject=f"m{i}") for i in range(5)]
    page = fetch_inbox(mail, "bob", limit=2)
    assert [m.id for m in page.messages] == ids[:2] and page.more
    assert [m.id for m in fetch_inbox(mail, "bob", limit=10).messages] == ids[2:]


def test_filtered_views_leave_the_cursor_alone(mail: MailContext) -> None:
    calm = send(mail, to=["bob"], subject="fyi", importance=Importance.LOW)
    fire = send(mail, to=["bob"], subject="prod down", importance=Importance.URGENT)
    assert [m.id for m in fetch_inbox(mail, "bob", urgent_only=True).messages] == [fire]
    assert [m.id for m in fetch_inbox(mail, "bob", unread_only=True).messages] == [fire, calm]
    assert [m.id for m in fetch_inbox(mail, "bob").messages] == [calm, fire]


def test_replies_inherit_thread_importance_ack_and_default_to_the_sender(mail: MailContext) -> None:
    question = send_mail(
        mail, ALICE, NewMessage(to=["bob"], subject="schema?", importance=Importance.HIGH, ack_required=True)
    )
    answer = send_mail(mail, BOB, NewMessage(reply_to=question.id, body="use v2"))
    assert answer.thread_id == question.thread_id and answer.recipients == ["alice"]
    got = fetch_inbox(mail, "alice", include_bodies=True).messages[0]
    assert (got.subject, got.importance, got.ack_required, got.body) == ("Re: schema?", Importance.HIGH, True, "use v2")
    again = send_mail(mail, ALICE, NewMessage(reply_to=answer.id))
    assert fetch_inbox(mail, "bob").messages[-1].subject == "Re: schema?"  # no "Re: Re:"
    thread = get_thread(mail, question.thread_id, viewer="bob")
    assert [m.id for m in thread.messages] == [question.id, answer.id, again.id]
    assert thread.participants == ["alice", "bob"]


def test_a_tasks_thread_is_its_id(mail: MailContext, queue: object) -> None:
    from jetpack.actor import Actor
    from jetpack.tasks import NewTask, QueueContext, create_tasks

    assert isinstance(queue, QueueContext)
    task = create_tasks(queue, Actor("alice"), [NewTask(title="t")])[0].id
    sent = send_mail(mail, ALICE, NewMessage(to=["bob"], subject="about t", task_id=task))
    assert sent.thread_id == task


def test_broadcast_reaches_live_agents_but_not_the_sender_or_the_silent(mail: MailContext, clock: ManualClock) -> None:
    clock.advance(61)
    AgentRegistry(mail.store, clock=clock).touch("bob", "bob")
    AgentRegistry(mail.store, clock=clock).touch("alice", "alice")
    sent = send_mail(mail, ALICE, NewMessage(to=["*"], subject="standup"))
    assert sent.recipients == ["bob"]  # carol and heron went silent, alice sent it


def test_topics_reach_their_subscribers(mail: MailContext) -> None:
    assert subscribe_topics(mail, "carol", ["db", "api"]) == ["api", "db"]
    assert subscribe_topics(mail, "carol", ["db"]) == ["api", "db"]  # idempotent
    subscribe_topics(mail, "bob", ["db"])
    sent = send_mail(mail, ALICE, NewMessage(topic="db", subject="migration tonight"))
    assert sent.recipients == ["bob", "carol"]
    assert subscribe_topics(mail, "carol", ["db"], unsubscribe=True) == ["api"]


def test_a_person_can_send_and_be_written_to(mail: MailContext) -> None:
    AgentRegistry(mail.store).remember("dana", [])
    sent = send_mail(mail, Sender("dana", SenderKind.HUMAN), NewMessage(to=["bob"], subject="please review"))
    got = fetch_inbox(mail, "bob").messages[0]
    assert got.id == sent.id and got.sender_kind == SenderKind.HUMAN
    assert send_mail(mail, BOB, NewMessage(reply_to=sent.id)).recipients == ["dana"]


def test_marks_are_explicit_idempotent_and_only_your_own(mail: MailContext) -> None:
    message = send(mail, to=["bob"], importance=Importance.URGENT, ack_required=True)
    other = send(mail, to=["carol"])
    assert attention_notice(mail, "bob") is not None
    first = mark_mail(mail, "bob", [message, other], read=True, acknowledge=False)
    assert (first.marked_read, first.acknowledged, first.not_yours) == (1, 0, [other])
    assert "acknowledgement" in (attention_notice(mail, "bob") or "")
    assert mark_mail(mail, "bob", [message], read=True, acknowledge=True).acknowledged == 1
    assert mark_mail(mail, "bob", [message], read=True, acknowledge=True).acknowledged == 0
    assert attention_notice(mail, "bob") is None


def test_search_finds_words_and_treats_search_syntax_as_text(mail: MailContext) -> None:
    hit = send(mail, to=["bob"], subject="Migration failed", body='see NEAR(lock "timeout") in db.log')
    send(mail, to=["bob"], subject="lunch", body="pizza")
    assert [h.id for h in search_mail(mail, "migration")] == [hit]
    assert [h.id for h in search_mail(mail, 'NEAR(lock "timeout"')] == [hit]
    assert search_mail(mail, "subject:pizza OR *") == []  # words, not FTS operators
    with pytest.raises(InvalidInput, match="no words"):
        search_mail(mail, '"* () :"')


def _indexed(store: DataLayer) -> int:
    return int(store.query("SELECT count(*) AS n FROM messages_fts_docsize")[0]["n"])


def _needs_fts(mail: MailContext) -> None:
    if not has_fts(mail.store):  # tursodb: no FTS5, search scans the messages and nothing is indexed
        assert index_new_messages(mail.store) == 0
        pytest.skip("this engine has no FTS5 index to fill")


def test_messages_join_the_search_index_in_batches_and_search_sees_every_one(mail: MailContext) -> None:
    _needs_fts(mail)
    first = send(mail, to=["bob"], subject="deploy broke", body="rollback")
    assert _indexed(mail.store) == 0  # sending does not index (an FTS5 segment per send was 40% of it)
    assert [h.id for h in search_mail(mail, "deploy")] == [first]  # a search adds what is new first
    second = send(mail, to=["bob"], subject="deploy fixed", body="green again")
    assert index_new_messages(mail.store, batch=1) == 1  # what the servers' sweep runs
    assert index_new_messages(mail.store) == 0
    assert {h.id for h in search_mail(mail, "deploy")} == {first, second}


def test_processes_indexing_at_once_index_each_message_once(
    mail: MailContext, another_store: Callable[[], DataLayer]
) -> None:
    _needs_fts(mail)
    for n in range(300):
        send(mail, to=["bob"], subject=f"status {n}", body=f"build {n} passed")
    stores = [another_store() for _ in range(4)]
    counts: list[int] = []
    threads = [threading.Thread(target=lambda s=s: counts.append(index_new_messages(s, batch=7))) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 300 == _indexed(mail.store)
    mail.store.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
    assert len(search_mail(mail, "passed", limit=100)) == 100


def test_names_found_once_are_remembered_and_unknown_ones_still_refused(mail: MailContext) -> None:
    send(mail, to=["bob"])
    assert mail.known_agents == {"bob"}
    with pytest.raises(NotFound, match="'bobb'") as refused:
        send(mail, to=["bob", "bobb"])
    assert "'bob'" not in str(refused.value).split("did you mean")[0]
    assert mail.known_agents == {"bob"}  # a refused send learns nothing
    send(mail, to=["bob", "carol"])
    assert mail.known_agents == {"bob", "carol"}


@pytest.mark.parametrize(
    ("message", "error", "match"),
    [
        (NewMessage(subject="x"), InvalidInput, "no recipients"),
        (NewMessage(to=["bobb"], subject="x"), NotFound, "did you mean bob"),
        (NewMessage(to=["hern"], subject="x"), NotFound, "heron"),
        (NewMessage(to=["bob"]), InvalidInput, "subject"),
        (NewMessage(to=["bob"], subject="x", reply_to=999), NotFound, "no message 999"),
        (NewMessage(to=["bob"], subject="x", task_id="jp-zzzz"), NotFound, "no task jp-zzzz"),
    ],
)
def test_bad_messages_are_refused_and_nothing_is_stored(
    mail: MailContext, message: NewMessage, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        send_mail(mail, ALICE, message)
    assert mail.store.query("SELECT count(*) AS n FROM messages")[0]["n"] == 0
    assert mail.store.query("SELECT count(*) AS n FROM deliveries")[0]["n"] == 0


def test_a_ten_megabyte_body_is_refused_before_anything_is_stored() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at most 100000 characters"):
        NewMessage(to=["bob"], subject="x", body="x" * 10_000_000)
