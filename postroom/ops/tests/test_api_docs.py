from __future__ import annotations

from django.test import TestCase


class ApiDocsTestCase(TestCase):
    def test_the_docs_page_needs_no_cdn(self) -> None:
        r = self.client.get("/api/docs")
        self.assertEqual(r.status_code, 200)
        self.assertContains(r, "/static/ninja/swagger-ui-bundle.js")
        self.assertNotContains(r, "cdn.jsdelivr.net")
        script = self.client.get("/static/ninja/swagger-ui-bundle.js")
        self.assertEqual(script.status_code, 200)

    def test_the_openapi_document_lists_the_plunk_endpoints(self) -> None:
        paths = self.client.get("/api/openapi.json").json()["paths"]
        for path in ("/api/v1/track", "/api/v1/send", "/api/v1/contacts", "/api/v1/contacts/count"):
            self.assertIn(path, paths)
        self.assertIn("post", paths["/api/v1/contacts/subscribe"])
