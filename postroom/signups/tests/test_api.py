"""/api/v1/signup-forms: create, read, change, delete, list signups by state; bad settings
are a 422 naming the field; another project's forms are a 404."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from postroom.signups.models import Signup, SignupForm
from postroom.signups.tests.base import SignupTestCase


class SignupFormsApiTestCase(SignupTestCase):
    def test_create_read_change_and_delete(self) -> None:
        r = self.api(
            "POST",
            "signup-forms",
            {"name": "Newsletter", "fields": ["first_name"], "tags": ["news", "web"]},
        )
        self.assertEqual(r.status_code, 201, r.content)
        created = r.json()
        self.assertEqual((created["fields"], created["tags"]), (["first_name"], ["news", "web"]))
        self.assertTrue(created["double_opt_in"])
        self.assertTrue(created["hosted_url"].endswith(f"/f/{created['id']}"))
        self.assertIn('<form method="post"', created["embed_html"])
        r = self.api("PATCH", f"signup-forms/{created['id']}", {"double_opt_in": False})
        changed = r.json()
        self.assertEqual((changed["double_opt_in"], changed["name"]), (False, "Newsletter"))
        self.assertEqual(changed["tags"], ["news", "web"])  # not sent: kept
        self.assertEqual([f["id"] for f in self.api("GET", "signup-forms").json()], [created["id"]])
        self.assertEqual(
            self.api("DELETE", f"signup-forms/{created['id']}").json()["success"], True
        )
        self.assertFalse(SignupForm.objects.exists())

    def test_bad_settings_are_a_422_naming_the_field(self) -> None:
        self.assert_error(self.api("POST", "signup-forms", {"name": ""}), 422, "name")
        for body, field in (
            ({"name": "N", "confirm_text": "No link here"}, "confirm_text"),
            ({"name": "N", "fields": ["shoe_size"]}, "fields"),
            ({"name": "N", "success_url": "javascript:alert(1)"}, "success_url"),
            ({"name": "N", "fields": ["first_name"], "required": ["last_name"]}, "required"),
        ):
            with self.subTest(field):
                self.assert_error(self.api("POST", "signup-forms", body), 422, field)

    def test_signups_by_state(self) -> None:
        form = self.make_form()
        Signup.objects.create(form=form, email="new@example.com")
        Signup.objects.create(form=form, email="done@example.com", confirmed_at=timezone.now())
        old = Signup.objects.create(form=form, email="old@example.com")
        Signup.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=8))
        url = f"signup-forms/{form.code}/signups"
        for state, email in (
            ("pending", "new@example.com"),
            ("confirmed", "done@example.com"),
            ("expired", "old@example.com"),
        ):
            items = self.api("GET", url, {"state": state}).json()["items"]
            self.assertEqual([(s["email"], s["state"]) for s in items], [(email, state)])
        self.assertEqual(len(self.api("GET", url).json()["items"]), 3)
        self.assert_error(self.api("GET", url, {"state": "lost"}), 422, "state")

    def test_another_projects_form_is_a_404(self) -> None:
        theirs = self.make_form(project=self.charlies_project)
        for method, path in (
            ("GET", f"signup-forms/{theirs.code}"),
            ("PATCH", f"signup-forms/{theirs.code}"),
            ("DELETE", f"signup-forms/{theirs.code}"),
            ("GET", f"signup-forms/{theirs.code}/signups"),
        ):
            r = self.api(method, path, {} if method == "PATCH" else None)
            self.assertEqual(r.status_code, 404, (method, path))
        self.assertTrue(SignupForm.objects.filter(pk=theirs.pk).exists())
