from __future__ import annotations

import json

from postroom.contacts.models import Segment
from postroom.test import BaseTestCase

VIP = {"match": "all", "rules": [{"kind": "tag", "op": "has", "value": "vip"}]}


class SegmentViewsTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_contact("ann@example.com", tags=["vip"])
        self.make_contact("bob@example.com", tags=["vip"], status="unsubscribed")
        self.make_contact("cy@example.com")
        self.login()

    def test_the_empty_list_says_what_a_segment_is(self) -> None:
        self.assertContains(self.client.get(self.url("segments/")), "Build your first segment")

    def test_it_counts_live(self) -> None:
        r = self.client.post(self.url("segments/count/"), {"rules": json.dumps(VIP)})
        self.assertContains(r, '<strong id="match-total">2</strong>', html=False)
        self.assertContains(r, '<strong id="match-subscribed">1</strong>', html=False)
        self.assertContains(r, "ann@example.com")

    def test_the_count_names_a_bad_rule(self) -> None:
        bad = {"match": "all", "rules": [{"kind": "tag", "op": "has", "value": ""}]}
        r = self.client.post(self.url("segments/count/"), {"rules": json.dumps(bad)})
        self.assertContains(r, 'data-path="rules[0]"')
        self.assertContains(r, "needs a text value")
        r = self.client.post(self.url("segments/count/"), {"rules": "{oops"})
        self.assertContains(r, "not valid JSON")

    def test_it_saves_and_reopens_a_segment(self) -> None:
        r = self.client.post(self.url("segments/new/"), {"name": "VIPs", "rules": json.dumps(VIP)})
        segment = Segment.objects.get(project=self.project)
        self.assertRedirects(r, self.url(f"segments/{segment.code}/"))
        self.assertEqual(segment.rules, VIP)
        r = self.client.get(self.url(f"segments/{segment.code}/"))
        self.assertContains(r, "segment-schema")
        self.assertContains(self.client.get(self.url("segments/")), "VIPs")

    def test_saving_a_bad_tree_keeps_the_form(self) -> None:
        bad = {"match": "all", "rules": [{"kind": "created_at", "op": "within_days", "value": ""}]}
        r = self.client.post(
            self.url("segments/new/"), {"name": "Recent", "rules": json.dumps(bad)}
        )
        self.assertEqual(r.status_code, 200)
        self.assertContains(r, 'id="rule-error" data-path="rules[0]"')
        self.assertFalse(Segment.objects.exists())

    def test_it_deletes_a_segment(self) -> None:
        segment = Segment.objects.create(project=self.project, name="x", rules=VIP)
        self.client.post(self.url(f"segments/{segment.code}/delete/"))
        self.assertFalse(Segment.objects.exists())

    def test_garbage_rules_are_an_error_not_a_crash(self) -> None:
        for garbage in ("[" * 100_000, "{oops", '{"match": [], "rules": []}', '"x"'):
            r = self.client.post(self.url("segments/new/"), {"name": "x", "rules": garbage})
            self.assertEqual(r.status_code, 200)
            self.assertContains(r, 'id="rule-error"')
            r = self.client.post(self.url("segments/count/"), {"rules": garbage})
            self.assertContains(r, "badge error")
        self.assertFalse(Segment.objects.exists())
