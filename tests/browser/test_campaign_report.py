"""A campaign's report in the browser: the figures, the clicks per link and the uPlot chart
really drawn (a canvas, a legend, no JavaScript errors), scanners' hits left out until asked
for; a draft's empty state; and the way there from the campaign page."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import ConsoleMessage, Error, Page, expect

from postroom.accounts.models import Project
from postroom.campaigns import actions
from postroom.campaigns.models import Campaign
from postroom.contacts.actions import create_contact
from postroom.delivery.actions import default_sender
from postroom.test import drain
from postroom.tracking.models import Event

LINK_A = "https://example.com/a"
LINK_B = "https://example.com/b"
# How many of a canvas's pixels something was drawn on (uPlot draws axes, grid and lines).
PAINTED_PIXELS = """c => {
  const pixels = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) painted++;
  return painted;
}"""


def make_campaign(project: Project, name: str = "Spring sale") -> Campaign:
    """A draft campaign through the project's default sender (the Mailbox)."""
    sender = default_sender(project)
    return Campaign.objects.create(
        project=project,
        sender=sender,
        from_email=sender.from_email,
        name=name,
        subject="Spring is here",
        body="Hello",
    )


def sent_campaign(project: Project, n: int = 3) -> Campaign:
    """A campaign started and sent to n contacts (c0@ … c<n-1>@example.com)."""
    for i in range(n):
        create_contact(project, f"c{i}@example.com")
    campaign = make_campaign(project)
    actions.start(campaign)
    actions.start_due_campaigns()
    drain()
    campaign.refresh_from_db()
    assert campaign.email_id is not None
    return campaign


def hit(campaign: Campaign, kind: str, message, **fields) -> None:
    Event.objects.create(
        project=campaign.project,
        kind=kind,
        email_id=campaign.email_id,
        message=message,
        contact_id=message.contact_id,
        **fields,
    )


@pytest.fixture
def js_errors(page: Page) -> list[str]:
    """Uncaught exceptions and console errors (a static file that fails to load is one)."""
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"console: {message.text} ({message.location.get('url')})")

    def on_pageerror(error: Error) -> None:
        errors.append(f"pageerror: {error.message}\n{error.stack}")

    page.on("console", on_console)
    page.on("pageerror", on_pageerror)
    return errors


def report_url(url, campaign: Campaign) -> str:
    return url(p=f"campaigns/{campaign.code}/report/")


def figure(page: Page, label: str):
    """One of the figures across the top, by its label ("Opened (2 unique) · 66.7%")."""
    return page.locator(".figures .figure").filter(
        has=page.locator("span", has_text=re.compile(rf"^{re.escape(label)}\b"))
    )


def expect_figure(page: Page, label: str, total: int, rest: str = "") -> None:
    box = figure(page, label)
    expect(box).to_have_count(1)
    expect(box.locator("strong")).to_have_text(str(total))
    expect(box.locator("span")).to_have_text(f"{label}{rest}")


def link_rows(page: Page):
    panel = page.locator(".panel").filter(has=page.get_by_role("heading", name="Clicks per link"))
    return panel.locator("tbody tr")


def expect_chart(page: Page, legend: list[str]) -> None:
    chart = page.locator("#report-chart")
    canvas = chart.locator("canvas")
    expect(canvas).to_have_count(1)
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0, box
    size = canvas.evaluate("c => [c.width, c.height]")  # the drawing buffer, not just CSS
    assert size[0] > 0 and size[1] > 0, size
    assert canvas.evaluate(PAINTED_PIXELS) > 0, "the chart's canvas is blank"
    labels = chart.locator(".u-legend .u-series .u-label")
    for name in legend:
        expect(labels.filter(has_text=re.compile(rf"^{name}$"))).to_have_count(1)


def chart_data(page: Page) -> dict:
    return json.loads(page.locator("#report-data").text_content() or "null")


# --- a sent campaign --------------------------------------------------------------------------


