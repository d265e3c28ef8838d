"""The dashboard as a person uses it: headless Chromium (Debian's `chromium`, driven by Playwright)
against a real `jetpack serve --http`, with agents acting from other processes.

Screenshots go to test-artifacts/dashboard/ (JETPACK_TEST_ARTIFACTS overrides the folder).
Skipped, with the reason, when chromium or Playwright is missing (./scripts/test installs both).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from browser import chromium_missing, launch
from conftest import REPO
from e2e_http import (  # project, server: the fixtures
    HttpServer,
    add_task,
    initialised_project,  # noqa: F401
    loopback_server,  # noqa: F401
    run_cli,
)

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(os.environ.get("JETPACK_TEST_ARTIFACTS", REPO / "test-artifacts")) / "dashboard"
WAIT_MS = 15_000  # only against hangs
LIVE_MS = 1_000  # the acceptance: an agent's change reaches the page within a second
VIEWS = ("board", "tree", "graph", "agents", "mail", "reservations", "memory", "quality", "metrics")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if (missing := chromium_missing()) is not None:
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = launch(playwright)
        yield launched
        launched.close()


class Page:
    """A browser tab on the dashboard that fails the test on any script error."""

    def __init__(self, browser: Any, server: HttpServer, width: int = 1280, height: int = 800) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", self._console)
        self.server = server

    def _console(self, message: Any) -> None:
        # A refused move is an HTTP 4xx the page handles (and shows); the browser logs it anyway.
        expected = message.text.startswith("Failed to load resource: the server responded with a status of 4")
        if message.type == "error" and not expected:
            self.errors.append(message.text)

    def open(self, view: str = "board") -> Any:
        self.page.goto(f"{self.server.url}/#/{view}")
        return self.ready(view)

    def ready(self, view: str) -> Any:
        self.page.wait_for_selector(f'body[data-view="{view}"][data-ready="1"]')
        return self.page

    def card(self, task_id: str) -> Any:
        return self.page.locator(f'.card[data-task-id="{task_id}"]')

    def column(self, state: str) -> Any:
        return self.page.locator(f'.column[data-column="{state}"]')

    def wait_in_column(self, task_id: str, state: str, timeout: float = WAIT_MS) -> None:
        self.page.wait_for_selector(f'.column[data-column="{state}"] .card[data-task-id="{task_id}"]', timeout=timeout)

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"script errors on the page: {self.errors}"


@pytest.fixture
def page(browser: Any, server: HttpServer) -> Iterator[Page]:
    tab = Page(browser, server)
    yield tab
    tab.close()


def task_state(project: Path, task_id: str) -> str:
    return str(json.loads(run_cli(project, "task", "show", task_id, "--json"))["task"]["state"])


def events_of(project: Path, task_id: str) -> list[tuple[str, str]]:
    shown = json.loads(run_cli(project, "task", "show", task_id, "--json"))
    return [(e["kind"], e.get("note") or "") for e in shown.get("recent_events", [])]


def test_dragging_a_card_from_ready_to_blocked_blocks_the_task(project: Path, page: Page) -> None:
    task = add_task(project, "Wire the payment form")
    page.open("board")
    page.card(task).drag_to(page.column("blocked"))
    page.page.wait_for_selector("#reason-dialog[open]")
    page.page.fill("#reason-input", "waiting for the payment provider's sandbox keys")
    page.page.click("#reason-ok")
    page.wait_in_column(task, "blocked")
    page.shot("board-blocked-by-drag")
    assert task_state(project, task) == "blocked"
    assert ("blocked", "waiting for the payment provider's sandbox keys") in events_of(project, task)


def test_an_agent_claiming_in_another_process_moves_the_card_without_reload(project: Path, page: Page) -> None:
    task = add_task(project, "Add rate limiting")
    page.open("board")
    page.wait_in_column(task, "ready")
    page.page.evaluate("window.__notReloaded = true")
    run_cli(project, "task", "claim", task, "--as", "bob")  # another process, another agent
    page.wait_in_column(task, "claimed", timeout=LIVE_MS)
    assert page.page.evaluate("window.__notReloaded") is True
    assert "bob" in page.card(task).inner_text()
    page.shot("board-live-claim")


def test_a_refused_move_snaps_back_and_shows_why(project: Path, page: Page) -> None:
    task = add_task(project, "Migrate the sessions table")
    run_cli(project, "task", "claim", task, "--as", "bob")
    page.open("board")
    page.wait_in_column(task, "claimed")
    page.card(task).drag_to(page.column("done"))
    notice = page.page.locator("#notice")
    notice.wait_for(state="visible")
    assert "only the agent holding a task completes it" in notice.inner_text()
    page.wait_in_column(task, "claimed")
    assert page.column("done").locator(f'[data-task-id="{task}"]').count() == 0
    assert task_state(project, task) == "claimed"
    page.shot("board-refused-move")


def test_a_card_moves_from_the_keyboard(project: Path, page: Page) -> None:
    task = add_task(project, "Write the changelog")
    page.open("board")
    page.card(task).focus()
    page.page.keyboard.press("Shift+ArrowRight")  # ready -> the next column, blocked
    page.page.wait_for_selector("#reason-dialog[open]")
    page.page.fill("#reason-input", "release date not fixed")
    page.page.click("#reason-ok")
    page.wait_in_column(task, "blocked")
    assert task_state(project, task) == "blocked"


def test_the_graph_page_highlights_the_critical_path(project: Path, server: HttpServer, page: Page) -> None:
    design = add_task(project, "Design", "--estimate", "60")
    build = add_task(project, "Build", "--estimate", "120", "--depends-on", design)
    ship = add_task(project, "Ship", "--estimate", "30", "--depends-on", build)
    side = add_task(project, "Side quest", "--estimate", "5")
    page.open("graph")
    critical = page.page.locator("#graph-svg .node.critical")
    assert sorted(critical.evaluate_all("nodes => nodes.map(n => n.dataset.taskId)")) == sorted([design, build, ship])
    assert page.page.locator(f'#graph-svg .node[data-task-id="{side}"]:not(.critical)').count() == 1
    assert page.page.locator("#graph-svg .edge.critical").count() == 2
    expected = httpx2.get(f"{server.url}/api/graph", timeout=30).json()["critical_path"]
    assert expected == [design, build, ship]
    page.shot("graph-critical-path")


def test_every_view_renders_without_script_errors_at_desktop_and_phone_width(
    project: Path, browser: Any, server: HttpServer
) -> None:
    epic = add_task(project, "Checkout epic", "--priority", "1")
    first = add_task(project, "Cart API", "--parent", epic, "--estimate", "30")
    add_task(project, "Cart page", "--parent", epic, "--depends-on", first)
    run_cli(project, "task", "claim", first, "--as", "alice")
    run_cli(project, "reserve", "src/cart/**", "--as", "alice", "--reason", "cart API")
    run_cli(project, "mail", "send", "--to", "alice", "--subject", "Cart API shape?", "--as", "bob")
    for width, height, suffix in ((1280, 800, ""), (390, 844, "-phone")):
        tab = Page(browser, server, width, height)
        for view in VIEWS:
            tab.open(view)
            tab.shot(f"{view}{suffix}")
        overflow = tab.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        tab.close()
        assert overflow <= 1, f"the page is wider than a {width}px screen by {overflow}px"


def test_a_person_sends_mail_from_the_page(project: Path, page: Page) -> None:
    run_cli(project, "agents", "--json")  # the project exists; alice becomes known below
    run_cli(project, "mail", "send", "--to", "*", "--subject", "hi", "--as", "alice")
    tab = page.open("mail")
    tab.fill("#mail-to", "alice")
    tab.fill("#mail-subject", "Please rebase on main")
    tab.fill("#mail-body", "main moved an hour ago")
    tab.click("#mail-send")
    deadline = time.monotonic() + WAIT_MS / 1000
    inbox: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        inbox = json.loads(run_cli(project, "mail", "inbox", "--as", "alice", "--json"))["messages"]
        if any(m["subject"] == "Please rebase on main" for m in inbox):
            break
        time.sleep(0.2)
    assert any(m["subject"] == "Please rebase on main" and m["sender_kind"] == "human" for m in inbox)
