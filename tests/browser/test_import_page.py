"""Contact imports in the browser: upload, check how the file was read, map the columns, start,
and watch the worker finish without a reload; then the report and the dry run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from postroom.accounts.models import Project
from postroom.contacts.models import Contact, FieldDefinition
from postroom.imports import actions
from postroom.imports.models import Import

FIXTURES = Path(actions.__file__).parent / "tests" / "fixtures"


@pytest.fixture(autouse=True)
def imports_dir(settings, tmp_path: Path) -> Iterator[Path]:
    """Uploads go to a temporary folder. The live server runs in a thread of this process,
    so it sees the override too; the worker step's open files are dropped afterwards."""
    settings.IMPORTS_DIR = tmp_path / "imports"
    actions.sessions.clear()
    yield settings.IMPORTS_DIR
    for import_id in list(actions.sessions):
        actions.drop_session(import_id)


def run_worker() -> None:
    """What `postroom worker` does in the background: import chunks until none is left."""
    for _ in range(1_000):
        if not actions.handle_one_import():
            return
    raise AssertionError("the import worker never ran out of work")


def upload(page: Page, url, name: str) -> None:
    page.goto(url(p="imports/"))
    page.get_by_label("File").set_input_files(FIXTURES / name)
    page.get_by_role("button", name="Upload and preview").click()
    expect(page.get_by_role("heading", name=f"Import “{name}”")).to_be_visible()


def progress(page: Page):
    return page.locator("#import-progress")


def figure(page: Page, label: str):
    """The number above `label` ("created", "would be created", "rejected", …)."""
    box = page.locator("#import-progress .figure")
    return box.filter(has=page.get_by_text(label, exact=True)).locator("strong")


def test_the_empty_page_says_what_to_do(logged_in_page: Page, url, project: Project) -> None:
    page = logged_in_page
    page.get_by_role("link", name="Import & export").click()

    expect(page.get_by_role("heading", name="Import & export")).to_be_visible()
    expect(page.get_by_role("heading", name="No imports yet")).to_be_visible()
    expect(page.get_by_label("File")).to_be_visible()
    expect(page.get_by_role("button", name="Upload and preview")).to_be_visible()
    empty = page.locator(".empty")
    expect(empty.locator("code").first).to_have_text(
        f"postroom import contacts.csv --project {project.code}"
    )
    expect(empty).to_contain_text("POST /api/v1/imports")


