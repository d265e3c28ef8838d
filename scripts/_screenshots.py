"""Screenshots of every dashboard view for docs/: a demo swarm's project, some work in flight, a
real `jetpack serve --http`, and headless Chromium (see ./scripts/screenshots)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "docs" / "images"
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from browser import launch  # noqa: E402

VIEWS = ("board", "tree", "graph", "agents", "mail", "reservations", "memory", "quality", "metrics")


def jetpack(project: Path, *args: str) -> str:
    env = {**os.environ, "JETPACK_PROJECT_DIR": str(project)}
    done = subprocess.run(
        [sys.executable, "-m", "jetpack", *args], check=False, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"jetpack {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def work_in_flight(project: Path) -> None:
    """After the demo swarm finished the sample plan: a second plan, half-way through."""
    plan = project / "plan2.md"
    plan.write_text(
        "# Search\n\n"
        "## Index the notes [est: 40m] [ref: index]\n"
        "## Query parser [est: 30m] [ref: parser]\n"
        "## Ranking [est: 60m] [depends: index, parser] [ref: rank]\n"
        "## Search page [est: 45m] [depends: rank] [skills: web]\n"
        "## Search docs [est: 15m] [depends: rank]\n\n"
        "# Sharing\n\n"
        "## Share links [est: 30m]\n"
        "## Access checks [est: 50m] [depends: Share links] [p1]\n"
        "## Audit trail [est: 20m]\n"
    )
    jetpack(project, "load", str(plan))
    tasks = json.loads(jetpack(project, "task", "list", "--json"))["tasks"]
    ready = [t["id"] for t in tasks if t["state"] == "ready"]
    jetpack(project, "task", "claim", ready[0], "--as", "swift-otter")
    jetpack(project, "task", "claim", ready[1], "--as", "calm-heron")
    jetpack(project, "task", "block", ready[2], "--reason", "needs the storage decision from the team lead")
    jetpack(project, "reserve", "src/search/**", "--as", "swift-otter", "--reason", "indexing")
    jetpack(project, "reserve", "src/search/parser.py", "--as", "calm-heron", "--reason", "query parser")
    jetpack(
        project,
        "mail",
        "send",
        "--to",
        "calm-heron",
        "--subject",
        "Parser and index share src/search",
        "--body",
        "I hold src/search/** while indexing; parser.py is yours.",
        "--as",
        "swift-otter",
    )
    jetpack(project, "memory", "add", "The notes index is rebuilt incrementally from git diff; never full rescans.")


def main() -> None:
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="jetpack-shots-"))
    project = root / "demo"
    print(f"demo project: {project}")
    subprocess.run([sys.executable, "-m", "jetpack", "demo", str(project)], check=True, capture_output=True)
    work_in_flight(project)
    port = free_port()
    env = {**os.environ, "JETPACK_PROJECT_DIR": str(project)}
    server = subprocess.Popen(
        [sys.executable, "-m", "jetpack", "serve", "--http", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        IMAGES.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = launch(playwright)
            for width, height, suffix in ((1280, 800, ""), (390, 844, "-phone")):
                page = browser.new_page(viewport={"width": width, "height": height})
                for view in VIEWS if not suffix else ("board",):
                    page.goto(f"{url}/#/{view}")
                    page.wait_for_selector(f'body[data-view="{view}"][data-ready="1"]', timeout=30_000)
                    if view == "memory":
                        page.fill("#memory-q", "how is the index rebuilt")
                        page.keyboard.press("Enter")
                        page.wait_for_timeout(1500)
                    page.wait_for_timeout(300)
                    page.screenshot(path=str(IMAGES / f"dashboard-{view}{suffix}.png"))
                    print(f"  docs/images/dashboard-{view}{suffix}.png")
                page.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
