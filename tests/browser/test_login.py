from __future__ import annotations

from playwright.sync_api import Page, expect

from postroom.accounts.models import Project, User
from postroom.test import PASSWORD


def fill_login_form(page: Page, email: str, password: str) -> None:
    page.locator("#id_username").fill(email)
    page.locator("#id_password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_it_logs_in_with_the_right_credentials(
    page: Page, live_server, alice: User, project: Project
):
    page.goto(f"{live_server.url}/login/")
    fill_login_form(page, "alice@example.org", PASSWORD)

    expect(page).to_have_url(f"{live_server.url}/p/{project.code}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Alice's project")


def test_it_refuses_a_wrong_password(page: Page, live_server, alice: User, project: Project):
    page.goto(f"{live_server.url}/login/")
    fill_login_form(page, "alice@example.org", "not the password")

    expect(page.locator(".errorlist")).to_contain_text("correct email and password")
    expect(page).to_have_url(f"{live_server.url}/login/")
    expect(page.locator("#id_username")).to_have_value("alice@example.org")
    expect(page.locator("#id_password")).to_have_value("")


def test_it_sends_an_anonymous_visitor_to_the_login_page(
    page: Page, live_server, alice: User, project: Project
):
    contacts = f"/p/{project.code}/contacts/"
    page.goto(f"{live_server.url}{contacts}")

    expect(page).to_have_url(f"{live_server.url}/login/?next={contacts}")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()

    # …and, once logged in, back to the page they asked for.
    fill_login_form(page, "alice@example.org", PASSWORD)
    expect(page).to_have_url(f"{live_server.url}{contacts}")
    expect(page.get_by_role("heading", name="Contacts", level=1)).to_be_visible()
