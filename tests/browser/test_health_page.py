"""The health page in the browser (issue 8): with a stopped worker it says so, in the checks and
the workers table, and it updates itself when a worker is back; members who are not staff are
refused."""

from __future__ import annotations

import datetime as dt

from playwright.sync_api import Page, expect

from postroom.accounts.models import User
from postroom.ops.models import WorkerHeartbeat


def test_a_stopped_worker_is_an_error_until_a_worker_is_back(
    page: Page, log_in, live_server, alice: User, project
) -> None:
    User.objects.filter(pk=alice.pk).update(is_staff=True)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    WorkerHeartbeat.objects.create(
        name="host:42", started_at=long_ago, last_beat_at=long_ago, stopped_at=long_ago
    )
    log_in(page, alice)
    page.goto(f"{live_server.url}/health/")
    body = page.locator("#health-body")
    expect(body).to_contain_text("Something needs attention.")
    worker = body.locator("li", has_text="worker")
    expect(worker.locator(".badge")).to_have_text("error")
    expect(worker).to_contain_text("no heartbeat for")
    expect(body.get_by_role("row", name="host:42")).to_contain_text("stopped")

    # A worker starts: the page polls and shows it, no reload.
    WorkerHeartbeat.objects.create(name="host:43")
    expect(worker.locator(".badge")).to_have_text("ok", timeout=15_000)
    expect(worker).to_contain_text("1 running (host:43)")
    expect(body.get_by_role("row", name="host:43")).to_contain_text("running")


def test_a_member_who_is_not_staff_is_refused(page: Page, log_in, live_server, bob: User) -> None:
    log_in(page, bob)
    response = page.goto(f"{live_server.url}/health/")
    assert response is not None and response.status == 403
