from __future__ import annotations

from datetime import timedelta as td

from django.utils import timezone

from postroom.contacts.actions import create_field
from postroom.contacts.models import Contact, Status
from postroom.contacts.rules import (
    CONDITION_KINDS,
    ConditionKind,
    RuleError,
    clean_tree,
    register,
    segment_contacts,
)
from postroom.test import BaseTestCase


def tree(*rules: dict, match: str = "all") -> dict:
    return {"match": match, "rules": list(rules)}


class RulesTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        create_field(self.project, "age", "Age", "number")
        create_field(self.project, "city", "City", "text")
        create_field(self.project, "renewal", "Renewal", "date")
        create_field(self.project, "vip", "VIP", "boolean")
        self.ann = self.make_contact(
            "ann@example.com",
            first_name="Ann",
            last_name="Lee",
            tags=["customer", "beta"],
            data={"age": 34, "city": "Berlin", "renewal": "2026-03-01", "vip": True},
        )
        self.bob = self.make_contact(
            "bob@test.org",
            first_name="Bob",
            tags=["customer"],
            data={"age": 19, "city": "Paris", "vip": False},
        )
        self.cy = self.make_contact(
            "cy@example.com", status=Status.UNSUBSCRIBED, data={"renewal": "2025-12-31"}
        )
        # Charlie's contact matches everything alice's rules ask for; it must never appear.
        self.make_contact(
            "ann2@example.com", project=self.charlies_project, first_name="Ann", tags=["customer"]
        )

    def emails(self, t: dict) -> set[str]:
        return set(
            segment_contacts(self.project, clean_tree(t, self.project)).values_list(
                "email", flat=True
            )
        )

    def test_an_empty_tree_matches_every_contact_of_the_project(self) -> None:
        self.assertEqual(self.emails(tree()), {"ann@example.com", "bob@test.org", "cy@example.com"})

    def test_text_columns(self) -> None:
        cases = [
            (
                {"kind": "email", "op": "contains", "value": "EXAMPLE"},
                {"ann@example.com", "cy@example.com"},
            ),
            ({"kind": "email", "op": "ends_with", "value": "@test.org"}, {"bob@test.org"}),
            ({"kind": "email", "op": "not_contains", "value": "example"}, {"bob@test.org"}),
            ({"kind": "email", "op": "equals", "value": "Bob@Test.org"}, {"bob@test.org"}),
            ({"kind": "first_name", "op": "equals", "value": "ann"}, {"ann@example.com"}),
            ({"kind": "first_name", "op": "starts_with", "value": "b"}, {"bob@test.org"}),
            ({"kind": "first_name", "op": "not_exists"}, {"cy@example.com"}),
            ({"kind": "last_name", "op": "exists"}, {"ann@example.com"}),
            (
                {"kind": "last_name", "op": "not_equals", "value": "lee"},
                {"bob@test.org", "cy@example.com"},
            ),
        ]
        for rule, expected in cases:
            self.assertEqual(self.emails(tree(rule)), expected, rule)

    def test_status(self) -> None:
        self.assertEqual(
            self.emails(tree({"kind": "status", "op": "equals", "value": "unsubscribed"})),
            {"cy@example.com"},
        )
        self.assertEqual(
            len(self.emails(tree({"kind": "status", "op": "not_equals", "value": "unsubscribed"}))),
            2,
        )

    def test_tags(self) -> None:
        self.assertEqual(
            self.emails(tree({"kind": "tag", "op": "has", "value": "beta"})), {"ann@example.com"}
        )
        self.assertEqual(
            self.emails(tree({"kind": "tag", "op": "has_not", "value": "customer"})),
            {"cy@example.com"},
        )
        self.assertEqual(
            self.emails(tree({"kind": "tag", "op": "has", "value": "no-such-tag"})), set()
        )

    def test_created_date(self) -> None:
        Contact.objects.filter(id=self.cy.id).update(created_at=timezone.now() - td(days=100))
        self.assertEqual(
            len(self.emails(tree({"kind": "created_at", "op": "within_days", "value": 30}))), 2
        )
        self.assertEqual(
            self.emails(tree({"kind": "created_at", "op": "older_than_days", "value": "30"})),
            {"cy@example.com"},
        )
        day = (timezone.now() - td(days=100)).date()
        self.assertEqual(
            self.emails(
                tree(
                    {"kind": "created_at", "op": "before", "value": (day + td(days=1)).isoformat()}
                )
            ),
            {"cy@example.com"},
        )
        self.assertEqual(
            self.emails(tree({"kind": "created_at", "op": "after", "value": day.isoformat()})),
            {"ann@example.com", "bob@test.org"},
        )

    def test_number_fields(self) -> None:
        f = {"kind": "field", "key": "age"}
        self.assertEqual(self.emails(tree({**f, "op": "gt", "value": 20})), {"ann@example.com"})
        self.assertEqual(self.emails(tree({**f, "op": "lte", "value": "19"})), {"bob@test.org"})
        self.assertEqual(self.emails(tree({**f, "op": "equals", "value": 34})), {"ann@example.com"})
        self.assertEqual(
            self.emails(tree({**f, "op": "not_equals", "value": 34})),
            {"bob@test.org", "cy@example.com"},
        )
        self.assertEqual(
            self.emails(tree({**f, "op": "exists"})), {"ann@example.com", "bob@test.org"}
        )
        self.assertEqual(self.emails(tree({**f, "op": "not_exists"})), {"cy@example.com"})

    def test_text_fields(self) -> None:
        f = {"kind": "field", "key": "city"}
        self.assertEqual(
            self.emails(tree({**f, "op": "contains", "value": "ERL"})), {"ann@example.com"}
        )
        self.assertEqual(
            self.emails(tree({**f, "op": "equals", "value": "paris"})), {"bob@test.org"}
        )
        self.assertEqual(
            self.emails(tree({**f, "op": "not_equals", "value": "paris"})),
            {"ann@example.com", "cy@example.com"},
        )
        self.assertEqual(self.emails(tree({**f, "op": "not_exists"})), {"cy@example.com"})

    def test_date_fields(self) -> None:
        f = {"kind": "field", "key": "renewal"}
        self.assertEqual(
            self.emails(tree({**f, "op": "before", "value": "2026-01-01"})), {"cy@example.com"}
        )
        self.assertEqual(
            self.emails(tree({**f, "op": "after", "value": "2026-01-01"})), {"ann@example.com"}
        )
        self.assertEqual(
            self.emails(tree({**f, "op": "equals", "value": "2026-03-01"})), {"ann@example.com"}
        )
        recent = (timezone.now().date() - td(days=3)).isoformat()
        Contact.objects.filter(id=self.bob.id).update(data={"renewal": recent})
        self.assertEqual(
            self.emails(tree({**f, "op": "within_days", "value": 7})), {"bob@test.org"}
        )

    def test_boolean_fields(self) -> None:
        f = {"kind": "field", "key": "vip"}
        self.assertEqual(self.emails(tree({**f, "op": "is_true"})), {"ann@example.com"})
        self.assertEqual(self.emails(tree({**f, "op": "is_false"})), {"bob@test.org"})
        self.assertEqual(self.emails(tree({**f, "op": "not_exists"})), {"cy@example.com"})

    def test_keys_named_like_lookups_stay_keys(self) -> None:
        create_field(self.project, "in", "In", "boolean")
        create_field(self.project, "exact", "Exact", "number")
        Contact.objects.filter(id=self.bob.id).update(data={"in": True, "exact": 5})
        self.assertEqual(
            self.emails(tree({"kind": "field", "key": "in", "op": "is_true"})), {"bob@test.org"}
        )
        self.assertEqual(
            self.emails(tree({"kind": "field", "key": "exact", "op": "gt", "value": 4})),
            {"bob@test.org"},
        )

    def test_within_the_last_days_excludes_the_future(self) -> None:
        future = (timezone.localdate() + td(days=300)).isoformat()
        Contact.objects.filter(id=self.bob.id).update(data={"renewal": future})
        f = {"kind": "field", "key": "renewal", "op": "within_days", "value": 7}
        self.assertEqual(self.emails(tree(f)), set())

    def test_odd_values_are_rule_errors_not_crashes(self) -> None:
        odd = [
            tree({"kind": "field", "key": "age", "op": "gt", "value": "nan"}),
            tree({"kind": "field", "key": "age", "op": "gt", "value": "inf"}),
            tree({"kind": "created_at", "op": "within_days", "value": "inf"}),
            tree({"kind": "created_at", "op": "after", "value": "9999-12-31"}),
            tree({"kind": ["email"], "op": "exists"}),
            tree({"kind": "email", "op": ["exists"]}),
            {"match": [], "rules": []},
        ]
        for t in odd:
            with self.assertRaises(RuleError, msg=str(t)):
                clean_tree(t, self.project)

    def test_nested_groups(self) -> None:
        t = tree(
            {"kind": "tag", "op": "has", "value": "customer"},
            tree(
                {"kind": "field", "key": "age", "op": "lt", "value": 20},
                {"kind": "field", "key": "city", "op": "equals", "value": "Berlin"},
                match="any",
            ),
        )
        self.assertEqual(self.emails(t), {"ann@example.com", "bob@test.org"})
        t["rules"][1]["match"] = "all"
        self.assertEqual(self.emails(t), set())
        self.assertEqual(
            self.emails(
                tree(
                    {"kind": "email", "op": "contains", "value": "ann"},
                    {"kind": "email", "op": "contains", "value": "bob"},
                    match="any",
                )
            ),
            {"ann@example.com", "bob@test.org"},
        )

    def test_it_names_the_malformed_rule(self) -> None:
        bad = [
            (
                tree(
                    {"kind": "email", "op": "contains", "value": "a"},
                    {"kind": "colour", "op": "is"},
                ),
                "rules[1]",
                "unknown kind",
            ),
            (
                tree({"kind": "email", "op": "resembles", "value": "a"}),
                "rules[0]",
                "unknown operator",
            ),
            (
                tree(tree({"kind": "email", "op": "contains"})),
                "rules[0].rules[0]",
                "needs a text value",
            ),
            (
                tree({"kind": "field", "key": "shoe_size", "op": "gt", "value": 3}),
                "rules[0]",
                "no custom field 'shoe_size'",
            ),
            (
                tree({"kind": "field", "key": "age", "op": "gt", "value": "old"}),
                "rules[0]",
                "needs a number",
            ),
            (
                tree({"kind": "field", "key": "age", "op": "contains", "value": "3"}),
                "rules[0]",
                "unknown operator",
            ),
            (
                tree({"kind": "created_at", "op": "before", "value": "yesterday"}),
                "rules[0]",
                "YYYY-MM-DD",
            ),
            (
                tree({"kind": "created_at", "op": "within_days", "value": -3}),
                "rules[0]",
                "whole number of days",
            ),
            (
                tree({"kind": "status", "op": "equals", "value": "happy"}),
                "rules[0]",
                "status must be one of",
            ),
            (tree("not a rule"), "rules[0]", "must be an object"),
            ({"match": "most", "rules": []}, "", "'match' must be"),
            ({"match": "all", "rules": "x"}, "", "must be a list"),
        ]
        for t, path, message in bad:
            with self.assertRaises(RuleError, msg=str(t)) as ctx:
                clean_tree(t, self.project)
            self.assertEqual(ctx.exception.path, path, str(t))
            self.assertIn(message, ctx.exception.message, str(t))

    def test_it_bounds_depth_and_size(self) -> None:
        deep: dict = tree({"kind": "email", "op": "exists"})
        for _ in range(6):
            deep = tree(deep)
        with self.assertRaisesRegex(RuleError, "nest at most"):
            clean_tree(deep, self.project)
        with self.assertRaisesRegex(RuleError, "at most 100 rules"):
            clean_tree(tree(*[{"kind": "email", "op": "exists"}] * 101), self.project)

    def test_custom_fields_are_scoped_to_the_project(self) -> None:
        with self.assertRaisesRegex(RuleError, "no custom field"):
            clean_tree(tree({"kind": "field", "key": "age", "op": "exists"}), self.charlies_project)

    def test_a_new_kind_of_condition_plugs_in_without_changes(self) -> None:
        from django.db.models import Q

        class DomainKind(ConditionKind):
            kind, label = "domain", "email domain"
            operators = {"is": ("is", True)}

            def to_q(self, rule, ctx):
                return Q(email__endswith="@" + rule["value"].lower())

        register(DomainKind())
        try:
            self.assertEqual(
                self.emails(tree({"kind": "domain", "op": "is", "value": "test.org"})),
                {"bob@test.org"},
            )
        finally:
            del CONDITION_KINDS["domain"]
