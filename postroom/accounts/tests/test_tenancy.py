"""The outsider (charlie) gets a 404 for every object of alice's project, in views and API."""

from __future__ import annotations

from postroom.accounts.actions import create_secret_key
from postroom.accounts.models import Invitation
from postroom.contacts.actions import suppress
from postroom.contacts.models import BulkAction, Segment
from postroom.test import BaseTestCase


class TenancyTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.contact = self.make_contact("ann@example.com")
        self.segment = Segment.objects.create(
            project=self.project, name="All", rules={"match": "all", "rules": []}
        )
        self.bulk = BulkAction.objects.create(project=self.project, kind="unsubscribe")
        self.key, _ = create_secret_key(self.project, "Other", created_by=self.alice)
        self.suppression = suppress(self.project, "bad@example.com")
        self.invitation = Invitation.objects.create(
            project=self.project, email="x@example.com", token="t1"
        )
        self.member = self.project.memberships.get(user=self.bob)

    def test_it_hides_every_dashboard_page_of_another_project(self) -> None:
        self.login(self.charlie)
        gets = [
            "",
            "contacts/",
            "contacts/count/",
            "contacts/new/",
            f"contacts/{self.contact.code}/",
            f"contacts/{self.contact.code}/delete/",
            f"contacts/bulk/{self.bulk.code}/",
            "contacts/fields/",
            "suppressions/",
            "segments/",
            "segments/new/",
            f"segments/{self.segment.code}/",
            "settings/",
        ]
        for path in gets:
            self.assertEqual(self.client.get(self.url(path)).status_code, 404, path)

    def test_it_refuses_every_dashboard_write_to_another_project(self) -> None:
        self.login(self.charlie)
        posts = [
            f"contacts/{self.contact.code}/",
            f"contacts/{self.contact.code}/delete/",
            "contacts/bulk/",
            f"segments/{self.segment.code}/delete/",
            "segments/count/",
            f"suppressions/{self.suppression.id}/delete/",
            "settings/rename/",
            "settings/keys/",
            f"settings/keys/{self.key.code}/revoke/",
            "settings/public-key/rotate/",
            "settings/invite/",
            f"settings/invitations/{self.invitation.id}/cancel/",
            f"settings/members/{self.member.id}/role/",
            f"settings/members/{self.member.id}/remove/",
        ]
        for path in posts:
            self.assertEqual(self.client.post(self.url(path), {"name": "x"}).status_code, 404, path)
        self.contact.refresh_from_db()
        self.assertTrue(Segment.objects.filter(id=self.segment.id).exists())

    def test_it_hides_objects_of_another_project_inside_ones_own(self) -> None:
        # Charlie uses his own project's URL with alice's object ids.
        self.login(self.charlie)
        own = self.charlies_project
        for path in (
            f"contacts/{self.contact.code}/",
            f"segments/{self.segment.code}/",
            f"contacts/bulk/{self.bulk.code}/",
        ):
            self.assertEqual(self.client.get(self.url(path, project=own)).status_code, 404, path)
        r = self.client.post(self.url(f"settings/keys/{self.key.code}/revoke/", project=own))
        self.assertEqual(r.status_code, 404)
        self.key.refresh_from_db()
        self.assertIsNone(self.key.revoked_at)

    def test_it_hides_every_api_object_of_another_project(self) -> None:
        key = self.charlies_secret_key
        for method, path in [
            ("GET", f"contacts/{self.contact.code}"),
            ("PATCH", f"contacts/{self.contact.code}"),
            ("DELETE", f"contacts/{self.contact.code}"),
            ("GET", f"segments/{self.segment.code}"),
            ("PATCH", f"segments/{self.segment.code}"),
            ("DELETE", f"segments/{self.segment.code}"),
            ("GET", f"segments/{self.segment.code}/count"),
        ]:
            r = self.api(method, path, {} if method == "PATCH" else None, key=key)
            self.assertEqual(r.status_code, 404, f"{method} {path}")
            self.assertIn("message", r.json())
        self.assertEqual(self.api("GET", "contacts", key=key).json(), [])
        self.assertEqual(self.api("GET", "segments", key=key).json(), [])
        self.assertTrue(self.contact.__class__.objects.filter(id=self.contact.id).exists())
