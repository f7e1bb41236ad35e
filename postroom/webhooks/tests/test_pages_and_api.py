"""The webhooks pages and API: empty, normal and failing states, bad input naming its field,
owners and admins managing, members reading, and another project's endpoints a 404."""

from __future__ import annotations

from django.test import override_settings

from postroom.test import BaseTestCase
from postroom.webhooks import actions
from postroom.webhooks.models import Delivery, Endpoint

HOOK = "http://127.0.0.1:9/hook"


@override_settings(WEBHOOKS_ALLOW_PRIVATE=True)
class WebhookPagesTestCase(BaseTestCase):
    def test_the_list_has_an_empty_state_with_the_next_step(self) -> None:
        self.login()
        r = self.client.get(self.url("webhooks/"))
        self.assertContains(r, "No endpoints yet")
        self.assertContains(r, "Add an endpoint")
        self.assertContains(r, "Postroom-Signature")  # how to check a signature

    def test_an_endpoint_is_added_and_bad_input_names_the_field(self) -> None:
        self.login()
        r = self.client.post(self.url("webhooks/new/"), {"url": "ftp://x", "event_types": []})
        self.assertContains(r, "url: must be an http://", status_code=422)
        r = self.client.post(
            self.url("webhooks/new/"), {"url": HOOK, "event_types": ["email.opened", "nope"]}
        )
        self.assertContains(r, "event_types: unknown: nope", status_code=422)
        r = self.client.post(
            self.url("webhooks/new/"), {"url": HOOK, "event_types": ["email.opened"]}
        )
        endpoint = Endpoint.objects.get()
        self.assertRedirects(r, self.url(f"webhooks/{endpoint.code}/"))
        self.assertEqual(endpoint.event_types, ["email.opened"])

    @override_settings(WEBHOOKS_ALLOW_PRIVATE=False)
    def test_a_private_target_is_refused(self) -> None:
        self.login()
        r = self.client.post(
            self.url("webhooks/new/"), {"url": HOOK, "event_types": ["email.sent"]}
        )
        self.assertContains(r, "POSTROOM_WEBHOOKS_ALLOW_PRIVATE", status_code=422)

    def test_the_endpoint_page_hides_the_secret_and_shows_the_log(self) -> None:
        endpoint = actions.create_endpoint(self.project, HOOK, ["email.sent"])
        delivery = actions.send_test(endpoint)
        Delivery.objects.filter(pk=delivery.pk).update(
            last_status=500, last_response="<b>boom</b>", attempts=1
        )
        self.login()
        r = self.client.get(self.url(f"webhooks/{endpoint.code}/"))
        self.assertNotContains(r, endpoint.secret)
        self.assertContains(r, "HTTP 500 &lt;b&gt;boom&lt;/b&gt;")  # escaped
        self.assertContains(
            self.client.get(self.url(f"webhooks/{endpoint.code}/?secret=1")), endpoint.secret
        )
        r = self.client.get(self.url(f"webhooks/{endpoint.code}/deliveries/{delivery.code}/"))
        self.assertContains(r, "webhook.test")
        r = self.client.post(self.url(f"webhooks/{endpoint.code}/deliveries/{delivery.code}/"))
        self.assertEqual(Delivery.objects.count(), 2)

    def test_a_member_reads_but_cannot_manage(self) -> None:
        endpoint = actions.create_endpoint(self.project, HOOK, ["email.sent"])
        self.login(self.bob)
        r = self.client.get(self.url(f"webhooks/{endpoint.code}/?secret=1"))
        self.assertEqual(r.status_code, 200)
        self.assertNotContains(r, endpoint.secret)
        self.assertEqual(self.client.get(self.url("webhooks/new/")).status_code, 403)
        r = self.client.post(self.url(f"webhooks/{endpoint.code}/disable/"))
        self.assertEqual(r.status_code, 403)

    def test_disable_enable_rotate_and_delete(self) -> None:
        endpoint = actions.create_endpoint(self.project, HOOK, ["email.sent"])
        secret = endpoint.secret
        self.login()
        base = self.url(f"webhooks/{endpoint.code}/")
        self.client.post(base + "disable/")
        endpoint.refresh_from_db()
        self.assertFalse(endpoint.enabled)
        self.assertContains(self.client.get(base), "Disabled by hand.")
        self.client.post(base + "enable/")
        self.client.post(base + "rotate/")
        endpoint.refresh_from_db()
        self.assertTrue(endpoint.enabled)
        self.assertNotEqual(endpoint.secret, secret)
        self.client.post(base + "delete/")
        self.assertFalse(Endpoint.objects.exists())

    def test_another_projects_endpoint_is_a_404(self) -> None:
        theirs = actions.create_endpoint(self.charlies_project, HOOK, ["email.sent"])
        self.login()
        for path in ("", "edit/", f"deliveries/{actions.send_test(theirs).code}/"):
            r = self.client.get(self.url(f"webhooks/{theirs.code}/{path}"))
            self.assertEqual(r.status_code, 404, path)
        self.assertEqual(
            self.client.post(self.url(f"webhooks/{theirs.code}/delete/")).status_code, 404
        )
        self.assertTrue(Endpoint.objects.filter(pk=theirs.pk).exists())


