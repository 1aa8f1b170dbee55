"""The reviewer UI in a real browser (Debian's chromium, headless) against a real server: log
in, open the queue, label three items with the keyboard alone, and find the three labels in
the log, with no console error on any page."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from modelminder.project import load_project
from modelminder.serving.app import create_app
from modelminder.serving.service import Service

from ..review.factories import queued_project

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="BROWSER TEST NOT RUN: Debian's chromium is missing (/usr/bin/chromium); "
    "`make install` installs it (apt-get install chromium).",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, Service]]:
    """``minder serve`` in a thread: uvicorn on a free loopback port over a project whose
    queue holds three blocked events. Yields the base URL, a reviewer token, the service."""
    root = queued_project(tmp_path / "p")
    service = Service(load_project(root))
    token = service.store.create_token("reviewer")
    port = _free_port()
    config = uvicorn.Config(
        create_app(service), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", token, service
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        service.close()


def test_a_reviewer_labels_three_items_with_the_keyboard(
    served: tuple[str, str, Service],
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    base, token, service = served
    problems: list[str] = []
    elsewhere: list[str] = []

    def local_only(route: Any) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:  # the pages work offline: nothing is fetched from anywhere else
            elsewhere.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.route("**/*", local_only)

            page.goto(f"{base}/review/")  # no session: the login page
            assert page.url == f"{base}/review/login"
            page.fill('input[name="token"]', token)
            page.click('button[type="submit"]')
            page.wait_for_url(f"{base}/review/")
            assert page.locator("table.queue tbody tr").count() == 3

            with page.expect_navigation():
                page.keyboard.press("n")  # claim the next item
            first = page.url
            assert "/review/items/" in first
            for key, then in (("f", "items"), ("l", "items"), ("f", "?notice=no-next")):
                page.wait_for_selector("#label-form")
                with page.expect_navigation():
                    page.keyboard.press(key)
                assert then in page.url, page.url
            assert page.get_by_text("There is no next item for you").is_visible()
        finally:
            browser.close()

    labels = service.log.read("labels")
    reviewed = labels.filter(labels.get_column("source") == "review")
    assert sorted(reviewed.get_column("is_fraud").to_list()) == [0.0, 1.0, 1.0]
    assert reviewed.get_column("event_id").n_unique() == 3
    assert problems == [] and elsewhere == []
