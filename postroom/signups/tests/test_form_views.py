"""The dashboard's signup forms pages: list, create, edit, a form's page, delete."""

from __future__ import annotations

from django.utils.html import escape

from postroom.contacts.actions import create_field
from postroom.contacts.models import FieldType
from postroom.signups.models import DEFAULT_TEXT, Signup, SignupForm
from postroom.signups.tests.base import SignupTestCase
from postroom.signups.views import embed_snippet

VALID = {
    "name": "Footer form",
    "title": "",
    "intro": "",
    "button_label": "Join",
    "double_opt_in": "on",
    "confirm_subject": "Confirm, please",
    "confirm_text": "Open {{ confirm_url }}",
    "success_message": "",
    "success_url": "",
    "confirmed_message": "",
    "confirmed_url": "",
    "event_name": "signup confirmed",
    "active": "on",
    "tags_text": "newsletter, footer",
    "asked": ["first_name"],
    "required_fields": [],
}


class FormListTestCase(SignupTestCase):
    def test_the_empty_state_says_what_to_do(self) -> None:
        self.login()
        r = self.client.get(self.url("forms/"))
        self.assertContains(r, "No signup forms yet")
        self.assertContains(r, "Create a signup form")
        self.assertContains(r, self.url("forms/new/"))

    def test_it_lists_this_projects_forms_only(self) -> None:
        form = self.make_form(name="Footer")
        self.make_form(project=self.charlies_project, name="Charlie's form")
        self.login(self.bob)  # any member may manage forms
        r = self.client.get(self.url("forms/"))
        self.assertContains(r, "Footer")
        self.assertContains(r, f"/f/{form.code}")
        self.assertNotContains(r, "Charlie's form")

    def test_the_nav_links_to_it(self) -> None:
        self.login()
        r = self.client.get(self.url("forms/"))
        self.assertContains(r, 'aria-current="page">Signup forms</a>')

    def test_it_needs_a_login(self) -> None:
        r = self.client.get(self.url("forms/"))
        self.assertEqual(r.status_code, 302)
        self.assertIn("/login/", r["Location"])


class FormEditTestCase(SignupTestCase):
    def test_the_new_form_starts_with_double_opt_in_and_a_working_email(self) -> None:
        self.login()
        r = self.client.get(self.url("forms/new/"))
        self.assertContains(r, "New signup form")
        self.assertContains(r, "{{ confirm_url }}")
        self.assertTrue(r.context["form"]["double_opt_in"].value())

    def test_it_creates_a_form(self) -> None:
        create_field(self.project, "plan", "Plan", FieldType.TEXT)
        self.login()
        data = {**VALID, "asked": ["data.plan", "first_name"], "required_fields": ["data.plan"]}
        r = self.client.post(self.url("forms/new/"), data)
        form = SignupForm.objects.get()
        self.assertRedirects(r, self.url(f"forms/{form.code}/"))
        self.assertEqual(form.project, self.project)
        self.assertEqual(form.fields, ["first_name", "data.plan"])  # in the page's order
        self.assertEqual(form.required, ["data.plan"])
        self.assertEqual(form.tags, ["newsletter", "footer"])
        self.assertEqual((form.button_label, form.double_opt_in), ("Join", True))

    def test_it_edits_a_form(self) -> None:
        form = self.make_form()
        self.login()
        r = self.client.get(self.url(f"forms/{form.code}/edit/"))
        self.assertContains(r, 'value="newsletter"')
        data = {**VALID, "double_opt_in": "", "tags_text": ""}
        self.client.post(self.url(f"forms/{form.code}/edit/"), data)
        form.refresh_from_db()
        self.assertEqual((form.name, form.double_opt_in, form.tags), ("Footer form", False, []))

    def assert_refused(self, field: str, value, expected: str) -> None:
        self.login()
        r = self.client.post(self.url("forms/new/"), {**VALID, field: value})
        self.assertEqual(r.status_code, 200)
        self.assertIn(field, r.context["form"].errors)
        self.assertIn(expected, " ".join(r.context["form"].errors[field]))
        self.assertFalse(SignupForm.objects.exists())

    def test_bad_input_names_the_field(self) -> None:
        self.assert_refused("name", "  ", "required")
        self.assert_refused("success_url", "javascript:alert(1)", "URL")
        self.assert_refused("confirmed_url", "ftp://example.com/x", "https://")
        self.assert_refused("confirm_text", "Welcome {% if %}", "line 1")
        self.assert_refused("confirm_text", "Welcome!", "{{ confirm_url }}")
        self.assert_refused("confirm_subject", "{{ project.name", "line 1")
        self.assert_refused("tags_text", "x" * 101, "longer than 100")
        self.assert_refused("event_name", "a\x07b", "printable")
        self.assert_refused("asked", ["data.nope"], "not one of the available choices")
        self.assert_refused("required_fields", ["last_name"], "Fields to ask")

    def test_a_subject_is_kept_on_one_line(self) -> None:
        self.login()
        self.client.post(self.url("forms/new/"), {**VALID, "confirm_subject": "Hi\r\nBcc: x@y.z"})
        self.assertEqual(SignupForm.objects.get().confirm_subject, "Hi Bcc: x@y.z")

    def test_another_projects_form_is_a_404(self) -> None:
        theirs = self.make_form(project=self.charlies_project)
        self.login()
        for path in ("", "edit/"):
            self.assertEqual(
                self.client.get(self.url(f"forms/{theirs.code}/{path}")).status_code, 404
            )
        r = self.client.post(self.url(f"forms/{theirs.code}/edit/"), VALID)
        self.assertEqual(r.status_code, 404)
        self.assertEqual(
            self.client.post(self.url(f"forms/{theirs.code}/delete/")).status_code, 404
        )
        # Nor through charlie's project for someone who is not in it.
        r = self.client.get(self.url(f"forms/{theirs.code}/", project=self.charlies_project))
        self.assertEqual(r.status_code, 404)
        theirs.refresh_from_db()
        self.assertEqual(theirs.name, "Newsletter")


