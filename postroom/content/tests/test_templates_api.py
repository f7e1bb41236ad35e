from __future__ import annotations

from postroom.campaigns.models import Campaign
from postroom.content.models import Template
from postroom.delivery.actions import default_sender
from postroom.test import BaseTestCase

LAYOUT = "<html><body><h1>{{ project.name }}</h1>{{ content }}<p>Bye</p></body></html>"
UNKNOWN = "00000000-0000-0000-0000-000000000000"


class TemplatesApiTestCase(BaseTestCase):
    def create(self, **fields) -> dict:
        data = {"name": "Welcome", "format": "html", "source": "<p>Hi</p>", **fields}
        r = self.api("POST", "templates", data)
        self.assertEqual(r.status_code, 201, r.content)
        return r.json()

    def use_as_layout(self, template: dict, name: str) -> Campaign:
        sender = default_sender(self.project)
        return Campaign.objects.create(
            project=self.project,
            sender=sender,
            from_email=sender.from_email,
            name=name,
            subject="S",
            layout=Template.objects.get(code=template["id"]),
        )

    # --- create, read, update, delete ----------------------------------------------------------

    def test_it_creates_a_layout(self) -> None:
        body = self.create(name="  Brand\n", source=LAYOUT, text="Plain")
        self.assertEqual((body["name"], body["format"]), ("Brand", "html"))
        self.assertEqual((body["source"], body["text"]), (LAYOUT, "Plain"))
        self.assertTrue(body["is_layout"])
        template = Template.objects.get(code=body["id"])
        self.assertEqual(template.project, self.project)

    def test_each_format_is_accepted(self) -> None:
        for format, source in (
            ("markdown", "# Hi {{ contact.first_name }}"),
            ("html", "<p>Hi</p>"),
            ("mjml", "<mjml><mj-body><mj-text>Hi</mj-text></mj-body></mjml>"),
            ("text", "Hi {{ contact.first_name }}"),
        ):
            with self.subTest(format=format):
                self.assertEqual(self.create(format=format, source=source)["format"], format)
        self.assertFalse(self.create()["is_layout"])

    def test_a_syntax_error_is_a_422_naming_its_line_and_column(self) -> None:
        r = self.api(
            "POST",
            "templates",
            {"name": "Bad", "source": "<p>Hi</p>\n<p>{{ contact.first_name </p>"},
        )
        body = self.assert_error(r, 422, "source")
        self.assertIn("line 2, column 4", body["message"])
        r = self.api(
            "POST", "templates", {"name": "Bad", "source": "<p>Hi</p>", "text": "Hi\n{% if %}"}
        )
        self.assertIn("Text, line 2", self.assert_error(r, 422, "text")["message"])
        self.assertFalse(Template.objects.exists())

    def test_a_sandbox_escape_is_refused(self) -> None:
        source = "{{ cycler.__init__.__globals__.os.system('id') }}"
        self.assert_error(self.api("POST", "templates", {"name": "E", "source": source}), 422)
        self.assertFalse(Template.objects.exists())

    def test_bad_input_is_a_422_naming_the_field(self) -> None:
        ok = {"name": "T", "source": "<p>Hi</p>"}
        for data, field in (
            ({"source": "<p>Hi</p>"}, "name"),
            ({**ok, "name": ""}, "name"),
            ({**ok, "name": "x" * 201}, "name"),
            ({**ok, "name": ["T"]}, "name"),
            ({"name": "T"}, "source"),
            ({**ok, "source": ""}, "source"),
            ({**ok, "source": 42}, "source"),
            ({**ok, "format": "pdf"}, "format"),
            ({**ok, "text": None}, "text"),
        ):
            with self.subTest(data=data):
                self.assert_error(self.api("POST", "templates", data), 422, field)
        self.assertFalse(Template.objects.exists())

    def test_it_lists_with_a_cursor(self) -> None:
        for i in range(3):
            self.create(name=f"T{i}")
        Template.objects.create(project=self.charlies_project, name="Theirs", source="x")
        page = self.api("GET", "templates", {"limit": 2}).json()
        self.assertEqual([t["name"] for t in page["items"]], ["T2", "T1"])
        rest = self.api("GET", "templates", {"limit": 2, "cursor": page["next_cursor"]}).json()
        self.assertEqual(([t["name"] for t in rest["items"]], rest["next_cursor"]), (["T0"], None))
        for limit in (0, 101, "all"):
            with self.subTest(limit=limit):
                self.assert_error(self.api("GET", "templates", {"limit": limit}), 422, "limit")

    def test_it_gets_a_template(self) -> None:
        created = self.create()
        self.assertEqual(self.api("GET", f"templates/{created['id']}").json(), created)

    def test_it_updates_only_the_given_fields(self) -> None:
        created = self.create(text="Plain")
        before = Template.objects.get(code=created["id"]).updated_at
        r = self.api("PATCH", f"templates/{created['id']}", {"source": LAYOUT})
        self.assertEqual(r.status_code, 200, r.content)
        body = r.json()
        self.assertEqual((body["name"], body["text"], body["source"]), ("Welcome", "Plain", LAYOUT))
        self.assertTrue(body["is_layout"])
        self.assertGreater(Template.objects.get(code=created["id"]).updated_at, before)

    def test_a_bad_patch_is_a_422_and_changes_nothing(self) -> None:
        created = self.create()
        url = f"templates/{created['id']}"
        for data, field in (
            ({"source": "{{ oops "}, "source"),
            ({"format": "doc"}, "format"),
            ({"name": None}, "name"),
        ):
            with self.subTest(data=data):
                self.assert_error(self.api("PATCH", url, data), 422, field)
        self.assertEqual(self.api("GET", url).json(), created)

    def test_it_deletes_a_template(self) -> None:
        created = self.create()
        r = self.api("DELETE", f"templates/{created['id']}")
        self.assertEqual(r.json(), {"success": True, "id": created["id"]})
        self.assert_error(self.api("GET", f"templates/{created['id']}"), 404)

    def test_a_layout_in_use_is_a_409_naming_its_campaigns(self) -> None:
        created = self.create(name="Brand", source=LAYOUT)
        self.use_as_layout(created, "November news")
        self.use_as_layout(created, "December news")
        r = self.api("DELETE", f"templates/{created['id']}")
        message = self.assert_error(r, 409)["message"]
        self.assertIn("“Brand” is the layout of 2 campaigns", message)
        self.assertIn("“December news”, “November news”", message)
        self.assertTrue(Template.objects.filter(code=created["id"]).exists())

    # --- preview -------------------------------------------------------------------------------

    def test_it_previews_for_a_contact_with_data_and_a_subject(self) -> None:
        contact = self.make_contact("zoe@example.com", first_name="Zoe")
        created = self.create(
            format="markdown", source="# Hi {{ contact.first_name }}, on {{ data.plan }}"
        )
        r = self.api(
            "POST",
            f"templates/{created['id']}/preview",
            {
                "contact_id": str(contact.code),
                "data": {"plan": "Pro"},
                "subject": "For {{ contact.first_name }}",
            },
        )
        self.assertEqual(r.status_code, 200, r.content)
        body = r.json()
        self.assertEqual(body["subject"], "For Zoe")
        self.assertIn("<h1>Hi Zoe, on Pro</h1>", body["html"])
        self.assertIn("Hi Zoe, on Pro", body["text"])

    def test_it_previews_for_a_sample_reader(self) -> None:
        created = self.create(source="<p>Hi {{ contact.first_name | default('there') }}</p>")
        r = self.api("POST", f"templates/{created['id']}/preview", {})
        self.assertEqual(r.json()["subject"], "")
        self.assertIn("Hi Ada", r.json()["html"])

    def test_a_layout_previews_with_a_sample_body_in_its_slot(self) -> None:
        created = self.create(source=LAYOUT)
        html = self.api("POST", f"templates/{created['id']}/preview", {}).json()["html"]
        self.assertIn("Alice&#39;s project", html)
        self.assertIn("A heading", html)
        self.assertIn("Bye", html)

    def test_the_preview_escapes_a_contacts_data(self) -> None:
        contact = self.make_contact("zoe@example.com", first_name='<script>alert("x")</script>')
        created = self.create(source="<p>{{ contact.first_name }}</p>")
        r = self.api(
            "POST", f"templates/{created['id']}/preview", {"contact_id": str(contact.code)}
        )
        self.assertNotIn("<script>", r.json()["html"])

    def test_preview_errors_name_the_field(self) -> None:
        created = self.create(source="<p>{{ 10 // data.n }}</p>")
        url = f"templates/{created['id']}/preview"
        theirs = self.make_contact("eve@example.com", project=self.charlies_project)
        for data, field in (
            ({"contact_id": "nope"}, "contact_id"),
            ({"contact_id": UNKNOWN}, "contact_id"),
            ({"contact_id": str(theirs.code)}, "contact_id"),
            ({"data": ["not", "a", "dict"]}, "data"),
            ({"subject": "Hi {{ contact.first_name "}, "subject"),
            ({"data": {"n": 0}}, "source"),
        ):
            with self.subTest(data=data):
                self.assert_error(self.api("POST", url, data), 422, field)
        r = self.api("POST", url, {"subject": "Hi\n{% endif %}"})
        self.assertIn("Subject, line 2", self.assert_error(r, 422, "subject")["message"])
        self.assertIn("<p>2</p>", self.api("POST", url, {"data": {"n": 5}}).json()["html"])

    # --- tenancy and odd input -----------------------------------------------------------------

    def test_another_projects_template_is_a_404(self) -> None:
        theirs = Template.objects.create(project=self.charlies_project, name="Theirs", source="x")
        mine = self.create()
        for method, tail, data in (
            ("GET", "", None),
            ("PATCH", "", {"name": "Mine now"}),
            ("DELETE", "", None),
            ("POST", "/preview", {}),
        ):
            with self.subTest(method=method, tail=tail):
                r = self.api(method, f"templates/{theirs.code}{tail}", data)
                self.assertEqual(self.assert_error(r, 404)["message"], "No such template.")
                r = self.api(
                    method, f"templates/{mine['id']}{tail}", data, key=self.charlies_secret_key
                )
                self.assert_error(r, 404)
        theirs.refresh_from_db()
        self.assertEqual(theirs.name, "Theirs")
        self.assertEqual(Template.objects.count(), 2)

    def test_a_campaign_cannot_take_another_projects_template_as_layout(self) -> None:
        theirs = Template.objects.create(project=self.charlies_project, name="T", source=LAYOUT)
        r = self.api(
            "POST",
            "campaigns",
            {"name": "N", "subject": "S", "body": "B", "layout_id": str(theirs.code)},
        )
        self.assert_error(r, 422, "layout_id")

    def test_an_unknown_or_malformed_id_is_a_404(self) -> None:
        for template_id in ("not-a-uuid", UNKNOWN, "1"):
            with self.subTest(template_id=template_id):
                self.assert_error(self.api("GET", f"templates/{template_id}"), 404)
                self.assert_error(self.api("POST", f"templates/{template_id}/preview", {}), 404)

    def test_it_requires_a_secret_key(self) -> None:
        self.assert_error(self.client.get("/api/v1/templates"), 401)
        self.assert_error(self.api("GET", "templates", key=self.project.public_key), 403)

    def test_text_no_database_or_encoder_can_hold_is_a_422_naming_the_field(self) -> None:
        # A lone surrogate went on to MRML's encoder or to the database: a 500.
        r = self.api("POST", "templates", {"name": "N", "format": "mjml", "source": "\ud800"})
        self.assert_error(r, 422, "source")
        template = self.create()
        r = self.api("PATCH", f"templates/{template['id']}", {"name": "\ud800"})
        self.assert_error(r, 422, "name")
        self.assertEqual(Template.objects.get().name, "Welcome")
