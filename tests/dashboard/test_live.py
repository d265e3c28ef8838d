"""The live feed's fan-out: one read of the events table per tick whatever the number of pages, every
page gets every batch in order, and a page that stops reading is dropped instead of growing memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import anyio
import pytest

from jetpack.actor import Actor
from jetpack.dashboard.live import CLIENT_BUFFER, Batch, EventFeed, Subscription, events_after, newest_event_id
from jetpack.store import DataLayer
from jetpack.tasks import QueueContext, create_tasks
from jetpack.tasks.model import NewTask

pytestmark = pytest.mark.anyio

PLANNER = Actor("planner")


async def on_thread(fn: Any, *args: Any) -> Any:
    return await anyio.to_thread.run_sync(partial(fn, *args))


def add(queue: QueueContext, count: int) -> list[str]:
    return [t.id for t in create_tasks(queue, PLANNER, [NewTask(title=f"t{i}") for i in range(count)])]


@pytest.fixture
def feeds() -> Iterator[Callable[[DataLayer], EventFeed]]:
    """Feeds whose pages are all unsubscribed (their streams closed) when the test ends."""
    made: list[tuple[EventFeed, list[Subscription]]] = []

    def start(store: DataLayer) -> EventFeed:
        feed = EventFeed(store, on_thread)
        feed.latest = newest_event_id(store)
        pages: list[Subscription] = []
        subscribe = feed.subscribe

        def tracked() -> Subscription:
            pages.append(page := subscribe())
            return page

        feed.subscribe = tracked  # type: ignore[method-assign]
        made.append((feed, pages))
        return feed

    yield start
    for feed, pages in made:
        for page in pages:
            feed.unsubscribe(page)


def drained(receive: Any) -> list[Batch]:
    batches = []
    while True:
        try:
            batches.append(receive.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            return batches


async def test_one_read_serves_every_client_in_order(
    queue: QueueContext, feeds: Callable[[DataLayer], EventFeed]
) -> None:
    feed = feeds(queue.store)
    pages = [feed.subscribe() for _ in range(20)]
    tasks = add(queue, 3)
    assert await feed.poll() == 3
    assert feed.polls == 1
    expected = [(e["kind"], e["task_id"]) for e in events_after(queue.store, 0)]
    assert expected == [("created", t) for t in tasks]
    for page in pages:
        [batch] = drained(page.receive)
        assert [(e["kind"], e["task_id"]) for e in batch.events] == expected
    texts = set()
    add(queue, 1)
    await feed.poll()
    for page in pages:
        texts.add(id(drained(page.receive)[0].text))
    assert len(texts) == 1  # one encoding shared by all pages
    assert await feed.poll() == 0 and feed.polls == 3


async def test_a_page_that_stops_reading_is_dropped_and_the_others_keep_their_batches(
    queue: QueueContext, feeds: Callable[[DataLayer], EventFeed]
) -> None:
    feed = feeds(queue.store)
    reader, stalled = feed.subscribe(), feed.subscribe()
    seen = []
    for _ in range(CLIENT_BUFFER + 1):
        add(queue, 1)
        await feed.poll()
        seen += [e["id"] for b in drained(reader.receive) for e in b.events]
    assert feed.client_count == 1  # the stalled page was dropped (it resumes from its cursor)
    assert seen == [e["id"] for e in events_after(queue.store, 0, limit=1000)]
    assert len(drained(stalled.receive)) == CLIENT_BUFFER
    with pytest.raises(anyio.EndOfStream):
        stalled.receive.receive_nowait()


async def test_unsubscribed_pages_cost_nothing(queue: QueueContext, feeds: Callable[[DataLayer], EventFeed]) -> None:
    feed = feeds(queue.store)
    page = feed.subscribe()
    feed.unsubscribe(page)
    add(queue, 2)
    assert await feed.poll() == 2
    assert feed.client_count == 0
