from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from postroom.accounts.models import Project, User
from postroom.contacts.actions import create_contact
from postroom.contacts.models import Contact


def row(page: Page, email: str):
    return page.locator("tbody tr").filter(has=page.get_by_role("link", name=email, exact=True))


def test_it_shows_the_empty_state(logged_in_page: Page, url, project: Project):
    page = logged_in_page
    page.goto(url(p="contacts/"))

    expect(page.get_by_role("heading", name="No contacts yet")).to_be_visible()
    add = page.get_by_role("link", name="Add a contact", exact=True)
    expect(add).to_have_attribute("href", f"/p/{project.code}/contacts/new/")


def test_it_adds_a_contact_through_the_form(logged_in_page: Page, url, project: Project):
    page = logged_in_page
    page.goto(url(p="contacts/"))
    page.get_by_role("link", name="Add contact", exact=True).click()

    page.locator("#id_email").fill("Ann@Example.com")
    page.locator("#id_first_name").fill("Ann")
    page.locator("#id_last_name").fill("Smith")
    page.locator("#id_status").select_option("subscribed")
    page.locator("#id_tags").fill("customer, beta")
    page.get_by_role("button", name="Add contact").click()

    expect(page.locator(".messages")).to_contain_text("ann@example.com added.")
    contact = Contact.objects.get(project=project)
    assert (contact.email, contact.first_name, contact.last_name) == (
        "ann@example.com",
        "Ann",
        "Smith",
    )

    page.get_by_role("navigation", name="Project").get_by_role("link", name="Contacts").click()
    ann = row(page, "ann@example.com")
    expect(ann).to_contain_text("Ann Smith")
    expect(ann).to_contain_text("Subscribed")
    expect(ann.locator(".tag")).to_have_text(["beta", "customer"])  # tags sort by name
    expect(page.locator("#contact-count")).to_have_text("1 contact.")


def test_it_searches_and_counts(logged_in_page: Page, url, project: Project):
    create_contact(project, "ann@example.com", first_name="Ann")
    create_contact(project, "anna@example.org", first_name="Anna")
    create_contact(project, "bob@example.com", first_name="Bob")
    page = logged_in_page
    page.goto(url(p="contacts/"))
    expect(page.locator("#contact-count")).to_have_text("3 contacts.")
    expect(page.locator("tbody tr")).to_have_count(3)

    page.get_by_role("searchbox", name="Search").fill("ann")
    page.get_by_role("button", name="Filter").click()

    expect(page.locator("#contact-count")).to_have_text("2 contacts match.")
    expect(page.locator("tbody tr")).to_have_count(2)
    expect(row(page, "bob@example.com")).to_have_count(0)
    expect(page.get_by_role("searchbox", name="Search")).to_have_value("ann")

    page.get_by_role("searchbox", name="Search").fill("bob@")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#contact-count")).to_have_text("1 contact matches.")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(row(page, "bob@example.com")).to_be_visible()


def test_it_tags_the_ticked_contacts(logged_in_page: Page, url, project: Project):
    for email in ("ann@example.com", "bob@example.com", "cat@example.com"):
        create_contact(project, email)
    page = logged_in_page
    page.goto(url(p="contacts/"))
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))

    page.get_by_label("Tick ann@example.com").check()
    page.get_by_label("Tick cat@example.com").check()
    page.locator("#bulk-action").select_option(label="Add tag")
    page.locator("#bulk-tag").fill("vip")
    page.get_by_role("button", name="Apply").click()

    expect(page.locator(".messages")).to_contain_text("Add tag: 2 contacts.")
    assert dialogs == ["Add tag: 2 ticked contact(s)?"]
    expect(row(page, "ann@example.com").locator(".tag")).to_have_text(["vip"])
    expect(row(page, "cat@example.com").locator(".tag")).to_have_text(["vip"])
    expect(row(page, "bob@example.com").locator(".tag")).to_have_count(0)
    tagged = Contact.objects.filter(project=project, tags__name="vip").values_list(
        "email", flat=True
    )
    assert sorted(tagged) == ["ann@example.com", "cat@example.com"]


def test_it_pages_through_older_and_newer_contacts(logged_in_page: Page, url, project: Project):
    for i in range(60):
        create_contact(project, f"c{i:02d}@example.com")
    page = logged_in_page
    page.goto(url(p="contacts/"))
    emails = page.locator("tbody tr td:nth-child(2)")

    # Newest first: c59 … c10 on the first page, no way to go newer.
    expect(emails).to_have_count(50)
    expect(emails.first).to_have_text("c59@example.com")
    expect(emails.last).to_have_text("c10@example.com")
    expect(page.get_by_role("link", name="← Newer")).to_have_count(0)

    page.get_by_role("link", name="Older →").click()
    expect(emails).to_have_text([f"c{i:02d}@example.com" for i in range(9, -1, -1)])
    expect(page.get_by_role("link", name="Older →")).to_have_count(0)

    page.get_by_role("link", name="← Newer").click()
    expect(emails).to_have_count(50)
    expect(emails.first).to_have_text("c59@example.com")
    expect(emails.last).to_have_text("c10@example.com")
    expect(page.get_by_role("link", name="← Newer")).to_have_count(0)
    expect(page.get_by_role("link", name="Older →")).to_be_visible()


def test_it_fits_a_phone_screen_without_sideways_scrolling(
    new_page: Callable[..., Page], log_in, url, alice: User, project: Project
):
    create_contact(
        project,
        "a.very.long.address.for.a.narrow.screen@subdomain.example.com",
        first_name="Maximiliana",
        last_name="Featherstonehaugh-Cholmondeley",
        tags=["customer", "beta-programme", "newsletter"],
    )
    create_contact(project, "bob@example.com", first_name="Bob")
    page = new_page(viewport={"width": 390, "height": 844})
    log_in(page, alice)
    page.goto(url(p="contacts/"))
    expect(page.locator("#contact-count")).to_have_text("2 contacts.")

    scroll_width, inner_width = page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert scroll_width <= inner_width + 1, (
        f"the page is {scroll_width}px wide on a {inner_width}px screen"
    )
