from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

from django.core.management import CommandError, call_command

from postroom.contacts.models import Segment
from postroom.test import BaseTestCase

VIP = {"match": "all", "rules": [{"kind": "tag", "op": "has", "value": "vip"}]}


class ExportCommandTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_contact("ann@example.com", first_name="Ann", tags=["vip"])
        self.make_contact("bob@example.com", tags=["vip"], status="unsubscribed")
        self.make_contact("cy@example.com")
        self.make_contact("dan@example.com", project=self.charlies_project, tags=["vip"])

    def export(self, *args: str) -> str:
        out = io.StringIO()
        call_command("export", "--project", str(self.project.code), *args, stdout=out)
        return out.getvalue()

    def emails(self, text: str) -> list[str]:
        return [row[0] for row in csv.reader(io.StringIO(text, newline=""))][1:]

    def test_it_writes_every_contact_to_stdout(self) -> None:
        text = self.export()
        self.assertTrue(text.startswith("email,first_name,last_name,status,tags,"))
        self.assertEqual(
            self.emails(text), ["ann@example.com", "bob@example.com", "cy@example.com"]
        )

    def test_it_filters_by_segment_status_and_tag(self) -> None:
        segment = Segment.objects.create(project=self.project, name="VIPs", rules=VIP)
        self.assertEqual(
            self.emails(self.export("--segment", str(segment.code))),
            ["ann@example.com", "bob@example.com"],
        )
        self.assertEqual(
            self.emails(self.export("--status", "subscribed", "--tag", "vip")), ["ann@example.com"]
        )

    def test_it_writes_a_file_with_a_bom(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "out.csv"
            err = io.StringIO()
            call_command(
                "export", "--project", str(self.project.code), "--bom", "-o", str(path), stderr=err
            )
            data = path.read_bytes()
        self.assertTrue(data.startswith(b"\xef\xbb\xbfemail,"))
        self.assertEqual(data.count(b"\r\n"), 4)
        self.assertIn("3 contacts written", err.getvalue())

    def test_errors_name_the_option(self) -> None:
        theirs = Segment.objects.create(project=self.charlies_project, name="VIPs", rules=VIP)
        cases = [
            (["--segment", str(theirs.code)], "segment:"),
            (["--segment", "nope"], "segment:"),
            (["--status", "happy"], "status:"),
            (["-o", "/nonexistent/dir/out.csv"], "output:"),
        ]
        for args, message in cases:
            with self.subTest(args=args), self.assertRaisesMessage(CommandError, message):
                self.export(*args)
        with self.assertRaisesMessage(CommandError, "project:"):
            call_command("export", "--project", "nope", stdout=io.StringIO())
