from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from postroom.accounts.models import Project
from postroom.contacts.actions import create_contact, create_field
from postroom.contacts.models import Contact


@pytest.fixture
def ann(project: Project) -> Contact:
    create_field(project, "age", "Age", "number")
    return create_contact(project, "ann@example.com", first_name="Ann", data={"age": 30})


def open_contact(page: Page, url, email: str) -> None:
    page.goto(url(p="contacts/"))
    page.get_by_role("link", name=email, exact=True).click()
    expect(page.get_by_role("heading", name=email, level=1)).to_be_visible()


def test_it_saves_a_name_and_a_custom_field(logged_in_page: Page, url, ann: Contact):
    page = logged_in_page
    open_contact(page, url, "ann@example.com")
    expect(page.locator("#id_data__age")).to_have_value("30")

    page.locator("#id_first_name").fill("Annie")
    page.locator("#id_data__age").fill("42")
    page.get_by_role("button", name="Save").click()

    expect(page.locator(".messages")).to_have_text("Saved.")
    expect(page.locator("#id_first_name")).to_have_value("Annie")
    expect(page.locator("#id_data__age")).to_have_value("42")
    ann.refresh_from_db()
    assert (ann.first_name, ann.data) == ("Annie", {"age": 42})


def test_it_refuses_a_bad_number_and_saves_nothing(logged_in_page: Page, url, ann: Contact):
    page = logged_in_page
    open_contact(page, url, "ann@example.com")

    page.locator("#id_email").fill("annie@example.com")
    page.locator("#id_first_name").fill("Annie")
    page.locator("#id_data__age").fill("lots")
    page.get_by_role("button", name="Save").click()

    # The error sits under the field it is about, whose label names it.
    age = page.locator(".field").filter(has=page.locator("#id_data__age"))
    expect(age.locator("label")).to_have_text("Age (age):")
    expect(age.locator(".errorlist")).to_have_text("expected a number, got 'lots'.")
    expect(page.locator(".messages")).to_have_count(0)
    # What was typed stays in the form to be corrected…
    expect(page.locator("#id_data__age")).to_have_value("lots")
    expect(page.locator("#id_first_name")).to_have_value("Annie")
    # …but nothing was saved, and the page still shows the stored contact.
    ann.refresh_from_db()
    assert (ann.email, ann.first_name, ann.data) == ("ann@example.com", "Ann", {"age": 30})
    expect(page.get_by_role("heading", level=1)).to_have_text("ann@example.com")


def test_it_deletes_a_contact_after_confirming(
    logged_in_page: Page, url, project: Project, ann: Contact
):
    create_contact(project, "bob@example.com")
    page = logged_in_page
    open_contact(page, url, "ann@example.com")

    page.get_by_role("link", name="Delete…").click()
    expect(page.get_by_role("heading", name="Erase ann@example.com?")).to_be_visible()
    assert Contact.objects.filter(id=ann.id).exists()  # the link only asks
    page.get_by_role("button", name="Erase for good").click()

    expect(page).to_have_url(url(p="contacts/"))
    expect(page.locator(".messages")).to_have_text(
        "ann@example.com and everything about them was erased."
    )
    expect(page.get_by_role("link", name="ann@example.com")).to_have_count(0)
    expect(page.get_by_role("link", name="bob@example.com")).to_be_visible()
    assert not Contact.objects.filter(id=ann.id).exists()
