"""The automation editor in the browser (issue 8): from the empty list, a welcome series is made
with a send, a wait and a condition step through the forms, a step is moved, bad input is shown
in its form, the automation is enabled and then listed."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from postroom.accounts.models import Project
from postroom.automations.models import Automation


def add_form(page: Page, kind: str) -> Locator:
    """The add-step form of one kind, opened."""
    details = page.locator(f"#add-{kind}")
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    return details.locator("form")


def descriptions(page: Page) -> Locator:
    return page.locator("ol.automation-steps > li .step-description")


def test_it_builds_moves_enables_and_lists_an_automation(
    logged_in_page: Page, url, project: Project
) -> None:
    page = logged_in_page
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Automations").click()
    expect(page.get_by_role("heading", name="No automations yet")).to_be_visible()
    expect(page.locator(".empty")).to_contain_text("signup confirmed")
    page.locator(".empty").get_by_role("link", name="New automation").click()

    # Settings: the event is suggested, and the tag and segment fields stay out of the way.
    expect(page.get_by_role("heading", name="New automation")).to_be_visible()
    expect(page.locator('#event-names option[value="signup confirmed"]')).to_have_count(1)
    expect(page.get_by_label("Tag", exact=True)).to_be_hidden()
    page.get_by_label("Name").fill("Welcome series")
    page.get_by_label("Event", exact=True).fill("signup confirmed")
    page.get_by_role("button", name="Create automation").click()

    automation = Automation.objects.get(project=project)
    expect(page).to_have_url(url(p=f"automations/{automation.code}/"))
    expect(page.locator(".messages")).to_contain_text("Automation created")
    expect(page.locator("#automation-summary")).to_contain_text(
        "When a contact does “signup confirmed”"
    )
    expect(page.get_by_role("heading", name="No steps yet")).to_be_visible()

    # A send step, then a wait step (at the end).
    form = add_form(page, "send")
    form.get_by_label("Subject").fill("Welcome aboard")
    form.get_by_label("Body (Markdown)").fill("Hello **{{ contact.first_name }}**")
    form.get_by_role("button", name="Add step").click()
    expect(descriptions(page)).to_have_text(["Send “Welcome aboard”"])

    # Bad input comes back in its form, with the field named.
    form = add_form(page, "wait")
    expect(form.get_by_label("Time of day", exact=True)).to_be_hidden()
    form.get_by_label("Until a time of day").check()
    expect(form.get_by_label("Time of day", exact=True)).to_be_visible()
    form.get_by_label("For a time").check()
    form.get_by_role("button", name="Add step").click()
    form = page.locator("#add-wait form")
    expect(form.get_by_role("alert")).to_have_text("amount: a whole number.")
    expect(form.get_by_label("Amount")).to_have_attribute("aria-invalid", "true")
    form.get_by_label("Amount").fill("2")
    form.get_by_label("Unit").select_option("days")
    form.get_by_role("button", name="Add step").click()
    expect(descriptions(page)).to_have_text(["Send “Welcome aboard”", "Wait 2 days"])

    # Move the wait first.
    page.get_by_role("button", name="Move step 2 up").click()
    expect(page.locator(".messages")).to_contain_text("Step 2 moved up.")
    expect(descriptions(page)).to_have_text(["Wait 2 days", "Send “Welcome aboard”"])

    # A condition between them: only VIPs get the email, the others exit.
    form = add_form(page, "condition")
    form.get_by_label("Test").select_option("tag")
    expect(form.get_by_label("Event", exact=True)).to_be_hidden()
    form.get_by_label("Tag", exact=True).fill("vip")
    form.get_by_label("Otherwise").select_option("exit")
    form.get_by_label("Where").select_option(label="After step 1")
    form.get_by_role("button", name="Add step").click()
    expect(descriptions(page)).to_have_text(
        [
            "Wait 2 days",
            "If the contact has the tag “vip”, go on; else exit",
            "Send “Welcome aboard”",
        ]
    )
    condition = page.locator("#step-2")
    expect(condition.locator(".branches")).to_contain_text("Yes: step 3")
    expect(condition.locator(".branches")).to_contain_text("No: exit")
    expect(page.locator("#step-1 .step-waiting")).to_have_text("0 waiting")

    # Enable it.
    page.locator(".page-head").get_by_role("button", name="Enable").click()
    expect(page.locator(".messages")).to_contain_text("Enabled")
    expect(page.locator("#automation-summary .badge")).to_have_text("enabled")
    automation.refresh_from_db()
    assert automation.enabled
    assert [s.kind for s in automation.steps.order_by("position")] == ["wait", "condition", "send"]

    # And it is listed.
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Automations").click()
    row = page.locator("table tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Welcome series")
    expect(row).to_contain_text("When a contact does “signup confirmed”")
    expect(row.locator(".badge")).to_have_text("enabled")
    row.get_by_role("link", name="Welcome series").click()
    expect(page).to_have_url(re.compile(rf"/automations/{automation.code}/$"))
