from __future__ import annotations

import io
import json
import zipfile

from django.core.files.uploadedfile import SimpleUploadedFile

from postroom.contacts.models import Contact, FieldDefinition
from postroom.imports import actions
from postroom.imports.models import Import
from postroom.imports.tests.test_import_files import EXPECTED, FIXTURES, ImportTestCase


class ImportsApiTest(ImportTestCase):
    def post_file(self, name: str, content: bytes | None = None, key: str | None = None, **fields):
        """POST /imports with the file (a fixture by default) and form fields; HTTP_* are
        headers."""
        data = content if content is not None else (FIXTURES / name).read_bytes()
        headers = {k: fields.pop(k) for k in list(fields) if k.startswith("HTTP_")}
        return self.client.post(
            "/api/v1/imports",
            {"file": SimpleUploadedFile(name, data), **fields},
            HTTP_AUTHORIZATION=f"Bearer {key or self.secret_key}",
            **headers,
        )

    def charlies_import(self) -> Import:
        return actions.create_import(
            self.charlies_project, io.BytesIO(b"email\nc@example.com\n"), "c.csv"
        )

    def test_an_upload_is_queued_at_once(self) -> None:
        r = self.post_file("excel_de_semicolon_cp1252.csv", tags="de, fair")
        self.assertEqual(r.status_code, 201, r.content)
        body = r.json()
        imp = Import.objects.get(project=self.project)
        self.assertEqual(body["id"], str(imp.code))
        self.assertEqual(body["state"], "pending")
        self.assertEqual(body["source"], "api")
        self.assertIsNone(imp.created_by)
        self.assertEqual(body["encoding"], "cp1252")
        self.assertEqual(body["delimiter"], ";")
        self.assertEqual(body["detected"]["delimiter"], ";")
        self.assertEqual(body["headers"], EXPECTED["excel_de_semicolon_cp1252.csv"]["columns"])
        self.assertEqual(body["mapping"][0], {"target": "email", "field": None, "type": None})
        self.assertEqual(body["tags"], ["de", "fair"])
        self.assertIsNone(body["preview"])
        self.assertIsNone(body["report_url"])
        self.assertEqual(Contact.objects.count(), 0)  # the worker imports, not the request

    def test_a_full_round_trip(self) -> None:
        r = self.post_file("malformed_rows.csv")
        self.assertEqual(r.status_code, 201, r.content)
        self.run_import(Import.objects.get(code=r.json()["id"]))

        r = self.api("GET", f"imports/{r.json()['id']}")
        self.assertEqual(r.status_code, 200)
        body = r.json()
        expected = EXPECTED["malformed_rows.csv"]
        self.assertEqual(body["state"], "done")
        self.assertEqual(body["progress_percent"], 100)
        self.assertEqual(body["total_rows"], expected["data_rows"])
        self.assertEqual(body["records_done"], expected["data_rows"])
        self.assertEqual(
            body["counts"],
            {
                "created": len(expected["valid_emails"]),
                "updated": 0,
                "unchanged": 0,
                "skipped": len(expected["duplicate_lines"]),
                "rejected": len(expected["rejected_lines"]),
            },
        )
        self.assertIsNotNone(body["finished_at"])
        self.assertIsNone(body["eta_seconds"])
        self.assertTrue(body["report_url"].startswith("http://testserver/api/v1/imports/"))

        r = self.client.get(body["report_url"], HTTP_AUTHORIZATION=f"Bearer {self.secret_key}")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r["Content-Type"], "text/csv; charset=utf-8")
        self.assertIn("attachment", r["Content-Disposition"])
        lines = b"".join(r.streaming_content).decode().splitlines()
        self.assertEqual(lines[0], "line,result,reason,row")
        numbers = [int(line.split(",")[0]) for line in lines[1:]]
        bad = [int(n) for n in expected["rejected_lines"]] + expected["duplicate_lines"]
        self.assertEqual(numbers, sorted(bad))
        self.assertIn("4,rejected,", lines[1])
        self.assertIn("not-an-email", lines[1])

    def test_a_draft_shows_its_preview_and_starts_with_a_mapping(self) -> None:
        r = self.post_file("no_header.csv", start="false", has_header="false")
        self.assertEqual(r.status_code, 201, r.content)
        body = r.json()
        self.assertEqual(body["state"], "draft")
        self.assertFalse(body["has_header"])
        self.assertEqual(body["preview"][0]["line"], 1)
        self.assertEqual(body["preview"][0]["cells"], ["ann@example.com", "Ann", "Lee"])
        self.assertEqual(body["preview"][0]["problem"], "")

        r = self.api("GET", f"imports/{body['id']}")
        self.assertEqual(len(r.json()["preview"]), len(body["preview"]))

        mapping = ["email", {"target": "field", "field": "nickname"}, "ignore"]
        r = self.api("POST", f"imports/{body['id']}/start", {"mapping": mapping, "tags": ["api"]})
        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(r.json()["state"], "pending")
        self.assertIsNone(r.json()["preview"])
        self.assertEqual(
            r.json()["mapping"],
            [
                {"target": "email", "field": None, "type": None},
                {"target": "field", "field": "nickname", "type": None},
                {"target": "ignore", "field": None, "type": None},
            ],
        )
        self.assertTrue(FieldDefinition.objects.filter(project=self.project, key="nickname"))

        imp = self.run_import(Import.objects.get(code=body["id"]))
        self.assertEqual(imp.state, Import.State.DONE)
        ann = Contact.objects.get(project=self.project, email="ann@example.com")
        self.assertEqual(ann.data, {"nickname": "Ann"})
        self.assertEqual(ann.last_name, "")
        self.assertEqual([t.name for t in ann.tags.all()], ["api"])

    def test_start_takes_no_body_too(self) -> None:
        draft = self.post_file("rfc4180.csv", start="false").json()
        r = self.client.generic(
            "POST",
            f"/api/v1/imports/{draft['id']}/start",
            HTTP_AUTHORIZATION=f"Bearer {self.secret_key}",
        )
        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(r.json()["state"], "pending")

    def test_the_settings_sent_replace_the_detected_ones(self) -> None:
        mapping = json.dumps(["email", "first_name", "ignore"])
        r = self.post_file(
            "malformed_rows.csv",
            encoding="latin-1",
            delimiter="tab",
            has_header="true",
            mode="upsert",
            overwrite="names,status",
            dry_run="true",
            start="false",
        )
        body = r.json()
        self.assertEqual(r.status_code, 201, body)
        self.assertEqual(
            [body["encoding"], body["delimiter"], body["mode"], body["overwrite"]],
            ["latin-1", "\t", "upsert", ["names", "status"]],
        )
        self.assertTrue(body["dry_run"])
        self.assertEqual(body["headers"], ["email,first_name,last_name"])

        r = self.post_file("malformed_rows.csv", delimiter=",", mapping=mapping)
        self.assertEqual(r.status_code, 201, r.content)
        self.assertEqual(
            [e["target"] for e in r.json()["mapping"]], ["email", "first_name", "ignore"]
        )

    def test_a_zip_holding_one_file_is_read(self) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("export/contacts.csv", (FIXTURES / "google_sheets.csv").read_bytes())
        r = self.post_file("contacts.zip", buffer.getvalue())
        self.assertEqual(r.status_code, 201, r.content)
        self.assertEqual(r.json()["file_name"], "contacts.zip")
        imp = self.run_import(Import.objects.get(code=r.json()["id"]))
        self.assertEqual(self.emails(), EXPECTED["google_sheets.csv"]["valid_emails"])
        self.assertEqual(imp.state, Import.State.DONE)

    def test_a_retried_upload_is_not_imported_twice(self) -> None:
        for _ in range(2):
            r = self.post_file("rfc4180.csv", HTTP_IDEMPOTENCY_KEY="upload-1")
            self.assertEqual(r.status_code, 201, r.content)
        self.assertEqual(r["Idempotent-Replayed"], "true")
        self.assertEqual(str(Import.objects.get().code), r.json()["id"])

    def test_it_lists_imports_newest_first_in_pages(self) -> None:
        ids = [self.post_file("rfc4180.csv").json()["id"] for _ in range(3)]
        self.charlies_import()
        r = self.api("GET", "imports", {"limit": 2})
        self.assertEqual(r.status_code, 200)
        self.assertEqual([i["id"] for i in r.json()["items"]], ids[:0:-1])
        self.assertIsNone(r.json()["items"][0]["preview"])
        r = self.api("GET", "imports", {"limit": 2, "cursor": r.json()["next_cursor"]})
        self.assertEqual([i["id"] for i in r.json()["items"]], ids[:1])
        self.assertIsNone(r.json()["next_cursor"])

        r = self.api("GET", "imports", {"state": "draft"})
        self.assertEqual(r.json()["items"], [])
        self.assert_error(self.api("GET", "imports", {"state": "asleep"}), 422, "state")

    def test_it_cancels_and_a_finished_import_is_a_409(self) -> None:
        created = self.post_file("rfc4180.csv").json()
        r = self.api("POST", f"imports/{created['id']}/cancel")
        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(r.json()["state"], "cancelled")
        self.assertIsNotNone(r.json()["finished_at"])
        self.assert_error(self.api("POST", f"imports/{created['id']}/cancel"), 409)

    def test_starting_what_is_not_a_draft_is_a_409(self) -> None:
        created = self.post_file("rfc4180.csv").json()
        body = self.assert_error(self.api("POST", f"imports/{created['id']}/start", {}), 409)
        self.assertEqual(body["code"], "conflict")
        self.assertIn("pending", body["message"])

    def test_bad_settings_are_a_422_naming_the_setting(self) -> None:
        cases = [
            ({"mode": "merge"}, "mode"),
            ({"delimiter": "#"}, "delimiter"),
            ({"encoding": "ebcdic"}, "encoding"),
            ({"overwrite": "names,email"}, "overwrite"),
            ({"has_header": "perhaps"}, "has_header"),
            ({"mapping": "[email"}, "mapping"),
            ({"mapping": json.dumps({"target": "email"})}, "mapping"),
            ({"mapping": json.dumps(["email", "email"])}, "mapping"),
            ({"mapping": json.dumps(["first_name"])}, "mapping"),
            ({"mapping": json.dumps(["email", {"target": "field", "field": "Bad Key"}])}, None),
        ]
        for fields, field in cases:
            with self.subTest(fields):
                r = self.post_file("malformed_rows.csv", **fields)
                body = self.assert_error(r, 422, field)
                if field is None:
                    self.assertTrue(body["errors"][0]["field"].startswith("mapping"))
        self.assertFalse(Import.objects.exists())  # nothing left behind by a refusal

    def test_a_file_no_column_of_which_is_an_address_is_not_started(self) -> None:
        r = self.post_file("names.csv", b"name,city\nAnn,Paris\nBob,Rome\n")
        self.assert_error(r, 422, "mapping")
        r = self.post_file("names.csv", b"name,city\nAnn,Paris\nBob,Rome\n", start="false")
        self.assertEqual(r.status_code, 201)
        self.assertEqual(r.json()["preview"][0]["problem"], "Map a column to email.")
        r = self.api("POST", f"imports/{r.json()['id']}/start", {"mapping": ["ignore", "tags"]})
        self.assert_error(r, 422, "mapping")
        r = self.api("POST", f"imports/{Import.objects.get().code}/start", {"mode": "merge"})
        self.assert_error(r, 422, "mode")

    def test_bad_start_settings_are_a_422_naming_the_setting(self) -> None:
        draft = self.post_file("rfc4180.csv", start="false").json()
        cases = [
            ({"mapping": "email"}, "mapping"),
            ({"tags": "a,b"}, "tags"),
            ({"overwrite": ["everything"]}, "overwrite"),
            ({"delimiter": "tab", "has_header": "perhaps"}, "has_header"),
        ]
        for body, field in cases:
            with self.subTest(body):
                self.assert_error(
                    self.api("POST", f"imports/{draft['id']}/start", body), 422, field
                )
        self.assertEqual(Import.objects.get().state, Import.State.DRAFT)

    def test_a_missing_file_is_a_422_naming_it(self) -> None:
        r = self.client.post(
            "/api/v1/imports", {"mode": "create"}, HTTP_AUTHORIZATION=f"Bearer {self.secret_key}"
        )
        self.assert_error(r, 422, "file")
        r = self.api("POST", "imports", {"file": "email\nann@example.com\n"})
        self.assert_error(r, 422, "file")

    def test_a_bad_file_is_a_4xx_not_a_500(self) -> None:
        cases = [
            ("photo.png", b"\x89PNG\r\n\x1a\n...."),
            ("empty.csv", b""),
            ("blank.csv", b"\n\n  \n"),
            ("broken.zip", b"PK\x03\x04 not really"),
        ]
        for name, content in cases:
            with self.subTest(name):
                r = self.post_file(name, content)
                self.assertLess(r.status_code, 500, r.content)
                self.assertGreaterEqual(r.status_code, 400, r.content)
                self.assertEqual(r.json()["errors"][0]["field"], "file")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("a.csv", "email\na@example.com\n")
            archive.writestr("b.csv", "email\nb@example.com\n")
        self.assert_error(self.post_file("two.zip", buffer.getvalue()), 422, "file")
        # Read as best it can be, with no column of addresses: nothing to start.
        self.assert_error(self.post_file("binary.csv", bytes(range(256)) * 4), 422, "mapping")
        self.assertFalse(Import.objects.exists())

    def test_a_non_utf8_cell_is_shown_with_a_replacement_character(self) -> None:
        content = "email,city\nann@example.com,Málaga\n".encode("cp1252")
        r = self.post_file("cities.csv", content, encoding="utf-8", start="false")
        self.assertEqual(r.status_code, 201, r.content)
        self.assertEqual(r.json()["preview"][0]["cells"][1], "M\ufffdlaga")

    def test_it_requires_a_key(self) -> None:
        imp = self.upload("rfc4180.csv")
        for method, path in [
            ("GET", "imports"),
            ("POST", "imports"),
            ("GET", f"imports/{imp.code}"),
            ("POST", f"imports/{imp.code}/start"),
            ("POST", f"imports/{imp.code}/cancel"),
            ("GET", f"imports/{imp.code}/rejected"),
        ]:
            with self.subTest(path):
                call = getattr(self.client, method.lower())
                self.assert_error(call(f"/api/v1/{path}"), 401)

    def test_it_refuses_the_public_key(self) -> None:
        imp = self.upload("rfc4180.csv")
        key = self.project.public_key
        self.assert_error(self.post_file("rfc4180.csv", key=key), 403)
        for method, path in [
            ("GET", "imports"),
            ("GET", f"imports/{imp.code}"),
            ("POST", f"imports/{imp.code}/start"),
            ("POST", f"imports/{imp.code}/cancel"),
            ("GET", f"imports/{imp.code}/rejected"),
        ]:
            with self.subTest(path):
                self.assert_error(self.api(method, path, key=key), 403)
        imp.refresh_from_db()
        self.assertEqual(imp.state, Import.State.DRAFT)

    def test_another_projects_import_is_a_404_both_ways(self) -> None:
        theirs, ours = self.charlies_import(), self.upload("rfc4180.csv")
        for imp, key in [(theirs, self.secret_key), (ours, self.charlies_secret_key)]:
            for method, path in [
                ("GET", f"imports/{imp.code}"),
                ("POST", f"imports/{imp.code}/start"),
                ("POST", f"imports/{imp.code}/cancel"),
                ("GET", f"imports/{imp.code}/rejected"),
            ]:
                with self.subTest(path, key=key):
                    data = {} if method == "POST" else None
                    self.assert_error(self.api(method, path, data, key=key), 404)
            imp.refresh_from_db()
            self.assertEqual(imp.state, Import.State.DRAFT)
        self.assert_error(self.api("GET", "imports/not-an-id"), 404)
        r = self.api("GET", "imports", key=self.charlies_secret_key)
        self.assertEqual([i["id"] for i in r.json()["items"]], [str(theirs.code)])
