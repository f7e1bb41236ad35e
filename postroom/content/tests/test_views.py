from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from postroom.campaigns.models import Campaign
from postroom.content.models import Template
from postroom.delivery.actions import default_sender
from postroom.test import BaseTestCase

LAYOUT = "<html><body><h1>{{ project.name }}</h1>{{ content }}<p>Bye</p></body></html>"


class TemplateViewsTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.login()

    def test_the_empty_list_says_what_a_template_is(self) -> None:
        r = self.client.get(self.url("templates/"))
        self.assertContains(r, "Make your first template")
        self.assertContains(r, "{{ content }}")

    def test_it_saves_a_layout_and_lists_it(self) -> None:
        r = self.client.post(
            self.url("templates/new/"), {"name": "Brand", "format": "html", "source": LAYOUT}
        )
        template = Template.objects.get(name="Brand")
        self.assertRedirects(r, self.url(f"templates/{template.code}/"))
        self.assertTrue(template.is_layout)
        self.assertContains(self.client.get(self.url("templates/")), "layout")

    def test_a_syntax_error_is_shown_with_its_line_and_column(self) -> None:
        source = "<p>Hi</p>\n<p>{{ contact.first_name </p>"
        r = self.client.post(
            self.url("templates/new/"), {"name": "Bad", "format": "html", "source": source}
        )
        self.assertContains(r, "line 2, column 4")
        self.assertFalse(Template.objects.exists())

    def test_a_sandbox_escape_is_refused_on_save(self) -> None:
        source = "{{ cycler.__init__.__globals__.os.system('id') }}"
        r = self.client.post(
            self.url("templates/new/"), {"name": "Evil", "format": "html", "source": source}
        )
        self.assertEqual(r.status_code, 200)
        self.assertFalse(Template.objects.exists())

    def test_the_preview_renders_for_a_contact_in_sandboxed_frames(self) -> None:
        self.make_contact("zoe@example.com", first_name='<script>alert("x")</script>')
        data = {
            "format": "markdown",
            "source": "# Hi {{ contact.first_name | default('there') }}",
            "preview_email": "Zoe@Example.com",
        }
        r = self.client.post(self.url("templates/preview/"), data)
        self.assertContains(r, "As zoe@example.com would get it")
        self.assertContains(r, '<iframe sandbox title="Desktop preview"')
        self.assertContains(r, '<iframe sandbox title="Phone preview"')
        # Escaped twice: by the template for the HTML, and again into srcdoc.
        self.assertContains(r, "&amp;lt;script&amp;gt;")
        self.assertNotContains(r, "<script>alert")
        r = self.client.post(self.url("templates/preview/"), {**data, "preview_email": "no@x.org"})
        self.assertContains(r, "No contact no@x.org: showing a sample reader")
        self.assertContains(r, "Hi Ada")

    def test_the_preview_shows_what_is_wrong_instead_of_failing(self) -> None:
        r = self.client.post(
            self.url("templates/preview/"), {"format": "mjml", "source": "<mjml><mj-body>"}
        )
        self.assertContains(r, "This template cannot be used yet")
        self.assertContains(r, "MJML")

    def test_a_layout_in_use_cannot_be_deleted(self) -> None:
        layout = Template.objects.create(project=self.project, name="Brand", source=LAYOUT)
        sender = default_sender(self.project)
        Campaign.objects.create(
            project=self.project,
            name="C",
            subject="S",
            sender=sender,
            from_email=sender.from_email,
            layout=layout,
        )
        r = self.client.post(self.url(f"templates/{layout.code}/delete/"), follow=True)
        self.assertContains(r, "is the layout of campaigns")
        self.assertTrue(Template.objects.filter(pk=layout.pk).exists())

    def test_members_see_but_do_not_edit(self) -> None:
        layout = Template.objects.create(project=self.project, name="Brand", source=LAYOUT)
        self.login(self.bob)
        self.assertEqual(self.client.get(self.url("templates/")).status_code, 200)
        self.assertEqual(self.client.get(self.url(f"templates/{layout.code}/")).status_code, 403)

    def test_another_projects_templates_are_404(self) -> None:
        theirs = Template.objects.create(project=self.charlies_project, name="T", source="x")
        for path in (f"templates/{theirs.code}/", f"templates/{theirs.code}/delete/"):
            with self.subTest(path):
                self.assertEqual(self.client.post(self.url(path)).status_code, 404)


PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00"
    b"\x00\x00IEND\xaeB`\x82"
)


class ImageTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.login()
        self.uploads = tempfile.mkdtemp()
        self.override = override_settings(UPLOADS_DIR=Path(self.uploads))
        self.override.enable()

    def tearDown(self) -> None:
        self.override.disable()
        shutil.rmtree(self.uploads, ignore_errors=True)
        super().tearDown()

    def upload(self, name: str, content: bytes):
        return self.client.post(
            self.url("images/"), {"image": SimpleUploadedFile(name, content)}, follow=True
        )

    def test_an_image_is_kept_listed_and_served_to_anyone(self) -> None:
        from postroom.content.models import Image

        r = self.upload("logo <1>.png", PNG)
        image = Image.objects.get()
        self.assertContains(r, image.url)
        self.assertEqual(image.extension, "png")
        self.client.logout()
        served = self.client.get(f"/i/{image.filename}")
        self.assertEqual(served["Content-Type"], "image/png")
        self.assertIn("immutable", served["Cache-Control"])
        self.assertEqual(b"".join(served.streaming_content), PNG)

    def test_what_is_not_a_raster_image_is_refused(self) -> None:
        from postroom.content.models import Image

        r = self.upload("x.svg", b"<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>")
        self.assertContains(r, "is not a PNG, JPEG, GIF or WebP image")
        r = self.upload("fake.png", b"MZ\x90\x00 not an image")
        self.assertContains(r, "fake.png is not a PNG")
        with self.settings(UPLOAD_MAX_BYTES=10):
            self.assertContains(self.upload("big.png", PNG), "is over 0 MB")
        self.assertFalse(Image.objects.exists())

    def test_unknown_images_and_other_projects_images_are_404(self) -> None:
        from django.core.files.uploadedfile import SimpleUploadedFile

        from postroom.content.actions import save_image

        theirs = save_image(self.charlies_project, SimpleUploadedFile("t.png", PNG))
        self.assertEqual(
            self.client.post(self.url(f"images/{theirs.code}/delete/")).status_code, 404
        )
        self.assertEqual(self.client.get("/i/not-a-uuid.png").status_code, 404)
        self.assertEqual(self.client.get(f"/i/{theirs.code.hex}.gif").status_code, 404)
        self.assertEqual(self.client.get(f"/i/{theirs.filename}").status_code, 200)