@override_settings(WEBHOOKS_ALLOW_PRIVATE=True)
class WebhooksApiTestCase(BaseTestCase):
    def test_create_read_update_and_delete(self) -> None:
        r = self.api("POST", "webhooks", {"url": HOOK, "event_types": ["email.bounced"]})
        self.assertEqual(r.status_code, 201, r.content)
        created = r.json()
        self.assertTrue(created["secret"].startswith("whsec_"))
        self.assertEqual(self.api("GET", "webhooks").json()[0]["id"], created["id"])
        r = self.api("PATCH", f"webhooks/{created['id']}", {"enabled": False})
        self.assertEqual(
            (r.json()["enabled"], r.json()["disabled_reason"]), (False, "Disabled through the API.")
        )
        r = self.api(
            "PATCH",
            f"webhooks/{created['id']}",
            {"event_types": ["contact.created"], "enabled": True},
        )
        self.assertEqual(
            (r.json()["event_types"], r.json()["enabled"]), (["contact.created"], True)
        )
        old = created["secret"]
        self.assertNotEqual(
            self.api("POST", f"webhooks/{created['id']}/rotate-secret").json()["secret"], old
        )
        self.assertEqual(self.api("DELETE", f"webhooks/{created['id']}").json()["success"], True)
        self.assertEqual(self.api("GET", f"webhooks/{created['id']}").status_code, 404)

    def test_bad_input_is_a_422_naming_the_field(self) -> None:
        self.assert_error(
            self.api("POST", "webhooks", {"url": "javascript:x", "event_types": ["email.sent"]}),
            422,
            "url",
        )
        self.assert_error(
            self.api("POST", "webhooks", {"url": HOOK, "event_types": ["email.nope"]}),
            422,
            "event_types",
        )
        self.assert_error(self.api("POST", "webhooks", {"url": HOOK}), 422, "event_types")

    def test_a_test_event_deliveries_and_a_redelivery(self) -> None:
        endpoint = actions.create_endpoint(self.project, HOOK, ["email.sent"])
        r = self.api("POST", f"webhooks/{endpoint.code}/test")
        self.assertEqual((r.status_code, r.json()["event_type"]), (202, "webhook.test"))
        page = self.api("GET", f"webhooks/{endpoint.code}/deliveries").json()
        [delivery] = page["items"]
        self.assertEqual(delivery["payload"]["type"], "webhook.test")
        r = self.api("POST", f"webhooks/{endpoint.code}/deliveries/{delivery['id']}/redeliver")
        self.assertEqual(r.status_code, 202)
        self.assertEqual(r.json()["payload"], delivery["payload"])
        self.assert_error(
            self.api("GET", f"webhooks/{endpoint.code}/deliveries", {"state": "x"}), 422, "state"
        )
        actions.disable(endpoint, "off")
        self.assert_error(self.api("POST", f"webhooks/{endpoint.code}/test"), 409)
        self.assert_error(
            self.api("POST", f"webhooks/{endpoint.code}/deliveries/{delivery['id']}/redeliver"), 409
        )

    def test_another_projects_endpoint_is_a_404(self) -> None:
        theirs = actions.create_endpoint(self.charlies_project, HOOK, ["email.sent"])
        delivery = actions.send_test(theirs)
        mine = actions.create_endpoint(self.project, HOOK, ["email.sent"])
        for method, path in (
            ("GET", f"webhooks/{theirs.code}"),
            ("PATCH", f"webhooks/{theirs.code}"),
            ("DELETE", f"webhooks/{theirs.code}"),
            ("POST", f"webhooks/{theirs.code}/test"),
            ("GET", f"webhooks/{theirs.code}/deliveries"),
            ("POST", f"webhooks/{mine.code}/deliveries/{delivery.code}/redeliver"),
        ):
            r = self.api(method, path, {} if method == "PATCH" else None)
            self.assertEqual(r.status_code, 404, (method, path))
        self.assertEqual([e["id"] for e in self.api("GET", "webhooks").json()], [str(mine.code)])
