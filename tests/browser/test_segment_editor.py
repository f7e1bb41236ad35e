from __future__ import annotations

import pytest
from playwright.sync_api import Locator, Page, expect

from postroom.accounts.models import Project
from postroom.contacts.actions import create_contact
from postroom.contacts.models import Segment, Status


@pytest.fixture
def contacts(project: Project) -> None:
    create_contact(project, "ann@example.com", first_name="Ann", last_name="Smith")
    create_contact(project, "ann@example.org", first_name="Ann", last_name="Jones")
    create_contact(project, "annie@example.com", first_name="Annie", last_name="Smith")
    create_contact(
        project, "bob@example.com", first_name="Bob", last_name="Smith", status=Status.UNSUBSCRIBED
    )


def rule(page: Page, path: str) -> Locator:
    """One condition row or group, by the path the editor and the server both use."""
    return page.locator(f'#rule-editor [data-path="{path}"]')


def set_rule(row: Locator, condition: str, operator: str, value: str | None = None) -> None:
    row.get_by_label("Condition").select_option(label=condition)
    row.get_by_label("Operator").select_option(label=operator)
    if value is not None:
        row.get_by_label("Value").fill(value)


def group_head(page: Page, path: str) -> Locator:
    return page.locator(f'#rule-editor [data-path="{path}"] > .group-head')


def open_new_segment(page: Page, url) -> None:
    page.goto(url(p=""))
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Segments").click()
    page.get_by_role("link", name="New segment").click()
    expect(page.get_by_role("heading", name="New segment", level=1)).to_be_visible()


def test_it_builds_counts_and_saves_a_segment(
    logged_in_page: Page, url, project: Project, contacts
):
    page = logged_in_page
    open_new_segment(page, url)
    count = page.locator("#segment-count")
    total = page.locator("#match-total")

    # No rules: everyone matches.
    expect(count).to_contain_text("Matches 4 contacts, 3 subscribed.")

    page.get_by_role("button", name="+ Rule").click()
    set_rule(rule(page, "rules[0]"), "First name", "is", "ann")
    expect(total).to_have_text("2")
    expect(page.locator("#segment-preview li")).to_have_count(2)

    # A nested group, "any" of: last name is Smith, email contains example.org.
    page.get_by_role("button", name="+ Group").click()
    group_head(page, "rules[1]").get_by_label("Match").select_option("any")
    set_rule(rule(page, "rules[1].rules[0]"), "Last name", "is", "Smith")
    expect(total).to_have_text("1")
    rule(page, "rules[1]").get_by_role("button", name="+ Rule").click()
    set_rule(rule(page, "rules[1].rules[1]"), "Email", "contains", "example.org")
    expect(total).to_have_text("2")

    page.locator("#id_name").fill("Ann, Smith or .org")
    page.get_by_role("button", name="Save segment").click()

    expect(page.locator(".messages")).to_have_text("Segment “Ann, Smith or .org” saved.")
    segment = Segment.objects.get(project=project)
    expect(page).to_have_url(url(p=f"segments/{segment.code}/"))
    saved = {
        "match": "all",
        "rules": [
            {"kind": "first_name", "op": "equals", "value": "ann"},
            {
                "match": "any",
                "rules": [
                    {"kind": "last_name", "op": "equals", "value": "Smith"},
                    {"kind": "email", "op": "contains", "value": "example.org"},
                ],
            },
        ],
    }
    assert segment.rules == saved

    page.reload()
    expect(page.locator("#id_name")).to_have_value("Ann, Smith or .org")
    expect(group_head(page, "").get_by_label("Match")).to_have_value("all")
    expect(group_head(page, "rules[1]").get_by_label("Match")).to_have_value("any")
    for path, (kind, op, value) in {
        "rules[0]": ("first_name", "equals", "ann"),
        "rules[1].rules[0]": ("last_name", "equals", "Smith"),
        "rules[1].rules[1]": ("email", "contains", "example.org"),
    }.items():
        row = rule(page, path)
        expect(row.get_by_label("Condition")).to_have_value(kind)
        expect(row.get_by_label("Operator")).to_have_value(op)
        expect(row.get_by_label("Value")).to_have_value(value)
    expect(page.locator("#rule-editor .rule")).to_have_count(3)
    expect(total).to_have_text("2")


def test_it_shows_an_invalid_rule_instead_of_a_count(
    logged_in_page: Page, url, project: Project, contacts
):
    page = logged_in_page
    open_new_segment(page, url)
    count = page.locator("#segment-count")
    expect(count).to_contain_text("Matches 4 contacts")

    page.get_by_role("button", name="+ Rule").click()
    set_rule(rule(page, "rules[0]"), "Created date", "within the last N days")
    expect(rule(page, "rules[0]").get_by_label("Value")).to_have_value("")

    expect(count.locator(".error")).to_have_text("Rule 1: needs a number.")
    expect(page.locator("#match-total")).to_have_count(0)
    expect(rule(page, "rules[0]")).to_have_class("rule invalid")

    page.locator("#id_name").fill("Recent")
    page.get_by_role("button", name="Save segment").click()

    expect(page.locator("#rule-error")).to_have_text("Rule 1: needs a number.")
    expect(page.locator(".messages")).to_have_count(0)
    assert not Segment.objects.filter(project=project).exists()
    # The editor comes back with the rule as it was, outlined, ready to be fixed.
    expect(page.locator("#id_name")).to_have_value("Recent")
    row = rule(page, "rules[0]")
    expect(row.get_by_label("Condition")).to_have_value("created_at")
    expect(row.get_by_label("Operator")).to_have_value("within_days")
    expect(row).to_have_class("rule invalid")

    # Fixing it brings the count back and clears the outline and the error from the save.
    row.get_by_label("Value").fill("30")
    expect(page.locator("#match-total")).to_have_text("4")
    expect(row).to_have_class("rule")
    expect(page.locator("#rule-error")).to_be_hidden()
    page.get_by_role("button", name="Save segment").click()
    expect(page.locator(".messages")).to_have_text("Segment “Recent” saved.")
    assert Segment.objects.get(project=project).rules == {
        "match": "all",
        "rules": [{"kind": "created_at", "op": "within_days", "value": 30}],
    }


def test_it_counts_a_rule_left_at_its_default_value(logged_in_page: Page, url, contacts):
    page = logged_in_page
    open_new_segment(page, url)
    expect(page.locator("#match-total")).to_have_text("4")

    page.get_by_role("button", name="+ Rule").click()
    row = rule(page, "rules[0]")
    row.get_by_label("Condition").select_option(label="Status")

    # The value list starts at "subscribed", and that is what is counted.
    expect(row.get_by_label("Status")).to_have_value("subscribed")
    expect(page.locator("#match-total")).to_have_text("3")
