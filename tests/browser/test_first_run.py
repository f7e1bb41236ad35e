"""The first-run journey of the acceptance: the admin that `postroom up` prints logs in,
creates a project, adds contacts, builds a segment and sees its count."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from postroom.accounts.actions import create_first_admin


def add_contact(page: Page, email: str, first_name: str) -> None:
    page.get_by_role("link", name="Contacts", exact=True).click()
    page.get_by_role("link", name=re.compile(r"Add (a )?contact")).first.click()
    page.locator("#id_email").fill(email)
    page.locator("#id_first_name").fill(first_name)
    page.get_by_role("button", name="Add contact").click()
    expect(page.get_by_text(f"{email} added.")).to_be_visible()


def test_a_new_admin_goes_from_login_to_a_segment_count(
    live_server, transactional_db, page: Page
) -> None:
    email, password = create_first_admin()
    page.goto(f"{live_server.url}/login/")
    page.locator("#id_username").fill(email)
    page.locator("#id_password").fill(password)
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_text("You are not in any project yet")).to_be_visible()
    page.locator("#id_name").fill("Newsletter")
    page.get_by_role("button", name="Create project").click()
    expect(page.locator("#new-secret-key")).to_have_text(re.compile(r"^sk_[0-9a-f]{48}$"))

    add_contact(page, "ann@example.com", "Ann")
    add_contact(page, "bob@example.com", "Bob")

    page.get_by_role("link", name="Segments").click()
    page.get_by_role("link", name="Build your first segment").click()
    expect(page.locator("#match-total")).to_have_text("2")
    page.get_by_role("button", name="+ Rule").click()
    rule = page.locator(".rule").first
    rule.get_by_label("Condition").select_option("first_name")
    rule.get_by_label("Operator").select_option("equals")
    rule.get_by_label("Value").fill("ann")
    expect(page.locator("#match-total")).to_have_text("1")
    expect(page.locator("#segment-preview")).to_contain_text("ann@example.com")
    page.locator("#id_name").fill("Anns")
    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_text("Segment “Anns” saved.")).to_be_visible()

    page.get_by_role("link", name="Overview").click()
    expect(page.locator("#figure-total")).to_have_text("2")
