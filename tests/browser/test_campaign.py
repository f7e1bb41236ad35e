"""A campaign end to end in the browser: write it, see the honest count, send, watch it finish,
and find it in the Mailbox."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from postroom.contacts.actions import create_contact, suppress
from postroom.ops.worker import Worker


def run_worker() -> None:
    worker = Worker(name="browser-test")
    while worker.run_once():
        pass


def test_a_campaign_goes_from_draft_to_finished(logged_in_page: Page, url, project) -> None:
    page = logged_in_page
    for email in ("ann@example.com", "bob@example.com", "cy@example.com"):
        create_contact(project, email)
    suppress(project, "cy@example.com")

    page.goto(url(p="campaigns/"))
    page.get_by_role("link", name="Write your first campaign").click()
    page.locator("#id_name").fill("Launch")
    page.locator("#id_subject").fill("We launched")
    page.locator("#id_body").fill("Hello from Postroom")
    page.get_by_role("button", name="Save").click()

    expect(page.locator("#audience-count")).to_contain_text(
        "Matches 3, will send to 2: 0 not subscribed, 1 suppressed."
    )
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Send now").click()
    expect(page.locator("#campaign-state")).to_have_text("Scheduled")

    run_worker()  # what `postroom worker` does in the background
    # The live part polls: it shows the result without a reload.
    expect(page.locator("#campaign-state")).to_have_text("Finished", timeout=10_000)
    expect(page.locator("#count-sent")).to_have_text("2")

    page.get_by_role("link", name="Recipients").click()
    expect(page.get_by_role("cell", name="ann@example.com")).to_be_visible()
    page.get_by_role("link", name="Mailbox").click()
    expect(page.get_by_role("link", name=re.compile("We launched"))).to_have_count(2)