def test_a_sent_campaign_shows_figures_links_and_a_drawn_chart(
    logged_in_page: Page, url, project: Project, js_errors: list[str]
) -> None:
    campaign = sent_campaign(project, 3)
    first, second, third = campaign.email.messages.order_by("id")
    for _ in range(3):
        hit(campaign, Event.Kind.OPENED, first)
    hit(campaign, Event.Kind.OPENED, second)
    hit(campaign, Event.Kind.OPENED, second, machine=True)
    hit(campaign, Event.Kind.OPENED, third, machine=True)
    hit(campaign, Event.Kind.CLICKED, first, url=LINK_A)
    hit(campaign, Event.Kind.CLICKED, first, url=LINK_A)
    hit(campaign, Event.Kind.CLICKED, second, url=LINK_B)
    hit(campaign, Event.Kind.CLICKED, third, url=LINK_B, machine=True)

    page = logged_in_page
    page.goto(report_url(url, campaign))
    expect(page.get_by_role("heading", name="Report: Spring sale")).to_be_visible()
    expect(page.get_by_text("Nothing to report yet")).to_have_count(0)

    # Scanners left out: 4 opens by 2 of 3 recipients, 3 clicks by 2.
    expect_figure(page, "Sent", 3)
    expect_figure(page, "Opened", 4, " (2 unique) · 66.7%")
    expect_figure(page, "Clicked", 3, " (2 unique) · 66.7%")
    expect(page.get_by_text("3 opens and clicks by likely scanners")).to_be_visible()

    rows = link_rows(page)
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("td")).to_have_text([LINK_A, "2", "1"])
    expect(rows.nth(1).locator("td")).to_have_text([LINK_B, "1", "1"])
    expect(rows.nth(0).get_by_role("link", name=LINK_A)).to_have_attribute("href", LINK_A)

    expect_chart(page, ["Sent", "Opened", "Clicked"])
    data = chart_data(page)
    assert data["bucket"] == "hour"
    assert (sum(data["series"]["sent"]), sum(data["series"]["opened"])) == (3, 4)
    assert sum(data["series"]["clicked"]) == 3
    assert js_errors == []

    # "Include them" counts the scanners' hits too.
    page.get_by_role("link", name="Include them").click()
    expect(page).to_have_url(re.compile(r"/report/\?machines=1$"))
    expect_figure(page, "Sent", 3)
    expect_figure(page, "Opened", 6, " (3 unique) · 100.0%")
    expect_figure(page, "Clicked", 4, " (3 unique) · 100.0%")
    expect(page.get_by_text("Opens and clicks by likely scanners are included.")).to_be_visible()
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("td")).to_have_text([LINK_A, "2", "1"])
    expect(rows.nth(1).locator("td")).to_have_text([LINK_B, "2", "2"])
    expect_chart(page, ["Sent", "Opened", "Clicked"])
    assert sum(chart_data(page)["series"]["opened"]) == 6

    # … and "Leave them out" goes back.
    page.get_by_role("link", name="Leave them out").click()
    expect(page).to_have_url(re.compile(r"/report/\??$"))
    expect_figure(page, "Opened", 4, " (2 unique) · 66.7%")
    expect(page.get_by_role("link", name="Include them")).to_be_visible()
    expect_chart(page, ["Sent", "Opened", "Clicked"])
    assert js_errors == []


# --- a draft ----------------------------------------------------------------------------------


def test_a_draft_has_an_empty_report_without_errors(
    logged_in_page: Page, url, project: Project, js_errors: list[str]
) -> None:
    campaign = make_campaign(project, "Not yet")
    page = logged_in_page
    page.goto(report_url(url, campaign))
    expect(page.get_by_role("heading", name="Report: Not yet")).to_be_visible()

    empty = page.locator(".panel.empty")
    expect(empty.get_by_role("heading", name="Nothing to report yet")).to_be_visible()
    expect(empty).to_contain_text("The campaign has not been sent.")
    expect(page.locator("#report-chart")).to_have_count(0)
    expect(page.locator("#report-chart canvas, .u-legend")).to_have_count(0)
    expect(page.locator(".figures")).to_have_count(0)
    page.wait_for_load_state("load")  # every script has run
    assert js_errors == []


# --- the way there ----------------------------------------------------------------------------


def test_the_campaign_page_leads_to_the_report(
    logged_in_page: Page, url, project: Project, js_errors: list[str]
) -> None:
    campaign = sent_campaign(project, 2)
    page = logged_in_page
    page.goto(url(p=f"campaigns/{campaign.code}/"))
    # Sent (drain() runs the send loop; marking it finished is the worker's, not needed here).
    expect(page.locator("#campaign-done")).to_have_text("2")

    page.get_by_role("link", name="Report", exact=True).click()
    expect(page).to_have_url(report_url(url, campaign))
    expect(page.get_by_role("heading", name="Report: Spring sale")).to_be_visible()
    expect_figure(page, "Sent", 2)
    expect_figure(page, "Opened", 0, " (0 unique) · 0.0%")
    expect(link_rows(page)).to_have_count(0)
    expect(page.get_by_text("No clicks yet.")).to_be_visible()
    expect_chart(page, ["Sent"])

    # And back.
    page.get_by_role("link", name="Campaign", exact=True).click()
    expect(page).to_have_url(url(p=f"campaigns/{campaign.code}/"))
    assert js_errors == []
