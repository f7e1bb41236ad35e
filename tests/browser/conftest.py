"""Browser tests: Playwright driving Debian's Chromium against pytest-django's live_server.

Every test under tests/browser is marked `browser` (deselect with `-m "not browser"`) and is
skipped when /usr/bin/chromium is missing. One browser per session; each test gets fresh
contexts and pages, which fail within PAGE_TIMEOUT_MS instead of hanging, and leave a
screenshot in test-artifacts/ when the test fails.

Personas match postroom/test.py: alice owns "Alice's project", bob is a member of it, charlie
is an outsider with a project of his own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from postroom.accounts.actions import create_project
from postroom.accounts.models import Membership, Project, Role, User
from postroom.test import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
# Without the networking switches Chromium keeps dialling Google services and stalls on the
# refused connections (this machine only has loopback).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NO_CHROMIUM = f"{CHROMIUM} not found: install Debian's Chromium with `apt-get install chromium`"
PAGE_TIMEOUT_MS = 10_000
HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE.parents[1] / "test-artifacts"

expect.set_options(timeout=PAGE_TIMEOUT_MS)


# --- collection: mark and maybe skip everything in this directory -------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A session-wide hook: it sees every test, so only touch the ones under this directory.
    missing = None
    if not CHROMIUM.exists():
        missing = pytest.mark.skip(reason=NO_CHROMIUM)
    for item in items:
        if HERE not in item.path.parents:
            continue
        item.add_marker(pytest.mark.browser)
        if missing:
            item.add_marker(missing)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # Keep each phase's report on the item so the page fixture can tell, at teardown,
    # whether the test failed and a screenshot is worth taking.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


# --- browser, contexts, pages ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM)
    with pytest.MonkeyPatch.context() as mp, sync_playwright() as playwright:
        # Playwright's sync API leaves its event loop marked as running in this thread for as
        # long as the browser lives, so Django refuses ORM calls from tests (and from fixtures
        # such as the database flush) unless told they are safe. They are: that loop only ever
        # runs Playwright, never Django code.
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., Page]]:
    """Open a page in a fresh context: new_page(viewport={"width": 390, "height": 844}).

    Takes Playwright's new_context() options. Every page opened here is screenshotted into
    test-artifacts/ if the test fails, and every context is closed afterwards.
    """
    contexts: list[BrowserContext] = []
    pages: list[Page] = []

    def open_page(**context_options) -> Page:
        context = browser.new_context(**context_options)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        context.set_default_navigation_timeout(PAGE_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        pages.append(page)
        return page

    yield open_page

    reports = [getattr(request.node, f"report_{when}", None) for when in ("setup", "call")]
    if any(report is not None and report.failed for report in reports):
        _save_screenshots(request.node, pages)
    for context in contexts:
        context.close()


def _save_screenshots(item: pytest.Item, pages: list[Page]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid.removeprefix("tests/browser/"))
    for i, page in enumerate(pages):
        path = ARTIFACTS / f"{stem}{f'-{i}' if i else ''}.png"
        try:
            page.screenshot(path=str(path), full_page=True, timeout=5_000)
        except Exception as e:  # a crashed page must not hide the test's own failure
            print(f"could not save a screenshot to {path}: {e}")
        else:
            print(f"screenshot: {path} (at {page.url})")


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    """A blank page in its own context (desktop size), nobody logged in."""
    return new_page()


# --- personas ---------------------------------------------------------------------------------


@pytest.fixture
def alice(transactional_db) -> User:
    return User.objects.create_user("alice@example.org", PASSWORD, name="Alice")


@pytest.fixture
def project(alice: User) -> Project:
    project, _secret_key = create_project("Alice's project", alice)
    return project


@pytest.fixture
def bob(project: Project) -> User:
    bob = User.objects.create_user("bob@example.org", PASSWORD, name="Bob")
    Membership.objects.create(project=project, user=bob, role=Role.MEMBER)
    return bob


@pytest.fixture
def charlie(transactional_db) -> User:
    return User.objects.create_user("charlie@example.org", PASSWORD, name="Charlie")


@pytest.fixture
def charlies_project(charlie: User) -> Project:
    project, _secret_key = create_project("Charlie's", charlie)
    return project


# --- URLs and logging in ------------------------------------------------------------------------


@pytest.fixture
def url(live_server, project: Project) -> Callable[..., str]:
    """Absolute URLs on the live server: url("/login/"), or inside alice's project:
    url(p="contacts/") -> http://localhost:<port>/p/<code>/contacts/."""

    def build(path: str = "", p: str | None = None, in_project: Project | None = None) -> str:
        if p is not None:
            return f"{live_server.url}/p/{(in_project or project).code}/{p}"
        return f"{live_server.url}{path}"

    return build


def _log_in(page: Page, base_url: str, email: str, password: str = PASSWORD) -> Page:
    page.goto(f"{base_url}/login/")
    page.locator("#id_username").fill(email)
    page.locator("#id_password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).not_to_have_url(re.compile(r"/login/"))
    return page


@pytest.fixture
def log_in(live_server) -> Callable[[Page, User], Page]:
    """log_in(page, user): through the real login form, waiting until the app lets them in."""
    return lambda page, user: _log_in(page, live_server.url, user.email)


@pytest.fixture
def logged_in_page(page: Page, live_server, alice: User, project: Project) -> Page:
    """alice, logged in and looking at her project's overview."""
    _log_in(page, live_server.url, alice.email)
    expect(page).to_have_url(f"{live_server.url}/p/{project.code}/")
    return page
