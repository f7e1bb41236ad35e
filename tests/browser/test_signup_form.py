"""A signup form with double opt-in in the browser (issue 8): made on the dashboard, filled in
on its hosted page by a visitor, confirmed through the link in the email that the Mailbox (the
project's default sender) kept, and the contact subscribed with the form's tag."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from postroom.accounts.models import Project
from postroom.contacts.models import Contact, Status
from postroom.test import drain

LINK = re.compile(r"https?://\S+/f/confirm/[\w-]+")


def nav(page: Page, name: str):
    return page.get_by_role("navigation", name="Project").get_by_role("link", name=name)


@pytest.fixture(autouse=True)
def site_url(settings, live_server) -> None:
    # Links in mail are built from SITE_URL: here, the live server.
    settings.SITE_URL = live_server.url


def test_a_visitor_signs_up_confirms_by_email_and_is_subscribed(
    logged_in_page: Page, new_page: Callable[..., Page], url, project: Project
) -> None:
    page = logged_in_page
    nav(page, "Signup forms").click()
    expect(page.get_by_role("heading", name="No signup forms yet")).to_be_visible()
    page.get_by_role("link", name="Create a signup form").click()
    page.get_by_label("Name (for you)").fill("Newsletter")
    page.locator("#id_asked").get_by_label("First name").check()
    page.get_by_label("Tags to apply").fill("newsletter")
    expect(page.get_by_label("Double opt-in: email a confirmation link first")).to_be_checked()
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".messages")).to_contain_text("Signup form “Newsletter” saved.")
    expect(page.locator("#embed-snippet")).to_contain_text('<form method="post"')
    hosted = page.locator("#hosted-url").inner_text()

    # A visitor, not logged in, fills the hosted form.
    visitor = new_page()
    visitor.goto(hosted)
    expect(visitor.get_by_role("heading", name="Newsletter")).to_be_visible()
    visitor.get_by_label("Email").fill("ann@example.com")
    visitor.get_by_label("First name").fill("Ann")
    visitor.get_by_role("button", name="Subscribe").click()
    expect(visitor.get_by_role("status")).to_contain_text("we sent you an email")
    assert not Contact.objects.filter(project=project).exists()

    # The worker sends the confirmation through the Mailbox, where alice finds it.
    assert drain() >= 1
    nav(page, "Mailbox").click()
    page.get_by_role("link", name=re.compile("Please confirm your subscription")).click()
    text = page.locator("pre").first.inner_text()
    link = LINK.search(text)
    assert link, text

    # The visitor opens the link: asked first (scanners open links too), then confirmed.
    visitor.goto(link.group(0))
    expect(visitor.get_by_text("ann@example.com")).to_be_visible()
    visitor.get_by_role("button", name="Yes, subscribe me").click()
    expect(visitor.get_by_role("status")).to_contain_text("your subscription is confirmed")

    # The contact is subscribed, with the form's tag; the form lists the signup as confirmed.
    page.goto(url(p="contacts/"))
    row = page.locator("tr").filter(has_text="ann@example.com")
    expect(row).to_contain_text("Subscribed")
    expect(row).to_contain_text("newsletter")
    contact = Contact.objects.get(project=project, email="ann@example.com")
    assert (contact.status, contact.first_name, contact.consent_source) == (
        Status.SUBSCRIBED,
        "Ann",
        "form",
    )
    nav(page, "Signup forms").click()
    page.get_by_role("link", name="Newsletter").click()
    signup = page.locator("tr").filter(has_text="ann@example.com")
    expect(signup).to_contain_text("Confirmed")
    expect(signup).to_contain_text("Sent")