class FormDetailTestCase(SignupTestCase):
    def test_it_shows_the_hosted_link_and_an_embed_snippet_without_script(self) -> None:
        form = self.make_form(fields=["first_name"])
        self.login()
        r = self.client.get(self.url(f"forms/{form.code}/"))
        hosted = f"http://localhost:8000/f/{form.code}"
        self.assertContains(r, f'href="{hosted}"')
        snippet = embed_snippet(form)
        self.assertIn(f'<form method="post" action="{hosted}"', snippet)
        self.assertIn('name="email"', snippet)
        self.assertIn('name="first_name"', snippet)
        self.assertIn('name="website"', snippet)
        self.assertNotIn("csrfmiddlewaretoken", snippet)
        self.assertNotIn("<script", snippet)
        self.assertContains(r, escape(snippet))  # shown as text to copy
        self.assertContains(r, "No signups yet")

    def test_it_lists_signups_with_their_state_in_keyset_pages(self) -> None:
        form = self.make_form()
        for i in range(55):
            Signup.objects.create(form=form, email=f"s{i:02d}@example.com")
        Signup.objects.filter(email="s54@example.com").update(confirmed_at="2026-01-01T00:00Z")
        self.login()
        first = self.client.get(self.url(f"forms/{form.code}/"))
        self.assertContains(first, "s54@example.com")
        self.assertContains(first, "Confirmed")
        self.assertContains(first, "Waiting for confirmation")
        self.assertNotContains(first, "s04@example.com")
        self.assertEqual(first.context["counts"], {"total": 55, "confirmed": 1})
        after = first.context["page"].next_cursor
        second = self.client.get(self.url(f"forms/{form.code}/"), {"after": after})
        self.assertContains(second, "s04@example.com")
        self.assertNotContains(second, "s05@example.com")

    def test_it_deletes_a_form_and_keeps_its_contacts(self) -> None:
        form = self.make_form(double_opt_in=False)
        self.post_form(form, {"email": "ann@example.com"})
        self.login()
        r = self.client.post(self.url(f"forms/{form.code}/delete/"))
        self.assertRedirects(r, self.url("forms/"))
        self.assertFalse(SignupForm.objects.exists())
        self.assertFalse(Signup.objects.exists())
        self.assertTrue(self.project.contacts.filter(email="ann@example.com").exists())

    def test_the_default_email_text_carries_no_visitor_input_but_the_address(self) -> None:
        self.assertNotIn("first_name", DEFAULT_TEXT)
        self.assertIn("{{ contact.email }}", DEFAULT_TEXT)