def test_an_upload_is_read_mapped_started_and_finished(
    logged_in_page: Page, url, project: Project
) -> None:
    page = logged_in_page
    upload(page, url, "excel_de_semicolon_cp1252.csv")

    encoding = page.get_by_label("Encoding")
    delimiter = page.get_by_label("Delimiter")
    expect(encoding.locator("option:checked")).to_have_text("cp1252 (detected)")
    expect(delimiter.locator("option:checked")).to_have_text("Semicolon ; (detected)")
    preview = page.locator("table.import-preview tbody")
    expect(preview).to_contain_text("München")
    expect(preview.locator("tr.rejected")).to_have_count(0)

    # Changing the delimiter reads the file again (a small script submits the form).
    with page.expect_navigation():
        delimiter.select_option(label="Comma ,")
    expect(delimiter).to_have_value(",")
    header = page.locator("table.import-preview thead tr").first.locator("th")
    expect(header).to_have_text(["Line", "E-Mail;Vorname;Nachname;Stadt;Beitrag", "Result"])
    expect(preview.locator("tr.rejected").first).to_be_visible()
    expect(preview).to_contain_text("choose it as the delimiter")

    with page.expect_navigation():
        delimiter.select_option(";")
    expect(delimiter).to_have_value(";")
    expect(preview.locator("tr.rejected")).to_have_count(0)
    expect(page.get_by_label("Where column E-Mail goes")).to_have_value("email")

    # Columns without a known meaning start out as new custom fields named after the header;
    # choosing another target hides the key and type, choosing "New custom field…" shows them.
    stadt = page.get_by_label("Where column Stadt goes")
    key = page.get_by_label("Key of the new field for Stadt")
    kind = page.get_by_label("Type of the new field for Stadt")
    expect(stadt).to_have_value("new_field")
    expect(key).to_have_value("stadt")
    stadt.select_option(label="Ignore")
    expect(key).to_be_hidden()
    expect(kind).to_be_hidden()
    stadt.select_option(label="New custom field…")
    expect(key).to_be_visible()
    expect(kind).to_be_visible()
    key.fill("city")
    kind.select_option("text")
    page.get_by_label("Where column Beitrag goes").select_option(label="Ignore")
    expect(page.get_by_label("Key of the new field for Beitrag")).to_be_hidden()
    page.get_by_label("Tag every imported contact with").fill("de, 2026")
    page.get_by_role("button", name="Start import").click()

    expect(progress(page)).to_contain_text("Waiting for the worker")
    expect(progress(page).locator(".badge").first).to_have_class("badge pending")
    page.evaluate("window.stillTheSamePage = true")

    run_worker()
    # The progress panel polls every 2 s: the result shows up without a reload.
    expect(progress(page).locator(".badge").first).to_have_text("Done")
    expect(figure(page, "created")).to_have_text("5")
    expect(figure(page, "rejected")).to_have_text("0")
    expect(progress(page)).not_to_contain_text("Waiting for the worker")
    assert page.evaluate("window.stillTheSamePage") is True

    anna = Contact.objects.get(project=project, email="anna.schaefer@example.com")
    assert anna.data == {"city": "München"}
    assert sorted(anna.tags.values_list("name", flat=True)) == ["2026", "de"]
    keys = FieldDefinition.objects.filter(project=project).values_list("key", flat=True)
    assert list(keys) == ["city"]


def test_the_rejected_rows_download_as_csv(logged_in_page: Page, url, project: Project) -> None:
    page = logged_in_page
    upload(page, url, "malformed_rows.csv")
    page.get_by_role("button", name="Start import").click()
    expect(progress(page)).to_contain_text("Waiting for the worker")

    run_worker()
    expect(progress(page).locator(".badge").first).to_have_text("Done")
    expect(figure(page, "created")).to_have_text("9")

    link = page.get_by_role("link", name="Download the rejected and skipped rows")
    with page.expect_download() as info:
        link.click()
    download = info.value
    imp = Import.objects.get(project=project)
    assert download.suggested_filename == f"import-{imp.code}-rejected.csv"
    lines = Path(download.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "line,result,reason,row"
    assert lines[1].startswith("4,rejected,email:")
    assert len(lines) == 1 + imp.rejected + imp.skipped == 1 + 8


def test_a_dry_run_can_then_be_imported_for_real(
    logged_in_page: Page, url, project: Project
) -> None:
    page = logged_in_page
    upload(page, url, "google_sheets.csv")
    page.get_by_label("Dry run").check()
    page.get_by_role("button", name="Start import").click()
    expect(page.locator("h1 .badge")).to_have_text("dry run")

    run_worker()
    expect(progress(page).locator(".badge").first).to_have_text("Done")
    expect(figure(page, "would be created")).to_have_text("5")
    expect(progress(page)).to_contain_text("this was a dry run, nothing was changed")
    assert not Contact.objects.filter(project=project).exists()

    dry_url = page.url
    page.get_by_role("button", name="Import it for real").click()
    expect(page).not_to_have_url(dry_url)
    expect(progress(page)).to_contain_text("Waiting for the worker")
    expect(page.locator("h1 .badge")).to_have_count(0)

    run_worker()
    expect(progress(page).locator(".badge").first).to_have_text("Done")
    expect(figure(page, "created")).to_have_text("5")
    assert Contact.objects.filter(project=project).count() == 5
    assert Import.objects.filter(project=project).count() == 2
