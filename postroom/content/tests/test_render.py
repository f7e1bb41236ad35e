"""From what an author writes to each recipient's subject, HTML and text."""

from __future__ import annotations

import http.server
import re
import threading

from django.test import SimpleTestCase

from postroom.content.render import MJML, Source, TemplateProblem, compile_email
from postroom.content.text import html_to_text

CONTEXT = {
    "contact": {"first_name": "Ann", "email": "ann@example.com", "data": {"vip": True}},
    "data": {"items": [{"name": "Tulips", "price": "€3"}, {"name": "Roses", "price": "€4"}]},
}
LAYOUT = """<html><head><style>
p { color: #333333; } @media (max-width: 600px) { .wrap { width: 100% !important; } }
</style></head><body><table class="wrap" width="600"><tr><td>{{ content }}</td></tr>
{% for item in data.items %}<tr><td>{{ item.name }}</td><td>{{ item.price }}</td></tr>{% endfor %}
</table><p>Sent to {{ contact.email }}</p></body></html>"""


class RenderTestCase(SimpleTestCase):
    def test_markdown_with_personalisation_in_a_layout(self) -> None:
        body = '# Hello {{ contact.first_name | default("there") }}!\n\nA [link](https://example.com/?a=1&b=2).'
        email = compile_email(
            Source(body=body, layout=LAYOUT, subject="Hi {{ contact.first_name }}")
        )
        r = email.render(CONTEXT)
        self.assertEqual(r.subject, "Hi Ann")
        self.assertIn("<h1>Hello Ann!</h1>", r.html)
        self.assertIn('href="https://example.com/?a=1&amp;b=2"', r.html)
        # The loop around table rows stayed around its rows.
        self.assertIn(
            "<tr><td>Tulips</td><td>€3</td></tr><tr><td>Roses</td><td>€4</td></tr>", r.html
        )
        self.assertIn("Tulips  €3\nRoses  €4", r.text.replace("\n\n", "\n"))
        self.assertIn("Hello Ann!", r.text)
        self.assertIn("link (https://example.com/?a=1&b=2)", r.text)

    def test_markdown_raw_html_is_sanitised(self) -> None:
        body = (
            "Hi <script>alert(1)</script><img src=x onerror=alert(2)> <b style='color:red'>bold</b>"
        )
        html = compile_email(Source(body=body)).render(CONTEXT).html
        self.assertNotIn("<script", html)
        self.assertNotIn("alert(1)", html)
        self.assertNotIn("onerror", html)
        self.assertIn('<b style="color: red;">bold</b>', html.replace("color:red", "color: red;"))

    def test_css_is_inlined_media_rules_kept_and_nothing_fetched(self) -> None:
        fetched = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                fetched.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"p { color: red }")

            def log_message(self, *args):
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        remote = f'<link rel="stylesheet" href="http://127.0.0.1:{server.server_port}/x.css">'
        try:
            layout = LAYOUT.replace("</head>", remote + "</head>")
            html = compile_email(Source(body="Hello", layout=layout)).render(CONTEXT).html
        finally:
            server.shutdown()
        self.assertEqual(fetched, [])
        self.assertIn('<p style="color: #333333;">', html)
        self.assertIn("@media (max-width: 600px)", html)

    def test_the_preheader_is_hidden_text_at_the_top(self) -> None:
        html = compile_email(Source(body="Body", preheader="Sale <now>")).render(CONTEXT).html
        self.assertRegex(html, r'<div style="display:none;[^"]*">Sale &lt;now&gt;</div>')
        text = compile_email(Source(body="Body", preheader="Sale")).render(CONTEXT).text
        self.assertEqual(text, "Body\n")

    def test_mjml_becomes_responsive_html_and_keeps_personalisation(self) -> None:
        body = (
            "<mjml><mj-body><mj-section><mj-column><mj-text>Hi {{ contact.first_name }}"
            "</mj-text><mj-button href='https://example.com/{{ contact.data.vip }}'>Go"
            "</mj-button></mj-column></mj-section></mj-body></mjml>"
        )
        html = compile_email(Source(body=body, format=MJML)).render(CONTEXT).html
        self.assertIn("Hi Ann", html)
        self.assertIn('href="https://example.com/True"', html)
        self.assertIn("@media", html)

    def test_mjml_includes_are_refused(self) -> None:
        body = '<mjml><mj-body><mj-include path="/etc/passwd" /></mj-body></mjml>'
        with self.assertRaises(TemplateProblem):
            compile_email(Source(body=body, format=MJML))

    def test_a_text_part_written_by_hand_is_used_as_written(self) -> None:
        email = compile_email(
            Source(body="<p>HTML</p>", format="html", text="Hi {{ contact.first_name }}")
        )
        self.assertEqual(email.render(CONTEXT).text, "Hi Ann")

    def test_errors_name_the_part_line_and_column(self) -> None:
        with self.assertRaises(TemplateProblem) as caught:
            compile_email(Source(body="ok\n\nDear {{ contact.first_name", subject="Hi"))
        self.assertEqual(str(caught.exception).split(":")[0], "Body, line 3, column 6")
        with self.assertRaises(TemplateProblem) as caught:
            compile_email(Source(body="ok", subject="{% if %}"))
        self.assertTrue(str(caught.exception).startswith("Subject, line 1"))
        with self.assertRaises(TemplateProblem) as caught:
            compile_email(Source(body="ok", layout="<p>no slot</p>"))
        self.assertIn("no {{ content }} slot", str(caught.exception))

    def test_the_subject_is_one_line(self) -> None:
        email = compile_email(Source(body="x", subject="Hi {{ data.name }}"))
        self.assertEqual(
            email.render({"data": {"name": "Ann\r\nBcc: eve@x.org"}}).subject,
            "Hi Ann Bcc: eve@x.org",
        )


class TextTestCase(SimpleTestCase):
    def test_lists_tables_links_and_hidden_parts(self) -> None:
        html = (
            "<html><head><title>T</title><style>p{}</style></head><body>"
            '<div style="display: none">hidden</div><h1>Title</h1><p>See <a href="https://x.org/a">'
            "this</a> and <a href='mailto:hi@x.org'>hi@x.org</a>.</p><ul><li>one</li><li>two"
            "<ol><li>a</li><li>b</li></ol></li></ul><table><tr><td>A</td><td>1</td></tr>"
            "<tr><td>B</td><td>2</td></tr></table><p>Line<br>break &amp; more</p></body></html>"
        )
        self.assertEqual(
            html_to_text(html),
            "Title\n\nSee this (https://x.org/a) and hi@x.org.\n\n- one\n- two\n  1. a\n  2. b\n\n"
            "A  1\nB  2\n\nLine\nbreak & more\n",
        )


class ReviewFindingsTestCase(SimpleTestCase):
    def test_personalised_links_point_to_the_same_place_in_both_parts(self) -> None:
        import uuid
        from urllib.parse import parse_qs, urlsplit

        body = '<a href="https://x.com/?a=1&b={{ contact.first_name }}">go</a>'
        body += '<a href=" https://y.com/">y</a>'
        email = compile_email(Source(body=body, format="html", track_links=True))
        r = email.render({**CONTEXT, "_message": uuid.uuid4().hex})
        html_links = re.findall(r'href="([^"]+)"', r.html)
        text_links = re.findall(r"\((http[^)]+)\)", r.text)
        targets = [parse_qs(urlsplit(u.replace("&amp;", "&")).query)["u"][0] for u in html_links]
        self.assertEqual(targets, ["https://x.com/?a=1&b=Ann", "https://y.com/"])
        text_targets = [parse_qs(urlsplit(u).query)["u"][0] for u in text_links]
        self.assertEqual(text_targets, targets)

    def test_the_footer_stays_unless_the_template_really_places_the_link(self) -> None:
        from postroom.content.render import prepare

        commented = prepare(Source(body="Hi {# no unsubscribe_url here #}", footer=True))
        self.assertIn("{{ unsubscribe_url }}", commented.html)
        placed = prepare(
            Source(body='<a href="{{ unsubscribe_url }}">bye</a>', format="html", footer=True)
        )
        self.assertEqual(placed.html.count("unsubscribe_url"), 1)
